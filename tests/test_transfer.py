"""nn/transfer: clone, reuse (never mutating the source unless asked), freeze / unfreeze, from_run."""

import deepfit as df  # first: it selects Keras's JAX backend

import keras
import numpy as np
import pytest

from deepfit.nn.transfer import clone, freeze, reuse, select_layers, set_trainable, unfreeze
from deepfit.train.loop import Trainer


def source_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((4, 3)), keras.layers.Flatten(name="flat"),
        keras.layers.Dense(8, activation="selu", name="h1"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Dense(6, activation="selu", name="h2"),
        keras.layers.Dense(5, activation="softmax", name="out"),
    ])


def binary_data(n=96, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4, 3)).astype(np.float32)
    return x, (x.sum(axis=(1, 2)) > 0).astype(np.int32)


def snapshot(model):
    return [np.array(w) for w in model.get_weights()]


def fit_one_epoch(model, x, y):
    Trainer(model, keras.optimizers.SGD(0.1), loss="binary_crossentropy", batch_size=16, epochs=1,
            seed=3).fit(x, y)


def test_clone_copies_weights_and_shares_no_variable():
    src = source_model()
    copy = clone(src)
    for a, b in zip(src.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not {id(v) for v in src.weights} & {id(v) for v in copy.weights}
    fresh = clone(src, weights=False)
    assert any(not np.array_equal(a, b) for a, b in zip(src.get_weights(), fresh.get_weights()))


def test_reuse_keeps_all_but_the_last_layers_and_adds_the_head():
    src = source_model()
    new = reuse(src, [{"type": "dense", "units": 1, "activation": "sigmoid"}], drop_last=1, seed=0)
    assert [l.name for l in new.layers[:-1]] == ["flat", "h1", "bn", "h2"]
    assert new.layers[-1].units == 1 and new.output_shape == (None, 1)
    for a, b in zip(src.layers[:-1], new.layers[:-1]):
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(wa, wb)
    # A head named as Keras would name it, unique among the reused layers.
    assert new.layers[-1].name not in {"flat", "h1", "bn", "h2"}


def test_training_the_reused_model_leaves_the_source_unchanged():
    src = source_model()
    before = snapshot(src)
    new = reuse(src, [keras.layers.Dense(1, activation="sigmoid")])
    x, y = binary_data()
    fit_one_epoch(new, x, y)
    after_new = new.layers[1].get_weights()[0]
    assert not np.array_equal(after_new, before[0])  # the reused layer did learn
    for a, b in zip(before, src.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_share_reproduces_the_notebooks_pitfall():
    # Sequential(model_A.layers[:-1]): training B changes A. Only when asked.
    src = source_model()
    before = snapshot(src)
    new = reuse(src, [keras.layers.Dense(1, activation="sigmoid")], share=True)
    assert new.layers[1] is src.layers[1]
    fit_one_epoch(new, *binary_data())
    assert not np.array_equal(src.get_weights()[0], before[0])


def test_reuse_without_weights_reinitializes_the_body():
    src = source_model()
    new = reuse(src, [keras.layers.Dense(1)], weights=False, seed=5)
    assert new.layers[1].get_weights()[0].shape == src.layers[1].get_weights()[0].shape
    assert not np.array_equal(new.layers[1].get_weights()[0], src.layers[1].get_weights()[0])


@pytest.mark.parametrize("kw, fragment", [({"drop_last": 9}, "drop_last = 9"),
                                          ({"share": True, "weights": False}, "share=True")])
def test_bad_reuse_is_a_config_error(kw, fragment):
    with pytest.raises(df.ConfigError, match=fragment):
        reuse(source_model(), [keras.layers.Dense(1)], **kw)


def test_select_layers_by_index_name_and_keyword():
    m = source_model()
    assert select_layers(m, "all") == [0, 1, 2, 3, 4]
    assert select_layers(m, "none") == []
    assert select_layers(m, "head", head=2) == [3, 4]
    assert select_layers(m, [-1, "h1", 1]) == [1, 4]
    with pytest.raises(df.ConfigError, match="no layer named 'h3'.*Did you mean"):
        select_layers(m, ["h3"])
    with pytest.raises(df.ConfigError, match="out of range"):
        select_layers(m, [5])


def test_set_trainable_freeze_unfreeze_and_the_batch_norm_rule():
    m = source_model()
    assert set_trainable(m, "head") == ["out"]
    assert [v.path.split("/", 1)[1] for v in m.trainable_variables] == ["out/kernel", "out/bias"]
    assert set_trainable(m, "head", batch_norm="trainable") == ["bn", "out"]
    unfreeze(m, ["h1"])
    freeze(m, [-1])
    assert [l.name for l in m.layers if l.trainable] == ["h1", "bn"]


def test_from_run_config_builds_on_a_saved_run(tmp_path):
    rng = np.random.default_rng(0)
    arrays = ((rng.integers(0, 255, (120, 4, 3)).astype(np.uint8), rng.integers(0, 3, 120)), (None, None))
    base = {"data": {"source": "arrays", "validation_size": 20},
            "training": {"epochs": 1, "progress": False}}
    a = df.train({**base, "model": {"input_shape": [4, 3], "layers": [
        {"type": "flatten"}, {"type": "dense", "units": 7, "activation": "relu"},
        {"type": "dense", "units": 3, "activation": "softmax"}]}}, tmp_path / "a", data=arrays)
    a_weights = snapshot(a.model)
    cfg = {**base, "model": {"from_run": str(tmp_path / "a"), "drop_last": 1,
                             "layers": [{"type": "dense", "units": 1, "activation": "sigmoid"}]}}
    cfg["training"] = {**base["training"], "loss": "binary_crossentropy",
                       "freeze": [{"epochs": 1, "trainable": "head"}]}
    b = df.train(cfg, tmp_path / "b", data=((arrays[0][0], arrays[0][1] % 2), (None, None)))
    # The frozen reused layer still holds A's trained weights; the saved A run is untouched.
    np.testing.assert_array_equal(b.model.layers[1].get_weights()[0], a_weights[0])
    for w, v in zip(a_weights, df.load_run(tmp_path / "a").model.get_weights()):
        np.testing.assert_array_equal(w, v)
    assert df.load_run(tmp_path / "b").model.output_shape == (None, 1)
    with pytest.raises(df.ConfigError, match="input_shape"):
        df.build_model({**cfg["model"], "input_shape": [28, 28]})
