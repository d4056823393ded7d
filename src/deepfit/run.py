"""A run: train from a config, record it in a directory, load it back.

The run directory is the unit of record::

    config.toml          the resolved config (seed included): rerun it as is
    environment.json     versions, backend, devices, threads, command line
    metrics.csv          one row an epoch, rewritten atomically after each (deterministic:
                         a resumed run's is byte-identical to an uninterrupted one's)
    timings.csv          seconds each epoch took (kept apart: they differ run to run)
    final.json           metrics of the kept weights ("last"; the restored epoch's with restore_best_weights,
                         none when diverged), test metrics, why training ended, and "columns": each logged
                         value's direction and range as its Keras metric or loss says (statistics read them)
    correctness.npz      per image of the validation (and test) split, whether the kept weights classify it
                         right: bits packed with NumPy (``read_correctness``), so a comparison can also resample
                         the images; absent for a diverged run or outputs that are not classes
    model.json           Keras architecture and compile arguments (rebuilt with safe_mode=True)
    weights.safetensors  every model variable, BatchNorm statistics included
    layer_stats.parquet  per-layer statistics, when a layer_stats callback recorded them
    predictions-*.csv    added later by ``deepfit predict`` (listed in the manifest as it writes them)
    manifest.json        sha256 of each file above, written last, checked on load
    checkpoints/         the last training state while the run is unfinished (see --resume)
    final_state/         a completed run's last training state (``--resume --epochs N`` extends the run from it)

``final.json`` and ``manifest.json`` exist only once a run has ended, so an
interrupted run never looks finished.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import keras
import numpy as np

from deepfit import interrupt
from deepfit.config import Config, dump_toml, load_config
from deepfit.data.prepare import Dataset, load_data
from deepfit.errors import CheckpointError, ConfigError, DataError, StorageError
from deepfit.io import MANIFEST, read_json, storage_error, verify_manifest, write_atomic, write_json, write_manifest
from deepfit.nn.build import reseed_noise
from deepfit.nn.sparsity import sparsity
from deepfit.optim.plan import make_optimizer_and_schedule
from deepfit.serialize import load_model, save_model
from deepfit.preflight import build_checked, check_resources
from deepfit.resume import attach_backup, resume_status  # also registers backup_and_restore
from deepfit.train import compile_cache
from deepfit.train.callbacks import make_callback
from deepfit.train.callbacks.registry import in_directory, paths_of
from deepfit.train.callbacks.early_stopping import EarlyStopping
from deepfit.train.callbacks.keras_adapter import KerasCallbacks, is_keras_callback
from deepfit.train.callbacks.progress import Progress
from deepfit.train.callbacks.stop_on_signal import StopOnSignal
from deepfit.train.callbacks.tensorboard import TensorBoard
from deepfit.train.callbacks.terminate_on_nan import TerminateOnNaN
from deepfit.train.events import Callback
from deepfit.train.loop import Trainer

METRIC_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
CORRECTNESS = "correctness.npz"
TIMING_COLUMNS = ("epoch", "seconds")


@dataclass
class Run:
    """A finished (or loaded) run: its directory, config, history, model and final record."""

    dir: Path | None
    config: Config
    model: keras.Model
    history_rows: list[dict[str, Any]]
    final: dict[str, Any] = field(default_factory=dict)
    trainer: Trainer | None = None
    resume_note: str | None = None  # what --resume did, for the command line to say

    @property
    def history(self):
        import pandas as pd

        return pd.DataFrame(self.history_rows)


def environment(cfg: Config, execution: str | None = None) -> dict[str, Any]:
    import jax

    from deepfit import __version__

    return {
        "deepfit": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        "numpy": np.__version__,
        "devices": [str(d) for d in jax.devices()],
        "cpu_count": os.cpu_count(),
        "threads": {k: os.environ.get(k) for k in ("XLA_FLAGS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        # How the run was trained: a group says so; a pool worker's environment does; else this process.
        "execution": execution or os.environ.get("DEEPFIT_EXECUTION", "local: this process"),
        "seed": cfg.seed,
        "argv": sys.argv,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def metrics_csv(rows: Sequence[Mapping[str, Any]], timings: bool = False) -> str:
    """The history as CSV: the metrics, or with ``timings`` only the epoch and its seconds."""
    if not rows:
        return ""
    if timings:
        columns = [c for c in TIMING_COLUMNS if any(c in r for r in rows)]
    else:
        columns = [c for c in METRIC_COLUMNS if any(c in r for r in rows)]
        columns += sorted({k for r in rows for k in r} - set(columns) - set(TIMING_COLUMNS[1:]))
    rows = [{k: r[k] for k in columns if k in r} for r in rows]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: repr(float(v)) if isinstance(v, (float, np.floating)) else v for k, v in row.items()})
    return buf.getvalue()


class RunRecorder(Callback):
    """Rewrites ``metrics.csv`` atomically after every epoch, so a crash keeps what was done."""

    order = 80

    def __init__(self, directory: Path):
        self.directory = directory

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        write_atomic(self.directory / "metrics.csv", metrics_csv(trainer.history))
        write_atomic(self.directory / "timings.csv", metrics_csv(trainer.history, timings=True))


def prepare_out_dir(out: str | Path | None, cfg: Config, overwrite: bool) -> Path:
    """Check the output directory before any work, so a bad one changes nothing."""
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{cfg.name or 'run'}-{stamp}"
    out = Path(out)
    try:
        os.fsencode(out)
        if "\0" in str(out):
            raise ValueError("it holds a NUL character")
        exists, is_dir = out.exists(), out.is_dir()
        holds_files = is_dir and any(out.iterdir())
    except (UnicodeError, ValueError, OSError) as e:  # NUL, lone surrogate, name too long, ...
        raise ConfigError(f"output directory {str(out)!r} is not a usable path ({e}); choose another --out") from None
    if exists and not is_dir:
        raise ConfigError(f"output {str(out)!r} is a file, not a directory; choose another --out")
    if holds_files and not overwrite:
        raise ConfigError(
            f"output directory {str(out)!r} already holds files; choose another --out or pass --overwrite"
        )
    parent = next((p for p in [out, *out.parents] if p.exists()), Path("."))
    if not parent.is_dir():
        raise ConfigError(f"output {str(out)!r} is below the file {str(parent)!r}; choose another --out")
    try:  # a real write: permissions, read-only mounts and full disks all show here
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as e:
        raise ConfigError(f"cannot write to {str(parent)!r} ({e.strerror or e}); choose another --out") from None
    return out


def program_key(cfg: Config, steps_per_epoch: int) -> str:
    """What the compiled step of a config's model depends on: everything but the seeds, the initial
    weights' values (and the name and progress bar). Seeds of one variant share it, so a process
    compiles their step once."""
    tree = cfg.to_dict()
    for key in ("seed", "order_seed", "dropout_seed", "name"):
        tree.pop(key, None)
    tree.get("training", {}).pop("progress", None)
    tree.get("model", {}).pop("initial_weights", None)
    return json.dumps([tree, steps_per_epoch], sort_keys=True, default=repr)


def make_trainer(cfg: Config, model: keras.Model, steps_per_epoch: int,
                 callbacks: Sequence[Callback] = (), shared: bool = True, optimizer_and_schedule=None,
                 y_example=None) -> Trainer:
    """The Trainer a config describes, around a given model built from that config
    (``shared=False`` for any other model: its compiled step is then not reused).
    ``y_example``: a label or two, which settle what "accuracy" means (as Keras's first batch does)."""
    from deepfit.train.objective import Objective, resolve_loss, resolve_metric

    t = cfg.training
    optimizer, schedule = optimizer_and_schedule or make_optimizer_and_schedule(t, steps_per_epoch)
    if any(layer.dtype_policy.compute_dtype == "float16" for layer in model._flatten_layers()) and \
            not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        # Loss scaling, as model.compile gives a model built under mixed_float16, for layers given it one by one
        # too: without it float16 gradients underflow to zero.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    # Compiled as Keras would be, so Keras's callbacks see its metrics and the model evaluates as it trained.
    model.compile(optimizer=optimizer, loss=resolve_loss(t.loss), metrics=[resolve_metric(m) for m in t.metrics])
    objective = Objective.for_model(t.loss, t.metrics, model, y_example, compile_metrics=model._compile_metrics)
    return Trainer(
        model, model.optimizer, loss=objective, batch_size=t.batch_size, epochs=t.epochs, seed=cfg.data_order_seed,
        schedule=schedule, callbacks=callbacks, steps_per_chunk=t.steps_per_chunk,
        eval_batch_size=t.eval_batch_size, program=program_key(cfg, steps_per_epoch) if shared else None,
        shuffle=t.shuffle,
    )


def train(
    config: str | Path | Mapping[str, Any] | Config,
    out: str | Path | None = None,
    *,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    model: keras.Model | None = None,
    data: Dataset | Any = None,
    callbacks: Sequence[Callback] = (),
    save: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    checkpoint: bool = True,
) -> Run:
    """Train what a config describes and record it in a run directory.

    ``model`` may be any Keras model (e.g. written as in the notebook) to use
    instead of the config's; ``data`` a prepared :class:`Dataset` or raw arrays
    (``((x_train, y_train), (x_test, y_test))``). ``save=False`` keeps
    everything in memory and writes nothing.

    A run that writes a directory backs its whole training state up at the end
    of every epoch (``checkpoints/``; ``checkpoint=False`` turns that off, a
    ``backup_and_restore`` callback in the config sets its frequency).
    ``resume=True`` continues the run in ``out`` from its last checkpoint,
    bit for bit; on a finished run it does nothing and returns it.
    """
    with interrupt.stop_politely():
        with _kept_on_failure([]):
            begun = _begin(config, out, overrides=overrides, model=model, data=data, callbacks=callbacks,
                           save=save, overwrite=overwrite, resume=resume, checkpoint=checkpoint)
        if isinstance(begun, Run):
            return begun
        with _kept_on_failure([begun], resume):
            started = time.perf_counter()
            begun.trainer.fit(*begun.fit_data)
            _raise_if_interrupted([begun])
            return _end(begun, time.perf_counter() - started)


def train_group(configs: Sequence[str | Path | Mapping[str, Any] | Config], outs: Sequence[str | Path | None],
                **options: Any) -> list[Run]:
    """Several runs of one shape (the seeds of a variant, say) trained together: each chunk of every
    run in one compiled call (:class:`deepfit.train.group.Group`), each run in its own directory,
    identical in form to :func:`train`'s (``options`` are :func:`train`'s, for every run).

    The fastest way to train seeds on an accelerator; on a CPU one worker per core is faster
    (``deepfit compare`` chooses). Runs that cannot share a program train one after another.
    """
    from deepfit.train.group import Group

    if len(configs) != len(outs):
        raise ConfigError(f"train_group needs one output per config: {len(configs)} configs, {len(outs)} outputs")
    execution = f"group: {len(configs)} run(s) in one program"
    with interrupt.stop_politely():
        with _kept_on_failure([]):
            begun = [_begin(c, o, execution=execution, **options) for c, o in zip(configs, outs)]
        training = [b for b in begun if not isinstance(b, Run)]
        started = time.perf_counter()
        with _kept_on_failure(training, bool(options.get("resume"))):
            # Each member in its slot of the whole group's width, even when others finished before a resume.
            slots = [i for i, b in enumerate(begun) if not isinstance(b, Run)]
            Group([b.trainer for b in training], slots, len(begun)).fit([b.fit_data for b in training])
        seconds = (time.perf_counter() - started) / max(1, len(training))  # a member's share of the group's time
        stopped = [b for b in training if _stopper(b).signum is not None]
        # Members that ended before the signal are complete: record them; the rest wait for a resume.
        halted = {id(b) for b in stopped}
        with _kept_on_failure(training, bool(options.get("resume"))):
            runs = [b if isinstance(b, Run) or id(b) in halted else _end(b, seconds) for b in begun]
        _raise_if_interrupted(stopped)
        return runs


def _record_model(cfg: Config, model: keras.Model) -> Config:
    """The config of a run trained on ``model`` (from Python): its architecture, and its compile
    arguments when compiled, replace the config's layers and training words (see keras_model.py)."""
    from deepfit.keras_model import architecture_json, compile_overrides

    if not model.built:  # a Sequential written without an Input: the config's input_shape builds it
        try:
            model.build((None, *cfg.model.input_shape))
        except Exception as e:  # noqa: BLE001 - Keras's message says what does not fit
            raise ConfigError(f"the model cannot be built on model.input_shape = {cfg.model.input_shape}: {e}") from None
    overrides = {"model.architecture": architecture_json(model), "model.layers": [],
                 "model.input_shape": [int(d) for d in model.input_shape[1:]], **compile_overrides(model)}
    if cfg.model.from_run is not None:
        overrides.update({"model.from_run": None})
    return load_config(cfg, overrides)


@dataclass
class _Begun:
    """A run ready to train: what :func:`_end` needs to record it."""

    cfg: Config
    out_dir: Path | None
    dataset: Dataset
    model: keras.Model
    trainer: Trainer
    backup: Any
    note: str | None
    outputs: list[str] = field(default_factory=list)  # where the config's callbacks write (ModelCheckpoint, ...)

    @property
    def fit_data(self) -> tuple:
        d = self.dataset
        return d.x_train, d.y_train, (d.x_valid, d.y_valid)


def _begin(config, out, *, overrides=(), model=None, data=None, callbacks=(), save=True, overwrite=False,
           resume=False, checkpoint=True, execution: str | None = None) -> "_Begun | Run":
    """Everything before the first step (a finished run, on ``resume``, comes back as its Run)."""
    cfg = load_config(config, overrides)
    if model is not None:
        cfg = _record_model(cfg, model)
    config_text = dump_toml(cfg)  # fails now, not after the directory exists
    status = resume_status(out if save else None, cfg) if resume else "fresh"
    if status == "finished":
        run = load_run(out)
        run.resume_note = f"run {str(out)!r} already finished ({run.final.get('status')}); nothing to do"
        return run
    extending = status == "extend"
    if extending:
        status = "resumable"  # reopened below, once its final state is known to fit this trainer
    out_dir = (Path(out) if status == "resumable" else prepare_out_dir(out, cfg, overwrite)) if save else None
    _raise_if_signalled(out_dir, status)
    compile_cache.enable()  # before the model is built: its initializers compile too
    dataset = data if isinstance(data, Dataset) else load_data(cfg.data, arrays=data)
    check_resources(cfg, dataset, model)
    own_model = model is None
    if model is None:
        model = build_checked(cfg)
    if cfg.noise_seed is not None:
        reseed_noise(model, cfg.noise_seed)
    t = cfg.training
    steps_per_epoch = -(-len(dataset.x_train) // t.batch_size)
    # Keras checks the optimizer's values as it builds it, and a user's schedule function runs over
    # the plan: both before anything is written.
    optimizer_and_schedule = make_optimizer_and_schedule(t, steps_per_epoch)
    # A callback's relative path (ModelCheckpoint's "best.keras") lands in the run's own directory, as the
    # run's other files: the runs of a sweep would otherwise all write one file in the working directory.
    specs = [in_directory(spec, out_dir) for spec in t.callbacks] if out_dir is not None else t.callbacks
    extra: list[Callback] = [TerminateOnNaN(), *map(make_callback, specs), *callbacks]
    if t.freeze:
        from deepfit.train.callbacks.freeze_schedule import FreezeSchedule

        extra.append(FreezeSchedule.from_config(cfg, model))
    if t.progress:
        extra.append(Progress())
    _raise_if_signalled(out_dir, status)  # loading the data and building the model take a while
    if out_dir is not None:
        if out_dir.exists() and overwrite and status == "fresh":
            shutil.rmtree(out_dir)
        # An empty directory is as good as none (prepare_out_dir refused one holding files).
        out_dir.mkdir(parents=True, exist_ok=True)
        if status == "fresh":
            write_atomic(out_dir / "config.toml", config_text)
        if not (out_dir / "environment.json").is_file():  # missing too when a full disk stopped the first start
            write_json(out_dir / "environment.json", environment(cfg, execution))
        extra.append(RunRecorder(out_dir))
        if t.tensorboard:
            extra.append(TensorBoard(str(out_dir / "tensorboard")))
    keras_callbacks = [c for c in extra if is_keras_callback(c)]
    if keras_callbacks:  # Keras's own callbacks, run unchanged from deepfit's events
        extra = [c for c in extra if not is_keras_callback(c)] + [KerasCallbacks(keras_callbacks)]
    backup = attach_backup(extra, out_dir, checkpoint)
    extra.append(StopOnSignal(backup))
    trainer = make_trainer(cfg, model, steps_per_epoch, extra, shared=own_model,
                           optimizer_and_schedule=optimizer_and_schedule, y_example=dataset.y_train[:1])
    if extending:
        from deepfit.resume import FINAL_STATE

        if backup is None:
            raise ConfigError("extending a finished run continues it from its checkpoint: drop --no-checkpoint")
        # A refused extension leaves the finished run as it was: checked before anything is removed.
        backup.check(trainer, Path(out) / FINAL_STATE, steps_per_epoch)
        _reopen(Path(out), config_text)
    if backup is not None:
        backup.restore_on_begin = status == "resumable"  # the backup restores as fit begins
    note = None  # what --resume did when no checkpoint is restored (a restore names itself in _end)
    if status == "resumable":
        note = "no checkpoint to resume from: the run starts again from the beginning"
    elif resume and save:
        # A typo in --out would otherwise pass silently for a resume of the intended run.
        note = f"--resume: no run in {str(out)!r} yet; starting a new one there"
    outputs = [path for spec in specs for arg, path in paths_of(spec).items() if arg != "backup_dir"]
    return _Begun(cfg, out_dir, dataset, model, trainer, backup, note, outputs)


@contextmanager
def _kept_on_failure(begun: Sequence[_Begun], resume: bool = False) -> Iterator[None]:
    """A write that fails (a full disk, a quota, a failing device) ends the run with one line naming
    the file and what is kept: every write is atomic, so the last checkpoint is whole, and --resume
    continues from it once there is space again. ``resume``: the call already resumes (as ``compare``'s
    runs do), so the same command again is what continues it."""
    try:
        yield
    except OSError as e:
        if not begun:
            if not isinstance(e, StorageError):
                raise
            # Before training only the record of a start was being written.
            raise StorageError(f"{e}. Nothing was trained yet. Free some space, then run the same command "
                               "again") from None
        err = storage_error(e.filename or begun[0].out_dir or "the run directory", e)
        kept = []
        for b in begun:
            latest = b.backup.latest() if b.backup is not None else None
            kept.append(f"the checkpoint {latest}" if latest is not None
                        else f"no checkpoint of {b.out_dir} yet (it will start again)")
        again = ("run the same command again to continue" if resume else
                 "run the same command again with --resume (resume=True from Python) to continue")
        raise StorageError(f"{err}. Kept: {'; '.join(kept)}. Free some space, then {again}") from None


def _raise_if_signalled(out_dir: Path | None, status: str) -> None:
    """A signal before training began: stop before anything (more) is written."""
    signum = interrupt.pending()
    if signum is not None:
        written = "nothing was written" if status == "fresh" else f"{out_dir} is as it was"
        raise interrupt.Interrupted(signum, f"stopped by {interrupt.name(signum)} before training began; {written}",
                                    [str(out_dir)] if out_dir is not None else [])


def _stopper(b: _Begun) -> StopOnSignal:
    return next(c for c in b.trainer.callbacks if isinstance(c, StopOnSignal))


def _raise_if_interrupted(begun: Sequence[_Begun]) -> None:
    """Runs a signal stopped get no final record (they are unfinished): say what each kept instead."""
    stopped = [(b, _stopper(b)) for b in begun if _stopper(b).signum is not None]
    if not stopped:
        return
    kept = []
    for b, stop in stopped:
        step = int(b.trainer.state.step)
        if b.out_dir is None:
            kept.append(f"step {step}, nothing saved (the run writes no directory)")
        elif stop.checkpoint is not None:
            kept.append(f"step {step} checkpointed in {stop.checkpoint}")
        else:
            kept.append(f"step {step}, no checkpoint (checkpoints are off): {b.out_dir} will start again")
    signum = stopped[0][1].signum
    raise interrupt.Interrupted(signum, f"stopped by {interrupt.name(signum)}: {'; '.join(kept)}",
                                [str(b.out_dir) for b, _ in stopped if b.out_dir is not None])


def _end(b: _Begun, seconds: float) -> Run:
    """The final record, the model and the manifest of a run that has trained."""
    cfg, out_dir, dataset, model, trainer, backup = b.cfg, b.out_dir, b.dataset, b.model, b.trainer, b.backup
    note = b.note
    if backup is not None and backup.restored_from is not None:
        note = f"resumed from {backup.restored_from} (step {backup.restored_step})"
    final = final_record(trainer, dataset, seconds)
    run = Run(out_dir, cfg, model, trainer.history, final, trainer, note)
    if out_dir is not None:
        write_atomic(out_dir / "metrics.csv", metrics_csv(trainer.history))
        write_atomic(out_dir / "timings.csv", metrics_csv(trainer.history, timings=True))
        files = ["config.toml", "environment.json", "metrics.csv", "timings.csv", "final.json"]
        files += write_layer_stats(trainer, out_dir)
        files += written_by_callbacks(out_dir, b.outputs)
        if final["status"] != "diverged":
            files += write_correctness(trainer, dataset, out_dir)
        if final["status"] == "diverged":
            # Weights that produced a NaN are not a model: keep the last good checkpoint instead.
            if backup is not None and backup.latest() is not None:
                final["divergence"]["last_good_checkpoint"] = str(backup.latest().relative_to(out_dir))
        else:
            files += save_model(model, out_dir)
        if backup is not None and final["status"] == "completed" and backup.latest() is not None:
            _keep_final_state(backup.backup_dir, out_dir)  # before the record: a run is finished with it
        write_json(out_dir / "final.json", final)
        try:
            write_manifest(out_dir, files)
        except OSError:
            (out_dir / "final.json").unlink(missing_ok=True)  # a record without its manifest would look finished
            raise
        if backup is not None and backup.delete_checkpoint and final["status"] != "diverged":
            backup.remove()
    return run


def written_by_callbacks(out_dir: Path, outputs: Sequence[str]) -> list[str]:
    """The files the config's callbacks wrote inside the run (a ModelCheckpoint's ``best-{epoch:02d}.keras``
    matches each epoch's file; a log folder, the files in it), for the manifest."""
    found: set[str] = set()
    root = out_dir.resolve()
    for output in outputs:
        path = Path(output).resolve()
        if not path.is_relative_to(root):
            continue  # an absolute path outside the run is the user's
        pattern = re.sub(r"\{[^}]*\}", "*", path.relative_to(root).as_posix())
        for hit in root.glob(pattern):
            files = [hit] if hit.is_file() else [f for f in hit.rglob("*") if f.is_file()] if hit.is_dir() else []
            found.update(f.relative_to(root).as_posix() for f in files)
    return sorted(found)


def _keep_final_state(checkpoints: Path, out_dir: Path) -> None:
    """A completed run keeps its last checkpoint (``final_state/``), so ``--resume --epochs N`` can extend it
    exactly; the manifest, written after, marks the run finished only once it is in place."""
    from deepfit.resume import FINAL_STATE

    target, tmp = out_dir / FINAL_STATE, out_dir / f".{FINAL_STATE}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _copy_files(checkpoints, tmp)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk: the half copy holds space and is no state
        raise
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def _copy_files(src: Path, dst: Path) -> None:
    """``shutil.copytree`` without its habit of gathering every failure into one ``shutil.Error``, which
    loses the errno (a full disk must be reported as one)."""
    dst.mkdir()
    for p in sorted(src.rglob("*")):
        target = dst / p.relative_to(src)
        if p.is_dir():
            target.mkdir(exist_ok=True)
        else:
            try:
                shutil.copyfile(p, target)
            except OSError as e:
                e.filename = e.filename or str(target)
                raise


def _reopen(d: Path, config_text: str) -> None:
    """A finished run made unfinished again to be extended: its final state becomes its checkpoint, the
    manifest and final record go first (an interrupted extension must not look finished), the config
    records the new epochs."""
    from deepfit.resume import CHECKPOINTS, FINAL_STATE

    (d / MANIFEST).unlink()
    (d / "final.json").unlink(missing_ok=True)
    shutil.rmtree(d / CHECKPOINTS, ignore_errors=True)
    shutil.copytree(d / FINAL_STATE, d / CHECKPOINTS)
    write_atomic(d / "config.toml", config_text)


def write_layer_stats(trainer: Trainer, out_dir: Path) -> list[str]:
    """``layer_stats.parquet``: what a ``layer_stats`` callback recorded (kept, not only shown)."""
    from deepfit.train.callbacks.layer_stats import LayerStats

    recorders = [c for c in trainer.callbacks if isinstance(c, LayerStats) and c.records]
    if not recorders:
        return []
    import io

    buffer = io.BytesIO()
    recorders[0].frame().to_parquet(buffer, index=False)
    write_atomic(out_dir / "layer_stats.parquet", buffer.getvalue())
    return ["layer_stats.parquet"]


def correct_per_image(outputs: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
    """Whether each output names its label, as Keras's accuracies decide it: the argmax for several
    classes (integer or one-hot labels), ``p > 0.5`` for one sigmoid unit; None for anything else."""
    outputs, labels = np.asarray(outputs), np.asarray(labels)
    if outputs.ndim != 2 or len(outputs) != len(labels):
        return None
    if outputs.shape[1] == 1 and labels.ndim == 1:
        return (outputs[:, 0] > 0.5) == (labels > 0.5)
    if labels.ndim == 2 and labels.shape == outputs.shape:
        labels = labels.argmax(axis=1)
    if labels.ndim != 1 or outputs.shape[1] < 2:
        return None
    return outputs.argmax(axis=1) == labels


def write_correctness(trainer: Trainer, dataset: Dataset, out_dir: Path) -> list[str]:
    """``correctness.npz``: the kept weights' per-image correctness on the validation and test splits."""
    arrays: dict[str, np.ndarray] = {}
    for split, x, y in (("val", dataset.x_valid, dataset.y_valid), ("test", dataset.x_test, dataset.y_test)):
        if x is None or not len(x):
            continue
        correct = correct_per_image(trainer.predict(x), y)
        if correct is None:
            return []
        arrays[split], arrays[f"{split}_count"] = np.packbits(correct), np.array([len(correct)], np.int64)
    if not arrays:
        return []
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(out_dir / CORRECTNESS, buffer.getvalue())
    return [CORRECTNESS]


def read_correctness(run_dir: str | Path, split: str = "val") -> np.ndarray | None:
    """A run's per-image correctness on ``split`` ("val" or "test") as booleans; None if it kept none."""
    path = Path(run_dir) / CORRECTNESS
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as f:
        if split not in f:
            return None
        return np.unpackbits(f[split], count=int(f[f"{split}_count"][0])).astype(bool)


def columns_of_config(cfg: Config) -> dict[str, Any]:
    """What a config's logged values are (``final.json`` "columns"), from its loss and metric objects, for a
    run recorded before runs kept it; {} when its model cannot be built here (e.g. a missing ``from_run``)."""
    from deepfit.train.objective import Objective

    try:
        model = build_checked(cfg)
        objective = Objective.for_model(cfg.training.loss, cfg.training.metrics, model)
    except (ConfigError, CheckpointError, DataError, OSError, ValueError):
        return {}
    columns = objective.columns()
    for name in ("loss", "accuracy"):
        if name in columns:
            columns[f"test_{name}"] = columns[name]
    return columns


def final_record(trainer: Trainer, dataset: Dataset, seconds: float) -> dict[str, Any]:
    nan = next((c for c in trainer.callbacks if isinstance(c, TerminateOnNaN)), None)
    status = "diverged" if nan is not None and nan.report else ("stopped" if trainer.stop_reason else "completed")
    history = trainer.history
    # deepfit's EarlyStopping, or Keras's run through the adapter, may have put an earlier epoch's weights back.
    restored = next((c.restored_epoch for c in trainer.callbacks
                     if isinstance(c, (EarlyStopping, KerasCallbacks)) and c.restored_epoch is not None), None)
    # "last" holds the metrics of the weights the run keeps (what tables and reports call final):
    # none for a diverged run (its weights are NaN; the epoch before is not what it ended with),
    # the best epoch's when early stopping restored it (test metrics and the saved model come from it).
    if status == "diverged":
        last: dict[str, Any] = {}
    elif restored is not None:
        last = dict(next(row for row in history if row["epoch"] == restored))
    else:
        last = history[-1] if history else {}
    final: dict[str, Any] = {
        "status": status,
        "stop_reason": trainer.stop_reason,
        "epochs_run": len(history),
        "steps": int(trainer.state.step),
        "seconds": seconds,
        "last": last,
    }
    if restored is not None and status != "diverged":
        final["restored_epoch"], final["last_epoch"] = restored, history[-1]
    if nan is not None and nan.report:
        final["divergence"] = {**nan.report, "hint": "the learning rate is probably too high: "
                               "run `deepfit find-lr CONFIG` and train again with a lower rate",
                               "last_finite_epoch": history[-1] if history else None}
    if dataset.x_test is not None and status != "diverged":
        final["test_loss"], final["test_accuracy"] = trainer.evaluate(dataset.x_test, dataset.y_test)
    columns = trainer.loss.columns() if hasattr(trainer.loss, "columns") else {}
    for name in ("loss", "accuracy"):  # the test metrics are the same quantities on other images
        if f"test_{name}" in final and name in columns:
            columns[f"test_{name}"] = columns[name]
    final["columns"] = columns
    if status != "diverged":  # exact zeros per Dense kernel: what l1 under FTRL, or pruning, made
        final["sparsity"] = sparsity(trainer.model)
    return final


def load_run(directory: str | Path) -> Run:
    """A finished run back from its directory: config, history and an identical model."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise CheckpointError(f"{str(d)!r} is a file, not a run directory; give the folder `deepfit train` wrote")
    if not d.is_dir():
        raise CheckpointError(f"run directory {str(d)!r} not found")
    if not (d / MANIFEST).is_file():
        raise CheckpointError(f"{d}: no {MANIFEST}; the run did not finish (or is not a deepfit run)")
    verify_manifest(d)
    cfg = load_config(d / "config.toml")
    import pandas as pd

    history = pd.read_csv(d / "metrics.csv").to_dict("records") if (d / "metrics.csv").stat().st_size else []
    if history and (d / "timings.csv").is_file() and (d / "timings.csv").stat().st_size:
        seconds = dict(pd.read_csv(d / "timings.csv").itertuples(index=False, name=None))
        for row in history:
            row["seconds"] = seconds.get(row["epoch"])
    final = read_json(d / "final.json", "final record")
    # A diverged run keeps no model (its weights were NaN), only its record and last good checkpoint.
    model = None if final.get("status") == "diverged" and not (d / "model.json").exists() else load_model(d)
    if model is not None and not getattr(model, "compiled", False):
        # Saved without its compile arguments: compiled from the config, so model.evaluate works.
        from deepfit.optim.optimizers import make_optimizer
        from deepfit.train.objective import resolve_loss, resolve_metric

        t = cfg.training
        model.compile(optimizer=make_optimizer(t.optimizer), loss=resolve_loss(t.loss),
                      metrics=[resolve_metric(m) for m in t.metrics])
    return Run(d, cfg, model, history, final)
