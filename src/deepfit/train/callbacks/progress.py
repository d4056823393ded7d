from __future__ import annotations

import sys
import time

from deepfit.train.callbacks.registry import CALLBACKS
from deepfit.train.events import Callback


def format_logs(logs: dict) -> str:
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    return "  ".join(f"{k} {logs[k]:.4f}" for k in keys if k in logs)


@CALLBACKS.register("progress")
class Progress(Callback):
    """A rich progress bar over steps (loss, accuracy, samples/s, ETA); plain lines off a TTY."""

    order = 100

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self._bar = None

    def on_fit_begin(self, trainer) -> None:
        from rich.console import Console

        self.console = Console(file=self.stream)
        self._total = trainer.epochs * trainer._steps_per_epoch
        # Steps this process trained: a resumed run restores its step after this callback has begun.
        self._t0, self._steps = time.perf_counter(), 0
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

            self._bar = Bar(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=self.console)
            self._task = self._bar.add_task("train", total=self._total, completed=0, epoch="-", info="")
            self._bar.start()

    def on_chunk_end(self, trainer, chunk) -> None:
        self._steps += chunk.stop - chunk.start
        if self._bar is not None:
            self._bar.update(self._task, completed=chunk.stop, epoch=f"{chunk.epoch + 1}/{trainer.epochs}")

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        rate = self._steps * trainer.batch_size / max(time.perf_counter() - self._t0, 1e-9)
        line = f"epoch {epoch + 1}/{trainer.epochs}  {format_logs(logs)}  {rate:,.0f} samples/s  {logs['seconds']:.1f}s"
        if self._bar is not None:
            self._bar.update(self._task, info=format_logs(logs))
            self._bar.print(line)
        else:
            print(line, file=self.stream, flush=True)

    def on_fit_end(self, trainer) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
