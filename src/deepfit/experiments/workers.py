"""Long-lived worker processes for the ``pool`` backend: one per core, single-threaded.

Each worker is a Python process running :func:`main`: it reads one task a line
(JSON) on stdin, trains it with :func:`deepfit.run.train` into the directory the
driver names, and answers one JSON line. It lives as long as the backend, so the
runs it trains one after another share its prepared data, its device copy of it
and its compiled step programs (``deepfit.data.prepare`` and
``deepfit.train.step`` keep them per process): on this 2-core CPU, two
single-threaded workers train 1.6-2x faster than one two-threaded process.

Plain processes and pipes rather than ``multiprocessing``: a task is plain data
(nothing is unpickled), a user's script needs no ``if __name__ == "__main__":``
guard (nothing re-imports it), and a worker that dies loses only the run it was
training; the driver starts another in its place.
"""

from __future__ import annotations

import json
import os
import platform
import select
import signal
import subprocess
import sys
import traceback
from dataclasses import asdict
from typing import IO, Any

from deepfit import interrupt
from deepfit.errors import CheckpointError, ConfigError, DataError, StorageError
from deepfit.experiments.task import Outcome, Task

# Errors a user can cause, raised again in the driver as themselves; anything else is a bug (a traceback).
USER_ERRORS = {e.__name__: e for e in (ConfigError, DataError, CheckpointError, StorageError)}


class WorkerLost(RuntimeError):
    """A worker process ended while it trained a run (killed, out of memory, crashed)."""


class Worker:
    """One worker process, driver side: send a task, read its answer."""

    def __init__(self, env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from deepfit.experiments.workers import main; main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={**os.environ, **env, "DEEPFIT_DRIVER_PID": str(os.getpid())},
            # Its own session: a Ctrl-C in the terminal reaches the driver, which then stops the workers.
            start_new_session=True)
        self.task: Task | None = None

    def send(self, task: Task, out: str, cpus: list[int] | None) -> None:
        self.task = task
        try:
            self.proc.stdin.write((json.dumps({"task": asdict(task), "out": out, "cpus": cpus}) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died: reading its answer says so

    def fileno(self) -> int:
        return self.proc.stdout.fileno()

    def answer(self) -> Outcome:
        """The outcome of the task sent; raises the run's error, or WorkerLost if the process ended."""
        task, self.task = self.task, None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            raise WorkerLost(f"the worker training {task.variant} seed {task.seed} ended ({how})")
        reply = json.loads(line)
        if "interrupted" in reply:  # it checkpointed the run and ended
            stop = reply["interrupted"]
            raise interrupt.Interrupted(stop["signal"], stop["message"], [stop["out"]])
        if "error" in reply:
            err = reply["error"]
            if err["type"] in USER_ERRORS:
                raise USER_ERRORS[err["type"]](err["message"])
            raise RuntimeError(f"{task.variant} seed {task.seed} failed in a worker:\n{err['traceback']}")
        return Outcome(task, reply["final"], reply["worker"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # a waiting worker exits at end of input
                self.proc.wait(timeout=2 if self.task is None else 0.01)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


def ready(workers: list[Worker]) -> list[Worker]:
    """The busy workers that have answered (or died), waiting for at least one."""
    readable, _, _ = select.select(workers, [], [])
    return readable


# -- worker side ------------------------------------------------------------------------------------
def affinity() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: no pinning, report every core
        return list(range(os.cpu_count() or 1))


def pin(cpus: list[int] | None) -> None:
    """Move every thread of this process (and so every thread it starts later) onto ``cpus``."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, PermissionError, OSError):
            pass  # a thread that ended meanwhile
    os.sched_setaffinity(0, cpus)


def worker_info() -> dict[str, Any]:
    """Who trained a run, with how many threads (recorded as ``worker.json`` in the run)."""
    cpus = affinity()
    return {"host": platform.node(), "pid": os.getpid(), "threads": len(cpus), "cpus": cpus,
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


def execute(task: Task, out: str, cpus: list[int] | None = None) -> Outcome:
    """Train one run into ``out``: a fresh directory, or one an interrupted attempt left, which it
    continues from its checkpoint. Runs in whichever process the backend chose."""
    from deepfit.run import train

    pin(cpus)
    run = train(task.config, out=out, resume=True)
    return Outcome(task, run.final, worker_info())


def _die_with_driver() -> None:
    """Linux: end this worker when the driver dies (even by SIGKILL) rather than finish an orphan run."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != os.environ.get("DEEPFIT_DRIVER_PID", str(os.getppid())):
        os._exit(1)  # the driver died before prctl took effect


_busy = False


def _exit_if_idle(signum: int) -> None:
    # A SIGTERM between runs has nothing to checkpoint: end now rather than wait for the next task.
    if not _busy:
        os._exit(128 + signum)


def serve(requests: IO[bytes], replies: IO[str]) -> None:
    global _busy
    for line in requests:
        msg = json.loads(line)
        _busy = True
        try:
            outcome = execute(Task(**msg["task"]), msg["out"], msg["cpus"])
            reply: dict[str, Any] = {"final": outcome.final, "worker": outcome.worker}
        except interrupt.Interrupted as e:  # its checkpoint is written: say so, and end
            replies.write(json.dumps({"interrupted": {"signal": e.signum, "message": str(e), "out": msg["out"]}})
                          + "\n")
            replies.flush()
            return
        except Exception as e:  # reported to the driver, which raises it there
            reply = {"error": {"type": type(e).__name__, "message": str(e), "traceback": traceback.format_exc()}}
        replies.write(json.dumps(reply, default=repr) + "\n")
        replies.flush()
        _busy = False


def main() -> None:
    from deepfit.train import compile_cache

    _die_with_driver()
    compile_cache.use()  # a worker is deepfit's own process: its runs share compiled programs on disk
    # Answers go to the original stdout; anything else printed (by us or a library) goes to stderr.
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when to stop (and forwards SIGTERM)
    interrupt.add_hook(_exit_if_idle)
    with interrupt.stop_politely((signal.SIGTERM,)):
        serve(sys.stdin.buffer, replies)
