"""The fleet server's model, loaded without mlflow.pyfunc.load_model: the same answers, byte
for byte, as the registered pyfunc through MLflow's request handling, and the same 400s."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server
from sklearn.ensemble import RandomForestClassifier

from bettercat_assets.core.model import pyfunc as serving_model
from bettercat_assets.core.model import store
from bettercat_assets.core.model.forest_conversion import compact_from_sklearn
from bettercat_assets.core.serving.fleet_requests import parse_payload
from bettercat_assets.core.serving.model_cache import ModelCache
from bettercat_assets.core.serving.served_model import NotLean, load_served

FEATURES = ["price", "weight_g"]
COLUMNS = ["sku", *FEATURES]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A top-k pyfunc saved as training logs it (version 7, id column `sku`, top 3)."""
    root = tmp_path_factory.mktemp("served")
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(300, 2)), columns=FEATURES)
    y = np.array([f"cat-{i % 6}" for i in range(300)])
    forest = RandomForestClassifier(n_estimators=7, random_state=0).fit(X, y)
    compact = root / "parts" / serving_model.COMPACT_ARTIFACT
    compact_from_sklearn(forest).save(compact)
    registration = root / "parts" / serving_model.REGISTRATION_FILE
    registration.write_text(serving_model.registration_document("shop_model", 7))
    mlflow.pyfunc.save_model(
        root / "model",
        python_model=str(store.ENTRY_FILE),
        artifacts={"compact": str(compact), "registration": str(registration)},
        model_config={"id_column": "sku", "top_k": 3},
        signature=serving_model.serving_signature(FEATURES, "sku"),
    )
    return root / "model"


def _split(rows: list[list], columns: list[str] = COLUMNS, **extra) -> dict:
    return {"dataframe_split": {"columns": columns, "data": rows}, **extra}


PLAIN = {
    "split": _split([["a", 0.5, 120.0], ["b", -1, None], ["00123", 1e-40, 3]]),
    "records": {"dataframe_records": [{"sku": "x", "price": 2.5, "weight_g": 1, "more": "y"}]},
    "reordered": _split([[1.5, 2.0, "a"]], ["price", "weight_g", "sku"]),
    "per_product": _split([["a", 0.5, 1.0]], params={"output": "per_product"}),
}
OTHER = {  # answered by MLflow's handling: a 200 or its 400
    "number as text": _split([["a", "0.5", 1.0]]),
    "id as number": _split([[12, 0.5, 1.0]]),
    "true as number": _split([["a", True, 1.0]]),
    "missing column": _split([["a", 0.5]], ["sku", "price"]),
    "text in a number": _split([["a", "cheap", 1.0]]),
    "too large for float32": _split([["a", 1e39, 1.0]]),
    "unknown output": _split([["a", 0.5, 1.0]], params={"output": "nope"}),
    "records missing a key": {"dataframe_records": [{"sku": "x", "price": 2.5}]},
}


def _mlflow_answer(pyfunc, payload: dict) -> tuple[int, str]:
    try:
        response = scoring_server.invocations(
            payload, "application/json", pyfunc, pyfunc.metadata.get_input_schema()
        )
        return response.status, response.response
    except MlflowException as exc:
        return exc.get_http_status_code(), exc.message


def _served_answer(served, payload: dict) -> tuple[int, str]:
    try:
        return 200, served.answer(payload)
    except MlflowException as exc:
        return exc.get_http_status_code(), exc.message


@pytest.mark.parametrize("case", [*PLAIN, *OTHER])
def test_served_answers_equal_the_registered_pyfuncs_byte_for_byte(saved, case):
    payload = parse_payload(json.dumps({**PLAIN, **OTHER}[case]).encode(), 100)
    served = load_served(saved)
    expected = _mlflow_answer(mlflow.pyfunc.load_model(str(saved)), copy.deepcopy(payload))
    if case in PLAIN:
        assert expected[0] == 200
        assert served.answer(copy.deepcopy(payload), lean_only=True) == expected[1]
    else:
        with pytest.raises(NotLean):
            served.answer(copy.deepcopy(payload), lean_only=True)
    assert _served_answer(served, copy.deepcopy(payload)) == expected
    assert served.version == 7


def test_a_tampered_compact_form_or_mlmodel_is_refused(saved, tmp_path):
    import shutil

    copy_dir = tmp_path / "model"
    shutil.copytree(saved, copy_dir)
    arrays = next((copy_dir / "artifacts").rglob("compact_forest.npz"))
    data = bytearray(arrays.read_bytes())
    data[len(data) // 2] ^= 0xFF
    arrays.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        load_served(copy_dir)
    mlmodel = copy_dir / "MLmodel"
    mlmodel.write_text(mlmodel.read_text().replace("path: artifacts/compact", "path: ../../x"))
    with pytest.raises(ValueError, match="outside the model folder"):
        load_served(copy_dir)
    mlmodel.write_text("flavors: {}\n")
    with pytest.raises(ValueError, match="not a bettercat top-k model"):
        load_served(copy_dir)


def test_a_reload_verifies_the_checksum_but_walks_the_same_arrays_once(
    saved, tmp_path, monkeypatch
):
    import shutil

    from bettercat_assets.core.model import compact_forest

    copy_dir = tmp_path / "model"
    shutil.copytree(saved, copy_dir)
    walks = []
    real = compact_forest.validate_arrays
    monkeypatch.setattr(compact_forest, "validate_arrays", lambda *a: walks.append(a) or real(*a))
    checked: set[tuple[str, ...]] = set()
    first, again = load_served(copy_dir, checked), load_served(copy_dir, checked)
    assert len(walks) == 1 and len(checked) == 1
    payload = PLAIN["split"]
    assert _served_answer(again, copy.deepcopy(payload)) == _served_answer(first, payload)
    arrays = next((copy_dir / "artifacts").rglob("compact_forest.npz"))
    original = arrays.read_bytes()
    arrays.write_bytes(original[:-9] + bytes(b ^ 0xFF for b in original[-9:]))
    with pytest.raises(ValueError, match="checksum"):
        load_served(copy_dir, checked)
    arrays.write_bytes(original)
    meta = arrays.with_suffix(".json")
    meta.write_text(meta.read_text().replace('"n_features": 2', '"n_features": 1'))
    with pytest.raises(ValueError, match="invalid compact forest"):  # a new description: walked
        load_served(copy_dir, checked)
    assert len(walks) == 2


def test_a_look_into_the_cache_that_may_not_load_counts_no_miss():
    cache = ModelCache(1000)
    assert cache.get("a", count_miss=False) is None and cache.stats().misses == 0
    assert cache.get("a") is None and cache.stats().misses == 1
