"""Faults in grouped training: SIGKILL of a group at random points resumes every member bit for bit; a
member that diverges is recorded as diverged while the others finish (killed and resumed on the way too)."""

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
from reliability_fixtures import tiny_config, write_idx_dir

ENV = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join(
    [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
GROUP = """
import json, sys
from deepfit.run import train_group
train_group(json.loads(sys.argv[1]), json.loads(sys.argv[2]), resume=True)
"""
COMPARED = ("weights.safetensors", "metrics.csv")


def group(cfgs: list[dict], outs: list[Path]) -> list[str]:
    return [sys.executable, "-c", GROUP, json.dumps(cfgs), json.dumps([str(o) for o in outs])]


def steps(outs: list[Path]) -> tuple[int, ...]:
    found = []
    for o in outs:
        try:
            found.append(json.loads((o / "checkpoints" / "latest.json").read_text())["step"])
        except (OSError, ValueError, KeyError):
            found.append(10**9 if (o / "manifest.json").exists() else -1)
    return tuple(found)


def kill_at_random(cfgs, outs, kills: int, seed: int) -> list:
    rng = random.Random(seed)
    log = []
    for _ in range(kills * 4):
        if all((o / "manifest.json").exists() for o in outs) or len(log) >= kills:
            break
        before = steps(outs)
        proc = subprocess.Popen(group(cfgs, outs), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if rng.random() < 0.25:
            time.sleep(rng.uniform(0.0, 3.0))  # start-up, restore and compilation included
        else:
            deadline = time.monotonic() + 120
            while proc.poll() is None and steps(outs) == before and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.2))  # often inside one member's checkpoint write, others' not yet
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            log.append((before, steps(outs)))
        else:
            _, err = proc.communicate()
            assert proc.returncode == 0, err.decode()
    done = subprocess.run(group(cfgs, outs), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return log


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_idx_dir(tmp_path_factory.mktemp("group-data") / "data", n_train=1400)


def configs(data, lrs=(0.05, 0.05, 0.05)) -> list[dict]:
    out = []
    for seed, lr in enumerate(lrs):
        cfg = tiny_config(data, epochs=8, steps_per_chunk=4, callbacks=[{"name": "backup_and_restore",
                                                                           "save_freq": 4}])
        cfg["seed"] = seed
        cfg["training"]["optimizer"]["learning_rate"] = lr
        out.append(cfg)
    return out


@pytest.mark.slow
def test_sigkill_of_a_group_at_random_points_resumes_every_member_bit_identical(data, tmp_path):
    cfgs = configs(data)
    refs = [tmp_path / f"ref-{i}" for i in range(3)]
    done = subprocess.run(group(cfgs, refs), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    outs = [tmp_path / f"killed-{i}" for i in range(3)]
    log = kill_at_random(cfgs, outs, kills=8, seed=15)
    print(f"\n{len(log)} kills; members' checkpoint steps before -> after: {log}")
    assert len(log) >= 6 and sum(after != before for before, after in log) >= 4, log
    for o, r in zip(outs, refs):
        for name in COMPARED:
            assert (o / name).read_bytes() == (r / name).read_bytes(), (o.name, name)
        assert json.loads((o / "final.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_a_member_that_diverges_is_recorded_so_while_the_others_finish_through_kills(data, tmp_path):
    cfgs = configs(data, lrs=(0.05, 1e30, 0.05))  # the middle member's first steps overflow
    refs = [tmp_path / f"ref-{i}" for i in range(3)]
    done = subprocess.run(group(cfgs, refs), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    outs = [tmp_path / f"killed-{i}" for i in range(3)]
    kill_at_random(cfgs, outs, kills=4, seed=16)
    finals = [json.loads((o / "final.json").read_text()) for o in outs]
    assert [f["status"] for f in finals] == ["completed", "diverged", "completed"]
    assert finals[1]["steps"] < finals[0]["steps"] == finals[2]["steps"] == 8 * 41
    assert not (outs[1] / "weights.safetensors").exists()  # NaN weights are not a model
    for i in (0, 2):
        for name in COMPARED:
            assert (outs[i] / name).read_bytes() == (refs[i] / name).read_bytes(), (i, name)
