from __future__ import annotations

from deepfit.train.callbacks import CALLBACKS
from deepfit.train.events import Callback


@CALLBACKS.register("tensorboard")
class TensorBoard(Callback):
    """Epoch scalars (loss, accuracy, rate, ...) as TensorBoard event files, via tensorboardX."""

    order = 90

    def __init__(self, log_dir: str = "tensorboard"):
        self.log_dir = log_dir
        self.writer = None

    def on_fit_begin(self, trainer) -> None:
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(self.log_dir)

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        for key, value in logs.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(f"epoch/{key}", value, epoch + 1)
        self.writer.flush()

    def on_fit_end(self, trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
