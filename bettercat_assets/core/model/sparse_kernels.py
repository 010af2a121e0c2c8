"""The sparse forest's kernels, compiled ahead of time like the dense one (`forest_kernel_aot`).

Plain Python functions that numba compiles (`make install` ahead of time, else the JIT). A text
forest is deep (leaves of one product: ~70 nodes from root to leaf) and most of its nodes ask
"is this rare n-gram in the product?", which for almost every row is no. So:

* `row_bits`: each row of a block gets a bit per feature the forest splits on (features
  renumbered to the used ones, `CompactForest.packed_nodes`), set where the row is non-zero;
  a visited node reads one bit, and only for a set bit finds the value: the row's values are
  in feature order, so its index is the word's first rank (stored beside the word's bits:
  one cache line) plus the set bits below it (a binary search in the row's columns took
  ~40 % of the walk);
* `walk_block`: the block's rows walk each tree in turn (the tree's nodes stay in cache),
  reading one packed record per node (feature, threshold, left, right): one cache line a visit;
  the nodes are in depth-first order, so "absent: go left" is mostly "go to the next node";
  a pure leaf's class is in the reference to it, so most walks end without reading the leaves.

Measured on a generated text forest (100 trees, ~53 nodes visited per row and tree, ~49 of
them "absent: next node"): the few nodes whose feature the row has cost most, through
dependent reads; the ranks beside the bits and pure leaves in references each took ~16 % off.

numpy only: Spark workers import this module.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from bettercat_assets.core.model.forest_kernel_aot import KernelSet, compiled_module

#: sign bit of a packed node's feature word: its left child is the next node and its
#: threshold >= 0, so a row without the feature goes on to the next node
CHAIN = np.int32(-(2**31))
#: a child reference `PURE + code` (below `PURE_LIMIT`) is a pure leaf: `code & class_mask` is
#: its class, with probability 1 (`CompactForest.pure_leaf_refs`); other leaves are -(leaf + 1)
PURE = -(2**31)
PURE_LIMIT = -(2**30)
#: bytes of feature bits and ranks per block of rows: small enough that a block's rows stay in
#: the core's cache beside the tree they walk (measured on products in random order, 100 trees,
#: 460 words a row: 27 us a row at 512 kB, 29 at 1-2 MB, 39 at 8 MB, 85 at 128 MB; two
#: processes at once the same)
BLOCK_BITS_BYTES = 512 << 10


def block_rows(words: int) -> int:
    """Rows per block for `words` words of feature bits (8 bytes) and ranks (8) per row."""
    return max(16, BLOCK_BITS_BYTES // (16 * words))


def row_bits(
    indptr, indices, data, slot_of, start, stop, words, bits, values
):  # pragma: no cover - compiled by numba
    """For rows start..stop: flip the bit of each used feature that is non-zero in the row;
    `values` gets the row's used non-zeros in order. `bits` holds per row and 64-feature word
    two entries: the word's bits, then the position in `values` of its first one, so that a
    present feature's bits and rank come in one cache line (a second call flips the bits
    back)."""
    pos = 0
    for r in range(start, stop):
        base = (r - start) * words * 2
        w = 0
        for j in range(indptr[r], indptr[r + 1]):
            u = np.int64(slot_of[indices[j]])
            if u < 0:
                continue
            while w <= (u >> 6):
                bits[base + 2 * w + 1] = pos
                w += 1
            bits[base + 2 * (u >> 6)] ^= np.uint64(1) << np.uint64(u & 63)
            values[pos] = data[j]
            pos += 1
        while w < words:
            bits[base + 2 * w + 1] = pos
            w += 1


def walk_block(  # noqa: C901 - one compiled kernel, kept flat for speed
    nodes,
    thresholds,
    roots,
    lindptr,
    classes,
    leaf_values,
    start,
    stop,
    words,
    bits,
    values,
    class_mask,
    out,
):  # pragma: no cover - compiled by numba
    """Add each tree's leaf distribution for rows start..stop into `out` (float64); `nodes`
    and `thresholds` (float32) are the packed nodes; a set bit's value is found by its rank.
    A pure leaf's class is in its reference: no read of the leaf arrays (three dependent
    cache misses a tree, ~17 % of the walk).

    A node flagged `CHAIN` (sign bit) sends an absent feature to the next node: a row runs
    down such chains reading one bit per node, in a loop the processor predicts well."""
    for t in range(roots.shape[0]):
        root = roots[t]
        for r in range(start, stop):
            ref = root
            base = (r - start) * words * 2
            while ref >= 0:
                word = np.int64(nodes[ref, 0])
                u = word & 0x7FFFFFFF
                at = base + 2 * (u >> 6)
                row_word = bits[at]
                below = np.uint64(1) << np.uint64(u & 63)
                if word < 0 and row_word & below == 0:
                    ref += 1
                    continue
                x = np.float32(0.0)
                if row_word & below:  # the value's rank: set bits below it (SWAR popcount)
                    v = row_word & (below - np.uint64(1))
                    v = v - ((v >> np.uint64(1)) & np.uint64(0x5555555555555555))
                    v = (v & np.uint64(0x3333333333333333)) + (
                        (v >> np.uint64(2)) & np.uint64(0x3333333333333333)
                    )
                    v = (v + (v >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
                    rank = np.int64((v * np.uint64(0x0101010101010101)) >> np.uint64(56))
                    x = values[np.int64(bits[at + 1]) + rank]
                ref = nodes[ref, 2 + np.int64(x > thresholds[ref, 1])]
            if ref < PURE_LIMIT:
                out[r, (np.int64(ref) - PURE) & class_mask] += 1.0
                continue
            leaf = -ref - 1
            for k in range(lindptr[leaf], lindptr[leaf + 1]):
                out[r, classes[k]] += leaf_values[k]


_BITS_SIGNATURE = "void(i8[::1], i4[::1], f4[::1], i4[::1], i8, i8, i8, u8[::1], f4[::1])"
_WALK_SIGNATURE = (
    "void(i4[:,::1], f4[:,::1], i4[::1], {indptr}[::1], {classes}[::1], f4[::1], i8, i8, i8, "
    "u8[::1], f4[::1], i8, f8[:,::1])"
)


def walk_name(indptr: str, classes: str) -> str:
    return f"walk_block_{indptr}_{classes}"


SPARSE_KERNELS = KernelSet(
    "bettercat_sparse_kernel",
    (
        ("row_bits", row_bits, _BITS_SIGNATURE),
        *(
            (walk_name(i, c), walk_block, _WALK_SIGNATURE.format(indptr=i, classes=c))
            for i in ("i4", "i8")
            for c in ("u2", "i4")
        ),
    ),
)


@functools.cache
def _jitted() -> tuple[Callable[..., None], Callable[..., None]]:  # pragma: no cover - numba
    import numba

    return numba.njit(nogil=True)(row_bits), numba.njit(nogil=True)(walk_block)


def kernels(
    indptr_code: str, classes_code: str, compiled: bool = True
) -> tuple[Callable[..., None], Callable[..., None]]:
    """(row_bits, walk_block): compiled ahead of time when built (and `compiled`), else
    numba's JIT (ImportError without numba)."""
    module = compiled_module(SPARSE_KERNELS) if compiled else None
    if module is not None:
        walk = getattr(module, walk_name(indptr_code, classes_code), None)
        if walk is not None:
            return module.row_bits, walk
    return _jitted()
