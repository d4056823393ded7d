"""deepfit compare: backends give identical runs, resume after SIGKILL, concurrent drivers share the grid."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import deepfit
from deepfit.errors import ConfigError
from deepfit.experiments.runner import PARTIAL, is_finished, run_dir
from experiment_fixtures import write_experiment

ALL = {(v, s) for v in ("relu", "selu", "elu") for s in range(5)}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def per_run_metrics(exp_dir: Path) -> dict:
    """Everything a run computed (per-epoch metrics without wall time, test metrics, weight bytes)."""
    out = {}
    for v, s in ALL:
        d = run_dir(exp_dir, v, s)
        metrics = pd.read_csv(d / "metrics.csv")
        final = json.loads((d / "final.json").read_text())
        out[(v, s)] = (metrics.to_csv(index=False, float_format="%.17g"), final.get("test_accuracy"),
                       final.get("test_loss"), digest(d / "weights.safetensors"))
    return out


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """3 variants x 5 seeds x 2 epochs, in this process: the reference for the other backends."""
    root = tmp_path_factory.mktemp("local")
    exp = write_experiment(root / "spec")
    result = deepfit.compare(exp, out=root / "out", backend="local", report=False, log=lambda s: None)
    return exp, root / "out", result


@pytest.mark.slow
def test_local_tables_are_tidy_and_complete(local):
    exp, out, result = local
    assert set(result.trained) == ALL
    results = pd.read_csv(out / "results.csv")
    assert list(results.columns[:3]) == ["variant", "seed", "epoch"]
    assert len(results) == 15 * 2 and {"loss", "val_accuracy", "val_loss"} <= set(results.columns)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), results, check_dtype=False)
    finals = pd.read_csv(out / "finals.csv")
    assert len(finals) == 15 and set(zip(finals.variant, finals.seed)) == ALL
    # The finals table is each run's last epoch, read independently from its metrics.csv.
    for r in finals.itertuples():
        last = pd.read_csv(run_dir(out, r.variant, r.seed) / "metrics.csv").iloc[-1]
        assert r.val_accuracy == last["val_accuracy"] and r.epochs_run == 2
    assert not any((out / PARTIAL).iterdir())


@pytest.mark.slow
def test_rerun_skips_finished_runs_and_refuses_a_changed_config(local):
    exp, out, _ = local
    stamps = {k: run_dir(out, *k).stat().st_ino for k in ALL}
    again = deepfit.compare(exp, out=out, report=False, log=lambda s: None)
    assert again.trained == [] and len(again.finals) == 15
    assert stamps == {k: run_dir(out, *k).stat().st_ino for k in ALL}
    with pytest.raises(ConfigError, match="different config"):
        deepfit.compare(exp, out=out, overrides=["training.batch_size=25"], report=False, log=lambda s: None)


@pytest.mark.slow
def test_pool_gives_identical_runs_with_one_thread_each(local, tmp_path):
    exp, out, _ = local
    result = deepfit.compare(exp, out=tmp_path / "pool", backend="pool", jobs=2, report=False, log=lambda s: None)
    assert set(result.trained) == ALL
    assert per_run_metrics(tmp_path / "pool") == per_run_metrics(out)
    workers = [json.loads((run_dir(tmp_path / "pool", *k) / "worker.json").read_text()) for k in ALL]
    assert {w["threads"] for w in workers} == {1} and {w["backend"] for w in workers} == {"pool"}
    assert len({w["pid"] for w in workers}) == 2 and os.getpid() not in {w["pid"] for w in workers}


@pytest.mark.slow
def test_ray_gives_identical_runs(local, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'deepfit[ray]'")
    exp, out, _ = local
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = deepfit.compare(exp, out=tmp_path / "ray", backend="ray", jobs=2, report=False,
                                 log=lambda s: None)
        assert ray.is_initialized()  # compare leaves alone a Ray it did not start
    finally:
        ray.shutdown()
    assert set(result.trained) == ALL
    assert per_run_metrics(tmp_path / "ray") == per_run_metrics(out)
    workers = [json.loads((run_dir(tmp_path / "ray", *k) / "worker.json").read_text()) for k in ALL]
    assert {w["threads"] for w in workers} == {1} and {w["backend"] for w in workers} == {"ray"}


def cli(args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "deepfit", "compare", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finished(out: Path, keys) -> set:
    return {k for k in keys if is_finished(run_dir(out, *k))}


@pytest.mark.slow
def test_sigkill_midway_then_rerun_completes_only_the_missing_runs(tmp_path):
    exp = write_experiment(tmp_path / "spec")
    out = tmp_path / "out"
    keys = {(v, s) for v in ("relu", "selu", "elu") for s in range(3)}
    proc = cli([exp, "--out", out, "--seeds", 3, "--no-report"])
    deadline = time.time() + 240
    while len(finished(out, keys)) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = finished(out, keys)
    assert 3 <= len(before) < len(keys), "the kill must land midway"
    inodes = {k: run_dir(out, *k).stat().st_ino for k in before}
    digests = {k: digest(run_dir(out, *k) / "weights.safetensors") for k in before}
    result = deepfit.compare(exp, out=out, seeds=3, report=False, log=lambda s: None)
    assert set(result.trained) == keys - before
    assert finished(out, keys) == keys
    assert inodes == {k: run_dir(out, *k).stat().st_ino for k in before}
    assert digests == {k: digest(run_dir(out, *k) / "weights.safetensors") for k in before}
    assert not any((out / PARTIAL).iterdir()), "the interrupted attempt is cleaned up"
    assert len(pd.read_csv(out / "finals.csv")) == len(keys)


@pytest.mark.slow
def test_two_compares_at_once_never_train_the_same_run(tmp_path):
    exp = write_experiment(tmp_path / "spec")
    out = tmp_path / "out"
    keys = {(v, s) for v in ("relu", "selu", "elu") for s in range(2)}
    procs = [cli([exp, "--out", out, "--seeds", 2, "--no-report"]) for _ in range(2)]
    logs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    trained = [{(m[0], int(m[1])) for m in re.findall(r"\] (\w+) seed (\d+):", err)} for _, err in logs]
    assert trained[0] | trained[1] == keys
    assert not trained[0] & trained[1], f"both trained {trained[0] & trained[1]}"
    # Each run records the driver that trained it: always one of the two, matching its log.
    pids = {p.pid: t for p, t in zip(procs, trained)}
    for k in keys:
        worker = json.loads((run_dir(out, *k) / "worker.json").read_text())
        assert k in pids[worker["pid"]]
    assert len(pd.read_csv(out / "finals.csv")) == len(keys)
    assert not any((out / PARTIAL).iterdir())
