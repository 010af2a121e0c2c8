"""Keeping the fleet server's RSS close to what its cache holds (glibc's allocator).

A server that loads and evicts thousands of models frees memory in many small pieces across
its worker threads. glibc gives each thread its own arena (up to 8 per core), and freed pieces
inside an arena stay in the process: RSS creeps above the cache's budget. Two standard remedies,
both no-ops where glibc is absent:

* `limit_arenas(2)` at start (what `MALLOC_ARENA_MAX=2` does), before the worker threads exist;
* `release_free_memory()` (`malloc_trim(0)`) after evictions, at most once per `interval`.

And one for the interpreter's collector: the server holds ~350,000 Python objects once MLflow,
pandas, SQLAlchemy and FastAPI are imported, and a full collection walks them all (~0.1 s
quiet, 0.3-0.5 s on a busy machine), stalling every request in flight. `freeze_startup_objects()`
(`gc.freeze()`, once the server is up) moves them out of the collector's sight; full
collections then walk only what was made since.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import threading
import time

M_ARENA_MAX = -8  # glibc's mallopt parameter number
_LOCK = threading.Lock()
_last_trim = 0.0


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def limit_arenas(arenas: int = 2) -> bool:
    """At most `arenas` malloc arenas for the process; True when glibc took it."""
    libc = _libc()
    return bool(libc and libc.mallopt(M_ARENA_MAX, int(arenas)))


def release_free_memory(interval: float = 1.0) -> bool:
    """Hand freed heap memory back to the OS (rate-limited); True when it ran."""
    global _last_trim
    with _LOCK:
        now = time.monotonic()
        if now - _last_trim < interval:
            return False
        _last_trim = now
    libc = _libc()
    return bool(libc and libc.malloc_trim(0) is not None)


def freeze_startup_objects() -> int:
    """Collect once, then keep every object alive now out of later collections (see module
    docstring); returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
