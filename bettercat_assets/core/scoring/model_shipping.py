"""Ship compact models from the driver to Spark's executors with Spark's own file distribution.

The driver resolves each client's version, downloads its compact form from MLflow and verifies
its checksum (a damaged or tampered model is refused before any task starts): that needs no
Spark, so it can happen while the session is still starting. Shipping then hands the two
files to `SparkSession.addArtifacts(..., file=True)`, which works under classic Spark (local
or a cluster) and under Spark Connect. File names carry the client, version and checksum, so a
long-lived session never confuses two models.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession

from bettercat_assets.core.config.errors import UnsafeModelError
from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.model.compact_forest import ARRAYS_FILE, META_FILE
from bettercat_assets.core.model.store import fetch_compact
from bettercat_assets.core.monitoring.reference import PROFILE_FILE, ReferenceProfile
from bettercat_assets.core.scoring.batch_scorer import ShippedModel


@functools.cache
def shipping_dir() -> Path:
    """This process's folder of shipped files: kept while the process (and its session) lives,
    since a classic driver serves executors the files from here."""
    path = Path(tempfile.mkdtemp(prefix=f"bettercat-models-{os.getpid()}-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@dataclass(frozen=True)
class StagedModel:
    """A verified compact model in this process's shipping folder, not yet given to Spark."""

    arrays: Path
    meta: Path
    model: ShippedModel
    #: the version's monitoring reference (None: registered before monitoring existed)
    profile: ReferenceProfile | None = None


def stage_model(
    settings: TrackingSettings, client_id: str, model_name: str, version: int, top_k: int
) -> StagedModel:
    """Download and verify one version into the shipping folder (no Spark needed yet)."""
    workdir = shipping_dir()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        local, forest = fetch_compact(settings, model_name, version, tmp)
        digest = forest_digest(local)
        stem = f"{client_id}-v{int(version)}-{digest[:12]}"
        arrays, meta = workdir / f"{stem}.npz", workdir / f"{stem}.json"
        shutil.copyfile(local / ARRAYS_FILE, arrays)
        shutil.copyfile(local / META_FILE, meta)
        profile = _load_profile(local, model_name, version)
    model = ShippedModel(
        client_id=client_id,
        version=int(version),
        arrays_file=arrays.name,
        meta_file=meta.name,
        feature_names=tuple(str(f) for f in forest.feature_names),
        n_classes=len(forest.classes_),
        top_k=min(top_k, len(forest.classes_)),
    )
    return StagedModel(arrays=arrays, meta=meta, model=model, profile=profile)


def _load_profile(local: Path, model_name: str, version: int) -> ReferenceProfile | None:
    """The version's reference profile, verified; UnsafeModelError if it is damaged."""
    path = local / PROFILE_FILE
    if not path.exists():
        return None
    try:
        return ReferenceProfile.load(path)
    except ValueError as exc:
        raise UnsafeModelError(
            f"model '{model_name}' v{version}: {PROFILE_FILE} is damaged or tampered with, "
            f"refusing to score: {str(exc).replace(str(local), '.')}"
        ) from None


def ship_model(spark: SparkSession, staged: StagedModel) -> ShippedModel:
    """Hand a staged model's two files to Spark; returns what the workers need to load it."""
    spark.addArtifacts(str(staged.arrays), str(staged.meta), file=True)
    return staged.model


def forest_digest(directory: Path) -> str:
    """The arrays checksum the compact form records about itself (already verified)."""
    return str(json.loads((directory / META_FILE).read_text(encoding="utf-8"))["arrays_sha256"])
