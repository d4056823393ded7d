import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from deepfit.errors import ConfigError
from deepfit.experiments import reproduce as rp
from deepfit.experiments.catalog import CATALOG, CLAIMS, NOTEBOOK_IDS, judge, judge_all
from deepfit.experiments.sequential import critical_t
from deepfit.experiments.stats import Column, holm

ACCURACY = Column("val_accuracy", "max", 0.0, 1.0)
LOSS = Column("loss", "min", 0.0, float("inf"), "crossentropy")
from deepfit.workflows import reproduce as deepfit_reproduce


def test_catalog_covers_every_experiment_of_the_spec_with_its_figure():
    spec = {"leaky_relu": 0.8396, "selu_100": 0.8218, "relu_100": 0.7380, "batch_norm": 0.8750, "task_a": 0.9200,
            "task_b_scratch": 0.9705, "task_b_on_a": 0.9935, "power": 0.8864, "exponential": 0.8832,
            "piecewise": 0.8834, "plateau": 0.8936, "one_cycle": 0.8934, "l2": 0.8376, "dropout": 0.8934,
            "mc_dropout": 0.8844, "max_norm": 0.8662}
    assert sorted(NOTEBOOK_IDS) == sorted(spec)
    for e in CATALOG:
        if not e.baseline and e.table is None:  # the chapter's tables are an extra section, not cells
            assert e.notebook == spec[e.id], e.id
        if e.config:
            assert (rp.configs_dir() / e.config).is_file(), e.config
    ids = {e.id for e in CATALOG} | {"mc_dropout:deterministic"}
    measured = {e.id for e in CATALOG if e.table == "last_page" and e.config is None}  # "<entry>:<variant>" values
    assert all(side in ids or side.split(":")[0] in measured for c in CLAIMS for side in (c.better, c.worse))


def test_verdicts_are_computed_from_the_numbers():
    claim = next(c for c in CLAIMS if c.id == "selu_vs_relu")
    relu = {s: 0.70 + 0.01 * s for s in range(5)}
    selu = {s: v + 0.05 + 0.002 * (-1) ** s for s, v in relu.items()}
    v = judge(claim, selu, relu, ACCURACY)
    assert v.verdict == "confirmed" and v.paired.n == 3  # decided at the first look its interval clears 0
    d = np.array([selu[s] - relu[s] for s in range(3)])
    half = critical_t(3, 0.05) * d.std(ddof=1) / np.sqrt(3)
    assert (v.paired.cs_low, v.paired.cs_high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert v.paired.p_value == pytest.approx(sps.ttest_rel(d + 0.7, np.full(3, 0.7)).pvalue)
    # Change the input: the same numbers the other way round, then noise, then too few seeds.
    assert judge(claim, relu, selu, ACCURACY).verdict == "not confirmed: the opposite holds"
    noisy = {s: relu[s] + (0.05 if s % 2 else -0.05) for s in range(5)}
    assert judge(claim, noisy, relu, ACCURACY).verdict == "undecided at 5 seeds"
    assert judge(claim, {0: 0.9}, {0: 0.1}, ACCURACY).verdict.startswith("undecided at 1 seed (fewer than 3")
    # Nothing known about the metric: no confirmation without a direction, only which side was higher.
    assert judge(claim, selu, relu).verdict.startswith("undecided: val_accuracy has no known direction")
    relu12 = {s: 0.70 + 0.01 * s for s in range(12)}
    close = {s: relu12[s] + 0.0005 * (-1) ** s + 0.0002 * s % 3 for s in range(12)}
    assert judge(claim, close, relu12, ACCURACY).verdict == "equivalent within ±0.01"  # one point: the default


def test_summary_says_whether_the_notebook_lies_inside_the_interval():
    values = {"leaky_relu@val_accuracy": {0: 0.83, 1: 0.84, 2: 0.845}, "l2@val_accuracy": {0: 0.80, 1: 0.801, 2: 0.802}}
    entries = [e for e in CATALOG if e.id in ("leaky_relu", "l2")]
    table = rp.summarize(values, entries).set_index("id")
    x = np.array([0.83, 0.84, 0.845])
    half = sps.t.ppf(0.975, 2) * x.std(ddof=1) / np.sqrt(3)
    assert table.loc["leaky_relu", "ci_low"] == pytest.approx(x.mean() - half)
    assert table.loc["leaky_relu", "notebook_inside_ci"] is True or table.loc["leaky_relu", "notebook_inside_ci"]
    assert not table.loc["l2", "notebook_inside_ci"]  # 0.8376 is far above 0.80 ± 0.0025


def test_select_adds_what_an_entry_needs():
    assert [e.id for e in rp.select(["task_b_on_a"])] == ["task_a", "task_b_on_a"]
    assert [e.id for e in rp.select(["mc_dropout"])] == ["dropout", "mc_dropout"]
    with pytest.raises(ConfigError, match="Did you mean 'selu_100'"):
        rp.select(["selu100"])


@pytest.mark.slow
def test_a_tiny_reproduction_runs_end_to_end(tmp_path, monkeypatch):
    tiny = dataclasses.replace(rp.QUICK, overrides={"data.train_size": 256, "data.validation_size": 500,
                                                    "training.epochs": 1}, mc_samples=4, mc_test_images=300)
    monkeypatch.setitem(rp.MODES, "quick", tiny)
    result = deepfit_reproduce(tmp_path / "r", only=["l2", "l2_free", "mc_dropout"], seeds=2, log=lambda s: None)
    assert set(result.summary["id"]) == {"l2", "l2_free", "dropout", "mc_dropout"}
    assert (result.summary["n"] == 2).all()
    claims = pd.read_csv(tmp_path / "r" / "claims.csv").set_index("claim")
    assert set(claims.index) == {"l2_costs", "mc_dropout"}
    finals = pd.read_csv(tmp_path / "r" / "l2" / "finals.csv")
    assert len(finals) == 2 and finals["val_accuracy"].between(0, 1).all()
    html = (tmp_path / "r" / "report.html").read_text()
    assert "QUICK SMOKE RUN" in html and "The notebook&#x27;s claims" in html and "data:image/png;base64" in html
    again = deepfit_reproduce(tmp_path / "r", only=["l2", "l2_free", "mc_dropout"], seeds=2, log=lambda s: None)
    assert again.summary.equals(result.summary)  # resumed: nothing retrained, same numbers
    # The folder still holds mc_dropout's table; a narrower --only judges its own claims only (a claim from an
    # entry not asked for would be judged in a family of another size than in the full run).
    narrower = deepfit_reproduce(tmp_path / "r", only=["l2", "l2_free"], seeds=2, log=lambda s: None)
    assert [v.claim.id for v in narrower.verdicts] == ["l2_costs"]
    assert not any(k.startswith("mc_dropout") for k in narrower.values)
    report = (tmp_path / "r" / "report.md").read_text()
    assert "Seeds fixed in advance: 2 seeds per experiment." in report  # what it was given, not the mode's default
    assert "MC dropout: accuracy and calibration" not in report and "curves_l2.png" in report
    published = rp.publish(again, tmp_path / "docs")
    assert (published / "report.md").is_file() and (published / "tables" / "l2-finals.csv").is_file()


def test_claims_are_judged_together_as_one_family():
    # Claim 1 alone is confirmed at 4 seeds; among 4 claims each interval is at level 1 - 0.05/4, so it needs more.
    rng = np.random.default_rng(2)
    b = {s: 0.5 + rng.normal(0, 0.01) for s in range(20)}
    a = {s: v + 0.015 + rng.normal(0, 0.008) for s, v in b.items()}
    noise = {s: 0.5 + 0.01 * (-1) ** s for s in range(20)}
    flat = {s: 0.5 + 0.001 * (s % 3) for s in range(20)}
    claims = CLAIMS[:4]
    alone = judge(claims[0], a, b, ACCURACY)
    together = judge_all([(claims[0], a, b, ACCURACY)] + [(c, noise, flat, ACCURACY) for c in claims[1:]])
    assert alone.verdict == together[0].verdict == "confirmed" and together[0].paired.n > alone.paired.n
    assert all(v.paired.family == 4 for v in together)
    d = np.array([a[s] - b[s] for s in range(together[0].paired.n)])
    assert together[0].paired.cs_low > 0 and together[0].paired.cs_high <= d.mean() + critical_t(
        len(d), 0.05 / 4) * d.std(ddof=1) / np.sqrt(len(d)) + 1e-12
    raw = [v.paired.p_value for v in together]
    table = rp.claims_table(together)
    assert list(table["p_holm"]) == pytest.approx(list(holm(raw)))  # the fixed-n tests, adjusted, beside
    assert list(table["verdict"]) == [v.verdict for v in together] and (table["family"] == 4).all()


def test_summary_gives_no_interval_below_three_seeds_and_clips_accuracy():
    entries = [e for e in CATALOG if e.id in ("leaky_relu", "l2")]
    values = {"leaky_relu@val_accuracy": {0: 0.83, 1: 0.84}, "l2@val_accuracy": {0: 0.99, 1: 0.999, 2: 0.9}}
    columns = {"l2@val_accuracy": ACCURACY, "leaky_relu@val_accuracy": ACCURACY}
    table = rp.summarize(values, entries, columns).set_index("id")
    assert np.isnan(table.loc["leaky_relu", "ci_low"]) and "no interval" in table.loc["leaky_relu", "ci_note"]
    assert table.loc["leaky_relu", "notebook_inside_ci"] is None
    assert table.loc["l2", "ci_high"] == 1.0 and table.loc["l2", "ci_clipped"]
    assert rp.summarize(values, entries).set_index("id").loc["l2", "ci_high"] > 1  # nothing known: no clipping
    values["l2@val_accuracy"][3] = float("nan")  # a diverged seed: excluded, and counted
    table = rp.summarize(values, entries, columns).set_index("id")
    assert table.loc["l2", "n"] == 3 and table.loc["l2", "diverged"] == 1


def test_a_tables_name_selects_its_rows_and_what_they_are_compared_with():
    assert [e.id for e in rp.select(["table_11_2"])] == [f"table_11_2_{o}" for o in (
        "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "nadam", "adamax")]
    presets = [e.id for e in rp.select(["table_11_3_11_4"])]
    assert presets[0] == "leaky_relu" and "table_11_3_deep_no_bn" in presets  # the claims' other sides
    assert not set(presets) & set(NOTEBOOK_IDS) - {"leaky_relu"}


def test_a_table_row_runs_its_variant_of_the_sweep_at_the_rules_rate(tmp_path):
    from deepfit.experiments.catalog import entry
    from deepfit.experiments.spec import load_experiment

    exp = load_experiment(rp.experiment_of(entry("table_11_2_nesterov"), rp.FULL, tmp_path, [0, 1], rate=0.03))
    cfg = exp.config(exp.variants[0], 1)
    assert cfg.training.optimizer == {"name": "sgd", "learning_rate": 0.03, "momentum": 0.9, "nesterov": True}
    assert cfg.training.epochs == 10 and cfg.data.scaling == "divide255"  # the notebook's leaky_relu protocol
    assert [l.get("type") for l in cfg.model.layers][:3] == ["flatten", "dense", "leaky_relu"]
    quick = load_experiment(rp.experiment_of(entry("table_11_3_deep"), rp.QUICK, tmp_path, [0]))
    assert quick.config(quick.variants[0], 0).training.epochs == 2  # the quick mode's budget wins
    full = load_experiment(rp.experiment_of(entry("table_11_3_deep"), rp.FULL, tmp_path, [0]))
    cfg = full.config(full.variants[0], 0)
    assert cfg.training.epochs == 10 and cfg.training.callbacks == []  # the baseline's budget, no early stop


def test_a_claim_about_a_loss_is_confirmed_when_the_first_is_lower():
    claim = next(c for c in CLAIMS if c.id == "adagrad_stops_early")
    rmsprop = {s: 0.30 + 0.01 * s for s in range(5)}
    adagrad = {s: v + 0.05 + 0.002 * (-1) ** s for s, v in rmsprop.items()}
    assert judge(claim, rmsprop, adagrad, LOSS).verdict == "confirmed"
    assert judge(claim, adagrad, rmsprop, LOSS).verdict == "not confirmed: the opposite holds"


@pytest.mark.slow
def test_the_chapter_tables_run_end_to_end(tmp_path, monkeypatch):
    tiny = dataclasses.replace(rp.QUICK, overrides={"data.train_size": 256, "data.validation_size": 500,
                                                    "training.epochs": 2}, rate_grid=(1e-3, 1e-2), tuning_epochs=1)
    monkeypatch.setitem(rp.MODES, "quick", tiny)
    result = deepfit_reproduce(tmp_path / "r", only=["table_11_2_adagrad", "table_11_2_rmsprop"], seeds=2,
                               log=lambda s: None)
    table = pd.read_csv(tmp_path / "r" / "table_11_2.csv").set_index("optimizer")
    assert list(table.index) == ["adagrad", "rmsprop"] and (table["seeds"] == 2).all()
    assert set(table["learning_rate"]) <= {1e-3, 1e-2}
    rate = pd.read_json(tmp_path / "r" / "table_11_2_adagrad" / "rate.json", typ="series")
    assert set(rate["scores"]) == {"0.001", "0.01"}
    assert {v.claim.id for v in result.verdicts} == {"adagrad_stops_early", "adagrad_quality"}
    assert "Table 11-2 measured" in (tmp_path / "r" / "report.md").read_text()


@pytest.mark.slow
def test_seeds_until_decided_in_a_tiny_reproduction(tmp_path, monkeypatch):
    import json

    tiny = dataclasses.replace(rp.QUICK, overrides={"data.train_size": 256, "data.validation_size": 500,
                                                    "training.epochs": 1}, mc_samples=4, mc_test_images=300)
    monkeypatch.setitem(rp.MODES, "quick", tiny)
    only = ["l2", "l2_free", "mc_dropout"]
    deepfit_reproduce(tmp_path / "r", only=only, until_decided=True, max_seeds=4, log=lambda s: None)
    claims = pd.read_csv(tmp_path / "r" / "claims.csv").set_index("claim")
    assert set(claims.index) == {"l2_costs", "mc_dropout"}
    for claim, row in claims.iterrows():
        assert 3 <= row["n"] <= 4 and (row["n"] == 4 or not row["verdict"].startswith("undecided"))
        assert row["family"] == 2 and row["interval_low"] <= row["mean_difference"] <= row["interval_high"]
        assert row["images_low"] <= row["mean_difference"] <= row["images_high"]  # per-image correctness kept
    prov = json.loads((tmp_path / "r" / "provenance.json").read_text())
    assert prov["until_decided"] and len(prov["rounds"]) == 2  # one line per claim when it stopped
    runs = {e: sorted(p.name for p in (tmp_path / "r" / e / "runs" / e).iterdir()) for e in ("l2", "dropout")}
    assert len(runs["l2"]) == claims.loc["l2_costs", "n"] and len(runs["dropout"]) == claims.loc["mc_dropout", "n"]
    assert (tmp_path / "r" / "mc_dropout" / "seed-0-correct.npz").is_file()
    md = (tmp_path / "r" / "report.md").read_text()
    assert "Seeds until decided: the looks" in md and "verdict's interval (anytime)" in md
    again = deepfit_reproduce(tmp_path / "r", only=only, until_decided=True, max_seeds=4, log=lambda s: None)
    assert [v.verdict for v in again.verdicts] == list(claims.loc[[v.claim.id for v in again.verdicts], "verdict"])
    with pytest.raises(ConfigError, match="--seeds fixes"):
        deepfit_reproduce(tmp_path / "s", only=only, until_decided=True, seeds=3, log=lambda s: None)


def test_the_demo_shows_four_claims_of_the_chapters_range_judged_as_one_family(tmp_path):
    from deepfit.cli import main

    demo = rp.MODES["demo"]
    assert demo.until_decided and not rp.MODES["quick"].until_decided
    scope = rp.claims_in(rp.select(demo.ids), demo.claims)
    assert [c.id for c in scope] == ["batch_norm", "l2_costs", "max_norm_costs", "adagrad_stops_early"]
    assert len(rp.families(scope, together=True)) == 1
    assert {"task_a", "task_b_on_a"}.isdisjoint(demo.ids)  # the transfer claim needs 20+ seeds: --full
    # A smaller protocol than the notebook's, said where its verdicts are printed.
    assert f"{demo.overrides['data.train_size']:,} of 55,000" in demo.label
    # Fixed seeds and rounds are two ways to choose seeds: asking for both is one clear error, nothing written.
    assert main(["reproduce", "--seeds", "3", "--until-decided", "--out", str(tmp_path / "r")]) == 2
    assert main(["reproduce", "--min-seeds", "2", "--out", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()


def test_a_reproduction_shows_the_chapter_figures_of_its_own_entries_only(tmp_path):
    from deepfit.report.chapter import chapter_figures

    assert chapter_figures(tmp_path, {"l2", "l2_free"}) is None  # nothing of the chapter's figures is about l2
    schedules = chapter_figures(tmp_path, {"one_cycle", "power", "l2"})
    assert [f.name for f in schedules.figures] == ["schedule_power", "schedule_one_cycle"]
    assert schedules.tables == []  # the SELU demo's table belongs to the activation entries


def test_a_reproduction_says_how_its_seeds_were_chosen_from_what_it_was_given():
    assert rp.seeds_sentence(rp.FULL, False) == "Seeds fixed in advance: 5 seeds (10 for the transfer study)."
    assert rp.seeds_sentence(rp.QUICK, True, None, 3, 4) == (
        "Seeds until decided: each claim from 3 seeds, one more round while it is open, up to 4; "
        "entries no claim needs: 2 seeds (2 for the transfer study).")
    assert not [m.name for m in rp.MODES.values() if "seeds" in m.label]  # the sentence says, not the label
