"""One BLAS thread while the recommendation is fitted.

The fit's linear algebra is many small matrices (a few hundred rows at most: ``_subset``
bounds the loss model's size), where a multi-threaded BLAS spends its time waking and
synchronising threads: measured on 2 shared cores, a 5,000-trial fit took 16 s with the
default threads and 2 s with one (bench/recommendation_scale.py). The limit is process-wide
(BLAS has no per-thread setting), so it is reference-counted: concurrent fits (the API
fits several jobs in background threads) share one limit, and the original thread counts
come back when the last fit ends. One caveat, of OpenBLAS: once a process's main thread has
set the thread count itself, counts set from other threads are ignored; the API server and
the workers never do, and there a fit in any thread gets its one thread.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from threadpoolctl import threadpool_limits

P = ParamSpec("P")
R = TypeVar("R")

_lock = threading.Lock()
_active = 0
_limiter: Any = None


def _enter() -> None:
    global _active, _limiter
    with _lock:
        if _active == 0:
            _limiter = threadpool_limits(limits=1, user_api="blas")
        _active += 1


def _leave() -> None:
    global _active, _limiter
    with _lock:
        _active -= 1
        if _active == 0 and _limiter is not None:
            _limiter.restore_original_limits()
            _limiter = None


def one_blas_thread(fn: Callable[P, R]) -> Callable[P, R]:
    """Runs ``fn`` with BLAS limited to one thread (see the module's docstring)."""

    @functools.wraps(fn)
    def limited(*args: P.args, **kwargs: P.kwargs) -> R:
        _enter()
        try:
            return fn(*args, **kwargs)
        finally:
            _leave()

    return limited


def active_fits() -> int:
    """How many fits hold the limit now (for tests)."""
    return _active
