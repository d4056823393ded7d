"""Transfer learning: reuse a trained model's layers under a new head; freeze and unfreeze.

The notebook reuses model A for task B with ``Sequential(model_A.layers[:-1])``
plus a new output layer. Those are model A's *own* layer objects: training
model B changes model A's weights too (the notebook then clones A with
``clone_model`` + ``set_weights`` to keep a copy). deepfit clones by default,
so the source stays as it was; ``share=True`` reproduces the notebook's
sharing for who wants it (e.g. to save memory on a model that is thrown away).

Freezing follows Keras's rule: ``layer.trainable = False`` moves the layer's
weights to ``model.non_trainable_variables``, and a frozen BatchNormalization
layer runs in inference mode (its moving statistics are used and stay
frozen). ``batch_norm = "trainable"`` instead exempts BatchNormalization
layers from freezing (fastai's ``train_bn``): they keep learning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, Union

import keras

from deepfit.errors import ConfigError

# A layer by index in ``model.layers`` (negative counts from the end) or by name.
LayerRef = Union[int, str]
Selector = Union[Literal["all", "head", "none"], Sequence[LayerRef]]
BatchNormRule = Literal["inference", "trainable"]


def clone(model: keras.Model, weights: bool = True) -> keras.Model:
    """A copy of ``model`` sharing nothing with it: ``clone_model`` (+ ``set_weights``).

    ``weights=False`` keeps the architecture only: every layer is initialized
    afresh by its own initializer (seed it with ``keras.utils.set_random_seed``).
    """
    copy = keras.models.clone_model(model)
    if weights:
        copy.set_weights(model.get_weights())
    return copy


def _unique_name(base: str, taken: set[str]) -> str:
    name, n = base, 0
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


def reuse(
    source: keras.Model,
    head: Sequence[keras.layers.Layer | Mapping[str, Any]] = (),
    drop_last: int = 1,
    *,
    share: bool = False,
    weights: bool = True,
    seed: int | None = None,
) -> keras.Sequential:
    """A new Sequential: ``source``'s layers but the last ``drop_last``, then ``head``.

    ``head`` holds Keras layers or deepfit layer specs (``{type = "dense", units = 1,
    activation = "sigmoid"}``). The reused layers are clones (``weights=True``
    copies their trained weights, ``False`` re-initializes them) unless
    ``share=True``, which hands over the source's own layers as the notebook
    does, so that training the new model also changes ``source``. ``seed``
    seeds the head's (and, without weights, the body's) initializers.
    """
    if not isinstance(source, keras.Sequential):
        raise ConfigError(f"reuse needs a keras.Sequential model, got {type(source).__name__}")
    if not 0 <= drop_last <= len(source.layers):
        raise ConfigError(
            f"drop_last = {drop_last}, but the source model has {len(source.layers)} layers; "
            f"choose 0..{len(source.layers)}"
        )
    if share and not weights:
        raise ConfigError("share=True reuses the source's own layers, so it keeps their weights: "
                          "drop weights=False, or share=False")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    base = source if share else clone(source, weights=weights)
    body = base.layers[: len(base.layers) - drop_last]
    taken = {layer.name for layer in body}
    new_layers = []
    for item in head:
        if isinstance(item, Mapping):
            from deepfit.nn.specs import make_layer

            layer = make_layer(item)
            if "name" not in item:
                base_name = keras.src.utils.naming.to_snake_case(type(layer).__name__)
                layer.name = _unique_name(base_name, taken)
        else:
            layer = item
        if layer.name in taken:
            raise ConfigError(f"head layer name {layer.name!r} is already used by a reused layer; rename it")
        taken.add(layer.name)
        new_layers.append(layer)
    input_shape = tuple(source.inputs[0].shape[1:])
    return keras.Sequential([keras.Input(input_shape), *body, *new_layers], name="sequential")


def build_from_run(cfg, seed: int | None = None) -> keras.Sequential:
    """The model a :class:`~deepfit.config.ModelConfig` with ``from_run`` describes.

    Reads the finished run's model file itself (verified against the run's manifest), so
    building a model needs nothing of the layer that trains and records runs.
    """
    from deepfit.io import MANIFEST, verify_manifest
    from deepfit.serialize import load_model

    directory = Path(cfg.from_run).expanduser()
    if not directory.is_dir():
        raise ConfigError(
            f"model.from_run = {cfg.from_run!r}: no such run directory; train that run first "
            f"(e.g. deepfit train configs/task_a.toml --out {cfg.from_run}) or point from_run at one"
        )
    if not (directory / MANIFEST).is_file() or not (directory / "model.json").is_file():
        raise ConfigError(f"model.from_run = {cfg.from_run!r}: that run did not finish with a model "
                          "(no manifest.json or model.json); finish it (--resume) or point from_run at another")
    verify_manifest(directory)
    source = load_model(directory)
    got = list(source.inputs[0].shape[1:])
    if "input_shape" in cfg.model_fields_set and list(cfg.input_shape) != got:
        raise ConfigError(
            f"model.input_shape = {cfg.input_shape}, but the model of {str(directory)!r} takes {got}; "
            "remove input_shape or make it match"
        )
    return reuse(source, cfg.layers, cfg.drop_last, weights=cfg.reuse_weights, seed=seed)


def layer_index(model: keras.Model, ref: LayerRef) -> int:
    """The index in ``model.layers`` of a layer given by index or name."""
    n = len(model.layers)
    if isinstance(ref, bool) or not isinstance(ref, (int, str)):
        raise ConfigError(f"a layer is named by its index or its name, got {ref!r}")
    if isinstance(ref, int):
        if not -n <= ref < n:
            raise ConfigError(f"layer index {ref} is out of range: the model has {n} layers (0..{n - 1})")
        return ref % n
    names = [layer.name for layer in model.layers]
    if ref not in names:
        from deepfit.registry import did_you_mean

        raise ConfigError(f"no layer named {ref!r}.{did_you_mean(ref, names)} Layers: {', '.join(names)}.")
    return names.index(ref)


def select_layers(model: keras.Model, selector: Selector, head: int = 1) -> list[int]:
    """Indexes of the layers a selector names: ``"all"``, ``"none"``, ``"head"``
    (the last ``head`` layers) or a list of indexes and names."""
    n = len(model.layers)
    if selector == "all":
        return list(range(n))
    if selector == "none":
        return []
    if selector == "head":
        if not 1 <= head <= n:
            raise ConfigError(f"the head is {head} layers, but the model has {n}")
        return list(range(n - head, n))
    if isinstance(selector, str):
        raise ConfigError(f"trainable = {selector!r}: use 'all', 'head', 'none' or a list of layer indexes/names")
    return sorted({layer_index(model, ref) for ref in selector})


def set_trainable(
    model: keras.Model, trainable: Selector, *, head: int = 1, batch_norm: BatchNormRule = "inference"
) -> list[str]:
    """Make exactly the selected layers trainable and freeze all the others.

    Returns the names of the trainable layers. With ``batch_norm="trainable"``
    BatchNormalization layers are never frozen; with ``"inference"`` (Keras's
    rule) a frozen one normalizes with its moving statistics and leaves them be.
    A model whose trainable set changed needs a new optimizer and a re-split
    training state (a new :class:`~deepfit.train.loop.Trainer`, or
    ``freeze_schedule.swap_optimizer``): the trainer splits variables when built.
    """
    if batch_norm not in ("inference", "trainable"):
        raise ConfigError(f"batch_norm = {batch_norm!r}: use 'inference' (Keras's rule) or 'trainable'")
    chosen = set(select_layers(model, trainable, head))
    for i, layer in enumerate(model.layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = i in chosen or (is_bn and batch_norm == "trainable")
    return [layer.name for layer in model.layers if layer.trainable]


def freeze(model: keras.Model, layers: Sequence[LayerRef]) -> None:
    """``layer.trainable = False`` for the given layers (by index or name); others unchanged."""
    for i in {layer_index(model, ref) for ref in layers}:
        model.layers[i].trainable = False


def unfreeze(model: keras.Model, layers: Sequence[LayerRef]) -> None:
    """``layer.trainable = True`` for the given layers (by index or name); others unchanged."""
    for i in {layer_index(model, ref) for ref in layers}:
        model.layers[i].trainable = True
