"""The featurizer's sparse rows in one compiled pass (`core.aot_kernels`, built by `make install`).

`text_terms.tfidf_rows` and `featurizer._merge_rows` do in numpy what `merge_rows` does here row
by row: the row's term ids (all its categorical and text blocks, global columns) sorted,
duplicates counted, each text term's tf (the count, or `log(count) + 1` looked up in a table
numpy computed, so the values are numpy's own) times its idf, each text block's L2 norm summed
sequentially in column order in float64 as scikit-learn's `inplace_csr_row_normalize_l2` does,
and the row written into the final CSR after its numeric columns. Bit-identical to the numpy
path, which stays the reference and the fallback where the module was not built.

numpy only: Spark workers import this module, never numba.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from bettercat_assets.core.aot_kernels import KernelSet, compiled_module

#: how a block's values are made: one-hot (the count, times 1), tf, or sublinear tf (then L2)
ONE_HOT, TF, SUBLINEAR_TF = 0, 1, 2
#: counts with `log(count) + 1` in the table; a larger count (one term repeated that often in
#: one text) is computed in the kernel, by libm, possibly 1 ulp away from numpy's log
TF_TABLE_SIZE = 4096


def merge_rows(  # noqa: C901 - one compiled kernel, kept flat for speed
    dense, keys, shift, block_starts, modes, weights, log_tf, indptr, indices, data
):  # pragma: no cover - compiled by numba
    """CSR rows: each row's non-zeros of `dense` (numeric columns), then its distinct terms.

    `keys` are the terms of all the rows (categorical and text blocks), `row << shift | column`
    sorted: a run of equal keys is one term and its count, valued per block (`modes`; `weights`:
    idf or 1), each tf block of a row L2-normalised. Writes `indptr`, `indices`, `data`;
    returns the number of values."""
    mask = (np.int64(1) << shift) - 1
    n_keys, k, pos = keys.shape[0], 0, 0
    for r in range(dense.shape[0]):
        for j in range(dense.shape[1]):
            if dense[r, j] != 0.0:
                indices[pos] = j
                data[pos] = dense[r, j]
                pos += 1
        b, first = 0, pos
        while True:
            in_row = k < n_keys and (np.int64(keys[k]) >> shift) == r
            c = np.int64(keys[k]) & mask if in_row else block_starts[-1]
            while b < modes.shape[0] and c >= block_starts[b + 1]:  # block b's values end
                if modes[b] != ONE_HOT:
                    total = 0.0
                    for t in range(first, pos):
                        total += data[t] * data[t]
                    norm = np.sqrt(total) if total != 0.0 else 1.0
                    for t in range(first, pos):
                        data[t] /= norm
                b, first = b + 1, pos
            if not in_row:
                break
            e = k + 1
            while e < n_keys and keys[e] == keys[k]:
                e += 1
            count = e - k
            tf = np.float64(count)
            if modes[b] == SUBLINEAR_TF:
                tf = log_tf[count] if count < log_tf.shape[0] else np.log(tf) + 1.0
            indices[pos] = c
            data[pos] = tf * weights[c]
            pos += 1
            k = e
        indptr[r + 1] = pos
    return pos


def word_keys(
    tokens, per_doc, edge_keys, edge_child, node_term, min_n, max_n, shift, offset, out
):  # pragma: no cover - compiled by numba
    """The keys `row << shift | offset + term` of the word n-grams of the documents.

    `tokens` are the documents' token numbers end to end (`per_doc` of each; -1: a token in no
    term), a token's number + 1 its node in the terms' trie, whose other edges are the sorted
    `edge_keys` (`node << 32 | token`, to `edge_child`); `node_term[node]`: the term ending
    there or -1. Writes into `out`; returns how many keys."""
    n_edges, at, end, count = edge_keys.shape[0], 0, 0, 0
    for row in range(per_doc.shape[0]):
        at, end = end, end + per_doc[row]
        base = (np.int64(row) << shift) + offset
        for i in range(at, end):
            node = tokens[i] + 1
            n = 1
            while node > 0:
                if n >= min_n and node_term[node] >= 0:
                    out[count] = base + node_term[node]
                    count += 1
                if n == max_n or i + n == end or tokens[i + n] < 0:
                    break
                key = (node << 32) | tokens[i + n]
                lo, hi = 0, n_edges
                while lo < hi:  # the first edge not below key
                    mid = (lo + hi) >> 1
                    if edge_keys[mid] < key:
                        lo = mid + 1
                    else:
                        hi = mid
                node = edge_child[lo] if lo < n_edges and edge_keys[lo] == key else 0
                n += 1
    return count


def memo_keys(
    numbers, per_doc, starts, lengths, ids, shift, offset, out
):  # pragma: no cover - compiled by numba
    """The keys `row << shift | offset + id` of the words' remembered `char_wb` ids (a word
    numbered w: `ids[starts[w]:starts[w] + lengths[w]]`); `per_doc` words per document. Writes
    into `out`; returns how many keys."""
    end, count = 0, 0
    for row in range(per_doc.shape[0]):
        at, end = end, end + per_doc[row]
        base = (np.int64(row) << shift) + offset
        for i in range(at, end):
            w = numbers[i]
            for j in range(starts[w], starts[w] + lengths[w]):
                out[count] = base + ids[j]
                count += 1
    return count


_SIGNATURE = (
    "i8(f8[:,::1], {keys}[::1], i8, i8[::1], i8[::1], f8[::1], f8[::1], i8[::1], i4[::1], f8[::1])"
)
_WORD_SIGNATURE = "i8(i8[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8, i8, i8, i8, {keys}[::1])"
_MEMO_SIGNATURE = "i8(i8[::1], i8[::1], i8[::1], i8[::1], i4[::1], i8, i8, {keys}[::1])"
TEXT_KERNELS = KernelSet(
    "bettercat_text_kernel",
    tuple(
        (f"{name}_{k}", kernel, signature.format(keys=k))
        for k in ("i4", "i8")
        for name, kernel, signature in (
            ("merge_rows", merge_rows, _SIGNATURE),
            ("word_keys", word_keys, _WORD_SIGNATURE),
            ("memo_keys", memo_keys, _MEMO_SIGNATURE),
        )
    ),
)


@functools.cache
def log_tf_table() -> np.ndarray:
    """`log(count) + 1` for counts 0..TF_TABLE_SIZE-1, by numpy as `tfidf_rows` computes it."""
    table = np.arange(TF_TABLE_SIZE, dtype=np.float64)
    table[0] = 1.0
    np.log(table, table)
    table += 1.0
    return table


class CompiledTextKernels(NamedTuple):
    """The compiled kernels for keys of one width: `merge_rows`, `word_keys`, `memo_keys`."""

    merge_rows: Callable[..., int]
    word_keys: Callable[..., int]
    memo_keys: Callable[..., int]


def compiled_text_kernels(keys_code: str) -> CompiledTextKernels | None:
    """The compiled kernels for keys of `keys_code` ("i4" or "i8"), or None when
    `make install` did not build them (no numba)."""
    module = compiled_module(TEXT_KERNELS)
    if module is None:
        return None
    names = CompiledTextKernels._fields
    found = [getattr(module, f"{name}_{keys_code}", None) for name in names]
    return None if None in found else CompiledTextKernels(*found)
