"""Word tokens of text cells, counted on their UTF-8 bytes with pyarrow and numpy, exactly as
Python's `(?u)\\b\\w\\w+\\b` finds them in `text.lower()` (`core/monitoring/strings.py`).

Those tokens are the maximal runs of two or more word characters, a word character being one
Python's `str.isalnum()` accepts, or `_`. A column's bytes are cut where a cell starts and
where the bytes change from word to other characters (every byte of a character classed with
it); a run is a token when it holds more than its first character. Characters beyond ASCII are
classed by Python itself, once per process per character.

Lower-casing is pyarrow's, character by character; Python lower-cases a capital sigma by its
place in the word and a few characters differently, so the cells holding such a character are
left to the regular expression (`unsafe_cells`).

Runs in Spark's Python workers: numpy, pyarrow and the standard library only.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Python's word characters among the ASCII bytes.
ASCII_WORD = np.zeros(256, dtype=bool)
ASCII_WORD[list(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")] = True
#: Bytes per UTF-8 character by its first byte (0 for a continuation byte).
SEQUENCE = np.zeros(256, dtype=np.int8)
SEQUENCE[:0x80], SEQUENCE[0xC0:0xE0], SEQUENCE[0xE0:0xF0], SEQUENCE[0xF0:0xF8] = 1, 2, 3, 4
_LEAD_BITS = np.array([0, 0x7F, 0x1F, 0x0F, 0x07], dtype=np.int64)
#: Python lower-cases it by context (final sigma).
CAPITAL_SIGMA = 0x3A3
#: code point -> (a word character, pyarrow lower-cases it as Python does), as met
_CHARACTERS: dict[int, tuple[bool, bool]] = {}
#: Vocabularies as pyarrow value sets, by the id of the vocabulary (kept alive here).
_VALUE_SETS: dict[int, tuple[Container[str], pa.Array | None]] = {}


def text_array(values: Any, cells: Any) -> pa.StringArray | None:
    """`values` as a pyarrow string array, missing (None, NaN, empty) as null, cells that are
    not text as `cells(values)` writes them; None if they cannot be UTF-8."""
    try:
        try:
            array = pa.array(values, type=pa.string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            array = pa.array(cells(values), type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeError):
        return None
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return pc.if_else(pc.equal(array, ""), pa.scalar(None, pa.string()), array)


def _bytes(array: pa.StringArray) -> tuple[np.ndarray, np.ndarray, int]:
    """(offsets from the first cell's start, the cells' bytes, where they start in the data
    buffer) of a string array without nulls."""
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[array.offset :][: len(array) + 1]
    first = int(offsets[0])
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else None
    chars = data[first : offsets[-1]] if data is not None else np.zeros(0, dtype=np.uint8)
    return offsets.astype(np.int64) - first, chars, first


def _wide_characters(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first byte, byte count, code point) of every character beyond ASCII."""
    starts = np.flatnonzero(data >= 0xC0)  # the first bytes of longer characters
    lengths = SEQUENCE[data[starts]].astype(np.int64)
    points = data[starts].astype(np.int64) & _LEAD_BITS[lengths]
    for k in (1, 2, 3):
        more = lengths > k
        points[more] = (points[more] << 6) | (data[starts[more] + k] & 0x3F)
    return starts, lengths, points


def _classes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a word character, lower-cased as Python does) per code point."""
    distinct = np.sort(points)
    distinct = distinct[np.r_[True, distinct[1:] != distinct[:-1]]] if distinct.size else distinct
    new = [p for p in distinct.tolist() if p not in _CHARACTERS]
    if new:
        chars = [chr(p) for p in new]
        lowered = pc.utf8_lower(pa.array(chars, type=pa.string())).to_pylist()
        for p, char, low in zip(new, chars, lowered, strict=True):
            _CHARACTERS[p] = (char.isalnum(), char.lower() == low and p != CAPITAL_SIGMA)
    table = np.array([_CHARACTERS[p] for p in distinct.tolist()], dtype=bool).reshape(-1, 2)
    found = np.searchsorted(distinct, points)
    return table[found, 0], table[found, 1]


def unsafe_cells(array: pa.StringArray) -> np.ndarray:
    """The cells (of an array without nulls) that pyarrow lower-cases otherwise than Python."""
    offsets, data, _ = _bytes(array)
    starts, _, points = _wide_characters(data)
    if not starts.size:
        return np.zeros(0, dtype=np.int64)
    _, safe = _classes(points)
    cells = np.searchsorted(offsets, starts[~safe], side="right") - 1
    return np.flatnonzero(np.bincount(cells, minlength=len(array)))


def _word_bytes(data: np.ndarray) -> np.ndarray:
    """Per byte: it belongs to a word character."""
    word = ASCII_WORD[data]
    starts, lengths, points = _wide_characters(data)
    if starts.size:
        wide_word, _ = _classes(points)
        for k in range(4):
            more = lengths > k
            word[starts[more] + k] = wide_word[more]
    return word


def word_runs(array: pa.StringArray) -> tuple[pa.StringArray, np.ndarray, np.ndarray]:
    """The runs of word characters and of other characters of every cell (no nulls), in
    order: (runs, whether each is a token, its cell)."""
    offsets, data, first = _bytes(array)
    if not data.size:
        return pa.array([], type=pa.string()), np.zeros(0, bool), np.zeros(0, np.int64)
    word = _word_bytes(data)
    cut = np.zeros(data.size + 1, dtype=bool)
    cut[np.flatnonzero(word[1:] != word[:-1]) + 1] = True
    cut[offsets] = True
    cuts = np.flatnonzero(cut)
    starts = cuts[:-1]
    runs = pa.Array.from_buffers(
        pa.string(),
        starts.size,
        [None, pa.py_buffer((cuts + first).astype(np.int32)), array.buffers()[2]],
    )
    is_token = word[starts] & (np.diff(cuts) > SEQUENCE[data[starts]])
    first_runs = np.searchsorted(starts, offsets)  # each cell's first run (cells are few)
    return runs, is_token, np.repeat(np.arange(len(array)), np.diff(first_runs))


def _value_set(known: Container[str]) -> pa.Array | None:
    """A vocabulary as a pyarrow value set (None: it cannot be listed), made once per
    vocabulary object."""
    entry = _VALUE_SETS.get(id(known))
    if entry is None or entry[0] is not known:
        try:
            terms = pa.array(list(known), type=pa.string())  # type: ignore[call-overload]
        except (TypeError, pa.ArrowInvalid, pa.ArrowTypeError):
            terms = None
        if len(_VALUE_SETS) >= 16:
            _VALUE_SETS.clear()
        entry = _VALUE_SETS[id(known)] = (known, terms)
    return entry[1]


def known_tokens(runs: pa.StringArray, is_token: np.ndarray, known: Container[str]) -> np.ndarray:
    """Per run: a token the vocabulary knows."""
    value_set = _value_set(known)
    if value_set is None:
        hits = np.zeros(is_token.size, dtype=bool)
        hits[is_token] = [w in known for w in runs.filter(pa.array(is_token)).to_pylist()]
        return hits
    return is_token & pc.is_in(runs, value_set=value_set).to_numpy(zero_copy_only=False)
