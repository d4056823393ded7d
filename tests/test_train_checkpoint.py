"""Checkpoint files: atomic under a crash at every file operation; corruption named, never run."""

from __future__ import annotations

import hashlib
import json
import os
import pickle

import numpy as np
import pytest

from deepfit.errors import CheckpointError
from deepfit.train import checkpoint as ck


class Crash(BaseException):
    """Stands for the process dying: nothing may catch it."""


def arrays(step: int) -> dict[str, np.ndarray]:
    return {"state/step": np.asarray(step, np.int32), "state/trainable/0000": np.full((3, 2), step, np.float32)}


def meta(step: int) -> dict:
    return {"history": [{"epoch": step, "loss": 0.5}], "callbacks": []}


def test_round_trip_and_only_newest_kept(tmp_path):
    for step in (3, 6, 9):
        ck.write_checkpoint(tmp_path, step, arrays(step), meta(step))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-0000000009", "latest.json"]
    got, m = ck.read_checkpoint(ck.latest_checkpoint(tmp_path))
    np.testing.assert_array_equal(got["state/trainable/0000"], np.full((3, 2), 9, np.float32))
    assert got["state/step"].shape == () and got["state/step"].dtype == np.int32
    assert m["step"] == 9 and m["history"] == [{"epoch": 9, "loss": 0.5}]


def _crash_on_call(monkeypatch, k: int):
    """Make the k-th file-system operation of a checkpoint write kill the 'process'."""
    calls = {"n": 0}

    def wrap(fn):
        def inner(*a, **kw):
            calls["n"] += 1
            if calls["n"] == k:
                raise Crash(f"killed at operation {k}")
            return fn(*a, **kw)
        return inner

    for name in ("_write_synced", "fsync_dir", "write_atomic", "_discard"):
        monkeypatch.setattr(ck, name, wrap(getattr(ck, name)))
    monkeypatch.setattr(ck.os, "rename", wrap(os.rename))
    return calls


def test_a_crash_at_any_operation_leaves_a_whole_checkpoint(tmp_path, monkeypatch):
    # Count the operations one write makes, then crash at each of them in turn.
    probe = tmp_path / "probe"
    ck.write_checkpoint(probe, 1, arrays(1), meta(1))
    calls = _crash_on_call(monkeypatch, k=10**9)
    ck.write_checkpoint(probe, 2, arrays(2), meta(2))
    total = calls["n"]
    monkeypatch.undo()
    assert total >= 7  # 3 files, dir fsyncs, rename, pointer, removal of the old one
    for k in range(1, total + 1):
        d = tmp_path / f"k{k}"
        ck.write_checkpoint(d, 5, arrays(5), meta(5))
        _crash_on_call(monkeypatch, k)
        with pytest.raises(Crash):
            ck.write_checkpoint(d, 8, arrays(8), meta(8))
        monkeypatch.undo()
        latest = ck.latest_checkpoint(d)
        got, m = ck.read_checkpoint(latest)  # complete and verified: the old one or the new one
        assert m["step"] in (5, 8)
        np.testing.assert_array_equal(got["state/step"], np.asarray(m["step"], np.int32))
        # The next write after the 'restart' succeeds and cleans up what the crash left.
        ck.write_checkpoint(d, 11, arrays(11), meta(11))
        assert sorted(p.name for p in d.iterdir()) == ["ckpt-0000000011", "latest.json"], k


def test_without_pointer_the_newest_complete_checkpoint_is_found(tmp_path):
    ck.write_checkpoint(tmp_path, 4, arrays(4), meta(4))
    (tmp_path / "latest.json").unlink()
    (tmp_path / ".tmp-ckpt-0000000099-1").mkdir()  # an unfinished write is never taken
    assert ck.latest_checkpoint(tmp_path).name == "ckpt-0000000004"
    (tmp_path / "latest.json").write_text("{not json")
    assert ck.latest_checkpoint(tmp_path).name == "ckpt-0000000004"


def _rewrite_manifest(folder):
    manifest = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in (ck.STATE_FILE, ck.META_FILE)}
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def saved(tmp_path):
    return ck.write_checkpoint(tmp_path / "c", 7, arrays(7), meta(7))


def test_flipped_byte_is_a_checksum_error_naming_the_file(saved):
    path = saved / ck.STATE_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"state\.safetensors: sha256 does not match"):
        ck.read_checkpoint(saved)


def test_missing_file_is_named(saved):
    (saved / ck.META_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"meta\.json: listed in the manifest but missing"):
        ck.read_checkpoint(saved)


def test_manifest_that_drops_a_file_is_refused(saved):
    (saved / "manifest.json").write_text(json.dumps({}))
    with pytest.raises(CheckpointError, match="does not list state.safetensors"):
        ck.read_checkpoint(saved)


def test_truncated_safetensors_is_named_even_with_a_matching_manifest(saved):
    path = saved / ck.STATE_FILE
    path.write_bytes(path.read_bytes()[:-10])
    _rewrite_manifest(saved)
    with pytest.raises(CheckpointError, match=r"state\.safetensors: not a valid safetensors file"):
        ck.read_checkpoint(saved)


def test_huge_safetensors_header_is_refused_without_allocating(saved):
    path = saved / ck.STATE_FILE
    path.write_bytes((2**62).to_bytes(8, "little") + b"{}")
    _rewrite_manifest(saved)
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        ck.read_checkpoint(saved)


class Payload:
    """Unpickling this would create a file: the proof that something ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_payload_posing_as_a_checkpoint_runs_nothing(saved, tmp_path):
    marker = tmp_path / "PWNED"
    (saved / ck.STATE_FILE).write_bytes(pickle.dumps(Payload(marker)))
    _rewrite_manifest(saved)  # an attacker can recompute digests: they catch accidents, not malice
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        ck.read_checkpoint(saved)
    assert not marker.exists()
    # the control: the payload really would have run
    pickle.loads((saved / ck.STATE_FILE).read_bytes()).close()
    assert marker.exists()


def test_manifest_path_outside_the_checkpoint_is_refused(saved, tmp_path):
    (saved / "manifest.json").write_text(json.dumps({"../../etc/passwd": "0" * 64, ck.STATE_FILE: "0"}))
    with pytest.raises(CheckpointError, match="outside the run directory"):
        ck.read_checkpoint(saved)


def test_meta_from_another_format_is_refused(saved):
    (saved / ck.META_FILE).write_text(json.dumps({"format": "something-else"}))
    _rewrite_manifest(saved)
    with pytest.raises(CheckpointError, match=r"meta\.json: not a deepfit-checkpoint-3 file"):
        ck.read_checkpoint(saved)


def test_a_checkpoint_of_the_old_positional_format_says_to_rerun(saved):
    (saved / ck.META_FILE).write_text(json.dumps({"format": "deepfit-checkpoint-1"}))
    _rewrite_manifest(saved)
    with pytest.raises(CheckpointError, match=r"a deepfit-checkpoint-1 checkpoint, which this deepfit "
                                              r"\(deepfit-checkpoint-3\) cannot continue; rerun"):
        ck.read_checkpoint(saved)


def test_split_and_join_arrays_round_trip():
    store: dict = {}
    obj = {"best": 0.25, "w": [np.arange(3.0), np.ones((2, 2), np.float32)], "n": np.int64(4), "none": None}
    encoded = ck.split_arrays(obj, "callback/000", store)
    text = json.dumps(encoded)
    back = ck.join_arrays(json.loads(text), store, "here")
    assert back["best"] == 0.25 and back["n"] == 4 and back["none"] is None
    np.testing.assert_array_equal(back["w"][0], np.arange(3.0))
    with pytest.raises(CheckpointError, match="tensor 'callback/000/0001' is missing"):
        ck.join_arrays(json.loads(text), {k: v for k, v in store.items() if not k.endswith("1")}, "here")
