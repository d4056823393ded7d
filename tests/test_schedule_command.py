"""`deepfit schedule`, `deepfit find-lr`, the figures, and the five schedule configs validate."""

from pathlib import Path

import deepfit as df  # noqa: F401
import numpy as np
import pandas as pd
import pytest

from deepfit.cli import main
from deepfit.config import load_config
from deepfit.optim.figures import plot_plateau

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name, schedule, optimizer", [
    ("power", "power", "sgd"), ("exponential", "exponential", "nadam"),
    ("piecewise", "piecewise_constant", "nadam"), ("plateau", None, "sgd"), ("one_cycle", "one_cycle", "sgd"),
])
def test_schedule_configs_validate_as_the_notebook(name, schedule, optimizer):
    cfg = load_config(CONFIGS / f"{name}.toml")
    assert cfg.training.epochs == 25 and cfg.data.scaling == "standardize"
    assert [layer.get("units") for layer in cfg.model.layers] == [None, 300, 100, 10]
    assert (cfg.training.schedule or {}).get("name") == schedule
    assert cfg.training.optimizer["name"] == optimizer
    assert cfg.training.batch_size == (128 if name == "one_cycle" else 32)


def test_schedule_command_writes_a_png(tmp_path, capsys):
    out = tmp_path / "oc.png"
    assert main(["schedule", str(CONFIGS / "one_cycle.toml"), "training.schedule.cycle_momentum=true",
                 "--steps-per-epoch", "430", "--out", str(out)]) == 0
    assert out.read_bytes().startswith(PNG)
    assert "one_cycle: 25 epochs x 430 steps" in capsys.readouterr().out


def test_schedule_command_bad_config_exits_2(tmp_path, capsys):
    assert main(["schedule", str(CONFIGS / "power.toml"), "training.schedule.c=-1", "--steps-per-epoch", "10",
                 "--out", str(tmp_path / "x.png")]) == 2
    assert "c must be a positive number" in capsys.readouterr().err


def test_plateau_figure_from_metrics_csv(tmp_path):
    csv = tmp_path / "metrics.csv"
    pd.DataFrame({"epoch": np.arange(1, 11), "learning_rate": [0.02] * 6 + [0.01] * 4,
                  "val_loss": np.linspace(0.5, 0.3, 10)}).to_csv(csv, index=False)
    assert main(["schedule", str(tmp_path), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes().startswith(PNG)
    with pytest.raises(df.DataError, match="val_loss"):
        plot_plateau(pd.DataFrame({"epoch": [1], "learning_rate": [0.1]}), tmp_path / "q.png")


@pytest.mark.slow
def test_find_lr_command_apply(tmp_path, capsys):
    code = main(["find-lr", str(CONFIGS / "power.toml"), "data.train_size=2000", "data.validation_size=500",
                 "--steps", "40", "--min-rate", "1e-4", "--max-rate", "1", "--out", str(tmp_path), "--apply"])
    printed = capsys.readouterr().out
    assert (tmp_path / "lr_finder.png").read_bytes().startswith(PNG)
    if code == 0:
        suggested = load_config(tmp_path / "power-lr.toml").training.optimizer["learning_rate"]
        assert f"{suggested:.4g}" in printed
    else:  # no suggestion: said so, nothing applied
        assert code == 1 and "no suggestion" in printed and not (tmp_path / "power-lr.toml").exists()
