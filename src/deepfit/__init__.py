"""deepfit: train deep feed-forward networks well, and compare techniques honestly.

Built on Keras 3 with the JAX backend: deepfit sets ``KERAS_BACKEND=jax``
unless you chose otherwise (its trainer needs JAX).
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")


def _check_backend() -> None:
    """Keras picks its backend once, when first imported: a notebook that ran ``import keras`` with
    another backend cannot be switched from here (``keras.config.set_backend`` reloads Keras, and
    the user's ``keras`` and every object made with it would be stale). Say so in one line."""
    keras = sys.modules.get("keras")
    backend = getattr(getattr(keras, "backend", None), "backend", None)
    if backend is not None and backend() != "jax":
        raise ImportError(
            f"deepfit needs Keras's JAX backend, but keras was imported first with the {backend()!r} "
            f"backend: run `export KERAS_BACKEND=jax` (or set \"backend\": \"jax\" in ~/.keras/keras.json), "
            f"then restart Python / the Jupyter kernel"
        )


_check_backend()

__version__ = "0.1.0"

from deepfit.config import Config, load_config  # noqa: E402
from deepfit.data import Dataset, load_data  # noqa: E402
from deepfit.deploy.exporter import export  # noqa: E402
from deepfit.deploy.fold import fold_batch_norm  # noqa: E402
from deepfit.errors import CheckpointError, ConfigError, DataError, DataWarning, DeepfitError, StorageError  # noqa: E402
from deepfit.experiments import load_experiment  # noqa: E402
from deepfit.fit import fit  # noqa: E402
from deepfit.interrupt import Interrupted  # noqa: E402
from deepfit.nn.build import build_model, summary  # noqa: E402
from deepfit.nn.layers import MCAlphaDropout, MCDropout, RReLU  # noqa: E402
from deepfit.nn.transfer import clone, freeze, reuse, set_trainable, unfreeze  # noqa: E402
from deepfit.lr_finder import find_lr  # noqa: E402
from deepfit.optim.optimizers import make_optimizer  # noqa: E402
from deepfit.optim.schedules import make_schedule  # noqa: E402
from deepfit.report import write_report  # noqa: E402
from deepfit.run import Run, load_run, train  # noqa: E402
from deepfit.train.events import Callback, StopTraining  # noqa: E402
from deepfit.train.loop import Trainer  # noqa: E402
from deepfit.train.state import TrainState  # noqa: E402
from deepfit.uncertainty import mc_predict, to_mc_dropout  # noqa: E402
from deepfit.workflows import compare, reproduce  # noqa: E402

if os.environ.get("DEEPFIT_COMPILE_CACHE") == "1":  # the process opted in: cache from the first compilation
    from deepfit.train import compile_cache as _compile_cache  # noqa: E402

    _compile_cache.enable()  # (a Keras model built before deepfit trains it compiles its initializers)

__all__ = [
    "CheckpointError", "Callback", "Config", "ConfigError", "DataError", "DataWarning", "Dataset", "DeepfitError",
    "Interrupted", "MCAlphaDropout", "MCDropout", "RReLU", "Run", "StopTraining", "StorageError", "TrainState",
    "Trainer", "build_model", "clone", "compare", "export", "find_lr", "fit", "fold_batch_norm", "freeze",
    "load_config", "load_data",
    "load_experiment", "load_run", "make_optimizer", "make_schedule", "mc_predict", "reproduce", "reuse",
    "set_trainable", "summary", "to_mc_dropout", "train", "unfreeze", "write_report",
]
