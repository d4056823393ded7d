"""JAX's persistent compilation cache, so a second run of a model skips XLA compilation.

The cache is JAX's process-wide setting, so deepfit turns it on only in processes it owns:
the ``deepfit`` command and the pool's workers (:func:`use` at their start). A user's own
process (a notebook calling ``deepfit.fit``, ``deepfit.train``, or ``deepfit.compare`` on the
local backend) keeps JAX's settings as they are, unless it opts in: ``DEEPFIT_COMPILE_CACHE=1``
(the cache is then on from ``import deepfit``) or :func:`use`; ``use(False)`` puts JAX's settings back. ``DEEPFIT_COMPILE_CACHE=0`` turns
it off everywhere. A cache folder the user gave JAX is never replaced.

It lives in ``$DEEPFIT_CACHE/jax-lru`` (else ``~/.cache/deepfit/jax-lru``) and is bounded:
``DEEPFIT_COMPILE_CACHE_MB`` (default 1024) megabytes, JAX dropping the least recently used
programs beyond that. Results are identical either way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from deepfit.data.cache import cache_root

DEFAULT_MB = 1024
# JAX's settings this module changes; what they were is kept to put them back.
SETTINGS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
            "jax_compilation_cache_max_size")

_wanted = False
_previous: dict[str, Any] | None = None  # set while the cache is on


def cache_dir() -> Path:
    # Not the "jax" folder of earlier versions: JAX's bounded cache needs an access-time file beside every
    # entry, which the unbounded one never wrote (its eviction then fails on them).
    return cache_root() / "jax-lru"


def max_bytes() -> int:
    try:
        return max(1, int(float(os.environ.get("DEEPFIT_COMPILE_CACHE_MB", DEFAULT_MB)) * 1024**2))
    except ValueError:
        return DEFAULT_MB * 1024**2


def wanted() -> bool:
    """Whether this process uses the cache: ``DEEPFIT_COMPILE_CACHE`` decides when set, else :func:`use`."""
    setting = os.environ.get("DEEPFIT_COMPILE_CACHE")
    return setting == "1" if setting in ("0", "1") else _wanted


def use(on: bool = True) -> None:
    """Opt this process in (``deepfit``'s command and workers do), or out again: either takes effect at once,
    so whatever compiles next (loading a model, MC passes, a schedule, a run) uses the cache or not."""
    global _wanted
    _wanted = on
    if on:
        enable()
    else:
        _restore()


def enable() -> None:
    """Turn the cache on, if this process wants it (see the module's docstring). Called before a model is
    built and compiled (its initializers compile too)."""
    global _previous
    if _previous is not None or not wanted():
        return
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current and Path(current) != cache_dir():
        return  # the user's own cache: theirs to keep
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # an unwritable cache only costs compile time
    previous = {name: getattr(jax.config, name) for name in SETTINGS}
    jax.config.update("jax_compilation_cache_dir", str(cache_dir()))
    # Weight initializers compile in 0.3-0.4 s per shape on this CPU: worth caching too.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    jax.config.update("jax_compilation_cache_max_size", max_bytes())  # JAX locks the folder with filelock
    _reset_jax_cache()  # JAX decides once, at its first compilation, whether a cache is in use
    _previous = previous


def _restore() -> None:
    global _previous
    if _previous is None:
        return
    import jax

    for name, value in _previous.items():
        jax.config.update(name, value)
    _reset_jax_cache()
    _previous = None


def _reset_jax_cache() -> None:
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()
