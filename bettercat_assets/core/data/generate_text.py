"""Fake product titles and brands for `bettercat generate-data` (text and categorical features).

A title mixes words of the product's category (a handful of its own), of its department
(shared by sibling categories), common catalogue words shared by everyone, a size or pack
token, and noise: a share of words is replaced by a random word and some words carry a typo.
So the text is informative but not trivial: sibling categories share most of their words.
A brand is one of the category's few usual brands, or any brand; some are missing.

Drawn from a generator of its own (seed, client, "text"), so declaring a text feature never
changes the numeric columns of a client's files.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bettercat_assets.core.config.clients import ClientConfig

_CONSONANTS = list("bcdfghklmnprstvz") + ["ch", "sh", "tr", "br", "st"]
_VOWELS = list("aeiou") + ["ai", "ou", "ee"]
#: words every category uses (catalogue filler), some with non-ASCII letters
_COMMON = [
    "new",
    "premium",
    "classic",
    "pack",
    "set",
    "eco",
    "pro",
    "mini",
    "max",
    "plus",
    "deluxe",
    "original",
    "soft",
    "extra",
    "café",
    "grün",
    "naïve",
    "größe",
    "crème",
    "édition",
]
_SIZES = ("xs", "s", "m", "l", "xl", "100ml", "250ml", "500g", "1kg", "2pcs", "3pcs", "6pcs")


def _word(rng: np.random.Generator) -> str:
    syllables = rng.integers(2, 4)
    return "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))


def _vocabulary(rng: np.random.Generator, size: int) -> np.ndarray:
    return np.array(sorted({_word(rng) for _ in range(size * 2)})[:size], dtype=object)


def _typo(word: str, rng: np.random.Generator) -> str:
    if len(word) < 4:
        return word
    i = int(rng.integers(1, len(word) - 1))
    return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]


def titles(
    labels: np.ndarray,
    department_of: np.ndarray,
    category_ids: np.ndarray,
    noise: float,
    rng: np.random.Generator,
) -> list[str]:
    """One title per product (`labels` index the categories)."""
    k, n_departments = department_of.size, int(department_of.max()) + 1
    pool = _vocabulary(rng, 40 * n_departments + 8 * k + 200)
    department_words = [rng.choice(pool, 12, replace=False) for _ in range(n_departments)]
    own_words = [rng.choice(pool, 5, replace=False) for _ in range(k)]
    nouns = [str(c).rsplit("/", 1)[-1].split("-")[0] for c in category_ids]
    swap = min(0.6, 0.2 * noise)
    out = []
    for label in labels.tolist():
        words = list(rng.choice(own_words[label], int(rng.integers(1, 3))))
        words += list(rng.choice(department_words[department_of[label]], int(rng.integers(1, 4))))
        words += list(rng.choice(_COMMON, int(rng.integers(0, 3))))
        if rng.random() < 0.5:
            words.append(nouns[label] if rng.random() < 0.5 else str(rng.choice(nouns)))
        if rng.random() < 0.4:
            words.append(str(rng.choice(_SIZES)))
        words = [str(rng.choice(pool)) if rng.random() < swap else str(w) for w in words]
        words = [_typo(w, rng) if rng.random() < 0.05 * noise else w for w in words]
        rng.shuffle(words)
        title = " ".join(words)
        out.append(title.capitalize() if rng.random() < 0.5 else title)
    return out


def brands(labels: np.ndarray, k: int, noise: float, rng: np.random.Generator) -> list[str]:
    """One brand per product: usually one of its category's three brands."""
    pool = [w.capitalize() for w in _vocabulary(rng, max(20, k // 2))]
    usual = rng.integers(0, len(pool), size=(k, 3))
    anyone = rng.random(labels.size) < min(0.8, 0.3 * noise)
    picks = np.where(
        anyone,
        rng.integers(0, len(pool), size=labels.size),
        usual[labels, rng.integers(0, 3, size=labels.size)],
    )
    return [pool[i] for i in picks.tolist()]


def text_columns(
    client: ClientConfig,
    labels: np.ndarray,
    department_of: np.ndarray,
    category_ids: np.ndarray,
    rng_for: Callable[[str], np.random.Generator],
) -> dict[str, object]:
    """Titles for the client's text features and brands for its categorical ones, each from
    `rng_for(feature)`, with missing values as `sample_data.missing_share` says."""
    sample = client.sample_data
    columns: dict[str, object] = {}
    for spec in client.feature_specs:
        if spec.kind == "numeric":
            continue
        rng = rng_for(spec.name)
        if spec.kind == "text":
            values = titles(labels, department_of, category_ids, sample.noise, rng)
        else:
            values = brands(labels, department_of.size, sample.noise, rng)
        missing = rng.random(labels.size) < sample.missing_share
        columns[spec.name] = np.where(missing, "", np.asarray(values, dtype=object))
    return columns
