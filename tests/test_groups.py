"""Seeds trained together: what a process keeps between runs, the pool's workers, the backend choice, the order."""

import json
import os
import signal

import numpy as np
import pytest

import deepfit
from deepfit.data import cache
from deepfit.data.prepare import _PREPARED, load_data, load_raw, prepare
from deepfit.experiments import backends, workers
from deepfit.experiments.backends import POOL_THRESHOLD, choose_backend
from deepfit.experiments.runner import is_finished, run_dir
from deepfit.experiments.task import UNIT_COST, estimated_cost
from deepfit.train import step

GROUP_TOLERANCE = 2e-3
SMALL = {"data.train_size": 512, "data.validation_size": 256, "training.epochs": 2, "training.progress": False}


def weights(run) -> list[np.ndarray]:
    return [np.asarray(v) for v in run.model.get_weights()]


def test_a_run_reusing_a_compiled_step_equals_the_same_run_compiled_afresh():
    cfg = deepfit.load_config("configs/max_norm.toml", SMALL)
    step._PROGRAMS.clear()
    fresh = deepfit.train(cfg.model_copy(update={"seed": 1}), save=False)
    assert len(step._PROGRAMS) == 1
    deepfit.train(cfg.model_copy(update={"seed": 0}), save=False)
    again = deepfit.train(cfg.model_copy(update={"seed": 1}), save=False)
    assert len(step._PROGRAMS) == 1  # three runs of one shape: one program
    for a, b in zip(weights(fresh), weights(again)):
        np.testing.assert_array_equal(a, b)
    assert fresh.history_rows[-1]["val_loss"] == again.history_rows[-1]["val_loss"]


def test_a_config_that_changes_a_constant_of_the_step_gets_its_own_program():
    cfg = deepfit.load_config("configs/max_norm.toml", SMALL)
    step._PROGRAMS.clear()
    a = deepfit.train(cfg, save=False)
    b = deepfit.train(deepfit.load_config(cfg, ["training.optimizer.beta_1=0.5"]), save=False)
    assert len(step._PROGRAMS) == 2 and a.trainer.steps is not b.trainer.steps
    assert a.history_rows[-1]["loss"] != b.history_rows[-1]["loss"]


def test_prepared_data_comes_back_read_only_and_equal_from_memory_and_from_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPFIT_CACHE", str(tmp_path))
    cfg = {"scaling": "standardize", "train_size": 1000, "validation_size": 500}
    _PREPARED.clear()
    first = load_data(cfg)
    assert load_data(cfg) is first  # the same process: the same arrays
    _PREPARED.clear()
    from_disk = load_data(cfg)  # another process would read this: memory-mapped files
    assert isinstance(from_disk.x_train, np.memmap)
    from deepfit.config import DataConfig

    reference = prepare(load_raw(DataConfig(**cfg)), DataConfig(**cfg))
    for part in cache.PARTS:
        np.testing.assert_array_equal(getattr(from_disk, part), getattr(reference, part))
        with pytest.raises(ValueError, match="read-only"):
            getattr(from_disk, part)[0] = 0
        with pytest.raises(ValueError, match="read-only"):
            getattr(first, part)[0] = 0
    assert from_disk.info == reference.info
    _PREPARED.clear()


def test_the_data_cache_keeps_only_the_most_recently_used(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPFIT_CACHE", str(tmp_path))
    monkeypatch.setattr(cache, "KEEP", 2)
    for i in range(4):
        cache.store(f"k{i}", {"x_train": np.full(3, i, np.float32)}, {"i": i})
        os.utime(tmp_path / "data" / f"k{i}", (i + 1, i + 1))
    cache.store("k4", {"x_train": np.zeros(1, np.float32)}, {})
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["k3", "k4"]
    arrays, info = cache.load("k3")
    assert info == {"i": 3} and arrays["x_train"].tolist() == [3, 3, 3] and arrays["y_test"] is None
    assert cache.load("missing") is None


def test_estimated_cost_is_epochs_times_images_times_dense_weights():
    cfg = {"data": {"train_size": 1000}, "training": {"epochs": 3},
           "model": {"input_shape": [28, 28], "layers": [
               {"type": "flatten"}, {"type": "dense", "units": 300}, {"type": "dense", "units": 100, "repeat": 2},
               {"type": "batch_norm"}, {"type": "dense", "units": 10}]}}
    per_image = 784 * 300 + 300 * 100 + 100 * 100 + 100 * 10 + UNIT_COST * (300 + 100 + 100 + 10)
    assert estimated_cost(cfg) == 3 * 1000 * per_image
    # Without train_size: the bundled 60,000 less the validation images.
    assert estimated_cost({**cfg, "data": {"validation_size": 5000}}) == 3 * 55_000 * per_image
    # The 100-layer network's epoch costs 11.75x the notebook's on this CPU (9.4 s vs 0.8 s): the model says 11.7x.
    w1 = {"model": {"layers": [{"type": "dense", "units": 300}, {"type": "dense", "units": 100},
                               {"type": "dense", "units": 10}]}}
    w2 = {"model": {"layers": [{"type": "dense", "units": 300}, {"type": "dense", "units": 100, "repeat": 99},
                               {"type": "dense", "units": 10}]}}
    assert estimated_cost(w2) / estimated_cost(w1) == pytest.approx(9.4 / 0.8, rel=0.02)


def test_auto_chooses_workers_for_enough_work_on_several_cores_and_says_why():
    big = [POOL_THRESHOLD / 2] * 3
    assert choose_backend(big, jobs=2) == ("pool", "CPU with 2 cores: one single-threaded worker per core")
    assert choose_backend([POOL_THRESHOLD / 10] * 3, jobs=2)[0] == "local"
    assert choose_backend(big, jobs=1) == ("local", "one core")
    assert choose_backend([POOL_THRESHOLD * 5], jobs=2) == ("local", "a single run")
    said = []
    chosen = backends.make_backend("auto", jobs=2, costs=big, log=said.append)
    assert isinstance(chosen, backends.PoolBackend) and chosen.jobs == 2 and "pool of 2" in said[0]


def test_auto_groups_the_seeds_in_one_program_on_an_accelerator(monkeypatch):
    import jax

    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert choose_backend([POOL_THRESHOLD] * 6, jobs=16) == (
        "group", "gpu device: the runs of one shape train together in one program")
    assert isinstance(backends.make_backend("auto", costs=[1.0]), backends.GroupBackend)


def experiment(epochs_by_variant: dict[str, int], seeds=(0,)) -> dict:
    return {"name": "order", "base": "configs/max_norm.toml", "seeds": list(seeds),
            "overrides": {"data.train_size": 256, "data.validation_size": 128},
            "variants": [{"name": v, "overrides": {"training.epochs": e}} for v, e in epochs_by_variant.items()]}


def test_the_longest_runs_go_first(tmp_path):
    lines: list[str] = []
    deepfit.compare(experiment({"one": 1, "three": 3, "two": 2}), out=tmp_path / "e", backend="local",
                    report=False, log=lines.append)
    trained = [line.split("] ")[1].split(" seed")[0] for line in lines if line.startswith("[")]
    assert trained == ["three", "two", "one"]


def test_runs_go_seed_by_seed_so_each_program_is_compiled_before_its_second_seed(tmp_path):
    lines: list[str] = []
    deepfit.compare(experiment({"one": 1, "three": 3}, seeds=(0, 1)), out=tmp_path / "e", backend="local", report=False,
                    log=lines.append)
    trained = [line.split("] ")[1].split(": ")[0] for line in lines if line.startswith("[")]
    assert trained == ["three seed 0", "one seed 0", "three seed 1", "one seed 1"]


@pytest.mark.slow
def test_a_pool_worker_that_dies_loses_only_its_run_and_the_rerun_redoes_it(tmp_path, monkeypatch):
    send = workers.Worker.send

    def send_then_die(self, task, out, cpus):
        send(self, task, out, cpus)
        if task.variant == "two":
            os.kill(self.proc.pid, signal.SIGKILL)

    monkeypatch.setattr(workers.Worker, "send", send_then_die)
    exp, lines = experiment({"one": 1, "two": 2, "three": 3}), []
    deepfit.compare(exp, out=tmp_path / "e", backend="pool", jobs=2, report=False, log=lines.append)
    finished = {v: is_finished(run_dir(tmp_path / "e", v, 0)) for v in ("one", "two", "three")}
    assert finished == {"one": True, "two": False, "three": True}
    assert any("ended (killed by signal 9)" in line and "run the same command again" in line for line in lines)
    monkeypatch.setattr(workers.Worker, "send", send)
    again = deepfit.compare(exp, out=tmp_path / "e", backend="pool", jobs=2, report=False, log=lambda s: None)
    assert again.trained == [("two", 0)] and len(again.finals) == 3
    record = json.loads((run_dir(tmp_path / "e", "two", 0) / "environment.json").read_text())
    assert record["execution"] == "pool: 2 worker(s) x 1 thread(s)"


@pytest.mark.slow
def test_a_users_error_in_a_worker_is_raised_as_itself(tmp_path):
    bad = experiment({"one": 1})
    bad["overrides"]["data.validation_size"] = 70_000  # more than the data has: a DataError in the worker
    with pytest.raises(deepfit.DataError, match="validation_size"):
        deepfit.compare(bad, out=tmp_path / "e", backend="pool", jobs=1, report=False, log=lambda s: None)
    assert not is_finished(run_dir(tmp_path / "e", "one", 0))


# -- groups: one compiled program steps every member ---------------------------------------------------
def group_configs(name: str, seeds=(0, 1, 2), **over):
    cfg = deepfit.load_config(f"configs/{name}.toml", {**SMALL, **over})
    return [cfg.model_copy(update={"seed": s}) for s in seeds]


@pytest.mark.parametrize("name", ["max_norm", "dropout", "batch_norm"])
def test_a_member_of_a_group_equals_the_same_run_alone_to_float_tolerance(name):
    from deepfit.run import train_group

    cfgs = group_configs(name)
    alone = [deepfit.train(c, save=False) for c in cfgs]
    grouped = train_group(cfgs, [None] * len(cfgs), save=False)
    again = train_group(cfgs, [None] * len(cfgs), save=False)
    for a, g, g2 in zip(alone, grouped, again):
        # vmap reorders some of XLA's sums: equal to float tolerance after 2 epochs, and run to run bit for bit.
        for wa, wg, wg2 in zip(weights(a), weights(g), weights(g2)):
            np.testing.assert_allclose(wg, wa, rtol=0, atol=GROUP_TOLERANCE * max(1.0, float(np.abs(wa).max())))
            np.testing.assert_array_equal(wg, wg2)
        for ra, rg in zip(a.history_rows, g.history_rows):
            assert rg["val_loss"] == pytest.approx(ra["val_loss"], rel=GROUP_TOLERANCE)
            assert abs(rg["val_accuracy"] - ra["val_accuracy"]) <= 2 / 256  # a prediction or two may flip


def test_a_member_that_diverges_stops_alone_and_the_others_finish():
    from deepfit.run import _begin, _end
    from deepfit.train.group import Group

    begun = [_begin(c, None, save=False) for c in group_configs("max_norm", **{"training.epochs": 3})]
    poisoned = begun[1].trainer
    first = next(iter(poisoned.state.params))
    poisoned.state = poisoned.state.replace(params={**poisoned.state.params, first: poisoned.state.params[first] * np.nan})
    Group([b.trainer for b in begun]).fit([b.fit_data for b in begun])
    runs = [_end(b, 0.0) for b in begun]
    assert [r.final["status"] for r in runs] == ["completed", "diverged", "completed"]
    assert runs[1].final["steps"] < runs[0].final["steps"] == runs[2].final["steps"] == 3 * 16
    alone = deepfit.train(group_configs("max_norm", seeds=(2,), **{"training.epochs": 3})[0], save=False)
    for wa, wg in zip(weights(alone), weights(runs[2])):
        np.testing.assert_allclose(wg, wa, rtol=0, atol=GROUP_TOLERANCE * max(1.0, float(np.abs(wa).max())))


class StopAfterFirstEpoch(deepfit.Callback):
    """Stands for a SIGKILL after the first member's first checkpoint (the others have none yet)."""

    order = 1001  # after the checkpoint is written

    def on_epoch_end(self, trainer, epoch, logs):
        raise KeyboardInterrupt


def test_a_group_killed_mid_way_resumes_bit_identical_to_a_group_never_stopped(tmp_path):
    from deepfit.run import load_run, train_group

    cfgs = group_configs("dropout", **{"training.epochs": 3})
    whole = train_group(cfgs, [tmp_path / "whole" / str(i) for i in range(3)])
    outs = [tmp_path / "killed" / str(i) for i in range(3)]
    with pytest.raises(KeyboardInterrupt):
        train_group(cfgs, outs, callbacks=[StopAfterFirstEpoch()])
    assert not any((o / "final.json").exists() for o in outs)
    resumed = train_group(cfgs, outs, resume=True)
    assert resumed[0].resume_note.startswith("resumed from") and "no checkpoint" in resumed[1].resume_note
    for w, r in zip(whole, resumed):
        assert (w.dir / "metrics.csv").read_text() == (r.dir / "metrics.csv").read_text()
        assert (w.dir / "weights.safetensors").read_bytes() == (r.dir / "weights.safetensors").read_bytes()
        load_run(r.dir)  # a complete run directory, its manifest checked


@pytest.mark.slow
def test_compare_with_the_group_backend_matches_the_local_one(tmp_path):
    exp = experiment({"one": 1, "two": 2}, seeds=(0, 1))
    local = deepfit.compare(exp, out=tmp_path / "local", backend="local", report=False, log=lambda s: None)
    lines: list[str] = []
    group = deepfit.compare(exp, out=tmp_path / "group", backend="group", report=False, log=lines.append)
    assert sorted(group.trained) == sorted(local.trained) and len(group.finals) == 4
    a, b = (r.finals.sort_values(["variant", "seed"]).reset_index(drop=True) for r in (local, group))
    np.testing.assert_allclose(b["val_loss"], a["val_loss"], rtol=1e-4)
    record = json.loads((run_dir(tmp_path / "group", "two", 1) / "environment.json").read_text())
    assert record["execution"] == "group: 2 run(s) in one program"
    worker = json.loads((run_dir(tmp_path / "group", "two", 1) / "worker.json").read_text())
    assert worker["backend"] == "group" and worker["group"] == 2


# -- issue 20: threads of a worker, groups on a data directory, sizing a model from Python ----------------------
def test_i20_23_a_worker_of_two_threads_starts_and_its_xla_uses_two_threads(tmp_path):
    """XLA aborts on a flag it does not know; its CPU pool has one thread per core the worker may use."""
    from reliability_fixtures import tiny_config, write_idx_dir

    from deepfit.experiments.task import Task

    cores = len(workers.affinity())
    config = deepfit.load_config(tiny_config(write_idx_dir(tmp_path / "data"), epochs=1)).to_dict()
    for threads in sorted({1, min(2, cores)}, reverse=True):
        env = backends.thread_env(threads)
        worker = workers.Worker(env)
        try:
            worker.send(Task("plain", 0, config), str(tmp_path / f"run-{threads}"), backends.slot_cpus(0, threads))
            outcome = worker.answer()
            pool = [t for t in os.listdir(f"/proc/{worker.proc.pid}/task")
                    if open(f"/proc/{worker.proc.pid}/task/{t}/comm").read().strip() == "tf_XLAEigen"]
        finally:
            worker.stop()
        assert outcome.final["status"] == "completed" and outcome.worker["threads"] == threads
        assert len(pool) == threads
        assert all(flag.startswith("--") for flag in outcome.worker["xla_flags"].split())


def test_i20_29_the_group_backend_trains_the_seeds_of_a_data_directory_together(tmp_path, monkeypatch):
    """deepfit.compare's arrays are a data directory: the seeds share one prepared copy, so one program."""
    import keras

    from deepfit.train import group

    sizes = []
    run = group.Group._run
    monkeypatch.setattr(group.Group, "_run", lambda self, members, requests: sizes.append(len(members)) or
                        run(self, members, requests))

    def build(seed):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(3, activation="softmax")])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    rng = np.random.default_rng(0)
    x, y = rng.random((300, 8, 8)).astype("float32"), rng.integers(0, 3, 300)
    deepfit.compare({"a": build}, data=(x, y), seeds=3, epochs=2, out=tmp_path / "e", backend="group",
                    report=False, log=lambda s: None)
    # Two epochs of two chunks (270 images: 8 full batches of 32, then the 14 left), each chunk one call for
    # the three seeds (before: 12 calls of one).
    assert sizes == [3, 3, 3, 3]
    again = load_data(deepfit.load_run(tmp_path / "e" / "runs" / "a" / "seed-0").config.data)
    assert again is load_data(deepfit.load_run(tmp_path / "e" / "runs" / "a" / "seed-2").config.data)
    # Another file in the directory is other data: prepared again.
    (tmp_path / "e" / "data" / "train-labels-idx1-ubyte").touch()
    assert load_data(deepfit.load_run(tmp_path / "e" / "runs" / "a" / "seed-0").config.data) is not again


def test_i20_30_a_model_recorded_from_python_is_sized_like_its_config(monkeypatch):
    """The 100-layer network as Keras's architecture costs what its config layers cost, so auto picks workers."""
    import keras

    from deepfit.keras_model import architecture_json

    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(300, activation="selu"),
                              *[keras.layers.Dense(100, activation="selu") for _ in range(99)],
                              keras.layers.Dense(10, activation="softmax")])
    layers = [{"type": "flatten"}, {"type": "dense", "units": 300}, {"type": "dense", "units": 100, "repeat": 99},
              {"type": "dense", "units": 10}]
    training, data = {"epochs": 5}, {"validation_size": 5000}
    from_python = estimated_cost({"data": data, "training": training,
                                  "model": {"architecture": architecture_json(model), "layers": []}})
    per_image = 784 * 300 + 300 * 100 + 98 * 100 * 100 + 100 * 10 + UNIT_COST * (300 + 99 * 100 + 10)
    assert from_python == estimated_cost({"data": data, "training": training, "model": {"layers": layers}}) \
        == 5 * 55_000 * per_image
    assert choose_backend([from_python] * 5, jobs=2)[0] == "pool"
    # A convolution: its kernel applied at every output position.
    conv = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3), keras.layers.Flatten(),
                             keras.layers.Dense(10)])
    cost = estimated_cost({"data": data, "training": {"epochs": 1}, "model": {"architecture": architecture_json(conv)}})
    assert cost == 55_000 * (26 * 26 * (3 * 3 * 8 + UNIT_COST * 8) + 26 * 26 * 8 * 10 + UNIT_COST * 10)
