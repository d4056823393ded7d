"""Config model specs → a plain ``keras.Sequential`` (layers from :mod:`deepfit.nn.specs`)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras.src.backend.common.stateless_scope import in_stateless_scope

from deepfit.config import ModelConfig
from deepfit.nn.specs import expand, make_layer
from deepfit.nn.transfer import build_from_run

# Mixed into the noise layers' seeds so they never coincide with another stream derived from the same number.
NOISE_STREAM = 2


def build_model(model_cfg, seed: int | None = None) -> keras.Sequential:
    """A ``keras.Sequential`` from a :class:`~deepfit.config.ModelConfig` (or its dict).

    ``seed`` seeds Keras's initializers and dropout seed generators right before
    the layers are made, so the same seed gives the same initial weights.
    """
    cfg = model_cfg if isinstance(model_cfg, ModelConfig) else ModelConfig.model_validate(model_cfg)
    if cfg.from_run is not None:
        return build_from_run(cfg, seed)
    if cfg.architecture is not None:
        from deepfit.keras_model import build_architecture

        model = build_architecture(cfg.architecture, seed)
    else:
        model = _build_layers(cfg, seed)
    if cfg.initial_weights is not None and not in_stateless_scope():  # a sizing pass has no values to set
        load_initial_weights(model, cfg.initial_weights)
    return model


def load_initial_weights(model: keras.Model, path: str) -> None:
    """``model.initial_weights``: the weights file, checked against a ``SHA256SUMS`` beside it when there is one."""
    from deepfit.data.idx import read_sums
    from deepfit.errors import CheckpointError, ConfigError
    from deepfit.io import file_digest
    from deepfit.serialize import load_weights

    p = Path(path).expanduser()
    sums = p.parent / "SHA256SUMS"
    try:
        listed = read_sums(sums) if sums.is_file() else {}
        if p.name in listed and file_digest(p) != listed[p.name]:
            raise ConfigError(f"model.initial_weights {str(p)!r}: sha256 does not match {sums}; the file "
                              f"was changed or corrupted")
        load_weights(model, p)
    except CheckpointError as e:
        raise ConfigError(f"model.initial_weights: {e}") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"model.initial_weights {str(p)!r} cannot be read: {e}") from None


def _build_layers(cfg: ModelConfig, seed: int | None) -> keras.Sequential:
    if seed is not None:
        keras.utils.set_random_seed(seed)
    layers, counts = [], {}
    for spec in expand(cfg.layers):
        layer = make_layer(spec)
        if "name" not in spec:
            # Keras's own naming as in a fresh session ("dense", "dense_1", ...), whatever
            # this process built before: the summary and saved weights then read the same.
            base = keras.src.utils.naming.to_snake_case(type(layer).__name__)
            n = counts.get(base, 0)
            counts[base] = n + 1
            layer.name = base if n == 0 else f"{base}_{n}"
        layers.append(layer)
    return keras.Sequential([keras.Input(tuple(cfg.input_shape), name="input_layer"), *layers], name="sequential")


def reseed_noise(model: keras.Model, seed: int) -> int:
    """Give every layer that samples in training (Dropout, AlphaDropout, RReLU, the data augmentation layers, ...)
    a stream derived from ``seed``.

    Built under ``keras.utils.set_random_seed(init_seed)``, those layers' seed
    generators draw from the same global stream as the initializers, so the
    masks would move with the initial weights. Here layer k (in model order)
    gets the state ``[SeedSequence((seed, k)), 0]`` instead (a Keras
    SeedGenerator's state is ``[seed, counter]``): the same ``seed`` gives the
    same masks whatever the initial weights. Returns how many layers were reseeded.
    """
    k = 0
    for layer in model._flatten_layers(include_self=False):
        # Keras's preprocessing layers call their SeedGenerator ``generator``.
        generator = getattr(layer, "seed_generator", None) or getattr(layer, "generator", None)
        if not isinstance(generator, keras.random.SeedGenerator):
            continue
        value = int(np.random.SeedSequence([seed, NOISE_STREAM, k]).generate_state(1)[0])
        generator.state.assign(np.array([value, 0], dtype=keras.backend.standardize_dtype(generator.state.dtype)))
        k += 1
    return k


def summary(model: keras.Model) -> str:
    """Keras's own summary as text: layers, output shapes, trainable / non-trainable counts."""
    lines: list[str] = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line))
    return "\n".join(lines)
