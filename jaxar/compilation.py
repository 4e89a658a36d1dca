"""A persistent XLA compilation cache, on by default for ``jaxar train|eval|sample`` and benchmarks.

JAX can write every compiled executable to a directory and read it back in a later process
whose program, shapes, devices and flags are the same, so a second launch of a config skips
most of its compile. :func:`enable_compilation_cache` points JAX there and lowers the two
thresholds that would otherwise skip small or fast compiles (by default JAX caches only
programs that took at least a second to compile), so CPU entries are cached too.

Where the cache lives, first match wins:

1. the ``path`` argument (a directory, or ``"off"`` to disable);
2. the environment variable ``JAXAR_COMPILATION_CACHE`` (a directory, or ``off`` / ``0`` /
   ``false`` / ``none`` to disable);
3. ``$XDG_CACHE_HOME/jaxar/xla``, else ``~/.cache/jaxar/xla``.

The cache key includes the jax/jaxlib versions, the device kind and the XLA flags, so one
directory can serve several machines and versions without mixing entries.
"""

from __future__ import annotations

import os

import jax

__all__ = ["ENV_VAR", "OFF_VALUES", "cache_dir", "enable_compilation_cache"]

ENV_VAR = "JAXAR_COMPILATION_CACHE"
OFF_VALUES = ("off", "0", "false", "none", "no")


def cache_dir(path: str | None = None) -> str | None:
    """The cache directory ``path`` or the environment selects (see module doc); None: off."""
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"compilation cache path must be a directory path or 'off', got {type(path).__name__}"
        )
    choice = os.fspath(path) if path not in (None, "") else os.environ.get(ENV_VAR, "")
    if choice.strip().lower() in OFF_VALUES:
        return None
    if choice:
        return os.path.abspath(os.path.expanduser(choice))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxar", "xla")


def enable_compilation_cache(path: str | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache; returns the directory, or None when off.

    ``path``: a directory, ``"off"`` to leave the cache disabled, or None/"" for the
    environment variable or the default (module doc). Call it before the first ``jit``
    compiles; calling it again with another directory moves the cache there. Every entry is
    kept, however small or quick its compile (``min_compile_time_secs = 0``,
    ``min_entry_size_bytes = 0``).
    """
    directory = cache_dir(path)
    if directory is None:
        return None
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(
            f"compilation cache path must be a directory, got the file {directory!r}; "
            f"pass another path or 'off'"
        )
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_enable_compilation_cache", True)
    return directory
