"""A trained model made fast and small for prediction: batch-norm folding, pruning, lower precision, ONNX.

:func:`export` does it and measures what each step cost and bought (``export.json``).
"""

from deepfit.deploy.exporter import Exported, export
from deepfit.deploy.fold import Folded, fold_batch_norm

__all__ = ["Exported", "Folded", "export", "fold_batch_norm"]
