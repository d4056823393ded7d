"""Stop at a chunk boundary once SIGTERM or SIGINT has arrived, with the state saved (see deepfit.interrupt)."""

from __future__ import annotations

from deepfit import interrupt
from deepfit.train.events import Callback, StopTraining


class StopOnSignal(Callback):
    """Looks at :func:`deepfit.interrupt.pending` after each chunk; if a signal came, saves a checkpoint
    through ``backup`` (a BackupAndRestore, or None) and stops training. ``signum`` records that it did,
    so the run ends as interrupted (no final record) rather than as stopped."""

    # After BackupAndRestore (1000): at an epoch's end its checkpoint is then already written.
    order = 1001

    def __init__(self, backup=None):
        self.backup = backup
        self.signum: int | None = None
        self.checkpoint = None

    def on_chunk_end(self, trainer, chunk) -> None:
        # A chunk that ends an epoch waits for on_epoch_end: a checkpoint there would lack the epoch's row.
        if chunk.stop % trainer._steps_per_epoch:
            self._stop(trainer)

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        self._stop(trainer)

    def _stop(self, trainer) -> None:
        signum = interrupt.pending()
        if signum is None:
            return
        self.signum = signum
        if self.backup is not None and self.backup.backup_dir is not None:
            self.checkpoint = self.backup.save(trainer)
        raise StopTraining(f"interrupted by {interrupt.name(signum)}")
