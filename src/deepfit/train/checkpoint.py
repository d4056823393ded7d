"""Checkpoint files: the whole training state on disk, crash-safe, never pickle.

A checkpoints folder holds complete checkpoints and a pointer to the newest::

    checkpoints/
      latest.json                 {"checkpoint": "ckpt-0000000120", "step": 120}, replaced atomically
      ckpt-0000000120/
        state.safetensors         every array: TrainState (to_arrays) and arrays in callbacks' states
        meta.json                 step, history, callbacks' states (arrays as references), stop flags
        manifest.json             sha256 of the two files above, written last

A checkpoint is written in a hidden temporary folder (each file fsynced), which
is renamed to ``ckpt-<step>`` only once complete; then the pointer is replaced;
only then are older checkpoints removed. A SIGKILL at any moment therefore
leaves the previous checkpoint (or the new one) whole and findable. Loading
checks the manifest's digests before parsing anything, and safetensors holds
only raw arrays, so a crafted checkpoint cannot run code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from deepfit.errors import CheckpointError
from deepfit.io import MANIFEST, fsync_dir, storage_error, verify_manifest, write_atomic

# 3: the state keyed by position and role (2 used Keras's layer names, which change between processes;
# 1 was split positionally by the trainable flags).
FORMAT = "deepfit-checkpoint-3"
POINTER = "latest.json"
STATE_FILE, META_FILE = "state.safetensors", "meta.json"
_NAME = re.compile(r"^ckpt-(\d{10})$")
# A checkpoint is arrays plus a small JSON; anything bigger is not ours.
MAX_META_BYTES = 256 * 1024**2


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:010d}"


def _write_synced(path: Path, payload: bytes) -> None:
    with open(path, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())


def _digest(payload: bytes) -> str:
    import hashlib

    return hashlib.sha256(payload).hexdigest()


def write_checkpoint(directory: str | Path, step: int, arrays: dict[str, np.ndarray],
                     meta: dict[str, Any]) -> Path:
    """Write one checkpoint for ``step`` and point ``latest.json`` at it; returns its folder."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(step)
    final = d / name
    if final.is_dir() and _pointer_name(d) == name:
        return final  # already complete and current (a resumed run reaching the same step)
    for stale in d.glob(".tmp-*"):  # left by a process killed mid-write
        shutil.rmtree(stale, ignore_errors=True)
    for stale in d.glob(f".{POINTER}.*.tmp"):
        stale.unlink(missing_ok=True)
    tmp = d / f".tmp-{name}-{os.getpid()}"
    # (np.ascontiguousarray would turn a 0-d array into shape (1,))
    state = save_safetensors({k: np.array(v, order="C") for k, v in arrays.items()},
                             metadata={"format": FORMAT})
    meta_bytes = (json.dumps({"format": FORMAT, "step": step, **meta}, sort_keys=True) + "\n").encode()
    manifest = {STATE_FILE: _digest(state), META_FILE: _digest(meta_bytes)}
    target = tmp
    try:
        tmp.mkdir()
        for target, payload in ((tmp / STATE_FILE, state), (tmp / META_FILE, meta_bytes),
                                (tmp / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())):
            _write_synced(target, payload)
        fsync_dir(tmp)
        if final.exists():  # complete but never pointed to (killed before the pointer moved)
            _discard(final)
        target = final
        os.rename(tmp, final)
        fsync_dir(d)
    except OSError as e:
        # A full disk: drop the half checkpoint (it holds space); the previous one is untouched.
        shutil.rmtree(tmp, ignore_errors=True)
        raise storage_error(target, e) from None
    write_atomic(d / POINTER, json.dumps({"checkpoint": name, "step": step}) + "\n")
    for old in d.glob("ckpt-*"):
        if old.name != name:
            _discard(old)
    return final


def _discard(path: Path) -> None:
    """Remove a checkpoint folder: renamed out of the ckpt-* namespace first, so a
    kill in the middle of the removal never leaves a half checkpoint under that name."""
    trash = path.with_name(f".tmp-trash-{path.name}-{os.getpid()}")
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _pointer_name(d: Path) -> str | None:
    try:
        pointer = json.loads((d / POINTER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    name = pointer.get("checkpoint") if isinstance(pointer, dict) else None
    return name if isinstance(name, str) and _NAME.match(name) else None


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest complete checkpoint in ``directory`` (None if there is none).

    The pointer names it; without a readable pointer (a kill before the first
    one was written) the newest ``ckpt-*`` folder is it, since only complete
    checkpoints ever carry that name.
    """
    d = Path(directory)
    if not d.is_dir():
        return None
    name = _pointer_name(d)
    if name is not None and (d / name).is_dir():
        return d / name
    found = sorted((p for p in d.iterdir() if _NAME.match(p.name) and p.is_dir()), key=lambda p: p.name)
    return found[-1] if found else None


def read_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and metadata of one checkpoint folder, digests checked first."""
    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(f"checkpoint {str(p)!r} not found")
    manifest = verify_manifest(p)
    for required in (STATE_FILE, META_FILE):
        if required not in manifest:
            raise CheckpointError(f"{p / MANIFEST}: does not list {required}; not a deepfit checkpoint")
    meta_path = p / META_FILE
    if meta_path.stat().st_size > MAX_META_BYTES:
        raise CheckpointError(f"{meta_path}: larger than {MAX_META_BYTES:,} bytes; not a deepfit checkpoint")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{meta_path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        if isinstance(found, str) and found.startswith("deepfit-checkpoint-"):
            raise CheckpointError(f"{meta_path}: a {found} checkpoint, which this deepfit ({FORMAT}) cannot "
                                  "continue; rerun that run from the start (without --resume, --overwrite)")
        raise CheckpointError(f"{meta_path}: not a {FORMAT} file")
    state_path = p / STATE_FILE
    try:
        arrays = load_safetensors(state_path.read_bytes())
    except (SafetensorError, ValueError, OSError) as e:
        raise CheckpointError(f"{state_path}: not a valid safetensors file ({e})") from None
    return arrays, meta


# -- callbacks' states: JSON with the arrays set aside -------------------------
def split_arrays(obj: Any, prefix: str, arrays: dict[str, np.ndarray]) -> Any:
    """``obj`` with every array replaced by ``{"__array__": key}``; the arrays go in ``arrays``."""
    if hasattr(obj, "shape") and hasattr(obj, "dtype") and not isinstance(obj, (np.generic, float, int)):
        key = f"{prefix}/{len([k for k in arrays if k.startswith(prefix + '/')]):04d}"
        arrays[key] = np.asarray(obj)
        return {"__array__": key}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {str(k): split_arrays(v, prefix, arrays) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [split_arrays(v, prefix, arrays) for v in obj]
    return obj


def join_arrays(obj: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    """Inverse of :func:`split_arrays`."""
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            key = obj["__array__"]
            if key not in arrays:
                raise CheckpointError(f"{where}: tensor {key!r} is missing")
            return arrays[key]
        return {k: join_arrays(v, arrays, where) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_arrays(v, arrays, where) for v in obj]
    return obj
