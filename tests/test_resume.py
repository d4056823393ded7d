"""Which state a run directory is in for --resume; the config must match; debris is cleared."""

from __future__ import annotations

import json

import pytest
from reliability_fixtures import tiny_config, toml_text

import deepfit as df
from deepfit.errors import ConfigError
from deepfit.resume import config_differences, resume_status


@pytest.fixture
def cfg():
    return df.load_config(tiny_config())


def make_run(d, cfg, final=None):
    d.mkdir()
    (d / "config.toml").write_text(toml_text(cfg.to_dict()))
    if final is not None:
        (d / "final.json").write_text(json.dumps(final))
        (d / "manifest.json").write_text("{}")
    return d


def test_states(tmp_path, cfg):
    assert resume_status(tmp_path / "missing", cfg) == "fresh"
    (tmp_path / "empty").mkdir()
    assert resume_status(tmp_path / "empty", cfg) == "fresh"
    assert resume_status(make_run(tmp_path / "r", cfg), cfg) == "resumable"
    assert resume_status(make_run(tmp_path / "f", cfg, {"status": "completed"}), cfg) == "finished"


def test_not_a_run_directory(tmp_path, cfg):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="no config.toml"):
        resume_status(tmp_path / "other", cfg)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        resume_status(tmp_path / "file", cfg)
    with pytest.raises(ConfigError, match="needs --out"):
        resume_status(None, cfg)
    with pytest.raises(ConfigError, match="needs --out"):
        df.train(tiny_config(), save=False, resume=True)


def test_config_differences_name_each_key_and_ignore_progress(cfg):
    other = df.load_config(tiny_config(), ["training.progress=true", "training.batch_size=64", "seed=4"])
    assert config_differences(cfg, other) == ["seed: 3 in the run, 4 given",
                                              "training.batch_size: 32 in the run, 64 given"]
    assert config_differences(cfg, df.load_config(tiny_config(), ["training.progress=true"])) == []


def test_debris_of_a_killed_process_is_cleared(tmp_path, cfg):
    run = make_run(tmp_path / "r", cfg)
    (run / ".metrics.csv.abc123.tmp").write_text("half")
    (run / ".checkpoints.deleting").mkdir()
    (run / "checkpoints").mkdir()
    assert resume_status(run, cfg) == "resumable"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.toml"]  # the backup stays


@pytest.mark.parametrize("status, kept", [("completed", False), ("stopped", False), ("diverged", True)])
def test_a_finished_runs_backup_goes_unless_it_diverged(tmp_path, cfg, status, kept):
    run = make_run(tmp_path / "r", cfg, {"status": status})
    (run / "checkpoints" / "ckpt-0000000003").mkdir(parents=True)
    assert resume_status(run, cfg) == "finished"
    assert (run / "checkpoints").exists() == kept
