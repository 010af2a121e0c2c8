"""Build the Spark driver's class-data archive (`python -m bettercat_assets.core.spark.build_cds`).

`make install` and the Dockerfile run it once per Java and pyspark; `cds` says where the archive
is and how a starting driver maps it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from bettercat_assets.core.spark.cds import QUIET, archive_path
from bettercat_assets.core.spark.session import build_spark_session


def _exercise(spark, workdir: Path) -> None:
    """The jobs whose classes scoring needs: CSV with a schema, mapInPandas, parquet."""
    import pandas as pd

    source = workdir / "in.csv"
    pd.DataFrame({"product_id": ["a", "b"], "x": [1.0, None]}).to_csv(source, index=False)
    frame = spark.read.csv(str(source), header=True, schema="product_id string, x double")

    def identity(batches):
        yield from batches

    scored = frame.mapInPandas(identity, frame.schema)
    scored.write.mode("overwrite").partitionBy("product_id").parquet(str(workdir / "out"))
    spark.read.parquet(str(workdir / "out")).groupBy("product_id").count().collect()


def build_archive() -> Path | None:
    """Build (or rebuild) this Java's and pyspark's archive; its path, None without Java."""
    from pyspark import SparkContext

    final = archive_path()
    if final is None:
        return None
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f"{final.name}.{os.getpid()}.tmp")
    # C1 only: this JVM exists to load classes, and what the optimising JIT (C2) would compile
    # for it is thrown away (the archive holds classes, not compiled code).
    options = f"-XX:ArchiveClassesAtExit={partial} -XX:TieredStopAtLevel=1 {QUIET}"
    with tempfile.TemporaryDirectory() as tmp:
        spark = build_spark_session(
            master="local[1]", conf={"spark.driver.extraJavaOptions": options}, use_cds=False
        )
        launcher = SparkContext._gateway.proc  # the driver JVM (spark-submit execs java)
        _exercise(spark, Path(tmp))
        spark.stop()
        launcher.stdin.close()  # the JVM exits on EOF, writing the archive as it goes
        launcher.wait(timeout=600)
    if launcher.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"the Spark driver JVM did not write {partial}")
    os.replace(partial, final)  # whole or not at all: a starting JVM never maps a partial file
    return final


def main() -> int:
    path = build_archive()
    print(f"Spark driver class-data archive: {path}" if path else "no java: archive skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
