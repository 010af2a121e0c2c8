"""A compact, prediction-only form of a fitted scikit-learn ``RandomForestClassifier``.

Why: sklearn stores ``n_classes`` float64 values for *every* node of every tree (internal nodes
too). With 100 classes and ``min_samples_leaf=5`` a 100-tree forest on 50k rows pickles to
~880 MB, and every Spark Python worker holds a copy. This form keeps only what prediction needs:

* internal nodes of all trees concatenated: ``feature`` (int16/int32), ``threshold`` (float32),
  ``children`` (n, 2) int32 left/right references and ``missing_go_to_left`` (uint8). A reference
  ``r >= 0`` is an internal node, ``r < 0`` is leaf ``-(r + 1)``; ``roots[t]`` is tree t's root.
* leaves: the per-tree normalised class distribution (what sklearn >= 1.4 stores in
  ``tree_.value``) as a CSR matrix in float32 (only non-zero classes are kept).

Exactness: sklearn casts X to float32 and tests ``float64(x32) <= threshold``. Rounding each
threshold *down* to the largest float32 ``t32 <= threshold`` makes ``x32 <= t32`` equivalent for
every float32 x, so routing is bit-identical; NaN goes where ``missing_go_to_left`` says, as in
sklearn. Leaf fractions are stored in float32 (relative error <= 2**-24) and accumulated in
float64, so ``predict_proba`` matches sklearn to ~1e-7 absolute.

Speed: a numba kernel (single thread, releases the GIL) when numba is installed, otherwise a
vectorised numpy fallback (correct, but slower than sklearn on large forests).

Validation of the arrays: `forest_format`; conversion from scikit-learn: `forest_conversion`
(training side only). No Dagster, MLflow or scikit-learn imports here: Spark workers load it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from bettercat_assets.core.model.forest_format import ARRAY_DTYPES, validate_arrays
from bettercat_assets.core.model.forest_kernel_aot import compiled_kernel
from bettercat_assets.core.model.packed_nodes import PackedNodes, pack_nodes, unpack_nodes

FORMAT_VERSION = 1
ARRAYS_FILE = "compact_forest.npz"
META_FILE = "compact_forest.json"

#: numba is imported (and the kernel compiled) on the first prediction that uses it: a process
#: that only ever scores small batches with the numpy kernel (the serving model) saves ~60 MB.
HAVE_NUMBA = importlib.util.find_spec("numba") is not None
#: rows per block in the numba kernel: a block's output rows stay in cache while every tree
#: is walked for them, and one tree's nodes stay in cache while the block's rows walk it.
_BLOCK_ROWS = 8192
_LANES = 16


# --------------------------------------------------------------------------------------------
# prediction kernels: both add sum over trees of the leaf distributions into ``out`` (float64)
# --------------------------------------------------------------------------------------------


def _accumulate_python(
    X, feature, threshold, children, mgl, roots, indptr, classes, values, out, block, lanes
):  # pragma: no cover - compiled by numba; the numpy fallback below is used without it
    """Tree-major within row blocks; ``lanes`` rows walk a tree in lockstep, branch-free.

    Walking several independent rows at once hides the latency of the dependent node loads,
    and branch-free child selection avoids mispredictions; a block of rows reuses each tree's
    nodes while they are in cache.
    """
    n_rows = X.shape[0]
    n_trees = roots.shape[0]
    refs = np.empty(lanes, dtype=np.int64)
    for block_start in range(0, n_rows, block):
        block_stop = min(block_start + block, n_rows)
        for t in range(n_trees):
            root = roots[t]
            for start in range(block_start, block_stop, lanes):
                m = min(lanes, block_stop - start)
                for j in range(m):
                    refs[j] = root
                alive = m if root >= 0 else 0
                while alive > 0:
                    alive = 0
                    for j in range(m):
                        ref = refs[j]
                        if ref >= 0:
                            x = X[start + j, feature[ref]]
                            # right if x > threshold, or x is NaN and NaN goes right
                            go_right = np.int64(x > threshold[ref]) | np.int64(
                                (x != x) & (mgl[ref] == 0)
                            )
                            refs[j] = children[ref, go_right]
                            alive += 1
                for j in range(m):
                    leaf = -refs[j] - 1
                    for k in range(indptr[leaf], indptr[leaf + 1]):
                        out[start + j, classes[k]] += values[k]


def _jit(fn):  # pragma: no cover - needs numba
    import numba

    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # no writable cache location (e.g. read-only install, no HOME)
        return numba.njit(nogil=True)(fn)


@functools.cache
def _accumulate_numba():  # pragma: no cover - needs numba
    """The compiled kernel, built on first use."""
    return _jit(_accumulate_python)


def _accumulate_numpy(X, feature, threshold, children, mgl, roots, indptr, classes, values, out):
    """Vectorised fallback: walks all (row, tree) pairs of a chunk one level at a time."""
    n_rows, n_classes = out.shape
    n_trees = roots.shape[0]
    chunk = max(1, 2_000_000 // max(n_trees, 1))
    mgl = mgl.astype(bool)
    for start in range(0, n_rows, chunk):
        stop = min(start + chunk, n_rows)
        m = stop - start
        rows = np.repeat(np.arange(start, stop, dtype=np.intp), n_trees)
        ref = np.tile(roots.astype(np.intp), m)
        active = np.flatnonzero(ref >= 0)
        while active.size:
            r = ref[active]
            x = X[rows[active], feature[r]]
            go_left = (x <= threshold[r]) | (np.isnan(x) & mgl[r])
            nxt = children[r, (~go_left).view(np.uint8)]
            ref[active] = nxt
            active = active[nxt >= 0]
        leaf = -ref - 1
        begin = indptr[leaf].astype(np.intp)
        lengths = indptr[leaf + 1].astype(np.intp) - begin
        total = int(lengths.sum())
        if total == 0:
            continue
        offsets = np.cumsum(lengths) - lengths
        entry = np.arange(total, dtype=np.intp) + np.repeat(begin - offsets, lengths)
        cell = (np.repeat(rows - start, lengths)) * n_classes + classes[entry].astype(np.intp)
        out[start:stop] += np.bincount(
            cell, weights=values[entry].astype(np.float64), minlength=m * n_classes
        ).reshape(m, n_classes)


# --------------------------------------------------------------------------------------------


class CompactForest:
    """Prediction-only form of a fitted ``RandomForestClassifier`` (see module docstring)."""

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        classes: Any,
        n_features_in: int,
        feature_names: Any = None,
        validate: bool = True,
    ) -> None:
        self.classes_ = np.asarray(classes).astype(str)
        self.n_features_in_ = int(n_features_in)
        self.feature_names = (
            np.asarray(feature_names).astype(str)
            if feature_names is not None
            else np.asarray([], dtype="<U1")
        )
        if validate:  # False only for the very bytes that passed before (`load_files`)
            validate_arrays(arrays, self.classes_, self.n_features_in_, self.feature_names)
        # read-only views: the kernels trust the validated indices
        self._arrays = {name: arrays[name].view() for name in ARRAY_DTYPES}
        for arr in self._arrays.values():
            arr.setflags(write=False)
        self._packed: PackedNodes | None = None
        self._packing = threading.Lock()

    def packed_nodes(self) -> PackedNodes:
        """The nodes packed for the sparse kernel (`packed_nodes.pack_nodes`). Made once; the
        separate `feature`, `threshold` and `children` arrays are then dropped (`arrays`
        rebuilds them)."""
        with self._packing:  # a server's threads may score at once
            if self._packed is None:
                parts = pack_nodes(self._arrays, self.classes_.size, self.n_features_in_)
                self._feature_dtype = self._arrays["feature"].dtype
                self._packed = parts
                for name in ("feature", "threshold", "children"):
                    del self._arrays[name]
            return self._packed

    def arrays(self) -> dict[str, np.ndarray]:
        """The forest's arrays as saved (rebuilt from the packed nodes once packed)."""
        with self._packing:
            if self._packed is None:
                return dict(self._arrays)
            packed = self._packed
        return {**self._arrays, **unpack_nodes(packed, self._feature_dtype)}

    # ---------------------------------------------------------------- prediction

    @property
    def n_trees(self) -> int:
        return int(self._arrays["roots"].size)

    def _check_X(self, X: Any) -> np.ndarray:
        columns = getattr(X, "columns", None)
        if (
            columns is not None
            and self.feature_names.size
            and [str(c) for c in columns] != self.feature_names.tolist()
        ):
            raise ValueError("X's columns do not match the feature names seen at fit time")
        X = np.asarray(X, dtype=np.float32)  # same rounding as sklearn's check_array
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D, got shape {X.shape}")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, the forest expects {self.n_features_in_}"
            )
        if np.isinf(X).any():
            raise ValueError("X contains infinity or a value too large for float32")
        return np.ascontiguousarray(X)

    def predict_proba(self, X: Any, *, backend: str | None = None) -> np.ndarray:
        """Mean over trees of each tree's leaf class distribution; float64 (n, n_classes).

        ``backend``: "compiled" (ahead of time: `forest_kernel_aot`), "numba" or "numpy";
        default the compiled kernel when it was built, else numba when installed.
        """
        X = self._check_X(X)
        compiled = (
            compiled_kernel(_accumulate_python, self.arrays())
            if backend in (None, "compiled")
            else None
        )
        if backend is None:
            backend = "compiled" if compiled else "numba" if HAVE_NUMBA else "numpy"
        out = np.zeros((X.shape[0], len(self.classes_)), dtype=np.float64)
        if X.shape[0] == 0:
            return out
        a = self.arrays()
        args = (
            X,
            a["feature"],
            a["threshold"],
            a["children"],
            a["missing_go_to_left"],
            a["roots"],
            a["leaf_indptr"],
            a["leaf_classes"],
            a["leaf_values"],
            out,
        )
        if backend == "compiled":
            if compiled is None:
                raise ValueError("backend 'compiled' requested but no compiled kernel was built")
            compiled(*args, _BLOCK_ROWS, _LANES)
        elif backend == "numba":
            if not HAVE_NUMBA:
                raise ValueError("backend 'numba' requested but numba is not installed")
            _accumulate_numba()(*args, _BLOCK_ROWS, _LANES)
        elif backend == "numpy":
            _accumulate_numpy(*args)
        else:
            raise ValueError(f"unknown backend {backend!r}")
        out /= self.n_trees
        return out

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    @property
    def nbytes(self) -> int:
        """Bytes of all arrays held (tree arrays, classes, feature names)."""
        return (
            sum(arr.nbytes for arr in self._arrays.values())
            + sum(arr.nbytes for arr in self._packed or ())
            + self.classes_.nbytes
            + self.feature_names.nbytes
        )

    # ---------------------------------------------------------------- persistence

    def save(self, directory: Path) -> None:
        """Write ``compact_forest.npz`` (np.savez, no pickle) and ``compact_forest.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        npz_path = directory / ARRAYS_FILE
        with open(npz_path, "wb") as fh:
            np.savez(fh, **self.arrays())
        meta = {
            "format": "bettercat.compact_forest",
            "format_version": FORMAT_VERSION,
            "classes": self.classes_.tolist(),
            "n_features": self.n_features_in_,
            "feature_names": self.feature_names.tolist(),
            "n_trees": self.n_trees,
            "arrays_sha256": _sha256(npz_path),
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> CompactForest:
        """Load what :meth:`save` wrote; ``ValueError`` if anything is missing or inconsistent."""
        directory = Path(directory)
        return cls.load_files(directory / ARRAYS_FILE, directory / META_FILE)

    @classmethod
    def load_files(
        cls, npz_path: Path, meta_path: Path, checked: set[tuple[str, ...]] | None = None
    ) -> CompactForest:
        """Load the two files of :meth:`save` under any names (as Spark ships them). `checked`
        remembers (path, checksum, description) whose arrays passed validation, so loading the
        same files again (a server's reload) verifies the checksum but not the structure."""
        npz_path, meta_path = Path(npz_path), Path(meta_path)
        try:
            text = meta_path.read_text(encoding="utf-8")
            meta = json.loads(text)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {meta_path}: {exc}") from exc
        if not isinstance(meta, dict) or meta.get("format") != "bettercat.compact_forest":
            raise ValueError(f"{meta_path} is not a compact forest description")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported compact forest format {meta.get('format_version')!r}")
        classes = meta.get("classes")
        feature_names = meta.get("feature_names")
        n_features = meta.get("n_features")
        if (
            not isinstance(classes, list)
            or not all(isinstance(c, str) for c in classes)
            or not isinstance(feature_names, list)
            or not all(isinstance(c, str) for c in feature_names)
            or not isinstance(n_features, int)
            or isinstance(n_features, bool)
        ):
            raise ValueError(f"{meta_path}: malformed classes/features")
        try:
            digest = _sha256(npz_path)
        except OSError as exc:
            raise ValueError(f"cannot read {npz_path}: {exc}") from exc
        if digest != meta.get("arrays_sha256"):
            raise ValueError(f"{npz_path} does not match the checksum in {meta_path.name}")
        try:
            with np.load(npz_path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except Exception as exc:  # BadZipFile, EOFError, pickled object arrays, ...
            raise ValueError(f"cannot read {npz_path}: {exc}") from exc
        key = (str(npz_path.resolve()), digest, hashlib.sha256(text.encode()).hexdigest())
        forest = cls(
            arrays,
            np.asarray(classes, dtype=str),
            n_features,
            np.asarray(feature_names, dtype=str) if feature_names else None,
            validate=checked is None or key not in checked,
        )
        if forest.n_trees != meta.get("n_trees"):
            raise ValueError(
                f"{npz_path} holds {forest.n_trees} trees, {meta_path.name} says otherwise"
            )
        if checked is not None:
            checked.add(key)
        return forest

    def __repr__(self) -> str:
        return (
            f"CompactForest(n_trees={self.n_trees}, n_classes={len(self.classes_)}, "
            f"n_features={self.n_features_in_}, nbytes={self.nbytes})"
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
