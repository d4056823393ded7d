"""The notebook's experiments (SPEC §2) and the claims its text makes about them.

Each entry names its config (data, never code), the metric the notebook
reported and the figure it got in one run. Each claim pairs two entries on the
same seeds; its verdict is computed by the sequential rule
(:mod:`deepfit.experiments.sequential`), never written by hand: confirmed, the
opposite holds, equivalent within ±δ (its smallest effect of interest), or
undecided at N seeds. Baselines are configs the notebook did not run but its
claims need ("batch norm beats the plain network" needs the plain network).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from deepfit.experiments.stats import Column, Paired, adjust, paired_test


@dataclass(frozen=True)
class Entry:
    id: str
    title: str
    config: str | None  # under configs/; None for entries computed from another's runs (mc_dropout)
    metric: str  # the notebook's metric: "val_accuracy", "test_accuracy" or "mc_test_accuracy"
    notebook: float | None  # the notebook's one-run figure (None for baselines)
    after: str | None = None  # an entry whose runs (same seed) this one needs
    quick: dict[str, Any] = field(default_factory=dict)  # extra overrides for --quick
    baseline: bool = False
    transfer: bool = False  # the notebook's transfer study: more seeds in --full (cheap, and the most disputed)
    table: str | None = None  # one of the chapter's tables (TABLES), not a notebook cell
    variant: str | None = None  # when ``config`` is an experiment file: the variant this entry runs
    overrides: dict[str, Any] = field(default_factory=dict)  # applied in every mode
    lr_rule: bool = False  # the learning rate is chosen first (chapter_tables.choose_rate), not the config's
    needs: tuple[str, ...] = ()  # entries besides ``after`` whose runs it reads or its claims compare it with


TRANSFER_QUICK = {"training.freeze": [{"epochs": 1, "trainable": "head"}, {"epochs": 1, "trainable": "all"}]}

CATALOG: list[Entry] = [
    Entry("leaky_relu", "LeakyReLU + He init (784-300-100-10), SGD 1e-3, 10 epochs", "leaky_relu.toml",
          "val_accuracy", 0.8396),
    Entry("selu_100", "100 SELU layers, LeCun init, standardized inputs, 5 epochs", "selu_100.toml",
          "val_accuracy", 0.8218),
    Entry("relu_100", "100 ReLU layers, He init, standardized inputs, 5 epochs", "relu_100.toml",
          "val_accuracy", 0.7380),
    Entry("batch_norm", "Batch norm after Flatten and each hidden Dense, ReLU, SGD 1e-3, 10 epochs",
          "batch_norm.toml", "val_accuracy", 0.8750),
    Entry("plain_relu", "Baseline: the batch_norm network without batch norm", "baselines/plain_relu.toml",
          "val_accuracy", None, baseline=True),
    Entry("task_a", "Task A: 8 classes (no sandal, no shirt), 300-100-50-50-50 SELU, 20 epochs", "task_a.toml",
          "val_accuracy", 0.9200, transfer=True),
    Entry("task_b_scratch", "Task B (sandal vs shirt, 200 images) from scratch, 20 epochs", "task_b_scratch.toml",
          "test_accuracy", 0.9705, transfer=True),
    Entry("task_b_on_a", "Task B on task A's layers: 4 epochs frozen, then 16 unfrozen", "task_b_on_a.toml",
          "test_accuracy", 0.9935, after="task_a", quick=TRANSFER_QUICK, transfer=True),
    Entry("power", "Power scheduling: SGD 0.01, decay 1e-4, 25 epochs", "power.toml", "val_accuracy", 0.8864),
    Entry("exponential", "Exponential scheduling: Nadam, lr0 0.01, s 20, 25 epochs", "exponential.toml",
          "val_accuracy", 0.8832),
    Entry("piecewise", "Piecewise constant: Nadam, [5, 15] -> [0.01, 0.005, 0.001], 25 epochs", "piecewise.toml",
          "val_accuracy", 0.8834),
    Entry("plateau", "Performance scheduling: SGD 0.02 momentum 0.9, x0.5 on plateau (patience 5)", "plateau.toml",
          "val_accuracy", 0.8936),
    Entry("one_cycle", "1cycle: SGD, batch 128, max rate 0.05, 25 epochs", "one_cycle.toml", "val_accuracy", 0.8934),
    Entry("l2", "l2(0.01) on every kernel, ELU + He, Nadam, 2 epochs", "l2.toml", "val_accuracy", 0.8376),
    Entry("l2_free", "Baseline: the l2 network without l2", "baselines/l2_free.toml", "val_accuracy", None,
          baseline=True),
    Entry("dropout", "Dropout 0.2 before each Dense, ELU + He, Nadam, 20 epochs", "dropout.toml", "val_accuracy",
          0.8934),
    Entry("mc_dropout", "MC dropout: the dropout model's mean over 100 stochastic passes, test set", None,
          "mc_test_accuracy", 0.8844, after="dropout"),
    Entry("max_norm", "max_norm(1.0), SELU + LeCun, Nadam, 2 epochs", "max_norm.toml", "val_accuracy", 0.8662),
    Entry("max_norm_free", "Baseline: the max_norm network without max-norm", "baselines/max_norm_free.toml",
          "val_accuracy", None, baseline=True),
]

# The chapter's tables: its closing advice, which the notebook never runs. Each id is one row.
TABLES: dict[str, str] = {
    "table_11_2": "Table 11-2: optimizer comparison (convergence speed and quality)",
    "table_11_3_11_4": "Tables 11-3 and 11-4: the default and the self-normalizing configurations",
    "last_page": "The chapter's last page: fast, small and sparse models, augmentation, abstaining",
}

# The presets train for the notebook baseline's 10 epochs and without early stopping, so that every
# row is scored the same way (restore_best_weights would report each run's best epoch instead).
PRESET_RUN = {"training.epochs": 10, "training.callbacks": []}

CATALOG += [
    Entry(f"table_11_2_{name}", f"Table 11-2, {label}: the leaky_relu network, 10 epochs, rate by the stated rule",
          "sweeps/optimizers.toml", "best_val_accuracy", None, table="table_11_2", variant=name, lr_rule=True)
    for name, label in [("sgd", "SGD"), ("momentum", "SGD momentum 0.9"), ("nesterov", "SGD Nesterov 0.9"),
                        ("adagrad", "AdaGrad"), ("rmsprop", "RMSprop"), ("adam", "Adam"), ("nadam", "Nadam"),
                        ("adamax", "AdaMax")]
]

CATALOG += [
    Entry("table_11_3_shallow", "Table 11-3 preset (deepfit new default): 300-100 ELU + He, SGD momentum + 1cycle",
          "presets/default.toml", "val_accuracy", None, after="leaky_relu", table="table_11_3_11_4",
          overrides=PRESET_RUN),
    Entry("table_11_4_shallow", "Table 11-4 preset (deepfit new self_normalizing): 300-100 SELU + LeCun, 1cycle",
          "presets/self_normalizing.toml", "val_accuracy", None, after="leaky_relu", table="table_11_3_11_4",
          overrides=PRESET_RUN),
    Entry("table_11_3_deep", "Table 11-3 preset, 20 hidden layers: batch norm after each (deep)",
          "presets/default_20.toml", "val_accuracy", None, table="table_11_3_11_4", overrides=PRESET_RUN),
    Entry("table_11_3_deep_no_bn", "Baseline: the 20-layer Table 11-3 preset without batch norm",
          "baselines/default_20_no_bn.toml", "val_accuracy", None, table="table_11_3_11_4", overrides=PRESET_RUN),
    Entry("table_11_4_deep", "Table 11-4 preset, 20 hidden layers of SELU (no normalization)",
          "presets/self_normalizing_20.toml", "val_accuracy", None, table="table_11_3_11_4", overrides=PRESET_RUN),
]

# The chapter's last page (its closing advice, never run in the notebook): trained entries (configs/last_page/)
# and measured ones (config None: numbers computed per seed from other entries' runs, experiments/last_page.py).
LAST_PAGE = "last_page"
CATALOG += [
    Entry("dense_adam", "Last page: 784-300-100-10 ELU + He, Adam, 10 epochs (the dense reference)",
          "last_page/dense_adam.toml", "test_accuracy", None, table=LAST_PAGE),
    Entry("adam_l1", "Last page: dense_adam with l1(1e-4) on every kernel", "last_page/adam_l1.toml",
          "test_accuracy", None, table=LAST_PAGE),
    Entry("ftrl_l1", "Last page: dense_adam trained with FTRL and its l1 (0.05), rate 0.2", "last_page/ftrl_l1.toml",
          "test_accuracy", None, table=LAST_PAGE),
    Entry("task_b_augmented", "Last page: task B from scratch (200 images) with data augmentation",
          "last_page/task_b_augmented.toml", "test_accuracy", None, transfer=True, table=LAST_PAGE,
          needs=("task_b_scratch",)),
    Entry("bn_folded", "Last page: the batch_norm network with its batch norm folded into the Dense layers", None,
          "predictions_per_second_b1", None, after="batch_norm", table=LAST_PAGE),
    Entry("activation_speed", "Last page: prediction speed of 784-300-100-10 with leaky ReLU (leaky_relu), ELU "
          "(l2_free) and SELU (max_norm_free)", None, "predictions_per_second_b1", None, after="leaky_relu",
          needs=("l2_free", "max_norm_free"), table=LAST_PAGE),
    Entry("precision", "Last page: the leaky_relu network in float32, float16 and int8 (Keras)", None,
          "test_accuracy", None, after="leaky_relu", table=LAST_PAGE),
    Entry("sparse", "Last page: sparsity-accuracy curves of dense_adam, adam_l1 and ftrl_l1 (tiny weights zeroed)",
          None, "test_accuracy", None, after="dense_adam", needs=("adam_l1", "ftrl_l1"), table=LAST_PAGE),
    Entry("mc_abstain", "Last page: abstaining on the 10% least sure test images, MC dropout vs deterministic",
          None, "accuracy_at_90_coverage", None, after="dropout", table=LAST_PAGE),
]

NOTEBOOK_IDS = [e.id for e in CATALOG if not e.baseline and e.table is None]


@dataclass(frozen=True)
class Claim:
    """``better`` beats ``worse`` on ``metric`` (same seeds), as the notebook says or implies.

    ``equivalence``: the smallest difference that matters (δ), below which the two count as
    equivalent; None takes the metric's reasoned default (``stats.Column.margin``: one point
    of an accuracy, 0.01 nat of a crossentropy). ``max_seeds``: where ``--until-decided``
    stops adding seeds for this claim (None: the command's ``--max-seeds``).
    A last-page claim of equivalence says the two are within ±δ ("float16 costs less than δ of accuracy").
    """

    id: str
    text: str
    better: str  # entry id (or "mc_dropout:deterministic" style column references, see values())
    worse: str
    metric: str
    equivalence: float | None = None
    max_seeds: int | None = None


CLAIMS: list[Claim] = [
    Claim("selu_vs_relu", "SELU beats ReLU in a 100-layer network", "selu_100", "relu_100", "val_accuracy"),
    Claim("batch_norm", "Batch norm reaches a higher accuracy than the same network without it (10 epochs)",
          "batch_norm", "plain_relu", "val_accuracy"),
    # d_z about 1 over the full run's 10 seeds: 20 seeds decide it about half the time at the family's
    # level (sequential.simulate), 30 most of the time; its runs are cheap but for task A's pretraining.
    Claim("transfer", "Task B on task A's layers beats task B from scratch", "task_b_on_a", "task_b_scratch",
          "test_accuracy", max_seeds=30),
    *[Claim(f"one_cycle_vs_{s}", f"1cycle beats {s} scheduling", "one_cycle", s, "val_accuracy")
      for s in ("power", "exponential", "piecewise", "plateau")],
    Claim("mc_dropout", "MC dropout's mean prediction is more accurate than the deterministic pass",
          "mc_dropout", "mc_dropout:deterministic", "test_accuracy"),
    Claim("l2_costs", "l2(0.01) costs accuracy after 2 epochs", "l2_free", "l2", "val_accuracy"),
    Claim("max_norm_costs", "max_norm(1.0) costs accuracy after 2 epochs", "max_norm_free", "max_norm",
          "val_accuracy"),
    # Table 11-2's "AdaGrad: * (stops too early)", tested against RMSprop, the same per-parameter
    # scaling with a decaying average instead of AdaGrad's ever-growing sum.
    Claim("adagrad_stops_early", "Table 11-2: AdaGrad stops too early (its training loss ends higher than "
          "RMSprop's)", "table_11_2_rmsprop", "table_11_2_adagrad", "loss"),
    Claim("adagrad_quality", "Table 11-2: AdaGrad's best validation accuracy is lower than RMSprop's",
          "table_11_2_rmsprop", "table_11_2_adagrad", "best_val_accuracy"),
    Claim("preset_default_vs_notebook", "Table 11-3's default configuration beats the notebook's baseline "
          "(leaky_relu, SGD 1e-3), 10 epochs", "table_11_3_shallow", "leaky_relu", "val_accuracy"),
    Claim("preset_selu_vs_notebook", "Table 11-4's self-normalizing configuration beats the notebook's baseline "
          "(leaky_relu, SGD 1e-3), 10 epochs", "table_11_4_shallow", "leaky_relu", "val_accuracy"),
    Claim("preset_selu_vs_default_shallow", "Self-normalizing (Table 11-4) beats the default (Table 11-3) at "
          "2 hidden layers", "table_11_4_shallow", "table_11_3_shallow", "val_accuracy"),
    Claim("preset_selu_vs_default_deep", "Self-normalizing (Table 11-4) beats the default (Table 11-3) at "
          "20 hidden layers", "table_11_4_deep", "table_11_3_deep", "val_accuracy"),
    Claim("preset_batch_norm_if_deep", "Table 11-3's 'batch norm if deep': at 20 hidden layers the default "
          "is better with batch norm", "table_11_3_deep", "table_11_3_deep_no_bn", "val_accuracy"),
]

# The chapter's last page. Speed: predictions per second at batch 1 (one request), JAX jit, the compared
# models timed in alternation; equivalence margins: δ of test accuracy below which a change does not matter.
CLAIMS += [
    Claim("fold_keeps_predictions", "Folding batch norm into the Dense layers keeps the predictions (test accuracy "
          "equivalent within ±0.0001; every probability within 1e-5: bn_folded/)", "bn_folded",
          "bn_folded:original", "test_accuracy", equivalence=1e-4),
    Claim("fold_faster", "Folding batch norm makes prediction faster (batch 1)", "bn_folded", "bn_folded:original",
          "predictions_per_second_b1"),
    Claim("leaky_faster_than_elu", "Leaky ReLU predicts faster than ELU, same network (batch 1)",
          "activation_speed", "activation_speed:elu", "predictions_per_second_b1"),
    Claim("leaky_faster_than_selu", "Leaky ReLU predicts faster than SELU, same network (batch 1)",
          "activation_speed", "activation_speed:selu", "predictions_per_second_b1"),
    Claim("float16_costs_little", "float16 costs less than half a point of test accuracy (equivalence ±0.005)",
          "precision:float16", "precision", "test_accuracy", equivalence=0.005),
    Claim("int8_costs_little", "int8 (Keras's quantize) costs less than half a point of test accuracy "
          "(equivalence ±0.005)", "precision:int8", "precision", "test_accuracy", equivalence=0.005),
    Claim("float16_faster", "float16 predicts faster than float32 (batch 1)", "precision:float16", "precision",
          "predictions_per_second_b1"),
    Claim("int8_faster", "int8 predicts faster than float32 (batch 1)", "precision:int8", "precision",
          "predictions_per_second_b1"),
    Claim("l1_pruned_keeps_accuracy", "l1 + zeroing the smallest 90% of the weights keeps the dense model's test "
          "accuracy (equivalence ±0.01)", "sparse:adam_l1_pruned90", "sparse", "test_accuracy", equivalence=0.01),
    Claim("ftrl_sparser", "FTRL + l1 reaches a sparser model than Adam + l1 at the same accuracy (fraction of zero "
          "weights at the accuracy both reach, minus 1 point)", "sparse:ftrl_l1", "sparse:adam_l1",
          "sparsity_at_target"),
    Claim("augmentation_helps", "Data augmentation improves task B from scratch (200 images)", "task_b_augmented",
          "task_b_scratch", "test_accuracy"),
    Claim("mc_abstains_better", "MC dropout's uncertainty abstains better: accuracy on the 90% of test images it is "
          "most sure of, MC mean vs deterministic softmax", "mc_abstain", "mc_abstain:deterministic",
          "accuracy_at_90_coverage"),
]


def entry(id: str) -> Entry:
    for e in CATALOG:
        if e.id == id:
            return e
    from deepfit.errors import ConfigError
    from deepfit.registry import did_you_mean

    raise ConfigError(f"unknown experiment id {id!r}.{did_you_mean(id, [e.id for e in CATALOG])} "
                      f"Ids: {', '.join(e.id for e in CATALOG)}.")


@dataclass
class Verdict:
    claim: Claim
    paired: Paired
    verdict: str
    seeds: list = field(default_factory=list)  # the shared seeds, in order (paired.pairs follows them)

    @property
    def decided(self) -> bool:
        return self.paired.decided


def _verdict_text(claim: Claim, p: Paired, column: Column) -> str:
    """A comparison's decision in the claim's words: d = better − worse, so "up" confirms a claim about
    a metric to maximize and refutes one about a metric to minimize (a loss: the claimed better is lower)."""
    if p.decision == "equivalent":
        return f"equivalent within ±{p.delta:g}"
    if p.decision in ("up", "down"):
        if column.direction not in ("max", "min"):
            return (f"undecided: {claim.metric} has no known direction (the first is "
                    f"{'higher' if p.decision == 'up' else 'lower'})")
        return "confirmed" if (p.decision == "up") == (column.direction == "max") else \
            "not confirmed: the opposite holds"
    if p.n >= 2 and p.mean_diff == 0 and p.std_diff == 0:
        # The rule learns no scale from a look without spread (sequential.py), so it cannot decide; that the
        # two are the same number on every seed is the fact to report (batch norm folded, same predictions).
        return f"identical on every seed ({p.n})"
    return p.verdict


def judge(claim: Claim, better: dict[int, float], worse: dict[int, float], column: Column | None = None,
          alpha: float = 0.05, family: int = 1) -> Verdict:
    """``better − worse`` over the seeds both have (in seed order), judged by the sequential rule as one of a
    family of ``family`` claims; ``column`` says which way ``claim.metric`` should go and its range.

    "confirmed" when the claim's interval is all on the claimed side of 0 ("the first is better": higher,
    or lower for a metric to minimize), "not confirmed: the opposite holds" when all on the other side,
    "equivalent within ±δ" when all inside ±δ, else "undecided at N seeds". :func:`judge_all` judges a
    family together.
    """
    column = column or Column(claim.metric)
    seeds = sorted(set(better) & set(worse))
    a = np.array([better[s] for s in seeds], np.float64)
    b = np.array([worse[s] for s in seeds], np.float64)
    delta = claim.equivalence if claim.equivalence is not None else column.margin
    p = paired_test(a, b, metric=claim.metric, variant=claim.better, reference=claim.worse,
                    confidence=1 - alpha, direction=column.direction, delta=delta, family=family, span=column.span)
    return Verdict(claim, p, _verdict_text(claim, p, column), seeds)


def judge_all(pairs: list[tuple], alpha: float = 0.05) -> list[Verdict]:
    """Claims judged as one family: ``pairs`` of (claim, better, worse[, column]). Each claim's interval is
    at level 1 − α/m, so that all m hold at once with probability 1 − α at every look: the chance that any
    verdict of the family is wrong stays at α (see :mod:`deepfit.experiments.sequential`). The fixed-n
    p-values are Holm-adjusted over the family beside them (descriptive)."""
    m = len(pairs)
    judged = [judge(c, better, worse, *(rest or [None]), alpha=alpha, family=m) for c, better, worse, *rest in pairs]
    adjusted = adjust([v.paired for v in judged], 1 - alpha, family=m)
    return [Verdict(v.claim, replace(p, family=m), v.verdict, v.seeds) for v, p in zip(judged, adjusted)]
