"""Atomic file writes and sha256 manifests.

A file is written to a temporary name in its folder, flushed to disk and
renamed over the target, so a reader (or a crash) sees the old file or the new
one, never half of one. Neither safetensors nor Keras notices a flipped byte,
so run directories carry a manifest of sha256 digests checked on load.

Files and folders get the modes a plain ``open`` or ``mkdir`` would give them under
the process's umask (``tempfile`` makes its names private, 0600 and 0700, which a
report meant to be shared or served must not keep).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from deepfit.errors import CheckpointError, StorageError

MANIFEST = "manifest.json"


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def storage_error(path: str | Path, e: OSError) -> StorageError:
    """A failed write as one line naming the file and the cause (ENOSPC, EDQUOT, EIO, ...)."""
    if isinstance(e, StorageError):
        return e
    code = errno.errorcode.get(e.errno or 0)
    err = StorageError(f"cannot write {path}: {e.strerror or e}{f' ({code})' if code else ''}")
    err.errno, err.filename = e.errno, str(path)
    return err


def umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and put back (not thread-safe, but only where /proc lacks it)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """What ``open(path, "w")`` would give a new file: 0666 less the umask."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    """What ``mkdir`` would give a new folder: 0777 less the umask."""
    return 0o777 & ~umask()


def make_temp_dir(parent: str | Path, prefix: str) -> Path:
    """A fresh folder in ``parent`` for a write that is renamed into place, with the umask's mode."""
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    os.chmod(tmp, dir_mode())
    return tmp


def write_atomic(path: str | Path, data: bytes | str) -> None:
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise storage_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), file_mode())
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)  # a full disk must not keep the half-written copy, which holds space too
        if isinstance(e, OSError):
            raise storage_error(path, e) from None
        raise
    fsync_dir(path.parent)


def fsync_dir(path: str | Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: str | Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def read_json(path: str | Path, what: str = "file") -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{what} {str(path)!r} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{what} {str(path)!r} is unreadable or not JSON: {e}") from None


def write_manifest(directory: str | Path, names: Iterable[str]) -> None:
    d = Path(directory)
    write_json(d / MANIFEST, {name: file_digest(d / name) for name in sorted(names)})


def add_to_manifest(directory: str | Path, paths: Iterable[str | Path]) -> list[str]:
    """List files written into a finished run after it ended (predictions, figures): the ones
    inside ``directory`` join its manifest, so it still names every file the run holds."""
    d = Path(directory).resolve()
    manifest = read_json(d / MANIFEST, "manifest")
    added = []
    for p in paths:
        p = Path(p).resolve()
        if p.is_relative_to(d):
            name = p.relative_to(d).as_posix()
            manifest[name] = file_digest(p)
            added.append(name)
    if added:
        write_json(d / MANIFEST, dict(sorted(manifest.items())))
    return added


def verify_manifest(directory: str | Path) -> dict[str, str]:
    """Check every file the manifest lists; one clear error naming the first bad file."""
    d = Path(directory)
    manifest = read_json(d / MANIFEST, "manifest")
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{d / MANIFEST}: not a manifest (expected a JSON object of file digests)")
    for name, digest in manifest.items():
        target = d / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise CheckpointError(f"{d / MANIFEST}: refuses a path outside the run directory: {name!r}")
        if not target.is_file():
            raise CheckpointError(f"{target}: listed in the manifest but missing")
        if file_digest(target) != digest:
            raise CheckpointError(
                f"{target}: sha256 does not match the manifest; the file was changed or corrupted"
            )
    return manifest
