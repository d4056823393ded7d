"""``deepfit export``: a trained model made fast and small for prediction, with what each step cost and bought.

The steps, in this order, each optional:

1. fold batch norm into the Dense layers beside it (:mod:`deepfit.deploy.fold`: exact algebra;
   the layers that cannot be folded are named in ``export.json``);
2. prune: zero the smallest fraction of the Dense kernels' weights, with one threshold over all kernels
   (``prune_scope="global"``, the default: the chapter's "zero out the tiny weights") or in each kernel
   (``"layer"``: every layer, the small output layer too, loses that fraction) (:mod:`deepfit.nn.sparsity`);
3. lower the precision to float16, bfloat16 or int8 (:mod:`deepfit.deploy.precision`);
4. write the model as a Keras file (``model.keras``, Keras's own format) or as ONNX
   (``model.onnx``, Keras's exporter; int8 by onnxruntime's dynamic quantization).

Beside the model, ``export.json`` sets the exported model against the original, in the
same format and on the same engine (JAX ``jit`` for Keras files, onnxruntime for ONNX):
accuracy and loss on the validation and test sets, the largest change of any predicted
probability, parameters and non-zero weights, file size (and gzip-compressed size: a
Keras file is stored uncompressed, so zeros only pay once compressed), and latency
(median and 90th percentile of warm calls, batch 1 and batch 1000, the two models timed
in alternation; the machine's load average beside them). For ONNX it also records how
far onnxruntime's probabilities are from Keras's on the same float32 model.

The export directory appears whole or not at all (written under a temporary name, then
renamed); a refused export (a bad run directory, an unknown option) changes nothing on disk.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import keras
import numpy as np

from deepfit.deploy import engines, latency
from deepfit.deploy.fold import fold_batch_norm as fold_bn
from deepfit.deploy.precision import PRECISIONS, lower
from deepfit.errors import ConfigError
from deepfit.io import dir_mode, file_mode, fsync_dir, write_json
from deepfit.nn.layers import MCAlphaDropout, MCDropout
from deepfit.nn.sparsity import SCOPES, prune as prune_kernels
from deepfit.uncertainty import class_probabilities

FORMATS = ("keras", "onnx")
RECORD = "export.json"


@dataclass
class Exported:
    """The export: its directory (None when nothing was written), the exported Keras model and ``export.json``."""

    dir: Path | None
    model: keras.Model
    record: dict[str, Any]

    @property
    def file(self) -> Path | None:
        return None if self.dir is None else self.dir / self.record["file"]


def _check_options(prune: float | None, prune_scope: str, precision: str, format: str) -> None:
    if format not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if prune is not None and (isinstance(prune, bool) or not isinstance(prune, (int, float))
                              or not 0 < prune < 1):
        raise ConfigError(f"prune is the fraction of weights to zero, in (0, 1) (e.g. 0.9); got {prune!r}")
    if prune_scope not in SCOPES:
        raise ConfigError(f"prune scope must be one of {', '.join(SCOPES)}, got {prune_scope!r}")
    if format == "onnx" and precision == "bfloat16":
        raise ConfigError("bfloat16 with --format onnx: onnxruntime has no bfloat16 CPU kernels (it cannot run "
                          "the file); use --precision float16, or bfloat16 with --format keras")
    if format == "onnx":
        try:
            import jax2onnx  # noqa: F401
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ConfigError(f"--format onnx needs onnx, onnxruntime and jax2onnx: {engines.EXTRA_HINT}") from None


def _slug(fold: bool, prune: float | None, scope: str, precision: str, format: str) -> str:
    parts = ["fold"] if fold else []
    if prune is not None:
        parts.append(f"prune{prune:g}{'-layer' if scope == 'layer' else ''}")
    if precision != "float32":
        parts.append(precision)
    return "-".join([*parts, format])


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"export output {str(out)!r} is a file; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"export output {str(out)!r} already holds files; choose another --out or pass --overwrite")
    parent = next((p for p in [out.parent, *out.parent.parents] if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ConfigError(f"cannot write below {str(parent)!r}; choose another --out")


def _source(run_or_model, data):
    """(model, data as (x_valid, y_valid, x_test, y_test) or None, loss, what it came from)."""
    if isinstance(run_or_model, keras.Model):
        model, loss, source = run_or_model, getattr(run_or_model, "loss", None), f"keras.Model {run_or_model.name!r}"
    else:
        from deepfit.run import Run, load_run

        run = run_or_model if isinstance(run_or_model, Run) else load_run(run_or_model)
        if run.model is None:
            raise ConfigError(f"run {str(run.dir)!r} diverged and kept no model: nothing to export")
        model, loss, source = run.model, run.config.training.loss, str(run.dir)
        if data is None:
            from deepfit.data.prepare import load_data

            data = load_data(run.config.data)
    if data is not None and not isinstance(data, tuple):  # a Dataset
        data = (data.x_valid, data.y_valid, data.x_test, data.y_test)
    elif data is not None:
        (xv, yv), (xt, yt) = data
        data = (xv, yv, xt, yt)
    if any(isinstance(layer, (MCDropout, MCAlphaDropout)) for layer in model._flatten_layers(include_self=False)):
        raise ConfigError("the model has MC dropout layers, which sample at prediction time: an export would not be "
                          "deterministic; rebuild it with plain Dropout layers (same weights) and export that")
    return model, data, loss, source


def _copy(model: keras.Model) -> keras.Model:
    """An uncompiled copy (``clone_model`` compiles the clone of a compiled model, and a Keras file of a
    compiled model holds its optimizer's slots: Nadam's would triple a file that predicts the same)."""
    try:
        out = model.__class__.from_config(model.get_config())
    except Exception:  # noqa: BLE001 - a subclassed model without from_config
        out = keras.models.clone_model(model)
        out.compiled, out.optimizer = False, None
    out.set_weights(model.get_weights())
    return out


def _loss_function(loss):
    from deepfit.train.objective import resolve_loss

    loss = resolve_loss(loss)
    return keras.losses.get(loss) if isinstance(loss, str) else loss


def scores(probs: np.ndarray, y: np.ndarray, loss) -> dict[str, float]:
    """Accuracy (Keras's: argmax, or a 0.5 threshold for one sigmoid output) and the mean loss, no penalties."""
    probs = np.asarray(probs, np.float32)
    metric = keras.metrics.BinaryAccuracy() if probs.shape[-1] == 1 else keras.metrics.SparseCategoricalAccuracy()
    y_true = np.asarray(y).reshape(-1, 1) if probs.shape[-1] == 1 else np.asarray(y)
    metric.update_state(y_true, probs)
    out = {"accuracy": float(metric.result())}
    if loss is not None:
        out["loss"] = float(keras.ops.mean(_loss_function(loss)(y_true.astype(np.float32) if probs.shape[-1] == 1
                                                                  else y_true, probs)))
    return out


def count_weights(model_or_path: keras.Model | Path) -> dict[str, int]:
    """Parameters and non-zero values stored: a Keras model's weights (not its seed generators' states) or an
    ONNX file's initializers (scales and zero points of a quantized file included)."""
    if isinstance(model_or_path, keras.Model):
        arrays = [np.asarray(w.value) for w in model_or_path.weights if "seed_generator" not in w.path]
    else:
        import onnx
        from onnx import numpy_helper

        arrays = [numpy_helper.to_array(t) for t in onnx.load(str(model_or_path)).graph.initializer]
    return {"parameters": int(sum(a.size for a in arrays)), "nonzero": int(sum(np.count_nonzero(a) for a in arrays))}


def file_size(path: Path) -> dict[str, int]:
    data = path.read_bytes()
    return {"bytes": len(data), "gzip_bytes": len(gzip.compress(data, compresslevel=6, mtime=0))}


def _write_model(model: keras.Model, format: str, precision: str, target: Path, sample: np.ndarray) -> Path:
    """The model file (for int8 ONNX, the float32 file beside it is ``target``'s ``.float32.onnx``)."""
    if format == "keras":
        path = target.with_suffix(".keras")
        model.save(path)
        return path
    path = target.with_suffix(".onnx")
    if precision == "int8":
        float_path = target.with_suffix(".float32.onnx")
        engines.export_onnx(model, float_path, sample)
        engines.quantize_onnx_int8(float_path, path)
    else:
        engines.export_onnx(model, path, sample)
    return path


def export(
    run_or_model: Any,
    out: str | Path | None = None,
    *,
    fold_batch_norm: bool = False,
    prune: float | None = None,
    prune_scope: str = "global",
    precision: str = "float32",
    format: str = "keras",
    data: Any = None,
    latency_calls: Mapping[int, int] | None = None,
    overwrite: bool = False,
    save: bool = True,
) -> Exported:
    """Export a run (its directory or :class:`~deepfit.run.Run`) or a Keras model; see the module docstring.

    ``data``: for a model, a :class:`~deepfit.data.Dataset` or ``((x_valid, y_valid), (x_test, y_test))``
    to score it on (a run uses its own config's data); without it only latency, size and weights are
    measured. ``out``: the export directory (default, for a run: ``RUN-export-OPTIONS`` beside it).
    ``save=False`` measures in a temporary directory and keeps nothing on disk.
    ``latency_calls``: timed calls per batch size (default ``{1: 200, 1000: 30}``).
    """
    _check_options(prune, prune_scope, precision, format)
    slug = _slug(fold_batch_norm, prune, prune_scope, precision, format)
    if save and out is None:
        if isinstance(run_or_model, keras.Model):
            raise ConfigError("exporting a Keras model needs out='DIR' (or save=False to measure only)")
        run_dir = Path(getattr(run_or_model, "dir", None) or run_or_model)
        out = run_dir.parent / f"{run_dir.name}-export-{slug}"
    out = Path(out) if out is not None else None
    if save:
        _check_out(out, overwrite)
    model, data, loss, source = _source(run_or_model, data)
    sample = (np.asarray(data[2] if data[2] is not None else data[0], np.float32) if data is not None
              else np.random.default_rng(0).normal(size=(1000, *model.input_shape[1:])).astype(np.float32))

    work, record = _copy(model), {"source": source, "format": format, "precision": precision}
    record["options"] = {"fold_batch_norm": fold_batch_norm, "prune": prune, "prune_scope": prune_scope,
                         "precision": precision, "format": format}
    if fold_batch_norm:
        folded = fold_bn(work)
        work = folded.model
        record["batch_norm"] = folded.record()
    if prune is not None:
        record["pruned"] = {"fraction": prune, "scope": prune_scope, "tensors": "the kernels of every Dense layer",
                            "layers": prune_kernels(work, float(prune), prune_scope)}  # type: ignore[arg-type]
    exported = lower(work, precision)

    parent = out.parent if save else None
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}." if save else "deepfit-export-"))
    try:
        reference_dir = tmp / ".reference"
        reference_dir.mkdir()
        path = _write_model(exported, format, precision, tmp / "model", sample)
        # An uncompiled copy, as the export is: a Keras file of a compiled model also holds its optimizer's slots.
        reference = _write_model(_copy(model), format, "float32", reference_dir / "model", sample)
        if format == "keras":
            before, after = engines.JaxPredictor(model), engines.JaxPredictor(exported)
        else:
            before, after = engines.OnnxPredictor(reference), engines.OnnxPredictor(path)
            float_file = path.with_suffix(".float32.onnx") if precision == "int8" else path
            keras_twin = work if precision == "int8" else exported  # the Keras model the float ONNX file came from
            record["onnx_vs_keras"] = _agreement(engines.OnnxPredictor(float_file), engines.JaxPredictor(keras_twin),
                                                 sample)
            if precision == "int8":
                float_file.unlink()
        record["engine"] = after.engine
        record["file"] = path.name
        record["before"] = {"size": file_size(reference), **_counts(model, reference, format)}
        record["after"] = {"size": file_size(path), **_counts(exported, path, format)}
        if data is not None:
            record.update(_evaluate(before, after, data, loss))
        record["latency"] = latency.measure({"before": before, "after": after}, sample, latency_calls)
        for b in latency.BATCHES:
            key = f"batch_{b}"
            record["latency"][f"ratio_{key}"] = (record["latency"]["after"][key]["median_s"]
                                                 / record["latency"]["before"][key]["median_s"])
        record["versions"] = _versions(format)
        shutil.rmtree(reference_dir)
        write_json(tmp / RECORD, record)
        if not save:
            shutil.rmtree(tmp)
            return Exported(None, exported, record)
        for f in tmp.iterdir():  # mkdtemp makes 0700, and a library may write 0600: the user's umask decides
            os.chmod(f, file_mode())
        os.chmod(tmp, dir_mode())
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Exported(out, exported, record)


def _replace_dir(tmp: Path, out: Path) -> None:
    """``tmp`` becomes ``out`` by a rename; an old ``out`` (with --overwrite) goes only once the new one is in place."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
    tmp.rename(out)
    fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _counts(model: keras.Model, path: Path, format: str) -> dict[str, int]:
    return count_weights(model if format == "keras" else path)


def _agreement(onnx_predictor, jax_predictor, x: np.ndarray) -> dict[str, float]:
    a, b = onnx_predictor.predict(x), jax_predictor.predict(x)
    return {"max_probability_difference": float(np.max(np.abs(a - b))), "inputs": int(len(x))}


def _evaluate(before, after, data, loss) -> dict[str, Any]:
    xv, yv, xt, yt = data
    out: dict[str, Any] = {"metrics": {"before": {}, "after": {}}, "max_probability_change": {}}
    for split, x, y in (("val", xv, yv), ("test", xt, yt)):
        if x is None:
            continue
        p0, p1 = before.predict(np.asarray(x, np.float32)), after.predict(np.asarray(x, np.float32))
        for name, p in (("before", p0), ("after", p1)):
            out["metrics"][name].update({f"{split}_{k}": v for k, v in scores(p, y, loss).items()})
        change = np.abs(class_probabilities(p1) - class_probabilities(p0))
        out["max_probability_change"][split] = float(change.max())
    out["max_probability_change"]["all"] = max(out["max_probability_change"].values())
    return out


def _versions(format: str) -> dict[str, str]:
    import jax

    out = {"keras": keras.__version__, "jax": jax.__version__}
    if format == "onnx":
        import jax2onnx
        import onnxruntime

        out.update({"onnxruntime": onnxruntime.__version__, "jax2onnx": getattr(jax2onnx, "__version__", "?")})
    return out
