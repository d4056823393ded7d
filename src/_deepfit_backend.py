"""Run at interpreter start (``deepfit-keras-backend.pth``): make ``import keras`` work before ``import deepfit``.

Keras falls back to the TensorFlow backend when neither ``KERAS_BACKEND`` nor ``~/.keras/keras.json``
names one, and its import then fails with "No module named 'tensorflow'" in an environment that has
only JAX (deepfit's). Here, and only then (no backend chosen, or Keras's own default written to
keras.json, and TensorFlow absent), ``KERAS_BACKEND`` defaults to ``jax``. An explicit choice always
wins. It must stay cheap and never raise: it runs in every Python process of the environment.
"""

import importlib.util
import json
import os


def default_to_jax() -> None:
    if "KERAS_BACKEND" in os.environ or importlib.util.find_spec("tensorflow") is not None:
        return
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json"), encoding="utf-8") as f:
            chosen = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        chosen = None
    if chosen in (None, "tensorflow"):
        os.environ["KERAS_BACKEND"] = "jax"


try:
    default_to_jax()
except Exception:  # noqa: BLE001 - a startup hook must never stop Python from starting
    pass
