"""MC dropout: formulas on hand-made inputs, rate 0 = deterministic, only dropout samples."""

import deepfit as df  # first: it selects Keras's JAX backend

import keras
import numpy as np
import pytest

from deepfit.nn.layers import MCAlphaDropout, MCDropout
from deepfit.serialize import load_model, save_model
from deepfit.uncertainty import entropy, mc_predict, predict_proba, summarize, to_mc_dropout


def test_entropy_on_hand_made_inputs():
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    np.testing.assert_allclose(entropy(p), [np.log(2), 0.0])
    q = np.array([0.2, 0.3, 0.5])
    np.testing.assert_allclose(entropy(q), -(0.2 * np.log(0.2) + 0.3 * np.log(0.3) + 0.5 * np.log(0.5)))
    np.testing.assert_allclose(entropy(np.full(10, 0.1)), np.log(10))


def test_mutual_information_on_hand_made_samples():
    # Two confident passes that disagree: total uncertainty ln 2, all of it the model's (MI = ln 2).
    disagree = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    r = summarize(disagree)
    np.testing.assert_allclose(r.mean, [[0.5, 0.5]])
    np.testing.assert_allclose(r.std, [[0.5, 0.5]])
    np.testing.assert_allclose(r.entropy, [np.log(2)])
    np.testing.assert_allclose(r.expected_entropy, [0.0])
    np.testing.assert_allclose(r.mutual_information, [np.log(2)])
    # Two identical uncertain passes: the same total uncertainty, none of it the model's.
    agree = np.array([[[0.5, 0.5]], [[0.5, 0.5]]])
    np.testing.assert_allclose(summarize(agree).mutual_information, [0.0], atol=1e-12)
    # A general case written out: H[mean] − mean H.
    s = np.array([[[0.7, 0.2, 0.1]], [[0.1, 0.6, 0.3]], [[0.3, 0.3, 0.4]]])
    m = s.mean(axis=0)[0]
    h = -np.sum(m * np.log(m))
    eh = np.mean([-np.sum(t[0] * np.log(t[0])) for t in s])
    np.testing.assert_allclose(summarize(s).mutual_information, [h - eh])


def dropout_model(rate, seed=0):
    keras.utils.set_random_seed(seed)
    m = keras.Sequential([
        keras.Input((6,)), keras.layers.Dropout(rate),
        keras.layers.Dense(16, activation="elu"), keras.layers.BatchNormalization(),
        keras.layers.Dropout(rate), keras.layers.Dense(4, activation="softmax"),
    ])
    bn = m.layers[2]
    # Moving statistics far from any batch's: BatchNorm in training mode would give other outputs.
    bn.moving_mean.assign(np.linspace(-2, 2, 16).astype(np.float32))
    bn.moving_variance.assign(np.linspace(0.5, 3, 16).astype(np.float32))
    return m


def test_rate_zero_equals_the_deterministic_prediction():
    m = dropout_model(0.0)
    x = np.random.default_rng(0).normal(size=(37, 6)).astype(np.float32)
    r = mc_predict(m, x, samples=8, batch_size=10)
    want = m.predict(x, verbose=0)  # Keras itself, inference mode
    np.testing.assert_allclose(r.mean, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predict_proba(m, x, batch_size=10), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r.std, 0, atol=1e-6)
    np.testing.assert_allclose(r.mutual_information, 0, atol=1e-5)


def test_only_dropout_samples_and_batch_norm_stays_in_inference_mode():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(), keras.layers.Dropout(0.5)])
    mean, var = np.array([1.0, 2.0, 3.0], np.float32), np.array([4.0, 0.25, 9.0], np.float32)
    m.layers[0].moving_mean.assign(mean)
    m.layers[0].moving_variance.assign(var)
    x = np.random.default_rng(1).normal(size=(500, 3)).astype(np.float32)
    r = mc_predict(m, x, samples=40, batch_size=200, keep_samples=True)
    # Each output is 0 (dropped) or the inference-mode BatchNorm output scaled by 1/(1 − rate).
    bn = (x - mean) / np.sqrt(var + 1e-3)
    s = r.all_samples
    kept = s != 0
    np.testing.assert_allclose(s[kept], np.broadcast_to(2 * bn, s.shape)[kept], rtol=1e-5)
    assert abs(kept.mean() - 0.5) < 0.01
    # Independent masks across passes (vmapped seeds) and rows.
    corr = np.corrcoef(kept[0].ravel(), kept[1].ravel())[0, 1]
    assert abs(corr) < 0.05
    assert len({kept[i].tobytes() for i in range(40)}) == 40


def test_mc_predict_is_reproducible_from_its_seed():
    m = dropout_model(0.3)
    x = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)
    a, b = (mc_predict(m, x, samples=5, seed=s) for s in (1, 1))
    np.testing.assert_array_equal(a.mean, b.mean)
    c = mc_predict(m, x, samples=5, seed=2)
    assert not np.array_equal(a.mean, c.mean)
    assert np.all(a.mutual_information >= 0) and np.all(a.mutual_information <= a.entropy + 1e-12)


def test_to_mc_dropout_keeps_weights_and_leaves_the_source():
    m = keras.Sequential([keras.Input((4,)), keras.layers.AlphaDropout(0.1), keras.layers.Dense(3),
                          keras.layers.Dropout(0.2), keras.layers.Dense(2)])
    mc = to_mc_dropout(m)
    assert [type(l) for l in mc.layers] == [MCAlphaDropout, keras.layers.Dense, MCDropout, keras.layers.Dense]
    assert [type(l) for l in m.layers][0] is keras.layers.AlphaDropout
    assert mc.layers[2].rate == 0.2
    for a, b in zip(m.get_weights(), mc.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_mc_layers_sample_at_inference_and_reload(tmp_path):
    x = np.ones((200, 50), np.float32)
    out = np.asarray(MCDropout(0.5)(x, training=False))
    assert set(np.unique(out)) == {0.0, 2.0}
    m = keras.Sequential([keras.Input((50,)), MCDropout(0.5), MCAlphaDropout(0.1)])
    save_model(m, tmp_path)
    back = load_model(tmp_path)
    assert [type(l) for l in back.layers] == [MCDropout, MCAlphaDropout]
    assert df.build_model({"input_shape": [5], "layers": [{"type": "mc_dropout", "rate": 0.5}]}).layers[0].rate == 0.5


def test_a_sigmoid_output_gives_two_class_probabilities():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((3,)), keras.layers.Dropout(0.5), keras.layers.Dense(1, activation="sigmoid")])
    x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    r = mc_predict(m, x, samples=4)
    assert r.mean.shape == (10, 2)
    np.testing.assert_allclose(r.mean.sum(axis=1), 1.0)


def test_errors_a_user_can_cause():
    m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(df.ConfigError, match="no Dropout"):
        mc_predict(m, np.zeros((2, 3)))
    with pytest.raises(df.ConfigError, match="samples"):
        mc_predict(dropout_model(0.1), np.zeros((2, 6)), samples=0)


def test_how_passes_are_vectorized_does_not_change_the_result():
    m = dropout_model(0.4)
    x = np.random.default_rng(0).normal(size=(12, 6)).astype(np.float32)
    a = mc_predict(m, x, samples=5, sample_batch=1, keep_samples=True)
    b = mc_predict(m, x, samples=5, sample_batch=2, keep_samples=True)  # 2 + 2 + a remainder of 1
    c = mc_predict(m, x, samples=5, sample_batch=5, keep_samples=True)  # a single vmap
    np.testing.assert_allclose(a.all_samples, b.all_samples, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a.all_samples, c.all_samples, rtol=1e-6, atol=1e-7)


def test_mc_dropout_deterministic_pass_is_deterministic():
    # Regression: with MC dropout layers, the "deterministic" pass (deepfit predict, test_accuracy in
    # final.json) was one random pass: 0.7417, 0.7391, 0.7402 on three identical calls.
    from deepfit.train.loop import Trainer

    plain = dropout_model(0.3)
    mc = to_mc_dropout(plain)
    x = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    want = plain.predict(x, verbose=0)  # Keras's own inference pass: dropout off
    runs = [predict_proba(mc, x, batch_size=16) for _ in range(3)]
    for r in runs:
        np.testing.assert_allclose(r, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(mc_predict(mc, x, samples=2).mean, want, atol=1e-4)  # MC passes still sample
    y = np.arange(40) % 4
    mc.compile(loss="sparse_categorical_crossentropy")
    trainer = Trainer(mc, keras.optimizers.SGD(0.01), batch_size=8)
    first = trainer.evaluate(x, y)
    assert trainer.evaluate(x, y) == first
    assert first[1] == pytest.approx(np.mean(want.argmax(1) == y))
    np.testing.assert_allclose(trainer.predict(x), want, rtol=1e-5, atol=1e-6)
