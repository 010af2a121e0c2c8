"""The fitted featurizer in a pickle-free form, and its transform: columns -> sparse rows.

Made at training (`core/features/fit.py`, scikit-learn) and used where products are scored
(Spark workers, the served model): numpy and the standard library only, no scikit-learn.

Output columns, in order: the numeric features (missing -> the training median; for a linear
model then `signed_log1p` and standardised), one missing-indicator per numeric feature that had missing
values in training, each categorical feature one-hot (an unseen value sets no column; a
missing value is the category "", like any other seen in training), then per text column a word and a `char_wb` TF-IDF block (`text_terms`).

Stored as `featurizer.npz` (np.savez, loaded with `allow_pickle=False`) and `featurizer.json`,
whose `sha256` covers the arrays and the JSON description, so a changed vocabulary, idf or
n-gram range is refused like a tampered forest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bettercat_assets.core.features.checksummed import load_checksummed, save_checksummed
from bettercat_assets.core.features.text_terms import (
    WordMemo,
    char_wb_term_ids,
    tfidf_rows,
    word_term_ids,
)

FORMAT = "bettercat.featurizer"
FORMAT_VERSION = 1
ARRAYS_FILE = "featurizer.npz"
META_FILE = "featurizer.json"
KINDS = ("numeric", "text", "categorical")


@dataclass(frozen=True)
class SparseRows:
    """A CSR matrix without scipy: row `i` is `data[indptr[i]:indptr[i+1]]` at `indices`."""

    indptr: np.ndarray  # int64 (n_rows + 1)
    indices: np.ndarray  # int32, sorted within each row
    data: np.ndarray  # float64
    n_cols: int

    @property
    def n_rows(self) -> int:
        return int(self.indptr.size - 1)

    def toarray(self, dtype: Any = np.float64) -> np.ndarray:
        """Dense copy (tests and small batches)."""
        out = np.zeros((self.n_rows, self.n_cols), dtype=dtype)
        rows = np.repeat(np.arange(self.n_rows), np.diff(self.indptr))
        out[rows, self.indices] = self.data
        return out


def encode_terms(terms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings -> (utf-8 bytes, int64 offsets): a vocabulary as plain arrays."""
    encoded = [t.encode("utf-8") for t in terms]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets


def decode_terms(blob: np.ndarray, offsets: np.ndarray) -> list[str]:
    raw = blob.tobytes()
    bounds = offsets.tolist()
    return [raw[bounds[i] : bounds[i + 1]].decode("utf-8") for i in range(len(bounds) - 1)]


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """sign(x) * log(1 + |x|): prices, sizes and counts span orders of magnitude; a linear
    model reads them on this scale (then standardised), so one huge value cannot dominate."""
    return np.sign(x) * np.log1p(np.abs(x))


def _bad(message: str) -> ValueError:
    return ValueError(f"invalid featurizer: {message}")


def _as_text(values: Any) -> list[str]:
    """Text cells as str; None and NaN (missing) are the empty text."""
    return [v if isinstance(v, str) else "" if v is None or v != v else str(v) for v in values]


def _merge_rows(parts: list[tuple], n_rows: int, n_cols: int) -> SparseRows:
    """CSR rows from parts of (row, column, value), each sorted by row then column, the parts'
    columns disjoint and increasing: a row is its entries of each part in turn (no sort)."""
    counts = [np.bincount(p[0], minlength=n_rows) for p in parts]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(sum(counts, np.zeros(n_rows, np.int64)), out=indptr[1:])
    indices = np.empty(int(indptr[-1]), dtype=np.int32)
    data = np.empty(int(indptr[-1]), dtype=np.float64)
    before = indptr[:-1].copy()  # where each row's entries of the next part go
    for (rows, cols, values), count in zip(parts, counts, strict=True):
        part_starts = np.cumsum(count) - count
        positions = (before - part_starts)[rows] + np.arange(rows.size)
        indices[positions] = cols
        data[positions] = values
        before += count
    return SparseRows(indptr, indices, data, n_cols)


class Featurizer:
    """Transforms a client's feature columns into the model's sparse input (module docstring)."""

    def __init__(self, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.spec = spec
        self.arrays = arrays
        self.inputs: list[dict[str, str]] = list(spec["inputs"])
        self.n_features_out = int(spec["n_features_out"])
        self._vocabularies: dict[int, dict[str, int]] = {}
        self._memos: dict[int, WordMemo] = {}
        self._validate()

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.inputs]

    def names_of_kind(self, kind: str) -> list[str]:
        return [i["name"] for i in self.inputs if i["kind"] == kind]

    def _validate(self) -> None:
        if not self.inputs or any(i.get("kind") not in KINDS for i in self.inputs):
            raise _bad("inputs must be a non-empty list of {name, kind}")
        offset = self._validate_numeric()
        for b, block in enumerate(self.spec["blocks"]):
            if block.get("offset") != offset or block.get("column") not in self.input_names:
                raise _bad(f"block {b} is not where the layout says")
            offset += self._validate_block(b, block)
        if offset != self.n_features_out:
            raise _bad(f"blocks add up to {offset} columns, not {self.n_features_out}")

    def _validate_numeric(self) -> int:
        """Check the numeric arrays; returns how many columns they make."""
        n_num = len(self.names_of_kind("numeric"))
        for name in ("numeric_fill", "numeric_mean", "numeric_scale"):
            arr = self.arrays.get(name)
            if not isinstance(arr, np.ndarray) or arr.dtype != np.float64 or arr.shape != (n_num,):
                raise _bad(f"{name} must be {n_num} float64 values")
        indicator = self.arrays.get("numeric_indicator")
        if indicator is None or indicator.dtype != np.int32 or indicator.ndim != 1:
            raise _bad("numeric_indicator must be int32 indices")
        if indicator.size and (indicator.min() < 0 or indicator.max() >= n_num):
            raise _bad("numeric_indicator index out of range")
        return n_num + int(indicator.size)

    def _validate_block(self, b: int, block: dict[str, Any]) -> int:
        """Check one block's vocabulary (and idf); returns its number of columns."""
        blob, offs = self.arrays.get(f"b{b}_terms"), self.arrays.get(f"b{b}_offsets")
        if blob is None or offs is None or blob.dtype != np.uint8 or offs.dtype != np.int64:
            raise _bad(f"block {b} has no vocabulary")
        size = int(offs.size - 1)
        if size < 1 or offs[0] != 0 or offs[-1] != blob.size or np.any(np.diff(offs) < 0):
            raise _bad(f"block {b}'s vocabulary offsets are broken")
        if block["kind"] == "text":
            idf = self.arrays.get(f"b{b}_idf")
            if idf is None or idf.dtype != np.float64 or idf.shape != (size,):
                raise _bad(f"block {b}'s idf does not match its vocabulary")
            if block.get("analyzer") not in ("word", "char_wb"):
                raise _bad(f"block {b}: unknown analyzer")
        elif block["kind"] != "categorical":
            raise _bad(f"block {b}: unknown kind")
        return size

    def column_owners(self) -> np.ndarray:
        """For each output column, the position of the input feature it comes from."""
        position = {name: i for i, name in enumerate(self.input_names)}
        numeric = [position[n] for n in self.names_of_kind("numeric")]
        owners = numeric + [numeric[i] for i in self.arrays["numeric_indicator"].tolist()]
        for b, block in enumerate(self.spec["blocks"]):
            size = self.arrays[f"b{b}_offsets"].size - 1
            owners += [position[block["column"]]] * size
        return np.asarray(owners, dtype=np.int64)

    def _vocabulary(self, b: int) -> dict[str, int]:
        if b not in self._vocabularies:
            terms = decode_terms(self.arrays[f"b{b}_terms"], self.arrays[f"b{b}_offsets"])
            self._vocabularies[b] = {t: i for i, t in enumerate(terms)}
        return self._vocabularies[b]

    def word_vocabulary(self, column: str) -> tuple[dict[str, int], bool] | None:
        """The word block's vocabulary of a text column and whether it lower-cases, or None
        (no word block); a word token is in the vocabulary iff it is one of its terms."""
        for b, block in enumerate(self.spec["blocks"]):
            if block["column"] == column and block.get("analyzer") == "word":
                return self._vocabulary(b), bool(block["lowercase"])
        return None

    def _numeric(self, columns: dict[str, Any], n_rows: int) -> list[tuple]:
        names = self.names_of_kind("numeric")
        if not names:
            return []
        x = np.column_stack(
            [np.asarray(columns[n], dtype=np.float64).reshape(n_rows) for n in names]
        )
        missing = np.isnan(x)
        x = np.where(missing, self.arrays["numeric_fill"], x)
        if self.spec.get("scale_numeric"):
            x = signed_log1p(x)
            x -= self.arrays["numeric_mean"]
            x /= self.arrays["numeric_scale"]
        indicator = missing[:, self.arrays["numeric_indicator"]].astype(np.float64)
        dense = np.hstack([x, indicator])
        rows, cols = np.nonzero(dense)
        return [(rows.astype(np.int64), cols.astype(np.int64), dense[rows, cols])]

    def _block(self, b: int, block: dict[str, Any], values: Any, n_rows: int) -> tuple:
        vocabulary = self._vocabulary(b)
        text = _as_text(values)
        if block["kind"] == "categorical":
            ids = np.fromiter((vocabulary.get(v, -1) for v in text), np.int64, len(text))
            rows = np.flatnonzero(ids >= 0)
            return rows, ids[rows] + block["offset"], np.ones(rows.size)
        ngrams, lowercase = tuple(block["ngram_range"]), block["lowercase"]
        if block["analyzer"] == "char_wb":
            memo = self._memos.setdefault(b, WordMemo())
            rows, cols = char_wb_term_ids(text, ngrams, lowercase, vocabulary, memo)
        else:
            rows, cols = word_term_ids(text, ngrams, lowercase, vocabulary)
        rows, cols, data = tfidf_rows(
            rows, cols, n_rows, self.arrays[f"b{b}_idf"], block["sublinear_tf"]
        )
        return rows, cols + block["offset"], data

    def transform(self, columns: dict[str, Any]) -> SparseRows:
        """Sparse rows for the given columns (name -> values; every input must be there)."""
        missing = [n for n in self.input_names if n not in columns]
        if missing:
            raise KeyError(f"missing column(s) {', '.join(map(repr, missing))}")
        n_rows = len(columns[self.input_names[0]])
        parts = self._numeric(columns, n_rows)
        for b, block in enumerate(self.spec["blocks"]):
            parts.append(self._block(b, block, columns[block["column"]], n_rows))
        return _merge_rows(parts, n_rows, self.n_features_out)

    # ------------------------------------------------------------------ persistence

    def save(self, directory: Path) -> None:
        """Write `featurizer.npz` and `featurizer.json` (with the checksum of both)."""
        meta = {**self.spec, "format": FORMAT, "format_version": FORMAT_VERSION}
        save_checksummed(directory, ARRAYS_FILE, META_FILE, self.arrays, meta)

    @classmethod
    def load(cls, directory: Path) -> Featurizer:
        return cls.load_files(Path(directory) / ARRAYS_FILE, Path(directory) / META_FILE)

    @classmethod
    def load_files(cls, npz_path: Path, meta_path: Path) -> Featurizer:
        """Load what `save` wrote, under any names; ValueError if damaged or tampered with."""
        meta, arrays = load_checksummed(
            npz_path, meta_path, FORMAT, FORMAT_VERSION, "featurizer", "featurizer"
        )
        spec = {k: v for k, v in meta.items() if k not in ("format", "format_version", "sha256")}
        try:
            return cls(spec, arrays)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"invalid featurizer: malformed description ({exc})") from None
