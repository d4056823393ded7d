"""SIGTERM to ``deepfit compare``: every run in flight checkpoints (in this process, in a group, in pool
workers), the command exits 143 saying to run it again, and the rerun continues those runs where they
stopped: each run then equals, byte for byte, the same run of an undisturbed sweep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_fixtures import tiny_config, toml_text, write_idx_dir

import deepfit
from deepfit.experiments.runner import PARTIAL, is_finished, run_dir

ENV = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join(
    [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
KEYS = [(v, s) for v in ("relu", "tanh") for s in (0, 1, 2)]
EXPERIMENT = """\
name = "signals"
base = "base.toml"
seeds = [0, 1, 2]
reference = "relu"
[[variants]]
name = "relu"
[[variants]]
name = "tanh"
overrides = { "model.layers.1.activation" = "tanh" }
"""


def write_sweep(directory: Path, epochs: int = 8) -> Path:
    base = tiny_config(write_idx_dir(directory / "data", n_train=1400), epochs=epochs, steps_per_chunk=8)
    (directory / "base.toml").write_text(toml_text(base))
    (directory / "experiment.toml").write_text(EXPERIMENT)
    return directory / "experiment.toml"


def run_bytes(out: Path) -> dict:
    return {k: tuple((run_dir(out, *k) / n).read_bytes() for n in ("weights.safetensors", "metrics.csv"))
            for k in KEYS}


def checkpointed(out: Path) -> dict[Path, int]:
    """Attempts in .partial with a checkpoint, and their inodes (a continued attempt keeps its folder)."""
    return {p: p.stat().st_ino for p in (out / PARTIAL).glob("*") if (p / "checkpoints" / "latest.json").is_file()}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return write_sweep(tmp_path_factory.mktemp("sweep"))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "group", "pool"])
def test_sigterm_to_compare_checkpoints_every_run_in_flight_and_the_rerun_continues_them(sweep, tmp_path,
                                                                                          backend):
    jobs = ["--jobs", "2"] if backend == "pool" else []
    reference = deepfit.compare(sweep, out=tmp_path / "reference", backend=backend, jobs=2 if jobs else None,
                                report=False, log=lambda s: None)
    assert set(reference.trained) == set(KEYS)

    out = tmp_path / "stopped"
    argv = ["deepfit", "compare", str(sweep), "--out", str(out), "--backend", backend, *jobs, "--no-report"]
    proc = subprocess.Popen([sys.executable, "-m", *argv], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 240
    while proc.poll() is None and not checkpointed(out) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("deepfit: stopped by SIGTERM: ") and " left; the runs in flight were checkpointed in " \
        f"{out / PARTIAL}. To continue, run the same command again: " in last, last
    stopped = checkpointed(out)
    assert stopped, "a run was in flight"
    finished_before = {k for k in KEYS if is_finished(run_dir(out, *k))}
    assert len(finished_before) < len(KEYS)

    again = subprocess.run([sys.executable, "-m", *argv], env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert run_bytes(out) == run_bytes(tmp_path / "reference")
    inodes = {run_dir(out, *k).stat().st_ino for k in KEYS}
    assert set(stopped.values()) <= inodes, "each stopped attempt was continued in place, not redone"
    assert not any((out / PARTIAL).iterdir())


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_pool_worker_stopped_alone_loses_only_its_run_and_the_rerun_finishes_it_once(sweep, tmp_path, signum):
    reference = deepfit.compare(sweep, out=tmp_path / "reference", backend="local", report=False, log=lambda s: None)
    assert set(reference.trained) == set(KEYS)
    out = tmp_path / "stopped"
    argv = ["deepfit", "compare", str(sweep), "--out", str(out), "--backend", "pool", "--jobs", "2", "--no-report"]
    proc = subprocess.Popen([sys.executable, "-m", *argv], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 240
    while proc.poll() is None and not checkpointed(out) and time.monotonic() < deadline:
        time.sleep(0.01)
    victim = children(proc.pid)[0]
    os.kill(victim, signum)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 1 and "Traceback" not in err, err  # 1: a run is missing, the rest finished
    assert "run the same command again to redo it" in err
    missing = [k for k in KEYS if not is_finished(run_dir(out, *k))]
    assert len(missing) == 1, missing
    again = subprocess.run([sys.executable, "-m", *argv], env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("] ") == 1, again.stderr  # one run trained now: no run twice
    assert run_bytes(out) == run_bytes(tmp_path / "reference")
    assert not any((out / PARTIAL).iterdir())
