"""The report's figures: learning curves with confidence bands, final metric per variant with intervals.

Each function returns PNG bytes (matplotlib's Agg renderer; no display needed).
"""

from __future__ import annotations

import io
import sys

import matplotlib

if "matplotlib.pyplot" not in sys.modules and "ipykernel" not in sys.modules:  # keep a notebook's inline backend
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from deepfit.experiments.stats import curves, describe  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def learning_curves(results: pd.DataFrame, metric: str, order: list[str] | None = None, column=None) -> bytes:
    """Mean ``metric`` per epoch for each variant, with its 95% t band over seeds (clipped to ``column``'s
    known range, if any)."""
    table = curves(results, metric, column=column)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for variant in order or list(dict.fromkeys(table["variant"])):
        rows = table[table["variant"] == variant]
        if rows.empty:
            continue
        line, = ax.plot(rows["epoch"], rows["mean"], marker="o", ms=3, label=f"{variant} (n={rows['n'].max()})")
        ax.fill_between(rows["epoch"], rows["ci_low"], rows["ci_high"], color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: mean over seeds, 95% t band")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def final_metric(finals: pd.DataFrame, metric: str, order: list[str] | None = None, column=None) -> bytes:
    """Each seed's final ``metric`` (dots) and the variant's mean with its 95% t interval (bar)."""
    table = describe(finals, metric, column=column).set_index("variant")
    names = [v for v in (order or list(table.index)) if v in table.index]
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.5 * len(names)))
    for i, variant in enumerate(names):
        row = table.loc[variant]
        seeds = finals.loc[finals["variant"] == variant, metric]
        ax.scatter(seeds, [i] * len(seeds), s=14, color="0.55", zorder=2)
        lo, hi = row["ci_low"], row["ci_high"]
        err = [[row["mean"] - lo], [hi - row["mean"]]] if pd.notna(lo) else None
        ax.errorbar(row["mean"], i, xerr=err, fmt="o", color="C0", capsize=4, zorder=3)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel(f"final {metric}")
    ax.set_title("mean and 95% interval (none below 3 seeds); dots are seeds")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def variance_components(decompositions: dict) -> bytes:
    """Per variant, the init, order and residual variance of a final metric as stacked bars (standard deviations).

    Bars are variances (they add up); the label gives the total standard deviation, the metric's own unit.
    """
    names = list(decompositions)
    parts = [("init", "C0"), ("order", "C1"), ("resid", "0.6")]
    fig, ax = plt.subplots(figsize=(6.4, 1.4 + 0.55 * len(names)))
    for i, name in enumerate(names):
        d = decompositions[name]
        left = 0.0
        for part, color in parts:
            v = getattr(d, f"var_{part}")
            ax.barh(i, v, left=left, color=color, label=(part if part != "resid" else "residual") if i == 0 else None)
            left += v
        ax.text(left, i, f"  sd {d.total ** 0.5:.4f}", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), [f"{n} ({decompositions[n].n_init}×{decompositions[n].n_order})" for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("variance of the final metric")
    ax.set_title("init vs data order vs residual (two-way random-effects ANOVA)")
    ax.margins(x=0.25)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=3, frameon=False)
    return _png(fig)
