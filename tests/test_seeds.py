"""Initialization, data order and dropout apart: what each seed of a run config drives."""

import deepfit as df  # first: it selects Keras's JAX backend

import keras
import numpy as np
import pytest

from deepfit.experiments.spec import Cell, load_experiment, parse_seeds
from deepfit.nn.build import build_model, reseed_noise
from deepfit.run import make_trainer
from deepfit.train.loop import Trainer
from experiment_fixtures import BASE, write_experiment
from tests.conftest import tiny_config


def dropout_config(**seeds):
    cfg = tiny_config()
    cfg["model"]["layers"].insert(2, {"type": "dropout", "rate": 0.5})
    cfg["model"]["layers"].insert(1, {"type": "dropout", "rate": 0.2})
    return df.load_config({**cfg, **seeds})


def states(model):
    return [np.asarray(l.seed_generator.state.value) for l in model.layers if getattr(l, "seed_generator", None)]


def weights(model):
    return [np.asarray(w) for w in model.get_weights()]


def built(cfg):
    model = build_model(cfg.model, seed=cfg.seed)
    if cfg.noise_seed is not None:
        reseed_noise(model, cfg.noise_seed)
    return model


def test_order_seed_sets_the_data_order_apart_from_the_initial_weights():
    a, b, plain = dropout_config(seed=1, order_seed=7), dropout_config(seed=2, order_seed=7), dropout_config(seed=1)
    ma, mb, mp = built(a), built(b), built(plain)
    order = lambda cfg, m: make_trainer(cfg, m, 19).epoch_order(3, 500)  # noqa: E731
    np.testing.assert_array_equal(order(a, ma), order(b, mb))  # same order seed, same batches
    np.testing.assert_array_equal(order(a, ma), Trainer(mp, keras.optimizers.SGD(), seed=7).epoch_order(3, 500))
    assert not np.array_equal(order(a, ma), order(plain, mp))  # plain seed 1 shuffles with 1
    for x, y in zip(weights(ma), weights(mp)):  # same init seed, same initial weights
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(weights(ma), weights(mb)))


def test_dropout_follows_the_order_seed_unless_set_and_plain_seeds_keep_their_meaning():
    a, b = built(dropout_config(seed=1, order_seed=7)), built(dropout_config(seed=2, order_seed=7))
    assert len(states(a)) == 2
    for x, y in zip(states(a), states(b)):  # different init, same order seed: same masks
        np.testing.assert_array_equal(x, y)
    c = built(dropout_config(seed=1, order_seed=8))
    assert not np.array_equal(states(a)[0], states(c)[0])
    own = built(dropout_config(seed=1, order_seed=7, dropout_seed=9))
    assert not np.array_equal(states(a)[0], states(own)[0])
    np.testing.assert_array_equal(states(own)[0], states(built(dropout_config(seed=5, order_seed=3,
                                                                               dropout_seed=9)))[0])
    # A plain seed: the masks come from the init seed's stream, exactly as before order seeds existed.
    plain = dropout_config(seed=1)
    assert plain.noise_seed is None and plain.data_order_seed == 1
    keras.utils.set_random_seed(1)
    np.testing.assert_array_equal(states(built(plain))[0], states(build_model(plain.model, seed=1))[0])


def test_crossed_runs_share_exactly_what_their_seeds_say(tiny_arrays):
    run = lambda **s: df.train({**tiny_config(epochs=1), **s}, data=tiny_arrays, save=False)  # noqa: E731
    a, again = run(seed=1, order_seed=7), run(seed=1, order_seed=7)
    assert a.history.drop(columns="seconds").equals(again.history.drop(columns="seconds"))
    b = run(seed=2, order_seed=7)
    assert a.history["val_loss"].iloc[0] != b.history["val_loss"].iloc[0]


def test_experiment_crosses_init_and_order_seeds(tmp_path):
    text = ('name = "x"\nbase = "base.toml"\n[seeds]\ninit = 2\norder = [5, 6, 7]\n'
            '[[variants]]\nname = "a"\n[[variants]]\nname = "b"\n'
            'overrides = { "model.layers.1.activation" = "elu" }\n')
    exp = load_experiment(write_experiment(tmp_path, text))
    assert exp.is_crossed and exp.seeds[:3] == [Cell(0, 5), Cell(0, 6), Cell(0, 7)] and len(exp.runs()) == 12
    cfg = exp.config("b", Cell(1, 6))
    assert (cfg.seed, cfg.order_seed, cfg.dropout_seed) == (1, 6, None)
    assert exp.to_dict()["seeds"] == {"init": [0, 1], "order": [5, 6, 7]}
    assert load_experiment(exp.to_dict()).seeds == exp.seeds  # experiment.json reads back the same cells
    assert str(Cell(1, 6)) == "i1-o6"
    assert parse_seeds("2x2") == [Cell(0, 0), Cell(0, 1), Cell(1, 0), Cell(1, 1)]
    plain = load_experiment(write_experiment(tmp_path / "p", 'base = "base.toml"\nseeds = 3\n[[variants]]\nname = "a"\n'))
    assert plain.seeds == [0, 1, 2] and plain.config("a", 2).order_seed is None  # plain seeds: today's meaning


@pytest.mark.parametrize("text, match", [
    ('[seeds]\ninit = 2\n', "missing key 'order'"),
    ('[seeds]\ninit = 2\norder = 2\nfoo = 1\n', "unknown key 'foo'"),
    ('[seeds]\ninit = [1, 1]\norder = 2\n', "distinct"),
    ('test = "auto"\nseeds = 5\n', "before any data"),
    ('test = "wilcoxon"\n[seeds]\ninit = 2\norder = 2\n', "crossed t-test"),
])
def test_bad_seed_tables_and_tests_give_one_clear_error(tmp_path, text, match):
    with pytest.raises(df.ConfigError, match=match):
        load_experiment(write_experiment(tmp_path, 'base = "base.toml"\n' + text + '[[variants]]\nname = "a"\n'))


def test_the_crossed_sweep_files_validate():
    from pathlib import Path

    sweeps = Path(__file__).parents[1] / "configs" / "sweeps"
    deep = load_experiment(sweeps / "deep_100_crossed.toml")
    assert deep.is_crossed and len(deep.runs()) == 50 and deep.reference == "relu_100"
    selu = deep.config("selu_100", Cell(3, 4))
    assert (selu.seed, selu.order_seed) == (3, 4)
    assert [(l["activation"], l["kernel_initializer"]) for l in selu.model.layers[1:3]] == [("selu", "lecun_normal")] * 2
    assert selu.model.layers[2]["repeat"] == 99
    assert len(load_experiment(sweeps / "leaky_relu_crossed.toml").runs()) == 25


@pytest.mark.slow
def test_a_crossed_experiment_runs_end_to_end(tmp_path):
    from deepfit.workflows import compare

    text = ('name = "tinyx"\nbase = "base.toml"\nreference = "relu"\n[seeds]\ninit = 2\norder = [3, 4]\n'
            '[[variants]]\nname = "relu"\n[[variants]]\nname = "elu"\n'
            'overrides = { "model.layers.1.activation" = "elu" }\n')
    path = write_experiment(tmp_path / "x", text, BASE.replace("epochs = 2", "epochs = 1"))
    result = compare(path, out=tmp_path / "out", log=lambda line: None)
    finals = result.finals.set_index(["variant", "seed"])
    assert len(finals) == 8 and (tmp_path / "out" / "runs" / "elu" / "seed-i1-o4" / "final.json").is_file()
    assert finals.loc[("elu", "i1-o4"), ["init_seed", "order_seed"]].tolist() == [1, 4]
    comp = result.comparisons()
    assert comp.loc[0, "test"] == "crossed t" and comp.loc[0, "n"] == 4
    md = result.report["markdown"].read_text()
    assert "Where the spread comes from" in md and "| relu | 2 × 2 |" in md
