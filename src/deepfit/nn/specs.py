"""Layer specs → Keras layers, through Keras's own constructors.

A spec is ``{type = "dense", units = 300, activation = "selu",
kernel_initializer = "lecun_normal"}``: the type names a layer, every other key
is that Keras layer's own argument, except ``repeat = N`` which stacks N copies.
Arguments ending in ``_initializer``, ``_regularizer`` or ``_constraint`` take a
Keras name (``"he_normal"``) or a table ``{name = "l2", l2 = 0.01}``;
``activation`` takes a Keras name.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

import keras

from deepfit.config import register_check
from deepfit.errors import ConfigError
from deepfit.nn.layers import MCAlphaDropout, MCDropout, RReLU
from deepfit.registry import Registry, did_you_mean

# Keras layers that wrap a Python callable or load a saved program: never from a config.
CODE_LAYERS = frozenset({"Lambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer"})

LAYERS = Registry("layer type")
for _name, _cls, _aliases in [
    ("flatten", keras.layers.Flatten, ()),
    ("dense", keras.layers.Dense, ()),
    ("batch_norm", keras.layers.BatchNormalization, ("batch_normalization", "batchnorm", "bn")),
    ("dropout", keras.layers.Dropout, ()),
    ("alpha_dropout", keras.layers.AlphaDropout, ()),
    ("gaussian_noise", keras.layers.GaussianNoise, ()),
    ("activation", keras.layers.Activation, ()),
    ("relu", keras.layers.ReLU, ()),
    ("leaky_relu", keras.layers.LeakyReLU, ("leakyrelu",)),
    ("prelu", keras.layers.PReLU, ()),
    ("elu", keras.layers.ELU, ()),
    ("softmax", keras.layers.Softmax, ()),
    ("rrelu", RReLU, ()),
    ("mc_dropout", MCDropout, ("mcdropout",)),
    ("mc_alpha_dropout", MCAlphaDropout, ("mcalphadropout",)),
    ("layer_norm", keras.layers.LayerNormalization, ("layer_normalization",)),
    ("reshape", keras.layers.Reshape, ()),
    # Data augmentation (Keras's image preprocessing layers): random in training, the identity in inference.
    # They take images (height, width, channels): put { type = "reshape", target_shape = [28, 28, 1] } first.
    ("random_translation", keras.layers.RandomTranslation, ()),
    ("random_rotation", keras.layers.RandomRotation, ()),
    ("random_zoom", keras.layers.RandomZoom, ()),
    ("random_flip", keras.layers.RandomFlip, ()),
    ("random_contrast", keras.layers.RandomContrast, ()),
    ("random_brightness", keras.layers.RandomBrightness, ()),
    ("random_crop", keras.layers.RandomCrop, ()),
]:
    _doc = _cls.__doc__.splitlines()[0] if _cls.__module__.startswith("deepfit") else f"keras.layers.{_cls.__name__}"
    LAYERS.register(_name, _aliases, doc=_doc)(_cls)

# Argument suffix → the Keras module that resolves it.
_FAMILIES = {
    "_initializer": keras.initializers,
    "_regularizer": keras.regularizers,
    "_constraint": keras.constraints,
}


def keras_names(module) -> list[str]:
    """The snake_case names a Keras family module resolves (``he_normal``, ``l2``, ...)."""
    skip = {"get", "serialize", "deserialize"}
    return sorted(n for n in dir(module) if n.islower() and not n.startswith("_") and n not in skip)


def resolve(module, value: Any, field: str) -> Any:
    """A Keras object from a name or ``{name = ..., **kwargs}``, with a clear error."""
    if value is None or not isinstance(value, (str, Mapping)):
        return value
    if isinstance(value, Mapping):
        if "name" not in value:
            raise ConfigError(f"{field} = {dict(value)!r} needs a name, e.g. {{ name = 'l2', l2 = 0.01 }}")
        name, kwargs = value["name"], {k: v for k, v in value.items() if k != "name"}
    else:
        name, kwargs = value, None
    names = keras_names(module)
    if not isinstance(name, str) or name.lower() not in names:
        family = module.__name__.rsplit(".", 1)[-1]
        raise ConfigError(
            f"{field}: unknown {family[:-1]} {name!r}.{did_you_mean(str(name), names)} "
            f"Valid names: {', '.join(names)}."
        )
    try:
        # Keras's snake_case names are its classes (keras.regularizers.l1_l2 is L1L2).
        return module.get(name) if kwargs is None else getattr(module, name.lower())(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{field} = {value!r}: {e}") from None


@register_check("layer")
def check_layer(spec: Any) -> None:
    """A config's layer spec: the type by name, the arguments as Keras takes them (the layer is
    constructed to let Keras check its values; it has no weights until built)."""
    make_layer(expand([spec])[0] if isinstance(spec, Mapping) else spec)


def make_layer(spec: Mapping[str, Any]) -> keras.layers.Layer:
    """One Keras layer from a spec (see the module docstring)."""
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ConfigError(f"a layer spec needs a type, e.g. {{ type = 'dense', units = 10 }}; got {spec!r}")
    kind = spec["type"]
    if kind in LAYERS:
        cls = LAYERS.get(kind)
    elif isinstance(kind, str) and kind in CODE_LAYERS:
        raise ConfigError(
            f"layer type {kind!r} runs Python code or loads a file, which a config (data, never code) may not "
            "ask for; write such a model in Python and pass it as deepfit.train(model=...)"
        )
    elif isinstance(kind, str) and isinstance(getattr(keras.layers, kind, None), type):
        cls = getattr(keras.layers, kind)  # any other Keras layer by its class name
    else:
        LAYERS.get(kind)  # raises with the valid names and the closest one
    kwargs: dict[str, Any] = {}
    for key, value in spec.items():
        if key == "type":
            continue
        family = next((m for suffix, m in _FAMILIES.items() if key.endswith(suffix)), None)
        if family is not None:
            value = resolve(family, value, key)
        elif key == "activation":
            if not isinstance(value, str):
                raise ConfigError(
                    f"activation must be a Keras name such as 'relu', got {value!r}; for an activation "
                    f"with arguments use its layer, e.g. {{ type = 'leaky_relu', negative_slope = 0.2 }}"
                )
            value = resolve(keras.activations, value, key) and value
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        if "keyword argument" not in str(e):
            raise ConfigError(f"layer {kind!r}: {e}") from None
        params = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")]
        params += ["name", "dtype", "trainable"]
        bad = [k for k in kwargs if k not in params]
        hint = did_you_mean(bad[0], params) if bad else ""
        raise ConfigError(f"layer {kind!r} has no argument {bad[0] if bad else ''!r}.{hint} "
                          f"Its arguments: {', '.join(params)}.") from None


def expand(specs: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Layer specs with ``repeat = N`` written out N times (the 100-layer networks)."""
    out = []
    for spec in specs:
        n = spec.get("repeat", 1)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10_000:
            raise ConfigError(f"repeat must be an integer from 1 to 10000, got {n!r}")
        out += [{k: v for k, v in spec.items() if k != "repeat"} for _ in range(n)]
    return out
