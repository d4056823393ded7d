"""Activation figures and derivatives; the diagnose and plot commands end to end (small)."""

import numpy as np
import pytest

from deepfit.cli import main
from deepfit.diagnostics.figures import derivatives, elu, leaky_relu, selu, sigmoid


def test_derivatives_match_finite_differences():
    z = np.linspace(-5, 5, 2001)
    z = z[np.abs(z) > 1e-2]  # the kinks at 0
    h = 1e-6
    funcs = {"sigmoid": sigmoid, "leaky_relu": lambda v: leaky_relu(v, 0.05), "elu": elu, "selu": selu}
    d = derivatives(z)
    for name, f in funcs.items():
        numeric = (f(z + h) - f(z - h)) / (2 * h)
        np.testing.assert_allclose(d[name], numeric, rtol=1e-5, atol=1e-7, err_msg=name)
    assert derivatives(np.zeros(1))["sigmoid"][0] == 0.25


def test_plot_activations_writes_pngs(tmp_path, capsys):
    assert main(["plot", "activations", "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["activation_derivatives_plot.png", "elu_plot.png", "leaky_relu_plot.png",
                     "selu_plot.png", "sigmoid_saturation_plot.png"]
    for p in tmp_path.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_selu_demo_command(tmp_path, capsys):
    assert main(["diagnose", "--selu-demo", "--layers", "201", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "keeps" in out and "explodes" in out and "collapses" in out
    assert "alpha 1.67326324" in out
    assert (tmp_path / "selu_demo.png").is_file()


def test_diagnose_needs_a_config(capsys):
    assert main(["diagnose"]) == 2
    assert "CONFIG" in capsys.readouterr().err
