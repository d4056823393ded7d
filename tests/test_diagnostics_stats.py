"""Layer statistics against NumPy formulas on a tiny hand-made network, and the compiled variant
against the ordinary step."""

import numpy as np
import pytest

import deepfit as df
import keras

from deepfit.train.stats_step import SATURATION_MARGIN, StatsSteps, layer_stats, probes
from deepfit.train.callbacks import make_callback
from deepfit.train.callbacks.layer_stats import LayerStats
from deepfit.train.loop import Trainer
from deepfit.train.step import Steps


def tiny():
    """4 → 3 sigmoid (two units pushed into saturation) → 3 relu (one unit dead) → 2 softmax."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    y = np.array([0, 1, 1, 0, 1, 0], np.int32)
    w1 = (rng.normal(size=(4, 3)) * np.array([8.0, 0.3, 6.0])).astype(np.float32)
    b1 = np.array([0.0, 0.1, -0.2], np.float32)
    w2 = rng.normal(size=(3, 3)).astype(np.float32)
    w2[:, 2] = -np.abs(w2[:, 2])  # inputs are sigmoid outputs > 0: this unit never fires
    b2 = np.array([0.2, 0.1, -1.0], np.float32)
    w3 = rng.normal(size=(3, 2)).astype(np.float32)
    b3 = np.array([0.05, -0.05], np.float32)
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(3, activation="sigmoid", name="dense"),
        keras.layers.Dense(3, activation="relu", name="dense_1"),
        keras.layers.Dense(2, activation="softmax", name="dense_2"),
    ])
    for layer, w in zip(model.layers, [(w1, b1), (w2, b2), (w3, b3)]):
        layer.set_weights(list(w))
    return model, x, y, [(w1, b1), (w2, b2), (w3, b3)]


def numpy_reference(x, y, params, lr):
    """Forward, backward by hand, and every statistic by its formula."""
    x = x.astype(np.float64)
    (w1, b1), (w2, b2), (w3, b3) = [(w.astype(np.float64), b.astype(np.float64)) for w, b in params]
    h1 = 1 / (1 + np.exp(-(x @ w1 + b1)))
    z2 = h1 @ w2 + b2
    h2 = np.maximum(z2, 0)
    z3 = h2 @ w3 + b3
    p = np.exp(z3 - z3.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    n = len(x)
    onehot = np.eye(2)[y]
    dz3 = (p - onehot) / n
    g3 = h2.T @ dz3
    dz2 = (dz3 @ w3.T) * (z2 > 0)
    g2 = h1.T @ dz2
    dz1 = (dz2 @ w2.T) * h1 * (1 - h1)
    g1 = x.T @ dz1
    out = []
    for h, g, w in ((h1, g1, w1), (h2, g2, w2), (p, g3, w3)):
        out.append({"mean": h.mean(), "std": np.std(h, axis=0).mean(),
                    "grad_norm": np.linalg.norm(g), "update_ratio": lr * np.linalg.norm(g) / np.linalg.norm(w)})
    m = SATURATION_MARGIN
    out[0]["saturated"] = np.mean((h1 <= m) | (h1 >= 1 - m))
    out[1]["dead"] = np.mean(np.all(h2 == 0, axis=0))
    return out, -np.mean(np.log(p[np.arange(n), y]))


def test_statistics_match_numpy_formulas():
    model, x, y, params = tiny()
    lr = 0.1
    table = layer_stats(model, x, y, optimizer=keras.optimizers.SGD(lr))
    expected, _ = numpy_reference(x, y, params, lr)
    assert list(table["layer"]) == ["dense", "dense_1", "dense_2"]
    assert list(table["activation"]) == ["sigmoid", "relu", "softmax"]
    assert list(table["size"]) == [12, 9, 6]
    for row, want in zip(table.to_dict("records"), expected):
        for key in ("mean", "std", "grad_norm", "update_ratio"):
            assert row[key] == pytest.approx(want[key], rel=2e-4, abs=1e-7), (row["layer"], key)
    # The hand-made network really saturates and dies (else the checks below prove nothing).
    assert 0 < expected[0]["saturated"] < 1 and expected[1]["dead"] == pytest.approx(1 / 3)
    assert table.loc[0, "saturated"] == pytest.approx(expected[0]["saturated"])
    assert table.loc[1, "dead"] == pytest.approx(expected[1]["dead"])
    # Statistics that do not apply are NaN, not 0.
    assert np.isnan(table.loc[0, "dead"]) and np.isnan(table.loc[1, "saturated"])
    assert np.isnan(table.loc[2, "saturated"]) and np.isnan(table.loc[2, "dead"])
    # layer_stats leaves the model as it was.
    for layer, (w, b) in zip(model.layers, params):
        np.testing.assert_array_equal(layer.get_weights()[0], w)


def test_tanh_saturation_threshold_is_one_percent_of_the_range():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 5)).astype(np.float32) * 3
    y = rng.integers(0, 2, 50).astype(np.int32)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(2, activation="softmax")])
    w, b = model.layers[0].get_weights()
    h = np.tanh(x.astype(np.float64) @ w + b)
    want = np.mean(np.abs(h) >= 1 - 0.01 * 2)  # bounds ±1: 1% of the range 2
    assert 0 < want < 1
    got = layer_stats(model, x, y).loc[0, "saturated"]
    assert got == pytest.approx(want, abs=1.5 / h.size)  # float32 may move one value across the line


def net_cfg():
    return {"seed": 3, "data": {"source": "arrays"}, "model": {"input_shape": [6], "layers": [
        {"type": "dense", "units": 16, "activation": "relu", "kernel_regularizer": {"name": "l2", "l2": 0.01}},
        {"type": "batch_norm"},
        {"type": "dropout", "rate": 0.3},
        {"type": "dense", "units": 8},
        {"type": "activation", "activation": "tanh"},
        {"type": "dense", "units": 3, "activation": "softmax"},
    ]}}


def test_probes_pick_layers_with_weights_and_activations():
    model = df.build_model(df.load_config(net_cfg()).model, seed=3)
    got = [(p.name, p.activation, p.size) for p in probes(model)]
    assert got == [("dense", "relu", 6 * 16), ("batch_normalization", "linear", 32), ("dense_1", "linear", 16 * 8),
                   ("activation", "tanh", 0), ("dense_2", "softmax", 8 * 3)]


def train(callbacks, epochs=2):
    cfg = df.load_config(net_cfg())
    model = df.build_model(cfg.model, seed=3)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    y = rng.integers(0, 3, 200).astype(np.int32)
    trainer = Trainer(model, keras.optimizers.SGD(0.05, momentum=0.9), batch_size=20, epochs=epochs, seed=3,
                      callbacks=callbacks)
    trainer.fit(x, y)
    return trainer


def test_stats_variant_trains_exactly_like_the_default_step():
    plain = train([])
    assert type(plain.steps) is Steps  # no layer_stats: the default compiled step, untouched
    cb = make_callback({"name": "layer_stats", "every_n_steps": 3, "rows_per_call": 2})
    stats = train([cb])
    assert isinstance(stats.steps, StatsSteps)
    # Same forward (dropout, BatchNorm statistics, l2 loss), same gradients, same updates.
    for k, a in plain.state.variables.items():
        np.testing.assert_allclose(np.asarray(a), np.asarray(stats.state.variables[k]), rtol=1e-5, atol=1e-6, err_msg=k)
    assert [h["loss"] for h in plain.history] == pytest.approx([h["loss"] for h in stats.history], rel=1e-6)
    frame = cb.frame()
    # 10 steps an epoch, 2 epochs: records at global steps 0, 3, ..., 18, five layers each.
    assert sorted(frame["step"].unique()) == [0, 3, 6, 9, 12, 15, 18]
    assert len(frame) == 7 * 5
    assert list(frame[frame["step"] == 9]["epoch"].unique()) == [0]
    assert list(frame[frame["step"] == 12]["epoch"].unique()) == [1]
    assert np.all(np.isfinite(frame[frame["layer"] != "activation"]["grad_norm"]))
    # The state dict round-trips (NaN as null), for a resumed run.
    restored = LayerStats()
    restored.load_state_dict(cb.state_dict())
    assert restored.frame().equals(frame) or np.allclose(
        restored.frame()["std"].to_numpy(), frame["std"].to_numpy(), equal_nan=True)


def test_first_record_matches_a_single_forward_backward():
    """Step 0 of a recorded run is the initialization: the same numbers layer_stats gives."""
    cfg = df.load_config(net_cfg())
    rng = np.random.default_rng(5)
    x = rng.normal(size=(20, 6)).astype(np.float32)
    y = rng.integers(0, 3, 20).astype(np.int32)
    model = df.build_model(cfg.model, seed=3)
    once = layer_stats(model, x, y, optimizer=keras.optimizers.SGD(0.05))
    cb = LayerStats(every_n_steps=1)
    Trainer(df.build_model(cfg.model, seed=3), keras.optimizers.SGD(0.05), batch_size=20, epochs=1,
            shuffle=False, callbacks=[cb]).fit(x, y)
    first = cb.frame()
    for key in ("mean", "std", "grad_norm", "update_ratio"):
        np.testing.assert_allclose(first[key], once[key], rtol=1e-5, equal_nan=True)


def test_bad_arguments_fail_with_the_value():
    with pytest.raises(df.ConfigError, match="every_n_steps"):
        make_callback({"name": "layer_stats", "every_n_steps": 0})
    with pytest.raises(TypeError, match="Sequential"):
        inputs = keras.Input((3,))
        probes(keras.Model(inputs, keras.layers.Dense(2)(inputs)))
