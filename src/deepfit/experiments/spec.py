"""An experiment: a base config, named variants (overrides by dotted path) and seeds.

An experiment file is TOML::

    name = "activations"            # optional
    base = "../leaky_relu.toml"     # relative to this file, or an inline table
    seeds = [0, 1, 2, 3, 4]         # or a count: seeds = 5 means 0..4
    reference = "relu"              # the variant others are compared with (default: the first)
    metric = "val_accuracy"         # the headline metric of the report (default)
    test = "t"                      # the fixed-n test shown beside the verdict: "t" (default) or "wilcoxon"
    equivalence = 0.005             # smallest difference of interest in the metric (default: one point of an
                                    # accuracy-like metric, 0.01 of a crossentropy; else no "equivalent" verdict)
    direction = "max"               # only for a metric whose Keras object declares no direction: "max" or "min"
    overrides = { "training.epochs" = 5 }   # applied to every variant, before its own

    [[variants]]
    name = "relu"
    overrides = { "model.layers.1.activation" = "relu" }

Initialization and data order apart: instead of ``seeds``, a table ::

    [seeds]
    init = [0, 1, 2, 3, 4]          # or a count
    order = [0, 1, 2, 3, 4]

crosses them: every (init, order) cell is one run (25 here), whose config has
``seed = init`` and ``order_seed = order`` (dropout's masks follow the order
seed). A plain ``seeds = [...]`` keeps its meaning: one seed drives all three.
The report then splits each variant's spread into init, order and residual
variance and compares variants on shared cells (:mod:`deepfit.experiments.variance`).

A string override may hold ``{seed}``, replaced by each run's seed label (e.g. a
``model.from_run`` that points at the same seed's run of another experiment).
Every (variant, seed) config is validated before anything runs: an invalid
override fails at once, naming the variant and the dotted path.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from deepfit.config import Config, load_config, parse_override, read_toml
from deepfit.errors import ConfigError

EXPERIMENT_KEYS = {"name", "base", "seeds", "reference", "metric", "test", "overrides", "variants", "equivalence",
                   "direction", "seeds_per_variant"}
SEED_KEYS = {"init", "order"}
TESTS = ("t", "wilcoxon")  # as deepfit.experiments.stats.TESTS (spec sits below stats: it does not import it)
VARIANT_KEYS = {"name", "overrides"}
# A variant name becomes a directory name: keep it portable and unambiguous.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


@dataclass(frozen=True, order=True)
class Cell:
    """One (init seed, order seed) cell of a crossed experiment; its label names its run directory."""

    init: int
    order: int

    def __str__(self) -> str:
        return f"i{self.init}-o{self.order}"


def init_order(seed: int | Cell) -> tuple[int, int]:
    """(init seed, order seed) of a run: a plain seed is both."""
    return (seed.init, seed.order) if isinstance(seed, Cell) else (seed, seed)


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class Experiment:
    """What to run: ``base`` (a config tree) × ``variants`` × ``seeds``."""

    name: str
    base: dict[str, Any]
    variants: list[Variant]
    seeds: list[int | Cell]  # plain seeds, or the cells of init x order
    reference: str
    metric: str = "val_accuracy"
    overrides: dict[str, Any] = field(default_factory=dict)
    test: str = "t"
    equivalence: float | None = None  # the equivalence margin δ of the metric (None: the metric's default)
    direction: str | None = None  # "max" / "min" for a metric deepfit cannot tell the direction of
    # Written by --until-decided: how many of ``seeds`` (the first ones) each variant trains; None: all.
    seeds_per_variant: dict[str, int] | None = None

    @property
    def is_crossed(self) -> bool:
        return any(isinstance(s, Cell) for s in self.seeds)

    def config(self, variant: str | Variant, seed: int | Cell) -> Config:
        """The validated config of one run: base, shared overrides, the variant's, then the seed(s)."""
        v = variant if isinstance(variant, Variant) else self.variant(variant)
        tree = copy.deepcopy(self.base)
        tree.setdefault("name", f"{self.name}-{v.name}")
        overrides = {k: x.replace("{seed}", str(seed)) if isinstance(x, str) else x
                     for k, x in {**self.overrides, **v.overrides}.items()}
        seeds = {"seed": seed.init, "order_seed": seed.order} if isinstance(seed, Cell) else {"seed": seed}
        return load_config(tree, {**overrides, **seeds})

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise ConfigError(f"experiment {self.name!r} has no variant {name!r}; its variants: "
                          f"{', '.join(v.name for v in self.variants)}")

    def runs(self) -> list[tuple[Variant, int]]:
        """Every (variant, seed), seed-major so an interrupted sweep has every variant on its first seeds
        (with ``seeds_per_variant``, each variant's first ones only)."""
        counts = self.seeds_per_variant
        return [(v, s) for i, s in enumerate(self.seeds) for v in self.variants
                if counts is None or i < counts.get(v.name, 0)]

    def validate(self) -> None:
        """Build every run's config now, so a typo fails before hours of training."""
        for v in self.variants:
            try:
                self.config(v, self.seeds[0])
            except ConfigError as e:
                raise ConfigError(f"experiment {self.name!r}, variant {v.name!r}{_culprit(self, v)}: {e}") from None
        self._check_shared_outputs()

    def _check_shared_outputs(self) -> None:
        """A callback's absolute path (a relative one lands in each run's directory) written by several runs
        would hold whichever run wrote last: refused."""
        from deepfit.train.callbacks.registry import paths_of

        writers: dict[str, list[str]] = {}
        for v, seed in self.runs():
            for spec in self.config(v, seed).training.callbacks:
                for arg, path in paths_of(spec).items():
                    if Path(path).is_absolute():
                        name = spec if isinstance(spec, str) else spec.get("name")
                        writers.setdefault(path, []).append(f"{v.name} seed {seed} ({name}.{arg})")
        for path, runs in writers.items():
            if len(runs) > 1:
                raise ConfigError(
                    f"experiment {self.name!r}: {len(runs)} runs would write the same {path!r} "
                    f"({', '.join(runs[:3])}{', ...' if len(runs) > 3 else ''}): give the callback a relative "
                    f"path, which each run places in its own directory")

    def seeds_spec(self) -> list[int] | dict[str, list[int]]:
        """The seeds as an experiment file writes them."""
        if not self.is_crossed:
            return list(self.seeds)
        return {"init": list(dict.fromkeys(c.init for c in self.seeds)),
                "order": list(dict.fromkeys(c.order for c in self.seeds))}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "base": self.base, "seeds": self.seeds_spec(), "reference": self.reference,
                "metric": self.metric, "test": self.test, "overrides": self.overrides,
                "variants": [{"name": v.name, "overrides": v.overrides} for v in self.variants],
                **({"equivalence": self.equivalence} if self.equivalence is not None else {}),
                **({"direction": self.direction} if self.direction is not None else {}),
                **({"seeds_per_variant": dict(self.seeds_per_variant)} if self.seeds_per_variant is not None else {})}


def _culprit(exp: Experiment, v: Variant) -> str:
    """Name the override path(s) that break the config when applied alone to the base."""
    bad = []
    for key, value in {**exp.overrides, **v.overrides}.items():
        try:
            load_config(copy.deepcopy(exp.base), {key: value})
        except ConfigError:
            bad.append(key)
    return f" (override {', '.join(repr(b) for b in bad)})" if bad else ""


def _seeds(value: Any, origin: str) -> list[int | Cell]:
    """Plain seeds (a count or a list), or the cells of an ``{init, order}`` table, init-major."""
    if isinstance(value, Mapping):
        bad = sorted(set(value) ^ SEED_KEYS)
        if bad:
            raise ConfigError(f"{origin}: [seeds] as a table needs exactly init and order (e.g. init = 5, "
                              f"order = [0, 1, 2]); {'unknown' if bad[0] not in SEED_KEYS else 'missing'} "
                              f"key {bad[0]!r}")
        inits = _plain(value["init"], f"{origin}: seeds.init")
        orders = _plain(value["order"], f"{origin}: seeds.order")
        return [Cell(i, o) for i in inits for o in orders]
    return list(_plain(value, origin))


def _plain(value: Any, origin: str) -> list[int]:
    if isinstance(value, bool):
        value = None
    if isinstance(value, int) and value >= 1:
        return list(range(value))
    if (isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool)
                                                  and 0 <= s < 2**32 for s in value)
            and len(set(value)) == len(value)):
        return list(value)
    raise ConfigError(f"{origin}: seeds = {value!r} must be a count (seeds = 5) or a list of distinct "
                      f"non-negative integers (seeds = [0, 1, 2]), or a table [seeds] init = ..., order = ...")


def parse_seeds(text: str | int | Sequence[int] | Mapping[str, Any]) -> list[int | Cell]:
    """``5`` → [0..4]; ``"0,3,7"`` → [0, 3, 7]; ``"5x3"`` → init 0..4 crossed with order 0..2 (the CLI's ``--seeds``)."""
    if isinstance(text, Mapping):
        return _seeds(dict(text), "seeds")
    if isinstance(text, str) and re.fullmatch(r"\s*\d+\s*x\s*\d+\s*", text):
        i, o = (int(p) for p in text.split("x"))
        return _seeds({"init": i, "order": o}, f"--seeds {text!r}")
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"--seeds {text!r}: give a count (--seeds 5), a list (--seeds 0,1,2) or init x order "
                              f"counts (--seeds 5x5)") from None
        return _seeds(nums[0] if len(nums) == 1 and "," not in text else nums, "--seeds")
    return _seeds(list(text) if not isinstance(text, int) else text, "seeds")


def _overrides(value: Any, origin: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        # TOML's dotted keys inside an inline table nest: {"a.b" = 1} stays flat only when quoted.
        return dict(_flatten(value))
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return dict(parse_override(x) for x in value)
    raise ConfigError(f"{origin}: overrides must be a table of dotted paths to values, "
                      f"e.g. overrides = {{ \"training.epochs\" = 5 }}; got {value!r}")


def _flatten(tree: Mapping[str, Any], prefix: str = ""):
    for k, v in tree.items():
        key = f"{prefix}{k}"
        # A nested table from unquoted dotted keys (a.b = 1) is a path; a quoted "a.b" key already is one.
        if isinstance(v, Mapping) and not _is_value_table(key, v):
            yield from _flatten(v, key + ".")
        else:
            yield key, v


def _is_value_table(key: str, v: Mapping[str, Any]) -> bool:
    # Specs such as optimizer = { name = "nadam", ... } are values, not paths.
    return "name" in v or "type" in v


def load_experiment(
    source: str | Path | Mapping[str, Any] | Experiment,
    seeds: int | str | Sequence[int] | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> Experiment:
    """An :class:`Experiment` from a TOML path or a dict, validated (every variant's config built).

    ``seeds`` replaces the file's seeds; ``overrides`` (dotted path → value, or
    ``"path=value"`` strings) apply to every variant, after the file's shared ones.
    """
    if isinstance(source, Experiment):
        exp = copy.deepcopy(source)
    else:
        if isinstance(source, Mapping):
            tree, origin, here = copy.deepcopy(dict(source)), "experiment", Path(".")
        else:
            tree, origin, here = read_toml(source), f"experiment {str(source)!r}", Path(source).parent
        exp = _from_tree(tree, origin, here, default_name=Path(str(source)).stem if not isinstance(source, Mapping)
                         else "experiment")
    if seeds is not None:
        exp.seeds = parse_seeds(seeds)
        _check_test(exp, "--seeds")
    extra = overrides.items() if isinstance(overrides, Mapping) else map(parse_override, overrides)
    exp.overrides = {**exp.overrides, **dict(extra)}
    exp.validate()
    return exp


def _from_tree(tree: dict[str, Any], origin: str, here: Path, default_name: str) -> Experiment:
    unknown = sorted(set(tree) - EXPERIMENT_KEYS)
    if unknown:
        raise ConfigError(f"{origin}: unknown key {unknown[0]!r}; an experiment has "
                          f"{', '.join(sorted(EXPERIMENT_KEYS))}")
    base = tree.get("base")
    if isinstance(base, str):
        path = Path(base) if Path(base).is_absolute() else here / base
        base = read_toml(path)
    elif base is None or not isinstance(base, Mapping):
        raise ConfigError(f"{origin}: base must be a config file path (relative to the experiment file) "
                          f"or an inline table; got {base!r}")
    variants_raw = tree.get("variants")
    if not isinstance(variants_raw, list) or not variants_raw:
        raise ConfigError(f"{origin}: needs at least one [[variants]] table with a name")
    variants: list[Variant] = []
    for i, v in enumerate(variants_raw):
        if not isinstance(v, Mapping) or "name" not in v:
            raise ConfigError(f"{origin}: variants[{i}] needs a name, e.g. [[variants]] name = \"relu\"")
        bad = sorted(set(v) - VARIANT_KEYS)
        if bad:
            raise ConfigError(f"{origin}: variant {v['name']!r}: unknown key {bad[0]!r}; a variant has "
                              f"name and overrides")
        name = v["name"]
        if not isinstance(name, str) or not NAME.match(name):
            raise ConfigError(f"{origin}: variant name {name!r} must be 1-64 letters, digits, '_', '-', '.', '+' "
                              f"(it names a directory)")
        if any(x.name == name for x in variants):
            raise ConfigError(f"{origin}: two variants are named {name!r}; names must be unique")
        variants.append(Variant(name, _overrides(v.get("overrides"), f"{origin}: variant {name!r}")))
    reference = tree.get("reference", variants[0].name)
    if reference not in [v.name for v in variants]:
        raise ConfigError(f"{origin}: reference = {reference!r} is not a variant; choose one of "
                          f"{', '.join(v.name for v in variants)}")
    name = tree.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{origin}: name must be a non-empty string; got {name!r}")
    metric = tree.get("metric", "val_accuracy")
    if not isinstance(metric, str):
        raise ConfigError(f"{origin}: metric must be a metric name such as 'val_accuracy'; got {metric!r}")
    test = tree.get("test", "t")
    if test not in TESTS:
        raise ConfigError(f"{origin}: test = {test!r} is not one of {', '.join(map(repr, TESTS))}; the test is "
                          f"chosen here, before any data, never from them (no 'auto')")
    equivalence = tree.get("equivalence")
    if equivalence is not None and (isinstance(equivalence, bool) or not isinstance(equivalence, (int, float))
                                    or not 0 < equivalence < float("inf")):
        raise ConfigError(f"{origin}: equivalence = {equivalence!r} must be a positive number in the metric's units "
                          f"(e.g. equivalence = 0.005 for half a point of accuracy)")
    direction = tree.get("direction")
    if direction not in (None, "max", "min"):
        raise ConfigError(f"{origin}: direction = {direction!r} must be 'max' (higher is better) or 'min' "
                          f"(lower is better)")
    exp = Experiment(name=name, base=dict(base), variants=variants,
                     seeds=_seeds(tree.get("seeds", [0, 1, 2, 3, 4]), origin), reference=reference,
                     metric=metric, overrides=_overrides(tree.get("overrides"), f"{origin}: overrides"), test=test,
                     equivalence=None if equivalence is None else float(equivalence), direction=direction,
                     seeds_per_variant=_counts(tree.get("seeds_per_variant"), variants, origin))
    _check_test(exp, origin)
    return exp


def _counts(value: Any, variants: list[Variant], origin: str) -> dict[str, int] | None:
    if value is None:
        return None
    names = {v.name for v in variants}
    if not isinstance(value, Mapping) or not all(k in names and isinstance(n, int) and not isinstance(n, bool)
                                                   and n >= 0 for k, n in value.items()):
        raise ConfigError(f"{origin}: seeds_per_variant (written by --until-decided) must map variant names to "
                          f"seed counts; got {value!r}")
    return dict(value)


def _check_test(exp: Experiment, origin: str) -> None:
    if exp.is_crossed and exp.test != "t":
        raise ConfigError(f"{origin}: test = {exp.test!r} needs independent pairs, but crossed cells share init "
                          f"and order seeds; crossed experiments use the crossed t-test: remove test, or use "
                          f"plain seeds = [...]")


__all__ = ["Cell", "Experiment", "Variant", "init_order", "load_experiment", "parse_seeds"]
