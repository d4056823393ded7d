"""Bad input, tried as a new user would: one clear line (or the obvious right behaviour), never a traceback."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from reliability_fixtures import FILES, tiny_config, toml_text, write_idx_dir

import deepfit as df
from deepfit.cli import main
from deepfit.errors import DataError
from deepfit.train.callbacks.early_stopping import EarlyStopping


@pytest.fixture
def cfg_path(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(toml_text(tiny_config(write_idx_dir(tmp_path / "data"), epochs=1)))
    return path


@pytest.mark.parametrize("resume", [False, True])
def test_out_naming_an_existing_empty_directory_trains_there(tmp_path, cfg_path, capsys, resume):
    out = tmp_path / "empty"
    out.mkdir()
    assert main(["train", str(cfg_path), "--out", str(out), "--no-progress"] + ["--resume"] * resume) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "FileExistsError" not in err
    assert json.loads((out / "final.json").read_text())["status"] == "completed"


def test_resume_on_a_missing_directory_says_it_starts_a_new_run(tmp_path, cfg_path, capsys):
    out = tmp_path / "typo"
    assert main(["train", str(cfg_path), "--out", str(out), "--no-progress", "--resume"]) == 0
    assert f"--resume: no run in {str(out)!r} yet; starting a new one there" in capsys.readouterr().err
    assert (out / "final.json").is_file()


def test_predict_on_a_file_says_it_is_a_file(tmp_path, capsys):
    f = tmp_path / "model.keras"
    f.write_bytes(b"not a run")
    assert main(["predict", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"deepfit: error: {str(f)!r} is a file, not a run directory; give the folder " \
                          "`deepfit train` wrote"


def _sums(directory, binary: bool) -> None:
    lines = []
    for name in FILES.values():
        f = directory / (name + ".gz")
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        lines.append(f"{digest} {'*' if binary else ' '}{f.name}\n")
    (directory / "SHA256SUMS").write_text("".join(lines))


@pytest.mark.parametrize("binary", [False, True])
def test_checksums_written_by_sha256sum_b_are_checked(tmp_path, binary):
    data = write_idx_dir(tmp_path / "data")
    _sums(data, binary)
    from deepfit.data.sources import load_directory

    assert len(load_directory(data).x_train) == 700  # intact files pass
    target = data / (FILES["train_labels"] + ".gz")
    raw = bytearray(target.read_bytes())
    raw[-1] ^= 1
    target.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=f"{target.name}: sha256 checksum mismatch"):
        load_directory(data)


class _Trainer:
    def __init__(self):
        self.stop_training, self.stop_reason = False, None


def test_early_stopping_counts_a_nan_validation_loss_toward_patience():
    es, t = EarlyStopping(patience=2), _Trainer()
    es.on_epoch_end(t, 0, {"val_loss": 1.0})
    es.on_epoch_end(t, 1, {"val_loss": float("nan")})
    assert not t.stop_training and es.wait == 1
    es.on_epoch_end(t, 2, {"val_loss": float("nan")})
    assert t.stop_training and es.best == 1.0
    assert t.stop_reason == "early stopping: val_loss has not improved for 2 epochs (best 1.0000 at epoch 1)"


def test_early_stopping_on_a_loss_that_is_nan_from_the_start_stops():
    es, t = EarlyStopping(patience=1), _Trainer()
    es.on_epoch_end(t, 0, {"val_loss": np.nan})
    assert t.stop_training and t.stop_reason == ("early stopping: val_loss has not improved for 1 epochs "
                                                 "(never finite)")


def test_interrupted_outside_a_run_mentions_resume(monkeypatch, capsys):
    import deepfit.commands.list as list_command

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(list_command, "run", interrupted)
    assert main(["list", "initializers"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("deepfit: interrupted;") and "--resume" in err
