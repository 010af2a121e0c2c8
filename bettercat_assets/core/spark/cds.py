"""Class data sharing for the Spark driver JVM: Spark's classes parsed once, mapped at start.

A local or client-mode Spark driver loads several thousand classes from pyspark's jars at every
start. Java's application class-data sharing (AppCDS, JDK 13+) archives them once; each later
JVM maps the archive instead of parsing and verifying the classes again, which takes seconds off
every Spark start (bench/RESULTS.md, section 7). The archive is built by
`python -m bettercat_assets.core.spark.build_cds` (`deploy/install.sh` runs it): a throwaway session
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
