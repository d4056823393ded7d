"""Run an experiment's (variant, seed) grid into an experiment directory; resumable and concurrency-safe.

The experiment directory::

    experiment.json          the resolved experiment (base, variants, seeds, reference)
    runs/VARIANT/seed-S/     one finished run directory each (see deepfit.run)
    results.csv / .parquet   tidy: one row per (variant, seed, epoch), every metric a column
    finals.csv / .parquet    one row per (variant, seed): last-epoch and test metrics, status, threads
    .partial/                runs being trained (moved into runs/ in one rename when complete)
    .locks/                  one lock file per run

Resume and concurrency rest on two facts. A run appears in ``runs/`` only by an
atomic ``rename`` of a complete directory, so a finished run is one that exists;
anything interrupted stays in ``.partial/`` and is redone. And a run is trained
only by the driver holding its lock (``fcntl.flock``, released by the kernel
when the holder dies, so a killed ``deepfit compare`` never leaves a stale
claim): two ``compare`` processes on one directory split the runs between them
and never train the same (variant, seed) twice. (flock needs a local
filesystem; on NFS run one ``compare`` per directory.)
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from deepfit import interrupt
from deepfit.config import Config, dump_toml
from deepfit.errors import ConfigError, StorageError
from deepfit.experiments.backends import Backend, make_backend
from deepfit.experiments.python_api import is_python_experiment, python_experiment
from deepfit.experiments.spec import Experiment, Variant, load_experiment
from deepfit.experiments.store import LOCKS, PARTIAL, RUNS, is_finished, read_experiment, run_dir  # noqa: F401
from deepfit.experiments.sequential import MAX_SEEDS, MIN_SEEDS
from deepfit.experiments.stats import column_of, merge_columns
from deepfit.experiments.tables import ExperimentResult, final_value, write_tables
from deepfit.experiments.task import WAIT, Outcome, Task, estimated_cost
from deepfit.experiments.until_decided import CROSSED_REFUSAL, Claim as RoundClaim, Rounds, Side, check_seeds
from deepfit.io import fsync_dir, read_json, storage_error, write_atomic, write_json



class Claims:
    """Per-run ``flock`` locks held by this driver while it trains those runs."""

    def __init__(self, exp_dir: Path):
        self.dir = exp_dir / LOCKS
        self.dir.mkdir(parents=True, exist_ok=True)
        self.held: dict[str, int] = {}

    def acquire(self, key: str, block: bool) -> bool:
        fd = os.open(self.dir / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o666)  # less the umask, as open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.held[key] = fd
        return True

    def release(self, key: str) -> None:
        fd = self.held.pop(key, None)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def release_all(self) -> None:
        for key in list(self.held):
            self.release(key)


class Runner:
    """One experiment's runs: what is pending, claiming a run, filing it when it is done.

    Seeds until decided (:mod:`deepfit.experiments.until_decided`) give each variant its own
    number of seeds (``exp.seeds_per_variant``) and grow it with :meth:`extend`; ``after`` names
    another runner's variant whose run of the same seed must be finished first (task B on task A).
    """

    def __init__(self, exp: Experiment, out: Path, log: Callable[[str], None] | None = None):
        self.exp, self.out = exp, out
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self.claims = Claims(out)
        self.trained: list[tuple[str, int]] = []
        self.leftovers: dict[str, Path] = {}  # run key -> an interrupted attempt to continue
        self.expected: dict[tuple[str, Any], str] = {}
        self.costs: dict[tuple[str, Any], float] = {}
        self.after: tuple["Runner", str] | None = None
        self._add([(v, s) for s in exp.seeds for v in exp.variants])

    def _add(self, runs) -> None:
        for v, s in runs:
            cfg = self.config(v, s)
            self.expected[(v.name, s)] = dump_toml(cfg)
            self.costs[(v.name, s)] = estimated_cost(cfg.to_dict())

    def seed_sequence(self, count: int) -> list[int]:
        """The first ``count`` seeds: the experiment's own, then the smallest unused non-negative integers."""
        seeds, used, k = list(self.exp.seeds[:count]), set(self.exp.seeds), 0
        while len(seeds) < count:
            if k not in used:
                seeds.append(k)
            k += 1
        return seeds

    def extend(self, variant: str, count: int) -> None:
        """Give ``variant`` its first ``count`` seeds (what it already had stays)."""
        if self.exp.is_crossed:
            raise ConfigError("a crossed init x order design cannot grow one seed at a time (see until_decided)")
        new = [s for s in self.seed_sequence(count) if s not in self.exp.seeds]
        if new:
            self.exp.seeds.extend(new)
            self._add([(v, s) for s in new for v in self.exp.variants])
        counts = self.exp.seeds_per_variant
        counts = dict(counts) if counts is not None else {v.name: 0 for v in self.exp.variants}
        counts[variant] = max(counts.get(variant, 0), count)
        self.exp.seeds_per_variant = counts
        if self.out.is_dir():
            write_json(self.out / "experiment.json", self.exp.to_dict())
        if self.after is not None:
            self.after[0].extend(self.after[1], count)

    def ready(self, seed: Any) -> bool:
        """Whether what this run builds on (``after``) is there."""
        if self.after is None:
            return True
        return is_finished(run_dir(self.after[0].out, self.after[1], seed))

    def config(self, variant: Variant, seed: int) -> Config:
        cfg = self.exp.config(variant, seed)
        cfg.training.progress = False  # the runner prints one line per run; bars from workers would interleave
        return cfg

    # -- checks before any work ----------------------------------------------
    def check_existing(self) -> None:
        """A finished run made from another config would silently mix experiments: refuse it."""
        for (variant, seed), text in self.expected.items():
            d = run_dir(self.out, variant, seed)
            if is_finished(d) and (d / "config.toml").read_text(encoding="utf-8") != text:
                raise ConfigError(
                    f"{d} was trained with a different config than variant {variant!r} seed {seed} now "
                    f"describes; write this experiment to another --out (or delete that run to redo it)"
                )

    def prepare(self) -> None:
        self.check_existing()
        write_json(self.out / "experiment.json", self.exp.to_dict())

    # -- claiming -------------------------------------------------------------
    def pending(self) -> list[tuple[Variant, int]]:
        return [(v, s) for v, s in self.exp.runs() if not is_finished(run_dir(self.out, v.name, s))]

    def claim(self, variant: Variant, seed: int, block: bool) -> Task | None:
        key = f"{variant.name}__seed-{seed}"
        if not self.claims.acquire(key, block):
            return None
        if is_finished(run_dir(self.out, variant.name, seed)):  # another driver finished it meanwhile
            self.claims.release(key)
            return None
        # An interrupted attempt (a signal, a kill, a full disk) is continued from its checkpoint,
        # so a stopped sweep loses at most a chunk of steps a run; any other leftover is redone.
        attempts = sorted((self.out / PARTIAL).glob(f"{key}.*"), key=_mtime, reverse=True)
        keep = next((p for p in attempts if self._continuable(p, variant.name, seed)), None)
        for stale in attempts:
            if stale != keep:
                shutil.rmtree(stale, ignore_errors=True)
        if keep is not None:
            self.leftovers[key] = keep
        return Task(variant.name, seed, self.config(variant, seed).to_dict(), str(self.out))

    def _continuable(self, attempt: Path, variant: str, seed: int) -> bool:
        try:
            return (attempt / "config.toml").read_text(encoding="utf-8") == self.expected[(variant, seed)]
        except (OSError, UnicodeDecodeError):
            return False

    def partial(self, task: Task) -> Path:
        left = self.leftovers.pop(task.key, None)
        if left is not None and left.is_dir():
            return left
        p = self.out / PARTIAL / f"{task.key}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def finish(self, task: Task, partial: Path, outcome: Outcome, backend: str) -> None:
        """Move a complete run into place in one rename, then let go of its claim."""
        try:
            write_json(partial / "worker.json", {**outcome.worker, "backend": backend})
            target = run_dir(self.out, task.variant, task.seed)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():  # only an unfinished leftover can be here (we hold the claim)
                shutil.rmtree(target)
            os.rename(partial, target)
            fsync_dir(target.parent)
            self.trained.append((task.variant, task.seed))
            last = outcome.final.get("last", {})
            # A measure computed from the curve (Table 11-2's best accuracy) is not in the last epoch's logs.
            metric = next((m for m in (self.exp.metric, "val_accuracy") if isinstance(last.get(m), float)), None)
            shown = f"{metric} {last[metric]:.4f}" if metric else outcome.final["status"]
            wanted = self.exp.runs()
            done = sum(is_finished(run_dir(self.out, v.name, s)) for v, s in wanted)
            self.log(f"[{done}/{len(wanted)}] {task.variant} seed {task.seed}: {shown} "
                     f"({outcome.final.get('seconds', 0.0):.1f}s, {outcome.worker.get('threads')} thread(s))")
        finally:
            self.claims.release(task.key)

    def abandon(self, task: Task) -> None:
        self.claims.release(task.key)


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


class Schedule:
    """Several experiments' runs through one backend: seed by seed, the longest runs of each seed first.

    Longest first keeps every worker busy to the end (a long run started last would
    leave the others idle); seed by seed, every program's first run starts beside other
    programs, not beside its own second seed, so it is compiled once and its other seeds
    find it in the compilation cache (two workers compiling the same program at once
    cost about 6 s a program on this CPU). One backend for all keeps its workers, their
    compiled programs and their data alive from one experiment to the next.
    """

    def __init__(self, runners: Sequence[Runner], backend: Backend, grow: Callable[[], bool] | None = None):
        self.runners = {str(r.out): r for r in runners}
        self.backend = backend
        self.lost: set[tuple[str, str]] = set()  # (experiment, run) whose worker died: not retried now
        # Seeds until decided: looks at the claims whose round is complete and may add runs (True if it did).
        self.grow = grow
        self._look = grow is not None  # a run finished since the last look (or none taken yet)

    def tasks(self) -> Iterator[Task | object]:
        """Claims lazily, as the backend has room: concurrent drivers then share the grid."""
        runners = list(self.runners.values())
        while interrupt.pending() is None:
            if self._look:
                self._look = False
                self.grow()
            pending = sorted(((r, v, s) for r, v, s in self.pending()
                              if f"{v.name}__seed-{s}" not in r.claims.held and r.ready(s)),
                             key=lambda item: (item[2], -item[0].costs[(item[1].name, item[2])]))
            got = False
            for r, v, s in pending:
                if interrupt.pending() is not None:
                    return
                task = r.claim(v, s, block=False)
                if task is not None:
                    got = True
                    yield task
            if got:
                continue
            if any(r.claims.held for r in runners):  # ours still in flight: let the backend finish them
                yield WAIT
                continue
            left = [(r, v, s) for r, v, s in self.pending() if r.ready(s)]
            if not left:
                if self.grow is not None and self.grow():
                    continue
                return
            # Everything left is held by another driver: wait for it; if that driver died, the run is ours.
            r, v, s = left[0]
            r.log(f"waiting for another deepfit compare training {v.name} seed {s}")
            task = r.claim(v, s, block=True)
            if task is not None:
                yield task

    def pending(self) -> list[tuple[Runner, Variant, int]]:
        return [(r, v, s) for r in self.runners.values() for v, s in r.pending()
                if (str(r.out), f"{v.name}__seed-{s}") not in self.lost]

    def partial(self, task: Task) -> Path:
        return self.runners[task.experiment].partial(task)

    def lose(self, task: Task, why: str) -> None:
        """A worker died with this run: the others go on; the next run of the command redoes it."""
        runner = self.runners[task.experiment]
        runner.abandon(task)
        self.lost.add((task.experiment, task.key))
        runner.log(f"{why}: that run is left unfinished; run the same command again to redo it")

    def finish(self, task: Task, partial: Path, outcome: Outcome) -> None:
        self.runners[task.experiment].finish(task, partial, outcome, self.backend.name)
        self._look = self.grow is not None

    def abandon(self, task: Task) -> None:
        self.runners[task.experiment].abandon(task)

    def run(self) -> None:
        for r in self.runners.values():
            r.prepare()
        with interrupt.stop_politely():
            try:
                self.backend.run(self.tasks(), self)
            except interrupt.Interrupted as e:
                signum = e.signum
            else:
                signum = interrupt.pending()
            finally:
                for r in self.runners.values():
                    r.claims.release_all()
        left = self.pending()
        if signum is not None and left:
            finished = sum(sum(is_finished(run_dir(r.out, v.name, s)) for v, s in r.exp.runs())
                           for r in self.runners.values())
            where = ", ".join(str(r.out / PARTIAL) for r in self.runners.values())
            raise interrupt.Interrupted(
                signum, f"stopped by {interrupt.name(signum)}: {finished} run(s) finished and kept, {len(left)} "
                        f"left; the runs in flight were checkpointed in {where}",
                [str(r.out) for r in self.runners.values()])


def compare(
    experiment: str | Path | Mapping[str, Any] | Experiment,
    out: str | Path | None = None,
    *,
    seeds: int | str | Sequence[int] | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    backend: str = "auto",
    jobs: int | None = None,
    address: str | None = None,
    log: Callable[[str], None] | None = None,
    data: Any = None,
    until_decided: bool = False,
    min_seeds: int = MIN_SEEDS,
    max_seeds: int = MAX_SEEDS,
    **options: Any,
) -> ExperimentResult:
    """Run every (variant, seed) of an experiment, then write its tables
    (:func:`deepfit.compare` adds the report).

    From Python, without a file: ``compare({"relu": make_relu, "selu": make_selu}, data=(x, y), seeds=5,
    epochs=10)``, variants as functions ``seed -> compiled Keras model`` or config dicts, data as arrays
    (``options``: see :func:`deepfit.experiments.python_api.python_experiment`).

    Rerunning on the same ``out`` skips finished runs and redoes interrupted
    ones; concurrent calls on one ``out`` share the work. ``backend`` is
    ``"local"`` (in this process), ``"pool"`` (``jobs`` processes) or ``"ray"``
    (``address`` of a cluster, or a local Ray); the per-run results do not
    depend on it.

    ``until_decided``: instead of the experiment's fixed seeds, train every variant and the
    reference ``min_seeds`` seeds, then one more round at a time for each comparison still
    undecided, up to ``max_seeds`` (:mod:`deepfit.experiments.until_decided`); the experiment's
    seeds give the order.
    """
    if is_python_experiment(experiment, data):
        experiment, out, backend = python_experiment(experiment, data=data, seeds=5 if seeds is None else seeds,
                                                     out=out, backend=backend, log=log, **options)
        seeds = None
    elif options:
        raise ConfigError(f"compare: {', '.join(options)} apply to variants given from Python with data=...; "
                          f"an experiment file sets them in its base config")
    exp = load_experiment(experiment, seeds=seeds, overrides=overrides)
    if until_decided:
        check_seeds(min_seeds, max_seeds)
        if exp.is_crossed:
            raise ConfigError(f"experiment {exp.name!r}: {CROSSED_REFUSAL}")
    out_dir = Path(out) if out is not None else Path("experiments") / exp.name
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {str(out_dir)!r} is a file, not a directory; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    runner = Runner(exp, out_dir, log)
    started = time.perf_counter()
    rounds = comparison_rounds(runner, min_seeds, max_seeds) if until_decided else None
    costs = [runner.costs[(v.name, s)] for v, s in runner.pending()]
    with make_backend(backend, jobs=jobs, address=address, costs=costs, log=runner.log) as chosen:
        if rounds is not None:
            rounds.per_round = per_round(chosen)
        Schedule([runner], chosen, grow=rounds.grow if rounds is not None else None).run()
    try:
        result = write_tables(out_dir, exp)
    except OSError as e:
        raise StorageError(f"{storage_error(e.filename or out_dir, e)}. Every finished run is kept in "
                           f"{out_dir / RUNS}. Free some space, then run the same command again: it trains "
                           "nothing more, it only writes the tables and report") from None
    result.trained = runner.trained
    result.seconds = time.perf_counter() - started
    if rounds is not None:
        result.rounds = rounds.lines
        write_atomic(out_dir / "rounds.txt", "".join(f"{line}\n" for line in rounds.lines))
    return result


def per_round(backend: Backend) -> int:
    """Seeds a round adds to a claim: one (every worker still gets a run when several claims are open), but a
    group on an accelerator trains a variant's seeds in one program, so it gets several at once."""
    return 4 if backend.name == "group" else 1


def comparison_rounds(runner: Runner, min_seeds: int, max_seeds: int) -> Rounds:
    """Every variant against the reference, as claims grown round by round (``compare --until-decided``)."""
    exp = runner.exp

    def value(variant: str) -> Callable[[Any], float]:
        return lambda seed: final_value(run_dir(runner.out, variant, seed), exp.metric)

    def margin() -> float | None:
        if exp.equivalence is not None:
            return exp.equivalence
        records = [read_json(run_dir(runner.out, v.name, s) / "final.json", "final record").get("columns", {})
                   for v, s in exp.runs() if is_finished(run_dir(runner.out, v.name, s))][:1]
        return column_of(merge_columns(records), exp.metric).margin

    claims = [RoundClaim(f"{v.name} vs {exp.reference}", Side(runner, v.name, value(v.name)),
                         Side(runner, exp.reference, value(exp.reference)), margin, max_seeds)
              for v in exp.variants if v.name != exp.reference]
    return Rounds(claims, min_seeds=min_seeds, log=runner.log)


__all__ = ["Claims", "Outcome", "Runner", "Schedule", "Task", "compare", "is_finished", "read_experiment",
           "run_dir"]
