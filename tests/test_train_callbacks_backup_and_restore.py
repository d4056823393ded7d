"""BackupAndRestore: a run crashed anywhere and resumed ends byte-identical to one never stopped."""

from __future__ import annotations

import json

import pytest
from reliability_fixtures import tiny_arrays, tiny_config

import deepfit as df
from deepfit.errors import CheckpointError, ConfigError
from deepfit.train.callbacks import make_callback
from deepfit.train.callbacks.backup_and_restore import BackupAndRestore
from deepfit.train.events import Callback


class Crash(BaseException):
    """Stands for the process dying (nothing catches it)."""


class CrashAt(Callback):
    """Kill the 'process' at the end of the chunk that reaches ``step`` (after checkpoints ran)."""

    order = 2000

    def __init__(self, step: int):
        self.step = step

    def on_chunk_end(self, trainer, chunk):
        if chunk.stop >= self.step:
            raise Crash(self.step)


def config(**training):
    return tiny_config(epochs=3, callbacks=[
        {"name": "early_stopping", "patience": 50, "restore_best_weights": True},
        {"name": "backup_and_restore", "save_freq": 4},
    ], **training)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    df.train(config(), out, data=tiny_arrays())
    return out


def same_files(a, b):
    # (not model.json: its Input layer is named from a per-process counter, "input_layer_<n>")
    for name in ("weights.safetensors", "metrics.csv", "config.toml"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.slow
@pytest.mark.parametrize("crash_step", [6, 19, 41])  # mid-epoch 1, mid-epoch 1 after a remainder, epoch 3
def test_crash_then_resume_is_byte_identical(reference, tmp_path, crash_step):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        df.train(config(), out, data=tiny_arrays(), callbacks=[CrashAt(crash_step)])
    assert not (out / "manifest.json").exists()
    run = df.train(config(), out, data=tiny_arrays(), resume=True)
    assert run.resume_note.startswith("resumed from")
    assert run.final["status"] == "completed"
    same_files(reference, out)
    assert not (out / "checkpoints").exists()  # delete_checkpoint: the finished run needs none
    assert [r["epoch"] for r in run.history_rows] == [1, 2, 3]


@pytest.mark.slow
def test_crash_after_training_before_the_model_is_saved(reference, tmp_path, monkeypatch):
    out = tmp_path / "run"

    def die(*a, **k):
        raise Crash("killed while saving the model")

    monkeypatch.setattr("deepfit.run.save_model", die)
    with pytest.raises(Crash):
        df.train(config(), out, data=tiny_arrays())
    monkeypatch.undo()
    run = df.train(config(), out, data=tiny_arrays(), resume=True)
    assert run.final["status"] == "completed" and run.final["steps"] == 3 * 19
    same_files(reference, out)


@pytest.mark.slow
def test_resume_after_early_stopping_stopped_only_finishes(tmp_path, monkeypatch):
    cfg = tiny_config(epochs=6, callbacks=[{"name": "early_stopping", "monitor": "val_accuracy", "patience": 0,
                                            "min_delta": 0.5, "restore_best_weights": True}])
    ref = df.train(cfg, tmp_path / "ref", data=tiny_arrays())
    assert ref.final["status"] == "stopped"
    out = tmp_path / "run"
    monkeypatch.setattr("deepfit.run.save_model", lambda *a, **k: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        df.train(cfg, out, data=tiny_arrays())
    monkeypatch.undo()
    run = df.train(cfg, out, data=tiny_arrays(), resume=True)
    assert run.final["status"] == "stopped" and run.final["stop_reason"] == ref.final["stop_reason"]
    assert run.final["epochs_run"] == ref.final["epochs_run"]
    same_files(tmp_path / "ref", out)


def test_resume_a_finished_run_does_nothing(reference):
    before = {p.name: p.stat().st_mtime_ns for p in reference.iterdir()}
    run = df.train(config(), reference, data=tiny_arrays(), resume=True)
    assert "already finished (completed); nothing to do" in run.resume_note
    assert {p.name: p.stat().st_mtime_ns for p in reference.iterdir()} == before


def test_resume_with_a_different_config_fails_naming_the_difference(reference):
    # (more epochs alone extend a finished run: tests/test_keras_language.py)
    with pytest.raises(ConfigError, match=r"training\.batch_size: 32 in the run, 16 given"):
        df.train(config(), reference, data=tiny_arrays(), resume=True, overrides=["training.batch_size=16"])


def test_resume_of_a_missing_directory_starts_the_run(tmp_path):
    run = df.train(tiny_config(epochs=1), tmp_path / "new", data=tiny_arrays(), resume=True)
    # Said, not silent: a mistyped --out would otherwise look like a resume of the intended run.
    assert run.final["status"] == "completed"
    assert run.resume_note == f"--resume: no run in {str(tmp_path / 'new')!r} yet; starting a new one there"


def test_checkpoint_is_on_by_default_and_holds_the_whole_state(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        df.train(tiny_config(epochs=3), out, data=tiny_arrays(), callbacks=[CrashAt(40)])
    pointer = json.loads((out / "checkpoints" / "latest.json").read_text())
    assert pointer == {"checkpoint": "ckpt-0000000038", "step": 38}  # end of epoch 2 (19 steps an epoch)
    meta = json.loads((out / "checkpoints" / pointer["checkpoint"] / "meta.json").read_text())
    assert [r["epoch"] for r in meta["history"]] == [1, 2]
    assert [c["class"] for c in meta["callbacks"]][0] == "TerminateOnNaN"


def test_a_checkpoint_for_other_data_is_refused(reference, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        df.train(config(), out, data=tiny_arrays(), callbacks=[CrashAt(10)])
    smaller = tiny_arrays(n_train=500)
    with pytest.raises(CheckpointError, match="steps an epoch"):
        df.train(config(), out, data=smaller, resume=True)


def test_save_freq_is_validated():
    for bad in (0, -3, "often", 2.5, True):
        with pytest.raises(ConfigError, match="save_freq"):
            make_callback({"name": "backup_and_restore", "save_freq": bad})
    assert make_callback({"name": "backup_and_restore", "save_freq": 7}).every_n_steps == 7
    assert BackupAndRestore().every_n_steps is None
