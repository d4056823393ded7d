"""The report of ``deepfit reproduce``: every experiment beside the notebook's figure, every claim judged.

Reads the reproduction directory only (runs, tables, saved predictions); the
figures of the chapter that need no training (activations, schedules, the
SELU demo) are computed here from their formulas.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from deepfit.errors import ConfigError
from deepfit.experiments.catalog import CATALOG, LAST_PAGE, TABLES, entry
from deepfit.report import figures, html, markdown
from deepfit.experiments.stats import column_of
from deepfit.report.content import (CLAIM_HEADER, INTERVAL_NOTE, VERDICT_NOTE, Figure, ReportContent, Table, fmt,
                                    claim_rows, family_note, interval_text)
from deepfit.report.last_page import last_page_section

GROUPS = [
    ("Nonsaturating activations and initialization", ["leaky_relu"]),
    ("Deep networks: SELU vs ReLU at 100 layers", ["selu_100", "relu_100"]),
    ("Batch normalization", ["batch_norm", "plain_relu"]),
    ("Transfer learning (task B, 200 images)", ["task_b_scratch", "task_b_on_a"]),
    ("Learning-rate schedules", ["power", "exponential", "piecewise", "plateau", "one_cycle"]),
    ("Regularization", ["l2", "l2_free", "max_norm", "max_norm_free", "dropout"]),
]


def _png(path: Path) -> bytes:
    return Path(path).read_bytes()


def _results(out: Path, ids: list[str]) -> pd.DataFrame:
    frames = [pd.read_csv(out / i / "results.csv").assign(variant=i) for i in ids
              if (out / i / "results.csv").is_file() and (out / i / "results.csv").stat().st_size > 1]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _table_of(id: str) -> str | None:
    try:
        return entry(id.split(":")[0]).table
    except ConfigError:  # an id of a past catalog in an old reproduction directory
        return None


def _in_table(id: str) -> bool:
    """One of the chapter's tables (11-2, 11-3, 11-4); the last page has a section of its own."""
    return _table_of(id) not in (None, LAST_PAGE)


def _beyond_notebook(id: str) -> bool:
    return _table_of(id) is not None


def main_tables(result) -> list[Table]:
    rows = []
    for r in result.summary.itertuples():
        if _beyond_notebook(r.id):
            continue
        inside = "n/a" if pd.isna(r.notebook_inside_ci) else ("yes" if r.notebook_inside_ci else "no")
        notebook = "baseline" if pd.isna(r.notebook) else f"{r.notebook:.4f}"
        ci = interval_text(r.ci_low, r.ci_high, bool(getattr(r, "ci_clipped", False)),
                           str(getattr(r, "ci_note", "") or ""))
        rows.append([r.id, r.metric, str(r.n), str(int(getattr(r, "diverged", 0) or 0)), f"{fmt(r.mean)} ± {fmt(r.std)}",
                     ci, notebook, inside])
    label = " — QUICK SMOKE RUN, not the notebook's protocol" if result.mode.name == "quick" else ""
    summary = Table(f"Each experiment beside the notebook's one-run figure{label}",
                    ["id", "metric", "seeds", "diverged", "mean ± std", "95% CI (t)", "notebook", "notebook inside CI"],
                    rows,
                    "mean ± std over seeds of the final metric; the notebook's figure is one run of one seed. "
                    + INTERVAL_NOTE)
    notebook_claims = [v for v in result.verdicts
                       if not (_beyond_notebook(v.claim.better) or _beyond_notebook(v.claim.worse))]
    if not notebook_claims:  # e.g. --only the chapter's tables: their section says how verdicts are read
        return [summary]
    claims = Table(
        f"The notebook's claims, checked (difference = first − second, paired on seeds){label}",
        CLAIM_HEADER, claim_rows(notebook_claims), VERDICT_NOTE + family_note(result.verdicts) + rounds_note(result))
    return [summary, claims]


def notebook_claims_shown(result) -> bool:
    return any(not (_beyond_notebook(v.claim.better) or _beyond_notebook(v.claim.worse)) for v in result.verdicts)


def rounds_note(result) -> str:
    if not getattr(result, "until_decided", False):
        return (" These seeds were fixed in advance (--seeds, or a smoke run); the verdicts are the same rule's, "
                "read at the seeds there are.")
    return (" Seeds until decided: every claim started at the minimum seeds and got one more round each time its "
            "verdict was still open, up to its maximum; 'seeds' is where its verdict was reached ('of N': seeds "
            "that other claims gave its entries).")


def _stars(n) -> str:
    return "n/a" if pd.isna(n) or int(n) == 0 else "*" * int(n)


def chapter_tables_section(result) -> ReportContent | None:
    """The chapter's tables (11-2, 11-3, 11-4): not notebook cells, its closing advice, measured."""
    from deepfit.experiments import chapter_tables as ct

    out = result.dir
    summary = result.summary[[_in_table(i) for i in result.summary["id"]]] if len(result.summary) else result.summary
    path = out / "table_11_2.csv"
    if summary.empty and not path.is_file():
        return None
    label = " — QUICK SMOKE RUN, not the protocol" if result.mode.name == "quick" else ""
    sec = ReportContent("The chapter's tables", [
        "The chapter closes with advice the notebook never runs: Table 11-2 grades eight optimizers in stars, "
        "Tables 11-3 and 11-4 give default configurations (`deepfit new default`, `deepfit new self_normalizing`). "
        "Here they are measured over the same seeds and judged with the same statistics as the notebook's claims."])
    if path.is_file():
        t = pd.read_csv(path)
        rows = [[f"{r.keras}", f"{r.learning_rate:g}", f"{r.reached}/{r.seeds}",
                 f"{'≥ ' if r.reached < r.seeds else ''}{fmt(r.epochs_mean, 1)} [{fmt(r.epochs_ci_low, 1)}, "
                 f"{fmt(r.epochs_ci_high, 1)}]",
                 f"{fmt(r.best_val_accuracy_mean)} [{fmt(r.best_val_accuracy_ci_low)}, "
                 f"{fmt(r.best_val_accuracy_ci_high)}]",
                 f"{_stars(r.speed_stars)} (book {r.book_speed})", f"{_stars(r.quality_stars)} (book {r.book_quality})",
                 r.verdict] for r in t.itertuples()]
        sec.tables.append(Table(
            f"Table 11-2 measured{label}: speed = epochs until validation accuracy ≥ {ct.THRESHOLD}; "
            "quality = best validation accuracy (mean [95% t interval] over seeds)",
            ["optimizer", "rate (rule)", "reached", "epochs to threshold", "best val accuracy", "speed stars",
             "quality stars", "verdict"], rows,
            f"Rate rule: for every optimizer the best of the same grid ({', '.join(f'{r:g}' for r in ct.RATE_GRID)}) "
            f"after {ct.TUNING_EPOCHS} epochs, scored on a tuning split (the last {ct.TUNING_IMAGES:,} training "
            f"images, trained on the rest), seed {ct.TUNING_SEED}: never the validation images scored here "
            "(OUT/<id>/rate.json has every score, keyed by what made the choice). A run that never reaches the "
            "threshold is censored: it counts as epochs + 1, a lower bound of its time (≥: the row's mean is one "
            "too), and the interval stays inside [1, epochs + 1]. "
            "Stars: the best row gets ***; another loses a star only when its difference from the best row is "
            "significant (paired t-test on the shared seeds, Holm-adjusted over all the table's star tests, 95%; "
            "epoch counts are whole, so a difference's sd is taken as at least 1/√6 epoch, Sheppard's rounding "
            "variance) and larger than a tolerance: speed more than "
            f"{ct.SPEED_RATIOS[0]}x the fastest row's epochs for **, more than {ct.SPEED_RATIOS[1]}x for *; quality "
            f"more than {100 * ct.QUALITY_GAPS[0]:g} points below the best for **, more than "
            f"{100 * ct.QUALITY_GAPS[1]:g} for *. Network, data and epochs: the notebook's leaky_relu baseline "
            "(configs/sweeps/optimizers.toml). The stars are judged once, on the seeds each pair of rows shares "
            "('reached' counts a row's own): 5 a row in --full, but with seeds until decided a row a claim needs "
            "(AdaGrad and RMSprop, for 'AdaGrad stops too early') has the seeds that claim's verdict took."))
    if not summary.empty:
        sec.tables.append(Table(
            f"Each row of the chapter's tables (final metric over seeds){label}",
            ["id", "metric", "seeds", "mean ± std", "95% CI (t)"],
            [[r.id, r.metric, str(r.n), f"{fmt(r.mean)} ± {fmt(r.std)}", f"[{fmt(r.ci_low)}, {fmt(r.ci_high)}]"]
             for r in summary.itertuples()],
            "Presets: `deepfit new` at 2 and 20 hidden layers, trained 10 epochs without early stopping, as "
            "the notebook's leaky_relu baseline is, so that every row is the last epoch of the same budget."))
    verdicts = [v for v in result.verdicts if _in_table(v.claim.better) or _in_table(v.claim.worse)]
    if verdicts:
        sec.tables.append(Table(
            f"The chapter's tables, checked (difference = first − second, paired on seeds){label}",
            CLAIM_HEADER, claim_rows(verdicts),
            ("Read as the notebook's claims above (docs/verdicts.md)." if notebook_claims_shown(result)
             else VERDICT_NOTE) + family_note(result.verdicts) + rounds_note(result)))
    for table, title in TABLES.items():
        if table == LAST_PAGE:
            continue
        ids = [i for i in result.summary["id"] if _in_table(i) and entry(i).table == table]
        if table == "table_11_3_11_4" and "leaky_relu" in result.shown:
            ids = ["leaky_relu", *ids]
        results = _results(out, ids)
        if results.empty or "val_accuracy" not in results:
            continue
        present = [i for i in ids if i in set(results["variant"])]
        sec.figures.append(Figure(f"curves_{table}", f"{title}: validation accuracy per epoch, mean over seeds, "
                                  "95% t band", figures.learning_curves(
                                      results, "val_accuracy", present,
                                      column_of(result.columns, f"{present[0]}@val_accuracy"))))
    return sec


def learning_sections(out: Path, columns=None, shown: set[str] | None = None) -> list[ReportContent]:
    """Learning curves of the entries ``shown`` (None: every entry the folder holds)."""
    sections = []
    for title, ids in GROUPS:
        results = _results(out, [i for i in ids if shown is None or i in shown])
        if results.empty or "val_accuracy" not in results:
            continue
        present = [i for i in ids if i in set(results["variant"])]
        text = [f"{i}: {entry(i).title}" for i in present]
        sec = ReportContent(title, text)
        sec.figures.append(Figure(f"curves_{present[0]}", f"{title}: validation accuracy per epoch, mean over seeds, "
                                  "95% t band", figures.learning_curves(
                                      results, "val_accuracy", present,
                                      column_of(columns, f"{present[0]}@val_accuracy"))))
        sections.append(sec)
    return sections


def transfer_section(out: Path, columns=None) -> ReportContent | None:
    finals = [pd.read_csv(out / i / "finals.csv") for i in ("task_b_scratch", "task_b_on_a")
              if (out / i / "finals.csv").is_file()]
    if len(finals) < 2:
        return None
    table = pd.concat(finals, ignore_index=True)
    sec = ReportContent("Transfer learning, seed by seed",
                        ["The notebook's own verdict on its 0.9705 → 0.9935 was 'torturing the data until it "
                         "confesses': here every seed is shown."])
    sec.figures.append(Figure("transfer_test_accuracy", "Task B test accuracy per seed: from scratch vs on task A",
                              figures.final_metric(table, "test_accuracy", ["task_b_scratch", "task_b_on_a"],
                                                   column_of(columns, "task_b_on_a@test_accuracy"))))
    return sec


def mc_section(out: Path) -> ReportContent | None:
    table_path = out / "mc_dropout" / "results.csv"
    if not table_path.is_file() or table_path.stat().st_size <= 1:
        return None
    table = pd.read_csv(table_path)
    rows = []
    for name in ("deterministic", "mc"):
        part = table[table["pass"] == name]
        rows.append([name, str(len(part))] + [f"{fmt(part[m].mean())} ± {fmt(part[m].std())}"
                                              for m in ("test_accuracy", "test_nll", "test_ece")])
    sec = ReportContent("MC dropout: accuracy and calibration",
                        ["The dropout model's test predictions: one deterministic pass vs the mean of the MC "
                         "passes (dropout on, BatchNorm in inference mode). ECE: 15 equal-width bins."])
    sec.tables.append(Table("Deterministic vs MC dropout (mean ± std over seeds)",
                            ["pass", "seeds", "accuracy", "NLL", "ECE"], rows))
    probs = out / "mc_dropout" / "first-seed-probs.npy"
    if probs.is_file():
        from deepfit.calibration import reliability_diagram

        det, mc = np.load(probs)
        y = np.load(out / "mc_dropout" / "first-seed-labels.npy")
        with tempfile.TemporaryDirectory() as tmp:
            path = reliability_diagram({"deterministic": det, "MC dropout": mc}, y, Path(tmp) / "r.png")
            sec.figures.append(Figure("mc_reliability", "Reliability diagram (first seed)", _png(path)))
    return sec


# The entries each figure of the chapter illustrates: a reproduction of some entries shows only their figures
# (the SELU demo alone costs 8 s of NumPy, which a two-entry smoke run should not pay).
ACTIVATION_ENTRIES = frozenset({"leaky_relu", "selu_100", "relu_100"})
SCHEDULES = ("power", "exponential", "piecewise", "one_cycle")


def chapter_figures(out: Path, ids: set[str] | frozenset[str]) -> ReportContent | None:
    """The chapter's figures that need no training, plus the plateau and LR-finder figures from runs: those of
    the entries ``ids`` (None when there are none)."""
    from deepfit.diagnostics.figures import activation_figures
    from deepfit.diagnostics.selu_demo import run_all
    from deepfit.experiments.reproduce import configs_dir
    from deepfit.optim.figures import plot_plateau, plot_schedule
    from deepfit.optim.plan import make_optimizer_and_schedule
    from deepfit.config import load_config

    sec = ReportContent("Figures of the chapter", [])
    activations = bool(ids & ACTIVATION_ENTRIES)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for path in activation_figures(tmp / "activations") if activations else []:
            sec.figures.append(Figure(f"activation_{path.stem}", f"Activation: {path.stem.replace('_', ' ')}",
                                      _png(path)))
        for name in [s for s in SCHEDULES if s in ids]:
            cfg = load_config(configs_dir() / f"{name}.toml")
            steps = -(-55000 // cfg.training.batch_size)
            _, schedule = make_optimizer_and_schedule(cfg.training, steps)
            path = plot_schedule(schedule, steps, cfg.training.epochs, tmp / f"schedule_{name}.png",
                                 title=f"{name} schedule (the notebook's settings)")
            sec.figures.append(Figure(f"schedule_{name}", f"Learning-rate schedule: {name}", _png(path)))
        plateau = out / "plateau" / "runs" / "plateau"
        first = sorted(plateau.glob("seed-*")) if "plateau" in ids and plateau.is_dir() else []
        if first and (first[0] / "metrics.csv").is_file():
            path = plot_plateau(first[0] / "metrics.csv", tmp / "plateau.png")
            sec.figures.append(Figure("plateau", f"Reduce LR on plateau ({first[0].name}): rate and validation loss",
                                      _png(path)))
        # The LR finder runs with the whole catalog only (reproduce.run_lr_finder), and a folder keeps it.
        whole = {e.id for e in CATALOG if e.config is not None} <= ids
        if whole and (out / "lr_finder" / "lr_finder.png").is_file():
            sec.figures.append(Figure("lr_finder", "LR finder on the leaky_relu network: loss vs rate",
                                      _png(out / "lr_finder" / "lr_finder.png")))
    if not activations:
        return sec if sec.figures else None
    demo = run_all()
    rows = [[str(layer)] + [f"{r.means[i]:.2f} / {r.stds[i]:.2f}" for r in demo] for i, layer in
            enumerate(demo[0].layers)]
    rows.append(["verdict"] + [r.verdict for r in demo])
    sec.tables.append(Table("Self-normalization (notebook cell 21): mean / std after each 100th layer, "
                            "1,000 layers of width 100",
                            ["layer"] + [f"{r.activation} + {r.initializer}" for r in demo], rows))
    return sec


def cost_sentence(prov: dict) -> str:
    """What the reproduction cost, honestly when it was resumed: its runs' own training time summed (the
    wall time of one uninterrupted command is about that over the workers), beside this command's."""
    if prov.get("run_seconds") is None:  # a folder of an older deepfit
        return f"This command: {prov.get('train_seconds', 0):.0f} s of training."
    return (f"{prov['runs']} runs; their training took {prov['run_seconds'] / 60:.0f} min summed over runs (each "
            f"run's own time, wherever and whenever it ran); this command trained for "
            f"{prov['train_seconds']:.0f} s, runs it found finished not counted.")


def build(result) -> ReportContent:
    from deepfit.experiments.reproduce import seeds_sentence
    from deepfit.io import read_json

    out = result.dir
    prov = read_json(out / "provenance.json", "provenance")
    shown = result.shown  # no section of an entry not asked for, though its runs may be in the folder
    content = ReportContent(
        f"The chapter, reproduced ({result.mode.name})",
        [f"{result.mode.label} " + seeds_sentence(result.mode, bool(prov.get("until_decided")), prov.get("seeds"),
                                                   prov.get("min_seeds"), prov.get("max_seeds")),
         f"Command: {prov['command']}. Date: {prov['date']}. Commit: {prov.get('commit') or 'n/a'}. "
         f"deepfit {prov['deepfit']}, Keras {prov['keras']}, "
         f"JAX {prov['jax']}, Python {prov['python']}; machine: {prov['machine']}; devices: "
         f"{', '.join(prov['devices'])}. " + cost_sentence(prov),
         "Data: the bundled Fashion-MNIST copy (the official images in another fixed order, so one-seed figures "
         "are comparable in distribution, not bit for bit)."])
    content.tables = main_tables(result)
    content.sections = learning_sections(out, result.columns, shown)
    if result.rounds:
        content.sections.insert(0, ReportContent("Seeds until decided: the looks", [
            "After each round every open claim was looked at; a claim stops at its first verdict "
            "(see docs/verdicts.md). The interval is the verdict's (anytime-valid, family level).", *result.rounds]))
    transfer = transfer_section(out, result.columns) if {"task_b_scratch", "task_b_on_a"} <= shown else None
    mc = mc_section(out) if "mc_dropout" in shown else None
    for extra in (chapter_tables_section(result), last_page_section(result), transfer, mc, chapter_figures(out, shown)):
        if extra is not None:
            content.sections.append(extra)
    return content


def write_chapter_report(result) -> dict[str, Path]:
    content = build(result)
    # What publish copies: the folder's figures/ also holds those of earlier reports of other entries.
    result.figures = [f.name for f in markdown.all_figures(content)]
    return {"markdown": markdown.write(content, result.dir), "html": html.write(content, result.dir)}
