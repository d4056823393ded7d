"""``compare`` from a notebook cell: variants as Python functions or config dicts, data as arrays, no TOML.

    result = deepfit.compare({"relu": make_relu, "selu": make_selu}, data=(x_train, y_train), seeds=5,
                             validation_split=0.1, epochs=10)
    result.report()        # displays inline in Jupyter (deepfit.compare writes the report)

A variant is a function ``seed -> compiled Keras model`` (the notebook's way to write a
network) or a config dict. A function is called once per seed, here, to *record* its
network (Keras's architecture JSON and its compile arguments, as ``deepfit.train(cfg,
model=...)`` records a model): every run is then a plain config, trained from its seed on
any backend, resumable, reported like any experiment. So no Python function has to
travel to a worker process, and a script needs no ``if __name__ == "__main__":`` guard.

Weights are recorded when the config alone would not give them: each seed's model is
compared, bit for bit, with what its architecture gets from that seed (what a run would
start from); if any differs (pretrained or transferred layers, weights drawn without the
seed), every seed's weights are written to ``weights/VARIANT/seed-S.safetensors`` (with
their ``SHA256SUMS``) and the runs start from them (``model.initial_weights``), on every
backend; one line says so. A seeded function costs nothing on disk and stays a plain config.

A custom layer defined in the notebook and not registered with Keras is registered for
the user under its module's name (``__main__>MyLayer``: the class is already in this
process, nothing is imported), said in one line; such runs train in this process, since a
worker cannot import the class, and asking for another backend says so in one line.

The arrays are written once into the experiment directory as IDX files (with their
sha256), which every run reads as ``data.source = "directory"``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np

from deepfit.errors import ConfigError, DataError
from deepfit.experiments.spec import NAME

# IDX type codes (see deepfit.data.idx): what the arrays are written as.
_IDX = {np.dtype("uint8"): 0x08, np.dtype("int8"): 0x09, np.dtype("int16"): 0x0B, np.dtype("int32"): 0x0C,
        np.dtype("float32"): 0x0D, np.dtype("float64"): 0x0E}
FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def is_python_experiment(experiment: Any, data: Any) -> bool:
    """``compare({"name": function-or-dict, ...}, data=...)`` rather than an experiment file or tree."""
    if data is not None:
        return True
    return isinstance(experiment, Mapping) and "variants" not in experiment and "base" not in experiment and \
        any(callable(v) for v in experiment.values())


def _write_idx(path: Path, a: np.ndarray) -> None:
    a = np.asarray(a)
    if a.dtype.kind in "iu" and a.dtype not in _IDX:
        a = a.astype(np.int32)
    if a.dtype.kind == "f" and a.dtype not in _IDX:
        a = a.astype(np.float32)
    if a.dtype not in _IDX:
        raise DataError(f"arrays of dtype {a.dtype} cannot be compared; use numbers (uint8, int or float)")
    header = bytes([0, 0, _IDX[a.dtype], a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    path.write_bytes(header + a.astype(a.dtype.newbyteorder(">")).tobytes())


def write_arrays(directory: Path, train: tuple, test: tuple | None) -> Path:
    """The arrays as the four IDX files and a SHA256SUMS (an empty test set when none is given)."""
    directory.mkdir(parents=True, exist_ok=True)
    x, y = train
    xt, yt = test if test is not None else (np.zeros((0, *np.shape(x)[1:]), np.asarray(x).dtype),
                                             np.zeros((0, *np.shape(y)[1:]), np.asarray(y).dtype))
    sums = []
    for part, a in zip(FILES, (x, y, xt, yt)):
        path = directory / FILES[part]
        _write_idx(path, a)
        sums.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}")
    (directory / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return directory


def _split_data(data: Any) -> tuple[tuple, tuple | None]:
    """``(x, y)`` or ``((x, y), (x_test, y_test))``, as keras.datasets loaders return them."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise DataError("data must be (x_train, y_train) or ((x_train, y_train), (x_test, y_test))")
    if isinstance(data[0], (tuple, list)):
        train, test = tuple(data[0]), tuple(data[1]) if data[1] is not None else None
    else:
        train, test = (data[0], data[1]), None
    for part in (train, test):
        if part is not None and (len(part) != 2 or len(part[0]) != len(part[1])):
            raise DataError("each part of data must be (x, y) with as many labels as samples")
    return train, test


def _foreign_classes(architecture: str) -> list[str]:
    """Registered names of classes outside Keras and deepfit (a worker process cannot import them)."""
    from deepfit.keras_model import foreign_classes

    return [name for _, name in foreign_classes(json.loads(architecture))]


def _record(fn: Callable[[int], keras.Model], seed: int, input_shape: list[int], name: str,
            log: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, np.ndarray], keras.Model]:
    """What the function builds for ``seed``: the config overrides that say it, its weights (``model.weights``
    by position, as safetensors holds them: see deepfit.serialize) and the model."""
    from deepfit.keras_model import architecture_json, compile_overrides, register_local_classes

    model = fn(seed)
    if not isinstance(model, keras.Model):
        raise ConfigError(f"variant {name!r}: the function must return a compiled keras.Model for a seed, "
                          f"got {type(model).__name__}")
    if not getattr(model, "compiled", False):
        raise ConfigError(f"variant {name!r}: the model is not compiled; end the function with "
                          f"model.compile(optimizer=..., loss=..., metrics=[...]) and return the model")
    if not model.built:
        model.build((None, *input_shape))
    for registered in register_local_classes(model):
        log(f"variant {name!r}: registered {registered.split('>')[-1]} with Keras as {registered!r} so its runs "
            f"can rebuild it; they train in this process")
    try:
        overrides = {"model.architecture": architecture_json(model), "model.layers": [],
                     "model.input_shape": [int(d) for d in model.input_shape[1:]], **compile_overrides(model)}
    except ConfigError as e:
        raise ConfigError(f"variant {name!r}: {e}") from None
    weights = {f"{i:04d}/{w.path}": np.ascontiguousarray(np.asarray(w.value)) for i, w in enumerate(model.weights)}
    return overrides, weights, model


def _write_initial_weights(directory: Path, weights: dict[int, dict[str, np.ndarray]]) -> None:
    """Each seed's weights as ``seed-S.safetensors``, and their ``SHA256SUMS`` (checked when a run loads one)."""
    from safetensors.numpy import save

    from deepfit.io import file_digest, write_atomic

    directory.mkdir(parents=True, exist_ok=True)
    sums = []
    for seed, arrays in weights.items():
        path = directory / f"seed-{seed}.safetensors"
        write_atomic(path, save(arrays, metadata={"format": "deepfit-keras-weights"}))
        sums.append(f"{file_digest(path)}  {path.name}")
    write_atomic(directory / "SHA256SUMS", "\n".join(sums) + "\n")


def python_experiment(
    variants: Mapping[str, Callable[[int], keras.Model] | Mapping[str, Any]],
    *,
    data: Any,
    seeds: int | Sequence[int] = 5,
    out: str | Path | None = None,
    epochs: int = 10,
    batch_size: int = 32,
    validation_split: float | None = None,
    validation_size: int | None = None,
    scaling: str = "none",
    base: Mapping[str, Any] | None = None,
    name: str = "compare",
    reference: str | None = None,
    metric: str = "val_accuracy",
    backend: str = "auto",
    log: Callable[[str], None] | None = None,
    equivalence: float | None = None,
    direction: str | None = None,
) -> tuple[dict[str, Any], Path, str]:
    """The experiment (a plain tree), its directory and the backend for ``compare``'s Python form (see
    the module docstring); the arrays are written into the directory's ``data/``. ``base`` is a config dict the variants start from (its data and
    training sections apply to all); a dict variant is a config tree merged over it. Validation: the last
    ``validation_split`` of the training arrays (as Keras), or the first ``validation_size``; default 0.1."""
    from deepfit.config import load_config
    from deepfit.keras_model import same_as_fresh

    log = log or (lambda line: None)

    if not isinstance(variants, Mapping) or not variants:
        raise ConfigError("variants must be a dict of name -> function(seed) returning a compiled Keras model "
                          "(or -> config dict)")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ConfigError("seeds must be a positive count or a list of seeds")
    train, test = _split_data(data)
    out_dir = Path(out) if out is not None else Path("experiments") / name
    if validation_split is not None and validation_size is not None:
        raise ConfigError("give validation_split or validation_size, not both")
    split = {"validation_size": int(validation_size)} if validation_size is not None else \
        {"validation_split": float(validation_split if validation_split is not None else 0.1)}
    input_shape = [int(d) for d in np.shape(train[0])[1:]]
    tree: dict[str, Any] = {
        "data": {"source": "directory", "path": str((out_dir / "data").resolve()), "scaling": scaling, **split},
        "model": {"input_shape": input_shape, "layers": [{"type": "flatten"}]},
        "training": {"epochs": epochs, "batch_size": batch_size, "progress": False},
    }
    for section, values in (base or {}).items():
        tree[section] = {**tree.get(section, {}), **values} if isinstance(values, Mapping) else values
    exp_variants, local_only, initial = [], [], {}
    for vname, spec in variants.items():
        if callable(spec):
            if not isinstance(vname, str) or not NAME.match(vname):
                raise ConfigError(f"variant name {vname!r} must be 1-64 letters, digits, '_', '-', '.', '+' "
                                  f"(it names a directory)")
            records, weights, fresh = [], {}, True
            for s in seed_list:
                record, weights[s], model = _record(spec, s, input_shape, vname, log)
                records.append(record)
                # Weights the seed alone does not give (pretrained, transferred, or drawn without the
                # seed) are recorded, so every backend trains from them; otherwise the config says it all.
                fresh = fresh and same_as_fresh(model, record["model.architecture"], s)
            if any(r != records[0] for r in records[1:]):
                raise ConfigError(f"variant {vname!r}: the function builds a different network (or compiles it "
                                  f"differently) for different seeds; a variant is one network, its seeds "
                                  f"differ only in initial weights and data order")
            overrides = records[0]
            if not fresh:
                initial[vname] = weights
                overrides["model.initial_weights"] = str((out_dir / "weights" / vname).resolve() /
                                                         "seed-{seed}.safetensors")
                log(f"variant {vname!r}: the function's initial weights are not the seed's fresh initialization "
                    f"(pretrained or transferred layers?): recorded in {out_dir / 'weights' / vname}, every run "
                    f"starts from them")
            foreign = _foreign_classes(overrides["model.architecture"])
            if foreign:
                local_only.append((vname, foreign[0]))
        elif isinstance(spec, Mapping):
            overrides = _flatten(spec)
        else:
            raise ConfigError(f"variant {vname!r}: expected a function seed -> compiled Keras model, or a config "
                              f"dict; got {type(spec).__name__}")
        exp_variants.append({"name": vname, "overrides": overrides})
    if local_only:
        vname, cls = local_only[0]
        if backend not in ("auto", "local"):
            raise ConfigError(f"variant {vname!r} uses {cls!r}, a class defined in this process, which a "
                              f"{backend!r} worker cannot import: use backend='local' (or put the class in an "
                              f"importable module)")
        backend = "local"
    load_config(tree)  # the base alone must be a valid config (a typo fails here, before data is written)
    write_arrays(out_dir / "data", train, test)
    for vname, weights in initial.items():
        _write_initial_weights(out_dir / "weights" / vname, weights)
    experiment = {"name": name, "base": tree, "seeds": seed_list, "metric": metric,
                  "reference": reference or next(iter(variants)), "variants": exp_variants,
                  **({"equivalence": equivalence} if equivalence is not None else {}),
                  **({"direction": direction} if direction is not None else {})}
    return experiment, out_dir, backend


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"training": {"epochs": 5}}`` → ``{"training.epochs": 5}`` (lists and model layers stay whole)."""
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and key not in ("training.optimizer", "training.schedule", "training.loss"):
            flat.update(_flatten(v, key + "."))
        else:
            flat[key] = v
    return flat
