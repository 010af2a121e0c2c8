"""Following every client's `@champion` from one cheap registry sweep.

`search_registered_models` returns each registered model with its aliases, up to 1,000 models
per page: one sweep of a few pages learns every client's champion, where asking
`get_model_version_by_alias` per client would cost one request per client per poll. Against a
SQL registry (the server reads the same database as MLflow's), one query of registered names
joined to their `@champion` alias replaces it (~2 ms for 1,000 models, where building 1,000
`RegisteredModel`s with their tags and latest versions takes ~80 ms of CPU, holding the GIL the
requests need); any other registry, or a MLflow whose tables differ, is swept page by page. A
background thread sweeps every `interval` seconds and hands what moved to `on_sweep` *before*
the new champions are published (so a swap can be prepared first); when the registry cannot be reached the last known champions stay in force and
the error is kept for `/health`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlflow.tracking import MlflowClient

from bettercat_assets.core.tracking.runs import CHAMPION_ALIAS

LOG = logging.getLogger(__name__)
PAGE_SIZE = 1000  # the registry's largest page
DEFAULT_INTERVAL_S = 2.0  # the fleet server passes --poll-seconds


@dataclass(frozen=True)
class Champion:
    """What the registry says about one registered model."""

    model_name: str
    version: int | None  # None: registered, but no @champion alias
    seen_at: float  # when this server first saw this version as champion


@dataclass(frozen=True)
class ChampionChange:
    model_name: str
    old: int | None
    new: int | None


def sweep(client: MlflowClient) -> dict[str, int | None]:
    """{registered model name: its @champion version or None}, all of the registry."""
    query = _sql_query(client)
    return sweep_pages(client) if query is None else _sql_sweep(*query)


def sweep_pages(client: MlflowClient) -> dict[str, int | None]:
    """`sweep` through `search_registered_models`, every page of the registry."""
    found: dict[str, int | None] = {}
    token = None
    while True:
        page = client.search_registered_models(max_results=PAGE_SIZE, page_token=token)
        for model in page:
            version = (model.aliases or {}).get(CHAMPION_ALIAS)
            found[model.name] = int(version) if version is not None else None
        token = page.token
        if not token:
            return found


def _sql_query(client: MlflowClient) -> tuple[Any, Any] | None:
    """(the registry's SQL store, a select of (name, @champion version) over its registered
    models in the active workspace), or None when the registry is not a SQL store as known."""
    try:
        from mlflow.store.model_registry.dbmodels import models as tables
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
        from sqlalchemy import and_, select

        Model, Alias = tables.SqlRegisteredModel, tables.SqlRegisteredModelAlias
        store = client._get_registry_client().store
        if not isinstance(store, SqlAlchemyStore):
            return None
        same_model = [Alias.name == Model.name, Alias.alias == CHAMPION_ALIAS]
        if hasattr(Alias, "workspace") and hasattr(Model, "workspace"):
            same_model.append(Alias.workspace == Model.workspace)
        query = select(Model.name, Alias.version).outerjoin(Alias, and_(*same_model))
        return store, query.where(*store._get_workspace_clauses(Model))
    except (ImportError, AttributeError, TypeError):  # another MLflow: the generic sweep
        return None


def _sql_sweep(store: Any, query: Any) -> dict[str, int | None]:
    with store.ManagedSessionMaker() as session:
        rows = session.execute(query).all()
    return {name: int(version) if version is not None else None for name, version in rows}


class ChampionWatch:
    """The current champions, refreshed by a background sweep (see module docstring)."""

    def __init__(
        self,
        client: MlflowClient,
        interval: float = DEFAULT_INTERVAL_S,
        on_sweep: Callable[[list[ChampionChange]], None] | None = None,
    ) -> None:
        self._client = client
        self.interval = interval
        self.on_sweep = on_sweep
        self._champions: dict[str, Champion] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_sweep_at: float | None = None
        self.last_sweep_seconds: float | None = None
        self.last_error: str | None = None
        self.sweeps = 0

    def get(self, model_name: str) -> Champion | None:
        """The registered model's champion, or None when no such model is registered."""
        return self._champions.get(model_name)

    def refresh(self) -> list[ChampionChange]:
        """One sweep now; returns what moved since the last (after handing it to `on_sweep`,
        from the second sweep on)."""
        started = time.perf_counter()
        try:
            found = sweep(self._client)
        except Exception as exc:  # an unreachable registry must not stop the server
            lines = str(exc).strip().splitlines()
            self.last_error = f"{type(exc).__name__}: {lines[0] if lines else ''}"
            LOG.warning("champion sweep failed, keeping the last known champions: %s", exc)
            return []
        now = time.time()
        old = self._champions
        changes = [
            ChampionChange(name, old[name].version if name in old else None, version)
            for name, version in found.items()
            if name not in old or old[name].version != version
        ]
        changes += [ChampionChange(n, old[n].version, None) for n in old if n not in found]
        if self.on_sweep is not None and self.sweeps > 0:
            self.on_sweep(changes)
        self._champions = {
            name: old[name] if name in old and old[name].version == v else Champion(name, v, now)
            for name, v in found.items()
        }
        self.last_sweep_at, self.last_error = now, None
        self.last_sweep_seconds = time.perf_counter() - started
        self.sweeps += 1
        return changes

    def start(self) -> None:
        """First sweep in the caller's thread (so the server starts knowing), then a thread."""
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="champion-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh()
            except Exception:  # pragma: no cover - a bug in on_sweep must not end the watch
                LOG.exception("champion watch: handling a change failed")
