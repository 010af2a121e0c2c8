"""Building a SparkSession for local mode, a cluster master or a Spark Connect server."""

from __future__ import annotations

import os
import sys
from typing import Any

from pyspark.sql import SparkSession

from bettercat_assets.core.spark.cds import driver_java_options

SPARK_MASTER_ENV = "SPARK_MASTER"
SPARK_REMOTE_ENV = "SPARK_REMOTE"
DEFAULT_MASTER = "local[*]"
DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"

#: Sensible settings for local scoring: Arrow on, small shuffle, quiet UI.
DEFAULT_SPARK_CONF: dict[str, str] = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "20000",
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.showConsoleProgress": "false",
    "spark.ui.enabled": "false",
    "spark.driver.memory": "2g",
    "spark.python.worker.reuse": "true",
    "spark.sql.session.timeZone": "UTC",
}


def python_for_workers() -> str:
    """$PYSPARK_PYTHON, else this interpreter, so workers see the same packages as the driver."""
    return os.environ.get("PYSPARK_PYTHON") or sys.executable


def spark_target() -> tuple[str, str]:
    """('remote', url) for Spark Connect (`sc://...` in $SPARK_REMOTE or $SPARK_MASTER),
    else ('master', $SPARK_MASTER or local[*])."""
    remote = os.environ.get(SPARK_REMOTE_ENV, "")
    master = os.environ.get(SPARK_MASTER_ENV, "")
    if remote:
        return "remote", remote
    if master.startswith("sc://"):
        return "remote", master
    return "master", master or DEFAULT_MASTER


def build_spark_session(
    master: str | None = None,
    remote: str | None = None,
    conf: dict[str, Any] | None = None,
    app_name: str = "bettercat",
    use_cds: bool = True,
) -> SparkSession:
    """Get or create a session. `remote` (sc://host:port) selects Spark Connect.

    A driver JVM started here maps the class-data archive when one was built for this Java and
    pyspark (`core/spark/cds.py`), unless `use_cds` is False."""
    os.environ.setdefault("PYSPARK_PYTHON", python_for_workers())
    if (
        os.environ.get(SPARK_REMOTE_ENV) == ""
    ):  # pyspark refuses a local master when it is set at all
        del os.environ[SPARK_REMOTE_ENV]
    builder = SparkSession.builder.appName(app_name)
    if remote:
        builder = builder.remote(remote)
    else:
        builder = builder.master(master or DEFAULT_MASTER)
        settings = {**DEFAULT_SPARK_CONF, **(conf or {})}
        if use_cds:
            settings = _with_class_data_sharing(settings)
        for key, value in settings.items():
            builder = builder.config(key, str(value))
        return builder.getOrCreate()
    session = builder.getOrCreate()
    for key, value in (conf or {}).items():
        session.conf.set(key, str(value))
    return session


def _with_class_data_sharing(settings: dict[str, Any]) -> dict[str, Any]:
    options = driver_java_options()
    if not options:
        return settings
    given = str(settings.get(DRIVER_JAVA_OPTIONS, "")).strip()
    return {**settings, DRIVER_JAVA_OPTIONS: f"{options} {given}".strip()}


def is_connect(spark: SparkSession) -> bool:
    """True for a Spark Connect session (no sparkContext, no broadcast)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def default_parallelism(spark: SparkSession) -> int:
    """Cores available to tasks; Spark Connect has no sparkContext, so ask the server's conf."""
    if not is_connect(spark):
        return spark.sparkContext.defaultParallelism
    value = spark.conf.get("spark.default.parallelism", None)
    return int(value) if value else max(2, os.cpu_count() or 2)
