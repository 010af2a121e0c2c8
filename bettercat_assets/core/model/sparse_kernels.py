"""The sparse forest's kernels, compiled ahead of time like the dense one (`forest_kernel_aot`).

Plain Python functions that numba compiles (`make install` ahead of time, else the JIT). A text
forest is deep (leaves of one product: ~70 nodes from root to leaf) and most of its nodes ask
"is this rare n-gram in the product?", which for almost every row is no. So:

* `toggle_bits`: each row of a block gets a bit per feature the forest splits on (features
  renumbered to the used ones, `CompactForest.packed_nodes`), set where the row is non-zero;
  a visited node reads one bit, and only for a set bit finds the value by binary search in
  the row's sorted columns (the row's bits are toggled back afterwards);
* `walk_block`: the block's rows walk each tree in turn (the tree's nodes stay in cache),
  reading one packed record per node (feature, threshold, left, right): one cache line a visit;
  the nodes are in depth-first order, so "absent: go left" is mostly "go to the next node".

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
#: bytes of feature bits per block of rows: the more rows walk a tree in turn, the fewer
#: times its nodes come from memory (measured: 44 us a row at 8 MB, 50 at 2 MB, 75 at 32 kB)
BLOCK_BITS_BYTES = 8 << 20


def block_rows(words: int) -> int:
    """Rows per block for `words` 64-bit words of feature bits per row."""
    return max(16, BLOCK_BITS_BYTES // (8 * words))


def toggle_bits(indptr, indices, slot_of, start, stop, words, bits):  # pragma: no cover - numba
    """Flip, for rows start..stop, the bit of each used feature that is non-zero in the row."""
    for r in range(start, stop):
        base = (r - start) * words
        for j in range(indptr[r], indptr[r + 1]):
            u = np.int64(slot_of[indices[j]])
            if u >= 0:
                bits[base + (u >> 6)] ^= np.uint64(1) << np.uint64(u & 63)


def walk_block(  # noqa: C901 - one compiled kernel, kept flat for speed
    nodes,
    thresholds,
    used,
    indptr,
    indices,
    data,
    roots,
    lindptr,
    classes,
    leaf_values,
    start,
    stop,
    words,
    bits,
    out,
):  # pragma: no cover - compiled by numba
    """Add each tree's leaf distribution for rows start..stop into `out` (float64); `nodes`
    and `thresholds` (float32) are the packed nodes, `used[u]` used feature u's column.

    A node flagged `CHAIN` (sign bit) sends an absent feature to the next node: a row runs
    down such chains reading one bit per node, in a loop the processor predicts well."""
    for t in range(roots.shape[0]):
        root = roots[t]
        for r in range(start, stop):
            ref = root
            base = (r - start) * words
            while ref >= 0:
                word = np.int64(nodes[ref, 0])
                u = word & 0x7FFFFFFF
                present = (bits[base + (u >> 6)] >> np.uint64(u & 63)) & np.uint64(1)
                if word < 0 and present == 0:
                    ref += 1
                    continue
                x = np.float32(0.0)
                if present:
                    f = used[u]  # the row's last column <= f is f: branch-free search
                    lo = indptr[r]
                    n = indptr[r + 1] - lo
                    while n > 1:
                        half = n >> 1
                        lo = lo + half if indices[lo + half] <= f else lo
                        n -= half
                    x = data[lo]
                ref = nodes[ref, 2 + np.int64(x > thresholds[ref, 1])]
            leaf = -ref - 1
            for k in range(lindptr[leaf], lindptr[leaf + 1]):
                out[r, classes[k]] += leaf_values[k]


_BITS_SIGNATURE = "void(i8[::1], i4[::1], i4[::1], i8, i8, i8, u8[::1])"
_WALK_SIGNATURE = (
    "void(i4[:,::1], f4[:,::1], i4[::1], i8[::1], i4[::1], f4[::1], i4[::1], {indptr}[::1], "
    "{classes}[::1], f4[::1], i8, i8, i8, u8[::1], f8[:,::1])"
)


def walk_name(indptr: str, classes: str) -> str:
    return f"walk_block_{indptr}_{classes}"


SPARSE_KERNELS = KernelSet(
    "bettercat_sparse_kernel",
    (
        ("toggle_bits", toggle_bits, _BITS_SIGNATURE),
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

    return numba.njit(nogil=True)(toggle_bits), numba.njit(nogil=True)(walk_block)


def kernels(
    indptr_code: str, classes_code: str, compiled: bool = True
) -> tuple[Callable[..., None], Callable[..., None]]:
    """(toggle_bits, walk_block): compiled ahead of time when built (and `compiled`), else
    numba's JIT (ImportError without numba)."""
    module = compiled_module(SPARSE_KERNELS) if compiled else None
    if module is not None:
        walk = getattr(module, walk_name(indptr_code, classes_code), None)
        if walk is not None:
            return module.toggle_bits, walk
    return _jitted()
