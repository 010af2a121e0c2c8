"""A client's scoring input: its model version resolved and staged, its CSV checked and
decompressed, and its rows read by Spark into the shared pass's layout."""

from __future__ import annotations

import functools
import gzip
import shutil
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.config.errors import DataError
from bettercat_assets.core.config.paths import DataLayout
from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.data.loading import check_scoring_header, read_header
from bettercat_assets.core.scoring.batch_scorer import (
    CLIENT_COLUMN,
    ID_COLUMN,
    ShippedModel,
    feature_column,
    string_column,
)
from bettercat_assets.core.scoring.model_shipping import StagedModel, stage_model
from bettercat_assets.core.scoring.timing import timed
from bettercat_assets.core.tracking import runs as tracking

_COPY_BUFFER = 8 << 20


@dataclass(frozen=True)
class Prepared:
    """A client ready for the shared pass: version resolved, model verified, input decompressed."""

    client: ClientConfig
    run_id: str | None
    source: Path
    header: list[str]
    features: list[str]
    plain_csv: Path
    staged: StagedModel

    @property
    def model(self) -> ShippedModel:
        return self.staged.model


def _resolve_version(client: ClientConfig, settings: TrackingSettings, version: int | None):
    mlflow_client = tracking.mlflow_client(settings)
    if version is not None:
        return tracking.get_version(mlflow_client, client.model_name, version, client.client_id)
    return tracking.serving_version(mlflow_client, client.model_name, client.client_id)


def prepare(
    client: ClientConfig,
    version: int | None,
    settings: TrackingSettings,
    layout: DataLayout,
    workdir: Path,
    timings: dict[str, float],
) -> Prepared:
    """Resolve and stage the client's model, check its scoring file's header, decompress it."""
    cid = client.client_id
    with timed(timings, "model_download"):
        mv = _resolve_version(client, settings, version)
        staged = stage_model(settings, cid, client.model_name, int(mv.version), client.top_k)
    features = list(staged.model.feature_names)
    with timed(timings, "input_prep"):
        source = layout.predict_file(cid)
        header = read_header(cid, source)
        check_scoring_header(cid, source, header, client.id_column, features)
        plain = _decompress(cid, source, workdir / f"input-{cid}.csv")
    return Prepared(
        client=client,
        run_id=mv.run_id,
        source=source,
        header=header,
        features=features,
        plain_csv=plain,
        staged=staged,
    )


def _decompress(client_id: str, source: Path, target: Path) -> Path:
    """Write `source` (gzip) to `target` as plain CSV, which Spark can split across cores."""
    try:
        with gzip.open(source, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, _COPY_BUFFER)
    except (OSError, EOFError, zlib.error) as exc:
        target.unlink(missing_ok=True)
        raise DataError(client_id, source, f"cannot read gzip CSV: {exc}") from None
    return target


def _input_schema(
    header: list[str], id_column: str, numeric: Iterable[str] | None = None
) -> T.StructType:
    """Numeric features as doubles; the id, text, categorical and extra columns as strings.
    `numeric` None: every column but the id is numeric."""
    numeric = set(header) - {id_column} if numeric is None else set(numeric)
    return T.StructType(
        [
            T.StructField(name, T.DoubleType() if name in numeric else T.StringType(), True)
            for name in header
        ]
    )


def read_products(
    spark: SparkSession,
    path: Path,
    header: list[str],
    id_column: str,
    numeric: Iterable[str] | None = None,
) -> DataFrame:
    """Read a scoring CSV with an explicit schema (no inference pass), failing on bad rows."""
    return spark.read.csv(
        str(path),
        header=True,
        schema=_input_schema(header, id_column, numeric),
        mode="FAILFAST",
        enforceSchema=False,
        multiLine=False,
        encoding="UTF-8",
        escape='"',  # RFC 4180 doubled quotes, as pandas and csv writers produce them
    )


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _client_frame(spark: SparkSession, p: Prepared, width: int, string_width: int = 0) -> DataFrame:
    """One client's products in the shared layout: client_id, product_id, its numeric features
    in f0..f{width-1} and its text/categorical ones in s0..s{string_width-1}. Only the model's
    features are selected; other columns of the file stay behind."""
    numeric, strings = p.model.numeric_features, p.model.string_features
    products = read_products(spark, p.plain_csv, p.header, p.client.id_column, numeric)
    double, string = T.DoubleType(), T.StringType()
    return products.select(
        F.lit(p.client.client_id).alias(CLIENT_COLUMN),
        F.col(_quoted(p.client.id_column)).alias(ID_COLUMN),
        *[F.col(_quoted(name)).alias(feature_column(i)) for i, name in enumerate(numeric)],
        *[F.lit(None).cast(double).alias(feature_column(i)) for i in range(len(numeric), width)],
        *[F.col(_quoted(name)).alias(string_column(i)) for i, name in enumerate(strings)],
        *[
            F.lit(None).cast(string).alias(string_column(i))
            for i in range(len(strings), string_width)
        ],
    )


def shared_frame(spark: SparkSession, prepared: Iterable[Prepared]) -> DataFrame:
    """Every prepared client's products in one DataFrame (features padded to the widest)."""
    prepared = list(prepared)
    width = max(len(p.model.numeric_features) for p in prepared)
    string_width = max(len(p.model.string_features) for p in prepared)
    frames = [_client_frame(spark, p, width, string_width) for p in prepared]
    return functools.reduce(DataFrame.unionByName, frames)
