"""A fitted multinomial logistic regression in a pickle-free form, scored from sparse rows.

`predict_proba` is scikit-learn's: for `LogisticRegression` (link "softmax") the softmax of
`X @ coef.T + intercept`; for `SGDClassifier(loss="log_loss")` (link "ovr", one-vs-rest) each
class's logistic, normalised to sum to one; two classes: the logistic of the single decision.
Coefficients are stored in float32 (half the download; the products' scores move by well under
1e-6) and accumulated in float64, by a kernel compiled ahead of time (`linear_kernels`) when
`make install` built it, else by numpy. numpy only: Spark workers import this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bettercat_assets.core.features.checksummed import load_checksummed, save_checksummed
from bettercat_assets.core.features.featurizer import SparseRows
from bettercat_assets.core.model import linear_kernels

FORMAT = "bettercat.compact_linear"
FORMAT_VERSION = 1
LINKS = ("softmax", "ovr")
ARRAYS_FILE = "compact_linear.npz"
META_FILE = "compact_linear.json"
#: rows per chunk: bounds the (non-zeros x classes) temporary of one chunk
_CHUNK_VALUES = 20_000


class CompactLinear:
    """`coef_t` (n_features, n_decisions) float32 and `intercept` (n_decisions,) float64."""

    def __init__(
        self, coef_t: np.ndarray, intercept: np.ndarray, classes: Any, link: str = "softmax"
    ) -> None:
        if link not in LINKS:
            raise ValueError(f"invalid compact linear model: link must be one of {LINKS}")
        self.link = link
        self.classes_ = np.asarray(classes).astype(str)
        n_classes = len(self.classes_)
        n_decisions = 1 if n_classes == 2 else n_classes
        if n_classes < 2 or len(set(self.classes_.tolist())) != n_classes:
            raise ValueError("invalid compact linear model: classes must be >= 2 unique labels")
        if (
            not isinstance(coef_t, np.ndarray)
            or coef_t.dtype != np.float32
            or coef_t.ndim != 2
            or coef_t.shape[1] != n_decisions
            or not np.all(np.isfinite(coef_t))
        ):
            raise ValueError(
                f"invalid compact linear model: coef must be finite float32 (n, {n_decisions})"
            )
        if (
            intercept.dtype != np.float64
            or intercept.shape != (n_decisions,)
            or not np.all(np.isfinite(intercept))
        ):
            raise ValueError("invalid compact linear model: intercept does not match the classes")
        self.coef_t = coef_t
        self.intercept = intercept
        self.n_features_in_ = int(coef_t.shape[0])
        for arr in (self.coef_t, self.intercept):
            arr.setflags(write=False)

    @classmethod
    def from_coefficients(
        cls, coef: np.ndarray, intercept: np.ndarray, classes: Any, link: str = "softmax"
    ) -> CompactLinear:
        """From scikit-learn's `coef_` (n_decisions, n_features) and `intercept_`."""
        coef_t = np.ascontiguousarray(np.asarray(coef, dtype=np.float64).T.astype(np.float32))
        return cls(coef_t, np.asarray(intercept, dtype=np.float64), classes, link)

    def decision(self, rows: SparseRows, *, compiled: bool = True) -> np.ndarray:
        """`X @ coef.T + intercept`, float64 (n_rows, n_decisions): by the kernel `make install`
        compiled (`linear_kernels`) when built and `compiled`, else numpy (within a few ulps)."""
        if rows.n_cols != self.n_features_in_:
            raise ValueError(
                f"rows have {rows.n_cols} features, the model expects {self.n_features_in_}"
            )
        decide = linear_kernels.compiled_decide() if compiled else None
        if decide is None:
            return self._numpy_decision(rows)
        out = np.empty((rows.n_rows, self.coef_t.shape[1]), dtype=np.float64)
        bad = decide(
            np.ascontiguousarray(rows.indptr, dtype=np.int64),
            np.ascontiguousarray(rows.indices, dtype=np.int32),
            np.ascontiguousarray(rows.data, dtype=np.float64),
            np.ascontiguousarray(self.coef_t),
            np.ascontiguousarray(self.intercept),
            out,
        )
        if bad >= 0:
            raise IndexError(f"row {bad} has a column outside the model's {self.n_features_in_}")
        return out

    def _numpy_decision(self, rows: SparseRows) -> np.ndarray:
        """`decision` by numpy, a chunk of rows at a time."""
        n_rows = rows.n_rows
        out = np.empty((n_rows, self.coef_t.shape[1]), dtype=np.float64)
        out[:] = self.intercept
        start = 0
        while start < n_rows:
            stop = (
                int(np.searchsorted(rows.indptr, rows.indptr[start] + _CHUNK_VALUES, "right")) - 1
            )
            stop = min(max(stop, start + 1), n_rows)
            lo, hi = int(rows.indptr[start]), int(rows.indptr[stop])
            terms = self.coef_t[rows.indices[lo:hi]].astype(np.float64)
            terms *= rows.data[lo:hi, None]
            lengths = np.diff(rows.indptr[start : stop + 1])
            nonempty = np.flatnonzero(lengths)
            if nonempty.size:
                starts = rows.indptr[start:stop][nonempty] - lo
                out[start + nonempty] += np.add.reduceat(terms, starts, axis=0)
            start = stop
        return out

    def predict_proba(self, rows: SparseRows) -> np.ndarray:
        """Class probabilities, float64 (n_rows, n_classes), as scikit-learn computes them."""
        decision = self.decision(rows)
        if decision.shape[1] == 1:
            p = 1.0 / (1.0 + np.exp(-decision[:, 0]))
            return np.column_stack([1.0 - p, p])
        if self.link == "ovr":
            proba = 1.0 / (1.0 + np.exp(-decision))
            total = proba.sum(axis=1, keepdims=True)
            return proba / np.where(total == 0.0, 1.0, total)
        decision -= decision.max(axis=1, keepdims=True)
        np.exp(decision, out=decision)
        decision /= decision.sum(axis=1, keepdims=True)
        return decision

    @property
    def nbytes(self) -> int:
        return int(self.coef_t.nbytes + self.intercept.nbytes + self.classes_.nbytes)

    def save(self, directory: Path) -> None:
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "classes": self.classes_.tolist(),
            "link": self.link,
        }
        arrays = {"coef_t": self.coef_t, "intercept": self.intercept}
        save_checksummed(directory, ARRAYS_FILE, META_FILE, arrays, meta)

    @classmethod
    def load(cls, directory: Path) -> CompactLinear:
        return cls.load_files(Path(directory) / ARRAYS_FILE, Path(directory) / META_FILE)

    @classmethod
    def load_files(cls, npz_path: Path, meta_path: Path) -> CompactLinear:
        """Load what `save` wrote; ValueError if damaged or tampered with."""
        meta, arrays = load_checksummed(
            npz_path, meta_path, FORMAT, FORMAT_VERSION, "compact linear model", "compact linear"
        )
        try:
            coef_t, intercept = arrays["coef_t"], arrays["intercept"]
        except KeyError as exc:  # a missing array
            raise ValueError(f"cannot read {npz_path}: {exc}") from exc
        classes = meta.get("classes")
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ValueError(f"{meta_path}: malformed classes")
        return cls(coef_t, intercept, classes, str(meta.get("link", "softmax")))
