"""What deepfit writes, and where: callbacks' files inside each run, the user's umask, the full-disk
recovery of a compare, the prepared-data cache checked on open, JAX's compilation cache left to its owner."""

from __future__ import annotations

import errno
import inspect
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from reliability_fixtures import tiny_arrays, tiny_config, write_idx_dir

import deepfit
from deepfit.data import cache
from deepfit.data.prepare import _PREPARED, load_data, load_raw, prepare
from deepfit.errors import ConfigError, StorageError
from deepfit.io import read_json, verify_manifest


def experiment(data_dir: Path, seeds=(0, 1), **training) -> dict:
    return {"name": "files", "base": tiny_config(data_dir, epochs=2, **training), "seeds": list(seeds),
            "variants": [{"name": "plain", "overrides": {}}]}


# -- item 16: a callback's relative path lands in its own run's directory -----------------------------------------
def test_i20_16_callback_paths_resolve_inside_each_run_and_the_manifest_lists_them(tmp_path, monkeypatch):
    data = write_idx_dir(tmp_path / "data")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    callbacks = [{"name": "ModelCheckpoint", "filepath": "best.keras", "monitor": "val_loss", "save_best_only": True},
                 {"name": "CSVLogger", "filename": "log.csv"}]
    deepfit.experiments.runner.compare(experiment(data, callbacks=callbacks), tmp_path / "e", backend="local",
                                       log=lambda s: None)
    assert list(work.iterdir()) == []  # nothing in the working directory
    logs = {}
    for seed in (0, 1):
        run = tmp_path / "e" / "runs" / "plain" / f"seed-{seed}"
        manifest = verify_manifest(run)
        assert {"best.keras", "log.csv"} <= set(manifest)
        logs[seed] = (run / "log.csv").read_text()
        assert len(logs[seed].splitlines()) == 3  # a header and the run's two epochs
        saved = keras.saving.load_model(run / "best.keras")
        assert [w.shape for w in saved.weights] == [w.shape for w in deepfit.load_run(run).model.weights]
    assert logs[0] != logs[1]  # each run its own log, not the last writer's
    # The config keeps the path as written: a rerun resolves it inside its own directory again.
    assert "filepath = \"best.keras\"" in (tmp_path / "e" / "runs" / "plain" / "seed-0" / "config.toml").read_text()


def test_i20_16_an_absolute_path_shared_by_the_runs_of_a_compare_is_refused(tmp_path):
    data = write_idx_dir(tmp_path / "data")
    target = tmp_path / "shared" / "log.csv"
    with pytest.raises(ConfigError, match=r"2 runs would write the same .*log\.csv.*relative path"):
        deepfit.experiments.runner.compare(experiment(data, callbacks=[{"name": "CSVLogger", "filename": str(target)}]),
                                           tmp_path / "e", backend="local", log=lambda s: None)
    assert not (tmp_path / "e").exists() and not target.parent.exists()
    # One run alone may write where it is told.
    target.parent.mkdir()
    run = deepfit.train(tiny_config(data, epochs=1, callbacks=[{"name": "CSVLogger", "filename": str(target)}]),
                        out=tmp_path / "one")
    assert target.is_file() and "log.csv" not in read_json(run.dir / "manifest.json")


def test_the_path_arguments_known_are_every_callbacks_path_arguments():
    """The table of arguments that name a file or folder covers Keras's callbacks and deepfit's."""
    from deepfit.train.callbacks import CALLBACKS
    from deepfit.train.callbacks.registry import PATH_ARGUMENTS

    classes = [getattr(keras.callbacks, n) for n in dir(keras.callbacks) if isinstance(getattr(keras.callbacks, n), type)]
    classes += [entry.obj for entry in CALLBACKS.entries()]
    named = {(cls.__name__, p) for cls in classes for p in inspect.signature(cls.__init__).parameters
             if any(w in p for w in ("path", "file", "dir"))}
    # RemoteMonitor's path is the URL's path on a server; TensorBoard's profile_batch is a batch number.
    named -= {("RemoteMonitor", "path"), ("TensorBoard", "profile_batch")}
    assert {p for _, p in named} == set(PATH_ARGUMENTS)


# -- item 17: the user's umask -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_i20_17_files_and_folders_get_the_users_umask(tmp_path, monkeypatch, mask):
    monkeypatch.setenv("DEEPFIT_CACHE", str(tmp_path / "cache"))
    (x, y), test = tiny_arrays()
    old = os.umask(mask)
    try:
        deepfit.train(tiny_config(write_idx_dir(tmp_path / "data"), epochs=1), out=tmp_path / "run")
        deepfit.compare({"one": {"training": {"epochs": 1}}}, data=((x, y), test), seeds=1, out=tmp_path / "exp",
                        backend="local", log=lambda s: None, base={"model": tiny_config()["model"]})
        cache.store("entry", {"x_train": np.zeros((2, 2), np.float32)}, {})
    finally:
        os.umask(old)
    checked = 0
    for root in (tmp_path / "run", tmp_path / "exp", tmp_path / "cache" / "data"):
        for p in [root, *root.rglob("*")]:
            want = (0o777 if p.is_dir() else 0o666) & ~mask
            assert stat.S_IMODE(p.stat().st_mode) == want, (p, oct(p.stat().st_mode))
            checked += 1
    assert checked > 40


# -- item 18: a full disk in a compare, and the rerun that continues it -------------------------------------------
def test_i20_18_a_full_disk_in_compare_says_rerun_it_and_the_rerun_continues(tmp_path, monkeypatch):
    data = write_idx_dir(tmp_path / "data")
    exp = experiment(data, seeds=[0])
    reference = deepfit.experiments.runner.compare(exp, tmp_path / "ref", backend="local", log=lambda s: None)
    real = shutil.copyfile

    def full(src, dst, **kw):  # the completed run's final state is copied when the disk fills up
        if ".final_state.tmp" in str(dst):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, **kw)

    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(StorageError) as info:
        deepfit.experiments.runner.compare(exp, tmp_path / "e", backend="local", log=lambda s: None)
    message = str(info.value)
    assert "No space left on device (ENOSPC)" in message and "--resume" not in message
    assert message.endswith("Free some space, then run the same command again to continue")
    monkeypatch.setattr(shutil, "copyfile", real)
    [partial] = (tmp_path / "e" / ".partial").iterdir()
    assert not (partial / ".final_state.tmp").exists()  # the half copy went with the failure
    # A process killed in the middle of that copy leaves the folder behind: the rerun clears it.
    (partial / ".final_state.tmp" / "ckpt-0000000019").mkdir(parents=True)
    (partial / ".final_state.tmp" / "latest.json").write_text("{}")
    deepfit.experiments.runner.compare(exp, tmp_path / "e", backend="local", log=lambda s: None)
    done = tmp_path / "e" / "runs" / "plain" / "seed-0"
    verify_manifest(done)
    assert (done / "weights.safetensors").read_bytes() == \
        (reference.dir / "runs" / "plain" / "seed-0" / "weights.safetensors").read_bytes()


# -- item 19: the prepared-data cache ----------------------------------------------------------------------------
SMALL = {"scaling": "standardize", "train_size": 1000, "validation_size": 500}


@pytest.fixture
def stored(tmp_path, monkeypatch):
    """The bundled data prepared once into an empty cache; the entry's folder and the reference arrays."""
    from deepfit.config import DataConfig

    monkeypatch.setenv("DEEPFIT_CACHE", str(tmp_path))
    _PREPARED.clear()
    load_data(SMALL)
    _PREPARED.clear()
    [entry] = (tmp_path / "data").iterdir()
    yield entry, prepare(load_raw(DataConfig(**SMALL)), DataConfig(**SMALL))
    _PREPARED.clear()


def same(dataset, reference) -> bool:
    return all(np.array_equal(getattr(dataset, p), getattr(reference, p)) for p in cache.PARTS)


def from_disk_only(monkeypatch):
    """Preparing now fails: what load_data returns comes from the cache."""
    def refuse(*a, **k):
        raise AssertionError("prepared again")
    monkeypatch.setattr(sys.modules["deepfit.data.prepare"], "prepare", refuse)


@pytest.mark.parametrize("damage", ["missing x_valid", "truncated x_train", "a changed byte in x_test"])
def test_i20_19_a_bad_cache_entry_is_prepared_again_and_replaced(stored, monkeypatch, damage):
    entry, reference = stored
    if damage == "missing x_valid":
        (entry / "x_valid.npy").unlink()
    elif damage == "truncated x_train":
        with open(entry / "x_train.npy", "r+b") as f:
            f.truncate((entry / "x_train.npy").stat().st_size // 2)
    else:
        raw = bytearray((entry / "x_test.npy").read_bytes())
        raw[-5] ^= 0xFF
        (entry / "x_test.npy").write_bytes(bytes(raw))
    assert cache.load(entry.name) is None
    assert same(load_data(SMALL), reference)  # prepared again, right
    _PREPARED.clear()
    from_disk_only(monkeypatch)
    again = load_data(SMALL)  # the next process reads the replaced entry
    assert isinstance(again.x_train, np.memmap) and same(again, reference)
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]  # no temporary or discarded folder left


def test_i20_19_a_cache_entry_is_keyed_by_the_code_that_made_it(tmp_path, monkeypatch):
    """No hand-bumped version: another version of the data code (or of NumPy) names another entry."""
    def key():
        getattr(getattr(cache, "code_digest", None), "cache_clear", lambda: None)()
        return cache.key("source", "{}")

    copy = tmp_path / "data"
    shutil.copytree(Path(cache.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__", "fashion_mnist"))
    monkeypatch.setattr(cache, "__file__", str(copy / "cache.py"))
    try:
        first = key()
        assert key() == first
        with open(copy / "prepare.py", "a") as f:
            f.write("\n# another version of the preparation\n")
        second = key()
        monkeypatch.setattr(np, "__version__", "0.0")
        assert len({first, second, key()}) == 3
    finally:
        monkeypatch.undo()
        key()


# -- the compilation cache: JAX's settings are the user's in the user's process ----------------------------------
SCRIPT = r"""
import os, sys
import jax
import deepfit
from deepfit.train import compile_cache
sys.path.insert(0, sys.argv[1])
from reliability_fixtures import tiny_config, write_idx_dir
from pathlib import Path

cfg = tiny_config(write_idx_dir(Path(sys.argv[2])), epochs=1)
settings = lambda: (jax.config.jax_compilation_cache_dir, jax.config.jax_compilation_cache_max_size)
deepfit.train(cfg, save=False)
print("library", settings())
compile_cache.use()
cfg["model"]["layers"][1]["units"] = 17  # new programs to compile (the first ones are compiled already)
deepfit.train(cfg, save=False)
print("opted in", settings(), str(compile_cache.cache_dir()))
compile_cache.use(False)
print("opted out", settings())
jax.config.update("jax_compilation_cache_dir", sys.argv[2] + "/mine")
compile_cache.use()
compile_cache.enable()  # what training calls first: it leaves the user's own folder alone
print("users own", settings())
"""


def test_the_compile_cache_is_the_users_choice_in_their_process_and_bounded(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DEEPFIT_COMPILE_CACHE"}
    env.update(DEEPFIT_CACHE=str(tmp_path / "cache"), DEEPFIT_COMPILE_CACHE_MB="64")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(Path(__file__).parent), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" (", 1) for line in done.stdout.splitlines() if " (" in line)
    assert lines["library"] == "None, -1)"
    cache_dir = str(tmp_path / "cache" / "jax-lru")
    assert lines["opted in"] == f"'{cache_dir}', {64 * 1024**2}) {cache_dir}"
    assert any((tmp_path / "cache" / "jax-lru").iterdir())
    assert lines["opted out"] == "None, -1)"
    assert lines["users own"] == f"'{tmp_path}/mine', -1)"


def test_the_deepfit_command_uses_the_compile_cache(tmp_path):
    import tomli_w

    env = {k: v for k, v in os.environ.items() if k != "DEEPFIT_COMPILE_CACHE"}
    env["DEEPFIT_CACHE"] = str(tmp_path / "cache")
    config = tmp_path / "c.toml"
    config.write_text(tomli_w.dumps(tiny_config(write_idx_dir(tmp_path / "data"), epochs=1)))
    done = subprocess.run([sys.executable, "-m", "deepfit", "train", str(config), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert any(p.name.endswith("-cache") for p in (tmp_path / "cache" / "jax-lru").iterdir())
