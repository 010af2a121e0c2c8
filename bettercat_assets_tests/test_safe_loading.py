"""Safe model loading: tampered artifacts are refused with a clear error, and nothing in them runs.

The sklearn model is a skops file loaded with OUR trusted-type list (not the one in the
artifact's MLmodel file); the compact model is a checksummed, pickle-free `.npz`.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
from collections import OrderedDict
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import skops.io
import yaml

from bettercat_assets.core.config.errors import UnsafeModelError
from bettercat_assets.core.model import store as model_store
from bettercat_assets.core.model.compact_forest import ARRAYS_FILE, META_FILE
from bettercat_assets_tests.reliability_support import (
    REPO,
    assert_one_error_line,
    tree_digest,
    write_clients_file,
)
from bettercat_assets_tests.workspace_support import cli_predict

CID = "safe_shop"
MODEL = f"{CID}_model"
DAY = date(2026, 5, 1)
MARKER_ENV = "BETTERCAT_TEST_MARKER"


class EvilDict(OrderedDict):
    """An OrderedDict subclass: not on the trusted list; leaves a mark if ever constructed."""

    def __init__(self, *args, **kwargs):
        _touch_marker("EvilDict.__init__")
        super().__init__(*args, **kwargs)

    def __setstate__(self, state):
        _touch_marker("EvilDict.__setstate__")


class Payload:
    def __setstate__(self, state):
        _touch_marker("Payload.__setstate__")


MARKERS: list[str] = []


def _touch_marker(what: str) -> None:
    MARKERS.append(what)


def _local(uri: str) -> Path:
    return Path(urlparse(uri).path) if uri.startswith("file:") else Path(uri)


def _sklearn_dir(tracking_settings, version: int) -> Path:
    """The sklearn MLflow model (skops file, MLmodel) of a registered version."""
    return _local(model_store.sklearn_artifact_uri(tracking_settings, MODEL, version))


@pytest.fixture(scope="module")
def safe_model(tmp_path_factory, tracking_settings):
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.config.paths import DataLayout
    from bettercat_assets.core.data.generate import generate_client_data
    from bettercat_assets.core.training.train import train_model

    root = tmp_path_factory.mktemp("safe_loading")
    clients_file = write_clients_file(
        root / "clients.yaml",
        [
            f"{{client_id: {CID}, features: [price, weight_g], "
            "sample_data: {products: 300, categories: 5, noise: 0.2}}"
        ],
    )
    registry = load_clients(clients_file)
    layout = DataLayout(root / "data")
    generate_client_data(registry.get(CID), layout, seed=41)
    result = train_model(registry.get(CID), DAY, layout=layout, settings=tracking_settings)
    model_dir = _local(model_store.model_artifact_uri(tracking_settings, MODEL, result.version))
    assert (model_dir / model_store.COMPACT_ARTIFACT_PATH / ARRAYS_FILE).is_file()
    assert not list(model_dir.rglob("*.skops"))  # the registered model has no sklearn forest
    assert (_sklearn_dir(tracking_settings, result.version) / model_store.SKOPS_FILE).is_file()
    return registry, layout, result.version, model_dir


@pytest.fixture
def pristine(safe_model, tracking_settings):
    """Restore the models' artifacts after each tampering test; start with an empty cache."""
    _, _, version, model_dir = safe_model
    dirs = [model_dir, _sklearn_dir(tracking_settings, version)]
    saved = {p: p.read_bytes() for d in dirs for p in d.rglob("*") if p.is_file()}
    model_store._CACHE.clear()
    MARKERS.clear()
    yield safe_model
    for path, data in saved.items():
        path.write_bytes(data)
    model_store._CACHE.clear()


def _redump_with(tracking_settings, version: int, **extra) -> None:
    forest = model_store.load_sklearn(tracking_settings, MODEL, version)
    for name, value in extra.items():
        setattr(forest, name, value)
    skops.io.dump(forest, _sklearn_dir(tracking_settings, version) / model_store.SKOPS_FILE)


# --- skops: untrusted types ------------------------------------------------------------------


@pytest.mark.integration
def test_untrusted_class_in_skops_file_is_refused_without_running_it(pristine, tracking_settings):
    _, _, version, _ = pristine
    evil = EvilDict(a=1)
    MARKERS.clear()
    _redump_with(tracking_settings, version, evil_=evil)
    MARKERS.clear()
    with pytest.raises(UnsafeModelError) as info:
        model_store.load_sklearn(tracking_settings, MODEL, version)
    message = str(info.value)
    assert message.startswith(f"model '{MODEL}' v{version} holds untrusted types, refusing to load")
    assert f"{__name__}.EvilDict" in message
    assert MARKERS == []  # never constructed, never unpickled


@pytest.mark.integration
def test_function_in_skops_file_is_refused(pristine, tracking_settings):
    import os

    _, _, version, _ = pristine
    _redump_with(tracking_settings, version, callback_=os.system)
    with pytest.raises(UnsafeModelError, match=r"untrusted types.*system"):
        model_store.load_sklearn(tracking_settings, MODEL, version)


@pytest.mark.integration
def test_untrusted_module_is_not_even_imported(pristine, tracking_settings, tmp_path, monkeypatch):
    """A payload whose module has import-time side effects: loading must not import it."""
    _, _, version, _ = pristine
    marker = tmp_path / "imported.log"
    module = tmp_path / "bettercat_evil_payload.py"
    module.write_text(
        f"open({str(marker)!r}, 'a').write('imported\\n')\n"
        "class Payload:\n"
        "    def __setstate__(self, state):\n"
        f"        open({str(marker)!r}, 'a').write('setstate\\n')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import bettercat_evil_payload  # noqa: PLC0415 - on purpose, to dump an instance

    _redump_with(tracking_settings, version, payload_=bettercat_evil_payload.Payload())
    assert marker.read_text() == "imported\n"
    del sys.modules["bettercat_evil_payload"]  # importable again: a load would run it

    with pytest.raises(UnsafeModelError, match="bettercat_evil_payload.Payload"):
        model_store.load_sklearn(tracking_settings, MODEL, version)
    assert marker.read_text() == "imported\n"
    assert "bettercat_evil_payload" not in sys.modules


@pytest.mark.integration
def test_trusted_list_in_the_artifact_is_ignored(pristine, tracking_settings):
    """The MLmodel file is part of the artifact: widening its list must not widen ours."""
    _, _, version, _ = pristine
    _redump_with(tracking_settings, version, evil_=EvilDict(a=1))
    mlmodel = _sklearn_dir(tracking_settings, version) / "MLmodel"
    spec = yaml.safe_load(mlmodel.read_text())
    spec["flavors"]["sklearn"]["skops_trusted_types"] = [
        *spec["flavors"]["sklearn"].get("skops_trusted_types", []),
        f"{__name__}.EvilDict",
    ]
    mlmodel.write_text(yaml.safe_dump(spec))
    MARKERS.clear()
    with pytest.raises(UnsafeModelError, match="EvilDict"):
        model_store.load_sklearn(tracking_settings, MODEL, version)
    assert MARKERS == []


@pytest.mark.integration
def test_something_else_than_a_forest_is_refused(pristine, tracking_settings):
    _, _, version, _ = pristine
    sklearn_dir = _sklearn_dir(tracking_settings, version)
    skops.io.dump({"not": "a forest"}, sklearn_dir / model_store.SKOPS_FILE)
    with pytest.raises(UnsafeModelError, match="not a RandomForestClassifier"):
        model_store.load_sklearn(tracking_settings, MODEL, version)
    (sklearn_dir / model_store.SKOPS_FILE).write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(UnsafeModelError, match="cannot be loaded safely"):
        model_store.load_sklearn(tracking_settings, MODEL, version)


# --- compact npz: checksummed, no pickle ------------------------------------------------------


@pytest.mark.integration
def test_tampered_compact_model_is_refused_by_scoring(pristine, tracking_settings, spark):
    from bettercat_assets.core.scoring.spark_pass import predict_categories

    registry, layout, version, model_dir = pristine
    cfg = registry.get(CID)
    good = predict_categories(cfg, DAY, spark=spark, layout=layout, settings=tracking_settings)
    before = tree_digest(good.output_dir)

    npz = model_dir / model_store.COMPACT_ARTIFACT_PATH / ARRAYS_FILE
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    npz.write_bytes(bytes(data))
    model_store._CACHE.clear()

    with pytest.raises(UnsafeModelError) as info:
        model_store.load_compact(tracking_settings, MODEL, version)
    message = str(info.value)
    assert message.startswith(f"model '{MODEL}' v{version}: compact model at file:")
    assert "is damaged or tampered with, refusing to score" in message
    assert f"{ARRAYS_FILE} does not match the checksum in {META_FILE}" in message
    assert "/tmp" not in message.split("refusing to score")[1]  # no temporary download path

    result = cli_predict(registry, layout, CID, DAY)
    line = assert_one_error_line(result.exit_code, result.stdout, result.stderr)
    assert line == f"error: {message}"
    assert tree_digest(good.output_dir) == before  # the previous output is untouched


@pytest.mark.integration
def test_pickled_arrays_are_refused_even_with_a_matching_checksum(pristine, tracking_settings):
    """An attacker who rewrites the npz AND its checksum still cannot get a pickle loaded."""
    _, _, version, model_dir = pristine
    compact = model_dir / model_store.COMPACT_ARTIFACT_PATH
    with np.load(compact / ARRAYS_FILE, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["threshold"] = np.array([Payload()], dtype=object)
    with open(compact / ARRAYS_FILE, "wb") as fh:
        np.savez(fh, **arrays)  # pickles the object array
    meta = json.loads((compact / META_FILE).read_text())
    meta["arrays_sha256"] = hashlib.sha256((compact / ARRAYS_FILE).read_bytes()).hexdigest()
    (compact / META_FILE).write_text(json.dumps(meta))
    MARKERS.clear()
    with pytest.raises(UnsafeModelError, match="allow_pickle=False"):
        model_store.load_compact(tracking_settings, MODEL, version)
    assert MARKERS == []


# --- no unsafe deserialisation anywhere on the loading path -----------------------------------

LOADING_MODULES = [
    "scoring/spark_pass.py",
    "model/store.py",
    "model/compact_forest.py",
    "model/pyfunc.py",
    "model/pyfunc_entry.py",
    "scoring/model_shipping.py",
    "scoring/batch_scorer.py",
    "scoring/pass_stats.py",
    "scoring/check_stats.py",
]
FORBIDDEN_TEXT = [
    r"\bpickle\.loads?\b",
    r"\bjoblib\.load\b",
    r"\bcloudpickle\b",
    r"\bdill\b",
    r"allow_pickle\s*=\s*True",
    r"mlflow\.(sklearn|pyfunc)\.load_model",
    r"\bunsafe_load\b",
    r"yaml\.load\(",
]


@pytest.mark.parametrize("name", LOADING_MODULES)
def test_loading_code_never_unpickles(name):
    path = REPO / "bettercat_assets" / "core" / name
    source = path.read_text()
    for pattern in FORBIDDEN_TEXT:
        assert not re.search(pattern, source), (name, pattern)

    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert not any(
                n.split(".")[0] in {"pickle", "cloudpickle", "joblib", "dill"} for n in names
            ), (name, ast.unparse(node))
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        keywords = {k.arg: k.value for k in node.keywords}
        if func in {"np.load", "numpy.load"}:
            flag = keywords.get("allow_pickle")
            assert isinstance(flag, ast.Constant) and flag.value is False, (name, ast.unparse(node))
        if func.endswith("skops.io.load") or func in {"sio.load", "skops_load"}:
            trusted = keywords.get("trusted")
            assert trusted is not None and ast.unparse(trusted) == "SKOPS_TRUSTED_TYPES", (
                name,
                ast.unparse(node),
            )


def test_trusted_types_are_only_the_tree():
    assert model_store.SKOPS_TRUSTED_TYPES == ["sklearn.tree._tree.Tree"]


def test_worker_scoring_module_imports_neither_mlflow_nor_sklearn():
    """What Spark's Python workers import to score (`batch_scorer`) stays lean and unpickling-free:
    the models come as shipped files, never through MLflow or a scikit-learn object."""
    import subprocess

    # (cloudpickle is no marker here: pyarrow itself imports it; the source checks above forbid
    # it in our modules.)
    heavy = ["mlflow", "sklearn", "skops", "joblib", "dagster"]
    code = (
        "import sys, bettercat_assets.core.scoring.batch_scorer; "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", result.stdout
