"""The linear model's compiled decision kernel gives scikit-learn's bits (scipy's CSR product) and
numpy's result within a few ulps; without it, numpy scores."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from bettercat_assets.core.features.featurizer import SparseRows
from bettercat_assets.core.model import compact_linear, linear_kernels
from bettercat_assets.core.model.compact_linear import CompactLinear


def _rows(n_rows: int, n_cols: int, seed: int) -> SparseRows:
    """Random CSR rows: empty ones first, in the middle and last, single non-zeros, and rows
    long enough that numpy's chunks (`_CHUNK_VALUES` non-zeros) split the batch."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, min(120, n_cols), n_rows)
    lengths[[0, n_rows // 2, n_rows - 1]] = 0
    lengths[[1, 2]] = 1
    lengths[3:6] = n_cols  # dense rows
    indices = [np.sort(rng.choice(n_cols, size=k, replace=False)) for k in lengths]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    data = rng.lognormal(0.0, 1.0, int(indptr[-1])) * rng.choice([-1.0, 1.0], int(indptr[-1]))
    return SparseRows(indptr, np.concatenate(indices).astype(np.int32), data, n_cols)


def _model(n_cols: int, n_classes: int, seed: int) -> CompactLinear:
    rng = np.random.default_rng(seed)
    n_decisions = 1 if n_classes == 2 else n_classes
    coef_t = rng.normal(0.0, 2.0, (n_cols, n_decisions)).astype(np.float32)
    classes = [f"c{k}" for k in range(n_classes)]
    return CompactLinear(coef_t, rng.normal(0.0, 1.0, n_decisions), classes)


@pytest.mark.parametrize("n_classes", [2, 7, 100])
def test_the_compiled_decision_is_scipys_product_and_numpys_within_ulps(n_classes):
    assert linear_kernels.compiled_decide() is not None, "run make install"
    rows = _rows(800, 300, seed=n_classes)
    assert rows.indptr[-1] > 2 * compact_linear._CHUNK_VALUES  # numpy takes several chunks
    model = _model(300, n_classes, seed=1)
    compiled, numpy = model.decision(rows), model.decision(rows, compiled=False)
    x = sp.csr_matrix((rows.data, rows.indices, rows.indptr), shape=(rows.n_rows, rows.n_cols))
    expected = x @ model.coef_t.astype(np.float64) + model.intercept  # scikit-learn's order
    assert compiled.shape == expected.shape == (800, model.coef_t.shape[1])
    assert np.array_equal(compiled, expected)  # bit-identical, not merely close
    assert np.array_equal(compiled[0], model.intercept)  # an empty row is the intercept
    scale = np.abs(x) @ np.abs(model.coef_t.astype(np.float64)) + np.abs(model.intercept)
    assert np.all(np.abs(compiled - numpy) <= 1e-12 * scale)
    empty = SparseRows(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0), 300)
    assert model.decision(empty).shape == (0, model.coef_t.shape[1])


def test_a_column_outside_the_model_is_refused_by_both_paths():
    rows = _rows(20, 50, seed=3)
    rows.indices[rows.indptr[7]] = 50  # row 7's first non-zero: one past the last column
    model = _model(50, 5, seed=4)
    for compiled in (True, False):
        with pytest.raises(IndexError):
            model.decision(rows, compiled=compiled)


def test_without_the_compiled_kernel_numpy_scores_as_scikit_learn(monkeypatch):
    """`make install` without numba builds no kernel: `decision` falls back to numpy."""
    rng = np.random.default_rng(5)
    x = sp.random(600, 80, density=0.1, format="csr", random_state=6, dtype=np.float64)
    y = rng.integers(0, 6, 600)
    y[x[:, 0].toarray().ravel() > 0] = 0  # something to learn
    fitted = LogisticRegression(C=5.0, max_iter=300).fit(x[:400], y[:400])
    model = CompactLinear.from_coefficients(fitted.coef_, fitted.intercept_, fitted.classes_)
    test = x[400:]
    rows = SparseRows(
        test.indptr.astype(np.int64), test.indices.astype(np.int32), test.data, test.shape[1]
    )
    expected = fitted.predict_proba(test)
    compiled = model.predict_proba(rows)
    monkeypatch.setattr(linear_kernels, "compiled_module", lambda kernels: None)
    assert linear_kernels.compiled_decide() is None
    fallback = model.predict_proba(rows)
    assert np.abs(fallback - expected).max() <= 1e-6
    assert np.abs(fallback - compiled).max() <= 1e-12
