"""Resuming a run directory: which state it is in, and whether a config may continue it.

A run directory is *finished* once its manifest exists (written last), *resumable*
while it holds the ``config.toml`` of a run that has not finished, and *fresh*
when it does not exist or is empty (``--resume`` then simply starts the run, so a
job script can pass it every time, as with Keras's BackupAndRestore).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

from deepfit.config import Config, load_config
from deepfit.errors import ConfigError
from deepfit.io import MANIFEST
from deepfit.train.callbacks.backup_and_restore import BackupAndRestore
from deepfit.train.events import Callback

# Settings that change what is shown, never what is computed: a resume may differ in them.
COSMETIC = ("training.progress",)
CHECKPOINTS = "checkpoints"

Status = Literal["fresh", "resumable", "finished", "extend"]


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): tree}


def config_differences(saved: Config, given: Config) -> list[str]:
    """``["training.epochs: 3 in the run, 5 given", ...]``, cosmetic settings left out."""
    a, b = _flatten(saved.to_dict()), _flatten(given.to_dict())
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key in COSMETIC or a.get(key) == b.get(key):
            continue
        diffs.append(f"{key}: {a.get(key, '(unset)')!r} in the run, {b.get(key, '(unset)')!r} given")
    return diffs


def resume_status(out: str | Path | None, cfg: Config) -> Status:
    """Where ``--resume`` on ``out`` stands; a config that differs from the run's is a ConfigError."""
    if out is None:
        raise ConfigError("--resume needs --out DIR: the run directory to continue")
    d = Path(out)
    try:
        if not d.exists() or (d.is_dir() and not any(d.iterdir())):
            return "fresh"
    except (OSError, ValueError) as e:
        raise ConfigError(f"--out {str(d)!r}: cannot be read ({e}); choose another --out") from None
    if not d.is_dir():
        raise ConfigError(f"--resume: {str(d)!r} is a file, not a run directory")
    if not (d / "config.toml").is_file():
        raise ConfigError(
            f"--resume: {str(d)!r} holds files but no config.toml, so it is not a deepfit run directory; "
            "choose another --out"
        )
    saved = load_config(d / "config.toml")
    diffs = config_differences(saved, cfg)
    finished = (d / MANIFEST).is_file()
    if finished and diffs and all(x.startswith("training.epochs:") for x in diffs):
        return extend_status(d, saved.training.epochs, cfg.training.epochs)
    if diffs:
        raise ConfigError(
            f"--resume: the run in {str(d)!r} was made with a different config ({'; '.join(diffs[:5])}"
            f"{'; ...' if len(diffs) > 5 else ''}). Resume with the same config and overrides, "
            "or start a new run in another --out"
        )
    clean_debris(d, finished)
    return "finished" if finished else "resumable"


FINAL_STATE = "final_state"  # a completed run's last checkpoint folder, kept so it can be extended


def extend_status(d: Path, had: int, wanted: int) -> Status:
    """``--resume --epochs N`` on a finished run: more epochs continue it from its final state."""
    if wanted <= had:
        raise ConfigError(f"--resume --epochs {wanted}: the run in {str(d)!r} already has {had} epochs; "
                          f"give more to extend it")
    try:
        status = json.loads((d / "final.json").read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError, AttributeError):
        status = None
    if status != "completed":
        raise ConfigError(f"--resume --epochs {wanted}: the run in {str(d)!r} ended {status!r}, not completed; "
                          f"only a run that completed its epochs can be extended (train a new run instead)")
    if not (d / FINAL_STATE).is_dir():
        raise ConfigError(f"--resume --epochs {wanted}: the run in {str(d)!r} kept no final training state "
                          f"(made before deepfit kept one, or without checkpoints); train a new run with "
                          f"--epochs {wanted} instead")
    return "extend"


def clean_debris(d: Path, finished: bool) -> None:
    """Remove what a process killed mid-write (or stopped by a full disk) leaves: temporary files
    (``.name.XXXX.tmp``) and folders (``.final_state.tmp``), a backup being deleted, and, once the run
    has finished (not diverged), its backup."""
    for tmp in d.glob(".*.tmp"):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    for trash in d.glob(".*.deleting"):
        shutil.rmtree(trash, ignore_errors=True)
    if finished and (d / CHECKPOINTS).is_dir():
        try:
            status = json.loads((d / "final.json").read_text(encoding="utf-8")).get("status")
        except (OSError, ValueError, AttributeError):
            return
        if status in ("completed", "stopped"):
            BackupAndRestore(str(d / CHECKPOINTS)).remove()


def attach_backup(callbacks: list[Callback], out_dir: Path | None, default: bool) -> BackupAndRestore | None:
    """The run's BackupAndRestore: the config's (its folder defaulting to the run's
    ``checkpoints/``), else an every-epoch one when the run writes a directory."""
    backup = next((c for c in callbacks if isinstance(c, BackupAndRestore)), None)
    if backup is None and default and out_dir is not None:
        backup = BackupAndRestore()
        callbacks.append(backup)
    if backup is not None and backup.backup_dir is None and out_dir is not None:
        backup.backup_dir = out_dir / CHECKPOINTS
    return backup
