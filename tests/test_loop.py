"""deepfit's loop against Keras's own fit, formulas, and itself (determinism)."""

import keras
import numpy as np
import pytest

import deepfit as df
from deepfit.train.callbacks.early_stopping import EarlyStopping
from tests.conftest import tiny_config


def notebook_like_model(seed, layers):
    return df.build_model({"input_shape": [8, 8], "layers": layers}, seed=seed)


@pytest.mark.parametrize(
    "optimizer, layers",
    [
        ({"name": "sgd", "learning_rate": 0.05, "momentum": 0.9},
         [{"type": "flatten"}, {"type": "batch_norm"},
          {"type": "dense", "units": 32, "activation": "elu", "kernel_initializer": "he_normal",
           "kernel_regularizer": {"name": "l2", "l2": 0.01}},
          {"type": "batch_norm"}, {"type": "dense", "units": 3, "activation": "softmax"}]),
        ({"name": "nadam", "learning_rate": 0.01},
         [{"type": "flatten"}, {"type": "dropout", "rate": 0.2},
          {"type": "dense", "units": 32, "activation": "selu", "kernel_initializer": "lecun_normal",
           "kernel_constraint": {"name": "max_norm", "max_value": 1.0}},
          {"type": "dense", "units": 3, "activation": "softmax"}]),
    ],
    ids=["sgd-momentum-batchnorm-l2", "nadam-dropout-maxnorm"],
)
def test_one_epoch_equals_keras_fit(tiny_arrays, optimizer, layers):
    (x, y), _ = tiny_arrays
    x = (x / 255.0).astype(np.float32)[:490]  # 15 full batches of 32 and a last one of 10
    y = y[:490].astype(np.int32)
    ours = notebook_like_model(1, layers)
    theirs = notebook_like_model(1, layers)
    theirs.set_weights(ours.get_weights())  # same initial weights, dropout seed state included
    df.Trainer(ours, df.make_optimizer(optimizer), batch_size=32, epochs=1, shuffle=False).fit(x, y)
    theirs.compile(optimizer=df.make_optimizer(optimizer), loss="sparse_categorical_crossentropy")
    theirs.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(ours.weights, theirs.weights):
        if "seed_generator" in a.path:
            assert np.array_equal(a.numpy(), b.numpy())
            continue
        assert np.abs(a.numpy() - ours.get_weights()[0].mean()).sum() > 0
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5, err_msg=a.path)


def test_batchnorm_moving_statistics_follow_keras_momentum():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (64, 6)).astype(np.float32)
    y = rng.integers(0, 2, 64)
    model = df.build_model({"input_shape": [6], "layers": [{"type": "batch_norm"},
                                                           {"type": "dense", "units": 2, "activation": "softmax"}]})
    df.Trainer(model, df.make_optimizer("sgd"), batch_size=32, epochs=1, shuffle=False).fit(x, y)
    bn = model.layers[0]
    mean, var = np.zeros(6), np.ones(6)
    for batch in (x[:32], x[32:]):  # moving = 0.99 * moving + 0.01 * batch statistic (biased variance)
        mean = 0.99 * mean + 0.01 * batch.mean(0)
        var = 0.99 * var + 0.01 * batch.var(0)
    np.testing.assert_allclose(bn.moving_mean.numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), var, rtol=1e-5)


def test_l2_penalty_is_in_the_training_loss():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 4)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    model = df.build_model({"input_shape": [4], "layers": [
        {"type": "dense", "units": 3, "activation": "softmax", "kernel_regularizer": {"name": "l2", "l2": 0.01}}]})
    w, b = (v.numpy().astype(np.float64) for v in model.weights)
    losses = []

    class Spy(df.Callback):
        def on_chunk_end(self, trainer, chunk):
            losses.extend(chunk.losses)

    df.Trainer(model, df.make_optimizer("sgd"), batch_size=16, epochs=1, shuffle=False, callbacks=[Spy()]).fit(x, y)
    z = x @ w + b
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    expected = -logp[np.arange(16), y].mean() + 0.01 * (w**2).sum()
    assert losses[0] == pytest.approx(expected, rel=1e-5)


def test_max_norm_holds_after_every_step():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 5, (96, 10)).astype(np.float32)
    y = rng.integers(0, 3, 96)
    spec = {"input_shape": [10], "layers": [
        {"type": "dense", "units": 20, "activation": "relu", "kernel_constraint": {"name": "max_norm", "max_value": 0.5}},
        {"type": "dense", "units": 3, "activation": "softmax"}]}
    model = df.build_model(spec, seed=0)
    norms = []

    class Spy(df.Callback):
        def on_chunk_end(self, trainer, chunk):
            k = np.asarray(trainer.state.params["0.dense/kernel"])
            norms.append(np.sqrt((k**2).sum(0)).max())

    df.Trainer(model, df.make_optimizer({"name": "sgd", "learning_rate": 1.0}), batch_size=8, epochs=3,
               steps_per_chunk=1, callbacks=[Spy()]).fit(x, y)
    assert len(norms) == 36 and max(norms) <= 0.5 + 1e-6
    assert max(norms) > 0.45  # it was binding, so the test means something


def test_same_seed_same_numbers_and_chunking_changes_nothing(tiny_arrays):
    cfg = tiny_config(epochs=3)
    cfg["model"]["layers"].insert(1, {"type": "dropout", "rate": 0.3})
    a = df.train(cfg, data=tiny_arrays, save=False)
    b = df.train(cfg, data=tiny_arrays, save=False)
    c = df.train(cfg, data=tiny_arrays, save=False, overrides={"training.steps_per_chunk": 4})
    d = df.train(cfg, data=tiny_arrays, save=False, overrides={"seed": 4})
    for other in (b, c):
        assert other.history.drop(columns="seconds").equals(a.history.drop(columns="seconds"))
        for x, y in zip(a.model.weights, other.model.weights):
            assert np.array_equal(x.numpy(), y.numpy()), x.path
    assert not np.array_equal(a.model.weights[0].numpy(), d.model.weights[0].numpy())


def test_early_stopping_follows_keras_patience_and_restores_the_best():
    class FakeTrainer:
        def __init__(self):
            self.stop_training, self.stop_reason, self.epoch = False, None, 0
            self.state = type("S", (), {"trainable": None, "non_trainable": None})()

    es = EarlyStopping(monitor="val_loss", patience=2, min_delta=0.01)
    t = FakeTrainer()
    for epoch, v in enumerate([1.0, 0.9, 0.895, 0.95]):  # 0.895 is within min_delta: no improvement
        es.on_epoch_end(t, epoch, {"val_loss": v})
        if t.stop_training:
            break
    assert epoch == 3 and es.best == 0.9 and es.best_epoch == 1
    es = EarlyStopping(monitor="val_accuracy", patience=1)
    assert es.mode == "max"


def test_early_stopping_restores_best_weights_in_a_real_run(tiny_arrays):
    cfg = tiny_config(epochs=30, optimizer={"name": "sgd", "learning_rate": 0.5},
                      callbacks=[{"name": "early_stopping", "monitor": "val_loss", "patience": 2, "min_delta": 0.02,
                                  "restore_best_weights": True}])
    run = df.train(cfg, data=tiny_arrays, save=False)
    h = run.history
    es = next(c for c in run.trainer.callbacks if isinstance(c, EarlyStopping))
    # Keras's rule, written out: an epoch improves when it beats the best by more than min_delta.
    best, best_epoch = np.inf, -1
    for i, v in enumerate(h["val_loss"]):
        if v < best - 0.02:
            best, best_epoch = v, i
    assert es.best_epoch == best_epoch
    assert len(h) < 30 and len(h) - 1 - es.best_epoch == 2
    val_loss, _ = run.trainer.evaluate(*_valid(tiny_arrays))
    assert val_loss == pytest.approx(h["val_loss"][es.best_epoch], rel=1e-6)
    assert val_loss != pytest.approx(h["val_loss"].iloc[-1], rel=1e-6)


def _valid(arrays):
    data = df.load_data({"source": "arrays", "validation_size": 100}, arrays=arrays)
    return data.x_valid, data.y_valid
