"""Where an experiment's runs execute: in this process, a process pool, or Ray. One interface.

A backend pulls claimed :class:`~deepfit.experiments.runner.Task` s from the
runner as it has room, trains each with :func:`deepfit.train` (the same call
everywhere, so results do not depend on the backend) and hands the finished
run directory back to the runner, which moves it into place.

Threads. Each concurrent run gets an explicit budget of ``threads`` cores (its
"slot"): the worker pins all its threads to those cores (``sched_setaffinity``)
before JAX creates its CPU client, sets the BLAS/OpenMP variables, and records
both in the run's ``worker.json``. XLA has no flag for its thread count: its CPU
client sizes its thread pool from the cores the process may use when it starts
(the affinity: measured here, jax 0.10.2, one ``tf_XLAEigen`` thread per allowed
core). For one thread, ``--xla_cpu_multi_thread_eigen=false`` also keeps Eigen's
kernels single-threaded. The flags alone do *not* keep XLA on one core (a 1500²
matmul loop used 1.9 CPU-seconds per wall second with them); the affinity does
(≤ 1.0). Pinning is skipped on a remote Ray cluster, where the driver cannot know
the nodes' cores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any, Iterator

from deepfit import interrupt
from deepfit.errors import ConfigError
from deepfit.experiments.task import WAIT, Outcome, Task
from deepfit.experiments.workers import Worker, WorkerLost, affinity, execute, pin, ready, worker_info

BACKENDS = ("auto", "local", "group", "pool", "ray")
# Below this much work (see estimated_cost) worker processes cost more than they save: each spends
# about 5 s importing Keras and compiling before its first step. Measured here (benchmarks/bench_groups.py):
# six seeds of the notebook's network for 3 epochs (4e11) took 20.2 s one after another in one
# process, 16.2 s on two single-threaded workers. 2e11 is about 9 epochs of that network.
POOL_THRESHOLD = 2e11


def thread_env(threads: int) -> dict[str, str]:
    """Environment for a worker of ``threads`` threads (with the affinity its slot gets: see the module).

    XLA_FLAGS holds only flags XLA knows (it aborts the process on any other, and reads a word
    without ``--`` as a file of flags): ``--xla_cpu_multi_thread_eigen=false`` for one thread, none
    for more (the affinity sizes XLA's pool); the user's other flags
    (``--xla_force_host_platform_device_count``, ...) are kept. Must be set before JAX creates its
    CPU backend, i.e. in a fresh process.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    flags = " ".join(f for f in flags.split() if not f.startswith(("--xla_cpu_multi_thread_eigen",
                                                                  "intra_op_parallelism_threads")))
    if threads == 1:
        flags = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
    t = str(threads)
    return {"XLA_FLAGS": flags, "OMP_NUM_THREADS": t, "OPENBLAS_NUM_THREADS": t, "MKL_NUM_THREADS": t,
            "DEEPFIT_THREADS": t, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax")}


def execution_env(backend: str, jobs: int, threads: int) -> dict[str, str]:
    """How a worker's runs are executed, for their ``environment.json`` (see deepfit.run.environment)."""
    return {"DEEPFIT_EXECUTION": f"{backend}: {jobs} worker(s) x {threads} thread(s)"}


def slot_cpus(slot: int, threads: int) -> list[int]:
    """The cores of concurrent slot ``slot`` (wrapping around when slots × threads exceed the cores)."""
    allowed = affinity()
    return sorted({allowed[(slot * threads + j) % len(allowed)] for j in range(threads)})


class Backend:
    name = "base"

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None: ...

    def run(self, tasks: Iterator[Task], runner) -> None:
        raise TypeError(f"{type(self).__name__} does not run tasks")


class LocalBackend(Backend):
    """One run after another in this process (JAX uses this process's threads)."""

    name = "local"

    def run(self, tasks, runner) -> None:
        for task in tasks:
            if task is WAIT:
                continue
            partial = runner.partial(task)
            try:
                outcome = execute(task, str(partial))
            except BaseException:
                runner.abandon(task)
                raise
            runner.finish(task, partial, outcome)


def group_key(task: Task) -> str:
    """Runs whose configs differ only in the seeds (and the initial weights' values, one file a seed)
    share one compiled program, so they train as a group."""
    tree = {k: v for k, v in task.config.items() if k not in ("seed", "order_seed", "dropout_seed", "name")}
    tree["model"] = {k: v for k, v in (tree.get("model") or {}).items() if k != "initial_weights"}
    return json.dumps(tree, sort_keys=True, default=repr)


class GroupBackend(Backend):
    """Every claimed run in this process, the runs of one shape together: one compiled program steps
    all their states at once (:func:`deepfit.run.train_group`). The fastest on an accelerator."""

    name = "group"

    def run(self, tasks, runner) -> None:
        from deepfit.run import train_group

        claimed = list(tasks_until_wait(tasks))
        while claimed:
            groups: dict[str, list[Task]] = {}
            for task in claimed:
                groups.setdefault(group_key(task), []).append(task)
            for group in sorted(groups.values(), key=lambda g: -sum(t.cost for t in g)):
                partials = [runner.partial(t) for t in group]
                try:
                    runs = train_group([t.config for t in group], [str(p) for p in partials], resume=True)
                except BaseException:
                    for t in group:
                        runner.abandon(t)
                    raise
                info = {**worker_info(), "group": len(group)}
                for task, partial, run in zip(group, partials, runs):
                    runner.finish(task, partial, Outcome(task, run.final, info))
            claimed = list(tasks_until_wait(tasks))


def tasks_until_wait(tasks: Iterator[Task | object]) -> Iterator[Task]:
    """The tasks claimable now (up to a WAIT, which means: finish yours first)."""
    for task in tasks:
        if task is WAIT:
            return
        yield task


class _Concurrent(Backend):
    """Shared loop: keep ``jobs`` runs in flight, file each as it completes."""

    jobs = 1
    threads = 1
    pinned = True

    def submit(self, task: Task, partial: Path, cpus: list[int] | None, slot: int) -> Any: ...
    def wait_some(self, handles: list[Any]) -> list[Any]: ...
    def result(self, handle: Any, task: Task, partial: Path) -> Outcome: ...
    def cancel(self, handle: Any) -> None: ...

    def run(self, tasks, runner) -> None:
        inflight: dict[Any, tuple[Task, Path, int]] = {}
        free = list(range(self.jobs))  # slots, each owning `threads` cores
        it = iter(tasks)
        exhausted = False

        def collect(handles) -> None:
            for h in handles:
                task, partial, slot = inflight.pop(h)
                free.append(slot)
                free.sort()
                try:
                    outcome = self.result(h, task, partial)
                except WorkerLost as lost:
                    runner.lose(task, str(lost))
                    continue
                except interrupt.Interrupted as stopped:
                    if interrupt.pending() is None:  # that worker alone was told to stop: like a lost one
                        runner.lose(task, f"the worker training {task.variant} seed {task.seed} was stopped "
                                          f"({stopped})")
                    else:  # ours to stop: its checkpoint waits in .partial for the next run of the command
                        runner.abandon(task)
                    continue
                except BaseException:
                    runner.abandon(task)
                    raise
                runner.finish(task, partial, outcome)

        try:
            while True:
                # After a signal nothing new starts; the runs in flight checkpoint and answer.
                while not exhausted and len(inflight) < self.jobs and interrupt.pending() is None:
                    task = next(it, None)
                    if task is None:
                        exhausted = True
                    elif task is WAIT:
                        # Finish one of ours before asking again: a finished run may open new work
                        # (seeds until decided), and another driver's runs are waited for only once ours are done.
                        if inflight:
                            collect(self.wait_some(list(inflight)))
                    else:
                        partial = runner.partial(task)
                        slot = free.pop(0)
                        cpus = slot_cpus(slot, self.threads) if self.pinned else None
                        inflight[self.submit(task, partial, cpus, slot)] = (task, partial, slot)
                if not inflight:
                    break
                collect(self.wait_some(list(inflight)))
        finally:
            for h, (task, _, _) in list(inflight.items()):
                self.cancel(h)
                runner.abandon(task)


class PoolBackend(_Concurrent):
    """``jobs`` long-lived worker processes with ``threads`` XLA threads each (see deepfit.experiments.workers)."""

    name = "pool"

    def __init__(self, jobs: int, threads: int = 1):
        self.jobs, self.threads = jobs, threads
        self.workers: list[Worker] = []

    def _start(self) -> Worker:
        return Worker({**thread_env(self.threads), **execution_env(self.name, self.jobs, self.threads)})

    def __enter__(self) -> "PoolBackend":
        self.workers = [self._start() for _ in range(self.jobs)]  # they import while the driver plans
        interrupt.add_hook(self._forward)
        return self

    def __exit__(self, *exc) -> None:
        interrupt.remove_hook(self._forward)
        for w in self.workers:
            w.stop()
        self.workers = []

    def _forward(self, signum: int) -> None:
        """The driver's signal, passed on: each worker checkpoints its run (workers live in their own
        session, so a terminal's Ctrl-C reaches only the driver). SIGTERM either way, since workers
        ignore SIGINT (the driver decides)."""
        for w in self.workers:
            if w.proc.poll() is None:
                try:
                    os.kill(w.proc.pid, signal.SIGTERM)
                except OSError:
                    pass

    def submit(self, task, partial, cpus, slot):
        self.workers[slot].send(task, str(partial), cpus)
        return slot

    def wait_some(self, handles):
        return [self.workers.index(w) for w in ready([self.workers[h] for h in handles])]

    def result(self, handle, task, partial):
        try:
            return self.workers[handle].answer()
        except (WorkerLost, interrupt.Interrupted):
            self.workers[handle].stop()
            if interrupt.pending() is None:
                self.workers[handle] = self._start()  # the other runs go on; this one is redone next time
            raise

    def cancel(self, handle):
        self.workers[handle].stop()


def ray_execute(task: Task, cpus: list[int] | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, bytes]]:
    """Train in a private temporary directory on whichever node Ray chose; return the files.

    The driver writes them, so a cluster needs no shared filesystem.
    """
    from deepfit.run import train

    pin(cpus)
    tmp = tempfile.mkdtemp(prefix="deepfit-ray-")
    try:
        out = Path(tmp) / "run"
        run = train(task.config, out=out, resume=True)  # as every backend: a full disk then says "the same command"
        files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
        return run.final, worker_info(), files
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class RayBackend(_Concurrent):
    """One Ray task per run (``num_cpus = threads``); a local Ray, or the cluster at ``address``."""

    name = "ray"

    def __init__(self, jobs: int | None, address: str | None, threads: int = 1):
        self.jobs, self.address, self.threads = jobs, address, threads
        self.started = False

    def __enter__(self) -> "RayBackend":
        try:
            import ray
        except ImportError:
            raise ConfigError("backend 'ray' needs Ray: pip install 'deepfit[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address:
                kwargs["address"] = self.address
            elif self.jobs:
                kwargs["num_cpus"] = self.jobs * self.threads
            ray.init(**kwargs)
            self.started = True  # only a Ray we started is ours to stop
        self.pinned = not self.address
        if not self.jobs:
            self.jobs = max(1, int(ray.cluster_resources().get("CPU", 1)) // self.threads)
        env = {**thread_env(self.threads), **execution_env(self.name, self.jobs, self.threads)}
        self.remote = ray.remote(ray_execute).options(num_cpus=self.threads, runtime_env={"env_vars": env})
        return self

    def __exit__(self, *exc) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False

    def submit(self, task, partial, cpus, slot):
        return self.remote.remote(task, cpus)

    def wait_some(self, handles):
        done, _ = self.ray.wait(handles, num_returns=1)
        return done

    def result(self, handle, task, partial):
        final, worker, files = self.ray.get(handle)
        for name, data in files.items():
            target = partial / name
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise RuntimeError(f"a Ray worker returned a path outside the run directory: {name!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return Outcome(task, final, worker)

    def cancel(self, handle):
        self.ray.cancel(handle, force=True)


def default_jobs() -> int:
    """Pool size when ``--jobs`` is not given: one single-threaded worker per core (see docs/measure)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def choose_backend(costs: list[float], jobs: int | None = None) -> tuple[str, str]:
    """The backend ``auto`` picks for runs of these estimated costs, and why (one line).

    On a CPU with several cores: one single-threaded worker per core, each keeping its
    compiled programs and prepared data from run to run (measured here: 1.6x the throughput of
    one two-threaded process on the notebook's network, 2x on the 100-layer one). On an
    accelerator, or for little work, the runs stay in this process.
    """
    import jax

    platform = jax.default_backend()
    cores = jobs or default_jobs()
    if platform != "cpu":
        return "group", f"{platform} device: the runs of one shape train together in one program"
    if not costs:
        return "local", "nothing left to train"
    if cores < 2:
        return "local", "one core"
    if len(costs) < 2:
        return "local", "a single run"
    if sum(costs) < POOL_THRESHOLD:
        return "local", "little work: starting worker processes would cost more than they save"
    return "pool", f"CPU with {cores} cores: one single-threaded worker per core"


def make_backend(name: str, jobs: int | None = None, address: str | None = None,
                 costs: list[float] | None = None, log=None) -> Backend:
    """A backend by name; ``auto`` chooses from the runs' estimated ``costs`` and says what it chose."""
    if name not in BACKENDS:
        raise ConfigError(f"backend {name!r} is not one of {', '.join(BACKENDS)}")
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs {jobs} must be at least 1")
    if address is not None and name != "ray":
        raise ConfigError(f"--address is for --backend ray (got --backend {name})")
    if name == "auto":
        name, why = choose_backend(costs or [], jobs)
        if log is not None:
            shown = {"pool": f"pool of {jobs or default_jobs()} single-threaded workers",
                     "group": "runs grouped by shape in this process"}.get(name, "this process")
            log(f"backend auto: {shown} ({why}; --backend local|group|pool|ray to choose)")
    if name == "local":
        return LocalBackend()
    if name == "group":
        return GroupBackend()
    if name == "pool":
        return PoolBackend(jobs or default_jobs())
    return RayBackend(jobs, address)
