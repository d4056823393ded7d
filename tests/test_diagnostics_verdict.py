"""The verdict's thresholds on hand-built statistic tables."""

import math

import numpy as np
import pandas as pd

from deepfit.diagnostics.verdict import judge

NAN = math.nan


def table(grad, std, act="selu", saturated=None, dead=None, size=10000, ratio=1e-3):
    n = len(grad)
    return pd.DataFrame({
        "step": 0, "depth": range(n), "layer": [f"dense_{i}" for i in range(n)], "activation": [act] * (n - 1) + ["softmax"],
        "size": size, "grad_norm": grad, "std": std, "mean": 0.0, "update_ratio": ratio,
        "saturated": saturated if saturated is not None else [NAN] * n,
        "dead": dead if dead is not None else [NAN] * n,
    })


def test_healthy_network_has_no_findings():
    v = judge(table([1.0, 0.8, 1.2, 1.0], [1.0, 0.9, 0.95, 0.3]))
    assert v.healthy and v.text().startswith("healthy")


def test_vanishing_gradients_name_the_factor():
    v = judge(table([1e-6, 1e-4, 1e-2, 1.0], [1.0, 1.0, 1.0, 0.3]))
    assert not v.healthy
    assert v.numbers["log10_gradient_ratio"] == -6
    assert "falls 10^6.0 from the last layer to the first" in v.text() and "vanish" in v.text()
    assert "he_normal + relu, lecun_normal + selu, or batch norm" in v.text()


def test_gradient_compared_per_weight():
    # Same RMS gradient per weight: a 100x larger layer has a 10x larger norm; that is no vanishing.
    t = table([10.0, 1.0, 1.0], [1.0, 1.0, 0.3])
    t["size"] = [1_000_000, 10_000, 10_000]
    assert judge(t).numbers["log10_gradient_ratio"] == 0


def test_exploding_gradients():
    assert "explode" in judge(table([1e4, 1e2, 1.0], [1.0, 1.0, 0.3])).text()


def test_saturation_and_dead_units_and_collapse():
    sat = judge(table([1.0] * 4, [0.5, 0.1, 0.01, 0.1], act="sigmoid", saturated=[0.8, 0.5, 0.1, NAN]))
    assert "2 of 3 sigmoid layers have more than 30% of outputs saturated" in sat.text()
    assert "shrinks" in sat.text() and sat.numbers["max_saturated"] == 0.8
    dead = judge(table([1.0] * 4, [1.0] * 4, act="relu", dead=[0.0, 0.4, 0.6, NAN]))
    assert dead.numbers["max_dead"] == 0.6 and dead.numbers["median_dead"] == 0.4
    assert "2 of 3 ReLU layers have more than 30% of units dead" in dead.text()


def test_update_ratio_bounds():
    assert "barely learn" in judge(table([1.0] * 3, [1.0] * 3, ratio=1e-8)).text()
    assert "too high" in judge(table([1.0] * 3, [1.0] * 3, ratio=0.5)).text()
    assert np.isclose(judge(table([1.0] * 3, [1.0] * 3)).numbers["max_update_ratio"], 1e-3)
