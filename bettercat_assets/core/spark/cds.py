"""Class data sharing for the Spark driver JVM: Spark's classes parsed once, mapped at start.

A local or client-mode Spark driver loads several thousand classes from pyspark's jars at every
start. Java's application class-data sharing (AppCDS, JDK 13+) archives them once; each later
JVM maps the archive instead of parsing and verifying the classes again, which takes seconds off
every Spark start (bench/RESULTS.md, section 7). The archive is built by
`python -m bettercat_assets.core.spark.cds` (`deploy/install.sh` runs it): a throwaway session
runs the kinds of jobs scoring runs (CSV in, `mapInPandas`, parquet out and back), and its JVM
dumps the classes it loaded when it exits.

An archive is only valid for the Java and pyspark it was built with, so its name carries both;
with no matching archive Spark starts as before. Spark Connect sessions start no driver JVM
here and are not affected.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

#: Where archives live: beside the interpreter whose pyspark they belong to.
ARCHIVE_DIR = Path(sys.prefix) / "share" / "bettercat"
#: Silences the JVM's notes about classes it cannot archive (signed jars, old class files).
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"


def _java() -> Path | None:
    """The java that pyspark's launcher runs: $JAVA_HOME/bin/java, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = Path(home) / "bin" / "java" if home else shutil.which("java")
    return Path(found).resolve() if found and Path(found).exists() else None


def archive_path() -> Path | None:
    """The archive for this Java and this pyspark (None without Java)."""
    import pyspark

    java = _java()
    if java is None:
        return None
    jars = Path(pyspark.__file__).parent / "jars"
    key = f"{java}:{java.stat().st_mtime_ns}:{pyspark.__version__}:{jars.stat().st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return ARCHIVE_DIR / f"spark-driver-{pyspark.__version__}-{digest}.jsa"


def driver_java_options() -> str:
    """JVM options that map the archive, or "" when there is none for this Java and pyspark."""
    path = archive_path()
    if path is None or not path.is_file():
        return ""
    return f"-XX:SharedArchiveFile={path} -Xshare:auto {QUIET}"


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

    from bettercat_assets.core.spark.session import build_spark_session

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
