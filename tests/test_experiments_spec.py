"""Experiment files: loading, seeds, and validation of every variant before anything runs."""

import pytest

from deepfit.errors import ConfigError
from deepfit.experiments.spec import load_experiment, parse_seeds
from experiment_fixtures import BASE, EXPERIMENT, write_experiment


def test_loads_base_relative_to_the_file_and_builds_each_run_config(tmp_path):
    path = write_experiment(tmp_path / "sweeps")
    exp = load_experiment(path)
    assert [v.name for v in exp.variants] == ["relu", "selu", "elu"]
    assert exp.seeds == [0, 1, 2, 3, 4] and exp.reference == "relu"
    cfg = exp.config("selu", 3)
    assert cfg.seed == 3
    assert cfg.model.layers[1]["activation"] == "selu"
    assert cfg.model.layers[1]["kernel_initializer"] == "lecun_normal"
    assert exp.config("relu", 0).model.layers[1]["activation"] == "relu"  # the base untouched by selu's overrides
    assert len(exp.runs()) == 15


def test_inline_base_seed_count_shared_overrides_and_cli_seeds():
    import tomllib

    tree = {"base": tomllib.loads(BASE), "seeds": 3, "overrides": {"training.epochs": 1},
            "variants": [{"name": "a"}, {"name": "b", "overrides": {"training.batch_size": 20}}]}
    exp = load_experiment(tree)
    assert exp.seeds == [0, 1, 2]
    assert exp.config("b", 0).training.epochs == 1 and exp.config("b", 0).training.batch_size == 20
    assert load_experiment(tree, seeds="0,5,9").seeds == [0, 5, 9]
    assert load_experiment(tree, seeds=2, overrides=["training.epochs=4"]).config("a", 1).training.epochs == 4
    assert parse_seeds("4") == [0, 1, 2, 3]


def test_invalid_override_names_the_variant_and_the_path(tmp_path):
    bad = EXPERIMENT + '[[variants]]\nname = "typo"\noverrides = { "model.layers.1.activation" = "rellu" }\n'
    with pytest.raises(ConfigError) as e:
        load_experiment(write_experiment(tmp_path, bad))
    msg = str(e.value)
    assert "'typo'" in msg and "model.layers.1.activation" in msg and "rellu" in msg
    bad = EXPERIMENT + '[[variants]]\nname = "neg"\noverrides = { "training.epochs" = -1 }\n'
    with pytest.raises(ConfigError, match=r"variant 'neg'.*training\.epochs"):
        load_experiment(write_experiment(tmp_path, bad))
    bad = EXPERIMENT + '[[variants]]\nname = "idx"\noverrides = { "model.layers.9.units" = 3 }\n'
    with pytest.raises(ConfigError, match=r"variant 'idx'.*model\.layers\.9\.units"):
        load_experiment(write_experiment(tmp_path, bad))


@pytest.mark.parametrize("text, match", [
    ('base = "base.toml"\n', "at least one"),
    ('base = "base.toml"\nseeds = []\n[[variants]]\nname = "a"\n', "seeds"),
    ('base = "base.toml"\nseeds = [1, 1]\n[[variants]]\nname = "a"\n', "distinct"),
    ('base = "base.toml"\n[[variants]]\nname = "a"\n[[variants]]\nname = "a"\n', "unique"),
    ('base = "base.toml"\n[[variants]]\nname = "../x"\n', "directory"),
    ('base = "base.toml"\nreference = "zz"\n[[variants]]\nname = "a"\n', "reference"),
    ('base = "base.toml"\nvariant = 1\n[[variants]]\nname = "a"\n', "unknown key 'variant'"),
    ('base = "missing.toml"\n[[variants]]\nname = "a"\n', "not found"),
    ('base = "base.toml"\n[[variants]]\nname = "a"\noverride = {}\n', "unknown key 'override'"),
])
def test_bad_experiment_files_give_one_clear_error(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_experiment(write_experiment(tmp_path, text))


def test_the_activations_sweep_file_validates():
    from pathlib import Path

    exp = load_experiment(Path(__file__).parents[1] / "configs" / "sweeps" / "activations.toml")
    assert [v.name for v in exp.variants] == ["relu", "elu", "selu", "leaky_relu"] and exp.seeds == [0, 1, 2, 3, 4]
    selu = exp.config("selu", 0).model.layers
    assert [(l["activation"], l["kernel_initializer"]) for l in selu[1:3]] == [("selu", "lecun_normal")] * 2
    assert [l["units"] for l in selu if l["type"] == "dense"] == [300, 100, 10]
    leaky = exp.config("leaky_relu", 0).model.layers
    assert [l["type"] for l in leaky] == ["flatten", "dense", "leaky_relu", "dense", "leaky_relu", "dense"]
