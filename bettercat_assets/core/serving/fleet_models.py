"""Which model answers a client's request: clients file, champions, cache and loads together.

* A request resolves its client (clients.yaml), the version that serves it (the champion, or
  the previous one while a swap is loading) and gets that version's loaded model from the
  cache, loading it on a miss (one load per version at a time, at most `MAX_PARALLEL_LOADS`
  loads at once, so a burst of misses cannot overrun memory).
* When a champion moves and the client's old version is loaded, the new version is loaded in
  the background while the old one keeps answering; then the new one serves and the old one
  leaves the cache. A request that already holds the old model finishes with it. A client
  whose model is not loaded simply loads the new version on its next request.
* A version that cannot be served (old layout, checksum refused) is remembered with its reason
  for `REFUSAL_TTL_S`, so repeated requests do not hammer the registry.
* The clients file is read again when it changes (checked on every sweep).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bettercat_assets.core.config.clients import CLIENT_ID_PATTERN, ClientConfig, load_clients
from bettercat_assets.core.config.errors import BettercatError, TrackingUnavailableError
from bettercat_assets.core.serving.champion_watch import Champion, ChampionChange, ChampionWatch
from bettercat_assets.core.serving.fleet_requests import ServingError
from bettercat_assets.core.serving.model_cache import CachedModel, ModelCache, ModelTooLargeError
from bettercat_assets.core.serving.model_loader import ModelLoader, ModelNotServableError
from bettercat_assets.core.serving.process_memory import release_free_memory

LOG = logging.getLogger(__name__)
MAX_PARALLEL_LOADS = 2
REFUSAL_TTL_S = 60.0


class FleetModels:
    """The fleet server's models (see module docstring)."""

    def __init__(
        self, clients_file: Path, watch: ChampionWatch, cache: ModelCache, loader: ModelLoader
    ) -> None:
        self.clients_file = Path(clients_file)
        self._registry = load_clients(self.clients_file)
        self._clients_mtime = self.clients_file.stat().st_mtime_ns
        self.watch = watch
        self.cache = cache
        self.loader = loader
        self._key_locks: dict[tuple[str, int], threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._loads = threading.BoundedSemaphore(MAX_PARALLEL_LOADS)
        self._refused: dict[tuple[str, int], tuple[str, float]] = {}
        self._swapping: dict[str, int] = {}  # model name -> version serving until the swap
        self._swapper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="champion-swap")
        self.on_load: Callable[[float], None] | None = None  # load time, for the metrics

    # ---------------------------------------------------------------- clients and champions

    @property
    def registry(self):
        """The clients file as last read."""
        return self._registry

    def client(self, client_id: str) -> ClientConfig:
        """The client's configuration; 400 for an id that cannot be one, 404 for no such client."""
        if not re.fullmatch(CLIENT_ID_PATTERN, client_id):
            shown = client_id if len(client_id) <= 80 else client_id[:80] + "..."
            raise ServingError(
                400, f"client id {shown!r} is not valid: letters, digits, '_' and '-' only"
            )
        cfg = self._registry.clients.get(client_id)
        if cfg is not None:
            return cfg
        if client_id in self._registry.client_ids:
            raise ServingError(
                404,
                f"client '{client_id}' has an invalid entry in the clients file; "
                "`bettercat check-config` lists its problems",
            )
        raise ServingError(404, f"unknown client '{client_id}': not in this server's clients file")

    def champion(self, cfg: ClientConfig) -> Champion:
        """The client's champion; 404 saying why there is none, 503 before the registry answered."""
        if self.watch.sweeps == 0:
            raise ServingError(
                503, f"the model registry has not answered yet: {self.watch.last_error}"
            )
        found = self.watch.get(cfg.model_name)
        if found is None:
            raise ServingError(
                404,
                f"client '{cfg.client_id}' has no servable champion: no registered model "
                f"'{cfg.model_name}' yet (run `bettercat train --client-id {cfg.client_id}`)",
            )
        if found.version is None:
            raise ServingError(
                404,
                f"client '{cfg.client_id}' has no servable champion: '{cfg.model_name}' has "
                "no @champion alias (no version passed its quality gate; retrain or "
                f"`bettercat promote --client-id {cfg.client_id} --version N`)",
            )
        return found

    def serving_version(self, cfg: ClientConfig) -> int:
        """The version that answers now: the old one while its successor loads."""
        swapping = self._swapping.get(cfg.model_name)
        return swapping if swapping is not None else int(self.champion(cfg).version)

    # ---------------------------------------------------------------- models

    def model(
        self, cfg: ClientConfig, version: int, load: bool = True
    ) -> tuple[CachedModel | None, bool]:
        """(loaded model, whether it was a cache hit) for a client's version; with `load`
        False a miss is (None, False), not counted (the caller asks again with `load`)."""
        key = (cfg.model_name, int(version))
        entry = self.cache.get(key, count_miss=load)
        if entry is not None:
            return entry, True
        if not load:
            return None, False
        return self._load(cfg, key), False

    def _key_lock(self, key: tuple[str, int]) -> threading.Lock:
        with self._locks_lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def _load(self, cfg: ClientConfig, key: tuple[str, int]) -> CachedModel:
        with self._key_lock(key):
            entry = self.cache.peek(key)  # loaded by another request meanwhile
            if entry is not None:
                return entry
            refused = self._refused.get(key)
            if refused and time.monotonic() - refused[1] < REFUSAL_TTL_S:
                raise ServingError(404, f"no servable champion: {refused[0]}")
            with self._loads:
                try:
                    entry = self.loader.load(cfg.client_id, *key)
                    evicted = self.cache.put(key, entry)
                except (ModelNotServableError, ModelTooLargeError) as exc:
                    reason = str(exc)
                    self._refused[key] = (reason, time.monotonic())
                    raise ServingError(404, f"no servable champion: {reason}") from None
                except (TrackingUnavailableError, BettercatError) as exc:
                    raise ServingError(503, f"client '{cfg.client_id}': {exc}") from None
            if self.on_load is not None:
                self.on_load(entry.load_seconds)
            if evicted:
                LOG.info("loaded %s v%s; evicted %s", key[0], key[1], evicted)
                release_free_memory()
            return entry

    # ---------------------------------------------------------------- following champions

    def on_sweep(self, changes: list[ChampionChange]) -> None:
        """Called by the watch after each sweep, before it publishes new champions."""
        self._reload_clients_file()
        for change in changes:
            old_key = (change.model_name, change.old) if change.old is not None else None
            if old_key is None or self.cache.peek(old_key) is None or change.new is None:
                self._swapping.pop(change.model_name, None)
                if old_key is not None:
                    self.cache.discard(old_key)
                continue
            self._swapping[change.model_name] = int(change.old)
            self._swapper.submit(self._swap, change)

    def _swap(self, change: ChampionChange) -> None:
        """Load the new champion while the old one answers, then let the new one serve."""
        name = change.model_name
        cfg = next((c for c in self._registry.clients.values() if c.model_name == name), None)
        try:
            if cfg is not None:
                self._load(cfg, (name, int(change.new)))
        except ServingError as exc:
            LOG.warning("%s v%s: %s", name, change.new, exc.message)
        finally:
            deadline = time.monotonic() + self.watch.interval + 5
            while (  # the watch publishes the new champion right after handing it over
                getattr(self.watch.get(name), "version", None) != change.new
                and time.monotonic() < deadline
            ):
                time.sleep(0.01)
            if self._swapping.get(change.model_name) == change.old:
                self._swapping.pop(change.model_name, None)
                self.cache.discard((change.model_name, int(change.old)))
            LOG.info("%s: now serving v%s (was v%s)", change.model_name, change.new, change.old)

    def _reload_clients_file(self) -> None:
        try:
            mtime = self.clients_file.stat().st_mtime_ns
            if mtime != self._clients_mtime:
                self._registry, self._clients_mtime = load_clients(self.clients_file), mtime
                LOG.info("clients file %s read again", self.clients_file)
        except (OSError, BettercatError) as exc:  # keep serving the clients we know
            LOG.warning("clients file %s not read again: %s", self.clients_file, exc)

    def close(self) -> None:
        self._swapper.shutdown(wait=False, cancel_futures=True)
