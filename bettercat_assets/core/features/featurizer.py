"""The fitted featurizer in a pickle-free form, and its transform: columns -> sparse rows.

Made at training (`core/features/fit.py`, scikit-learn) and used where products are scored
(Spark workers, the served model): numpy and the standard library only, no scikit-learn.

Output columns, in order: the numeric features (missing -> the training median; for a linear
model then `signed_log1p` and standardised), one missing-indicator per numeric feature that had
missing values in training, each categorical feature one-hot (an unseen value sets no column; a
missing value is the category "", like any other seen in training), then per text column a word
and a `char_wb` TF-IDF block (`text_terms`; the compiled path gathers the terms by `term_keys`).

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
from bettercat_assets.core.features.term_keys import (
    BatchTexts,
    WordTrie,
    category_keys,
    char_wb_keys,
    word_keys,
)
from bettercat_assets.core.features.text_kernels import (
    ONE_HOT,
    SUBLINEAR_TF,
    TF,
    CompiledTextKernels,
    compiled_text_kernels,
    log_tf_table,
)
from bettercat_assets.core.features.text_terms import (
    WordMemo,
    char_wb_term_ids,
    key_layout,
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
        self._tries: dict[int, WordTrie] = {}
        self._plan: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
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

    def _numeric(self, columns: dict[str, Any], n_rows: int) -> np.ndarray:
        """The numeric columns and missing-indicators, dense (n_rows x their count)."""
        names = self.names_of_kind("numeric")
        if not names:
            return np.zeros((n_rows, 0), dtype=np.float64)
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
        return np.ascontiguousarray(np.hstack([x, indicator]))

    def _terms(self, b: int, block: dict[str, Any], text: list[str]) -> tuple:
        """(row, column in the block) of each of the block's terms (a category: one), by
        numpy: the reference path."""
        vocabulary = self._vocabulary(b)
        if block["kind"] == "categorical":
            ids = np.fromiter((vocabulary.get(v, -1) for v in text), np.int64, len(text))
            rows = np.flatnonzero(ids >= 0)
            return rows, ids[rows]
        ngrams, lowercase = tuple(block["ngram_range"]), block["lowercase"]
        if block["analyzer"] == "char_wb":
            memo = self._memos.setdefault(b, WordMemo())
            return char_wb_term_ids(text, ngrams, lowercase, vocabulary, memo)
        return word_term_ids(text, ngrams, lowercase, vocabulary)

    def _merge_numpy(self, dense: np.ndarray, terms: list[tuple], n_rows: int) -> SparseRows:
        """The reference path (numpy): each block's values, then the parts merged."""
        parts = []
        if dense.shape[1]:
            rows, cols = np.nonzero(dense)
            parts.append((rows.astype(np.int64), cols.astype(np.int64), dense[rows, cols]))
        for b, (block, (rows, cols)) in enumerate(zip(self.spec["blocks"], terms, strict=True)):
            if block["kind"] == "categorical":
                parts.append((rows, cols + block["offset"], np.ones(rows.size)))
                continue
            idf = self.arrays[f"b{b}_idf"]
            rows, cols, data = tfidf_rows(rows, cols, n_rows, idf, block["sublinear_tf"])
            parts.append((rows, cols + block["offset"], data))
        return _merge_rows(parts, n_rows, self.n_features_out)

    def _kernel_plan(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`text_kernels.merge_rows`'s description of the blocks: (block_starts, modes,
        weights per output column: a text term's idf, a category's 1)."""
        if self._plan is None:
            blocks = self.spec["blocks"]
            starts = [block["offset"] for block in blocks] + [self.n_features_out]
            modes = [
                ONE_HOT
                if block["kind"] == "categorical"
                else SUBLINEAR_TF
                if block["sublinear_tf"]
                else TF
                for block in blocks
            ]
            weights = np.zeros(self.n_features_out, dtype=np.float64)
            for b, block in enumerate(blocks):
                size = int(self.arrays[f"b{b}_offsets"].size - 1)
                span = slice(block["offset"], block["offset"] + size)
                weights[span] = self.arrays[f"b{b}_idf"] if modes[b] != ONE_HOT else 1.0
            self._plan = (np.asarray(starts, np.int64), np.asarray(modes, np.int64), weights)
        return self._plan

    def _key_layout(self, n_rows: int) -> tuple[int, np.dtype]:
        """`key_layout` of `n_rows` rows of this featurizer's output columns."""
        return key_layout(n_rows, self.n_features_out)

    def _block_keys(
        self, b: int, block: dict[str, Any], texts: BatchTexts, layout: tuple, kernels
    ) -> np.ndarray:
        """The keys (`_key_layout`) of block `b`'s terms, gathered by the compiled kernels."""
        vocabulary = self._vocabulary(b)
        layout = (layout[0], block["offset"], layout[1])
        if block["kind"] == "categorical":
            return category_keys(texts.get(block["column"]), vocabulary, layout)
        docs = texts.get(block["column"], lower=block["lowercase"])
        joined = texts.joined(block["column"], block["lowercase"])
        ngrams = tuple(block["ngram_range"])
        if block["analyzer"] == "char_wb":
            memo = self._memos.setdefault(b, WordMemo())
            return char_wb_keys(docs, joined, ngrams, vocabulary, memo, layout, kernels.memo_keys)
        if b not in self._tries:
            self._tries[b] = WordTrie(vocabulary)
        return word_keys(docs, joined, self._tries[b], ngrams, layout, kernels.word_keys)

    def _merge_compiled(
        self, dense: np.ndarray, texts: BatchTexts, n_rows: int
    ) -> SparseRows | None:
        """`_merge_numpy`'s rows, the terms gathered and the rows made by the compiled kernels
        (None: not built)."""
        shift, dtype = self._key_layout(n_rows)
        kernels: CompiledTextKernels | None = compiled_text_kernels(dtype.str[1:])
        if kernels is None:
            return None
        blocks = enumerate(self.spec["blocks"])
        parts = [self._block_keys(b, block, texts, (shift, dtype), kernels) for b, block in blocks]
        keys = np.concatenate(parts) if parts else np.zeros(0, dtype)
        keys.sort()
        block_starts, modes, weights = self._kernel_plan()
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        indices = np.empty(dense.size + keys.size, np.int32)
        data = np.empty(dense.size + keys.size, np.float64)
        nnz = kernels.merge_rows(
            dense, keys, shift, block_starts, modes, weights, log_tf_table(), indptr, indices, data
        )
        return SparseRows(indptr, indices[:nnz], data[:nnz], self.n_features_out)

    def transform(self, columns: dict[str, Any], *, compiled: bool = True) -> SparseRows:
        """Sparse rows for the given columns (name -> values; every input must be there), by
        the compiled kernel where `make install` built it (and `compiled`), else by numpy."""
        missing = [n for n in self.input_names if n not in columns]
        if missing:
            raise KeyError(f"missing column(s) {', '.join(map(repr, missing))}")
        n_rows = len(columns[self.input_names[0]])
        dense = self._numeric(columns, n_rows)
        texts = BatchTexts(columns)
        rows = self._merge_compiled(dense, texts, n_rows) if compiled else None
        if rows is not None:
            return rows
        terms = [
            self._terms(b, block, texts.get(block["column"]))
            for b, block in enumerate(self.spec["blocks"])
        ]
        return self._merge_numpy(dense, terms, n_rows)

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
