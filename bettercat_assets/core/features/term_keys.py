"""The compiled path's terms: each text block's terms of a batch straight as the merge kernel's
keys `row << shift | output column` (`text_kernels.word_keys`, `memo_keys`), with no numpy
step per term. The same terms as `text_terms.word_term_ids` and `char_wb_term_ids` find (the
reference, and the path where the kernels were not built).

Words: each token of the vocabulary's terms has a number (a dict lookup per token of the text,
by `map`), and the terms are paths in a trie of those numbers, walked by the kernel. A text
n-gram is a term iff its tokens are a path ending at that term's node: exact, whether or not
the term's words are terms themselves.

numpy and the standard library only: Spark workers import this module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain, repeat
from typing import Any

import numpy as np

from bettercat_assets.core.features.text_terms import (
    RUN_PATTERN,
    WordMemo,
    as_text,
    remembered_ids,
)

#: a word and token that ends each document in a batch's text joined whole (one `findall` or
#: `split` of the batch instead of one per document); unused where a document contains it
SENTINEL = "zzbettercatdocumentendzz"
_SEPARATOR = f"\n{SENTINEL}\n"


class BatchTexts:
    """A batch's text columns as `as_text` makes them, lower-cased on request, and joined
    whole, each ended by `SENTINEL` (None where a document contains it); each made once (a
    column's word and `char_wb` blocks share them)."""

    def __init__(self, columns: dict[str, Any]) -> None:
        self.columns = columns
        self.made: dict[tuple[str, bool], list[str]] = {}
        self.whole: dict[tuple[str, bool], str | None] = {}

    def get(self, column: str, lower: bool = False) -> list[str]:
        if (column, lower) not in self.made:
            text = self.get(column) if lower else as_text(self.columns[column])
            self.made[column, lower] = list(map(str.lower, text)) if lower else text
        return self.made[column, lower]

    def joined(self, column: str, lower: bool) -> str | None:
        if (column, lower) not in self.whole:
            docs = self.get(column, lower)
            text = _SEPARATOR.join(docs) + _SEPARATOR
            self.whole[column, lower] = text if text.count(SENTINEL) == len(docs) else None
        return self.whole[column, lower]


def _ends_at(numbers: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(numbers but the documents' ends, numbers per document) of numbers of a batch joined
    whole, where `end` marks each document's end."""
    per_doc = np.diff(np.flatnonzero(end), prepend=-1) - 1
    return numbers[~end], per_doc


class WordTrie:
    """A word vocabulary's terms as paths of token numbers (module docstring): `number` of
    each token (`SENTINEL`: -2), node t + 1 for token t, the other edges `node << 32 | token`
    sorted with their child nodes, and per node the term ending there (-1: none)."""

    def __init__(self, vocabulary: dict[str, int]) -> None:
        parts = {term: term.split(" ") for term in vocabulary}
        self.number: dict[str, int] = {}
        for tokens in parts.values():
            for token in tokens:
                self.number.setdefault(token, len(self.number))
        node_term = [-1] * (len(self.number) + 1)
        edges: dict[int, int] = {}
        for term, tokens in parts.items():
            node = self.number[tokens[0]] + 1
            for token in tokens[1:]:
                key = node << 32 | self.number[token]
                if key not in edges:
                    edges[key] = len(node_term)
                    node_term.append(-1)
                node = edges[key]
            node_term[node] = vocabulary[term]
        self.edge_keys = np.fromiter(sorted(edges), np.int64, len(edges))
        self.edge_child = np.fromiter(map(edges.__getitem__, self.edge_keys.tolist()), np.int64)
        self.node_term = np.asarray(node_term, dtype=np.int64)
        self.joins = self.number.setdefault(SENTINEL, -2) == -2  # not a token of a term

    def tokens(self, docs: Sequence[str], joined: str | None) -> tuple[np.ndarray, np.ndarray]:
        """(token numbers end to end, -1 for a token in no term; tokens per document) of
        already lower-cased (where the block does) documents, or of them `joined`."""
        if joined is not None and self.joins:
            found = map(self.number.get, RUN_PATTERN.findall(joined), repeat(-1))
            numbers = np.fromiter(found, np.int64)
            return _ends_at(numbers, numbers == -2)
        token_lists = list(map(RUN_PATTERN.findall, docs))
        per_doc = np.fromiter(map(len, token_lists), np.int64, len(token_lists))
        found = map(self.number.get, chain.from_iterable(token_lists), repeat(-1))
        return np.fromiter(found, np.int64, int(per_doc.sum())), per_doc


def word_keys(
    docs: Sequence[str],
    joined: str | None,
    trie: WordTrie,
    ngram_range: tuple[int, int],
    layout: tuple[int, int, np.dtype],
    kernel: Callable[..., int],
) -> np.ndarray:
    """The keys of the word n-grams of `docs` (lower-cased where the block does; `joined`:
    `BatchTexts.joined` of them) in the vocabulary of `trie`; `layout`: (shift, the block's
    first column, keys' dtype)."""
    shift, offset, dtype = layout
    tokens, per_doc = trie.tokens(docs, joined)
    out = np.empty(tokens.size * (ngram_range[1] - ngram_range[0] + 1), dtype)
    count = kernel(
        tokens, per_doc, trie.edge_keys, trie.edge_child, trie.node_term, *ngram_range,
        shift, offset, out,
    )  # fmt: skip
    return out[:count]


def char_wb_keys(
    docs: Sequence[str],
    joined: str | None,
    ngram_range: tuple[int, int],
    vocabulary: dict[str, int],
    memo: WordMemo,
    layout: tuple[int, int, np.dtype],
    kernel: Callable[..., int],
) -> np.ndarray:
    """The keys of the `char_wb` terms of `docs` (lower-cased where the block does; `joined`:
    `BatchTexts.joined` of them), the words' ids remembered in `memo`; `layout`: (shift, the
    block's first column, dtype)."""
    shift, offset, dtype = layout
    if joined is not None:
        words, per_doc = joined.split(), None
    else:
        doc_words = list(map(str.split, docs))
        per_doc = np.fromiter(map(len, doc_words), np.int64, len(doc_words))
        words = list(chain.from_iterable(doc_words))

    def expand(numbers, starts, lengths, ids) -> np.ndarray:
        numbers, per = _ends_at(numbers, numbers < 0) if per_doc is None else (numbers, per_doc)
        out = np.empty(int(lengths[numbers].sum()), dtype)
        count = kernel(numbers, per, starts, lengths, ids, shift, offset, out)
        return out[:count]

    skip = SENTINEL if per_doc is None else None  # else a word of a text, like any other
    return remembered_ids(words, ngram_range, vocabulary, memo, expand, skip)


def category_keys(
    values: Sequence[str], vocabulary: dict[str, int], layout: tuple[int, int, np.dtype]
) -> np.ndarray:
    """The keys of a categorical block's values (an unseen value has none)."""
    shift, offset, dtype = layout
    ids = np.fromiter(map(vocabulary.get, values, repeat(-1)), np.int64, len(values))
    rows = np.flatnonzero(ids >= 0)
    return ((rows << shift) + (ids[rows] + offset)).astype(dtype)
