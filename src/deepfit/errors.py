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


class StorageError(DeepfitError, OSError):
    """A write failed (a full disk, a quota, a failing device): the message names the file and what was kept."""

    def __str__(self) -> str:  # the message alone (OSError's would prefix "[Errno N]" once errno is set)
        return str(self.args[0]) if self.args else ""


class DataWarning(UserWarning):
    """Data that trains, but probably not as meant (raw 0-255 pixels given to deepfit.fit)."""
