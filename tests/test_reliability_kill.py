"""SIGKILL at random moments, then ``deepfit train --resume``: nothing is lost, the result is exact.

A run is killed at ≥ 10 random points (during start-up, training, and the
checkpoint writes that happen every 3 steps), resumed each time, and must end
with ``weights.safetensors`` and ``metrics.csv`` byte-identical to a run that
was never interrupted (the epoch timings live in ``timings.csv``, outside the
comparison, since they differ from run to run).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_fixtures import tiny_config, toml_text, write_idx_dir

KILLS = 12


def command(cfg: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "deepfit", "train", str(cfg), "--out", str(out), "--resume", "--no-progress"]


def checkpoint_step(out: Path) -> int:
    try:
        return json.loads((out / "checkpoints" / "latest.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return -1


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_is_byte_identical(tmp_path):
    data = write_idx_dir(tmp_path / "data", n_train=1400)
    cfg = tiny_config(data, epochs=10, callbacks=[{"name": "backup_and_restore", "save_freq": 3}])
    cfg["model"]["layers"][1]["units"] = 64
    cfg_path = tmp_path / "run.toml"
    cfg_path.write_text(toml_text(cfg))
    env = {**os.environ, "KERAS_BACKEND": "jax"}

    ref = tmp_path / "reference"
    done = subprocess.run(command(cfg_path, ref), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "killed"
    rng = random.Random(20240611)
    kills, log = 0, []
    for attempt in range(60):
        if (out / "manifest.json").exists():
            break  # finished: more kills would only hit start-ups
        proc = subprocess.Popen(command(cfg_path, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        before = checkpoint_step(out)
        if rng.random() < 0.25:
            time.sleep(rng.uniform(0.0, 3.0))  # anywhere, start-up and restore included
        else:
            # Wait until this attempt has trained past its restored step, then strike at random:
            # with a checkpoint every 3 steps, many kills land inside a checkpoint write.
            deadline = time.monotonic() + 120
            while proc.poll() is None and checkpoint_step(out) <= before and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            log.append((before, checkpoint_step(out)))
        else:
            stdout, stderr = proc.communicate()
            assert proc.returncode == 0, stderr.decode()
        if kills >= KILLS:
            break
    print(f"\n{kills} kills; checkpoint step before → after each killed attempt: {log}")
    assert kills >= KILLS, f"the run finished after {kills} kills; make it longer"
    assert sum(after > before for before, after in log) >= KILLS // 2, log  # most kills came after progress
    final = subprocess.run(command(cfg_path, out), env=env, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr

    for name in ("weights.safetensors", "metrics.csv"):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    assert json.loads((out / "final.json").read_text())["status"] == "completed"
    assert not (out / "checkpoints").exists()
    assert not list(out.glob(".*"))  # no half-written file or half-deleted backup left behind
    again = subprocess.run(command(cfg_path, out), env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "already finished (completed); nothing to do" in again.stderr
