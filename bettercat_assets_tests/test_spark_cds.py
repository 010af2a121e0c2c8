"""The Spark driver's class-data archive: built by `make install`, mapped by every local start."""

from __future__ import annotations

from pathlib import Path

import pytest

from bettercat_assets.core.spark import cds as spark_cds
from bettercat_assets.core.spark.session import DRIVER_JAVA_OPTIONS, _with_class_data_sharing


def test_no_archive_leaves_the_options_alone(monkeypatch, tmp_path):
    monkeypatch.setattr(spark_cds, "ARCHIVE_DIR", tmp_path)
    assert spark_cds.driver_java_options() == ""
    settings = {DRIVER_JAVA_OPTIONS: "-Dx=1"}
    assert _with_class_data_sharing(settings) == settings


def test_an_archive_is_mapped_beside_the_users_own_options(monkeypatch, tmp_path):
    monkeypatch.setattr(spark_cds, "ARCHIVE_DIR", tmp_path)
    archive = spark_cds.archive_path()
    archive.write_bytes(b"x")
    merged = _with_class_data_sharing({DRIVER_JAVA_OPTIONS: "-Dx=1", "spark.a": "b"})
    assert merged["spark.a"] == "b"
    assert merged[DRIVER_JAVA_OPTIONS].startswith(f"-XX:SharedArchiveFile={archive} ")
    assert merged[DRIVER_JAVA_OPTIONS].endswith(" -Dx=1")


def test_the_archive_name_follows_java_and_pyspark(monkeypatch):
    import pyspark

    first = spark_cds.archive_path()
    monkeypatch.setattr(pyspark, "__version__", "0.0.0-other")
    assert spark_cds.archive_path() != first


@pytest.mark.integration
def test_the_installed_archive_is_mapped_by_the_sessions_jvm(spark):
    """`make install` built the archive, so the session's driver JVM was started with it."""
    archive = spark_cds.archive_path()
    assert archive is not None and archive.is_file(), "make install builds it (deploy/install.sh)"
    jvm = spark.sparkContext._jvm
    args = list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
    assert f"-XX:SharedArchiveFile={archive}" in args, args
    assert Path(archive).stat().st_size > 10 << 20  # thousands of classes, not an empty dump


@pytest.mark.parametrize(
    ("short_job", "kind", "expect_tuned"),
    [(True, "master", True), (False, "master", False), (True, "remote", False)],
)
def test_cli_tunes_only_a_short_job_on_its_own_jvm(monkeypatch, short_job, kind, expect_tuned):
    """A small `bettercat predict` on local Spark: C1-only driver JIT and small Arrow batches
    (a lean worker); a big input or a Spark Connect server keeps the defaults."""
    from bettercat_assets.cli import common as cli_common
    from bettercat_assets.core.spark import session as spark_session

    seen = {}
    monkeypatch.setattr(spark_session, "spark_target", lambda: (kind, "local[1]"))
    monkeypatch.setattr(spark_session, "build_spark_session", lambda **kw: seen.update(kw))
    cli_common.start_spark(short_job)
    conf = seen["conf"] or {}
    tuned = {
        "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(cli_common.SHORT_JOB_ARROW_BATCH),
    }
    assert (conf == tuned) is expect_tuned, conf
    assert seen[kind] == "local[1]"
