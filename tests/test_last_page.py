"""The chapter's last page in the catalog: its measurements, its claims (equivalence included), its family."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from reliability_fixtures import tiny_arrays, tiny_config
from statsmodels.stats.weightstats import ttost_paired

import deepfit as df
from deepfit.experiments import last_page as lp
from deepfit.experiments import reproduce as rp
from deepfit.experiments.catalog import CATALOG, CLAIMS, LAST_PAGE, judge, judge_all
from deepfit.workflows import reproduce as deepfit_reproduce

DATA = tiny_arrays()
CALLS = {1: 5, 1000: 2}


def claim(id):
    return next(c for c in CLAIMS if c.id == id)


def test_last_page_selects_its_rows_and_every_run_its_measures_and_claims_read():
    ids = [e.id for e in rp.select([LAST_PAGE])]
    assert set(ids) == {"leaky_relu", "batch_norm", "task_b_scratch", "l2_free", "dropout", "max_norm_free",
                        "dense_adam", "adam_l1", "ftrl_l1", "task_b_augmented", "bn_folded", "activation_speed",
                        "precision", "sparse", "mc_abstain"}
    last = [c for c in CLAIMS if c.id in {"fold_keeps_predictions", "fold_faster", "leaky_faster_than_elu",
                                          "leaky_faster_than_selu", "float16_costs_little", "int8_costs_little",
                                          "float16_faster", "int8_faster", "l1_pruned_keeps_accuracy",
                                          "ftrl_sparser", "augmentation_helps", "mc_abstains_better"}]
    assert len(last) == 12
    assert {c.equivalence for c in last} == {None, 1e-4, 0.005, 0.01}
    for e in CATALOG:
        if e.table == LAST_PAGE and e.config is None:
            assert e.id in lp.MEASURES and set(lp.SOURCES[e.id].values()) == {e.after, *e.needs}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-0.02, 0.02), min_size=3, max_size=12), st.floats(0.001, 0.03))
def test_an_equivalence_verdict_is_one_that_schuirmanns_two_one_sided_tests_also_reach(diffs, delta):
    """The verdict's interval is anytime-valid, so wider than the fixed-n t interval: whenever it says
    'equivalent', the TOST at the same level (statsmodels) says so too, on the seeds the verdict used (the rule
    stops at its first deciding look: 3 of 4 seeds, say, and the fourth does not undo it)."""
    d = np.asarray(diffs)
    b = np.linspace(0.8, 0.9, len(d))
    c = dataclasses.replace(claim("float16_costs_little"), equivalence=delta)
    v = judge(c, dict(enumerate(b + d)), dict(enumerate(b)), lp.column("test_accuracy"))
    n = v.paired.n
    if v.verdict.startswith("equivalent") and np.std(d[:n]) > 0:
        assert ttost_paired(b[:n] + d[:n], b[:n], -delta, delta)[0] < 0.05  # the larger of the two one-sided p


def test_an_equivalence_verdict_stands_on_the_seeds_of_its_first_deciding_look():
    """The case hypothesis found: equivalent at 3 seeds; a 4th seed's large difference is beside it, not in it."""
    b = np.linspace(0.8, 0.9, 4)
    d = np.array([0.0, 0.0, 0.001953125, 0.01953125])
    c = dataclasses.replace(claim("float16_costs_little"), equivalence=0.015625)
    v = judge(c, dict(enumerate(b + d)), dict(enumerate(b)), lp.column("test_accuracy"))
    assert v.verdict.startswith("equivalent") and (v.paired.n, v.paired.available) == (3, 4)
    assert ttost_paired(b[:3] + d[:3], b[:3], -0.015625, 0.015625)[0] < 0.05
    assert ttost_paired(b + d, b, -0.015625, 0.015625)[0] > 0.05  # all four at a fixed n would not decide it


def test_four_verdicts_in_the_claims_own_words():
    c = claim("float16_costs_little")  # equivalence ±0.005
    accuracy = lp.column("test_accuracy")
    base = {s: 0.84 + 0.001 * s for s in range(10)}
    same = {s: v + 0.0002 * (-1) ** s for s, v in base.items()}
    assert judge(c, same, base, accuracy).verdict == "equivalent within ±0.005"
    worse = {s: v - 0.02 - 0.001 * (-1) ** s for s, v in base.items()}
    assert judge(c, worse, base, accuracy).verdict == "not confirmed: the opposite holds"
    better = {s: v + 0.02 + 0.001 * (-1) ** s for s, v in base.items()}
    assert judge(c, better, base, accuracy).verdict == "confirmed"
    noisy = {s: v + 0.008 * (-1) ** s for s, v in base.items()}
    assert judge(c, noisy, base, accuracy).verdict.startswith("undecided at 10 seeds")
    exact = claim("fold_keeps_predictions")  # no spread: the rule learns no scale, and says what it sees
    same_everywhere = judge(exact, dict(base), dict(base), accuracy)
    assert same_everywhere.verdict == "identical on every seed (10)"
    # The rule has no interval without spread: none is shown (not the whole span, [-1, 1]).
    assert math.isnan(same_everywhere.paired.cs_low) and math.isnan(same_everywhere.paired.cs_high)
    shifted = judge(exact, {s: v + 0.0001 for s, v in base.items()}, base, accuracy)
    assert shifted.verdict.startswith("undecided") and math.isnan(shifted.paired.cs_low)
    # Speeds: more predictions per second is the claimed side, read from what the value is.
    fast = claim("fold_faster")
    speed = lp.column("predictions_per_second_b1")
    slow = {s: 1000.0 + 10 * s for s in range(10)}
    quick = {s: v * 1.5 + (-1) ** s for s, v in slow.items()}
    assert judge(fast, quick, slow, speed).verdict == "confirmed"
    assert judge(fast, slow, quick, speed).verdict == "not confirmed: the opposite holds"


def test_the_last_page_is_a_family_of_its_own():
    up = {s: 1.0 + 0.1 * s + 0.01 * (-1) ** s for s in range(5)}
    flat = {s: 1.0 + 0.1 * s for s in range(5)}
    values = {"bn_folded@predictions_per_second_b1": up, "bn_folded:original@predictions_per_second_b1": flat,
              "activation_speed@predictions_per_second_b1": flat,
              "activation_speed:elu@predictions_per_second_b1": flat,
              "batch_norm@val_accuracy": up, "plain_relu@val_accuracy": flat}
    columns = {k: lp.column(k.split("@")[1]) for k in values if "speed" in k or "folded" in k}
    verdicts = {v.claim.id: v for v in rp.judge_claims(values, columns)}
    assert verdicts["fold_faster"].paired.family == 2 and verdicts["leaky_faster_than_elu"].paired.family == 2
    assert verdicts["batch_norm"].paired.family == 1
    alone = judge_all([(claim("fold_faster"), up, flat, columns["bn_folded@predictions_per_second_b1"]),
                       (claim("leaky_faster_than_elu"), flat, flat, columns["bn_folded@predictions_per_second_b1"])])
    assert verdicts["fold_faster"].paired.p_holm == pytest.approx(alone[0].paired.p_holm)
    assert verdicts["fold_faster"].verdict == alone[0].verdict


def test_risk_coverage_and_sparsity_at_target_by_hand():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55]])
    y = np.array([0, 1, 1, 1])  # the 0.6 one is wrong
    curve = {p["coverage"]: p["accuracy"] for p in lp.risk_coverage(probs, y, (0.5, 0.75, 1.0))}
    assert curve == {0.5: 1.0, 0.75: pytest.approx(2 / 3), 1.0: 0.75}
    points = [{"sparsity": 0.1, "test_accuracy": 0.85}, {"sparsity": 0.9, "test_accuracy": 0.84},
              {"sparsity": 0.95, "test_accuracy": 0.80}]
    assert lp.sparsity_at(points, 0.84) == 0.9 and lp.sparsity_at(points, 0.9) == 0.0


def tiny_run(layers=None, **training):
    cfg = tiny_config(**training)
    if layers is not None:
        cfg["model"]["layers"] = layers
    return df.train(cfg, data=DATA, save=False)


def test_the_measures_on_tiny_runs():
    (x, y) = (np.asarray(DATA[1][0], np.float32) / 255, np.asarray(DATA[1][1]))
    bn = tiny_run([{"type": "flatten"}, {"type": "batch_norm"}, {"type": "dense", "units": 16, "activation": "relu"},
                   {"type": "batch_norm"}, {"type": "dense", "units": 3, "activation": "softmax"}])
    fold = lp.measure_bn_folded({"original": bn}, x, y, CALLS)["values"]
    assert fold["bn_folded@max_probability_change"] <= 1e-5
    assert fold["bn_folded@test_accuracy"] == fold["bn_folded:original@test_accuracy"]
    assert fold["bn_folded@predictions_per_second_b1"] == pytest.approx(1 / fold["bn_folded@latency_median_s_b1"])
    plain = tiny_run()
    prec = lp.measure_precision({"float32": plain}, x, y, CALLS)["values"]
    assert prec["precision:float16@weight_bytes"] == prec["precision@weight_bytes"] / 2
    assert prec["precision:int8@weight_bytes"] < 0.3 * prec["precision@weight_bytes"]
    assert prec["precision@max_probability_change"] == 0.0
    assert abs(prec["precision:float16@test_accuracy"] - prec["precision@test_accuracy"]) <= 0.02
    sparse = lp.measure_sparse({"dense": plain, "adam_l1": plain, "ftrl_l1": plain}, x, y, CALLS)
    dense = next(p for p in sparse["curves"]["dense"] if p["fraction"] == 0.9)
    assert dense["sparsity"] == pytest.approx(np.floor(0.9 * (64 * 16 + 16 * 3)) / (64 * 16 + 16 * 3))
    assert sparse["values"]["sparse:adam_l1_pruned90@test_accuracy"] == dense["test_accuracy"]
    dropout = tiny_run(epochs=1)
    mc = lp.measure_mc_abstain({"model": dropout}, x, y, CALLS, mc_samples=5, seed=0)
    assert set(mc["values"]) == {"mc_abstain@accuracy_at_90_coverage", "mc_abstain:deterministic@accuracy_at_90_coverage"}


@pytest.mark.slow
def test_reproduce_only_last_page_end_to_end(tmp_path, monkeypatch):
    tiny = dataclasses.replace(rp.QUICK, overrides={"data.train_size": 256, "data.validation_size": 500,
                                                    "training.epochs": 1}, mc_samples=4, mc_test_images=300)
    monkeypatch.setitem(rp.MODES, "quick", tiny)
    monkeypatch.setitem(lp.LATENCY_CALLS, "quick", CALLS)
    result = deepfit_reproduce(tmp_path / "r", only=[LAST_PAGE], seeds=2, log=lambda s: None)
    claims = pd.read_csv(tmp_path / "r" / "claims.csv").set_index("claim")
    assert len(claims) == 12 and set(claims["family"]) == {12}  # 2 seeds: every claim has a pair
    assert claims.loc["fold_keeps_predictions", "verdict"] == "identical on every seed (2)"
    values = pd.read_csv(tmp_path / "r" / "bn_folded" / "values.csv")
    assert values.loc[values["key"] == "bn_folded@max_probability_change", "value"].max() <= 1e-5
    report = (tmp_path / "r" / "report.md").read_text()
    assert "The chapter's last page" in report and "Sparsity-accuracy curves" in report
    again = deepfit_reproduce(tmp_path / "r", only=[LAST_PAGE], seeds=2, log=lambda s: None)
    assert [v.verdict for v in again.verdicts] == [v.verdict for v in result.verdicts]  # measured once, kept
    published = rp.publish(again, tmp_path / "docs")
    assert (published / "tables" / "sparse-curves.csv").is_file()


def test_until_decided_gives_the_runs_a_last_page_claim_reads_the_fixed_seeds():
    """A last-page claim is not grown, but may read runs a notebook claim grows (batch_norm under folding,
    task_b_scratch under augmentation): those get the mode's fixed seeds at least (5; 10 for task B)."""
    calls = []

    class Runner:
        def extend(self, variant, count):
            calls.append((variant, count))

    runners = {i: Runner() for i in ("batch_norm", "plain_relu", "task_b_scratch", "task_b_augmented")}
    claims = [claim("fold_faster"), claim("augmentation_helps"), claim("batch_norm")]
    rp.judged_fixed(claims, runners, grown={"batch_norm", "plain_relu", "task_b_scratch"}, mode=rp.FULL, seeds=None)
    assert sorted(calls) == [("batch_norm", 5), ("batch_norm", 5), ("task_b_scratch", 10)]
