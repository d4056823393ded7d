"""Where the spread over seeds comes from: initialization vs data order, and tests that respect the crossing.

A crossed experiment trains every (init seed i, order seed j) cell once, so a
final metric is modelled as a two-way random-effects layout without
replication (Searle, Casella & McCulloch 1992, "Variance Components", §4.7)::

    y_ij = μ + a_i + b_j + e_ij,   a_i ~ (0, σ²_init), b_j ~ (0, σ²_order), e_ij ~ (0, σ²_resid)

With one run per cell the init × order interaction cannot be told apart from
the residual: ``σ²_resid`` holds both.

Estimator: ANOVA (method of moments, "expected mean squares"). With ``I`` init
seeds and ``J`` order seeds, on the complete grid::

    MS_init  = J Σ_i (ȳ_i. − ȳ..)² / (I − 1)            E = σ²_resid + J σ²_init
    MS_order = I Σ_j (ȳ.j − ȳ..)² / (J − 1)            E = σ²_resid + I σ²_order
    MS_resid = Σ_ij (y_ij − ȳ_i. − ȳ.j + ȳ..)² / ((I − 1)(J − 1))      E = σ²_resid

so ``σ̂²_init = (MS_init − MS_resid) / J``, ``σ̂²_order = (MS_order − MS_resid) / I``
and ``σ̂²_resid = MS_resid``. A negative estimate (its mean square below the
residual one, which happens by chance when the true component is small) is
truncated at 0 and flagged: the usual convention, slightly biased upward. The
F ratios ``MS_init / MS_resid`` and ``MS_order / MS_resid`` test "no init
(order) variance".

Comparing two variants on the same cells. The per-cell differences
``d_ij = x_variant − x_reference`` follow the same model, and the cells are not
independent (a cell shares its init seed with J − 1 others). The mean
difference ``d̄..`` then has variance ``σ²_init/I + σ²_order/J + σ²_resid/(IJ)``,
estimated without bias by ``(MS_init + MS_order − MS_resid) / (IJ)``; its
degrees of freedom by Satterthwaite's approximation (Satterthwaite 1946; the
same quasi-F logic as Clark 1973's min F′). Treating the IJ cells as IJ
independent pairs would overstate the evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy


@dataclass(frozen=True)
class Decomposition:
    """Init / order / residual variance of one metric over a complete I × J grid (ANOVA estimator)."""

    n_init: int
    n_order: int
    mean: float
    ms_init: float
    ms_order: float
    ms_resid: float
    var_init: float  # truncated at 0
    var_order: float
    var_resid: float
    p_init: float  # F test of σ²_init = 0
    p_order: float
    truncated: tuple[str, ...]  # components whose raw estimate was negative
    dropped: int  # cells left out to make the grid complete

    @property
    def total(self) -> float:
        return self.var_init + self.var_order + self.var_resid

    def share(self, part: str) -> float:
        return getattr(self, f"var_{part}") / self.total if self.total > 0 else math.nan


def grid(table: pd.DataFrame, value: str) -> tuple[np.ndarray, int]:
    """An (init × order) array of ``value`` from rows with ``init_seed`` and ``order_seed``.

    Cells with a non-finite value (a diverged run) make the grid incomplete; the
    ANOVA estimator needs it complete, so init seeds with a missing cell are
    dropped whole and their count returned (then order seeds, if that kept fewer cells).
    """
    wide = table.pivot_table(index="init_seed", columns="order_seed", values=value, aggfunc="first")
    wide = wide.where(np.isfinite(wide.astype(float)))
    total = int(wide.notna().to_numpy().sum())
    by_rows = wide.dropna(axis=0, how="any")
    by_cols = wide.dropna(axis=1, how="any")
    best = by_rows if by_rows.size >= by_cols.size else by_cols
    return best.to_numpy(dtype=np.float64), total - best.size


def mean_squares(y: np.ndarray) -> tuple[float, float, float]:
    """(MS_init, MS_order, MS_resid) of a complete I × J grid (see the module doc)."""
    n_i, n_j = y.shape
    grand = y.mean()
    rows, cols = y.mean(axis=1), y.mean(axis=0)
    ms_a = n_j * ((rows - grand) ** 2).sum() / (n_i - 1)
    ms_b = n_i * ((cols - grand) ** 2).sum() / (n_j - 1)
    resid = y - rows[:, None] - cols[None, :] + grand
    ms_e = (resid ** 2).sum() / ((n_i - 1) * (n_j - 1))
    return float(ms_a), float(ms_b), float(ms_e)


def decompose(y: np.ndarray, dropped: int = 0) -> Decomposition | None:
    """ANOVA variance components of a complete grid; None below 2 × 2 (no residual to estimate)."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2 or min(y.shape) < 2:
        return None
    n_i, n_j = y.shape
    ms_a, ms_b, ms_e = mean_squares(y)
    raw_a, raw_b = (ms_a - ms_e) / n_j, (ms_b - ms_e) / n_i
    df_e = (n_i - 1) * (n_j - 1)
    if ms_e > 0:
        p_a = float(scipy.stats.f.sf(ms_a / ms_e, n_i - 1, df_e))
        p_b = float(scipy.stats.f.sf(ms_b / ms_e, n_j - 1, df_e))
    else:  # an exactly additive grid: the F ratios are undefined
        p_a = p_b = math.nan
    truncated = tuple(name for name, v in (("init", raw_a), ("order", raw_b)) if v < 0)
    return Decomposition(n_i, n_j, float(y.mean()), ms_a, ms_b, ms_e, max(raw_a, 0.0), max(raw_b, 0.0), ms_e,
                         p_a, p_b, truncated, dropped)


def decompose_table(table: pd.DataFrame, value: str) -> Decomposition | None:
    """:func:`decompose` of ``value`` over a table's (init_seed, order_seed) cells."""
    if not {"init_seed", "order_seed", value} <= set(table.columns):
        return None
    y, dropped = grid(table, value)
    return decompose(y, dropped) if y.size else None


@dataclass(frozen=True)
class CrossedMean:
    """The mean of a crossed grid of differences, its standard error and Satterthwaite degrees of freedom."""

    n: int
    mean: float
    se: float
    df: float
    total_sd: float  # sd of one cell's difference: sqrt(σ²_init + σ²_order + σ²_resid)


def crossed_mean(d: np.ndarray) -> CrossedMean:
    """Inference for the grand mean of a complete I × J grid (see the module doc).

    ``Var(d̄..) = (MS_init + MS_order − MS_resid) / (IJ)``; when sampling noise
    makes that combination fall below ``MS_resid / (IJ)`` (the variance if both
    seed effects were absent) it is floored there, so the interval never claims
    more precision than independent cells would give.
    """
    d = np.asarray(d, dtype=np.float64)
    n_i, n_j = d.shape
    ms_a, ms_b, ms_e = mean_squares(d)
    combo = ms_a + ms_b - ms_e
    if combo >= ms_e:
        denom = ms_a ** 2 / (n_i - 1) + ms_b ** 2 / (n_j - 1) + ms_e ** 2 / ((n_i - 1) * (n_j - 1))
        df = combo ** 2 / denom if denom > 0 else math.nan
    else:
        combo, df = ms_e, float((n_i - 1) * (n_j - 1))
    dec = decompose(d)
    return CrossedMean(d.size, float(d.mean()), math.sqrt(combo / d.size), float(df),
                       math.sqrt(dec.total) if dec is not None else math.nan)


__all__ = ["CrossedMean", "Decomposition", "crossed_mean", "decompose", "decompose_table", "grid", "mean_squares"]
