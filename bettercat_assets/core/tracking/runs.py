"""MLflow plumbing: one experiment per client, run URLs, and the registry's champion alias.

Reliability helpers live here too:

* `store_lock`: a cross-process file lock around MLflow writes when the store is the embedded
  sqlite database, so concurrent trainings never fail with "database is locked";
* `check_available`: a cheap preflight that turns an unreachable tracking server into one
  `TrackingUnavailableError` naming the URI, before any run is started;
* `reap_orphaned_runs`: runs left RUNNING by a process that was killed (SIGKILL, OOM) are
  marked KILLED by the next training of the same client on the same host.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import mlflow
from filelock import FileLock
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient

from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.config.errors import ModelNotFoundError, TrackingUnavailableError
from bettercat_assets.core.config.settings import TrackingSettings

CHAMPION_ALIAS = "champion"
MLFLOW_UI_URL_ENV = "BETTERCAT_MLFLOW_UI_URL"
DEFAULT_MLFLOW_UI_URL = "http://127.0.0.1:5000"
DAGSTER_UI_URL_ENV = "BETTERCAT_DAGSTER_UI_URL"
DEFAULT_DAGSTER_UI_URL = "http://127.0.0.1:3000"
#: MLflow's experiment-type tag (values `genai_development` / `custom_model_development`).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
#: The MLflow 3.17 UI picks its "Model training" or GenAI view from this query parameter (else
#: from the browser's last choice, GenAI at first), so every link into MLflow carries it.
ML_VIEW_QUERY = "workflowType=machine_learning"
#: Run tags that let a later training tell a crashed run from one that is still going.
HOST_TAG = "process_host"
PID_TAG = "process_id"
#: Error codes that mean "no such thing" (as opposed to "cannot ask").
_NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"})


def sqlite_db_path(tracking_uri: str) -> str | None:
    """The database file of a `sqlite:///` URI (absolute), or None for other stores."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return os.path.abspath(path)


@functools.cache
def _sqlite_lock(lock_path: str) -> FileLock:
    """One lock object per lock file and process: holds are re-entrant per thread."""
    return FileLock(lock_path)


@contextmanager
def store_lock(settings: TrackingSettings) -> Iterator[None]:
    """Serialise MLflow writes across processes when the store is a sqlite file.

    sqlite allows one writer; MLflow opens deferred transactions, so two processes that both
    read and then write can fail with "database is locked" however long the busy timeout is.
    An exclusive `filelock` on `<db>.lock` around each write section prevents that (and covers
    the table creation of a brand-new store). Re-entrant within a thread; other threads of the
    process wait (the lock is thread-local, each thread holds its own descriptor). A no-op for
    MLflow servers, which handle their own concurrency.
    """
    db = sqlite_db_path(settings.tracking_uri)
    if db is None:
        yield
        return
    os.makedirs(os.path.dirname(db), exist_ok=True)
    with _sqlite_lock(f"{db}.lock"):
        yield


def is_not_found(exc: Exception) -> bool:
    """True when MLflow answered "no such object", False when it could not be asked at all."""
    code = getattr(exc, "error_code", None)
    return isinstance(exc, MlflowException) and code in _NOT_FOUND_CODES


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of a chain (e.g. ConnectionRefusedError under MLflow's wrapper)."""
    seen = {id(exc)}
    while (inner := exc.__cause__ or exc.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        exc = inner
    return exc


def unavailable(settings: TrackingSettings, exc: BaseException) -> TrackingUnavailableError:
    """The error to raise when a call to MLflow failed for a reason other than "not found".

    Names the URI and the root cause (`ConnectionRefusedError: ...`), not MLflow's long wrapper.
    """
    root = _root_cause(exc)
    reason = _first_line(exc) if root is exc else f"{type(root).__name__}: {_first_line(root)}"
    return TrackingUnavailableError(
        f"MLflow tracking store {settings.tracking_uri} is unavailable: {reason}"
    )


def mlflow_client(settings: TrackingSettings) -> MlflowClient:
    """A client bound to this tracking URI, also set as the process default for fluent calls.

    Creating the client opens the store, which creates the tables of a new sqlite database:
    done under `store_lock` so concurrent first users do not race on the migrations.
    """
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    with store_lock(settings):
        return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def check_available(client: MlflowClient, settings: TrackingSettings) -> None:
    """Preflight: one cheap read of the tracking and registry stores, before any run starts.

    Raises TrackingUnavailableError naming the URI (server down, DNS, auth proxy, corrupt
    database), so a training never gets as far as a half-logged run against a dead store.
    """
    try:
        with store_lock(settings):  # the first registry call may initialise a new sqlite store
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
    except Exception as exc:  # MlflowException, requests' ConnectionError, sqlalchemy errors
        raise unavailable(settings, exc) from exc


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def process_tags() -> dict[str, str]:
    """Where this training runs; `reap_orphaned_runs` uses them to spot crashed runs."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def reap_orphaned_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs of this experiment whose process on this host is gone.

    A run whose process died without unwinding (SIGKILL, OOM killer, power loss) stays RUNNING
    in MLflow forever. Only runs started on this host are judged (a pid means nothing
    elsewhere); runs of live processes, including concurrent trainings, are left alone.
    """
    host = socket.gethostname()
    reaped = []
    try:
        running = client.search_runs(
            [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
        )
    except MlflowException:
        return reaped
    active = mlflow.active_run()
    for run in running:
        tags = run.data.tags
        if tags.get(HOST_TAG) != host or not (tags.get(PID_TAG) or "").isdigit():
            continue
        pid = int(tags[PID_TAG])
        mine = pid == os.getpid() and active is not None and active.info.run_id == run.info.run_id
        if mine or (pid != os.getpid() and _process_alive(pid)):
            continue
        client.set_tag(run.info.run_id, "ended_by", f"process {pid} on {host} is gone")
        client.set_terminated(run.info.run_id, "KILLED")
        reaped.append(run.info.run_id)
    return reaped


def ensure_experiment(client: MlflowClient, settings: TrackingSettings, cfg: ClientConfig) -> str:
    """Get or create the client's experiment, with artifacts under the client's own folder.

    The experiment is marked as model training (`mlflow.experimentKind`), also when it was
    created before bettercat set that tag.
    """
    experiment = client.get_experiment_by_name(cfg.experiment_name)
    if experiment is None:
        location = (
            f"{settings.artifact_root.rstrip('/')}/{cfg.client_id}"
            if settings.artifact_root
            else None
        )
        tags = {"client_id": cfg.client_id, EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND}
        try:
            return client.create_experiment(
                cfg.experiment_name, artifact_location=location, tags=tags
            )
        except MlflowException:  # another run created it first
            experiment = client.get_experiment_by_name(cfg.experiment_name)
            if experiment is None:
                raise
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING_KIND:
        client.set_experiment_tag(
            experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND
        )
    return experiment.experiment_id


def ui_base_url(settings: TrackingSettings) -> str:
    """Where a person opens MLflow: $BETTERCAT_MLFLOW_UI_URL when set (e.g. the browser-facing
    address of a server known to containers as http://mlflow:5000), else the server itself, or
    `bettercat mlflow-ui` for a sqlite store."""
    if os.environ.get(MLFLOW_UI_URL_ENV):
        return os.environ[MLFLOW_UI_URL_ENV].rstrip("/")
    if settings.tracking_uri.startswith(("http://", "https://")):
        return settings.tracking_uri.rstrip("/")
    return DEFAULT_MLFLOW_UI_URL


def experiments_url(base: str) -> str:
    """The MLflow UI's experiment list at `base`, in its "Model training" view."""
    return f"{base.rstrip('/')}/#/experiments?{ML_VIEW_QUERY}"


def run_url(settings: TrackingSettings, experiment_id: str, run_id: str) -> str:
    """A run's page. (MLflow's direct `#/runs/<id>` route drops the view parameter when it
    redirects, and opens the GenAI view: always link through the experiment.)"""
    return f"{ui_base_url(settings)}/#/experiments/{experiment_id}/runs/{run_id}?{ML_VIEW_QUERY}"


def model_version_url(settings: TrackingSettings, name: str, version: int | str) -> str:
    return f"{ui_base_url(settings)}/#/models/{quote(name)}/versions/{version}?{ML_VIEW_QUERY}"


def dagster_ui_base_url() -> str:
    """Where a person opens Dagster: $BETTERCAT_DAGSTER_UI_URL, else `dagster dev`'s address."""
    return (os.environ.get(DAGSTER_UI_URL_ENV) or DEFAULT_DAGSTER_UI_URL).rstrip("/")


def dagster_run_url(dagster_run_id: str) -> str:
    """The Dagster UI page of a run, for the `dagster_run_url` tag of the MLflow runs it made."""
    return f"{dagster_ui_base_url()}/runs/{dagster_run_id}"


def prediction_links(
    settings: TrackingSettings,
    model_name: str,
    version: int | str,
    run_id: str | None,
    experiment_id: str | None = None,
) -> dict[str, str]:
    """Links from a scoring output to the model version that scored it and its training run:
    `model_version_url` and `mlflow_run`.

    Without `experiment_id` the run's experiment is looked up in MLflow; `mlflow_run` is left
    out when there is no run id or MLflow cannot say (a link must not fail a scoring).
    """
    links = {"model_version_url": model_version_url(settings, model_name, version)}
    if run_id and experiment_id is None:
        try:
            experiment_id = mlflow_client(settings).get_run(run_id).info.experiment_id
        except MlflowException:
            return links
    if run_id:
        links["mlflow_run"] = run_url(settings, experiment_id, run_id)
    return links


def champion_version(client: MlflowClient, model_name: str) -> ModelVersion | None:
    """The version carrying the `champion` alias, or None when there is none.

    Only "not found" answers mean None: an unreachable store raises TrackingUnavailableError
    rather than passing for "no champion" (which would turn into a misleading "train first").
    """
    try:
        return client.get_model_version_by_alias(model_name, CHAMPION_ALIAS)
    except (MlflowException, RestException) as exc:
        if is_not_found(exc):
            return None
        raise unavailable(_settings_of(client), exc) from exc


def _settings_of(client: MlflowClient) -> TrackingSettings:
    return TrackingSettings(tracking_uri=client.tracking_uri)


def serving_version(client: MlflowClient, model_name: str, client_id: str) -> ModelVersion:
    """The version scoring uses: always `@champion`; a model that never passed its gate serves
    nothing (promote one by hand with `bettercat promote` if that is really wanted)."""
    champion = champion_version(client, model_name)
    if champion is not None:
        return champion
    try:
        versions = client.search_model_versions(f"name = '{model_name}'")
    except MlflowException as exc:
        if not is_not_found(exc):
            raise unavailable(_settings_of(client), exc) from exc
        versions = []
    if not versions:
        raise ModelNotFoundError(
            f"client '{client_id}': no registered model '{model_name}' yet; "
            f"run `bettercat train --client-id {client_id}` first"
        )
    latest = max(versions, key=lambda v: int(v.version))
    reason = (latest.tags or {}).get("gate_reason", "no gate result recorded")
    raise ModelNotFoundError(
        f"client '{client_id}': '{model_name}' has no @champion; latest v{latest.version} did not "
        f"pass its quality gate ({reason}); retrain, or `bettercat promote --client-id "
        f"{client_id} --version N`"
    )


def get_version(
    client: MlflowClient, model_name: str, version: int, client_id: str
) -> ModelVersion:
    try:
        return client.get_model_version(model_name, str(version))
    except MlflowException as exc:
        if not is_not_found(exc):
            raise unavailable(_settings_of(client), exc) from exc
        raise ModelNotFoundError(
            f"client '{client_id}': model '{model_name}' has no version {version}"
        ) from None


def set_champion(client: MlflowClient, model_name: str, version: int) -> None:
    client.set_registered_model_alias(model_name, CHAMPION_ALIAS, str(version))
