"""diagnose on the notebook's 100-layer networks (selu_100, relu_100) and a saturating sigmoid one."""

import numpy as np
import pytest

from deepfit.cli import main
from deepfit.diagnostics.diagnose import diagnose


def deep(activation, init, depth=99):
    """784-300-99×100-10 as the notebook's cells 24 and 29, standardized inputs, SGD 1e-3."""
    hidden = {"type": "dense", "units": 100, "activation": activation, "kernel_initializer": init}
    layers = [{"type": "flatten"}, {**hidden, "units": 300}, *[hidden] * depth,
              {"type": "dense", "units": 10, "activation": "softmax"}]
    return {"seed": 42, "data": {"validation_size": 5000, "scaling": "standardize"},
            "model": {"input_shape": [28, 28], "layers": layers},
            "training": {"epochs": 5, "batch_size": 32, "optimizer": {"name": "sgd", "learning_rate": 1e-3},
                         "progress": False}}


@pytest.mark.slow
def test_selu_lecun_is_healthy_relu_he_has_dead_units_at_init_and_after_training():
    selu = diagnose(deep("selu", "lecun_normal"), steps=40, every_n_steps=20)
    relu = diagnose(deep("relu", "he_normal"), steps=40, every_n_steps=20)
    for d in (selu, relu):
        assert sorted(d.table["step"].unique()) == [0, 20] and d.steps == 40
        assert len(d.at(0)) == 101  # 100 hidden Dense layers + the output
    for step in (0, 20):
        s, r = selu.at(step).iloc[:-1], relu.at(step).iloc[:-1]
        # SELU + LeCun self-normalizes: hidden layers keep mean ≈ 0 and std ≈ 1 (measured at init 0.85–1.05;
        # after 20 steps 0.40–1.15: the std is over one batch of 32 correlated images, not 500 iid inputs).
        assert 0.7 < s["std"].median() < 1.1 and s["std"].min() > 0.3 and (s["mean"].abs() < 0.4).all()
        assert s["dead"].isna().all()
        # ReLU + He: the deep layers' units are off for the whole batch (about half of them), and the
        # signal thins out with depth (median std 0.29 at init, 0.25 after 20 steps).
        assert r["dead"].iloc[50:].median() > 0.3
        assert r["std"].median() < 0.4
    assert selu.initial.healthy and selu.final.healthy
    for v in (relu.initial, relu.final):
        assert not v.healthy and "ReLU layers have more than 30% of units dead" in v.text()
        assert v.numbers["median_dead"] > 0.3


@pytest.mark.slow
def test_sigmoid_random_normal_saturates_and_gradients_vanish():
    d = diagnose(deep("sigmoid", {"name": "random_normal", "stddev": 1.0}), steps=20, every_n_steps=20)
    rows = d.at(0).iloc[:-1]
    assert (rows["saturated"] > 0.3).all()  # every hidden layer: most outputs within 1% of 0 or 1
    assert rows["std"].iloc[-1] < 0.01 * rows["std"].iloc[0]  # the batch's outputs collapse to one
    text = d.initial.text()
    assert "100 of 100 sigmoid layers have more than 30% of outputs saturated" in text
    assert d.initial.numbers["log10_gradient_ratio"] < -2 and "gradients vanish" in text


def test_diagnose_command_on_a_small_network(tmp_path, capsys):
    cfg = tmp_path / "small.toml"
    cfg.write_text('seed = 1\n[data]\nvalidation_size = 500\n[model]\ninput_shape = [28, 28]\nlayers = [\n'
                   '  { type = "flatten" },\n  { type = "dense", units = 20, activation = "tanh" },\n'
                   '  { type = "dense", units = 10, activation = "softmax" },\n]\n'
                   '[training]\nprogress = false\n')
    out = tmp_path / "diag"
    assert main(["diagnose", str(cfg), "--steps", "10", "--every", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "at initialization" in printed and "after 10 steps" in printed
    assert sorted(p.name for p in out.iterdir()) == ["depth.png", "layer_stats.csv", "steps.png", "verdict.txt"]
    import pandas as pd

    table = pd.read_csv(out / "layer_stats.csv")
    assert sorted(table["step"].unique()) == [0, 5] and list(table["layer"].unique()) == ["dense", "dense_1"]
    assert np.isfinite(table["saturated"][table["layer"] == "dense"]).all()


def test_diagnose_rejects_bad_steps(capsys):
    assert main(["diagnose", "nonexistent.toml", "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err
