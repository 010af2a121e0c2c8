"""Spark as a `dagster_pyspark.PySparkResource`: local, a cluster master, or Spark Connect."""

from typing import Any

from dagster import InitResourceContext
from dagster_pyspark import PySparkResource
from pydantic import Field

from bettercat_assets.core.spark_session import build_spark_session


class SparkResource(PySparkResource):
    """PySparkResource that also speaks Spark Connect and starts its session on first use.

    Steps that never touch Spark (training) pay nothing for it.
    """

    spark_config: dict[str, Any] = Field(default_factory=dict)
    master: str = Field("local[*]", description="spark.master URL, e.g. local[2] or spark://h:7077")
    remote: str = Field("", description="Spark Connect URL sc://host:port; overrides master")

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._spark_session = None

    @property
    def spark_session(self) -> Any:
        if self._spark_session is None:
            self._spark_session = build_spark_session(
                master=self.master, remote=self.remote or None, conf=self.spark_config
            )
        return self._spark_session
