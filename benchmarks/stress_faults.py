"""Reliability under load: a sweep of tiny runs trained through random SIGKILL, SIGTERM and a full disk,
every finished run then compared byte for byte with the same sweep trained undisturbed.

Not part of the test suite (it takes a few minutes). What it does:

1. Writes a tiny experiment (8×8 synthetic images, 3 classes; 4 variants × 6 seeds = 24 runs by
   default, each checkpointing every 8 steps) and trains it once, undisturbed (``--backend local``).
2. Trains it again into another directory, on a 4 MiB tmpfs when this machine lets it mount one (else
   an ordinary folder, and no disk-full faults), with ``deepfit compare`` launched over and over on
   alternating backends (local, pool of 2 workers) until it exits 0. Each launch meets a fault, the
   kinds in turn (their order drawn at random), each at a random moment once the launch has made
   progress: SIGKILL of the driver, SIGTERM of the driver, SIGKILL of a pool worker (then SIGTERM of
   its driver), or a filler file that leaves the tmpfs a few KiB, removed once the command has
   stopped on the full disk.
3. Compares ``weights.safetensors`` and ``metrics.csv`` of every run with the undisturbed sweep's.

    .venv/bin/python benchmarks/stress_faults.py [--variants 4 --seeds 6 --faults 20]
                                                 [--json benchmarks/results/stress_faults.json]

The exit codes are checked as they come: 143 after SIGTERM, 74 after a full disk, 0 when it finished;
a traceback anywhere is a failure. The script exits 1 on any mismatch or unexpected outcome.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"),
                                                                             os.environ.get("PYTHONPATH", "")])}
COMPARED = ("weights.safetensors", "metrics.csv")
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
ACTIVATIONS = ("relu", "tanh", "elu", "selu", "sigmoid", "gelu")


def write_data(d: Path, n_train: int = 1400, n_test: int = 100) -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1, (3, 8, 8))
    y = rng.integers(0, 3, n_train + n_test)
    x = np.clip((centers[y] + rng.normal(0, 0.7, (len(y), 8, 8))) * 40 + 120, 0, 255).astype(np.uint8)
    d.mkdir(parents=True, exist_ok=True)
    for name, arr in zip(FILES, (x[:n_train], y[:n_train].astype(np.uint8), x[n_train:], y[n_train:].astype(np.uint8))):
        raw = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
        (d / f"{name}.gz").write_bytes(gzip.compress(raw, mtime=0))


def write_experiment(d: Path, variants: int, seeds: int, epochs: int) -> Path:
    write_data(d / "data")
    (d / "base.toml").write_text(f"""\
seed = 0
[data]
source = "directory"
path = "{d / 'data'}"
validation_size = 100
scaling = "divide255"
[model]
input_shape = [8, 8]
layers = [
  {{ type = "flatten" }},
  {{ type = "dense", units = 32, activation = "relu", kernel_initializer = "he_normal" }},
  {{ type = "dropout", rate = 0.2 }},
  {{ type = "dense", units = 3, activation = "softmax" }},
]
[training]
epochs = {epochs}
batch_size = 32
steps_per_chunk = 8
optimizer = {{ name = "sgd", learning_rate = 0.05, momentum = 0.9 }}
callbacks = [{{ name = "backup_and_restore", save_freq = 8 }}]
""")
    names = ACTIVATIONS[:variants]
    text = [f'name = "stress"\nbase = "base.toml"\nseeds = {list(range(seeds))}\nreference = "{names[0]}"\n']
    for name in names:
        text.append(f'[[variants]]\nname = "{name}"\noverrides = {{ "model.layers.1.activation" = "{name}" }}\n')
    (d / "experiment.toml").write_text("\n".join(text))
    return d / "experiment.toml"


def compare_cmd(exp: Path, out: Path, backend: str) -> list[str]:
    jobs = ["--jobs", "2"] if backend == "pool" else []
    return [sys.executable, "-m", "deepfit", "compare", str(exp), "--out", str(out), "--backend", backend, *jobs,
            "--no-report"]


def finished_runs(out: Path) -> list[Path]:
    return sorted(p.parent for p in (out / "runs").glob("*/seed-*/manifest.json"))


def progress(out: Path) -> int:
    """A number that grows as the sweep trains: finished runs and checkpoints written."""
    return len(finished_runs(out)) * 10**6 + sum(
        json.loads(p.read_text()).get("step", 0) for p in (out / ".partial").glob("*/checkpoints/latest.json")
        if _readable(p))


def _readable(p: Path) -> bool:
    try:
        json.loads(p.read_text())
        return True
    except (OSError, ValueError):
        return False


def workers_of(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(c) for c in children]


def try_tmpfs(size: str) -> Path | None:
    mount = Path(tempfile.mkdtemp(prefix="deepfit-stress-fs-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        mount.rmdir()
        return None
    return mount


def fill(mount: Path, leave: int) -> Path:
    filler = mount / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                st = os.statvfs(mount)
                free = st.f_bavail * st.f_frsize
                if free <= leave:
                    break
                f.write(b"\0" * min(1 << 16, free - leave))
                f.flush()
        except OSError:
            pass
    return filler


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--faults", type=int, default=20, help="faults to inject before letting the sweep finish")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="deepfit-stress-"))
    mount = try_tmpfs("4m")
    try:
        exp = write_experiment(work / "spec", args.variants, args.seeds, args.epochs)
        ref = work / "reference"
        done = subprocess.run(compare_cmd(exp, ref, "local"), env=ENV, capture_output=True, text=True)
        if done.returncode:
            print(done.stderr, file=sys.stderr)
            return 1
        reference_seconds = time.time() - started
        out = (mount or work) / "stressed"
        injected: collections.Counter = collections.Counter()
        outcomes: collections.Counter = collections.Counter()
        problems: list[str] = []
        launches = 0
        kinds = ["sigkill", "sigterm", "worker_sigkill"] + (["disk_full"] if mount else [])
        # Each kind in turn (in a shuffled order), so every kind is met whatever the draw.
        order = rng.sample(kinds, len(kinds))
        turn = 0
        while True:
            launches += 1
            backend = ("local", "pool")[launches % 2]
            fault = order[turn % len(order)] if sum(injected.values()) < args.faults else None
            turn += fault is not None
            if fault == "worker_sigkill" and backend != "pool":
                backend = "pool"
            filler = fill(mount, rng.choice([8, 32, 64]) * 1024) if fault == "disk_full" else None
            before = progress(out) if out.exists() else -1
            proc = subprocess.Popen(compare_cmd(exp, out, backend), env=ENV, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            if fault in ("sigkill", "sigterm", "worker_sigkill"):
                # Strike once this launch has made progress, at a random moment after.
                deadline = time.monotonic() + 120
                while proc.poll() is None and (progress(out) if out.exists() else -1) <= before \
                        and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.0, 0.5))
                if proc.poll() is None:
                    if fault == "worker_sigkill":
                        victims = workers_of(proc.pid)
                        if victims:
                            os.kill(rng.choice(victims), signal.SIGKILL)
                            # The driver goes on without that run; stop it too (a second fault, counted
                            # as such) so that the sweep meets many faults before it is done.
                            time.sleep(rng.uniform(0.2, 0.7))
                            if proc.poll() is None:
                                proc.send_signal(signal.SIGTERM)
                                injected["sigterm"] += 1
                        else:
                            fault = None
                    else:
                        proc.send_signal(signal.SIGKILL if fault == "sigkill" else signal.SIGTERM)
                else:
                    fault = None  # it finished first
            _, err = proc.communicate(timeout=900)
            if filler is not None:
                filler.unlink()
            code = proc.returncode
            if fault == "disk_full" and code == 0:
                fault = "disk_full_unfelt"  # enough space was left for what remained: not counted as a fault
            if fault and fault != "disk_full_unfelt":
                injected[fault] += 1
            outcomes[f"{fault or 'none'}: exit {code}"] += 1
            expected = {"sigkill": {-9, 0}, "sigterm": {143, 0}, "worker_sigkill": {143, 1, 0},
                        "disk_full": {74}, "disk_full_unfelt": {0}, None: {0}}[fault]
            if code not in expected or "Traceback" in err:
                problems.append(f"launch {launches} ({backend}, {fault}): exit {code}: {err.strip()[-2000:]}")
            print(f"launch {launches:2d} {backend:5s} {fault or 'no fault':14s} exit {code:4d}  "
                  f"{len(finished_runs(out))} run(s) finished", flush=True)
            complete = len(finished_runs(out)) == len(finished_runs(ref))
            if code == 0 and fault in (None, "disk_full_unfelt") and complete:
                break
            if launches > args.faults * 4 + 10:
                problems.append("the sweep never finished")
                break
        mismatches = []
        ref_runs = finished_runs(ref)
        for r in ref_runs:
            mine = out / r.relative_to(ref)
            for name in COMPARED:
                if not (mine / name).is_file() or (mine / name).read_bytes() != (r / name).read_bytes():
                    mismatches.append(f"{mine.relative_to(out)}/{name}")
        leftovers = sorted(str(p.relative_to(out)) for p in (out / ".partial").glob("*")) if out.exists() else []
        result = {
            "runs": args.variants * args.seeds,
            "runs_compared": len(ref_runs),
            "files_compared": len(ref_runs) * len(COMPARED),
            "mismatches": len(mismatches),
            "mismatched": mismatches,
            "faults_injected": sum(injected.values()),
            "faults": dict(injected),
            "launches": launches,
            "outcomes": dict(outcomes),
            "partial_leftovers": leftovers,
            "problems": problems,
            "real_full_disk": mount is not None,
            "reference_seconds": round(reference_seconds, 1),
            "seconds": round(time.time() - started, 1),
            "epochs": args.epochs,
            "seed": args.seed,
            "cpu_count": os.cpu_count(),
        }
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        ok = not mismatches and not problems and not leftovers and len(ref_runs) == result["runs"]
        return 0 if ok else 1
    finally:
        if mount is not None:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
            shutil.rmtree(mount, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
