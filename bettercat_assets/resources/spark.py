"""Spark as a `dagster_pyspark.PySparkResource`: local, a cluster master, or Spark Connect."""

from __future__ import annotations

import json
from typing import Any

from dagster import InitResourceContext
from dagster_pyspark import PySparkResource
from pydantic import Field

from bettercat_assets.core.spark.session import DEFAULT_MASTER, build_spark_session


def parse_spark_conf(raw: str) -> dict[str, str]:
    """Extra Spark settings given as a JSON object (keys keep their case)."""
    if not raw.strip():
        return {}
    try:
        conf = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the Spark settings are not valid JSON: {exc}") from None
    if not isinstance(conf, dict):
        raise ValueError("the Spark settings must be a JSON object of Spark settings")
    return {str(k): str(v) for k, v in conf.items()}


class SparkResource(PySparkResource):
    """PySparkResource that also speaks Spark Connect and starts its session on first use.

    Steps that never touch Spark (training) pay nothing for it.
    """

    spark_config: dict[str, Any] = Field(default_factory=dict)
    master: str = Field(
        DEFAULT_MASTER, description="spark.master URL, e.g. local[2] or spark://h:7077"
    )
    remote: str = Field("", description="Spark Connect URL sc://host:port; overrides master")
    extra_conf_json: str = Field(
        "", description="More Spark settings as a JSON object ($BETTERCAT_SPARK_CONF)"
    )

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._spark_session = None

    @property
    def spark_session(self) -> Any:
        if self._spark_session is None:
            conf = {**self.spark_config, **parse_spark_conf(self.extra_conf_json)}
            self._spark_session = build_spark_session(
                master=self.master, remote=self.remote or None, conf=conf
            )
        return self._spark_session
