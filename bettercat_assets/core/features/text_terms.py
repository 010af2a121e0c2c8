"""Text to TF-IDF rows, exactly as scikit-learn's `TfidfVectorizer` computes them.

Runs in Spark workers and the serving process: numpy and the standard library only (no numba:
importing it costs a worker ~50 MB). What makes the reproduction exact:

* tokens come from Python's `re` with scikit-learn's default pattern `(?u)\\b\\w\\w+\\b`,
  whose `\\w` is Unicode (Arrow's RE2 `\\w` is ASCII only, so Arrow is not used here);
  lower-casing is `str.lower`;
* `char_wb` n-grams pad each whitespace-separated word with one space on both sides and count
  a word shorter than n once;
* a row's L2 norm is summed sequentially over its terms in column order, in float64, as
  scikit-learn's `inplace_csr_row_normalize_l2` does (numpy's pairwise sums round otherwise).
"""

from __future__ import annotations

import re
import threading
from array import array
from collections.abc import Callable, Sequence
from itertools import chain, compress, repeat
from typing import Any, TypeVar

import numpy as np

TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")
#: `TOKEN_PATTERN`'s matches under `findall`, a quarter faster: a run of two or more word
#: characters is always matched whole (`findall` resumes after a match or after one lone word
#: character, so never inside a run), hence its `\b`s test nothing
RUN_PATTERN = re.compile(r"(?u)\w\w+")
_WHITE_SPACES = re.compile(r"\s\s+")
T = TypeVar("T")


def as_text(values: Any) -> list[str]:
    """Text cells as str; None and NaN (missing) are the empty text."""
    return [v if isinstance(v, str) else "" if v is None or v != v else str(v) for v in values]


def word_analyzer(ngram_range: tuple[int, int], lowercase: bool) -> Callable[[str], list[str]]:
    """scikit-learn's `analyzer="word"` with the default token pattern and no stop words."""
    min_n, max_n = ngram_range

    def analyze(doc: str) -> list[str]:
        tokens = TOKEN_PATTERN.findall(doc.lower() if lowercase else doc)
        if max_n == 1:
            return tokens
        grams = list(tokens) if min_n == 1 else []
        first = max(min_n, 2)
        for n in range(first, min(max_n + 1, len(tokens) + 1)):
            grams.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        return grams

    return analyze


def char_wb_analyzer(ngram_range: tuple[int, int], lowercase: bool) -> Callable[[str], list[str]]:
    """scikit-learn's `analyzer="char_wb"`: character n-grams inside space-padded words."""
    min_n, max_n = ngram_range

    def analyze(doc: str) -> list[str]:
        text = _WHITE_SPACES.sub(" ", doc.lower() if lowercase else doc)
        grams: list[str] = []
        for word in text.split():
            w = " " + word + " "
            w_len = len(w)
            for n in range(min_n, max_n + 1):
                if w_len <= n:  # a short word is counted once, whole
                    grams.append(w)
                    break
                grams.extend(w[i : i + n] for i in range(w_len - n + 1))
        return grams

    return analyze


def analyzer(
    kind: str, ngram_range: tuple[int, int], lowercase: bool
) -> Callable[[str], list[str]]:
    """The analyzer for `kind` ("word" or "char_wb")."""
    if kind == "word":
        return word_analyzer(ngram_range, lowercase)
    if kind == "char_wb":
        return char_wb_analyzer(ngram_range, lowercase)
    raise ValueError(f"unknown analyzer {kind!r}")


def term_ids(
    docs: Sequence[str], analyze: Callable[[str], list[str]], vocabulary: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every in-vocabulary term occurrence; unknown terms are dropped.

    The documents' terms are looked up all at once (`map` with a default: no Python-level
    step per term)."""
    terms: list[str] = []
    lengths = np.empty(len(docs), dtype=np.int64)
    for i, doc in enumerate(docs):
        grams = analyze(doc)
        lengths[i] = len(grams)
        terms.extend(grams)
    ids = np.fromiter(map(vocabulary.get, terms, repeat(-1)), np.int64, len(terms))
    rows = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)
    known = ids >= 0
    return rows[known], ids[known]


def word_term_ids(
    docs: Sequence[str], ngram_range: tuple[int, int], lowercase: bool, vocabulary: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """`term_ids` with `word_analyzer`, for all documents at once: the n-grams of n words are
    made over the documents' tokens laid end to end (`map`s, no Python-level step per term)
    and those that straddle two documents are dropped."""
    token_lists = list(map(TOKEN_PATTERN.findall, map(str.lower, docs) if lowercase else docs))
    tokens = list(chain.from_iterable(token_lists))
    per_doc = np.fromiter(map(len, token_lists), np.int64, len(token_lists))
    doc_of = np.repeat(np.arange(len(docs), dtype=np.int64), per_doc)
    rows, columns = [], []
    for n in range(ngram_range[0], ngram_range[1] + 1):
        if n > len(tokens):
            break
        grams = (
            map(" ".join, zip(*(tokens[k:] for k in range(n)), strict=False)) if n > 1 else tokens
        )
        ids = np.fromiter(map(vocabulary.get, grams, repeat(-1)), np.int64, len(tokens) - n + 1)
        same_doc = doc_of[: ids.size] == doc_of[n - 1 :]
        keep = np.flatnonzero(same_doc & (ids >= 0))
        rows.append(doc_of[keep])
        columns.append(ids[keep])
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(columns)


#: words remembered per vocabulary by `char_wb_term_ids` before the memo starts over
WORD_MEMO_SIZE = 50_000


class WordMemo:
    """The in-vocabulary `char_wb` ids of the words seen so far: word -> its number, and per
    number where its ids start in one flat array and how many there are. A lock keeps a
    server's threads from growing it at the same time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        self.number: dict[str, int] = {}
        self.ids = array("i")
        self.starts = array("q")
        self.lengths = array("q")

    def add(
        self,
        words: set[str],
        grams_of: Callable[[str], list[str]],
        lookup: Callable[[str], int | None],
    ) -> None:
        """Remember the in-vocabulary ids of each of `words` (new ones)."""
        for word in words:
            found = [j for j in map(lookup, grams_of(word)) if j is not None]
            self.number[word] = len(self.starts)
            self.starts.append(len(self.ids))
            self.lengths.append(len(found))
            self.ids.extend(found)

    def __len__(self) -> int:
        return len(self.number)


def expand_memo_ids(
    per_doc: np.ndarray,
) -> Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """`remembered_ids`'s `expand` of numpy: (row, column) of the remembered ids of the words
    (`per_doc` words per document)."""

    def expand(numbers, starts, lengths, ids) -> tuple[np.ndarray, np.ndarray]:
        per_word = lengths[numbers]
        ends = np.cumsum(per_word)
        positions = np.repeat(starts[numbers] - (ends - per_word), per_word)
        positions += np.arange(positions.size)
        doc_of_word = np.repeat(np.arange(per_doc.size, dtype=np.int64), per_doc)
        return np.repeat(doc_of_word, per_word), ids[positions].astype(np.int64)

    return expand


def remembered_ids(
    words: list[str],
    ngram_range: tuple[int, int],
    vocabulary: dict[str, int],
    memo: WordMemo,
    expand: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], T],
    skip: str | None = None,
) -> T:
    """`expand(numbers, starts, lengths, ids)` of `words` (but `skip`, numbered -1) through
    `memo`: word w's in-vocabulary `char_wb` ids are `ids[starts[w]:starts[w] + lengths[w]]`.
    Under the memo's lock, which `expand` runs in too (the memo's arrays cannot grow while a
    view of them exists). The per-word steps are `map`s: no Python-level step per word; the
    words are looked up once, twice where some are new."""
    with memo.lock:
        if skip in memo.number:  # a text had it
            memo.clear()
        numbers = np.fromiter(map(memo.number.get, words, repeat(-1)), np.int64, len(words))
        unknown = numbers < 0
        if np.count_nonzero(unknown) > (words.count(skip) if skip is not None else 0):
            new = set(compress(words, unknown.tolist()))
            new.discard(skip)
            if len(memo) + len(new) > WORD_MEMO_SIZE:
                memo.clear()
                new = set(words) - {skip}
            memo.add(new, char_wb_analyzer(ngram_range, False), vocabulary.get)
            numbers = np.fromiter(map(memo.number.get, words, repeat(-1)), np.int64, len(words))
        starts = np.frombuffer(memo.starts, np.int64)
        lengths = np.frombuffer(memo.lengths, np.int64)
        try:
            return expand(numbers, starts, lengths, np.frombuffer(memo.ids, np.int32))
        finally:
            del starts, lengths  # the memo's arrays may grow again


def char_wb_term_ids(
    docs: Sequence[str],
    ngram_range: tuple[int, int],
    lowercase: bool,
    vocabulary: dict[str, int],
    memo: WordMemo,
) -> tuple[np.ndarray, np.ndarray]:
    """`term_ids` for `char_wb`, word by word: a word's n-grams depend on the word alone, so
    each distinct word is analysed once and its in-vocabulary ids are remembered in `memo`
    (`remembered_ids`), then gathered by numpy. The document is lower-cased whole first, as
    scikit-learn does (Greek final sigma)."""
    doc_words = list(map(str.split, map(str.lower, docs) if lowercase else docs))
    per_doc = np.fromiter(map(len, doc_words), np.int64, len(doc_words))
    words = list(chain.from_iterable(doc_words))
    return remembered_ids(words, ngram_range, vocabulary, memo, expand_memo_ids(per_doc))


def row_norms(row_starts: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Sequential float64 sum of squares per row (scikit-learn's order), then sqrt.

    numpy's sums are pairwise; here step k adds every row's k-th square at once, rows in
    order of decreasing length so that the rows still going are a prefix."""
    lengths = np.diff(row_starts)
    order = np.argsort(-lengths, kind="stable")
    starts = row_starts[:-1][order]
    going = np.searchsorted(-lengths[order], -np.arange(int(lengths.max(initial=0))), "left")
    squares = data * data
    totals = np.zeros(lengths.size, dtype=np.float64)
    for k, n in enumerate(going.tolist()):
        totals[:n] += squares[starts[:n] + k]
    norms = np.empty_like(totals)
    norms[order] = np.sqrt(totals)
    return norms


def key_layout(n_rows: int, size: int) -> tuple[int, np.dtype]:
    """(shift, dtype) of the keys `row << shift | column` of `n_rows` rows and `size` columns:
    32 bits when they fit (numpy sorts those about twice as fast), else 64."""
    shift = max(1, (size - 1).bit_length())
    wide = shift >= 31 or (max(n_rows, 1) - 1) >> (31 - shift)
    return shift, np.dtype(np.int64 if wide else np.int32)


def _unique_terms(
    rows: np.ndarray, columns: np.ndarray, n_rows: int, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, count) of each distinct term of each row, sorted by row then column.

    A term is one integer (`key_layout`), split again by shift and mask, not division."""
    shift, layout_dtype = key_layout(n_rows, size)
    dtype = layout_dtype.type
    keys = (rows.astype(dtype) << dtype(shift)) | columns.astype(dtype)
    keys, counts = np.unique(keys, return_counts=True)
    keys = keys.astype(np.int64)
    return keys >> shift, keys & ((1 << shift) - 1), counts


def tfidf_rows(
    rows: np.ndarray,
    columns: np.ndarray,
    n_rows: int,
    idf: np.ndarray,
    sublinear_tf: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, value) of the L2-normalised TF-IDF terms, sorted by row then column."""
    out_rows, out_cols, counts = _unique_terms(rows, columns, n_rows, max(int(idf.size), 1))
    data = counts.astype(np.float64)
    if sublinear_tf:
        np.log(data, data)
        data += 1.0
    data *= idf[out_cols]
    row_starts = np.searchsorted(out_rows, np.arange(n_rows + 1, dtype=np.int64))
    norms = row_norms(row_starts, data)
    per_value = np.repeat(norms, np.diff(row_starts))
    data /= np.where(per_value == 0.0, 1.0, per_value)
    return out_rows, out_cols, data
