"""CompactForest must reproduce RandomForestClassifier.predict_proba (1e-6) in far less memory."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from bettercat_assets.core.model import compact_forest as cf
from bettercat_assets.core.model import forest_kernel_aot
from bettercat_assets.core.model.compact_forest import ARRAYS_FILE, META_FILE, CompactForest
from bettercat_assets.core.model.forest_conversion import compact_from_sklearn

DENSE = forest_kernel_aot.dense_kernels(cf._accumulate_python)
BACKENDS = [
    "numpy",
    pytest.param(
        "numba", marks=pytest.mark.skipif(not cf.HAVE_NUMBA, reason="numba not installed")
    ),
    pytest.param(
        "compiled",
        marks=pytest.mark.skipif(
            forest_kernel_aot.compiled_module(DENSE) is None,
            reason="no compiled kernel: make install",
        ),
    ),
]
TOL = 1e-6


def _data(n_rows=400, n_features=6, n_classes=5, seed=0, nan_rate=0.0):
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(n_classes, n_features))
    y = rng.integers(0, n_classes, n_rows)
    X = prototypes[y] + rng.normal(scale=0.8, size=(n_rows, n_features))
    if nan_rate:
        X[rng.random(X.shape) < nan_rate] = np.nan
    return X, y


def _assert_matches(forest, compact, X, backend):
    expected = forest.predict_proba(X)
    got = compact.predict_proba(X, backend=backend)
    assert got.dtype == np.float64
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_sklearn_multiclass(backend):
    X, y = _data(n_classes=6)
    forest = RandomForestClassifier(n_estimators=12, min_samples_leaf=2, random_state=0)
    forest.fit(X, y)
    compact = compact_from_sklearn(forest)
    X_test, _ = _data(n_rows=300, n_classes=6, seed=1)
    _assert_matches(forest, compact, X_test, backend)
    np.testing.assert_array_equal(compact.classes_, forest.classes_.astype(str))
    assert compact.classes_.dtype.kind == "U"
    assert compact.n_features_in_ == 6


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_sklearn_max_leaf_nodes(backend):
    # best-first growth: node ids are not in depth-first order
    X, y = _data(n_classes=4, seed=2)
    forest = RandomForestClassifier(n_estimators=8, max_leaf_nodes=9, random_state=1).fit(X, y)
    assert all(e.tree_.n_leaves == 9 for e in forest.estimators_)
    compact = compact_from_sklearn(forest)
    _assert_matches(forest, compact, _data(n_rows=300, n_classes=4, seed=3)[0], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_sklearn_on_threshold_boundaries(backend):
    # feature values exactly at every split threshold and at its float32 neighbours: a
    # threshold stored with round-to-nearest instead of round-down would route some of them wrong
    X, y = _data(n_features=3, n_classes=3, seed=4)
    forest = RandomForestClassifier(n_estimators=6, random_state=2).fit(X, y)
    compact = compact_from_sklearn(forest)
    cols = []
    for f in range(3):
        thr = np.concatenate([e.tree_.threshold[e.tree_.feature == f] for e in forest.estimators_])
        t32 = thr.astype(np.float32)
        vals = np.concatenate(
            [
                thr,
                t32,
                np.nextafter(t32, np.float32(np.inf)),
                np.nextafter(t32, np.float32(-np.inf)),
            ]
        )
        cols.append(vals)
    n = max(len(c) for c in cols)
    X_edge = np.column_stack([np.resize(c, n) for c in cols])
    _assert_matches(forest, compact, X_edge, backend)
    _assert_matches(forest, compact, X_edge.astype(np.float32), backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_in_training_and_prediction(backend):
    X, y = _data(n_rows=600, n_classes=4, seed=5, nan_rate=0.15)
    forest = RandomForestClassifier(n_estimators=10, min_samples_leaf=3, random_state=3)
    forest.fit(X, y)
    mgl = np.concatenate([e.tree_.missing_go_to_left for e in forest.estimators_])
    assert mgl.any() and not mgl.all()  # both routes occur
    compact = compact_from_sklearn(forest)
    X_test, _ = _data(n_rows=400, n_classes=4, seed=6, nan_rate=0.3)
    X_test[:20] = np.nan  # all-NaN rows
    _assert_matches(forest, compact, X_test, backend)

    # the test is sensitive to NaN routing: flipping missing_go_to_left changes the answer
    arrays = {k: np.array(v) for k, v in compact._arrays.items()}
    arrays["missing_go_to_left"] = 1 - arrays["missing_go_to_left"]
    flipped = CompactForest(arrays, compact.classes_, compact.n_features_in_)
    diff = np.abs(flipped.predict_proba(X_test, backend=backend) - forest.predict_proba(X_test))
    assert diff.max() > 0.01


@pytest.mark.parametrize("backend", BACKENDS)
def test_string_labels(backend):
    X, y = _data(n_classes=5, seed=7)
    labels = np.array(["shoes", "books", "garden", "toys", "food"], dtype=object)[y]
    forest = RandomForestClassifier(n_estimators=10, random_state=4).fit(X, labels)
    compact = compact_from_sklearn(forest)
    X_test, _ = _data(n_rows=200, n_classes=5, seed=8)
    _assert_matches(forest, compact, X_test, backend)
    assert compact.classes_.dtype.kind == "U"
    assert compact.classes_.tolist() == ["books", "food", "garden", "shoes", "toys"]
    np.testing.assert_array_equal(compact.predict(X_test), forest.predict(X_test))


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_tree_two_classes(backend):
    X, y = _data(n_classes=2, seed=9)
    forest = RandomForestClassifier(n_estimators=1, random_state=5).fit(X, y)
    compact = compact_from_sklearn(forest)
    assert compact.n_trees == 1
    _assert_matches(forest, compact, _data(n_rows=200, n_classes=2, seed=10)[0], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_trees_that_are_a_single_leaf(backend):
    X, y = _data(n_rows=50, n_classes=3, seed=11)
    forest = RandomForestClassifier(n_estimators=4, min_samples_split=1000, random_state=6)
    forest.fit(X, y)
    compact = compact_from_sklearn(forest)
    assert compact._arrays["feature"].size == 0
    assert (compact._arrays["roots"] < 0).all()
    _assert_matches(forest, compact, X, backend)


def test_input_checks():
    X, y = _data(n_classes=3, seed=12)
    compact = compact_from_sklearn(RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y))
    with pytest.raises(ValueError, match="features"):
        compact.predict_proba(X[:, :4])
    X_inf = X[:5].copy()
    X_inf[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        compact.predict_proba(X_inf)
    assert compact.predict_proba(X[:0]).shape == (0, 3)


def test_feature_names_from_dataframe(tmp_path):
    X, y = _data(n_features=3, n_classes=3, seed=13)
    df = pd.DataFrame(X, columns=["price", "weight", "length"])
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(df, y)
    compact = compact_from_sklearn(forest)
    assert compact.feature_names.tolist() == ["price", "weight", "length"]
    np.testing.assert_allclose(compact.predict_proba(df), forest.predict_proba(df), atol=TOL)
    with pytest.raises(ValueError, match="columns"):
        compact.predict_proba(df[["weight", "price", "length"]])
    compact.save(tmp_path)
    assert CompactForest.load(tmp_path).feature_names.tolist() == ["price", "weight", "length"]


# ------------------------------------------------------------------ save / load


@pytest.fixture()
def saved(tmp_path):
    X, y = _data(n_rows=500, n_classes=8, seed=14, nan_rate=0.05)
    labels = np.array([f"cat_{i}" for i in range(8)])[y]
    forest = RandomForestClassifier(n_estimators=6, random_state=7).fit(X, labels)
    compact = compact_from_sklearn(forest)
    compact.save(tmp_path)
    return forest, compact, tmp_path, X


def test_save_load_round_trip(saved):
    forest, compact, directory, X = saved
    assert sorted(p.name for p in directory.iterdir()) == sorted([ARRAYS_FILE, META_FILE])
    meta = json.loads((directory / META_FILE).read_text())
    assert meta["format_version"] == cf.FORMAT_VERSION
    assert meta["classes"] == compact.classes_.tolist()
    assert meta["n_features"] == X.shape[1]
    loaded = CompactForest.load(directory)
    np.testing.assert_array_equal(loaded.classes_, compact.classes_)
    assert loaded.nbytes == compact.nbytes
    for name, arr in compact._arrays.items():
        assert loaded._arrays[name].dtype == arr.dtype
        np.testing.assert_array_equal(loaded._arrays[name], arr)
    np.testing.assert_array_equal(loaded.predict_proba(X), compact.predict_proba(X))
    np.testing.assert_allclose(loaded.predict_proba(X), forest.predict_proba(X), atol=TOL)


def _rewrite(directory, **changes):
    """Replace arrays in a saved forest and re-sign it, so only the structural checks apply."""
    with np.load(directory / ARRAYS_FILE) as npz:
        arrays = {name: npz[name] for name in npz.files}
    for name, value in changes.items():
        if value is None:
            del arrays[name]
        else:
            arrays[name] = value(arrays[name]) if callable(value) else value
    with open(directory / ARRAYS_FILE, "wb") as fh:
        np.savez(fh, **arrays)
    meta = json.loads((directory / META_FILE).read_text())
    meta["arrays_sha256"] = cf._sha256(directory / ARRAYS_FILE)
    (directory / META_FILE).write_text(json.dumps(meta))


def _child_out_of_range(children):
    children = children.copy()
    children[0, 1] = children.shape[0] + 5
    return children


def _leaf_out_of_range(children):
    children = children.copy()
    idx = np.argwhere(children < 0)[0]
    children[tuple(idx)] = -(10**6)
    return children


def _cycle(children):
    children = children.copy()
    children[1, 0] = 0  # points back to the root of the first tree
    return children


def _shared_child(children):
    children = children.copy()
    children[0, 1] = children[0, 0]  # both branches lead to the same subtree
    return children


def _class_out_of_range(classes):
    classes = classes.copy()
    classes[0] = 8
    return classes


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"children": _child_out_of_range}, "out of range"),
        ({"children": _leaf_out_of_range}, "out of range"),
        ({"children": _cycle}, "after its parent"),
        ({"children": _shared_child}, "exactly once"),
        ({"children": lambda c: c.astype(np.int64)}, "dtype"),
        ({"threshold": lambda t: t.astype(np.float64)}, "dtype"),
        ({"threshold": lambda t: t[:-1]}, "rows"),
        ({"leaf_classes": _class_out_of_range}, "class index out of range"),
        ({"feature": lambda f: np.full_like(f, 99)}, "feature index out of range"),
        ({"leaf_indptr": lambda p: p[::-1].copy()}, "leaf_indptr"),
        ({"leaf_values": lambda v: v * 3}, "leaf values"),
        ({"missing_go_to_left": None}, "expected"),
        ({"extra": np.zeros(3)}, "expected"),
        ({"roots": lambda r: r[:0]}, "no trees"),
    ],
)
def test_load_rejects_inconsistent_arrays(saved, changes, message):
    _, _, directory, _ = saved
    _rewrite(directory, **changes)
    with pytest.raises(ValueError, match=message):
        CompactForest.load(directory)


def test_load_rejects_object_arrays(saved):
    _, _, directory, _ = saved
    _rewrite(directory, leaf_values=np.array([1, "x"], dtype=object))
    with pytest.raises(ValueError, match="cannot read"):
        CompactForest.load(directory)


def test_load_rejects_truncated_or_modified_file(saved):
    _, _, directory, _ = saved
    data = (directory / ARRAYS_FILE).read_bytes()
    (directory / ARRAYS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="checksum"):
        CompactForest.load(directory)
    # truncated and re-signed: the npz itself is unreadable
    meta = json.loads((directory / META_FILE).read_text())
    meta["arrays_sha256"] = cf._sha256(directory / ARRAYS_FILE)
    (directory / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="cannot read"):
        CompactForest.load(directory)


def test_load_rejects_bad_metadata(saved):
    _, _, directory, _ = saved
    meta = json.loads((directory / META_FILE).read_text())
    (directory / META_FILE).write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ValueError, match="format"):
        CompactForest.load(directory)
    (directory / META_FILE).write_text(json.dumps({**meta, "classes": meta["classes"][:-1]}))
    with pytest.raises(ValueError, match="class index out of range"):
        CompactForest.load(directory)
    (directory / META_FILE).unlink()
    with pytest.raises(ValueError, match="cannot read"):
        CompactForest.load(directory)


# ------------------------------------------------------------------ footprint


def test_nbytes_far_smaller_than_sklearn_trees():
    X, y = _data(n_rows=3000, n_features=8, n_classes=60, seed=15)
    forest = RandomForestClassifier(n_estimators=10, min_samples_leaf=2, random_state=8)
    forest.fit(X, y)
    sklearn_bytes = sum(
        e.tree_.value.nbytes + e.tree_.__getstate__()["nodes"].nbytes for e in forest.estimators_
    )
    compact = compact_from_sklearn(forest)
    assert compact.nbytes * 20 < sklearn_bytes, (compact.nbytes, sklearn_bytes)


def test_install_built_the_compiled_kernel_and_workers_score_without_numba(tmp_path):
    """`make install` compiles the kernel ahead of time: a process that predicts with it never
    imports numba (~120 MB of a Spark worker's RSS), and every dtype combination is exported."""
    import subprocess
    import sys

    assert forest_kernel_aot.compiled_module(DENSE) is not None, "run make install"
    for feature in ("i2", "i4"):
        for indptr in ("i4", "i8"):
            for classes in ("u2", "i4"):
                name = forest_kernel_aot.export_name(feature, indptr, classes)
                assert hasattr(forest_kernel_aot.compiled_module(DENSE), name), name
    X, y = _data()
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    compact_from_sklearn(forest).save(tmp_path)
    np.save(tmp_path / "X.npy", X.astype(np.float32))
    code = (
        "import sys, numpy as np; from pathlib import Path; "
        "from bettercat_assets.core.model.compact_forest import CompactForest; "
        f"d = Path({str(tmp_path)!r}); f = CompactForest.load(d); "
        "p = f.predict_proba(np.load(d / 'X.npy', allow_pickle=False)); "
        "np.save(d / 'p.npy', p); print('numba' in sys.modules, 'llvmlite' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"], out.stdout
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), forest.predict_proba(X), atol=TOL)
