"""A byte-bounded cache of loaded models, shared by every client of the fleet server.

Segmented LRU (SLRU, as in many CDN and database caches): a model loaded on a miss enters the
*probation* segment; a second request while it is cached moves it to the *protected* segment
(at most `protected_fraction` of the budget). Room for a new model is made from probation's
least recently used end first, so a burst of one-off requests for cold clients evicts other
cold clients, never a model that is requested again and again; only when probation is empty
does the protected segment's least recently used model go. A model larger than the whole
budget is refused (`ModelTooLargeError`) rather than overrunning it.

The cache holds references only: a request that already has its model keeps using it after an
eviction or a swap (the memory is freed when the last request finishes with it).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PROTECTED_FRACTION = 0.8


class ModelTooLargeError(Exception):
    """A model that does not fit the cache's whole budget."""


@dataclass
class CachedModel:
    """One loaded model and what the cache knows about it."""

    model: Any
    version: int
    nbytes: int
    loaded_at: float = field(default_factory=time.time)
    load_seconds: float = 0.0


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    loaded: int = 0
    bytes: int = 0
    protected_bytes: int = 0


class ModelCache:
    """Thread-safe segmented LRU of `CachedModel`s, bounded in bytes (see module docstring)."""

    def __init__(
        self, budget_bytes: int, protected_fraction: float = DEFAULT_PROTECTED_FRACTION
    ) -> None:
        if budget_bytes <= 0:
            raise ValueError(f"cache budget must be positive, got {budget_bytes} bytes")
        self.budget_bytes = int(budget_bytes)
        self.protected_budget = int(budget_bytes * protected_fraction)
        self._probation: OrderedDict[Hashable, CachedModel] = OrderedDict()
        self._protected: OrderedDict[Hashable, CachedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._stats = CacheStats()

    def get(self, key: Hashable, count_miss: bool = True) -> CachedModel | None:
        """The cached model (counted as a hit, promoted on its second use), or None (a miss,
        counted unless `count_miss` is False)."""
        with self._lock:
            entry = self._protected.get(key)
            if entry is not None:
                self._protected.move_to_end(key)
            else:
                entry = self._probation.pop(key, None)
                if entry is not None:
                    self._protect(key, entry)
            if entry is None:
                self._stats.misses += int(count_miss)
            else:
                self._stats.hits += 1
            return entry

    def peek(self, key: Hashable) -> CachedModel | None:
        """The cached model without counting or reordering anything."""
        with self._lock:
            return self._protected.get(key) or self._probation.get(key)

    def put(self, key: Hashable, entry: CachedModel) -> list[Hashable]:
        """Cache `entry` (replacing one under the same key); returns the keys evicted for it."""
        if entry.nbytes > self.budget_bytes:
            raise ModelTooLargeError(
                f"the model needs {entry.nbytes / 2**20:.1f} MB, more than the whole cache "
                f"budget of {self.budget_bytes / 2**20:.1f} MB (raise --cache-mb)"
            )
        with self._lock:
            self._remove(key)
            evicted = []
            while self._used() + entry.nbytes > self.budget_bytes:
                evicted.append(self._evict_one())
            self._probation[key] = entry
            return evicted

    def discard(self, key: Hashable) -> bool:
        """Drop `key` if cached (not counted as an eviction: a swap or an unload)."""
        with self._lock:
            return self._remove(key) is not None

    def loaded_keys(self) -> list[Hashable]:
        with self._lock:
            return [*self._probation, *self._protected]

    def stats(self) -> CacheStats:
        with self._lock:
            protected = sum(e.nbytes for e in self._protected.values())
            return CacheStats(
                hits=self._stats.hits,
                misses=self._stats.misses,
                evictions=self._stats.evictions,
                loaded=len(self._probation) + len(self._protected),
                bytes=self._used(),
                protected_bytes=protected,
            )

    # ---------------------------------------------------------------- internals (lock held)

    def _used(self) -> int:
        return sum(e.nbytes for e in self._probation.values()) + sum(
            e.nbytes for e in self._protected.values()
        )

    def _protect(self, key: Hashable, entry: CachedModel) -> None:
        """Move into the protected segment; its least recently used overflow goes back to
        probation's most recently used end (a second chance, not an eviction)."""
        self._protected[key] = entry
        while (
            len(self._protected) > 1
            and sum(e.nbytes for e in self._protected.values()) > self.protected_budget
        ):
            old_key, old = self._protected.popitem(last=False)
            self._probation[old_key] = old

    def _evict_one(self) -> Hashable:
        segment = self._probation or self._protected
        key, _ = segment.popitem(last=False)
        self._stats.evictions += 1
        return key

    def _remove(self, key: Hashable) -> CachedModel | None:
        entry = self._probation.pop(key, None)
        return entry if entry is not None else self._protected.pop(key, None)
