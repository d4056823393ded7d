"""Crash-safe training: back up the whole training state, restore it exactly.

Keras's BackupAndRestore, for deepfit's explicit state. What a checkpoint holds
(see :mod:`deepfit.train.checkpoint` for the files):

- the :class:`~deepfit.train.state.TrainState` arrays: weights, BatchNorm
  statistics, dropout's seed-generator states, optimizer slots and iteration,
  the step (hence the epoch, the position in the epoch's shuffled order and the
  schedule's position), reduce-on-plateau's rate scale, the epoch's metric sums;
- every callback's ``state_dict()`` (arrays in it go to the safetensors file),
  the history rows, and whether a callback had stopped training.

The data order is a function of (seed, epoch) and the rest of the randomness
lives in the state, so a run restored from a checkpoint continues bit for bit
as if it had never stopped.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


from deepfit.errors import CheckpointError, ConfigError
from deepfit.train.callbacks.registry import CALLBACKS
from deepfit.train.checkpoint import join_arrays, latest_checkpoint, read_checkpoint, split_arrays, write_checkpoint
from deepfit.train.events import Callback


@CALLBACKS.register("backup_and_restore", aliases=("backupandrestore",))
class BackupAndRestore(Callback):
    """Save the whole training state every ``save_freq`` (``"epoch"`` or N steps).

    With N steps it saves every N steps and at the end of every epoch (the
    epoch's row of the history exists only then). ``backup_dir`` defaults to
    the run directory's ``checkpoints/``; ``delete_checkpoint`` removes the
    backup once the run has finished and its model is saved (Keras's default),
    except after a divergence, whose last good checkpoint is kept.

    As Keras's, it restores the newest backup when training begins (``on_fit_begin``)
    and the loop goes on from there; a run that a callback had stopped stays stopped.
    ``restore_on_begin = False`` starts afresh whatever the folder holds (a run
    directory does so unless ``--resume`` is given).
    """

    # Last: the state saved at an epoch's end must include what every other
    # callback did at that epoch's end (early stopping's counters, plateau's rate).
    order = 1000

    def __init__(self, backup_dir: str | None = None, save_freq: str | int = "epoch",
                 delete_checkpoint: bool = True):
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError(f"save_freq must be 'epoch' or a number of steps >= 1, got {save_freq!r}")
        if backup_dir is not None and not isinstance(backup_dir, (str, Path)):
            raise ValueError(f"backup_dir must be a folder path, got {backup_dir!r}")
        if not isinstance(delete_checkpoint, bool):
            raise ValueError(f"delete_checkpoint must be true or false, got {delete_checkpoint!r}")
        self.backup_dir = None if backup_dir is None else Path(backup_dir)
        self.save_freq, self.delete_checkpoint = save_freq, delete_checkpoint
        self.every_n_steps = save_freq if isinstance(save_freq, int) else None
        self.restore_on_begin = True
        self.restored_from: Path | None = None
        self.restored_step: int | None = None
        self.stopped: tuple[bool, str | None] = (False, None)
        self._last_saved = 0

    # -- saving -----------------------------------------------------------
    def on_fit_begin(self, trainer) -> None:
        if self.backup_dir is None:
            raise ConfigError(
                "backup_and_restore needs backup_dir = 'FOLDER' when the run writes no directory (save=False)"
            )
        self._last_saved = int(trainer.state.step)
        if self.restore_on_begin and self.restore(trainer):
            trainer.stop_training, trainer.stop_reason = self.stopped

    def on_chunk_end(self, trainer, chunk) -> None:
        # A chunk that ends the epoch is saved at on_epoch_end, once the epoch's row exists.
        if (self.every_n_steps and chunk.stop % trainer._steps_per_epoch
                and chunk.stop - self._last_saved >= self.every_n_steps):
            self.save(trainer)

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        self.save(trainer)

    def save(self, trainer) -> Path:
        """Write a checkpoint of ``trainer`` now."""
        step = int(trainer.state.step)
        arrays = {f"state/{k}": v for k, v in trainer.state.to_arrays().items()}
        callbacks = []
        for i, cb in enumerate(trainer.callbacks):
            state = split_arrays(cb.state_dict(), f"callback/{i:03d}", arrays)
            callbacks.append({"class": type(cb).__name__, "state": state})
        meta = {
            "steps_per_epoch": trainer._steps_per_epoch,
            "batch_size": trainer.batch_size,
            "epochs": trainer.epochs,
            "seed": trainer.seed,
            "history": split_arrays(trainer.history, "history", arrays),
            "callbacks": callbacks,
            "stop_training": bool(trainer.stop_training),
            "stop_reason": trainer.stop_reason,
        }
        path = write_checkpoint(self.backup_dir, step, arrays, meta)
        self._last_saved = step
        return path

    # -- restoring --------------------------------------------------------
    def latest(self) -> Path | None:
        return None if self.backup_dir is None else latest_checkpoint(self.backup_dir)

    def restore(self, trainer) -> bool:
        """Load the newest checkpoint into ``trainer`` (state, callbacks, history) as ``fit`` begins.

        A checkpoint of a differently sized epoch cannot continue exactly: refused.
        Returns False when there is no checkpoint (training starts afresh).
        """
        path = self.latest()
        if path is None:
            return False
        state, history, pairs, arrays, meta = self._read(trainer, path, trainer._steps_per_epoch)
        where = str(path)
        for cb, entry in pairs:
            try:
                cb.load_state_dict(join_arrays(entry.get("state", {}), arrays, where))
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise CheckpointError(f"{where}: cannot restore {type(cb).__name__}'s state ({e!r})") from None
        trainer.state = state
        trainer.history = history
        self._last_saved = int(state.step)
        self.restored_from, self.restored_step = path, int(state.step)
        self.stopped = (bool(meta.get("stop_training")), meta.get("stop_reason"))
        return True

    def check(self, trainer, folder: Path, steps_per_epoch: int) -> None:
        """Raise the CheckpointError :meth:`restore` would raise on the newest checkpoint in ``folder``,
        changing nothing (a finished run is checked before it is reopened for more epochs)."""
        path = latest_checkpoint(folder)
        if path is None:
            raise CheckpointError(f"{folder}: holds no checkpoint to continue from")
        self._read(trainer, path, steps_per_epoch)

    def _read(self, trainer, path: Path, steps_per_epoch: int):
        """A checkpoint read and matched to ``trainer``: (state, history, callback pairs, arrays, meta)."""
        arrays, meta = read_checkpoint(path)
        where = str(path)
        if (meta.get("steps_per_epoch"), meta.get("batch_size"), meta.get("seed")) != (
                steps_per_epoch, trainer.batch_size, trainer.seed):
            raise CheckpointError(
                f"{where}: made with {meta.get('steps_per_epoch')} steps an epoch, batch size "
                f"{meta.get('batch_size')}, seed {meta.get('seed')}; this run has {steps_per_epoch}, "
                f"{trainer.batch_size}, {trainer.seed}. Resume with the same config and data, or start a new run"
            )
        state_arrays = {k.removeprefix("state/"): v for k, v in arrays.items() if k.startswith("state/")}
        try:
            state = trainer.state.with_arrays(state_arrays)
        except ValueError as e:
            raise CheckpointError(f"{path / 'state.safetensors'}: {e} (a different model or optimizer?)") from None
        history = join_arrays(meta.get("history", []), arrays, where)
        if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
            raise CheckpointError(f"{where}: history is not a list of rows")
        return state, history, self._pair(trainer, meta.get("callbacks"), where), arrays, meta

    @staticmethod
    def _pair(trainer, saved: Any, where: str) -> list[tuple[Callback, dict]]:
        """Match saved states to this run's callbacks: the k-th of a class to the k-th saved.

        Callbacks without state (progress bars, recorders) may come and go.
        """
        if not isinstance(saved, list) or not all(
                isinstance(e, dict) and isinstance(e.get("class"), str) and isinstance(e.get("state", {}), dict)
                for e in saved):
            raise CheckpointError(f"{where}: callbacks' states are malformed")
        pending: dict[str, list[dict]] = {}
        for entry in saved:
            pending.setdefault(entry["class"], []).append(entry)
        pairs = []
        for cb in trainer.callbacks:
            queue = pending.get(type(cb).__name__, [])
            if queue:
                pairs.append((cb, queue.pop(0)))
            elif cb.state_dict():
                raise CheckpointError(f"{where}: holds no state for {type(cb).__name__}; resume with the same config")
        left = [name for name, q in pending.items() for e in q if e.get("state")]
        if left:
            raise CheckpointError(f"{where}: holds state for {', '.join(left)}, which this run lacks; "
                                  "resume with the same config")
        return pairs

    def remove(self) -> None:
        """Delete the backup (the run finished and its model is saved)."""
        if self.backup_dir is not None and self.backup_dir.is_dir():
            # Renamed first, so a kill during the removal leaves no half backup under its name.
            trash = self.backup_dir.with_name(f".{self.backup_dir.name}.deleting")
            shutil.rmtree(trash, ignore_errors=True)
            self.backup_dir.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)

