from __future__ import annotations

import numpy as np

from deepfit.train.callbacks.registry import CALLBACKS
from deepfit.train.events import Callback


@CALLBACKS.register("tensorboard")
class TensorBoard(Callback):
    """Epoch scalars (loss, accuracy, rate, ...) and weight histograms as TensorBoard event files.

    Written with tensorboardX (no TensorFlow needed); read with ``tensorboard --logdir``.
    ``histogram_freq``: epochs between weight histograms (Keras's name; 0 turns them off).
    Histograms are tagged ``weights/<keras variable path>``, e.g. ``weights/dense/kernel``.
    """

    order = 90

    def __init__(self, log_dir: str = "tensorboard", histogram_freq: int = 1):
        if not isinstance(histogram_freq, int) or histogram_freq < 0:
            raise ValueError(f"histogram_freq must be a non-negative integer, got {histogram_freq!r}")
        self.log_dir = log_dir
        self.histogram_freq = histogram_freq
        self.writer = None

    def on_fit_begin(self, trainer) -> None:
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(self.log_dir)

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        for key, value in logs.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(f"epoch/{key}", value, epoch + 1)
        if self.histogram_freq and (epoch + 1) % self.histogram_freq == 0:
            # The trainer's state holds the current weights; the Keras variables are only synced at fit's end.
            for key, value in trainer.state.params.items():
                path = trainer.layout.variables[key].path
                self.writer.add_histogram(f"weights/{path}", np.asarray(value, np.float64), epoch + 1)
        self.writer.flush()

    def on_fit_end(self, trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
