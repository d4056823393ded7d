"""The IDX format (LeCun's MNIST files): read, validate, checksum.

Header: two zero bytes, a type byte, the number of dimensions, then each
dimension as a big-endian uint32; then the values, row-major, big-endian.
Every header is checked against the file's real size before any array is
made, so a crafted header cannot make us allocate what the file doesn't hold.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from deepfit.errors import DataError
from deepfit.io import file_digest

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# Gunzip at most this much: a crafted gzip (a "zip bomb") cannot fill memory.
MAX_BYTES = 2 * 1024**3


def _gunzip(raw: bytes, path: Path, limit: int) -> bytes:
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(raw, limit + 1)
    except zlib.error as e:
        raise DataError(f"{path}: corrupted gzip data ({e}); download or copy the file again") from None
    if len(out) > limit:
        raise DataError(f"{path}: decompresses to more than {limit:,} bytes; not an IDX file deepfit will read")
    if not d.eof:
        raise DataError(f"{path}: truncated gzip file (it ends before its data does); download or copy it again")
    return out


def parse_idx(data: bytes, path: Path | str = "<bytes>") -> np.ndarray:
    """An array from the bytes of an (uncompressed) IDX file."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    dtype, ndim = np.dtype(_TYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DataError(f"{path}: IDX header is truncated or declares {ndim} dimensions")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if expected != len(data) - header:
        raise DataError(
            f"{path}: IDX header says shape {shape} ({expected:,} bytes of data) "
            f"but the file holds {len(data) - header:,}; the file is truncated or corrupted"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | Path, limit: int = MAX_BYTES) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw (told apart by the gzip magic bytes)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"data file {str(p)!r} not found") from None
    except OSError as e:
        raise DataError(f"cannot read data file {str(p)!r}: {e}") from None
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip(raw, p, limit)
    return parse_idx(raw, p)


def read_sums(path: str | Path) -> dict[str, str]:
    """``SHA256SUMS`` lines ``<hex>  <name>`` → {name: hex} (annotated lines are skipped).

    ``sha256sum -b`` marks binary mode with ``*name``; the mark is not part of the name.
    """
    sums = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].removeprefix("*")] = parts[0]
    return sums


def verify(path: str | Path, expected: str, algorithm: str = "sha256") -> None:
    got = file_digest(path, algorithm)
    if got != expected.lower():
        raise DataError(
            f"{path}: {algorithm} checksum mismatch (expected {expected}, got {got}); "
            "the file is corrupted or not the one expected: download or copy it again"
        )
