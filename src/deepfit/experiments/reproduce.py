"""``deepfit reproduce``: every experiment of the notebook, over seeds, beside its one-run figure.

Each catalog entry runs as an experiment of one variant (``deepfit compare``'s
runner: resumable, any backend) in ``OUT/<id>/``; MC dropout is computed from
the dropout runs; then every entry's mean and 95% t interval is set beside the
notebook's figure and the claims are judged as families, each claim by the
sequential rule (``deepfit.experiments.catalog``, ``deepfit.experiments.sequential``).
The report is ``OUT/report.md`` and ``OUT/report.html``.

Seeds until decided (the default of ``--demo`` and ``--full``): every claim
starts with ``min_seeds`` seeds of both its entries and gets one more round
whenever its verdict is still open, up to ``max_seeds`` (a claim of the catalog
may set its own); entries no claim needs run the mode's fixed seeds
(:mod:`deepfit.experiments.until_decided`). ``seeds=N`` fixes every entry at N
seeds instead.

``--quick`` (``--smoke``) trains on 2,048 images for 2 epochs over 2 seeds: a
smoke test of the whole chapter, labelled as such everywhere, never a result.
``--full`` uses the notebook's data and epochs.
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
from deepfit.experiments.catalog import (CATALOG, CLAIMS, LAST_PAGE, TABLES, Claim, Entry, Verdict, entry,
                                         judge_all)
from deepfit.experiments.sequential import MAX_SEEDS, MIN_SEEDS
from deepfit.experiments.stats import Column, column_of, t_interval
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
    until_decided: bool = True  # seeds until decided by default (a smoke run keeps its fixed seeds)
    claims: tuple[str, ...] | None = None  # the claims this mode judges, as one family (None: every claim in scope)


QUICK = Mode("quick", [0, 1], [0, 1], {"data.train_size": 2048, "training.epochs": 2}, 20, 2000,
             "QUICK SMOKE RUN (2,048 training images, 2 epochs, MC dropout 20 passes on 2,000 test images): "
             "it checks that every experiment runs; its numbers are NOT the notebook's protocol and say nothing "
             "about the claims. Run `deepfit reproduce --full` for results.", rate_grid=(1e-3, 1e-2), tuning_epochs=1,
             until_decided=False)
FULL = Mode("full", [0, 1, 2, 3, 4], list(range(10)), {}, 100, None,
            "Full protocol: the notebook's data (55,000 training images, validation = the first 5,000), "
            "epochs and batch sizes; MC dropout 100 passes.")
# The demo: four of the chapter's claims, one from each corner it covers (normalization, regularization twice,
# optimizers), at the notebook's epochs, batch sizes and validation images but on a fifth of its training
# images, so that it trains in under three minutes here with cold caches (on all 55,000, 492 s). On all of
# them AdaGrad does not stop too early (the opposite holds); on this fifth it does (its training loss ends
# higher than RMSprop's): the demo's verdicts are its protocol's, as its label says. max-norm's cost is too
# small to matter (equivalent within one point) on both. The transfer claim (d_z about 1, task A's
# pretraining per seed, 20 or more seeds) belongs to --full. 11,200 images are 350 whole batches of 32: a run
# compiles no second program for a last, partial batch (about 1.6 s of each entry's first run, cold).
DEMO_IDS = ("batch_norm", "plain_relu", "l2", "l2_free", "max_norm", "max_norm_free", "table_11_2_adagrad",
            "table_11_2_rmsprop")
DEMO_CLAIMS = ("batch_norm", "l2_costs", "max_norm_costs", "adagrad_stops_early")
DEMO_TRAIN_SIZE = 11_200
DEMO = dataclasses.replace(
    FULL, name="demo", ids=DEMO_IDS, claims=DEMO_CLAIMS, rate_grid=(1e-3, 1e-2, 1e-1),
    overrides={"data.train_size": DEMO_TRAIN_SIZE},
    label=f"Demo: four claims of the chapter on a fifth of its training images ({DEMO_TRAIN_SIZE:,} of 55,000; "
          "validation = the same first 5,000 images) with the notebook's epochs, batch sizes and settings, judged "
          "together: batch norm, l2 and max-norm (notebook cells) and Table 11-2's 'AdaGrad stops too early' "
          "(AdaGrad against RMSprop, each at the rate the tables' rule picks, here from the decades 1e-3, 1e-2, "
          "1e-1 of its grid). The verdicts are this protocol's: `deepfit reproduce --full` runs the notebook's "
          "on all 55,000 images.")
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


def seeds_sentence(mode: Mode, until: bool, seeds: int | None = None, min_seeds: int | None = MIN_SEEDS,
                   max_seeds: int | None = None) -> str:
    """How this reproduction chose its seeds, from what it was given (a mode's label does not say: the same
    mode runs with --seeds, --until-decided or --max-seeds)."""
    fixed = (f"{seeds} seeds per experiment" if seeds is not None else
             f"{len(mode.seeds)} seeds ({len(mode.transfer_seeds)} for the transfer study)")
    if not until:
        return f"Seeds fixed in advance: {fixed}."
    cap = f"up to {max_seeds}" if max_seeds is not None else f"up to {MAX_SEEDS} (a catalog entry may set its own)"
    return (f"Seeds until decided: each claim from {min_seeds} seeds, one more round while it is open, {cap}; "
            f"entries no claim needs: {fixed}.")


def seeds_for(e: Entry, mode: Mode, seeds: int | None) -> list[int]:
    if seeds is not None:
        return list(range(seeds))
    return mode.transfer_seeds if e.transfer else mode.seeds


# What the MC dropout comparison's columns are (deepfit computes them: calibration.calibration_metrics).
MC_COLUMNS = {"test_accuracy": Column("test_accuracy", "max", 0.0, 1.0),
              "mc_test_accuracy": Column("mc_test_accuracy", "max", 0.0, 1.0),
              "test_nll": Column("test_nll", "min", 0.0, float("inf"), "crossentropy"),
              "test_ece": Column("test_ece", "min", 0.0, 1.0)}


class MCDropout:
    """Deterministic pass vs the MC mean on the test set, per dropout run: one JSON per seed (resumable),
    and each pass's per-image correctness (``seed-S-correct.npz``) for the interval over images."""

    def __init__(self, out: Path, mode: Mode, log: Callable[[str], None]):
        self.out, self.mode, self.log = out, mode, log
        self.dir = out / "mc_dropout"
        self.data = None

    def record(self, s: int) -> dict[str, Any] | None:
        """Seed ``s``'s record, computed now if its dropout run is finished and it has none yet."""
        from deepfit.data import load_data
        from deepfit.predictions import predict_split
        from deepfit.run import correct_per_image, load_run

        path = self.dir / f"seed-{s}.json"
        if not path.is_file():
            run_path = self.out / "dropout" / "runs" / "dropout" / f"seed-{s}"
            if not (run_path / "manifest.json").is_file():
                return None
            self.dir.mkdir(parents=True, exist_ok=True)
            run = load_run(run_path)
            self.data = self.data or load_data(run.config.data)
            x, y = self.data.x_test[: self.mode.mc_test_images], self.data.y_test[: self.mode.mc_test_images]
            started = time.perf_counter()
            det, mc, metrics = predict_split(run.model, x, y, self.mode.mc_samples, seed=s)
            result = {"seed": s, "samples": self.mode.mc_samples, "test_images": len(y), **metrics,
                      "seconds": time.perf_counter() - started}
            if s == 0:  # kept for the report's reliability diagram (a report never predicts)
                np.save(self.dir / "first-seed-probs.npy", np.stack([det, mc.mean]))
                np.save(self.dir / "first-seed-labels.npy", np.asarray(y))
            import io as _io

            buffer = _io.BytesIO()
            np.savez_compressed(buffer, deterministic=np.packbits(correct_per_image(det, y)),
                                mc=np.packbits(correct_per_image(mc.mean, y)), count=np.array([len(y)]))
            write_atomic(self.dir / f"seed-{s}-correct.npz", buffer.getvalue())
            write_json(path, result)
            self.log(f"  mc_dropout seed {s}: deterministic {result['deterministic']['accuracy']:.4f}, "
                     f"MC mean {result['mc']['accuracy']:.4f} ({result['seconds']:.0f}s)")
        return read_json(path, "MC dropout record")

    def value(self, s: int, pass_name: str, metric: str) -> float:
        rec = self.record(s)
        key = metric.removeprefix("mc_").removeprefix("test_")
        return float(rec[pass_name][key]) if rec is not None else float("nan")

    def correctness(self, s: int, pass_name: str) -> np.ndarray | None:
        path = self.dir / f"seed-{s}-correct.npz"
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as f:
            return np.unpackbits(f[pass_name], count=int(f["count"][0])).astype(bool)

    def table(self, seeds: Sequence[int]) -> pd.DataFrame:
        rows = []
        for s in seeds:
            result = self.record(s)
            if result is None:
                continue
            for name in ("deterministic", "mc"):
                rows.append({"seed": s, "pass": name,
                             **{f"test_{k}": result[name][k] for k in ("accuracy", "nll", "ece")}})
        table = pd.DataFrame(rows)
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.dir / "results.csv", table.to_csv(index=False, float_format="%.17g"))
        return table


def run_mc_dropout(out: Path, seeds: list[int], mode: Mode, log: Callable[[str], None]) -> pd.DataFrame:
    """Deterministic pass vs the MC mean on the test set for every dropout run of ``seeds`` (see :class:`MCDropout`)."""
    return MCDropout(out, mode, log).table(seeds)


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
    columns: dict[str, Column] = field(default_factory=dict)  # "id@metric" -> what the column is
    rounds: list[str] = field(default_factory=list)  # what --until-decided did, one line a look
    until_decided: bool = False
    figures: list[str] | None = None  # the report's figures (figures/<name>.png), once it is written

    @property
    def shown(self) -> set[str]:
        """The entries this reproduction asked for: its report and published copy show these only (the folder
        keeps every entry ever run in it, since rerunning resumes)."""
        return set(self.summary["id"]) if len(self.summary) else set()


MEASURES = ("best_val_accuracy", "epochs_censored", "late_loss_drop")


def entry_columns(out: Path, e: Entry) -> dict[str, Column]:
    """What each column of an entry's tables is: its runs' records (``columns.json``), and the chapter
    tables' measures derived from them."""
    from deepfit.experiments.chapter_tables import measure_columns
    from deepfit.experiments.stats import merge_columns

    path = out / e.id / "columns.json"
    records = read_json(path, "column record") if path.is_file() else {}
    columns = {**merge_columns([]), **{k: Column.from_record(k, v) for k, v in records.items()}}
    if e.table is not None and (out / e.id / "results.csv").is_file():
        results = pd.read_csv(out / e.id / "results.csv")
        if len(results):
            columns.update(measure_columns(columns, int(results["epoch"].max())))
    return columns


def collect_values(out: Path, entries: list[Entry],
                   columns: dict[str, Column] | None = None) -> dict[str, dict[int, float]]:
    """Each entry's metric per seed (``test_accuracy`` too, for the claims that use it); ``columns``, when
    given, is filled with what each ``"id@metric"`` is."""
    values: dict[str, dict[int, float]] = {}
    columns = columns if columns is not None else {}
    for e in entries:
        if e.config is None:
            continue
        finals = out / e.id / "finals.csv"
        if not finals.is_file():
            continue
        table = pd.read_csv(finals)
        known = entry_columns(out, e)
        for metric in {e.metric, "val_accuracy", "test_accuracy", "loss"} & set(table.columns):
            values[f"{e.id}@{metric}"] = dict(zip(table["seed"].astype(int), table[metric].astype(float)))
            columns[f"{e.id}@{metric}"] = column_of(known, metric)
        if e.table is not None and (out / e.id / "results.csv").is_file():
            from deepfit.experiments.chapter_tables import run_measures

            per = run_measures(pd.read_csv(out / e.id / "results.csv"))
            for metric in MEASURES:
                values[f"{e.id}@{metric}"] = dict(zip(per["seed"].astype(int), per[metric].astype(float)))
                columns[f"{e.id}@{metric}"] = column_of(known, metric)
    mc = out / "mc_dropout" / "results.csv"
    # Only when asked for: a reproduction folder keeps every entry ever run in it, and a claim judged from
    # an entry outside ``entries`` would be judged in a family of another size than its own.
    if any(e.id == "mc_dropout" for e in entries) and mc.is_file() and mc.stat().st_size > 1:
        table = pd.read_csv(mc)
        for name, key in (("mc", "mc_dropout"), ("deterministic", "mc_dropout:deterministic")):
            rows = table[table["pass"] == name]
            for metric in ("test_accuracy", "test_nll", "test_ece"):
                values[f"{key}@{metric}"] = dict(zip(rows["seed"].astype(int), rows[metric].astype(float)))
                columns[f"{key}@{metric}"] = MC_COLUMNS[metric]
            values[f"{key}@mc_test_accuracy"] = values[f"{key}@test_accuracy"]
            columns[f"{key}@mc_test_accuracy"] = MC_COLUMNS["mc_test_accuracy"]
    values.update(last_page.values(out, [e.id for e in entries], columns))
    return values


def summarize(values: dict[str, dict[int, float]], entries: list[Entry],
              columns: dict[str, Column] | None = None) -> pd.DataFrame:
    """Each entry's metric over its seeds beside the notebook's figure; an interval is clipped only to the
    range its column is known to have (``columns``: "id@metric" -> Column; unknown: not clipped)."""
    rows = []
    for e in entries:
        seeds = values.get(f"{e.id}@{e.metric}", {})
        s = t_interval(list(seeds.values()), limits=column_of(columns, f"{e.id}@{e.metric}").limits)
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


def families(claims: Sequence[Claim] = CLAIMS, together: bool = False) -> dict[str, list[Claim]]:
    """The claims judged together: the notebook's, and the chapter tables' as a family of their own
    and the last page's as a third (``together``: all of them as one family, as the demo's four)."""
    if together:
        return {"claims": list(claims)}
    out: dict[str, list[Claim]] = {"notebook": [], "tables": [], "last_page": []}
    for c in claims:
        out[family_of(c)].append(c)
    return out


def family_of(c: Claim) -> str:
    """"last_page" for the chapter's last page, "tables" for its tables, else "notebook"."""
    tables = {entry(side.split(":")[0]).table for side in (c.better, c.worse)} - {None}
    return "last_page" if LAST_PAGE in tables else "tables" if tables else "notebook"


def measured_seeds(e: Entry, runners: dict, mode: Mode, seeds: int | None) -> list[int]:
    """The seeds a measured (last page) entry reads: every seed its source runs were given (one that did
    not finish is skipped when measured)."""
    sources = [runners[i].exp.seeds for i in (e.after, *e.needs) if i in runners]
    return sorted(set().union(*map(set, sources))) if sources else seeds_for(e, mode, seeds)


def judged_fixed(claims: Sequence[Claim], runners: dict, grown: set[str], mode: Mode, seeds: int | None) -> None:
    """The last page's claims are not grown, but read runs that the notebook's claims grow (batch_norm under
    folding, task_b_scratch under augmentation): those get at least the mode's fixed seeds, so a last-page
    verdict never rests on the three seeds another claim happened to need."""
    for c in claims:
        if family_of(c) != "last_page":
            continue
        for side in (c.better, c.worse):
            e = entry(side.split(":")[0])
            sources = (e.after, *e.needs) if e.config is None else (e.id,)
            for source in sources:
                if source in grown and source in runners:
                    runners[source].extend(source, len(seeds_for(e, mode, seeds)))


def claims_in(entries: Sequence[Entry], only: Sequence[str] | None = None) -> list[Claim]:
    """The claims whose two sides are among ``entries`` (an MC dropout side needs the dropout entry);
    ``only``: of those, the ones named."""
    ids = {e.id for e in entries}
    return [c for c in CLAIMS if {side.split(":")[0] for side in (c.better, c.worse)} <= ids
            and (only is None or c.id in only)]


def judge_claims(values: dict[str, dict[int, float]], columns: dict[str, Column] | None = None,
                 max_seeds: dict[str, int] | None = None, claims: Sequence[str] | None = None) -> list[Verdict]:
    """Every claim with numbers on both sides, the notebook's claims as one family and the chapter tables'
    as another (each claim's interval at level 1 − 0.05/m of its family). ``max_seeds``: per claim id, the
    seeds its verdict may rest on at most (what ``--until-decided`` gave it). ``claims``: only these, judged
    as one family."""
    out: list[Verdict] = []
    chosen = CLAIMS if claims is None else [c for c in CLAIMS if c.id in claims]
    for family in families(chosen, together=claims is not None).values():
        pairs = []
        for c in family:
            better, worse = values.get(f"{c.better}@{c.metric}"), values.get(f"{c.worse}@{c.metric}")
            if better and worse:
                cap = (max_seeds or {}).get(c.id)
                if cap is not None:
                    shared = sorted(set(better) & set(worse))[:cap]
                    better, worse = {k: better[k] for k in shared}, {k: worse[k] for k in shared}
                pairs.append((c, better, worse, column_of(columns, f"{c.better}@{c.metric}")))
        out += judge_all(pairs)
    return out


def provenance(mode: Mode, argv: Sequence[str] | None) -> dict[str, Any]:
    import jax
    import keras

    from deepfit import __version__

    import subprocess

    try:  # which code made these numbers, when run from a checkout ("-dirty": changed since that commit)
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
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
    until_decided: bool | None = None,
    min_seeds: int = MIN_SEEDS,
    max_seeds: int | None = None,
) -> Reproduction:
    """Run the chosen catalog entries over seeds, then judge the notebook's claims
    (:func:`deepfit.reproduce` adds the chapter's report).

    ``until_decided`` (default: the mode's; ``seeds`` turns it off): seeds in rounds until each claim
    is decided, from ``min_seeds`` to ``max_seeds`` (None: 20, or a claim's own ``max_seeds``).
    """
    from deepfit.experiments.backends import make_backend
    from deepfit.experiments.runner import Runner, Schedule, per_round
    from deepfit.experiments.spec import load_experiment
    from deepfit.experiments.tables import write_tables
    from deepfit.experiments.until_decided import check_seeds

    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    m = MODES[mode]
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    if seeds is not None and until_decided:
        raise ConfigError("--seeds fixes every experiment's seeds and --until-decided chooses them round by round: "
                          "give one of them (--min-seeds and --max-seeds bound the rounds)")
    until = (m.until_decided if until_decided is None else until_decided) and seeds is None
    if until:
        check_seeds(min_seeds, max_seeds if max_seeds is not None else max(min_seeds, MAX_SEEDS))
    out = Path(out) if out is not None else Path("runs") / f"reproduce-{mode}"
    entries = select(only or m.ids)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log(f"{m.label} {seeds_sentence(m, until, seeds, min_seeds, max_seeds)}")
    trained = [e for e in entries if e.config is not None]
    named = m.claims if not only else None  # a mode's own claims, unless --only chose the entries
    # The last page's claims are read off measurements made after training, at the seeds trained for the
    # rest: they are judged, not grown.
    scope = [c for c in claims_in(entries, named) if family_of(c) != "last_page"]
    grown = {side_entry(side).id for c in scope for side in (c.better, c.worse)} if until else set()
    grown |= {e.after for e in trained if e.id in grown and e.after}
    for i, e in enumerate(trained, 1):
        how = "seeds until its claims are decided" if e.id in grown else f"{len(seeds_for(e, m, seeds))} seeds"
        log(f"[{i}/{len(trained)}] {e.id}: {e.title} ({how})")
    # One backend and one schedule for every entry: its workers keep their compiled programs and data
    # from one experiment to the next, the longest runs of all entries go first, and a run that needs
    # another's (task B on task A, same seed) waits until that one is finished.
    runners: dict[str, Runner] = {}
    for e in trained:
        rate = choose_rate_for(e, m, out, lambda line, e=e: log(f"  {e.id} {line.strip()}")) if e.lr_rule else None
        first = [0] if e.id in grown else seeds_for(e, m, seeds)
        exp = load_experiment(experiment_of(e, m, out, first, rate))
        runners[e.id] = Runner(exp, out / e.id, log=lambda line, e=e: log(f"  {e.id} {line}"))
    for e in trained:
        if e.after in runners:
            runners[e.id].after = (runners[e.after], e.after)
    if until:
        judged_fixed(claims_in(entries, named), runners, grown, m, seeds)
    mc = MCDropout(out, m, log)
    rounds = claim_rounds(scope, runners, out, mc, min_seeds, max_seeds, log, together=named is not None) \
        if until else []
    costs = [r.costs[(v.name, s)] for r in runners.values() for v, s in r.pending()]
    with make_backend(backend, jobs=jobs, address=address, costs=costs, log=log) as chosen:
        for r in rounds:
            r.per_round = per_round(chosen)
        grow = (lambda: any([r.grow() for r in rounds])) if rounds else None
        Schedule(list(runners.values()), chosen, grow=grow).run()
    run_seconds = 0.0  # every run's own training time, this command's and those it resumed from
    for e in trained:
        finals = write_tables(out / e.id, runners[e.id].exp).finals
        if "train_seconds" in finals:
            run_seconds += float(finals["train_seconds"].sum())
    train_seconds = time.perf_counter() - started
    log(f"trained in {train_seconds:.0f}s")
    if any(e.id == "mc_dropout" for e in entries):
        log(f"mc_dropout: {m.mc_samples} stochastic passes per dropout run")
        mc.table(runners["dropout"].exp.seeds if "dropout" in runners else seeds_for(entry("dropout"), m, seeds))
    measured = [e.id for e in entries if e.config is None and e.table == LAST_PAGE]
    if measured:
        log(f"the chapter's last page: measuring {', '.join(measured)}")
        last_page.measure(out, measured, {i: measured_seeds(entry(i), runners, m, seeds) for i in measured}, m, log)
    if not only and m.ids is None:
        run_lr_finder(out, m, log)
    columns: dict[str, Column] = {}
    values = collect_values(out, entries, columns)
    summary = summarize(values, entries, columns)
    caps = {c.name: c.target for r in rounds for c in r.claims}
    verdicts = judge_claims(values, columns, caps if until else None, named)
    verdicts = [with_images(v, out, mc) for v in verdicts]
    write_atomic(out / "summary.csv", summary.to_csv(index=False, float_format="%.6g"))
    write_atomic(out / "claims.csv", claims_table(verdicts).to_csv(index=False, float_format="%.6g"))
    optimizers = table_11_2(out, entries)
    if optimizers is not None:
        write_atomic(out / "table_11_2.csv", optimizers.table.to_csv(index=False, float_format="%.6g"))
    lines = [line for r in rounds for line in r.lines]
    write_json(out / "provenance.json", {**provenance(m, argv), "seconds": time.perf_counter() - started,
                                         "train_seconds": train_seconds, "run_seconds": run_seconds,
                                         "runs": sum(len(r.exp.runs()) for r in runners.values()),
                                         "until_decided": until, "seeds": seeds,
                                         "min_seeds": min_seeds if until else None,
                                         "max_seeds": max_seeds if until else None, "rounds": lines})
    return Reproduction(out, m, summary, verdicts, values, time.perf_counter() - started, columns=columns,
                        rounds=lines, until_decided=until)


def side_entry(side: str) -> Entry:
    """The trained entry whose runs one side of a claim reads ("mc_dropout:deterministic" reads dropout's)."""
    e = entry(side.split(":")[0])
    return entry(e.after) if e.config is None and e.after else e


def side_value(out: Path, side: str, metric: str, mc: "MCDropout") -> Callable[[int], float]:
    """One side's value on a seed, from its finished run (what collect_values reads from the tables)."""
    from deepfit.experiments.store import run_dir
    from deepfit.experiments.tables import final_value

    e = entry(side.split(":")[0])
    if e.config is None:  # MC dropout, computed from the dropout run of that seed
        name = "deterministic" if side.endswith(":deterministic") else "mc"
        return lambda s: mc.value(s, name, metric)
    run = lambda s: run_dir(out / e.id, e.id, s)  # noqa: E731
    if metric in MEASURES:
        from deepfit.experiments.chapter_tables import run_measures

        def measure(s: int) -> float:
            metrics = pd.read_csv(run(s) / "metrics.csv").assign(seed=s)
            return float(run_measures(metrics).iloc[0][metric]) if len(metrics) else float("nan")

        return measure
    return lambda s: final_value(run(s), metric)


def claim_rounds(scope: Sequence[Claim], runners: dict, out: Path, mc: "MCDropout", min_seeds: int,
                 max_seeds: int | None, log: Callable[[str], None], together: bool = False):
    """The claims in scope as rounds, one family each (the notebook's, the chapter tables')."""
    from deepfit.experiments.until_decided import Claim as RoundClaim, Rounds, Side

    def margin(c: Claim) -> Callable[[], float | None]:
        def resolve() -> float | None:
            if c.equivalence is not None:
                return c.equivalence
            e = side_entry(c.better)
            if e.config is None or c.better.startswith("mc_dropout"):
                return MC_COLUMNS.get(c.metric, Column(c.metric)).margin
            return column_of(entry_columns_now(out, e, runners[e.id]), c.metric).margin
        return resolve

    out_rounds = []
    for name, claims in families(scope, together).items():
        if not claims:
            continue
        made = []
        for c in claims:
            a, b = side_entry(c.better), side_entry(c.worse)
            made.append(RoundClaim(c.id, Side(runners[a.id], a.id, side_value(out, c.better, c.metric, mc)),
                                   Side(runners[b.id], b.id, side_value(out, c.worse, c.metric, mc)), margin(c),
                                   max_seeds if max_seeds is not None else (c.max_seeds or MAX_SEEDS)))
        out_rounds.append(Rounds(made, min_seeds=min_seeds, log=lambda line, name=name: log(f"  look ({name}): {line}")))
    return out_rounds


def entry_columns_now(out: Path, e: Entry, runner) -> dict[str, Column]:
    """What an entry's columns are, from its finished runs (the tables are written at the end)."""
    from deepfit.experiments.chapter_tables import measure_columns
    from deepfit.experiments.stats import merge_columns
    from deepfit.experiments.store import is_finished, run_dir

    records = [read_json(run_dir(out / e.id, e.id, s) / "final.json", "final record").get("columns", {})
               for s in runner.exp.seeds if is_finished(run_dir(out / e.id, e.id, s))]
    columns = merge_columns(records)
    return {**columns, **(measure_columns(columns, 0) if e.table is not None else {})}


def with_images(v: Verdict, out: Path, mc: "MCDropout") -> Verdict:
    """The claim with the interval that also covers the images, where its runs kept per-image correctness."""
    from deepfit.experiments.stats import IMAGE_SPLITS, images_interval
    from deepfit.experiments.store import run_dir
    from deepfit.run import read_correctness

    p = v.paired
    split = IMAGE_SPLITS.get(p.metric if not p.metric.startswith("mc_") else "test_accuracy")
    if split is None or p.n < MIN_SEEDS:
        return v
    seeds = _seeds(v)[: p.n]

    def matrix(side: str):
        rows = []
        for s in seeds:
            e = entry(side.split(":")[0])
            if e.config is None:
                c = mc.correctness(s, "deterministic" if side.endswith(":deterministic") else "mc")
            else:
                c = read_correctness(run_dir(out / e.id, e.id, s), split)
            if c is None:
                return None
            rows.append(c)
        return np.stack(rows)

    a, b = matrix(v.claim.better), matrix(v.claim.worse)
    if a is None or b is None or a.shape != b.shape:
        return v
    lo, hi = images_interval(a, b)
    return Verdict(v.claim, dataclasses.replace(p, images_low=lo, images_high=hi), v.verdict, v.seeds)


def _seeds(v: Verdict) -> list[int]:
    """The seeds of a verdict's finite pairs, in seed order."""
    return [s for s, (a, b) in zip(v.seeds, v.paired.pairs) if np.isfinite(a) and np.isfinite(b)]


CLAIM_COLUMNS = ["claim", "text", "better", "worse", "metric", "verdict", "n", "available", "mean_difference",
                 "interval_low", "interval_high", "delta", "ci_low", "ci_high", "images_low", "images_high",
                 "effect_size", "p_superior", "p_superior_low", "p_superior_high", "test", "p_value", "p_holm",
                 "p_anytime", "family", "seeds_to_decide"]


def claims_table(verdicts: list[Verdict]) -> pd.DataFrame:
    """One row per claim: the verdict, the seeds it rests on, the verdict's interval (anytime-valid, family
    level), the 95% seed interval, the interval that also covers the images, d_z, P(first > second), and
    the fixed-n test beside them (descriptive)."""
    return pd.DataFrame([{
        "claim": v.claim.id, "text": v.claim.text, "better": v.claim.better, "worse": v.claim.worse,
        "metric": v.claim.metric, "verdict": v.verdict, "n": v.paired.n, "available": v.paired.available,
        "mean_difference": v.paired.mean_diff, "interval_low": v.paired.cs_low, "interval_high": v.paired.cs_high,
        "delta": v.paired.delta, "ci_low": v.paired.ci_low, "ci_high": v.paired.ci_high,
        "images_low": v.paired.images_low, "images_high": v.paired.images_high,
        "effect_size": v.paired.effect_size, "p_superior": v.paired.p_superior,
        "p_superior_low": v.paired.p_superior_low, "p_superior_high": v.paired.p_superior_high,
        "test": v.paired.test, "p_value": v.paired.p_value, "p_holm": v.paired.p_holm,
        "p_anytime": v.paired.p_anytime, "family": v.paired.family, "seeds_to_decide": v.paired.to_decide}
        for v in verdicts], columns=CLAIM_COLUMNS)


def publish(result: Reproduction, target: str | Path) -> Path:
    """Copy the report, its figures and the tables (not the runs) of the entries it shows into ``target``
    (e.g. docs/results): a reproduction folder also holds entries of earlier, wider runs."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    shown = result.shown
    for name in ("report.md", "report.html", "summary.csv", "claims.csv", "provenance.json", "table_11_2.csv"):
        if (result.dir / name).is_file():
            shutil.copy2(result.dir / name, target / name)
    figures = result.dir / "figures"
    names = result.figures if result.figures is not None else [p.stem for p in figures.glob("*.png")]
    for name in names:
        if (figures / f"{name}.png").is_file():
            (target / "figures").mkdir(exist_ok=True)
            shutil.copy2(figures / f"{name}.png", target / "figures" / f"{name}.png")
    for e in (e for e in CATALOG if e.id in shown):
        for table in ("finals.csv", "results.csv", "rate.json", "columns.json"):
            src = result.dir / e.id / table
            if src.is_file():
                (target / "tables").mkdir(exist_ok=True)
                shutil.copy2(src, target / "tables" / f"{e.id}-{table}")
    for measured in (m for m in last_page.MEASURES if m in shown):
        for table in ("values.csv", "curves.csv"):
            src = result.dir / measured / table
            if src.is_file():
                (target / "tables").mkdir(exist_ok=True)
                shutil.copy2(src, target / "tables" / f"{measured}-{table}")
    mc = result.dir / "mc_dropout" / "results.csv"
    if "mc_dropout" in shown and mc.is_file():
        (target / "tables").mkdir(exist_ok=True)
        shutil.copy2(mc, target / "tables" / "mc_dropout-results.csv")
    return target


__all__ = ["DEMO", "FULL", "MODES", "QUICK", "Reproduction", "publish", "reproduce"]
