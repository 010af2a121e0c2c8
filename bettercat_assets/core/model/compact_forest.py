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

No Dagster imports here.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
ARRAYS_FILE = "compact_forest.npz"
META_FILE = "compact_forest.json"

# name -> allowed dtypes (the first one is used when values fit)
_ARRAY_DTYPES: dict[str, tuple[np.dtype, ...]] = {
    "feature": (np.dtype(np.int16), np.dtype(np.int32)),
    "threshold": (np.dtype(np.float32),),
    "children": (np.dtype(np.int32),),
    "missing_go_to_left": (np.dtype(np.uint8),),
    "roots": (np.dtype(np.int32),),
    "leaf_indptr": (np.dtype(np.int32), np.dtype(np.int64)),
    "leaf_classes": (np.dtype(np.uint16), np.dtype(np.int32)),
    "leaf_values": (np.dtype(np.float32),),
}

#: numba is imported (and the kernel compiled) on the first prediction that uses it: a process
#: that only ever scores small batches with the numpy kernel (the serving model) saves ~60 MB.
HAVE_NUMBA = importlib.util.find_spec("numba") is not None
#: rows per block in the numba kernel: a block's output rows stay in cache while every tree
#: is walked for them, and one tree's nodes stay in cache while the block's rows walk it.
_BLOCK_ROWS = 8192
_LANES = 16


def _smallest_dtype(name: str, max_value: int) -> np.dtype:
    for dtype in _ARRAY_DTYPES[name]:
        if max_value <= np.iinfo(dtype).max:
            return dtype
    raise ValueError(f"{name}: value {max_value} does not fit any supported dtype")


def _round_down_to_float32(threshold: np.ndarray) -> np.ndarray:
    """Largest float32 ``t32 <= threshold`` (elementwise): ``x32 <= t32 <=> x32 <= threshold``."""
    threshold = np.asarray(threshold, dtype=np.float64)
    t32 = threshold.astype(np.float32)
    too_big = t32.astype(np.float64) > threshold
    t32[too_big] = np.nextafter(t32[too_big], np.float32(-np.inf))
    return t32


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
    ) -> None:
        self.classes_ = np.asarray(classes).astype(str)
        self.n_features_in_ = int(n_features_in)
        self.feature_names = (
            np.asarray(feature_names).astype(str)
            if feature_names is not None
            else np.asarray([], dtype="<U1")
        )
        self._validate(arrays)
        # read-only views: the kernels trust the validated indices
        self._arrays = {name: arrays[name].view() for name in _ARRAY_DTYPES}
        for arr in self._arrays.values():
            arr.setflags(write=False)

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_sklearn(cls, forest: Any) -> CompactForest:
        from sklearn.ensemble import RandomForestClassifier

        if not isinstance(forest, RandomForestClassifier):
            raise TypeError(f"expected a RandomForestClassifier, got {type(forest).__name__}")
        if not hasattr(forest, "estimators_"):
            raise ValueError("the forest is not fitted")
        if getattr(forest, "n_outputs_", 1) != 1:
            raise ValueError("multi-output forests are not supported")
        n_classes = len(forest.classes_)
        n_features = int(forest.n_features_in_)

        features, thresholds, childrens, mgls, roots = [], [], [], [], []
        leaf_values = []
        n_internal = 0
        n_leaves = 0
        for est in forest.estimators_:
            tree = est.tree_
            if tree.n_outputs != 1 or int(tree.n_classes[0]) != n_classes:
                raise ValueError("a tree's classes differ from the forest's classes_")
            if not np.array_equal(np.asarray(est.classes_), np.arange(n_classes)):
                raise ValueError("a tree's classes_ are not the forest's encoded classes")
            children_left = tree.children_left
            children_right = tree.children_right
            is_leaf = children_left == -1
            internal = np.flatnonzero(~is_leaf)
            leaves = np.flatnonzero(is_leaf)
            # node id -> reference in the concatenated arrays
            ref = np.empty(tree.node_count, dtype=np.int64)
            ref[internal] = n_internal + np.arange(internal.size)
            ref[leaves] = -(n_leaves + np.arange(leaves.size)) - 1
            roots.append(ref[0])
            features.append(tree.feature[internal])
            thresholds.append(_round_down_to_float32(tree.threshold[internal]))
            childrens.append(
                np.stack([ref[children_left[internal]], ref[children_right[internal]]], axis=1)
            )
            mgls.append(np.asarray(tree.missing_go_to_left, dtype=np.uint8)[internal])
            # sklearn >= 1.4 stores the normalised distribution; normalise anyway (no-op then)
            value = tree.value[leaves, 0, :]
            value = value / value.sum(axis=1, keepdims=True)
            leaf_values.append(value)
            n_internal += internal.size
            n_leaves += leaves.size

        value = np.concatenate(leaf_values).astype(np.float32)
        nonzero = value != 0
        leaf_leaf, leaf_class = np.nonzero(nonzero)
        indptr = np.zeros(n_leaves + 1, dtype=np.int64)
        np.cumsum(nonzero.sum(axis=1), out=indptr[1:])

        arrays = {
            "feature": np.concatenate(features).astype(
                _smallest_dtype("feature", max(n_features - 1, 0))
            ),
            "threshold": np.concatenate(thresholds).astype(np.float32),
            "children": np.concatenate(childrens).astype(np.int32).reshape(-1, 2),
            "missing_go_to_left": np.concatenate(mgls).astype(np.uint8),
            "roots": np.asarray(roots, dtype=np.int32),
            "leaf_indptr": indptr.astype(_smallest_dtype("leaf_indptr", int(indptr[-1]))),
            "leaf_classes": leaf_class.astype(_smallest_dtype("leaf_classes", n_classes - 1)),
            "leaf_values": value[leaf_leaf, leaf_class],
        }
        feature_names = getattr(forest, "feature_names_in_", None)
        return cls(arrays, forest.classes_, n_features, feature_names)

    # ---------------------------------------------------------------- validation

    def _validate(self, arrays: dict[str, np.ndarray]) -> None:
        def bad(msg: str) -> ValueError:
            return ValueError(f"invalid compact forest: {msg}")

        if set(arrays) != set(_ARRAY_DTYPES):
            raise bad(f"arrays {sorted(arrays)} != expected {sorted(_ARRAY_DTYPES)}")
        for name, allowed in _ARRAY_DTYPES.items():
            arr = arrays[name]
            ndim = 2 if name == "children" else 1
            if (
                not isinstance(arr, np.ndarray)
                or arr.dtype not in allowed
                or arr.ndim != ndim
                or (ndim == 2 and arr.shape[1] != 2)
            ):
                shape = "(n, 2)" if ndim == 2 else "1-D"
                raise bad(
                    f"{name} must be a {shape} array of dtype {' or '.join(map(str, allowed))}"
                )
        a = arrays
        n_classes = len(self.classes_)
        if self.classes_.ndim != 1 or n_classes < 1:
            raise bad("classes must be a non-empty 1-D array")
        if len(set(self.classes_.tolist())) != n_classes:
            raise bad("classes are not unique")
        if self.n_features_in_ < 1:
            raise bad("n_features_in_ must be >= 1")
        if self.feature_names.size and self.feature_names.shape != (self.n_features_in_,):
            raise bad("feature_names do not match n_features_in_")

        n_internal = a["feature"].size
        for name in ("threshold", "children", "missing_go_to_left"):
            if a[name].shape[0] != n_internal:
                raise bad(f"{name} has {a[name].shape[0]} rows, feature has {n_internal}")
        n_trees = a["roots"].size
        if n_trees < 1:
            raise bad("no trees")
        indptr = a["leaf_indptr"]
        n_leaves = indptr.size - 1
        nnz = a["leaf_classes"].size
        if n_leaves < n_trees:
            raise bad("fewer leaves than trees")
        if a["leaf_values"].size != nnz:
            raise bad("leaf_values and leaf_classes differ in length")
        if indptr.size < 2 or indptr[0] != 0 or indptr[-1] != nnz or np.any(np.diff(indptr) < 1):
            raise bad("leaf_indptr is not an increasing index into leaf_classes")
        if n_internal and (a["feature"].min() < 0 or a["feature"].max() >= self.n_features_in_):
            raise bad("feature index out of range")
        # +inf is legitimate: sklearn's "all non-missing left, missing right" split
        if np.any(np.isnan(a["threshold"])):
            raise bad("NaN threshold")
        if n_internal and a["missing_go_to_left"].max() > 1:
            raise bad("missing_go_to_left must be 0 or 1")
        if nnz and int(a["leaf_classes"].max()) >= n_classes:
            raise bad("leaf class index out of range")
        values = a["leaf_values"]
        if not np.all(np.isfinite(values)) or np.any(values <= 0) or np.any(values > 1):
            raise bad("leaf values must be in (0, 1]")
        sums = np.add.reduceat(values.astype(np.float64), indptr[:-1].astype(np.intp))
        if np.any(np.abs(sums - 1.0) > 1e-4):
            raise bad("a leaf's class distribution does not sum to 1")

        # Structure: every reference in range, internal children come after their parent (so
        # every walk terminates), and every node and leaf is referenced exactly once.
        refs = np.concatenate([a["roots"], a["children"].ravel()]).astype(np.int64)
        if refs.size and (refs.min() < -n_leaves or refs.max() >= n_internal):
            raise bad("child or root reference out of range")
        parent = np.arange(n_internal)
        for side in (0, 1):
            child = a["children"][:, side].astype(np.int64)
            if np.any((child >= 0) & (child <= parent)):
                raise bad("a child does not come after its parent")
        internal_refs = refs[refs >= 0]
        leaf_refs = -refs[refs < 0] - 1
        if not (
            np.all(np.bincount(internal_refs, minlength=n_internal) == 1)
            and np.all(np.bincount(leaf_refs, minlength=n_leaves) == 1)
        ):
            raise bad("nodes and leaves must each be referenced exactly once")

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

        ``backend``: "numba" or "numpy"; default numba when installed.
        """
        X = self._check_X(X)
        if backend is None:
            backend = "numba" if HAVE_NUMBA else "numpy"
        out = np.zeros((X.shape[0], len(self.classes_)), dtype=np.float64)
        if X.shape[0] == 0:
            return out
        a = self._arrays
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
        if backend == "numba":
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
            np.savez(fh, **self._arrays)
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
    def load_files(cls, npz_path: Path, meta_path: Path) -> CompactForest:
        """Load the two files of :meth:`save` under any names (as Spark ships them)."""
        npz_path, meta_path = Path(npz_path), Path(meta_path)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
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
        forest = cls(
            arrays,
            np.asarray(classes, dtype=str),
            n_features,
            np.asarray(feature_names, dtype=str) if feature_names else None,
        )
        if forest.n_trees != meta.get("n_trees"):
            raise ValueError(
                f"{npz_path} holds {forest.n_trees} trees, {meta_path.name} says otherwise"
            )
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
