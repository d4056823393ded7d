"""The report's section on the chapter's last page: its claims judged, the numbers behind each, and where the
advice does not hold here. Reads ``OUT/<measured entry>/values.csv`` and ``curves.csv`` (never trains)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from deepfit.experiments.catalog import LAST_PAGE, entry
from deepfit.experiments.last_page import ABSTAIN_COVERAGE, TARGET_GAP
from deepfit.experiments.stats import t_interval
from deepfit.report.content import CLAIM_HEADER, VERDICT_NOTE, Figure, ReportContent, Table, claim_rows, family_note, fmt
from deepfit.report.figures import _png, plt


def _is_last_page(side: str) -> bool:
    try:
        return entry(side.split(":")[0]).table == LAST_PAGE
    except Exception:  # noqa: BLE001 - an id of an older catalog
        return False


def _values(out: Path, measured: str) -> pd.DataFrame:
    path = out / measured / "values.csv"
    return pd.read_csv(path) if path.is_file() and path.stat().st_size > 1 else pd.DataFrame()


def _mean_ci(table: pd.DataFrame, key: str, digits: int = 4, scale: float = 1.0) -> str:
    v = table.loc[table["key"] == key, "value"].to_numpy(float) * scale
    if not len(v):
        return "n/a"
    s = t_interval(v)
    ci = "" if not np.isfinite(s.ci_low) else f" [{fmt(s.ci_low, digits)}, {fmt(s.ci_high, digits)}]"
    return f"{fmt(s.mean, digits)}{ci}"


def _max(table: pd.DataFrame, key: str) -> str:
    v = table.loc[table["key"] == key, "value"].to_numpy(float)
    return f"{v.max():.2g}" if len(v) else "n/a"


def _advice(verdict) -> str:
    v = verdict.verdict
    if v.startswith("confirmed") or v.startswith("equivalent") or v.startswith("identical"):
        return f"holds here ({v})"
    if "opposite" in v:
        return "does NOT hold here: the opposite is found"
    return f"not shown here ({v})"


def _speed_table(title: str, first: str, reference_label: str, table: pd.DataFrame, names: list[tuple[str, str]],
                 note: str = "") -> Table:
    """Predictions/s and latencies of the models ``names`` (label, key), the first one the reference."""
    return Table(title, [first, "predictions/s (batch 1)", "median µs (batch 1)", "median ms (batch 1000)",
                         f"latency ratio to {reference_label} (batch 1)"],
                 _speed_rows(table, names, names[0][1]), note)


def _speed_rows(table: pd.DataFrame, names: list[tuple[str, str]], reference: str) -> list[list[str]]:
    rows = []
    for label, key in names:
        rows.append([label, _mean_ci(table, f"{key}@predictions_per_second_b1", 0),
                     _mean_ci(table, f"{key}@latency_median_s_b1", 1, 1e6),
                     _mean_ci(table, f"{key}@latency_median_s_b1000", 2, 1e3),
                     "1" if key == reference else _ratio(table, key, reference)])
    return rows


def _ratio(table: pd.DataFrame, key: str, reference: str) -> str:
    """Per seed, this model's batch-1 median latency over the reference's (same rounds), mean [95% CI]."""
    a = table[table["key"] == f"{key}@latency_median_s_b1"].set_index("seed")["value"]
    b = table[table["key"] == f"{reference}@latency_median_s_b1"].set_index("seed")["value"]
    shared = a.index.intersection(b.index)
    s = t_interval((a[shared] / b[shared]).to_numpy(float))
    ci = "" if not np.isfinite(s.ci_low) else f" [{fmt(s.ci_low, 3)}, {fmt(s.ci_high, 3)}]"
    return f"{fmt(s.mean, 3)}{ci}"


def _curves_figure(curves: pd.DataFrame, x: str, y: str, group: str, xlabel: str, ylabel: str, title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, rows in curves.groupby(group, sort=False):
        mean = rows.groupby(x)[y].mean()
        ax.plot(mean.index, mean.to_numpy(), marker="o", ms=3, label=f"{name} (n={rows['seed'].nunique()})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def last_page_section(result) -> ReportContent | None:
    out = result.dir
    verdicts = [v for v in result.verdicts if _is_last_page(v.claim.better) or _is_last_page(v.claim.worse)]
    if not verdicts:
        return None
    label = " — QUICK SMOKE RUN, not the protocol" if result.mode.name == "quick" else ""
    sec = ReportContent("The chapter's last page: fast, small and sparse models", [
        "The chapter ends with advice the notebook never runs: fold batch norm and prefer leaky ReLU for fast "
        "predictions, lower the precision to 16 or 8 bits, l1 (and zeroing the tiny weights) or FTRL with l1 "
        "for sparse models, data augmentation for small training sets, MC dropout for uncertainty. Each is "
        "measured here over seeds and judged with the same statistics as the notebook's claims, as a family of "
        "its own. Speeds are predictions per second of the compiled inference pass (JAX jit) on this machine, "
        "the compared models timed in alternating rounds; timings share the machine with whatever else runs "
        "(the load is recorded in OUT/<id>/seed-N.json)."])
    sec.tables.append(Table(
        f"The last page's claims (difference = first − second, paired on seeds){label}",
        CLAIM_HEADER, claim_rows(verdicts),
        VERDICT_NOTE + family_note(verdicts) + " These claims are a family of their own (the last page's); their "
        "seeds are the ones trained for the rest, never grown for them. A claim with an equivalence margin ±δ "
        "is 'equivalent' when its interval lies inside ±δ."))
    sec.intro.append("What the advice comes to here: " + "; ".join(
        f"{v.claim.text}: {_advice(v)}" for v in verdicts) + ".")

    fold = _values(out, "bn_folded")
    if not fold.empty:
        sec.tables.append(_speed_table(
            f"Folding batch norm (the batch_norm network; mean [95% CI] over seeds){label}", "model", "unfolded",
            fold, [("unfolded", "bn_folded:original"), ("folded", "bn_folded")],
            f"Largest change of any test probability over all seeds: {_max(fold, 'bn_folded@max_probability_change')}"
            f" (the claim asks ≤ 1e-5). Latency ratio at batch 1000: "
            f"{_mean_ci(fold, 'bn_folded@latency_ratio_b1000', 3)}."))
    speed = _values(out, "activation_speed")
    if not speed.empty:
        sec.tables.append(_speed_table(
            f"Activation functions at prediction time (784-300-100-10; mean [95% CI] over seeds){label}",
            "activation", "leaky ReLU", speed,
            [("leaky ReLU (leaky_relu)", "activation_speed"), ("ELU (l2_free)", "activation_speed:elu"),
             ("SELU (max_norm_free)", "activation_speed:selu")]))
    precision = _values(out, "precision")
    if not precision.empty:
        rows = []
        for name, key in (("float32", "precision"), ("float16", "precision:float16"), ("int8 (Keras)", "precision:int8")):
            rows.append([name, _mean_ci(precision, f"{key}@test_accuracy"),
                         _max(precision, f"{key}@max_probability_change"),
                         f"{precision.loc[precision['key'] == f'{key}@weight_bytes', 'value'].max():,.0f}",
                         *_speed_rows(precision, [(name, key)], "precision")[0][1:]])
        sec.tables.append(Table(
            f"Lower precision (the leaky_relu network; mean [95% CI] over seeds){label}",
            ["precision", "test accuracy", "largest probability change", "weight bytes", "predictions/s (batch 1)",
             "median µs (batch 1)", "median ms (batch 1000)", "latency ratio to float32 (batch 1)"], rows))
    sparse_curves = out / "sparse" / "curves.csv"
    if sparse_curves.is_file():
        curves = pd.read_csv(sparse_curves)
        pivot = curves.groupby(["curve", "fraction"]).agg(sparsity=("sparsity", "mean"),
                                                           accuracy=("test_accuracy", "mean")).reset_index()
        rows = [[f"{f:g}"] + [f"{fmt(r.accuracy.iloc[0])} ({fmt(r.sparsity.iloc[0], 3)})" if len(r) else "n/a"
                              for r in (pivot[(pivot["curve"] == c) & (pivot["fraction"] == f)]
                                        for c in ("dense", "adam_l1", "ftrl_l1"))]
                for f in sorted(pivot["fraction"].unique())]
        sec.tables.append(Table(
            f"Sparsity-accuracy curves: test accuracy (fraction of zero kernel weights) after zeroing the smallest "
            f"fraction of the weights, mean over seeds{label}",
            ["zeroed", "dense (Adam)", "Adam + l1", "FTRL + l1"], rows,
            f"One global magnitude threshold over all kernels. 'At the same accuracy': the accuracy both l1 models "
            f"reach, the lower of their two dense accuracies minus {TARGET_GAP:g}, per seed."))
        sec.figures.append(Figure("last_page_sparsity", "Sparsity-accuracy curve per method (mean over seeds)",
                                  _curves_figure(curves, "sparsity", "test_accuracy", "curve",
                                                 "fraction of zero kernel weights", "test accuracy",
                                                 "Zeroing the smallest weights")))
    summary = result.summary.set_index("id") if len(result.summary) else pd.DataFrame()
    if {"task_b_scratch", "task_b_augmented"} <= set(summary.index):
        sec.tables.append(Table(
            f"Task B from scratch (200 training images), test accuracy over seeds{label}",
            ["model", "seeds", "mean ± std", "95% CI (t)"],
            [[i, str(summary.loc[i, "n"]), f"{fmt(summary.loc[i, 'mean'])} ± {fmt(summary.loc[i, 'std'])}",
              f"[{fmt(summary.loc[i, 'ci_low'])}, {fmt(summary.loc[i, 'ci_high'])}]"]
             for i in ("task_b_scratch", "task_b_augmented")],
            "Augmentation: shifts up to 10%, rotations up to 3% of a turn, zooms up to 10%, left-right mirroring "
            "(configs/last_page/task_b_augmented.toml), new draws every step; the same 20 epochs of SGD 1e-3."))
    mc_curves = out / "mc_abstain" / "curves.csv"
    if mc_curves.is_file():
        curves = pd.read_csv(mc_curves)
        mean = curves.groupby(["coverage", "curve"])["accuracy"].mean().unstack()
        sec.tables.append(Table(
            f"Abstaining when unsure: accuracy on the most-sure fraction of the test images, mean over seeds{label}",
            ["coverage", "deterministic softmax", "MC dropout mean"],
            [[f"{c:g}", fmt(r.get("deterministic")), fmt(r.get("mc"))] for c, r in mean.iterrows()],
            "Sureness: the top class probability of each pass (MC: of the mean over the passes). At coverage 1 "
            "the two are the plain accuracies."))
        sec.figures.append(Figure("last_page_risk_coverage", f"Risk-coverage: accuracy on the most-sure fraction "
                                  f"of test images (the claim at {ABSTAIN_COVERAGE:g}), mean over seeds",
                                  _curves_figure(curves, "coverage", "accuracy", "curve",
                                                 "coverage (fraction of test images answered)",
                                                 "accuracy on those", "Abstaining when unsure")))
    return sec
