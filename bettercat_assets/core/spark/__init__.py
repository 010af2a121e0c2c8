"""Spark start-up: the session (local, cluster or Connect) and the driver's class-data archive.

Offers:
- `session`: build_spark_session, spark_target, is_connect, python_for_workers
- `cds`: archive_path, driver_java_options
- `build_cds`: build_archive (`python -m bettercat_assets.core.spark.build_cds`)
"""

from bettercat_assets.core._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "build_spark_session": "session",
        "spark_target": "session",
        "is_connect": "session",
        "python_for_workers": "session",
        "archive_path": "cds",
        "build_archive": "build_cds",
        "driver_java_options": "cds",
    },
)
