import math

import pytest

import deepfit as df
from deepfit.config import parse_override
from deepfit.errors import ConfigError
from tests.conftest import tiny_config


def test_loads_every_shipped_config():
    from pathlib import Path

    for path in sorted(Path("configs").glob("*.toml")):
        cfg = df.load_config(path)
        assert cfg.model.layers and cfg.training.epochs >= 1, path


def test_overrides_are_typed_by_toml():
    assert parse_override("training.epochs=5") == ("training.epochs", 5)
    assert parse_override("training.optimizer.learning_rate=1e-3") == ("training.optimizer.learning_rate", 1e-3)
    assert parse_override("data.scaling=standardize") == ("data.scaling", "standardize")
    assert parse_override("training.progress=false") == ("training.progress", False)
    cfg = df.load_config(tiny_config(), ["model.layers.1.units=7", "seed=9"])
    assert cfg.model.layers[1]["units"] == 7 and cfg.seed == 9


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model.layers.1.kernel_initializer=he_normall", "Did you mean 'he_normal'"),
        ("model.layers.1.activation=selux", "Did you mean 'selu'"),
        ("model.layers.1.type=dens", "Did you mean 'dense'"),
        ("model.layers.1.unitz=3", "Did you mean 'units'"),
        ("training.optimizer.name=nadm", "Did you mean 'nadam'"),
        ("training.optimizer.lr=0.1", "learning_rate"),
        ("training.epochs=-1", "training.epochs"),
        ("training.epochs='ten'", "training.epochs"),
        ("training.batch_size=0", "training.batch_size"),
        ("training.optimizer.learning_rate=inf", "learning_rate"),
        ("data.scaling=normalize", "data.scaling"),
        ("data.valdation_size=3", "unknown key"),
        ("model.layers.9.units=3", "not an index"),
        ("model.layers.1.kernel_regularizer={name='l3'}", "Did you mean 'l2'"),
    ],
)
def test_bad_values_name_the_field_and_the_fix(override, expected):
    with pytest.raises(ConfigError) as err:
        df.load_config(tiny_config(), [override])
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_inf_and_nan_are_refused():
    for value in (math.inf, math.nan):
        with pytest.raises(ConfigError):
            df.load_config(tiny_config(), {"training.optimizer.momentum": value})


def test_invalid_toml_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        df.load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        df.load_config(tmp_path / "missing.toml")


def test_resolved_config_round_trips(tmp_path):
    from deepfit.config import dump_toml

    cfg = df.load_config("configs/l2.toml")
    path = tmp_path / "again.toml"
    path.write_text(dump_toml(cfg))
    assert df.load_config(path) == cfg
