"""Prepared datasets kept on disk, so a new process (a pool worker, the next command) skips preparing them.

Preparing the notebook's 60,000 bundled images (decompress, split, scale, standardize) takes
1-3 s of one core; a prepared copy loads in milliseconds, memory-mapped and read-only, and
every process on the machine shares the same pages: one copy of the data, however many
workers train on it. Only the bundled data is cached (its checksums name it exactly), in
``$DEEPFIT_CACHE/data`` (else ``~/.cache/deepfit/data``), at most ``KEEP`` datasets, the least
recently used removed first. ``DEEPFIT_DATA_CACHE=0`` turns it off. Files are ``.npy``
read with ``allow_pickle=False``: loading runs no code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PARTS = ("x_train", "y_train", "x_valid", "y_valid", "x_test", "y_test")
KEEP = 6
# Bump when prepare() changes what it computes, so no older copy is ever read.
FORMAT = 1


def cache_root() -> Path:
    """``$DEEPFIT_CACHE`` (else ``$XDG_CACHE_HOME/deepfit``, else ``~/.cache/deepfit``)."""
    base = os.environ.get("DEEPFIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "deepfit"
    return Path(base).expanduser()


def enabled() -> bool:
    return os.environ.get("DEEPFIT_DATA_CACHE", "1") != "0"


def key(source_digest: str, config_json: str) -> str:
    return hashlib.sha256(f"{FORMAT}\n{source_digest}\n{config_json}".encode()).hexdigest()[:32]


def load(name: str) -> tuple[dict[str, np.ndarray | None], dict[str, Any]] | None:
    """The arrays and info stored under ``name``, memory-mapped read-only; None when absent or unreadable."""
    d = cache_root() / "data" / name
    try:
        info = json.loads((d / "info.json").read_text(encoding="utf-8"))
        arrays = {p: np.load(d / f"{p}.npy", mmap_mode="r", allow_pickle=False) if (d / f"{p}.npy").is_file()
                  else None for p in PARTS}
        os.utime(d)  # recently used
    except (OSError, ValueError):
        return None
    return arrays, info


def store(name: str, arrays: dict[str, np.ndarray | None], info: dict[str, Any]) -> None:
    """Write a prepared dataset under ``name`` (atomically: a folder renamed into place). Never raises
    for lack of space or permission: the cache only saves time."""
    root = cache_root() / "data"
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
        for part, a in arrays.items():
            if a is not None:
                np.save(tmp / f"{part}.npy", np.ascontiguousarray(a), allow_pickle=False)
        (tmp / "info.json").write_text(json.dumps(info), encoding="utf-8")
        try:
            os.rename(tmp, root / name)
        except OSError:  # another process stored it first
            shutil.rmtree(tmp, ignore_errors=True)
        _evict(root)
    except OSError:
        return


def _evict(root: Path) -> None:
    kept = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
                  key=lambda d: d.stat().st_mtime, reverse=True)
    for old in kept[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in root.glob(".tmp-*"):  # left by a killed process, an hour or more ago
        if time.time() - tmp.stat().st_mtime > 3600:
            shutil.rmtree(tmp, ignore_errors=True)
