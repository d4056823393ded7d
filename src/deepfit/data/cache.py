"""Prepared datasets kept on disk, so a new process (a pool worker, the next command) skips preparing them.

Preparing the notebook's 60,000 bundled images (decompress, split, scale, standardize) takes
1-3 s of one core; a prepared copy loads memory-mapped and read-only, and every process on the
machine shares the same pages: one copy of the data, however many workers train on it. Only the
bundled data is cached (its checksums name it exactly), in ``$DEEPFIT_CACHE/data`` (else
``~/.cache/deepfit/data``), at most ``KEEP`` datasets, the least recently used removed first.
``DEEPFIT_DATA_CACHE=0`` turns it off. Files are ``.npy`` read with ``allow_pickle=False``:
loading runs no code.

An entry is named by what made it: the source's digest, the data config, and the code that
prepares it (the sha256 of this package's modules and NumPy's version), so a change to any of
them makes another entry and an old one is never read. It is written into a temporary folder,
each file fsynced and described in ``info.json`` (shape, dtype, size, sha256; written last), and
renamed into place whole. Opening checks every file against ``info.json`` (present, the size, the
shape and dtype in its header, and the sha256 of its bytes), so a truncated, missing or altered
file is never trained on: the dataset is prepared again and the bad entry replaced (renamed away,
then the new one renamed in).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from deepfit.io import file_digest, make_temp_dir

PARTS = ("x_train", "y_train", "x_valid", "y_valid", "x_test", "y_test")
KEEP = 6
INFO = "info.json"


def cache_root() -> Path:
    """``$DEEPFIT_CACHE`` (else ``$XDG_CACHE_HOME/deepfit``, else ``~/.cache/deepfit``)."""
    base = os.environ.get("DEEPFIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "deepfit"
    return Path(base).expanduser()


def enabled() -> bool:
    return os.environ.get("DEEPFIT_DATA_CACHE", "1") != "0"


@functools.cache
def code_digest() -> str:
    """The code that turns a source into prepared arrays: this package's modules and NumPy's version."""
    h = hashlib.sha256(np.__version__.encode())
    for module in sorted(Path(__file__).parent.glob("*.py")):
        h.update(module.name.encode() + b"\0" + module.read_bytes())
    return h.hexdigest()


def key(source_digest: str, config_json: str) -> str:
    """The entry's name: what it was made from (source, settings) and by (the code)."""
    return hashlib.sha256(f"{code_digest()}\n{source_digest}\n{config_json}".encode()).hexdigest()[:32]


def _entry(name: str) -> Path:
    return cache_root() / "data" / name


def _check(d: Path, files: dict[str, Any]) -> dict[str, np.ndarray | None]:
    """Every file ``info.json`` lists, memory-mapped, after checking it is what was written (ValueError if not)."""
    arrays: dict[str, np.ndarray | None] = dict.fromkeys(PARTS)
    for part, meta in files.items():
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}")
        path = d / f"{part}.npy"
        if path.stat().st_size != meta["bytes"]:
            raise ValueError(f"{path}: {path.stat().st_size} bytes, {meta['bytes']} written")
        a = np.load(path, mmap_mode="r", allow_pickle=False)
        if list(a.shape) != meta["shape"] or str(a.dtype) != meta["dtype"]:
            raise ValueError(f"{path}: {a.dtype}{list(a.shape)}, {meta['dtype']}{meta['shape']} written")
        if file_digest(path) != meta["sha256"]:
            raise ValueError(f"{path}: sha256 differs from what was written")
        arrays[part] = a
    return arrays


def load(name: str) -> tuple[dict[str, np.ndarray | None], dict[str, Any]] | None:
    """The arrays and info stored under ``name``, memory-mapped read-only; None when absent, incomplete
    or altered (the caller prepares the data again and :func:`store` replaces the entry)."""
    d = _entry(name)
    try:
        record = json.loads((d / INFO).read_text(encoding="utf-8"))
        arrays = _check(d, record["files"])
        os.utime(d)  # recently used
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return arrays, record["info"]


def store(name: str, arrays: dict[str, np.ndarray | None], info: dict[str, Any]) -> None:
    """Write a prepared dataset under ``name`` (atomically: a folder renamed into place), replacing a bad
    entry of that name. Never raises for lack of space or permission: the cache only saves time."""
    root = cache_root() / "data"
    tmp = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(root, ".tmp-")
        files = {}
        for part, a in arrays.items():
            if a is None:
                continue
            path = tmp / f"{part}.npy"
            with open(path, "wb") as f:
                np.save(f, np.ascontiguousarray(a), allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            files[part] = {"shape": list(np.shape(a)), "dtype": str(np.asarray(a).dtype),
                           "bytes": path.stat().st_size, "sha256": file_digest(path)}
        with open(tmp / INFO, "w", encoding="utf-8") as f:  # last: an entry without it is no entry
            json.dump({"info": info, "files": files}, f)
            f.flush()
            os.fsync(f.fileno())
        _move_in(tmp, root / name)
        tmp = None
        _evict(root)
    except OSError:
        return
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _move_in(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; a bad entry there is renamed away first. When another process stored a
    good one meanwhile, ours is dropped."""
    try:
        os.rename(tmp, target)
        return
    except OSError:
        if load(target.name) is not None:  # another process stored it first
            shutil.rmtree(tmp, ignore_errors=True)
            return
    trash = target.with_name(f".trash-{target.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(target, trash)  # readers holding its files keep them (an unlinked mmap stays valid)
    except FileNotFoundError:
        pass  # another process moved it away first
    try:
        os.rename(tmp, target)
    except OSError:  # another process put its own in first
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(trash, ignore_errors=True)


def _evict(root: Path) -> None:
    kept = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
                  key=lambda d: d.stat().st_mtime, reverse=True)
    for old in kept[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in [*root.glob(".tmp-*"), *root.glob(".trash-*")]:  # left by a killed process, an hour or more ago
        try:
            if time.time() - tmp.stat().st_mtime > 3600:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass
