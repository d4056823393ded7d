"""Figures: layer statistics across depth and over steps; the notebook's activation plots.

Every function writes a PNG and returns its path. Matplotlib runs with the
Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def _plt():
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and "ipykernel" not in sys.modules:  # keep a notebook's inline backend
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _plt().close(fig)
    return path


def depth_figure(table: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Activation std and gradient norm against depth, at the first and the last recorded step."""
    plt = _plt()
    fig, (ax_std, ax_grad) = plt.subplots(1, 2, figsize=(11, 4))
    steps = sorted(table["step"].unique())
    for step, style in zip([steps[0], steps[-1]] if len(steps) > 1 else steps, ("o-", "s--")):
        rows = table[table["step"] == step].sort_values("depth")
        label = "initialization" if step == 0 else f"step {step}"
        ax_std.plot(rows["depth"], rows["std"], style, markersize=3, label=label)
        ax_grad.semilogy(rows["depth"], rows["grad_norm"], style, markersize=3, label=label)
    ax_std.set(xlabel="layer (depth)", ylabel="activation std (mean over units)", title="activation std")
    ax_grad.set(xlabel="layer (depth)", ylabel="‖∂L/∂W‖", title="gradient norm of the weights")
    for ax in (ax_std, ax_grad):
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, Path(path))


def steps_figure(table: pd.DataFrame, path: str | Path, title: str = "", lines: int = 6) -> Path:
    """Gradient norm, activation std and saturated/dead fraction over steps, for a few layers across depth."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    depths = sorted(table["depth"].unique())
    chosen = sorted({depths[int(i)] for i in np.linspace(0, len(depths) - 1, min(lines, len(depths)))})
    cmap = plt.get_cmap("viridis")
    for k, depth in enumerate(chosen):
        rows = table[table["depth"] == depth].sort_values("step")
        color = cmap(k / max(len(chosen) - 1, 1))
        label = f"{rows['layer'].iloc[0]} (depth {depth})"
        axes[0].semilogy(rows["step"], rows["grad_norm"], color=color, label=label)
        axes[1].plot(rows["step"], rows["std"], color=color, label=label)
        frac = rows["dead"].where(np.isfinite(rows["dead"]), rows["saturated"])
        axes[2].plot(rows["step"], frac, color=color, label=label)
    axes[0].set(xlabel="step", ylabel="‖∂L/∂W‖", title="gradient norm")
    axes[1].set(xlabel="step", ylabel="activation std", title="activation std")
    axes[2].set(xlabel="step", ylabel="fraction", title="dead (ReLU) or saturated (sigmoid/tanh) units",
                ylim=(-0.02, 1.02))
    for ax in axes:
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, Path(path))


def demo_figure(results, path: str | Path) -> Path:
    """The self-normalization demo: std (log scale) and mean after every reported layer, one line a pair."""
    plt = _plt()
    fig, (ax_mean, ax_std) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        stds = np.where(np.isfinite(r.stds), r.stds, np.nan)
        ax_std.semilogy(r.layers, stds, "o-", markersize=3, label=f"{r.label}: {r.verdict}")
        ax_mean.plot(r.layers, np.clip(r.means, -2, 2), "o-", markersize=3, label=r.label)
    ax_std.axhline(1, color="k", lw=0.8)
    ax_mean.axhline(0, color="k", lw=0.8)
    ax_std.set(xlabel="layer", ylabel="std (mean over units)", title="std after each layer")
    ax_mean.set(xlabel="layer", ylabel="mean (clipped to ±2)", title="mean after each layer")
    ax_std.legend(fontsize=7)
    for ax in (ax_mean, ax_std):
        ax.grid(True, alpha=0.3)
    return _save(fig, Path(path))


# -- the notebook's activation plots (cells 5, 12, 16, 20) --------------------------------

def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def leaky_relu(z, alpha=0.01):
    return np.maximum(alpha * z, z)


def elu(z, alpha=1.0):
    return np.where(z < 0, alpha * (np.exp(np.minimum(z, 0)) - 1), z)


def selu(z):
    from deepfit.diagnostics.selu_demo import ALPHA, SCALE

    return SCALE * elu(z, ALPHA)


def derivatives(z: np.ndarray) -> dict[str, np.ndarray]:
    """Closed-form derivatives: σ' = σ(1−σ); leaky ReLU 1 or α (α = 0.05 as plotted);
    ELU 1 or α·e^z; SELU λ or λ·α·e^z (at z = 0 the right derivative)."""
    from deepfit.diagnostics.selu_demo import ALPHA, SCALE

    s = sigmoid(z)
    ez = np.exp(np.minimum(z, 0))
    return {
        "sigmoid": s * (1 - s),
        "leaky_relu": np.where(z < 0, 0.05, 1.0),
        "elu": np.where(z < 0, ez, 1.0),
        "selu": np.where(z < 0, SCALE * ALPHA * ez, SCALE),
    }


def activation_figures(out: str | Path) -> list[Path]:
    """The notebook's four activation figures, as its cells draw them, and a figure of their derivatives."""
    plt = _plt()
    out = Path(out)
    z = np.linspace(-5, 5, 200)
    props = dict(facecolor="black", shrink=0.1)
    paths = []

    fig = plt.figure()
    plt.plot([-5, 5], [0, 0], "k-")
    plt.plot([-5, 5], [1, 1], "k--")
    plt.plot([0, 0], [-0.2, 1.2], "k-")
    plt.plot([-5, 5], [-3 / 4, 7 / 4], "g--")
    plt.plot(z, sigmoid(z), "b-", linewidth=2)
    plt.annotate("Saturating", xytext=(3.5, 0.7), xy=(5, 1), arrowprops=props, fontsize=14, ha="center")
    plt.annotate("Saturating", xytext=(-3.5, 0.3), xy=(-5, 0), arrowprops=props, fontsize=14, ha="center")
    plt.annotate("Linear", xytext=(2, 0.2), xy=(0, 0.5), arrowprops=props, fontsize=14, ha="center")
    plt.grid(True)
    plt.title("Sigmoid activation function", fontsize=14)
    plt.axis([-5, 5, -0.2, 1.2])
    paths.append(_save(fig, out / "sigmoid_saturation_plot.png"))

    fig = plt.figure()
    plt.plot(z, leaky_relu(z, 0.05), "b-", linewidth=2)
    plt.plot([-5, 5], [0, 0], "k-")
    plt.plot([0, 0], [-0.5, 4.2], "k-")
    plt.grid(True)
    plt.annotate("Leak", xytext=(-3.5, 0.5), xy=(-5, -0.2), arrowprops=props, fontsize=14, ha="center")
    plt.title("Leaky ReLU activation function", fontsize=14)
    plt.axis([-5, 5, -0.5, 4.2])
    paths.append(_save(fig, out / "leaky_relu_plot.png"))

    fig = plt.figure()
    plt.plot(z, elu(z), "b-", linewidth=2)
    plt.plot([-5, 5], [0, 0], "k-")
    plt.plot([-5, 5], [-1, -1], "k--")
    plt.plot([0, 0], [-2.2, 3.2], "k-")
    plt.grid(True)
    plt.title(r"ELU activation function ($\alpha=1$)", fontsize=14)
    plt.axis([-5, 5, -2.2, 3.2])
    paths.append(_save(fig, out / "elu_plot.png"))

    fig = plt.figure()
    plt.plot(z, selu(z), "b-", linewidth=2)
    plt.plot([-5, 5], [0, 0], "k-")
    plt.plot([-5, 5], [-1.758, -1.758], "k--")
    plt.plot([0, 0], [-2.2, 3.2], "k-")
    plt.grid(True)
    plt.title("SELU activation function", fontsize=14)
    plt.axis([-5, 5, -2.2, 3.2])
    paths.append(_save(fig, out / "selu_plot.png"))

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    titles = {"sigmoid": "sigmoid: σ(1−σ), at most 1/4", "leaky_relu": r"leaky ReLU ($\alpha=0.05$)",
              "elu": r"ELU ($\alpha=1$): smooth at 0", "selu": r"SELU: $\lambda$ ≈ 1.0507 for z > 0"}
    for ax, (name, d) in zip(axes.flat, derivatives(z).items()):
        ax.plot(z, d, "r-", linewidth=2)
        ax.axhline(0, color="k", lw=0.8)
        ax.axvline(0, color="k", lw=0.8)
        ax.set(title=f"derivative of {titles[name]}", xlim=(-5, 5), xlabel="z")
        ax.grid(True)
    paths.append(_save(fig, out / "activation_derivatives_plot.png"))
    return paths
