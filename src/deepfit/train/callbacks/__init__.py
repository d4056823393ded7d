"""Callbacks by name, with Keras's names and semantics.

``callbacks = [{ name = "early_stopping", patience = 10, restore_best_weights = true }]``
"""

from deepfit.train.callbacks.registry import CALLBACKS, make_callback

# Importing the modules registers them.
from deepfit.train.callbacks import (  # noqa: E402,F401
    backup_and_restore, early_stopping, layer_stats, progress, pruning, reduce_lr_on_plateau, tensorboard,
    terminate_on_nan,
)

__all__ = ["CALLBACKS", "make_callback"]
