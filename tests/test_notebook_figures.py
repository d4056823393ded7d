"""The notebook's own figures, on the bundled data (slow: full data, full epochs)."""

import pytest

import deepfit as df


@pytest.mark.slow
def test_leaky_relu_lands_near_the_notebooks_0_8396():
    run = df.train("configs/leaky_relu.toml", save=False, overrides={"training.progress": False})
    assert run.history["val_accuracy"].iloc[-1] == pytest.approx(0.8396, abs=0.02)
