"""The config: validated data and nothing else.

A config is a TOML file or a dict of the same shape. Everything a run needs to
be rerun is in it, the seed included. Names are checked here, through Keras for
Keras's families and through deepfit's registries for its own, so a typo fails
before any data is read or any directory is written.
"""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from deepfit.errors import ConfigError


class Strict(BaseModel):
    # allow_inf_nan=False: `gt=0` alone lets inf through (measured), and a NaN rate is never meant.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)


Spec = dict[str, Any]

# The names inside a spec (layer types, optimizers, schedules, callbacks) belong to the modules that
# build them, which sit above this one (they read configs). Each registers its check here, a lookup
# of the name and of the arguments in a signature, so validating a config imports nothing above it
# and builds nothing. Importing ``deepfit`` (which ``import deepfit.config`` does first) registers all.
SPEC_CHECKS: dict[str, Callable[[Any], None]] = {}


def register_check(kind: str) -> Callable:
    """Decorator: ``fn(spec)`` raises ConfigError when a ``kind`` spec is wrong."""
    def register(fn: Callable[[Any], None]) -> Callable[[Any], None]:
        SPEC_CHECKS[kind] = fn
        return fn
    return register


def check_spec(kind: str, spec: Any) -> None:
    check = SPEC_CHECKS.get(kind)
    if check is not None:
        check(spec)


def _valid(kind: str, spec: Any, where: str = "") -> Any:
    """:func:`check_spec` inside a pydantic validator: the ConfigError becomes the ValueError pydantic reports."""
    try:
        check_spec(kind, spec)
    except ConfigError as e:
        raise ValueError(f"{where}{e}") from None
    return spec


class DataConfig(Strict):
    """Where the data comes from and how it is split and scaled.

    ``source``: ``"fashion_mnist"`` (the bundled copy), ``"directory"`` (IDX files
    named as the official release, in ``path``), ``"download"`` (the official
    files, checked and cached in ``cache_dir``) or ``"arrays"`` (NumPy arrays
    handed to :func:`deepfit.train` from Python).

    A task split keeps some classes only, in train, validation and test alike
    (the notebook's tasks A and B): ``classes = [0, 1, 2, 3, 4, 7, 8, 9]`` keeps
    those classes and relabels them 0..k-1 in the order listed;
    ``positive_class = 6`` with ``negative_class = 5`` (or a list) makes a binary
    task with labels 1 and 0, for a sigmoid output and ``binary_crossentropy``.
    The split applies after the validation split and before ``train_size``, so
    ``train_size = 200`` keeps the first 200 training images *of the task*.
    """

    source: Literal["fashion_mnist", "directory", "download", "arrays"] = "fashion_mnist"
    path: str | None = None
    cache_dir: str | None = None
    validation_size: int = Field(5000, ge=0)
    # Keras's validation_split: the last fraction of the training images (instead of validation_size's first N).
    validation_split: float | None = Field(None, gt=0, lt=1)
    train_size: int | None = Field(None, gt=0)
    scaling: Literal["none", "divide255", "standardize"] = "divide255"
    classes: list[int] | None = Field(None, min_length=1)
    positive_class: int | None = Field(None, ge=0)
    negative_class: int | list[int] | None = None

    @pydantic.model_validator(mode="after")
    def _path_for_directory(self) -> "DataConfig":
        if self.source == "directory" and not self.path:
            raise ValueError("source = 'directory' needs path = 'DIR' (a folder of IDX files)")
        return self

    @pydantic.model_validator(mode="after")
    def _one_validation_rule(self) -> "DataConfig":
        # (validation_size's default may be present: a config dumped and read back holds every field)
        if self.validation_split is not None and self.validation_size != DataConfig.model_fields["validation_size"].default:
            raise ValueError(f"give validation_size (the first N images) or validation_split (the last fraction, "
                             f"as Keras), not both (got {self.validation_size} and {self.validation_split})")
        return self

    @pydantic.model_validator(mode="after")
    def _task_split(self) -> "DataConfig":
        if self.classes is not None:
            if self.positive_class is not None or self.negative_class is not None:
                raise ValueError("give either classes = [...] (keep and relabel) or positive_class / "
                                 "negative_class (a binary task), not both")
            if any(c < 0 for c in self.classes) or len(set(self.classes)) != len(self.classes):
                raise ValueError(f"classes must be distinct non-negative class indices, got {self.classes}")
        if (self.positive_class is None) != (self.negative_class is None):
            raise ValueError("a binary task needs both positive_class and negative_class "
                             f"(got positive_class = {self.positive_class}, negative_class = {self.negative_class})")
        if self.positive_class is not None:
            negatives = self.negative_classes
            if not negatives or any(c < 0 for c in negatives) or len(set(negatives)) != len(negatives):
                raise ValueError(f"negative_class must be a class index or a list of distinct ones, "
                                 f"got {self.negative_class}")
            if self.positive_class in negatives:
                raise ValueError(f"positive_class {self.positive_class} is also a negative_class")
        return self

    @property
    def negative_classes(self) -> list[int]:
        n = self.negative_class
        return [] if n is None else [n] if isinstance(n, int) else list(n)


class ModelConfig(Strict):
    """A ``keras.Sequential`` network: an input shape and a list of layer specs.

    Each spec is ``{type = "dense", units = 300, ...}`` with Keras's own argument
    names; ``deepfit list layers`` shows the types.

    Transfer learning: ``from_run = "runs/task_a"`` starts from a finished run's
    model, keeps all its layers but the last ``drop_last`` (cloned, with their
    trained weights unless ``reuse_weights = false``) and adds ``layers`` on top
    as the new head. A relative path is relative to the working directory.

    ``architecture``: instead of ``layers``, a Keras model's architecture as Keras's JSON
    (``model.to_json()``), what a run trained on a model handed in from Python records;
    rebuilt with ``safe_mode=True``, initialized from the seed.
    """

    input_shape: list[int] = Field(default_factory=lambda: [28, 28])
    layers: list[Spec] = Field(default_factory=list)
    architecture: str | None = None
    from_run: str | None = None
    drop_last: int = Field(1, ge=0)
    reuse_weights: bool = True

    @field_validator("input_shape")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(d <= 0 for d in v):
            raise ValueError(f"input_shape needs positive sizes, got {v}")
        return v

    @pydantic.model_validator(mode="after")
    def _layers_or_architecture(self) -> "ModelConfig":
        if not self.layers and self.architecture is None:
            raise ValueError("model.layers needs at least one layer (or model.architecture, Keras's model JSON)")
        if self.layers and self.architecture is not None and self.from_run is None:
            raise ValueError("give model.layers or model.architecture, not both")
        return self

    @field_validator("layers")
    @classmethod
    def _layers(cls, specs: list[Spec]) -> list[Spec]:
        for i, spec in enumerate(specs):
            _valid("layer", spec, f"layer {i}: ")
        return specs


class FreezePhase(Strict):
    """One phase of a freeze schedule: for ``epochs`` epochs, only ``trainable`` layers learn.

    ``trainable``: ``"all"``, ``"head"`` (the layers ``model.layers`` adds on top of
    a reused model; without ``from_run``, the output layer), ``"none"``, or a
    list of layer indexes (in ``model.layers``, Flatten is 0; negative from the
    end) and layer names.
    """

    epochs: int = Field(ge=1, le=100_000)
    trainable: Literal["all", "head", "none"] | list[int | str]


class TrainingConfig(Strict):
    """Loss, optimizer, schedule, epochs and callbacks.

    ``freeze = [{ epochs = 4, trainable = "head" }, { epochs = 16, trainable = "all" }]``
    trains in phases, with a fresh optimizer at each (the notebook recompiles);
    epochs, history and data order continue. The last phase lasts until
    ``epochs`` if the phases are shorter. ``frozen_batch_norm``: ``"inference"``
    (Keras's rule: a frozen BatchNormalization layer normalizes with its moving
    statistics and does not update them) or ``"trainable"`` (BatchNormalization
    layers are never frozen, as fastai's ``train_bn``).
    """

    # Any Keras loss, by name or as a table with its arguments ({ name = "...", from_logits = true });
    # metrics as model.compile takes them ("accuracy" follows the labels' shape, as in Keras).
    loss: str | Spec = "sparse_categorical_crossentropy"
    metrics: list[str | Spec] = Field(default_factory=lambda: ["accuracy"])
    epochs: int = Field(10, ge=1, le=100_000)
    batch_size: int = Field(32, ge=1, le=1_000_000)
    shuffle: bool = True  # as model.fit's: False keeps the data's order every epoch
    optimizer: Spec = Field(default_factory=lambda: {"name": "sgd", "learning_rate": 0.01})
    schedule: Spec | None = None
    callbacks: list[Spec] = Field(default_factory=list)
    # Steps run per compiled call; None runs a whole epoch per call (fastest).
    steps_per_chunk: int | None = Field(None, ge=1)
    eval_batch_size: int = Field(1000, ge=1)
    progress: bool = True
    tensorboard: bool = False
    freeze: list[FreezePhase] | None = Field(None, min_length=1)
    frozen_batch_norm: Literal["inference", "trainable"] = "inference"

    @field_validator("loss")
    @classmethod
    def _loss(cls, v: str | Spec) -> str | Spec:
        return _valid("loss", v)

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: list[str | Spec]) -> list[str | Spec]:
        for i, m in enumerate(v):
            _valid("metric", m, f"metric {i}: ")
        return v

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer(cls, v: Any) -> Spec:
        return _valid("optimizer", {"name": v} if isinstance(v, str) else v)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: Spec | None) -> Spec | None:
        return v if v is None else _valid("schedule", v)

    @field_validator("callbacks")
    @classmethod
    def _callbacks(cls, specs: list[Spec]) -> list[Spec]:
        for i, spec in enumerate(specs):
            _valid("callback", spec, f"callback {i}: ")
        return specs

    @pydantic.model_validator(mode="after")
    def _phases_begin(self) -> "TrainingConfig":
        """A freeze phase that never begins would turn the schedule into another one without a word (the
        transfer study's 4 + 16 epochs cut to 3 is its frozen phase alone)."""
        begins = 0
        for i, phase in enumerate(self.freeze or []):
            if i and self.epochs <= begins:
                raise ValueError(
                    f"epochs = {self.epochs} ends before phase {i + 1} of training.freeze begins (after epoch "
                    f"{begins}), so that phase would never run: give training.epochs >= {begins + 1}, or shorten "
                    f"the phases before it (training.freeze.{i - 1}.epochs)")
            begins += phase.epochs
        return self


def _reject_non_finite(node: Any, where: str = "") -> None:
    """pydantic's allow_inf_nan stops at typed fields; layer and optimizer specs are free-form."""
    if isinstance(node, float) and not math.isfinite(node):
        raise ValueError(f"{where or 'value'} is {node}; only finite numbers are allowed")
    if isinstance(node, dict):
        for k, v in node.items():
            _reject_non_finite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _reject_non_finite(v, f"{where}.{i}")


class Config(Strict):
    """A whole run: seed, data, model and training."""

    @pydantic.model_validator(mode="before")
    @classmethod
    def _finite(cls, tree: Any) -> Any:
        _reject_non_finite(tree)
        return tree

    name: str | None = None
    # ``seed`` alone derives every stream (init, data order, dropout). ``order_seed`` sets the data
    # order apart from the initial weights (a crossed init x order experiment); dropout's masks then
    # follow the order seed unless ``dropout_seed`` names another.
    seed: int = Field(42, ge=0, lt=2**32)
    order_seed: int | None = Field(None, ge=0, lt=2**32)
    dropout_seed: int | None = Field(None, ge=0, lt=2**32)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @property
    def data_order_seed(self) -> int:
        return self.seed if self.order_seed is None else self.order_seed

    @property
    def noise_seed(self) -> int | None:
        """The seed of dropout's (and any training noise's) stream when set apart; None: the init seed's, as built."""
        return self.dropout_seed if self.dropout_seed is not None else self.order_seed

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def _describe(err: pydantic.ValidationError, origin: str) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (remove it, or check its spelling and section)"
        elif "input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], (dict, list)):
            msg += f" (got {e['input']!r})"
        lines.append(f"{where}: {msg}")
    head = f"invalid config {origin}" if origin else "invalid config"
    return head + ": " + "; ".join(lines)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file as data: nothing in it can run code."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {str(p)!r}: {e}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {e}") from None


def parse_override(text: str) -> tuple[str, Any]:
    """``"training.epochs=5"`` → ``("training.epochs", 5)``; values are TOML, else strings."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} is not key=value (e.g. training.epochs=5)")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``tree["model"]["layers"][1]["units"]`` from ``"model.layers.1.units"``."""
    parts = dotted.split(".")
    node: Any = tree
    for i, part in enumerate(parts[:-1]):
        node = _step(node, part, dotted, create=True)
    last = parts[-1]
    if isinstance(node, list):
        node[_index(node, last, dotted)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"override {dotted!r}: {'.'.join(parts[:-1])!r} holds a value, not a section")


def _index(node: list, part: str, dotted: str) -> int:
    try:
        i = int(part)
        node[i]
        return i
    except (ValueError, IndexError):
        raise ConfigError(
            f"override {dotted!r}: {part!r} is not an index of a list of {len(node)} items"
        ) from None


def _step(node: Any, part: str, dotted: str, create: bool) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, dotted)]
    if isinstance(node, dict):
        if part not in node or node[part] is None:
            if not create:
                raise ConfigError(f"override {dotted!r}: no key {part!r}")
            node[part] = {}
        return node[part]
    raise ConfigError(f"override {dotted!r}: {part!r} is below a value, not a section")


def load_config(
    source: str | Path | Mapping[str, Any] | Config,
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> Config:
    """A validated :class:`Config` from a TOML path, a dict or a Config, with overrides.

    Overrides are ``"dotted.path=value"`` strings (values parsed as TOML) or a
    mapping of dotted paths to values; each is checked against the schema.
    """
    if isinstance(source, Config):
        tree, origin = source.to_dict(), ""
    elif isinstance(source, Mapping):
        tree, origin = copy.deepcopy(dict(source)), ""
    else:
        tree, origin = read_toml(source), repr(str(source))
    items = overrides.items() if isinstance(overrides, Mapping) else map(parse_override, overrides)
    for key, value in items:
        set_path(tree, key, value)
    try:
        return Config.model_validate(tree)
    except pydantic.ValidationError as e:
        raise ConfigError(_describe(e, origin)) from None


def dump_toml(cfg: Config) -> str:
    import tomli_w

    def drop_none(tree: Any) -> Any:  # TOML has no null: an absent key means the same
        if isinstance(tree, dict):
            return {k: drop_none(v) for k, v in tree.items() if v is not None}
        return [drop_none(v) for v in tree] if isinstance(tree, list) else tree

    try:
        return tomli_w.dumps(drop_none(cfg.to_dict()))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"the config cannot be written as TOML ({e}); use plain numbers, strings and tables") from None
