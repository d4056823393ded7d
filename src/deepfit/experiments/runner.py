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
from deepfit.experiments.tables import write_tables
from deepfit.experiments.task import WAIT, Outcome, Task, estimated_cost
from deepfit.io import fsync_dir, read_json, storage_error, write_json



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
    """One experiment's runs: what is pending, claiming a run, filing it when it is done."""

    def __init__(self, exp: Experiment, out: Path, log: Callable[[str], None] | None = None):
        self.exp, self.out = exp, out
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self.claims = Claims(out)
        self.trained: list[tuple[str, int]] = []
        self.leftovers: dict[str, Path] = {}  # run key -> an interrupted attempt to continue
        configs = {(v.name, s): self.config(v, s) for v, s in exp.runs()}
        self.expected = {key: dump_toml(cfg) for key, cfg in configs.items()}
        self.costs = {key: estimated_cost(cfg.to_dict()) for key, cfg in configs.items()}

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
            metric = self.exp.metric
            shown = f"{metric} {last[metric]:.4f}" if isinstance(last.get(metric), float) else outcome.final["status"]
            done = sum(is_finished(run_dir(self.out, v.name, s)) for v, s in self.exp.runs())
            self.log(f"[{done}/{len(self.expected)}] {task.variant} seed {task.seed}: {shown} "
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
    """Several experiments' runs through one backend, the longest runs first.

    Longest first keeps every worker busy to the end (a long run started last would
    leave the others idle); one backend for all keeps its workers, their compiled
    programs and their data alive from one experiment to the next.
    """

    def __init__(self, runners: Sequence[Runner], backend: Backend):
        self.runners = {str(r.out): r for r in runners}
        self.backend = backend
        self.lost: set[tuple[str, str]] = set()  # (experiment, run) whose worker died: not retried now

    def tasks(self) -> Iterator[Task | object]:
        """Claims lazily, as the backend has room: concurrent drivers then share the grid."""
        runners = list(self.runners.values())
        while interrupt.pending() is None:
            pending = sorted(((r, v, s) for r, v, s in self.pending()
                              if f"{v.name}__seed-{s}" not in r.claims.held),
                             key=lambda item: -item[0].costs[(item[1].name, item[2])])
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
            left = self.pending()
            if not left:
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
            finished = sum(len(r.expected) for r in self.runners.values()) - len(left)
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
    **options: Any,
) -> "ExperimentResult":
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
    """
    if is_python_experiment(experiment, data):
        experiment, out, backend = python_experiment(experiment, data=data, seeds=5 if seeds is None else seeds,
                                                     out=out, backend=backend, log=log, **options)
        seeds = None
    elif options:
        raise ConfigError(f"compare: {', '.join(options)} apply to variants given from Python with data=...; "
                          f"an experiment file sets them in its base config")
    exp = load_experiment(experiment, seeds=seeds, overrides=overrides)
    out_dir = Path(out) if out is not None else Path("experiments") / exp.name
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {str(out_dir)!r} is a file, not a directory; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    runner = Runner(exp, out_dir, log)
    started = time.perf_counter()
    costs = [runner.costs[(v.name, s)] for v, s in runner.pending()]
    with make_backend(backend, jobs=jobs, address=address, costs=costs, log=runner.log) as chosen:
        Schedule([runner], chosen).run()
    try:
        result = write_tables(out_dir, exp)
    except OSError as e:
        raise StorageError(f"{storage_error(e.filename or out_dir, e)}. Every finished run is kept in "
                           f"{out_dir / RUNS}. Free some space, then run the same command again: it trains "
                           "nothing more, it only writes the tables and report") from None
    result.trained = runner.trained
    result.seconds = time.perf_counter() - started
    return result


__all__ = ["Claims", "Outcome", "Runner", "Schedule", "Task", "compare", "is_finished", "read_experiment",
           "run_dir"]
