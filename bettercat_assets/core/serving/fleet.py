"""One server for every client: `bettercat serve` without `--client-id`.

Endpoints (FastAPI on uvicorn, one process):

* `POST /clients/<client_id>/invocations`: MLflow's scoring-server JSON (`dataframe_split` or
  `dataframe_records`, optional `params`) in, `{"predictions": [...]}` out: the batch's top-k
  rows with `model_version`, computed by the client's registered pyfunc's own Python model
  (`served_model`: plain frames the lean way, the rest through MLflow's request handling).
  Headers say which version answered and whether its model was loaded already
  (`X-Bettercat-Cache: hit|miss`). A hit with a small plain body is answered on the event
  loop; misses (downloads, loads) and the rest run in worker threads, so a load never holds
  up the hits behind it;
* `GET /clients/<client_id>`: which version serves and since when; `GET /clients`: all;
* `GET /health` (`/ping`): up, with the registry's state; `GET /metrics`: Prometheus text.

Errors are `{"error_code", "message"}` with one sentence, as MLflow's server answers them.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.serving.champion_watch import ChampionWatch
from bettercat_assets.core.serving.fleet_limits import FleetLimits
from bettercat_assets.core.serving.fleet_metrics import CONTENT_TYPE, FleetMetrics
from bettercat_assets.core.serving.fleet_models import FleetModels
from bettercat_assets.core.serving.fleet_requests import (
    ServingError,
    check_content_type,
    one_sentence,
    parse_payload,
    read_body,
)
from bettercat_assets.core.serving.model_cache import ModelCache
from bettercat_assets.core.serving.model_loader import ModelLoader
from bettercat_assets.core.serving.process_memory import freeze_startup_objects, limit_arenas
from bettercat_assets.core.serving.served_model import NotLean, ServedModel

LOG = logging.getLogger(__name__)
#: request bodies of the largest allowed size that may be read or answered at once
IN_FLIGHT_BODIES = 2
#: a body up to this size whose model is loaded is answered on the event loop (well under a
#: millisecond the lean way); larger ones, misses and frames MLflow handles go to a thread
INLINE_BODY_BYTES = 32 * 1024
#: how long a thread holds the GIL before another may take it (Python's default: 5 ms): short,
#: so a hit on the event loop waits less behind a load in a worker thread
SWITCH_INTERVAL_S = 0.0005


def build_models(
    settings: TrackingSettings, clients_file: Path, local_dir: Path, limits: FleetLimits
) -> FleetModels:
    """The fleet's models: clients file, champion watch, cache and loader (watch not started)."""
    from bettercat_assets.core.tracking import runs as tracking

    watch = ChampionWatch(tracking.mlflow_client(settings), interval=limits.poll_seconds)
    cache = ModelCache(int(limits.cache_mb * 2**20))
    models = FleetModels(clients_file, watch, cache, ModelLoader(settings, local_dir))
    watch.on_sweep = models.on_sweep
    return models


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Answer:
    """One request's answer and how it was made."""

    body: str
    version: int
    hit: bool
    cpu_ms: float  # CPU time of the worker thread: parsing, loading on a miss, predicting

    def headers(self, wall_ms: float) -> dict[str, str]:
        return {
            "X-Bettercat-Model-Version": str(self.version),
            "X-Bettercat-Cache": "hit" if self.hit else "miss",
            "Server-Timing": f"app;dur={wall_ms:.2f}, cpu;dur={self.cpu_ms:.2f}",
        }


def _answer(
    models: FleetModels, client_id: str, body: bytes, max_rows: int, inline: bool = False
) -> Answer | None:
    """Parse, load on a miss, predict. `inline` (on the event loop): only a cache hit the lean
    way, else None (the request then goes to a worker thread, where loads happen)."""
    cpu_started = time.thread_time()
    payload = parse_payload(body, max_rows)
    found = _predict(models, client_id, payload, inline)
    if found is None:
        return None
    answer, version, hit = found
    return Answer(answer, version, hit, (time.thread_time() - cpu_started) * 1000)


def _predict(
    models: FleetModels, client_id: str, payload: dict[str, Any], inline: bool = False
) -> tuple[str, int, bool] | None:
    """(JSON answer, version, cache hit) for one parsed request; None when `inline` cannot."""
    from mlflow.exceptions import MlflowException

    cfg = models.client(client_id)
    version = models.serving_version(cfg)
    entry, hit = models.model(cfg, version, load=not inline)
    if entry is None:
        return None
    model: ServedModel = entry.model  # this request finishes with it, whatever swaps meanwhile
    try:
        answer = model.answer(payload, lean_only=inline)
    except NotLean:
        return None
    except MlflowException as exc:
        status = exc.get_http_status_code()
        message = one_sentence(exc.message)
        raise ServingError(
            status if 400 <= status < 500 else 400,
            f"client '{client_id}': {message}",
            exc.error_code,
        ) from None
    return answer, entry.version, hit


def _client_status(models: FleetModels, client_id: str) -> dict[str, Any]:
    cfg = models.client(client_id)
    champion = models.champion(cfg)
    version = models.serving_version(cfg)
    entry = models.cache.peek((cfg.model_name, version))
    return {
        "client_id": client_id,
        "model_name": cfg.model_name,
        "champion_version": champion.version,
        "serving_version": version,
        "serving_since": _iso(champion.seen_at if version == champion.version else None),
        "loaded": entry is not None,
        "loaded_at": _iso(entry.loaded_at) if entry else None,
        "model_bytes": entry.nbytes if entry else None,
    }


class BodyBudget:
    """Bytes of request bodies being read or answered at once (the event loop's counter): a
    burst of large requests is answered 503 rather than parsed side by side past the memory
    the server has. A body counts its Content-Length, or the --max-body-mb when unknown."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    @contextmanager
    def reserve(self, content_length: str | None, max_body: int) -> Iterator[None]:
        size = int(content_length) if (content_length or "").isdigit() else max_body
        size = 0 if size > max_body else size  # refused with 413 as it is read
        if self.used and self.used + size > self.limit:
            raise ServingError(
                503, "too many large requests in flight; retry shortly", "TEMPORARILY_UNAVAILABLE"
            )
        self.used += size
        try:
            yield
        finally:
            self.used -= size


def _health(models: FleetModels) -> JSONResponse:
    watch, stats = models.watch, models.cache.stats()
    body = {
        "status": "ok" if watch.sweeps and not watch.last_error else "degraded",
        "clients": len(models.registry.clients),
        "last_champion_sweep": _iso(watch.last_sweep_at),
        "champion_sweep_seconds": watch.last_sweep_seconds,
        "registry_error": watch.last_error,
        "loaded_models": stats.loaded,
        "loaded_mb": round(stats.bytes / 2**20, 1),
        "cache_budget_mb": round(models.cache.budget_bytes / 2**20, 1),
    }
    return JSONResponse(body, status_code=200 if watch.sweeps else 503)


def _add_invocations(
    app: FastAPI, models: FleetModels, limits: FleetLimits, metrics: FleetMetrics
) -> None:
    max_body = int(limits.max_body_mb * 2**20)
    in_flight = BodyBudget(IN_FLIGHT_BODIES * max_body)

    @app.post("/clients/{client_id:path}/invocations")
    async def invocations(client_id: str, request: Request) -> Response:
        started, status, cache = time.perf_counter(), 500, "none"
        try:
            models.champion(models.client(client_id))  # 400/404 before the body is read
            check_content_type(request.headers.get("content-type"))
            length = request.headers.get("content-length")
            with in_flight.reserve(length, max_body):
                body = await read_body(request.stream(), length, max_body)
                answer = (
                    _answer(models, client_id, body, limits.max_rows, inline=True)
                    if len(body) <= INLINE_BODY_BYTES
                    else None
                )
                if answer is None:
                    answer = await run_in_threadpool(
                        _answer, models, client_id, body, limits.max_rows
                    )
            status, cache = 200, "hit" if answer.hit else "miss"
            headers = answer.headers((time.perf_counter() - started) * 1000)
            return Response(answer.body, media_type="application/json", headers=headers)
        except ServingError as exc:
            status = exc.status
            raise
        finally:
            metrics.observe(status, cache, time.perf_counter() - started)


def _add_status_routes(app: FastAPI, models: FleetModels, metrics: FleetMetrics) -> None:
    @app.get("/clients/{client_id:path}")
    async def client_status(client_id: str) -> dict[str, Any]:
        return _client_status(models, client_id)

    @app.get("/clients")
    async def all_clients() -> dict[str, Any]:
        out = {}
        for client_id in list(models.registry.clients):
            try:
                out[client_id] = _client_status(models, client_id)
            except ServingError as exc:
                out[client_id] = {"client_id": client_id, "error": exc.message}
        return {"clients": out}

    app.get("/health")(lambda: _health(models))
    app.get("/ping")(lambda: _health(models))

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)


def create_app(models: FleetModels, limits: FleetLimits) -> FastAPI:
    """The FastAPI app over `models`; starting it starts the champion watch."""
    metrics = FleetMetrics(models.cache, models.watch)
    models.on_load = metrics.loads.observe

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(models.watch.start)
        import mlflow.models  # noqa: F401 - what requests import, before the freeze
        import mlflow.pyfunc.scoring_server  # noqa: F401

        LOG.info("%d objects kept out of garbage collections", freeze_startup_objects())
        yield
        models.watch.stop()
        models.close()

    app = FastAPI(title="bettercat fleet server", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, exc: ServingError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"{request.method} {request.url.path[:100]}: {exc.detail}"
        error = ServingError(exc.status_code, message)
        return JSONResponse(error.body(), status_code=exc.status_code)

    _add_invocations(app, models, limits, metrics)
    _add_status_routes(app, models, metrics)
    return app


def serve(
    settings: TrackingSettings,
    clients_file: Path,
    local_dir: Path,
    limits: FleetLimits,
    host: str,
    port: int,
) -> None:
    """Run the fleet server until interrupted (uvicorn, one process)."""
    import uvicorn

    limit_arenas()  # before uvicorn starts its threads (see process_memory)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    # MLflow warns about `instances` inputs on every refused frame: noise for this server.
    logging.getLogger("mlflow.pyfunc.scoring_server").setLevel(logging.ERROR)
    app = create_app(build_models(settings, clients_file, local_dir, limits), limits)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
