"""Where IDX data comes from: the bundled copy, a directory, a download, arrays."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from deepfit.data.idx import read_idx, read_sums, verify
from deepfit.errors import DataError
from deepfit.io import file_mode

# The official release's names, in the order the MD5s below are published.
PARTS = ("train_images", "train_labels", "test_images", "test_labels")
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
OFFICIAL_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
# Zalando's own bucket first; Keras's mirror (keras.datasets.fashion_mnist) as fallback.
MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
)


@dataclass
class RawData:
    """Unprepared arrays: images and integer labels, train and test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    origin: str = "arrays"

    def __post_init__(self):
        for xs, ys, part in ((self.x_train, self.y_train, "train"), (self.x_test, self.y_test, "test")):
            if xs is None and ys is None:
                continue
            if xs is None or ys is None or len(xs) != len(ys):
                raise DataError(
                    f"{part} images and labels must both be given with the same length, "
                    f"got {None if xs is None else len(xs)} and {None if ys is None else len(ys)}"
                )


def bundled_dir() -> Path:
    return Path(str(resources.files("deepfit.data") / "fashion_mnist"))


def _find(directory: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    raise DataError(
        f"{directory}: no {stem}(.gz) file; a data directory needs the four IDX files "
        f"{', '.join(FILES.values())} (gzipped or not)"
    )


def load_directory(path: str | Path, sums_file: str = "SHA256SUMS") -> RawData:
    """The four IDX files from a directory; a ``SHA256SUMS`` beside them is checked."""
    d = Path(path).expanduser()
    if not d.is_dir():
        raise DataError(f"data directory {str(d)!r} not found; set data.path to a folder of IDX files")
    files = {part: _find(d, FILES[part]) for part in PARTS}
    sums = read_sums(d / sums_file) if (d / sums_file).is_file() else {}
    for f in files.values():
        if f.name in sums:
            verify(f, sums[f.name])
    arrays = {part: read_idx(f) for part, f in files.items()}
    return RawData(
        arrays["train_images"], arrays["train_labels"], arrays["test_images"], arrays["test_labels"], origin=str(d)
    )


def directory_fingerprint(path: str | Path, sums_file: str = "SHA256SUMS") -> str | None:
    """What a data directory holds now, cheaply: each IDX file's (and the checksum list's) path, size,
    modification time and inode; None when the directory lacks its files (load_directory says why)."""
    d = Path(path).expanduser()
    try:
        files = [_find(d, FILES[part]) for part in PARTS]
        if (d / sums_file).is_file():
            files.append(d / sums_file)
        stats = [(str(f.resolve()), f.stat()) for f in files]
    except (DataError, OSError):
        return None
    return repr([(name, st.st_size, st.st_mtime_ns, st.st_ino) for name, st in stats])


def bundled_digest() -> str:
    """Names the bundled files exactly: the sha256 of their checksum list (checked on every load)."""
    import hashlib

    return hashlib.sha256((bundled_dir() / "SHA256SUMS").read_bytes()).hexdigest()


def load_bundled() -> RawData:
    """The Fashion-MNIST copy shipped with deepfit, its checksums verified."""
    raw = load_directory(bundled_dir())
    raw.origin = "fashion_mnist (bundled)"
    return raw


def default_cache_dir() -> Path:
    if os.environ.get("DEEPFIT_CACHE"):
        return Path(os.environ["DEEPFIT_CACHE"]).expanduser() / "fashion-mnist"
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "deepfit" / "fashion-mnist"


def download(
    cache_dir: str | Path | None = None,
    mirrors: Sequence[str] = MIRRORS,
    md5: dict[str, str] = OFFICIAL_MD5,
    timeout: float = 30.0,
) -> RawData:
    """The official files, from the first mirror that serves each one with the right MD5.

    Files already in the cache with the right checksum are not fetched again; a
    file is moved into the cache only once complete and verified.
    """
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the data cache {str(cache)!r}: {e}; set data.cache_dir") from None
    for name, digest in md5.items():
        target = cache / name
        if target.is_file():
            try:
                verify(target, digest, "md5")
                continue
            except DataError:
                target.unlink()
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response, tempfile.NamedTemporaryFile(
                    dir=cache, prefix=f".{name}.", delete=False
                ) as tmp:
                    shutil.copyfileobj(response, tmp)
                verify(tmp.name, digest, "md5")
                os.chmod(tmp.name, file_mode())  # NamedTemporaryFile's 0600 is no mode for a shared cache
                os.replace(tmp.name, target)
                break
            except (urllib.error.URLError, OSError, DataError) as e:
                errors.append(f"{url}: {e}")
                if "tmp" in locals() and os.path.exists(tmp.name):
                    os.unlink(tmp.name)
        else:
            raise DataError(
                f"could not download {name} from any mirror ({'; '.join(errors)}); without a network, "
                "use the bundled copy (data.source = 'fashion_mnist') or a directory of IDX files"
            )
    raw = load_directory(cache)
    raw.origin = f"download ({cache})"
    return raw
