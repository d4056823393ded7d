"""JAX's persistent compilation cache, so a second run of a model skips XLA compilation.

On by default in ``$DEEPFIT_CACHE/jax`` (else ``~/.cache/deepfit/jax``);
``DEEPFIT_COMPILE_CACHE=0`` turns it off. Results are identical either way.
"""

from __future__ import annotations

import os
from pathlib import Path

from deepfit.data.cache import cache_root

_enabled = False


def cache_dir() -> Path:
    return cache_root() / "jax"


def enable() -> None:
    global _enabled
    if _enabled or os.environ.get("DEEPFIT_COMPILE_CACHE", "1") == "0":
        return
    import jax

    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # an unwritable cache only costs compile time
    jax.config.update("jax_compilation_cache_dir", str(cache_dir()))
    # Weight initializers compile in 0.3-0.4 s per shape on this CPU: worth caching too.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    _enabled = True
