"""``deepfit reproduce``: every experiment of the notebook, over seeds, beside its one-run figure.

Each catalog entry runs as an experiment of one variant (``deepfit compare``'s
runner: resumable, any backend) in ``OUT/<id>/``; MC dropout is computed from
the dropout runs; then every entry's mean and 95% t interval is set beside the
notebook's figure and the claims are judged together, each by a paired test,
with Holm's adjustment over all of them (``deepfit.experiments.catalog``). The report is ``OUT/report.md`` and
``OUT/report.html``.

``--quick`` (the README's main job, a few minutes on 2 cores) trains on 2,048
images for 2 epochs over 2 seeds: a smoke test of the whole chapter, labelled
as such everywhere, never a result. ``--full`` uses the notebook's data and
epochs over 5 seeds (10 for the transfer study).
"""

from __future__ import annotations

import platform
import shutil
import sys
import time
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from deepfit.errors import ConfigError
from deepfit.experiments import last_page
from deepfit.experiments.catalog import CATALOG, CLAIMS, LAST_PAGE, TABLES, Entry, Verdict, entry, judge_all
from deepfit.experiments.stats import bounds, t_interval
from deepfit.io import read_json, write_atomic, write_json


@dataclass(frozen=True)
class Mode:
    name: str
    seeds: list[int]
    transfer_seeds: list[int]
    overrides: dict[str, Any]  # for every entry (task B keeps its own 200 images)
    mc_samples: int
    mc_test_images: int | None
    label: str
    ids: tuple[str, ...] | None = None  # the entries this mode runs when --only is not given (None: all)
    rate_grid: tuple[float, ...] = ()  # the learning-rate rule's grid (empty: chapter_tables.RATE_GRID)
    tuning_epochs: int | None = None


QUICK = Mode("quick", [0, 1], [0, 1], {"data.train_size": 2048, "training.epochs": 2}, 20, 2000,
             "QUICK SMOKE RUN (2,048 training images, 2 epochs, 2 seeds, MC dropout 20 passes on 2,000 test images): "
             "it checks that every experiment runs; its numbers are NOT the notebook's protocol and say nothing "
             "about the claims. Run `deepfit reproduce --full` for results.", rate_grid=(1e-3, 1e-2), tuning_epochs=1)
FULL = Mode("full", [0, 1, 2, 3, 4], list(range(10)), {}, 100, None,
            "Full protocol: the notebook's data (55,000 training images, validation = the first 5,000), "
            "epochs and batch sizes; 5 seeds (10 for the transfer study); MC dropout 100 passes.")
# The claims a newcomer can see decided in minutes: each needs only short runs of small networks.
DEMO_IDS = ("batch_norm", "plain_relu", "l2", "l2_free", "max_norm", "max_norm_free",
            "task_a", "task_b_scratch", "task_b_on_a")
DEMO = dataclasses.replace(
    FULL, name="demo", ids=DEMO_IDS,
    label="Demo: the notebook's protocol (55,000 training images, validation = the first 5,000, its epochs and "
          "batch sizes; 5 seeds, 10 for the transfer study) for the batch-norm, l2, max-norm and transfer "
          "experiments only. `deepfit reproduce --full` runs the whole chapter.")
MODES = {"quick": QUICK, "demo": DEMO, "full": FULL}


def configs_dir() -> Path:
    return Path(str(resources.files("deepfit") / "configs"))


def select(only: Sequence[str] | None) -> list[Entry]:
    """The entries asked for, plus what they need (task A for B on A, dropout for MC dropout), in catalog order."""
    if not only:
        return list(CATALOG)
    # A table's name stands for all its rows.
    wanted = {e.id for i in only for e in ([x for x in CATALOG if x.table == i] if i in TABLES else [entry(i)])}
    for e in list(map(entry, wanted)):
        wanted.update(d for d in (e.after, *e.needs) if d)
    for e in list(map(entry, wanted)):  # what those need in turn (task B on A under a measured entry)
        if e.after:
            wanted.add(e.after)
    return [e for e in CATALOG if e.id in wanted]


def _overrides(e: Entry, mode: Mode, out: Path) -> dict[str, Any]:
    over = {"training.progress": False}
    for key, value in mode.overrides.items():
        if not (e.transfer and e.id != "task_a" and key == "data.train_size"):
            over[key] = value
    if mode.name == "quick":
        over.update(e.quick)
    if e.after == "task_a":
        over["model.from_run"] = str((out / "task_a" / "runs" / "task_a" / "seed-{seed}").resolve())
    return over


def experiment_of(e: Entry, mode: Mode, out: Path, seeds: list[int], rate: float | None = None) -> dict[str, Any]:
    base: Any = str(configs_dir() / e.config)
    over = dict(e.overrides)
    if e.variant is not None:  # one variant of an experiment file: its base, shared and own overrides
        from deepfit.experiments.spec import load_experiment

        sweep = load_experiment(configs_dir() / e.config)
        base = sweep.base
        over = {**sweep.overrides, **sweep.variant(e.variant).overrides, **over}
    over.update(_overrides(e, mode, out))
    if rate is not None:
        over["training.optimizer.learning_rate"] = rate
    return {"name": e.id, "base": base, "seeds": seeds, "metric": e.metric,
            "variants": [{"name": e.id}], "overrides": over}


def choose_rate_for(e: Entry, mode: Mode, out: Path, log: Callable[[str], None]) -> float:
    """The entry's learning rate by the chapter tables' rule (resumable: ``OUT/<id>/rate.json``)."""
    from deepfit.config import load_config
    from deepfit.experiments.chapter_tables import RATE_GRID, TUNING_EPOCHS, choose_rate

    exp = experiment_of(e, mode, out, [0])
    base = exp["base"] if isinstance(exp["base"], dict) else str(exp["base"])
    tree = load_config(base, exp["overrides"]).to_dict()
    result = choose_rate(tree, out / e.id / "rate.json", grid=mode.rate_grid or RATE_GRID,
                         epochs=mode.tuning_epochs or TUNING_EPOCHS, log=log)
    log(f"  learning rate {result['rate']:g} (best tuning accuracy of the grid"
        f"{'; at the edge of the grid' if result['at_edge'] else ''})")
    return float(result["rate"])


def seeds_for(e: Entry, mode: Mode, seeds: int | None) -> list[int]:
    if seeds is not None:
        return list(range(seeds))
    return mode.transfer_seeds if e.transfer else mode.seeds


def run_mc_dropout(out: Path, seeds: list[int], mode: Mode, log: Callable[[str], None]) -> pd.DataFrame:
    """Deterministic pass vs the MC mean on the test set, per dropout run; one JSON per seed (resumable)."""
    from deepfit.data import load_data
    from deepfit.predictions import predict_split
    from deepfit.run import load_run

    target = out / "mc_dropout"
    target.mkdir(parents=True, exist_ok=True)
    rows, data = [], None
    for s in seeds:
        record = target / f"seed-{s}.json"
        if not record.is_file():
            run_path = out / "dropout" / "runs" / "dropout" / f"seed-{s}"
            if not (run_path / "manifest.json").is_file():
                continue
            run = load_run(run_path)
            data = data or load_data(run.config.data)
            x, y = data.x_test[: mode.mc_test_images], data.y_test[: mode.mc_test_images]
            started = time.perf_counter()
            det, mc, metrics = predict_split(run.model, x, y, mode.mc_samples, seed=s)
            result = {"seed": s, "samples": mode.mc_samples, "test_images": len(y), **metrics,
                      "seconds": time.perf_counter() - started}
            if s == seeds[0]:  # kept for the report's reliability diagram (a report never predicts)
                np.save(target / "first-seed-probs.npy", np.stack([det, mc.mean]))
                np.save(target / "first-seed-labels.npy", np.asarray(y))
            write_json(record, result)
            log(f"  mc_dropout seed {s}: deterministic {result['deterministic']['accuracy']:.4f}, "
                f"MC mean {result['mc']['accuracy']:.4f} ({result['seconds']:.0f}s)")
        result = read_json(record, "MC dropout record")
        for name in ("deterministic", "mc"):
            rows.append({"seed": s, "pass": name, **{f"test_{k}": result[name][k] for k in ("accuracy", "nll", "ece")}})
    table = pd.DataFrame(rows)
    write_atomic(target / "results.csv", table.to_csv(index=False, float_format="%.17g"))
    return table


def run_lr_finder(out: Path, mode: Mode, log: Callable[[str], None]) -> None:
    """The notebook's LR-finder figure on the leaky_relu network (its run diverged to NaN; this one stops)."""
    from deepfit.lr_finder import find_lr, save_result

    if (out / "lr_finder" / "lr_finder.json").is_file():
        return
    overrides = {"data.train_size": 9600} if mode.name == "quick" else {}
    result = find_lr(configs_dir() / "leaky_relu.toml", overrides={**overrides, "training.progress": False})
    save_result(result, out / "lr_finder")
    log(f"lr finder: {len(result.rates)} steps, suggestion "
        f"{'none (' + result.reason + ')' if result.suggestion is None else f'{result.suggestion:.3g}'}")


@dataclass
class Reproduction:
    dir: Path
    mode: Mode
    summary: pd.DataFrame
    verdicts: list[Verdict]
    values: dict[str, dict[int, float]]
    seconds: float = 0.0
    report: dict[str, Path] = field(default_factory=dict)


def collect_values(out: Path, entries: list[Entry]) -> dict[str, dict[int, float]]:
    """Each entry's metric per seed (``test_accuracy`` too, for the claims that use it)."""
    values: dict[str, dict[int, float]] = {}
    for e in entries:
        if e.config is None:
            continue
        finals = out / e.id / "finals.csv"
        if not finals.is_file():
            continue
        table = pd.read_csv(finals)
        for metric in {e.metric, "val_accuracy", "test_accuracy", "loss"} & set(table.columns):
            values[f"{e.id}@{metric}"] = dict(zip(table["seed"].astype(int), table[metric].astype(float)))
        if e.table is not None and (out / e.id / "results.csv").is_file():
            from deepfit.experiments.chapter_tables import run_measures

            per = run_measures(pd.read_csv(out / e.id / "results.csv"))
            for metric in ("best_val_accuracy", "epochs_censored", "late_loss_drop"):
                values[f"{e.id}@{metric}"] = dict(zip(per["seed"].astype(int), per[metric].astype(float)))
    mc = out / "mc_dropout" / "results.csv"
    if mc.is_file() and mc.stat().st_size > 1:
        table = pd.read_csv(mc)
        for name, key in (("mc", "mc_dropout"), ("deterministic", "mc_dropout:deterministic")):
            rows = table[table["pass"] == name]
            for metric in ("test_accuracy", "test_nll", "test_ece"):
                values[f"{key}@{metric}"] = dict(zip(rows["seed"].astype(int), rows[metric].astype(float)))
            values[f"{key}@mc_test_accuracy"] = values[f"{key}@test_accuracy"]
    values.update(last_page.values(out, [e.id for e in entries]))
    return values


def summarize(values: dict[str, dict[int, float]], entries: list[Entry]) -> pd.DataFrame:
    rows = []
    for e in entries:
        seeds = values.get(f"{e.id}@{e.metric}", {})
        s = t_interval(list(seeds.values()), limits=bounds(e.metric))
        diverged = sum(not np.isfinite(v) for v in seeds.values())  # no metrics: excluded, and counted
        inside = (None if e.notebook is None or not np.isfinite(s.ci_low)
                  else bool(s.ci_low <= e.notebook <= s.ci_high))
        rows.append({"id": e.id, "title": e.title, "metric": e.metric, "n": s.n, "diverged": diverged,
                     "mean": s.mean, "std": s.std,
                     "ci_low": s.ci_low, "ci_high": s.ci_high, "ci_clipped": s.clipped, "ci_note": s.note,
                     "notebook": e.notebook, "notebook_inside_ci": inside})
    return pd.DataFrame(rows)


def table_11_2(out: Path, entries: list[Entry]):
    """The measured Table 11-2 from the optimizers' runs (None when none of them has run)."""
    from deepfit.experiments.chapter_tables import optimizer_table

    results, rates = {}, {}
    for e in entries:
        path = out / e.id / "results.csv"
        if e.table != "table_11_2" or not path.is_file() or path.stat().st_size <= 1:
            continue
        results[e.variant] = pd.read_csv(path)
        if (out / e.id / "rate.json").is_file():
            rates[e.variant] = read_json(out / e.id / "rate.json", "learning-rate choice")["rate"]
    results = {k: v for k, v in results.items() if len(v)}
    return optimizer_table(results, rates) if results else None


def judge_claims(values: dict[str, dict[int, float]]) -> list[Verdict]:
    """Every claim with numbers on both sides; the notebook's claims judged together (Holm over them),
    the chapter tables' claims together as a family of their own, the last page's as another."""
    def family(c) -> str:
        tables = {entry(side.split(":")[0]).table for side in (c.better, c.worse)} - {None}
        return "last_page" if LAST_PAGE in tables else "tables" if tables else "notebook"

    families: dict[str, list] = {"notebook": [], "tables": [], "last_page": []}
    for c in CLAIMS:
        better, worse = values.get(f"{c.better}@{c.metric}"), values.get(f"{c.worse}@{c.metric}")
        if better and worse:
            families[family(c)].append((c, better, worse))
    return [v for claims in families.values() for v in judge_all(claims)]


def provenance(mode: Mode, argv: Sequence[str] | None) -> dict[str, Any]:
    import jax
    import keras

    from deepfit import __version__

    import subprocess

    try:  # which code made these numbers, when run from a checkout
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"command": " ".join(argv) if argv else " ".join(["deepfit", *sys.argv[1:]]), "commit": commit,
            "mode": mode.name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "deepfit": __version__, "keras": keras.__version__, "jax": jax.__version__,
            "python": sys.version.split()[0], "machine": f"{platform.machine()}, {platform.processor() or '?'}, "
            f"{__import__('os').cpu_count()} CPUs", "devices": [str(d) for d in jax.devices()]}


def reproduce(
    out: str | Path | None = None,
    *,
    mode: str = "quick",
    only: Sequence[str] | None = None,
    seeds: int | None = None,
    backend: str = "local",
    jobs: int | None = None,
    address: str | None = None,
    argv: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
) -> Reproduction:
    """Run the chosen catalog entries over seeds, then judge the notebook's claims
    (:func:`deepfit.reproduce` adds the chapter's report)."""
    from deepfit.experiments.backends import make_backend
    from deepfit.experiments.runner import Runner, Schedule
    from deepfit.experiments.spec import load_experiment
    from deepfit.experiments.tables import write_tables

    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    m = MODES[mode]
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    out = Path(out) if out is not None else Path("runs") / f"reproduce-{mode}"
    entries = select(only or m.ids)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log(m.label)
    trained = [e for e in entries if e.config is not None]
    for i, e in enumerate(trained, 1):
        log(f"[{i}/{len(trained)}] {e.id}: {e.title} ({len(seeds_for(e, m, seeds))} seeds)")
    # One backend for every entry: its workers keep their compiled programs and data from one
    # experiment to the next, and the longest runs of all entries go first. An entry that needs
    # another's runs (task B on task A) waits for the next wave.
    waves = [[e for e in trained if e.after is None], [e for e in trained if e.after is not None]]
    runners: dict[str, Runner] = {}

    def runner(e: Entry) -> Runner:
        rate = choose_rate_for(e, m, out, lambda line: log(f"  {e.id} {line.strip()}")) if e.lr_rule else None
        exp = load_experiment(experiment_of(e, m, out, seeds_for(e, m, seeds), rate))
        runners[e.id] = Runner(exp, out / e.id, log=lambda line: log(f"  {e.id} {line}"))
        return runners[e.id]

    first = [runner(e) for e in waves[0]]
    costs = [r.costs[(v.name, s)] for r in first for v, s in r.pending()]
    with make_backend(backend, jobs=jobs, address=address, costs=costs, log=log) as chosen:
        Schedule(first, chosen).run()
        if waves[1]:
            Schedule([runner(e) for e in waves[1]], chosen).run()
    for e in trained:
        write_tables(out / e.id, runners[e.id].exp)
    log(f"trained in {time.perf_counter() - started:.0f}s")
    if any(e.id == "mc_dropout" for e in entries):
        log(f"mc_dropout: {m.mc_samples} stochastic passes per dropout run")
        run_mc_dropout(out, seeds_for(entry("dropout"), m, seeds), m, log)
    measured = [e.id for e in entries if e.config is None and e.table == LAST_PAGE]
    if measured:
        log(f"the chapter's last page: measuring {', '.join(measured)}")
        last_page.measure(out, measured, {i: seeds_for(entry(i), m, seeds) for i in measured}, m, log)
    if not only and m.ids is None:
        run_lr_finder(out, m, log)
    values = collect_values(out, entries)
    summary = summarize(values, entries)
    verdicts = judge_claims(values)
    write_atomic(out / "summary.csv", summary.to_csv(index=False, float_format="%.6g"))
    write_atomic(out / "claims.csv", claims_table(verdicts).to_csv(index=False, float_format="%.6g"))
    optimizers = table_11_2(out, entries)
    if optimizers is not None:
        write_atomic(out / "table_11_2.csv", optimizers.table.to_csv(index=False, float_format="%.6g"))
    write_json(out / "provenance.json", {**provenance(m, argv), "seconds": time.perf_counter() - started})
    return Reproduction(out, m, summary, verdicts, values, time.perf_counter() - started)


def claims_table(verdicts: list[Verdict]) -> pd.DataFrame:
    return pd.DataFrame([{
        "claim": v.claim.id, "text": v.claim.text, "better": v.claim.better, "worse": v.claim.worse,
        "metric": v.claim.metric, "n": v.paired.n, "mean_difference": v.paired.mean_diff,
        "ci_low": v.paired.ci_low, "ci_high": v.paired.ci_high, "test": v.paired.test, "p_value": v.paired.p_value,
        "p_holm": v.paired.p_holm, "family": v.paired.family, "effect_size": v.paired.effect_size,
        "seeds_needed": v.paired.seeds_needed, "verdict": v.verdict} for v in verdicts])


def publish(result: Reproduction, target: str | Path) -> Path:
    """Copy the report, its figures and the tables (not the runs) into ``target`` (e.g. docs/results)."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    for name in ("report.md", "report.html", "summary.csv", "claims.csv", "provenance.json", "table_11_2.csv"):
        if (result.dir / name).is_file():
            shutil.copy2(result.dir / name, target / name)
    if (result.dir / "figures").is_dir():
        shutil.copytree(result.dir / "figures", target / "figures", dirs_exist_ok=True)
    for e in CATALOG:
        for table in ("finals.csv", "results.csv", "rate.json"):
            src = result.dir / e.id / table
            if src.is_file():
                (target / "tables").mkdir(exist_ok=True)
                shutil.copy2(src, target / "tables" / f"{e.id}-{table}")
    for measured in last_page.MEASURES:
        for table in ("values.csv", "curves.csv"):
            src = result.dir / measured / table
            if src.is_file():
                (target / "tables").mkdir(exist_ok=True)
                shutil.copy2(src, target / "tables" / f"{measured}-{table}")
    mc = result.dir / "mc_dropout" / "results.csv"
    if mc.is_file():
        (target / "tables").mkdir(exist_ok=True)
        shutil.copy2(mc, target / "tables" / "mc_dropout-results.csv")
    return target


__all__ = ["DEMO", "FULL", "MODES", "QUICK", "Reproduction", "publish", "reproduce"]
