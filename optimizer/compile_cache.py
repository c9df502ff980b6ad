"""Compiled-program caches for the population trainer.

Two levels:

- **In process**: :class:`ProgramCache` keeps one jitted program per key, here
  ``(kind, task name, task options, K, S, C, divergence factor)``, and counts its misses.
  A new population of the same shape, with any hyperparameter values, is a hit: the values
  are traced, so nothing is traced or compiled again.
- **Across processes**: :func:`enable_persistent_cache` points JAX's persistent compilation
  cache at ``$ACPROP_TUNER_JAX_CACHE_DIR`` (default ``~/.cache/acprop-tuner/jax``), with the
  size and compile-time thresholds lowered so that even the small programs of a CPU worker are
  stored. A restarted worker then loads its executables instead of compiling them.

:class:`CompileCounter` listens to JAX's own monitoring events, so tests and benchmarks can
prove that no XLA compilation happened, independently of this module's bookkeeping.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CompileCounter",
    "ProgramCache",
    "default_cache_dir",
    "enable_persistent_cache",
    "options_key",
]

_ENV_DIR = "ACPROP_TUNER_JAX_CACHE_DIR"
_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
_enabled_dir: str | None = None
_lock = threading.Lock()


def default_cache_dir() -> Path:
    """``$ACPROP_TUNER_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/acprop-tuner/jax`` (per user)."""
    if os.environ.get(_ENV_DIR):
        return Path(os.environ[_ENV_DIR])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "acprop-tuner" / "jax"


def enable_persistent_cache(path: str | os.PathLike[str] | None = None) -> Path:
    """Turn on JAX's persistent compilation cache (idempotent; returns the directory).

    JAX fixes the cache directory at the first compilation that uses it, so call this early;
    a later call with another directory still updates the setting, which JAX then ignores.
    """
    global _enabled_dir
    import jax

    directory = Path(path) if path is not None else default_cache_dir()
    with _lock:
        if _enabled_dir == str(directory):
            return directory
        directory.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(directory))
        # The defaults (1 s of compile time, entries of any size >= 0 bytes) would skip most
        # of a CPU worker's programs, which compile in well under a second.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
        _enabled_dir = str(directory)
    return directory


def options_key(options: Mapping[str, Any]) -> str:
    """A canonical, hashable form of a task's options."""
    return json.dumps(options, sort_keys=True, separators=(",", ":"), default=str)


class ProgramCache:
    """Builds each program once per key; ``misses`` counts the builds (compilations)."""

    def __init__(self) -> None:
        self._programs: dict[Hashable, Callable[..., Any]] = {}
        self._lock = threading.Lock()
        self.misses = 0
        self.hits = 0

    def get(self, key: Hashable, build: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
        with self._lock:
            program = self._programs.get(key)
            if program is None:
                program = self._programs[key] = build()
                self.misses += 1
            else:
                self.hits += 1
            return program

    def __len__(self) -> int:
        return len(self._programs)

    def clear(self) -> None:
        with self._lock:
            self._programs.clear()


# One cache per process: workers create a trainer per lease batch but keep the programs.
PROGRAMS = ProgramCache()


class CompileCounter:
    """Counts JAX traces and XLA backend compilations while active (a context manager).

    Uses ``jax.monitoring`` duration events, which JAX records for every trace to a jaxpr and
    every backend compilation (a persistent-cache hit is not a backend compilation, but is
    still a trace). Both stay at zero when a cached jitted program is reused.
    """

    def __init__(self) -> None:
        self.traces = 0
        self.backend_compiles = 0
        self._active = False

    def _listener(self, event: str, duration_secs: float, **kwargs: str | int) -> None:
        if not self._active:
            return
        if event == _BACKEND_COMPILE_EVENT:
            self.backend_compiles += 1
        elif event == _TRACE_EVENT:
            self.traces += 1

    def __enter__(self) -> CompileCounter:
        import jax.monitoring

        self._active = True
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc: object) -> None:
        import jax.monitoring

        self._active = False
        jax.monitoring.unregister_event_duration_listener(self._listener)
