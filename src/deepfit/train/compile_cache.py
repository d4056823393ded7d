"""JAX's persistent compilation cache, so a second run of a model skips XLA compilation.

On by default in ``$DEEPFIT_CACHE/jax`` (else ``~/.cache/deepfit/jax``);
``DEEPFIT_COMPILE_CACHE=0`` turns it off. Results are identical either way.
"""

from __future__ import annotations

import os
from pathlib import Path

_enabled = False


def cache_dir() -> Path:
    base = os.environ.get("DEEPFIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "deepfit"
    return Path(base).expanduser() / "jax"


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
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    _enabled = True
