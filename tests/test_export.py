"""deepfit export: batch-norm folding (exact, both placements), pruning, precision, ONNX, export.json, refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from test_cli import assert_one_clear_line, run_main

import deepfit as df
from deepfit.deploy import engines
from deepfit.deploy.exporter import count_weights, scores
from deepfit.deploy.fold import fold_batch_norm
from deepfit.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL = {"data.train_size": 2048, "training.epochs": 1, "training.progress": False}
CALLS = {1: 5, 1000: 2}  # timings are measured by benchmarks/, not judged here

# The notebook's other placement (its cells 36-37): Dense without bias, BN, then the activation.
BN_BEFORE_ACTIVATION = [
    {"type": "flatten"},
    {"type": "dense", "units": 300, "use_bias": False, "kernel_initializer": "he_normal"},
    {"type": "batch_norm"},
    {"type": "activation", "activation": "relu"},
    {"type": "dense", "units": 100, "use_bias": False, "kernel_initializer": "he_normal"},
    {"type": "batch_norm"},
    {"type": "activation", "activation": "relu"},
    {"type": "dense", "units": 10, "activation": "softmax"},
]


@pytest.fixture(scope="module")
def bn_run(tmp_path_factory):
    """The notebook's batch-norm network (configs/batch_norm.toml), one short epoch."""
    out = tmp_path_factory.mktemp("runs") / "batch_norm"
    df.train(CONFIGS / "batch_norm.toml", out=out, overrides=SMALL)
    return out


@pytest.fixture(scope="module")
def bn_before_activation_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "bn_before_activation"
    df.train(CONFIGS / "batch_norm.toml", out=out, overrides={**SMALL, "model.layers": BN_BEFORE_ACTIVATION})
    return out


def probabilities(model, x):
    return engines.JaxPredictor(model).predict(np.asarray(x, np.float32))


@pytest.mark.parametrize("fixture, placement, layers_left", [
    ("bn_run", "before_dense", ["flatten", "dense", "dense_1", "dense_2"]),
    ("bn_before_activation_run", "after_dense", ["flatten", "dense", "activation", "dense_1", "activation_1",
                                                 "dense_2"]),
])
def test_folding_keeps_every_probability_on_the_whole_test_set(request, fixture, placement, layers_left):
    run = df.load_run(request.getfixturevalue(fixture))
    data = df.load_data(run.config.data)
    assert len(data.x_test) == 10_000
    folded = fold_batch_norm(run.model)
    assert [f["placement"] for f in folded.folded] == [placement] * len(folded.folded) and not folded.kept
    assert [layer.name for layer in folded.model.layers] == layers_left
    before, after = probabilities(run.model, data.x_test), probabilities(folded.model, data.x_test)
    assert np.abs(after - before).max() <= 1e-5
    assert folded.model.count_params() < run.model.count_params()


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.lists(st.sampled_from(["before", "after", "both"]), min_size=1, max_size=3))
def test_folding_is_exact_for_any_statistics_and_placement(seed, placements):
    """Random statistics as training leaves them (gamma ~ N(1, 0.5), beta ~ N(0, 0.5), moving mean ~ N(0, 1),
    moving variance from 0.01 to 10), BN before, after or on both sides of a Dense, Dropout in between, with and
    without biases: the folded network gives the same probabilities (float32 rounding of the original's own
    arithmetic is the only difference)."""
    rng = np.random.default_rng(seed)
    layers: list = [keras.Input((12,))]
    for i, where in enumerate(placements):
        if where in ("before", "both"):
            layers += [keras.layers.BatchNormalization(epsilon=float(rng.choice([1e-3, 1e-5]))), keras.layers.Dropout(0.3)]
        layers.append(keras.layers.Dense(8, use_bias=bool(rng.integers(2))))
        if where in ("after", "both"):
            layers.append(keras.layers.BatchNormalization())
        layers.append(keras.layers.Activation("tanh"))
    layers.append(keras.layers.Dense(3, activation="softmax"))
    model = keras.Sequential(layers)
    draw = {"gamma": lambda n: rng.normal(1, 0.5, n), "beta": lambda n: rng.normal(0, 0.5, n),
            "moving_mean": lambda n: rng.normal(0, 1, n), "moving_variance": lambda n: 10 ** rng.uniform(-2, 1, n),
            "bias": lambda n: rng.normal(0, 0.5, n)}
    for v in model.weights:
        name = v.path.rsplit("/", 1)[-1]
        value = draw[name](v.shape) if name in draw else rng.normal(0, 1 / np.sqrt(v.shape[0]), v.shape)
        v.assign(value.astype("float32"))
    x = rng.normal(0, 1, (512, 12)).astype("float32")
    folded = fold_batch_norm(model)
    bns = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert len(folded.folded) == bns and not folded.kept
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.model.layers)
    assert np.abs(np.asarray(folded.model(x)) - np.asarray(model(x))).max() <= 1e-5


def test_a_batch_norm_that_cannot_be_folded_is_named_with_the_reason():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="relu", name="hidden"),
                              keras.layers.BatchNormalization(name="between_activations"),
                              keras.layers.LeakyReLU(), keras.layers.Dense(2)])
    folded = fold_batch_norm(model)
    assert folded.folded == [] and folded.model is model
    assert folded.kept[0]["layer"] == "between_activations"
    assert "hidden (Dense, activation relu)" in folded.kept[0]["reason"] and "LeakyReLU" in folded.kept[0]["reason"]
    inputs = keras.Input((6,))
    functional = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.BatchNormalization(name="bn")(inputs)))
    assert "not a keras.Sequential" in fold_batch_norm(functional).kept[0]["reason"]


def test_export_of_the_batch_norm_network_records_what_it_cost_and_bought(bn_run, tmp_path):
    out = tmp_path / "folded"
    result = df.export(bn_run, out, fold_batch_norm=True, latency_calls=CALLS)
    assert sorted(os.listdir(out)) == ["export.json", "model.keras"]
    record = json.loads((out / "export.json").read_text())
    assert record == json.loads(json.dumps(result.record))
    assert [f["into"] for f in record["batch_norm"]["folded"]] == ["dense", "dense_1", "dense_2"]
    run = df.load_run(bn_run)
    data = df.load_data(run.config.data)
    reloaded = keras.saving.load_model(out / "model.keras", safe_mode=True)
    p0, p1 = probabilities(run.model, data.x_test), probabilities(reloaded, data.x_test)
    assert record["max_probability_change"]["test"] == pytest.approx(float(np.abs(p1 - p0).max()), abs=1e-9)
    assert record["max_probability_change"]["all"] <= 1e-5
    # accuracy and loss against Keras's own evaluate of the original model
    run.model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    keras_loss, keras_acc = run.model.evaluate(data.x_test, data.y_test, verbose=0, batch_size=1000)
    assert record["metrics"]["before"]["test_accuracy"] == pytest.approx(keras_acc, abs=1e-6)
    assert record["metrics"]["before"]["test_loss"] == pytest.approx(keras_loss, rel=1e-5)
    assert record["metrics"]["after"]["test_accuracy"] == pytest.approx(keras_acc, abs=2e-4)  # a tie at most
    assert record["before"]["parameters"] == 271_346 and record["after"]["parameters"] == 271_346 - 2 * 2 * (784 + 300 + 100)
    assert record["after"]["size"]["bytes"] == (out / "model.keras").stat().st_size
    for who in ("before", "after"):
        for b in ("batch_1", "batch_1000"):
            timing = record["latency"][who][b]
            assert 0 < timing["median_s"] <= timing["p90_s"] and timing["calls"] == CALLS[int(b.split("_")[1])]
    assert set(record["latency"]["load"]) == {"before", "after", "cpus"}


def test_prune_and_precision_change_what_they_should(bn_run, tmp_path):
    pruned = df.export(bn_run, tmp_path / "pruned", prune=0.9, prune_scope="layer", latency_calls=CALLS).record
    kernels = 784 * 300 + 300 * 100 + 100 * 10
    zeroed = sum(int(np.floor(0.9 * n)) for n in (784 * 300, 300 * 100, 100 * 10))
    assert sum(v["pruned"] for v in pruned["pruned"]["layers"].values()) == zeroed < kernels
    assert pruned["before"]["nonzero"] - pruned["after"]["nonzero"] == zeroed
    assert pruned["after"]["size"]["gzip_bytes"] < 0.4 * pruned["before"]["size"]["gzip_bytes"]
    glob = df.export(bn_run, tmp_path / "global", prune=0.9, latency_calls=CALLS)  # global: the default
    assert glob.record["before"]["nonzero"] - glob.record["after"]["nonzero"] == int(np.floor(0.9 * kernels))
    half = df.export(bn_run, tmp_path / "f16", precision="float16", latency_calls=CALLS).record
    assert half["after"]["size"]["bytes"] < 0.55 * half["before"]["size"]["bytes"]
    assert 0 < half["max_probability_change"]["all"] < 0.02
    assert {w.dtype for w in keras.saving.load_model(tmp_path / "f16" / "model.keras").weights} == {"float16"}
    int8 = df.export(bn_run, tmp_path / "int8", precision="int8", save=False, latency_calls=CALLS)
    assert int8.dir is None and not (tmp_path / "int8").exists()
    assert {str(w.dtype) for w in int8.model.weights if w.path.endswith("kernel")} == {"int8"}
    assert int8.record["after"]["size"]["bytes"] < 0.4 * int8.record["before"]["size"]["bytes"]


def test_onnx_gives_keras_probabilities_and_int8_is_measured(bn_run, tmp_path):
    pytest.importorskip("onnxruntime")
    result = df.export(bn_run, tmp_path / "onnx", fold_batch_norm=True, format="onnx", latency_calls=CALLS)
    record = result.record
    assert record["onnx_vs_keras"]["max_probability_difference"] <= 1e-5
    assert record["engine"].startswith("onnxruntime")
    run = df.load_run(bn_run)
    data = df.load_data(run.config.data)
    onnx_probs = engines.OnnxPredictor(tmp_path / "onnx" / "model.onnx").predict(data.x_test)
    assert np.abs(onnx_probs - probabilities(run.model, data.x_test)).max() <= 1e-5  # folded ONNX vs original Keras
    assert record["metrics"]["before"]["test_accuracy"] == pytest.approx(
        scores(probabilities(run.model, data.x_test), data.y_test, None)["accuracy"], abs=1e-6)
    int8 = df.export(bn_run, tmp_path / "onnx8", fold_batch_norm=True, precision="int8", format="onnx",
                     latency_calls=CALLS).record
    assert sorted(os.listdir(tmp_path / "onnx8")) == ["export.json", "model.onnx"]
    assert int8["after"]["size"]["bytes"] < 0.35 * int8["before"]["size"]["bytes"]
    assert count_weights(tmp_path / "onnx8" / "model.onnx") == {k: int8["after"][k] for k in ("parameters", "nonzero")}
    assert 0 < int8["max_probability_change"]["all"] < 0.5
    assert abs(int8["metrics"]["after"]["test_accuracy"] - int8["metrics"]["before"]["test_accuracy"]) < 0.05


def test_a_refused_export_changes_nothing_on_disk(bn_run, tmp_path, capsys):
    before = sorted(p.name for p in tmp_path.iterdir())
    cases = [
        (["export", tmp_path / "no_run"], ["not found"]),
        (["export", bn_run, "--prune", "1.5", "--out", tmp_path / "x"], ["prune", "(0, 1)"]),
        (["export", bn_run, "--precision", "bfloat16", "--format", "onnx", "--out", tmp_path / "x"], ["bfloat16"]),
        (["export", bn_run, "--precision", "float8", "--out", tmp_path / "x"], ["--precision", "float8"]),
        (["export", bn_run, "--fold-batchnorm", "--out", tmp_path / "x"], ["unrecognized", "--fold-batchnorm"]),
    ]
    for args, needles in cases:
        assert_one_clear_line(run_main(*args, capsys=capsys), *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert sorted(p.name for p in bn_run.parent.iterdir()) == ["batch_norm"]
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    assert_one_clear_line(run_main("export", bn_run, "--out", tmp_path / "taken", capsys=capsys), "--overwrite")
    assert os.listdir(tmp_path / "taken") == ["mine.txt"]


def test_an_export_that_fails_midway_leaves_no_directory(bn_run, tmp_path, monkeypatch):
    from deepfit.deploy import latency

    def broken(*a, **k):
        raise RuntimeError("the machine fell over")

    monkeypatch.setattr(latency, "measure", broken)
    with pytest.raises(RuntimeError, match="fell over"):
        df.export(bn_run, tmp_path / "out", fold_batch_norm=True)
    assert list(tmp_path.iterdir()) == []


def test_the_cli_prints_the_table_and_files_follow_the_umask(bn_run, tmp_path, capsys):
    old = os.umask(0o027)
    try:
        r = run_main("export", bn_run, "--fold-batch-norm", "--calls", "10", "--out", tmp_path / "e", capsys=capsys)
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    assert "folded 3 batch-norm layer(s)" in r.stdout and "latency batch 1000" in r.stdout
    assert (tmp_path / "e").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "e" / "export.json").stat().st_mode & 0o777 == 0o640


def test_a_keras_model_exports_without_a_run(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(), keras.layers.Dense(3, "softmax")])
    x, y = np.random.default_rng(0).normal(size=(50, 4)).astype("float32"), np.arange(50) % 3
    result = df.export(model, fold_batch_norm=True, data=((x, y), (x, y)), save=False, latency_calls=CALLS)
    assert result.record["source"] == f"keras.Model {model.name!r}" and "loss" not in result.record["metrics"]["after"]
    with pytest.raises(ConfigError, match="needs out="):
        df.export(model)
    mc = keras.Sequential([keras.Input((4,)), df.MCDropout(0.5), keras.layers.Dense(3)])
    with pytest.raises(ConfigError, match="MC dropout"):
        df.export(mc, save=False)


def test_the_default_export_directory_sits_beside_the_run_and_names_the_options(bn_run):
    import shutil

    result = df.export(bn_run, fold_batch_norm=True, prune=0.5, precision="float16", latency_calls=CALLS)
    try:
        assert result.dir == bn_run.parent / "batch_norm-export-fold-prune0.5-float16-keras"
        assert result.file == result.dir / "model.keras" and result.file.is_file()
    finally:
        shutil.rmtree(result.dir)
