"""Errors a user can cause. The CLI prints their message alone and exits 2.

Everything else (a bug in deepfit, Keras or JAX) stays a traceback.
"""


class DeepfitError(Exception):
    """Base of every error a user's input can cause; the message names the fix."""


class ConfigError(DeepfitError, ValueError):
    """A config, override or CLI argument is invalid."""


class DataError(DeepfitError, ValueError):
    """A data file or array is missing, corrupted or of the wrong shape."""


class CheckpointError(DeepfitError, ValueError):
    """A run directory, checkpoint or model file is missing, corrupted or unsafe."""
