import gzip
import hashlib
import http.server
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

import deepfit as df
from deepfit.config import DataConfig
from deepfit.data.idx import parse_idx, read_idx
from deepfit.data.sources import FILES, bundled_dir, download, load_directory
from deepfit.errors import DataError


def idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_set(directory: Path, n_train=50, n_test=10, gz=True) -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    parts = {
        "train_images": rng.integers(0, 256, (n_train, 4, 4), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 4, 4), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    written = {}
    for part, arr in parts.items():
        data = idx_bytes(arr)
        name = FILES[part] + (".gz" if gz else "")
        payload = gzip.compress(data, mtime=0) if gz else data
        (directory / name).write_bytes(payload)
        written[name] = payload
    return written


def test_idx_round_trip_and_dtypes():
    for arr in (np.arange(24, dtype=np.uint8).reshape(2, 3, 4), np.array([-5, 7], np.int32),
                np.linspace(0, 1, 6, dtype=np.float32).reshape(3, 2)):
        out = parse_idx(idx_bytes(arr))
        assert out.dtype == arr.dtype and np.array_equal(out, arr)


def test_idx_rejects_bad_magic_and_wrong_sizes(tmp_path):
    good = idx_bytes(np.zeros((3, 2, 2), np.uint8))
    with pytest.raises(DataError, match="bad magic"):
        parse_idx(b"\x01\x00" + good[2:])
    with pytest.raises(DataError, match="truncated or corrupted"):
        parse_idx(good[:-1])
    # A header claiming 4 billion images must fail on the size check, not allocate.
    huge = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**32 - 1, 28, 28) + b"\x00" * 100
    with pytest.raises(DataError, match="truncated or corrupted"):
        parse_idx(huge)


def test_truncated_gzip_is_named(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((100, 4), np.uint8)))[:-12])
    with pytest.raises(DataError, match=r"x\.gz: truncated gzip"):
        read_idx(path)
    path.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(DataError, match="corrupted gzip"):
        read_idx(path)


def test_bundled_copy_verifies_and_has_the_official_shapes():
    raw = df.data.sources.load_bundled()
    assert raw.x_train.shape == (60000, 28, 28) and raw.x_test.shape == (10000, 28, 28)
    assert raw.x_train.dtype == np.uint8 and sorted(np.unique(raw.y_train)) == list(range(10))
    assert np.bincount(raw.y_train).tolist() == [6000] * 10
    assert (bundled_dir() / "LICENSE").is_file()


def test_directory_checksum_mismatch_names_the_file(tmp_path):
    written = write_set(tmp_path)
    name = FILES["train_labels"] + ".gz"
    sums = {n: hashlib.sha256(b).hexdigest() for n, b in written.items()}
    sums[name] = "0" * 64
    (tmp_path / "SHA256SUMS").write_text("".join(f"{h}  {n}\n" for n, h in sums.items()))
    with pytest.raises(DataError, match=f"{name}: sha256 checksum mismatch"):
        load_directory(tmp_path)


def test_directory_raw_and_missing_files(tmp_path):
    write_set(tmp_path, gz=False)
    raw = load_directory(tmp_path)
    assert raw.x_train.shape == (50, 4, 4)
    (tmp_path / FILES["test_labels"]).unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_directory(tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_directory(tmp_path / "nowhere")


def test_split_and_standardize_use_training_statistics_only():
    x = np.arange(20 * 2 * 2, dtype=np.uint8).reshape(20, 2, 2)
    y = np.arange(20) % 2
    data = df.load_data({"source": "arrays", "validation_size": 5, "train_size": 10, "scaling": "standardize"},
                        arrays=((x, y), (x[:3], y[:3])))
    assert np.array_equal(data.y_valid, y[:5]) and np.array_equal(data.y_train, y[5:15])
    train = x[5:15] / 255.0
    mean, std = train.mean(0), train.std(0)
    np.testing.assert_allclose(data.x_train, (train - mean) / std, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data.x_valid, (x[:5] / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(data.x_test, (x[:3] / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(data.x_train.mean(0), 0, atol=1e-5)


def test_validation_size_too_large():
    x = np.zeros((10, 2), np.uint8)
    with pytest.raises(DataError, match="validation_size"):
        df.load_data({"source": "arrays", "validation_size": 10}, arrays=((x, np.zeros(10, int)),))


class _Server:
    def __init__(self, directory: Path):
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(directory), **k)  # noqa: E731
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.requests = 0
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def test_download_checks_md5_falls_back_and_caches(tmp_path):
    served, broken = tmp_path / "mirror", tmp_path / "broken"
    served.mkdir(), broken.mkdir()
    written = write_set(served)
    md5 = {n: hashlib.md5(b).hexdigest() for n, b in written.items()}
    for name, payload in written.items():  # the first mirror serves corrupted files
        (broken / name).write_bytes(payload[:-5] + b"xxxxx")
    good, bad = _Server(served), _Server(broken)
    try:
        cache = tmp_path / "cache"
        raw = download(cache, mirrors=[bad.url, "http://127.0.0.1:9/", good.url], md5=md5, timeout=5)
        assert raw.x_train.shape == (50, 4, 4)
        assert sorted(p.name for p in cache.iterdir()) == sorted(written)
        good.close()
        bad.close()
        again = download(cache, mirrors=[good.url], md5=md5, timeout=1)  # served from the cache
        assert np.array_equal(again.x_train, raw.x_train)
    finally:
        good.close(), bad.close()


def test_download_fails_clearly_when_no_mirror_has_the_file(tmp_path):
    served = tmp_path / "mirror"
    served.mkdir()
    written = write_set(served)
    md5 = {n: "0" * 32 for n in written}
    srv = _Server(served)
    try:
        with pytest.raises(DataError, match="could not download .* from any mirror"):
            download(tmp_path / "cache", mirrors=[srv.url], md5=md5, timeout=5)
        assert not any(p.name.endswith(".gz") for p in (tmp_path / "cache").iterdir())
    finally:
        srv.close()


def test_directory_source_needs_a_path():
    with pytest.raises(Exception, match="path"):
        DataConfig(source="directory")
