"""Loss and metrics as one pure function, from Keras's own loss and metric objects.

``objective(y, y_pred) -> (loss, delta)``: the batch's mean loss, and what the
batch adds to the epoch's metric state, as one float32 vector. Both come from
Keras: the loss is what ``model.compile(loss=...)`` resolves (``keras.losses.get``,
``from_logits`` included), the metrics are Keras metric objects run through their
stateless API (``stateless_update_state`` from a zero state gives the batch's
increment; ``stateless_result`` reads the epoch's value), so the compiled step
computes exactly what ``model.fit`` logs, under the names it logs them.

``y`` is the labels, or ``(labels, sample_weight)``: weights reach the loss and the
``weighted_metrics``, as in Keras (plain ``metrics`` ignore them).

The epoch's sums are ``[loss × batch size, samples, *metric state]``: the loss
averages over batches weighted by their size (Keras's loss tracker), each metric
keeps its Keras state. Keras metrics accumulate by addition from zero (Mean,
accuracies, AUC, precision, recall, MAE...): that is what lets the sums travel in
the training state and add up across chunks; a metric whose state does not start
at zero is refused.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import keras
import numpy as np
from keras.src.trainers import compile_utils  # Keras's own rules: "accuracy" by label shape, function → Loss

from deepfit.config import register_check
from deepfit.errors import ConfigError

# Fields of the sums vector before the metrics' state.
LOSS_SUM, COUNT = 0, 1


def loss_names() -> list[str]:
    """Every Keras loss a config can name (snake_case, the names ``compile`` takes)."""
    return sorted(n for n, obj in _keras_objects(keras.losses).items()
                  if n == n.lower() and n not in ("get", "serialize", "deserialize", "loss", "reduction"))


def metric_names() -> list[str]:
    """Every Keras metric a config can name (snake_case), plus ``accuracy`` (chosen by label shape)."""
    from keras.src.utils.naming import to_snake_case

    names = {n for n, obj in _keras_objects(keras.metrics).items()
             if n == n.lower() and n not in ("get", "serialize", "deserialize")}
    # Metrics that exist only as classes (AUC, Precision, Recall, ...), by their snake_case names.
    names |= {to_snake_case(n) for n, obj in _keras_objects(keras.metrics).items()
              if inspect.isclass(obj) and issubclass(obj, keras.metrics.Metric) and obj is not keras.metrics.Metric
              and n not in ("Mean", "Sum", "MeanMetricWrapper")}
    return sorted(names | {"accuracy", "acc"})


# What a value can be follows from what the metric or loss *is* (its class or function), never from its name.
_UNIT_INTERVAL_METRICS = tuple(getattr(keras.metrics, n) for n in (
    "Accuracy", "BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy", "TopKCategoricalAccuracy",
    "SparseTopKCategoricalAccuracy", "AUC", "Precision", "Recall", "PrecisionAtRecall", "RecallAtPrecision",
    "SensitivityAtSpecificity", "SpecificityAtSensitivity", "IoU", "MeanIoU", "BinaryIoU", "OneHotIoU",
    "OneHotMeanIoU"))
# Means of a non-negative quantity (squared or absolute errors, hinges, crossentropies of probabilities).
# Not KLDivergence or Poisson, which go below 0 for targets that are not distributions or counts.
_NON_NEGATIVE_METRICS = tuple(getattr(keras.metrics, n) for n in (
    "MeanSquaredError", "MeanAbsoluteError", "RootMeanSquaredError", "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError", "Hinge", "SquaredHinge", "CategoricalHinge", "LogCoshError",
    "BinaryCrossentropy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy"))
_NON_NEGATIVE_LOSSES = tuple(getattr(keras.losses, n) for n in (
    "sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
    "binary_focal_crossentropy", "categorical_focal_crossentropy", "mean_squared_error", "mean_absolute_error",
    "mean_absolute_percentage_error", "mean_squared_logarithmic_error", "hinge", "squared_hinge",
    "categorical_hinge", "log_cosh", "huber"))
_NON_NEGATIVE_PENALTIES = tuple(getattr(keras.regularizers, n) for n in ("L1", "L2", "L1L2", "OrthogonalRegularizer"))
CROSSENTROPY_LOSSES = tuple(getattr(keras.losses, n) for n in (
    "sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
    "binary_focal_crossentropy", "categorical_focal_crossentropy"))


def penalties_non_negative(model: Any) -> bool:
    """Whether every loss a model adds to the objective is known to be >= 0: Keras's own layers with Keras's
    l1 / l2 / l1_l2 / orthogonal regularizers (a custom layer may ``add_loss`` anything)."""
    layers = getattr(model, "_flatten_layers", None)
    if layers is None:
        return False
    for layer in layers(include_self=False):
        if not type(layer).__module__.startswith(("keras.", "deepfit.")):
            return False
        for name, value in vars(layer).items():
            if name.endswith("regularizer") and value is not None and not isinstance(value, _NON_NEGATIVE_PENALTIES):
                return False
    return True


def _keras_objects(module) -> dict[str, Any]:
    return {n: getattr(module, n) for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))}


def _class_for(module, name: str):
    """The class behind a snake_case name: ``sparse_categorical_crossentropy`` → SparseCategoricalCrossentropy."""
    from keras.src.utils.naming import to_snake_case

    for cls_name, obj in _keras_objects(module).items():
        if inspect.isclass(obj) and to_snake_case(cls_name) == name.lower():
            return obj
    return None


def resolve_loss(spec: Any) -> Any:
    """A loss identifier ``compile`` accepts, from a config's ``"name"`` or ``{ name = ..., from_logits = true }``;
    functions and ``keras.losses.Loss`` objects (from Python) pass through."""
    if isinstance(spec, Mapping):
        spec = dict(spec)
        name = spec.pop("name", None)
        if not isinstance(name, str):
            raise ConfigError(f"a loss table needs a name, e.g. {{ name = 'sparse_categorical_crossentropy', "
                              f"from_logits = true }}; got {spec!r}")
        cls = _class_for(keras.losses, name)
        if cls is None:
            raise ConfigError(_unknown("loss", name, loss_names()))
        try:
            return cls(**spec)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"loss {name!r}: {e}") from None
    if isinstance(spec, str):
        if spec.lower() in ("crossentropy", "ce"):
            return spec
        try:
            keras.losses.get(spec)
        except (ValueError, TypeError):
            raise ConfigError(_unknown("loss", spec, loss_names())) from None
        return spec
    if spec is None or not callable(spec):
        raise ConfigError(f"loss must be a Keras loss name, table, function or keras.losses.Loss; got {spec!r}")
    return spec


def _check(kind: str, module, spec: Any, names) -> None:
    """A config's loss or metric checked by lookups (its name; a table's arguments in the class's
    signature), building nothing: what config validation may do."""
    if isinstance(spec, Mapping):
        name = spec.get("name")
        cls = _class_for(module, name) if isinstance(name, str) else None
        if cls is None:
            raise ConfigError(_unknown(kind, str(name), names()) if isinstance(name, str) else
                              f"a {kind} table needs a name, e.g. {{ name = '...' }}; got {dict(spec)!r}")
        params = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]
        unknown = [k for k in spec if k != "name" and k not in params]
        if unknown:
            from deepfit.registry import did_you_mean

            raise ConfigError(f"{kind} {name!r} has no argument {unknown[0]!r}.{did_you_mean(unknown[0], params)} "
                              f"Its arguments: {', '.join(params)}.")
        return
    if isinstance(spec, str):
        if spec.lower() in (("crossentropy", "ce") if kind == "loss" else ("accuracy", "acc")):
            return
        if not (callable(getattr(module, spec, None)) and spec == spec.lower()) and _class_for(module, spec) is None:
            raise ConfigError(_unknown(kind, spec, names()))
        return
    raise ConfigError(f"a {kind} in a config is a name or a table ({{ name = ..., ... }}); got {spec!r}")


@register_check("loss")
def check_loss(spec: Any) -> None:
    _check("loss", keras.losses, spec, loss_names)


@register_check("metric")
def check_metric(spec: Any) -> None:
    _check("metric", keras.metrics, spec, metric_names)


def resolve_metric(spec: Any) -> Any:
    """A metric identifier ``compile`` accepts, from a name or ``{ name = "top_k_categorical_accuracy", k = 3 }``."""
    if isinstance(spec, Mapping):
        spec = dict(spec)
        name = spec.pop("name", None)
        cls = _class_for(keras.metrics, name) if isinstance(name, str) else None
        if cls is None:
            raise ConfigError(_unknown("metric", str(name), metric_names()))
        try:
            return cls(**spec)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"metric {name!r}: {e}") from None
    if isinstance(spec, str):
        if spec.lower() in ("accuracy", "acc"):
            return spec
        try:
            keras.metrics.get(spec)
        except (ValueError, TypeError):
            cls = _class_for(keras.metrics, spec)  # "auc", "precision": classes only
            if cls is None:
                raise ConfigError(_unknown("metric", spec, metric_names())) from None
            return cls()
        return spec
    if spec is None or not callable(spec):
        raise ConfigError(f"a metric must be a Keras metric name, table, function or keras.metrics.Metric; got {spec!r}")
    return spec


def _unknown(kind: str, name: str, names: Sequence[str]) -> str:
    from deepfit.registry import did_you_mean

    plural = "losses" if kind == "loss" else "metrics"
    return f"unknown {kind} {name!r}.{did_you_mean(name, list(names))} See `deepfit list {plural}`."


def _describe(obj: Any) -> str:
    return obj if isinstance(obj, str) else getattr(obj, "name", None) or getattr(obj, "__name__", None) or repr(obj)


class Objective:
    """The compiled step's loss and metrics for one output (see the module docstring).

    ``y_true`` / ``y_pred``: arrays (or shapes) of one batch, which settle what Keras settles from
    the first batch (``"accuracy"`` → sparse, categorical or binary; ``"crossentropy"`` likewise).
    """

    def __init__(self, loss: Any, metrics: Sequence[Any] = (), weighted_metrics: Sequence[Any] = (), *,
                 y_true: Any, y_pred: Any, compile_metrics: Any = None, model: Any = None):
        y_true, y_pred = _example(y_true), _example(y_pred)
        self.loss_spec = loss
        # The logged loss adds the model's regularization penalties: it is >= 0 only if they are too.
        self.penalties_non_negative = model is not None and penalties_non_negative(model)
        self.loss_fn = compile_utils.get_loss(resolve_loss(loss), y_true, y_pred)
        if compile_metrics is None:
            compile_metrics = compile_utils.CompileMetrics(
                [resolve_metric(m) for m in metrics] or None,
                [resolve_metric(m) for m in weighted_metrics] or None)
        self.metrics = compile_metrics
        if not self.metrics.built:
            self.metrics.build(y_true, y_pred)
        variables = list(self.metrics.variables)
        self.shapes = [tuple(v.shape) for v in variables]
        self.dtypes = [v.dtype for v in variables]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.size = 2 + sum(self.sizes)
        for m in self.metrics.metrics:
            if any(np.any(np.asarray(v.value) != 0) for v in m.variables):
                raise ConfigError(f"metric {m.name!r} keeps a state that does not start at zero; deepfit sums metric "
                                  f"states over batches inside its compiled loop: use a metric that accumulates "
                                  f"(Keras's Mean-based and confusion-matrix metrics do)")
        self.metric_names = list(self.metrics.result().keys()) if variables else []
        self._check_runs_in_jax(y_true, y_pred)

    @classmethod
    def from_model(cls, model: keras.Model, y_true: Any, y_pred: Any) -> "Objective":
        """The loss and metrics a model was compiled with (``model.compile(optimizer, loss, metrics)``)."""
        compiled = getattr(model, "_compile_metrics", None)
        return cls(model.loss, y_true=y_true, y_pred=y_pred,
                   compile_metrics=compiled if compiled is not None else compile_utils.CompileMetrics(None, None),
                   model=model)

    @classmethod
    def for_model(cls, loss: Any, metrics: Sequence[Any], model: keras.Model, y_true: Any = None,
                  compile_metrics: Any = None) -> "Objective":
        """A config's loss and metrics for ``model``; without labels, sparse ones for a sparse loss
        (what deepfit's datasets hold), else labels shaped as the output. ``compile_metrics``: the
        model's own, once compiled with these metrics (Keras's callbacks then find them)."""
        _check_logits(loss, model)
        out = tuple(model.output_shape[1:]) if hasattr(model, "output_shape") else (1,)
        if y_true is None:
            name = loss if isinstance(loss, str) else (loss.get("name") if isinstance(loss, Mapping) else "")
            y_true = np.zeros((1,), np.int32) if "sparse" in str(name) else np.zeros((1, *out), np.float32)
        return cls(loss, metrics, y_true=y_true, y_pred=np.zeros((1, *out), np.float32),
                   compile_metrics=compile_metrics, model=model)

    # -- the pure function the step calls ---------------------------------------
    def __call__(self, y: Any, y_pred: jax.Array) -> tuple[jax.Array, jax.Array]:
        y, sample_weight = y if isinstance(y, tuple) else (y, None)
        loss = jnp.asarray(self.loss_fn(y, y_pred, sample_weight), jnp.float32)
        zeros = [jnp.zeros(s, d) for s, d in zip(self.shapes, self.dtypes)]
        if not zeros:
            return loss, jnp.zeros((0,), jnp.float32)
        delta = self.metrics.stateless_update_state(zeros, y, y_pred, sample_weight)
        return loss, jnp.concatenate([jnp.ravel(d).astype(jnp.float32) for d in delta])

    def sums(self, loss: jax.Array, delta: jax.Array, n) -> jax.Array:
        """One batch's contribution to the epoch's sums vector."""
        n = jnp.asarray(n, jnp.float32)
        return jnp.concatenate([jnp.stack([loss * n, n]), delta])

    def zeros(self) -> jax.Array:
        return jnp.zeros((self.size,), jnp.float32)

    # -- reading the sums ------------------------------------------------------
    def logs(self, sums: Any, prefix: str = "") -> dict[str, float]:
        """``{"loss": ..., "accuracy": ...}`` (``prefix="val_"`` for validation), as ``fit`` names them."""
        sums = np.asarray(sums)
        # float32, as Keras's loss tracker (a Mean) divides: the same sums give the same number
        logs = {prefix + "loss": float(np.float32(sums[LOSS_SUM]) / np.float32(sums[COUNT]))}
        if self.sizes:
            parts, at = [], 2
            for shape, dtype, size in zip(self.shapes, self.dtypes, self.sizes):
                parts.append(jnp.asarray(sums[at:at + size].reshape(shape), dtype))
                at += size
            logs.update({prefix + k: float(v) for k, v in self.metrics.stateless_result(parts).items()})
        return logs

    # -- what each logged value is --------------------------------------------
    def _by_name(self) -> dict[str, Any]:
        """Each logged metric name with its Keras metric object (names Keras could not tie to one map to None)."""
        objects = {m.name: m for m in self.metrics.metrics}
        return {name: objects.get(name) for name in self.metric_names}

    def directions(self) -> dict[str, str | None]:
        """``{log name: "max" | "min" | None}`` for the loss, every metric and their ``val_`` forms.

        As Keras 3's ``MonitorCallback._set_monitor_op``: the loss is minimized; a
        metric goes the way its ``_direction`` says ('up' → "max", 'down' → "min");
        a metric that declares none has None (whoever needs a direction asks for one).
        """
        out: dict[str, str | None] = {"loss": "min"}
        for name, m in self._by_name().items():
            way = getattr(m, "_direction", None)
            out[name] = {"up": "max", "down": "min"}.get(way) if isinstance(way, str) else None
        return {**out, **{f"val_{k}": v for k, v in out.items()}}

    def ranges(self) -> dict[str, tuple[float, float]]:
        """``{log name: (low, high)}``: the values each logged quantity can take, from what it is.

        Accuracy-family metrics, AUC, precision, recall and IoUs lie in [0, 1];
        means of squared or absolute errors, hinges and crossentropies are >= 0;
        the loss is >= 0 only when its Keras loss is one of those *and* every
        penalty the model adds is a Keras l1 / l2 regularizer. Anything else is
        unbounded: an interval is clipped only where the bound is known.
        """
        loss_fn = getattr(self.loss_fn, "fn", None)
        low = 0.0 if loss_fn in _NON_NEGATIVE_LOSSES and self.penalties_non_negative else -np.inf
        out: dict[str, tuple[float, float]] = {"loss": (low, np.inf)}
        for name, m in self._by_name().items():
            if isinstance(m, _UNIT_INTERVAL_METRICS):
                out[name] = (0.0, 1.0)
            elif isinstance(m, _NON_NEGATIVE_METRICS):
                out[name] = (0.0, np.inf)
            else:
                out[name] = (-np.inf, np.inf)
        return {**out, **{f"val_{k}": v for k, v in out.items()}}

    def columns(self) -> dict[str, dict[str, Any]]:
        """What a run records about each logged value (``final.json`` "columns"; JSON: ``None`` for ±inf):
        its direction, its range, and whether it is a crossentropy (whose equivalence margin has a default)."""
        kind = "crossentropy" if getattr(self.loss_fn, "fn", None) in CROSSENTROPY_LOSSES else None
        ranges = self.ranges()
        out = {}
        for name, way in self.directions().items():
            lo, hi = ranges.get(name, (-np.inf, np.inf))
            out[name] = {"direction": way, "range": [lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None]}
            if name.removeprefix("val_") == "loss" and kind:
                out[name]["kind"] = kind
        return out

    def _check_runs_in_jax(self, y_true, y_pred) -> None:
        """Trace the loss and each metric once on the batch shapes, so a loss or metric that cannot run in
        a compiled JAX function (NumPy on tracers, a TensorFlow op) is named before any training."""
        y_spec = jax.ShapeDtypeStruct(y_true.shape, y_true.dtype)
        p_spec = jax.ShapeDtypeStruct(y_pred.shape, y_pred.dtype)
        try:
            jax.eval_shape(lambda y, p: self.loss_fn(y, p, None), y_spec, p_spec)
        except Exception as e:  # noqa: BLE001 - whatever it is, it will fail inside the step the same way
            raise ConfigError(f"loss {_describe(self.loss_spec)!r} cannot run inside deepfit's compiled JAX step "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); use a Keras loss "
                              f"or write it with keras.ops") from None
        for m in self.metrics.metrics:
            zeros = [jnp.zeros(v.shape, v.dtype) for v in m.variables]
            try:
                jax.eval_shape(lambda y, p, m=m, z=zeros: m.stateless_update_state(z, y, p), y_spec, p_spec)
            except Exception as e:  # noqa: BLE001
                raise ConfigError(f"metric {m.name!r} cannot run inside deepfit's compiled JAX step "
                                  f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); use a Keras "
                                  f"metric or write it with keras.ops") from None


def _check_logits(loss: Any, model: keras.Model) -> None:
    """A crossentropy that expects probabilities on a last layer without an activation trains silently at
    chance (the logits are clipped into [0, 1]): name both fixes before training."""
    name = loss if isinstance(loss, str) else (loss.get("name") if isinstance(loss, Mapping) else None)
    from_logits = isinstance(loss, Mapping) and loss.get("from_logits")
    layers = getattr(model, "layers", None)
    if not isinstance(name, str) or "crossentropy" not in name or from_logits or not layers:
        return
    last = layers[-1]
    activation = getattr(last, "activation", None)
    if isinstance(last, keras.layers.Dense) and activation in (keras.activations.linear, None):
        fix = "softmax" if "categorical" in name else "sigmoid"
        raise ConfigError(f"the last layer has no activation (it outputs logits) but loss {name!r} expects "
                          f"probabilities: add activation = '{fix}' to the last layer, or use "
                          f"loss = {{ name = '{name}', from_logits = true }}")


def _example(a: Any) -> np.ndarray:
    """One row of an array (or a KerasTensor's shape), enough for Keras's shape rules."""
    if hasattr(a, "shape") and not isinstance(a, np.ndarray) and any(d is None for d in a.shape):
        return np.zeros((1, *a.shape[1:]), getattr(a, "dtype", "float32"))
    a = np.asarray(a)
    return a[:1] if a.ndim else a


def as_objective(loss: Any, model: keras.Model) -> Objective:
    """The trainer's ``loss`` argument as an :class:`Objective` (a config's loss name gets ``accuracy``)."""
    if isinstance(loss, Objective):
        return loss
    return Objective.for_model(loss, ["accuracy"], model)

