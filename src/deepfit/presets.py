"""The chapter's default configurations (Tables 11-3 and 11-4) as configs a user starts from.

``deepfit new default --out my.toml --depth 20`` writes a TOML config whose
every choice carries a comment naming the row of the table it follows. A
preset is a function of the depth (the table's "batch norm if deep" changes the
layer list), so it is rendered here as text rather than stored as one file;
what it renders is plain config data, validated by :func:`deepfit.config.load_config`
before it is returned. The renderings at depth 2 and 20 are kept in
``configs/presets/`` (a test checks they match).

Choices the tables leave open, and deepfit's answer:

* widths: the notebook's (300 units, then 100 per layer), so depth 2 is the
  notebook's 784-300-100-10 network;
* "deep": :data:`DEEP_FROM` hidden layers or more (the book gives no number);
* the rates: 1cycle as the notebook's cell 84 (max rate 0.05, batch 128) but with
  SGD's momentum cycled 0.95 → 0.85 → 0.95, as the chapter's text describes;
  ``deepfit find-lr FILE --apply`` replaces the max rate with the LR finder's.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

from deepfit.config import load_config
from deepfit.errors import ConfigError
from deepfit.registry import did_you_mean

DEEP_FROM = 10
WIDTHS = (300, 100)  # the first hidden layer, then every other


@dataclass(frozen=True)
class Preset:
    name: str
    table: str
    title: str
    initializer: str
    activation: str
    summary: str


PRESETS: dict[str, Preset] = {
    "default": Preset("default", "Table 11-3", "Default DNN configuration", "he_normal", "elu",
                      "He init, ELU, batch norm if deep, early stopping, momentum optimization, 1cycle"),
    "self_normalizing": Preset("self_normalizing", "Table 11-4", "DNN configuration for a self-normalizing net",
                               "lecun_normal", "selu",
                               "LeCun init, SELU, no normalization, momentum optimization, 1cycle"),
}


def _dense(units: int, p: Preset, repeat: int = 1) -> str:
    more = f", repeat = {repeat}" if repeat > 1 else ""
    return (f'  {{ type = "dense", units = {units}, activation = "{p.activation}", '
            f'kernel_initializer = "{p.initializer}"{more} }},')


def render(name: str, depth: int = 2, batch_norm: bool | None = None) -> str:
    """The preset's TOML text for ``depth`` hidden layers; ``batch_norm`` None follows the table."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}.{did_you_mean(name, list(PRESETS))} "
                          f"Presets: {', '.join(PRESETS)} (deepfit new --list).")
    if not isinstance(depth, int) or not 1 <= depth <= 1000:
        raise ConfigError(f"--depth must be a number of hidden layers from 1 to 1000, got {depth!r}")
    p = PRESETS[name]
    selu = p.activation == "selu"
    deep = depth >= DEEP_FROM
    if selu and batch_norm:
        raise ConfigError("the self_normalizing preset has no batch norm: Table 11-4 says 'None "
                          "(self-normalization)', and batch norm would undo what SELU preserves")
    bn = (deep and not selu) if batch_norm is None else batch_norm
    t = p.table
    lines = [
        f"# deepfit preset {name!r}: the chapter's {t}, \"{p.title}\".",
        f"# Written by: deepfit new {name} --depth {depth}"
        + ("" if batch_norm is None else (" --batch-norm" if batch_norm else " --no-batch-norm")),
        f"# {p.summary}. Each line names the row of {t} it follows; train it as it is:",
        "#   deepfit train THIS_FILE --out runs/NAME",
        "# and set the 1cycle max rate from the LR finder: deepfit find-lr THIS_FILE --apply",
        f'name = "{name}{"" if depth == 2 else f"_{depth}"}"',
        "seed = 42",
        "",
        "[data]",
        'scaling = "standardize"   # the chapter\'s tip: "Don\'t forget to normalize the input features!"'
        + (" (SELU needs mean 0, std 1 inputs)" if selu else ""),
        "",
        "[model]",
        "input_shape = [28, 28]",
        f"# {depth} hidden layer{'s' if depth > 1 else ''} ({WIDTHS[0]}"
        + (f", then {depth - 1} x {WIDTHS[1]}" if depth > 1 else "") + " units), "
        + ("deep" if deep else "shallow") + f" by deepfit's line (deep: {DEEP_FROM} hidden layers or more).",
        f"# {t}, kernel initializer: {'LeCun' if selu else 'He'} initialization -> "
        f"kernel_initializer = \"{p.initializer}\".",
        f"# {t}, activation function: {'SELU' if selu else 'ELU'} -> activation = \"{p.activation}\".",
    ]
    if selu:
        lines.append(f"# {t}, normalization: None (self-normalization) -> no batch_norm layer.")
    elif bn:
        lines.append(f"# {t}, normalization: " + ("Batch Norm if deep -> a batch_norm layer after each hidden "
                                                  "Dense (as the notebook's cell 32)." if deep else
                                                  "batch norm asked for (--batch-norm) although the network is "
                                                  "shallow."))
    else:
        lines.append(f"# {t}, normalization: " + ("None if shallow -> no batch_norm layer." if not deep else
                                                  "batch norm left out (--no-batch-norm) although the network "
                                                  "is deep."))
    lines.append("layers = [")
    lines.append('  { type = "flatten" },')
    if bn:
        for i in range(depth):
            lines.append(_dense(WIDTHS[0] if i == 0 else WIDTHS[1], p))
            lines.append('  { type = "batch_norm" },')
    else:
        lines.append(_dense(WIDTHS[0], p))
        if depth > 1:
            lines.append(_dense(WIDTHS[1], p, depth - 1))
    if selu:
        lines.append(f"  # {t}, regularization: Alpha dropout if needed, e.g. before the output layer:")
        lines.append('  # { type = "alpha_dropout", rate = 0.1 },')
    lines += [
        '  { type = "dense", units = 10, activation = "softmax" },',
        "]",
        "",
        "[training]",
        "epochs = 25",
        "batch_size = 128   # the notebook's 1cycle cell (84)",
        f"# {t}, optimizer: Momentum optimization (or RMSProp or Nadam). The rate is the schedule's.",
        'optimizer = { name = "sgd", learning_rate = 0.005, momentum = 0.9 }',
        f"# {t}, learning rate schedule: 1cycle (the notebook's max rate; momentum cycles 0.95 -> 0.85 -> 0.95).",
        'schedule = { name = "one_cycle", max_rate = 0.05 }',
    ]
    if not selu:  # Table 11-4's only regularization row is alpha dropout (in the layer list above)
        lines.append(f"# {t}, regularization: Early stopping (+ l2 reg. if needed: add "
                     "kernel_regularizer = { name = \"l2\", l2 = 0.01 } to the hidden layers).")
        lines.append('callbacks = [{ name = "early_stopping", patience = 10, restore_best_weights = true }]')
    text = "\n".join(lines) + "\n"
    load_config(tomllib.loads(text))  # a preset that does not load is a bug here, not the user's
    return text


__all__ = ["DEEP_FROM", "PRESETS", "Preset", "render"]
