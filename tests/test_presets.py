"""Tables 11-3 and 11-4 as presets: what they build, that they load and train, and ``deepfit new``."""

import tomllib

import keras
import pytest

from deepfit.cli import main
from deepfit.config import load_config
from deepfit.errors import ConfigError
from deepfit.experiments.reproduce import configs_dir
from deepfit.nn.build import build_model
from deepfit.presets import DEEP_FROM, render


def model_of(text):
    cfg = load_config(tomllib.loads(text))
    return cfg, build_model(cfg.model, seed=0)


def dense(model):
    return [l for l in model.layers if isinstance(l, keras.layers.Dense)]


def test_default_shallow_is_the_notebooks_network_with_table_11_3s_choices():
    cfg, model = model_of(render("default", 2))
    # 784-300-100-10: (784*300 + 300) + (300*100 + 100) + (100*10 + 10)
    assert model.count_params() == 235_500 + 30_100 + 1_010
    hidden = dense(model)[:-1]
    assert [l.units for l in hidden] == [300, 100]
    assert all(isinstance(l.kernel_initializer, keras.initializers.HeNormal) for l in hidden)
    assert all(l.activation.__name__ == "elu" for l in hidden)
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in model.layers)  # shallow: none
    assert cfg.data.scaling == "standardize"
    assert cfg.training.optimizer["name"] == "sgd" and cfg.training.optimizer["momentum"] == 0.9
    assert cfg.training.schedule["name"] == "one_cycle"
    assert cfg.training.callbacks[0]["name"] == "early_stopping"


def test_default_deep_adds_batch_norm_after_each_hidden_layer():
    _, model = model_of(render("default", 20))
    bn = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(bn) == 20 and len(dense(model)) == 21
    # dense: 235,500 + 30,100 + 18 * 10,100 + 1,010; BN: 4 per unit (300 + 19 * 100 units), half non-trainable
    assert model.count_params() == 235_500 + 30_100 + 18 * 10_100 + 1_010 + 4 * (300 + 19 * 100)
    assert sum(v.numpy().size for v in model.non_trainable_weights) == 2 * (300 + 19 * 100)
    _, plain = model_of(render("default", 20, batch_norm=False))
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in plain.layers)
    assert len(dense(plain)) == 21
    assert DEEP_FROM <= 20


def test_self_normalizing_is_lecun_selu_without_normalization_at_any_depth():
    for depth in (2, 20):
        cfg, model = model_of(render("self_normalizing", depth))
        hidden = dense(model)[:-1]
        assert len(hidden) == depth
        assert all(isinstance(l.kernel_initializer, keras.initializers.LecunNormal) for l in hidden)
        assert all(l.activation.__name__ == "selu" for l in hidden)
        assert not any(isinstance(l, keras.layers.BatchNormalization) for l in model.layers)
        assert cfg.data.scaling == "standardize"
    _, deep = model_of(render("self_normalizing", 20))
    assert deep.count_params() == 235_500 + 30_100 + 18 * 10_100 + 1_010
    with pytest.raises(ConfigError, match="no batch norm"):
        render("self_normalizing", 20, batch_norm=True)


def test_every_choice_names_the_row_it_follows():
    text = render("default", 20)
    for row in ("kernel initializer", "activation function", "normalization", "regularization", "optimizer",
                "learning rate schedule"):
        assert f"Table 11-3, {row}" in text
    for row in ("kernel initializer", "activation function", "normalization", "regularization", "optimizer",
                "learning rate schedule"):
        assert f"Table 11-4, {row}" in render("self_normalizing", 2)
    assert "normalize the input features" in text


def test_shipped_preset_files_are_what_deepfit_new_writes():
    for path, args in [("presets/default.toml", ("default", 2)), ("presets/self_normalizing.toml",
                       ("self_normalizing", 2)), ("presets/default_20.toml", ("default", 20)),
                       ("presets/self_normalizing_20.toml", ("self_normalizing", 20)),
                       ("baselines/default_20_no_bn.toml", ("default", 20, False))]:
        assert (configs_dir() / path).read_text() == render(*args), path


def test_bad_presets_and_depths_fail_with_the_fix():
    with pytest.raises(ConfigError, match="Did you mean 'default'"):
        render("defualt")
    with pytest.raises(ConfigError, match="--depth"):
        render("default", 0)


def test_deepfit_new_writes_lists_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "deep.toml"
    assert main(["new", "default", "--depth", "12", "--out", str(out)]) == 0
    assert out.read_text() == render("default", 12)
    assert main(["new", "default", "--out", str(out)]) == 2  # exists
    assert main(["new", "default", "--out", str(out), "--force"]) == 0
    assert out.read_text() == render("default", 2)
    capsys.readouterr()
    assert main(["new", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "default" in listed and "self_normalizing" in listed and "Table 11-4" in listed


def test_a_preset_trains_as_it_is(tmp_path):
    from deepfit.run import train

    for name in ("default", "self_normalizing"):
        path = tmp_path / f"{name}.toml"
        assert main(["new", name, "--out", str(path)]) == 0
        run = train(path, overrides={"data.train_size": 256, "data.validation_size": 256, "training.epochs": 1,
                                     "training.progress": False}, save=False)
        assert run.final["status"] == "completed"
        assert 0.0 <= float(run.history["val_accuracy"].iloc[-1]) <= 1.0
