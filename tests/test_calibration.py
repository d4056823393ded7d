"""NLL, ECE and the reliability diagram on hand-made inputs."""

import numpy as np
import pytest

from deepfit.calibration import calibration_bins, calibration_metrics, expected_calibration_error, nll, \
    reliability_diagram


def test_nll_written_out():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.5, 0.5, 0.0]])
    y = np.array([0, 1, 2])
    # The last true-class probability is 0: clipped to Keras's epsilon 1e-7.
    want = -(np.log(0.7) + np.log(0.1) + np.log(1e-7)) / 3
    np.testing.assert_allclose(nll(probs, y), want)


def test_ece_by_hand():
    # Confidences .95 (right), .95 (wrong), .62 (right), .58 (right), 10 bins:
    # (.9, 1]: 2 samples, acc .5, conf .95 → 2/4 · .45; (.6, .7]: 1/4 · .38; (.5, .6]: 1/4 · .42.
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.38, 0.62], [0.58, 0.42]])
    y = np.array([0, 1, 1, 0])
    np.testing.assert_allclose(expected_calibration_error(probs, y, bins=10), 0.5 * 0.45 + 0.25 * 0.38 + 0.25 * 0.42)


def reference_ece(probs, y, bins):
    """Guo et al.'s ECE, with a loop over bins (m/M, (m+1)/M]; confidence 0 goes to the first."""
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    total = 0.0
    for m in range(bins):
        lo, hi = m / bins, (m + 1) / bins
        inside = (conf > lo) & (conf <= hi) | ((m == 0) & (conf == 0))
        if inside.any():
            total += inside.mean() * abs(np.mean(pred[inside] == y[inside]) - conf[inside].mean())
    return total


@pytest.mark.parametrize("bins", [1, 5, 15])
def test_ece_matches_the_written_out_formula(bins):
    rng = np.random.default_rng(bins)
    logits = rng.normal(size=(500, 4)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = rng.integers(0, 4, 500)
    np.testing.assert_allclose(expected_calibration_error(probs, y, bins), reference_ece(probs, y, bins), atol=1e-12)


def test_bins_are_right_closed():
    # Confidence exactly 0.5 with 2 bins belongs to the first bin, (0, 0.5].
    b = calibration_bins(np.array([[0.5, 0.5], [0.9, 0.1]]), np.array([0, 0]), bins=2)
    np.testing.assert_array_equal(b.counts, [1, 1])


def test_a_sigmoid_output_is_a_two_class_probability():
    # p = 0.8 for class 1 with label 1: confidence 0.8, correct; NLL −log 0.8.
    m = calibration_metrics(np.array([[0.8], [0.3]]), np.array([1, 1]), bins=10)
    assert m["accuracy"] == 0.5
    np.testing.assert_allclose(m["nll"], -(np.log(0.8) + np.log(0.3)) / 2)
    np.testing.assert_allclose(m["ece"], 0.5 * abs(1 - 0.8) + 0.5 * abs(0 - 0.7))


def test_reliability_diagram_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), 200)
    y = rng.integers(0, 3, 200)
    out = reliability_diagram({"deterministic": p, "MC": p[::-1]}, y, tmp_path / "fig" / "r.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
