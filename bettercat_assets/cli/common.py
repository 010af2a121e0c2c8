"""What every `bettercat` command shares: progress lines, one-line user errors, options, the
client, layout, tracking settings and Spark session it runs with."""

from __future__ import annotations

import json
import sys
import time
from functools import wraps
from pathlib import Path
from typing import Any

import click

from bettercat_assets.core.config.errors import BettercatError, TrackingUnavailableError

_STARTED = time.perf_counter()


def progress(message: str) -> None:
    """Progress goes to stderr so stdout stays clean for tables."""
    click.echo(f"[{time.perf_counter() - _STARTED:6.1f}s] {message}", err=True)


def user_errors(func):
    """Turn user mistakes into one clear line on stderr and exit code 2, without a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BettercatError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except TrackingUnavailableError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(3)

    return wrapper


def load_client(
    clients_file: str | None, client_id: str, features: str | None = None, params: str | None = None
):
    from bettercat_assets.core.config.clients import ClientConfig, _check_model_params, load_clients
    from bettercat_assets.core.config.errors import ConfigError

    cfg: ClientConfig = load_clients(clients_file).get(client_id)
    update: dict[str, Any] = {}
    if features:
        update["features"] = tuple(f.strip() for f in features.split(",") if f.strip())
        if not update["features"]:
            raise ConfigError(f"client '{client_id}': --features is empty")
        from bettercat_assets.core.config.feature_specs import FeatureSpec

        kinds = {spec.name: spec for spec in cfg.feature_specs}  # a listed name keeps its kind
        update["feature_specs"] = tuple(
            kinds.get(name, FeatureSpec(name=name)) for name in update["features"]
        )
    if params:
        try:
            overrides = json.loads(params)
            if not isinstance(overrides, dict):
                raise ValueError("must be a JSON object, e.g. '{\"n_estimators\": 50}'")
            merged = _check_model_params({**cfg.model_params, **overrides})
        except (json.JSONDecodeError, ValueError) as exc:
            raise ConfigError(f"client '{client_id}': --model-params: {exc}") from None
        update["model_params"] = merged
    return cfg.model_copy(update=update) if update else cfg


def data_layout(data_prefix: str | None):
    from bettercat_assets.core.config.paths import DataLayout
    from bettercat_assets.core.config.settings import default_data_prefix

    return DataLayout(Path(data_prefix) if data_prefix else default_data_prefix())


def tracking_settings():
    from bettercat_assets.core.config.settings import TrackingSettings

    return TrackingSettings.from_env()


def timed_call(func):
    """`func()` and how long it took."""
    start = time.perf_counter()
    value = func()
    return value, time.perf_counter() - start


def seconds_since_process_start() -> float:
    import psutil

    return time.time() - psutil.Process().create_time()


#: A scoring input up to this size (gzip) is a short job: its driver JVM skips the optimising
#: JIT compiler (C2), whose compile work would not pay off before the job ends.
SHORT_JOB_INPUT_BYTES = 16 << 20
#: Rows per Arrow batch of a short job: its few batches need no amortising, and smaller ones keep
#: the Python worker's peak RSS near its idle size (bench section 7).
SHORT_JOB_ARROW_BATCH = 1000
#: MLflow 3's server starts a job runner and huey consumers (9 processes, ~35 s of CPU, ~2 GB of
#: RSS between them) for GenAI jobs; bettercat submits none, so its MLflow UI and the compose
#: server turn it off.
MLFLOW_JOB_EXECUTION = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def start_spark(short_job: bool = False):
    from bettercat_assets.core.spark.session import build_spark_session, spark_target

    kind, target = spark_target()
    progress(f"starting Spark ({target})")
    short = short_job and kind == "master"  # a Spark Connect server's JVM is not ours to tune
    conf = (
        {
            "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1",
            "spark.sql.execution.arrow.maxRecordsPerBatch": str(SHORT_JOB_ARROW_BATCH),
        }
        if short
        else None
    )
    return build_spark_session(**{kind: target}, conf=conf)


def is_short_job(layout, client_id: str) -> bool:
    from bettercat_assets.core.config.errors import BettercatError

    try:
        return layout.predict_file(client_id).stat().st_size <= SHORT_JOB_INPUT_BYTES
    except (OSError, BettercatError):
        return False  # an unknown client or a missing file: reported by what follows


clients_file_option = click.option(
    "--clients-file", envvar="BETTERCAT_CLIENTS_FILE", default=None, help="Default ./clients.yaml."
)
data_prefix_option = click.option(
    "--data-prefix", envvar="DATA_PREFIX", default=None, help="Default ./data."
)
client_option = click.option("--client-id", required=True, help="A client id from clients.yaml.")
