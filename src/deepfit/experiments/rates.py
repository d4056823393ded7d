"""The chapter tables' learning-rate rule for several catalog entries at once.

The rule (:func:`deepfit.experiments.chapter_tables.choose_rate`) trains before any worker of the
backend starts. One entry after another it leaves every core but one idle (the demo's two optimizers:
about 17 s of a 150 s budget; Table 11-2's eight in ``--full``: minutes). With two or more entries to
tune and two or more cores, each entry's rule runs in a process of its own, single-threaded as the
pool's workers are, side by side; its choice and every score are written to ``OUT/<id>/rate.json`` as
before, so a rerun resumes and reads the same rates whichever way they were chosen.

A child gets the mode as data (JSON), not by name: a mode changed in-process (a test's smaller one)
reaches it unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable


def choose_rates(entries: list, mode, out: Path, log: Callable[[str], None], jobs: int | None = None) -> dict:
    """``{entry id: rate}`` for the entries of ``entries`` that take the rule (``lr_rule``), in catalog order;
    ``jobs`` bounds the processes (default: the cores this process may use)."""
    from deepfit.experiments.reproduce import choose_rate_for
    from deepfit.experiments.workers import affinity

    todo = [e for e in entries if e.lr_rule and not _chosen(e, out)]
    slots = min(len(todo), jobs or len(affinity()))
    done = set()
    if slots >= 2:
        _in_processes(todo, mode, out, log, slots)  # they said their choices as they made them
        done = {e.id for e in todo}
    # Every entry's rate from its record (on one core, chosen here first): the record is the one source.
    return {e.id: choose_rate_for(e, mode, out, (lambda line: None) if e.id in done else
                                  (lambda line, e=e: log(f"  {e.id} {line.strip()}")))
            for e in entries if e.lr_rule}


def _chosen(e, out: Path) -> bool:
    """Whether ``OUT/<id>/rate.json`` already holds this entry's finished choice (a rerun trains nothing)."""
    record = out / e.id / "rate.json"
    try:
        return "rate" in json.loads(record.read_text())
    except (OSError, ValueError):
        return False


def _in_processes(todo: list, mode, out: Path, log: Callable[[str], None], slots: int) -> None:
    from deepfit.experiments.backends import thread_env

    env = {**os.environ, **thread_env(1)}
    spec = json.dumps(dataclasses.asdict(mode))
    pending = list(todo)
    running: list[tuple[object, subprocess.Popen, threading.Thread, list[str]]] = []
    try:
        while pending or running:
            while pending and len(running) < slots:
                e = pending.pop(0)
                child = subprocess.Popen([sys.executable, "-m", "deepfit.experiments.rates", e.id, str(out)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True, env=env)
                child.stdin.write(spec)
                child.stdin.close()
                errors: list[str] = []
                reader = threading.Thread(target=_relay, args=(child, e.id, log, errors), daemon=True)
                reader.start()
                running.append((e, child, reader, errors))
            e, child, reader, errors = running.pop(0)
            child.wait()
            reader.join()
            if child.returncode != 0:
                raise RuntimeError(f"the learning-rate rule for {e.id} failed (exit {child.returncode}):\n"
                                   + "".join(errors[-20:]))
    finally:
        for _, child, _, _ in running:
            child.kill()
            child.wait()


def _relay(child: subprocess.Popen, name: str, log: Callable[[str], None], errors: list[str]) -> None:
    """The child's progress lines to ``log`` as they come; its stderr kept for an error message."""
    stderr = threading.Thread(target=lambda: errors.extend(child.stderr), daemon=True)
    stderr.start()
    for line in child.stdout:
        log(f"  {name} {line.strip()}")
    stderr.join()


def main(argv: list[str] | None = None) -> int:
    from deepfit.experiments.catalog import entry
    from deepfit.experiments.reproduce import Mode, choose_rate_for
    from deepfit.train import compile_cache

    name, out = argv or sys.argv[1:]
    compile_cache.use()  # deepfit's own process, as a pool worker: the compiled programs are shared on disk
    compile_cache.enable()
    fields = json.loads(sys.stdin.read())
    mode = Mode(**{k: tuple(v) if isinstance(v, list) and k in ("rate_grid", "ids", "claims") else v
                   for k, v in fields.items()})
    choose_rate_for(entry(name), mode, Path(out), lambda line: print(line.strip(), flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
