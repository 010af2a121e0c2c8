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
from bettercat_assets.core.model.scoring_model import PART_FILES
from bettercat_assets.core.model.store import fetch_scoring_model
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
    #: every file to ship (the model's two, and the featurizer's two when there is one)
    files: tuple[Path, ...] = ()


def stage_model(
    settings: TrackingSettings, client_id: str, model_name: str, version: int, top_k: int
) -> StagedModel:
    """Download and verify one version into the shipping folder (no Spark needed yet)."""
    workdir = shipping_dir()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        local, scoring = fetch_scoring_model(settings, model_name, version, tmp)
        stem = f"{client_id}-v{int(version)}-{forest_digest(local, scoring.kind)[:12]}"
        shipped: dict[str, tuple[Path, Path]] = {}
        for part in scoring.parts():
            arrays_name, meta_name = PART_FILES[part]
            tag = "" if part == scoring.kind else f"-{part}"
            arrays, meta = workdir / f"{stem}{tag}.npz", workdir / f"{stem}{tag}.json"
            shutil.copyfile(local / arrays_name, arrays)
            shutil.copyfile(local / meta_name, meta)
            shipped[part] = (arrays, meta)
        profile = _load_profile(local, model_name, version)
    arrays, meta = shipped[scoring.kind]
    featurizer = shipped.get("featurizer")
    model = ShippedModel(
        client_id=client_id,
        version=int(version),
        arrays_file=arrays.name,
        meta_file=meta.name,
        feature_names=tuple(scoring.feature_names),
        n_classes=len(scoring.classes_),
        top_k=min(top_k, len(scoring.classes_)),
        kind=scoring.kind,
        featurizer_files=(featurizer[0].name, featurizer[1].name) if featurizer else None,
        string_features=tuple(
            n for n in scoring.feature_names if n not in scoring.names_of_kind("numeric")
        ),
    )
    files = tuple(path for pair in shipped.values() for path in pair)
    return StagedModel(arrays=arrays, meta=meta, model=model, profile=profile, files=files)


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
    spark.addArtifacts(*(str(p) for p in staged.files or (staged.arrays, staged.meta)), file=True)
    return staged.model


def forest_digest(directory: Path, kind: str = "random_forest") -> str:
    """The checksum the compact model records about itself (already verified)."""
    meta = json.loads((directory / PART_FILES[kind][1]).read_text(encoding="utf-8"))
    return str(meta.get("arrays_sha256") or meta["sha256"])
