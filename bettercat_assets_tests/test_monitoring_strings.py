"""Text and categorical features in monitoring: a categorical's top values, a text's length and
vocabulary coverage (against the fitted featurizer's word vocabulary) are profiled at training
and counted at scoring; a changed brand mix, new words or longer titles warn naming the feature,
clean batches do not; the profile round-trips, and a profile made before these kinds still
loads and compares."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bettercat_assets.core.config.feature_specs import FeatureSpec, TextSettings
from bettercat_assets.core.config.monitoring import Monitoring
from bettercat_assets.core.data import generate_text
from bettercat_assets.core.features.fit import fit_features
from bettercat_assets.core.monitoring.drift import compare
from bettercat_assets.core.monitoring.reference import (
    PROFILE_FILE,
    ReferenceProfile,
    StringColumns,
    build_reference,
)
from bettercat_assets.core.monitoring.statistic import MonitorSpec, count_slice

K = 12
TRAIN, TEST, SMALL, LARGE = 6000, 2000, 300, 20_000
SPECS = (FeatureSpec(name="price"), FeatureSpec(name="title", kind="text"))
SPECS += (FeatureSpec(name="brand", kind="categorical"),)


def _titles(labels: np.ndarray, seed: int) -> list[str]:
    department_of = np.arange(K) % 3
    category_ids = np.array([f"shop/dept/item{i}-{i:03d}" for i in range(K)])
    return generate_text.titles(
        labels, department_of, category_ids, 1.0, np.random.default_rng(seed)
    )


@pytest.fixture(scope="module")
def catalogue():
    """One catalogue's products (training, test, then batches to score), a featurizer fitted on
    the training rows, and the reference profile."""
    rng = np.random.default_rng(21)
    n = TRAIN + TEST + 20 * SMALL + 2 * LARGE
    labels = rng.choice(K, size=n, p=np.arange(K, 0, -1) / np.arange(K, 0, -1).sum())
    frame = pd.DataFrame(
        {
            "price": np.round(np.exp(3.0 + 0.5 * rng.standard_normal(n) + 0.1 * labels), 2),
            "title": _titles(labels, 22),
            "brand": generate_text.brands(labels, K, 1.0, np.random.default_rng(23)),
        }
    )
    frame.loc[rng.random(n) < 0.02, "brand"] = ""
    proba = rng.dirichlet(np.full(K, 0.3), size=n)  # predictions unrelated to these inputs
    train, test = frame.iloc[:TRAIN], frame.iloc[TRAIN : TRAIN + TEST]
    featurizer = fit_features(SPECS, train, TextSettings(), scale_numeric=False).export()
    profile = build_reference(
        {"price": train["price"].to_numpy()},
        proba[TRAIN : TRAIN + TEST],
        [f"c{i}" for i in range(K)],
        np.array([f"c{i}" for i in labels[TRAIN : TRAIN + TEST]]),
        10,
        StringColumns(
            kinds={"title": "text", "brand": "categorical"},
            train={c: train[c].to_numpy() for c in ("title", "brand")},
            test={c: test[c].to_numpy() for c in ("title", "brand")},
            vocabulary=featurizer.word_vocabulary,
        ),
    )
    return (
        frame.iloc[TRAIN + TEST :],
        proba[TRAIN + TEST :],
        labels[TRAIN + TEST :],
        profile,
        featurizer,
    )


def _judge(catalogue, batch: pd.DataFrame, proba: np.ndarray):
    *_, profile, featurizer = catalogue
    state = count_slice(
        MonitorSpec.of(profile),
        batch[["price"]].to_numpy(dtype=np.float32),
        proba,
        {c: batch[c].to_numpy(dtype=object) for c in ("title", "brand")},
        featurizer.word_vocabulary,
    )
    return compare(profile, state, Monitoring())


def _batch(catalogue, size: int, number: int):
    frame, proba, labels, *_ = catalogue
    start = 20 * SMALL + (number - 20) * LARGE if size == LARGE else number * SMALL
    rows = slice(start, start + size)
    return frame.iloc[rows].reset_index(drop=True), proba[rows], labels[rows]


def test_the_profile_holds_each_kind(catalogue):
    profile = catalogue[3]
    kinds = {f.label: f.kind for f in profile.features}
    assert kinds == {
        "price": "numeric",
        "title.length": "text_length",
        "title.vocabulary": "text_vocabulary",
        "brand": "categorical",
    }
    brand = profile.features[-1]
    assert len(brand.values) == 10 and len(brand.counts) == 12 and brand.counts[-1] > 0


@pytest.mark.parametrize(("size", "batches"), [(SMALL, 20), (LARGE, 2)])
def test_clean_batches_do_not_warn_about_text_or_categories(catalogue, size, batches):
    first = 0 if size == SMALL else 20
    alarms = 0
    for number in range(first, first + batches):
        batch, proba, _ = _batch(catalogue, size, number)
        alarms += bool(_judge(catalogue, batch, proba).drifted_features)
    assert alarms <= (1 if batches > 2 else 0)


@pytest.mark.parametrize("size", [SMALL, LARGE])
@pytest.mark.parametrize("change", ["new brands", "new words", "longer titles"])
def test_a_changed_text_or_categorical_feature_warns_naming_it(catalogue, change, size):
    batch, proba, labels = _batch(catalogue, size, 0 if size == SMALL else 20)
    rng = np.random.default_rng(5)
    if change == "new brands":
        newcomers = rng.random(size) < 0.4
        batch.loc[newcomers, "brand"] = [f"Newbrand{i % 7}" for i in range(newcomers.sum())]
        expected = "brand"
    elif change == "new words":  # the same categories described with another vocabulary
        batch["title"] = _titles(labels, 99)
        expected = "title.vocabulary"
    else:  # the catalogue's own words, two titles' worth (coverage averages out, may warn)
        batch["title"] = batch["title"] + " " + batch["title"].iloc[::-1].to_numpy()
        expected = "title.length"
    drifted = _judge(catalogue, batch, proba).drifted_features
    assert drifted and drifted[0] == expected  # most drifted first; only that feature
    assert {name.split(".")[0] for name in drifted} == {expected.split(".")[0]}


def test_profile_with_text_and_categories_round_trips_and_refuses_an_edit(catalogue, tmp_path):
    profile = catalogue[3]
    path = profile.save(tmp_path)
    assert ReferenceProfile.load(path) == profile
    document = json.loads(path.read_text())
    document["body"]["features"][-1]["values"][0] = "Someone else"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="checksum"):
        ReferenceProfile.load(path)


def test_a_profile_made_before_text_and_categories_still_compares(catalogue, tmp_path):
    """A version registered earlier: numeric features only, no per-bin rates or shares."""
    from bettercat_assets.core.monitoring.reference import _canonical, _sha256

    profile = catalogue[3]
    document = json.loads(profile.save(tmp_path).read_text())
    body = document["body"]
    body["features"] = [
        {k: f[k] for k in ("name", "kind", "edges", "counts")}
        for f in body["features"]
        if f["kind"] == "numeric"
    ]
    for key in ("mass_edges", "mass_counts", "mass_rates", "label_shares"):
        del body["predictions"][key]
    document["body_sha256"] = _sha256(_canonical(body))
    (tmp_path / "old").mkdir()
    old_path = tmp_path / "old" / PROFILE_FILE
    old_path.write_text(json.dumps(document))
    old = ReferenceProfile.load(old_path)
    batch, proba, _ = _batch(catalogue, SMALL, 1)
    report = _judge((*catalogue[:3], old, catalogue[4]), batch, proba)
    assert [s.name for s in report.features] == ["price"]
    mass = np.sort(proba, axis=1)[:, -5:].sum(axis=1).mean()
    gap = old.predictions.top5_accuracy - old.predictions.mass_mean
    assert report.estimated_top5 == pytest.approx(mass + gap)


#: Characters that tell Python's word tokens apart from a naive reading: punctuation, `_`,
#: digits, letters and digits beyond ASCII, combining marks, symbols, and characters Python
#: lower-cases by context or into two characters (capital sigma, dotted capital I).
TRICKY = list("ab Z9_-.,'/ \t\n") + list("éÉßẞİıΣσςΊǅﬁ²٣日本\u0301\u200b€😀Ⱥ")


def _random_cells(rng: np.random.Generator, n: int) -> list[object]:
    out: list[object] = []
    for _ in range(n):
        draw = rng.random()
        if draw < 0.05:
            out.append(None if draw < 0.02 else "" if draw < 0.035 else float("nan"))
        else:
            out.append("".join(rng.choice(TRICKY, size=rng.integers(1, 14))))
    return out


@pytest.mark.parametrize("lowercase", [True, False])
def test_counting_on_the_bytes_gives_the_token_patterns_numbers(lowercase):
    """`word_measures` (pyarrow and numpy) equals the regular expression on every cell."""
    from bettercat_assets.core.monitoring import strings

    rng = np.random.default_rng(3)
    values = np.array(_random_cells(rng, 3000), dtype=object)
    texts = strings.cells(values)
    found = {w for t in texts if t for w in strings.TOKEN_PATTERN.findall(t.lower())}
    known = set(sorted(found)[::2]) | {"ab", "zz"}
    expected = strings.python_word_measures(texts, known, lowercase)
    for block in (7, strings.BLOCK_ROWS):  # blocks end inside the column, or not
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(strings, "BLOCK_ROWS", block)
            measured = strings.word_measures(values, known, lowercase)
        np.testing.assert_array_equal(measured[0], expected[0])
        np.testing.assert_array_equal(measured[1], expected[1])
    sliced = strings.word_measures(pd.Series(values).iloc[1000:1500], known, lowercase)
    np.testing.assert_array_equal(sliced[0], expected[0][1000:1500])
    no_vocabulary = strings.word_measures(values, None, lowercase)
    assert np.isnan(no_vocabulary[1]).all()


def test_cells_that_are_not_plain_text_are_counted_as_python_writes_them():
    """Numbers among the cells, text that is not UTF-8 (a lone surrogate) and a vocabulary
    that cannot be listed go through Python, with the same results."""
    from bettercat_assets.core.monitoring import strings

    class Words:  # a container without iteration
        def __contains__(self, word: object) -> bool:
            return word in {"12", "ab"}

    values = np.array([12, "ab cd", None, "x\ud800yz ab", 3.5, ""], dtype=object)
    nan = np.nan
    expected = ([1, 2, nan, 2, 0, nan], [1, 0.5, nan, 0.5, nan, nan])  # "3.5": no token
    for rows in ([0, 1, 2, 3, 4, 5], [0, 1], [1, 3], [1, 2, 5]):
        tokens, coverage = strings.word_measures(values[rows], Words())
        np.testing.assert_array_equal(tokens, np.array(expected[0])[rows])
        np.testing.assert_array_equal(coverage, np.array(expected[1])[rows])
    codes = strings.category_codes(values, {"ab cd": 0, "12": 1})
    assert codes.tolist() == [1, 0, 3, 2, 2, 3]


def test_categories_are_counted_as_the_values_are():
    from bettercat_assets.core.monitoring import strings

    rng = np.random.default_rng(4)
    pool = ["Acme", "acme", "Ünï", "b", "日本", "x y"]
    values = [pool[i] for i in rng.zipf(1.6, 5000) % len(pool)]
    values[::97] = [None] * len(values[::97])
    values[::89] = [""] * len(values[::89])
    seen: dict[str, int] = {}
    for v in values:
        if v:
            seen[v] = seen.get(v, 0) + 1
    ranked = sorted(seen.items(), key=lambda item: (-item[1], item[0]))
    assert strings.top_values(values, 3) == tuple(v for v, _ in ranked[:3])
    assert strings.top_values(values, 10) == tuple(v for v, _ in ranked)
    index = {v: i for i, v in enumerate(reversed(strings.top_values(values, 4)))}
    expected = [len(index) + 1 if not v else index.get(v, len(index)) for v in values]
    assert strings.category_codes(np.array(values, dtype=object), index).tolist() == expected
