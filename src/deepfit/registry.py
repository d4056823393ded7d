"""One small registry type for deepfit's own families of names.

Keras already resolves its own names (``"he_normal"``, ``"selu"``, ``"nadam"``);
deepfit registers only what it adds: layer types in configs, schedules,
callbacks, datasets and experiments. Lookups of an unknown name fail with the
valid names and the closest one, as a :class:`~deepfit.errors.ConfigError`.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from deepfit.errors import ConfigError


def normalize(name: str) -> str:
    """``"BatchNorm"``, ``"batch-norm"`` and ``"batch_norm"`` are one name."""
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(normalize(name), choices, n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any
    aliases: tuple[str, ...]
    doc: str


class Registry:
    """Names → objects for one family, with aliases and "did you mean"."""

    def __init__(self, family: str):
        self.family = family
        self._entries: dict[str, Entry] = {}
        self._lookup: dict[str, str] = {}

    def register(self, name: str, aliases: tuple[str, ...] = (), doc: str = "") -> Callable:
        """Decorator: ``@layers.register("rrelu")``. A duplicate name warns and replaces."""

        def add(obj: Any) -> Any:
            key = normalize(name)
            for alias in (key, *map(normalize, aliases)):
                if alias in self._lookup and self._lookup[alias] != key:
                    warnings.warn(f"{self.family} name {alias!r} re-registered", stacklevel=3)
                self._lookup[alias] = key
            text = doc or (obj.__doc__ or "").strip().splitlines()[0] if (doc or obj.__doc__) else ""
            self._entries[key] = Entry(key, obj, tuple(map(normalize, aliases)), text)
            return obj

        return add

    def get(self, name: str) -> Any:
        if not isinstance(name, str):
            raise ConfigError(f"{self.family} must be named by a string, got {name!r}")
        key = self._lookup.get(normalize(name))
        if key is None:
            raise ConfigError(
                f"unknown {self.family} {name!r}.{did_you_mean(name, sorted(self._lookup))} "
                f"Valid names: {', '.join(self.names())}."
            )
        return self._entries[key].obj

    def canonical(self, name: str) -> str:
        self.get(name)
        return self._lookup[normalize(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize(name) in self._lookup

    def names(self, filter: str = "") -> list[str]:
        return sorted(n for n in self._entries if filter in n)

    def entries(self) -> Iterator[Entry]:
        for name in self.names():
            yield self._entries[name]
