"""The pickle-free featurizer and compact models reproduce scikit-learn exactly on sparse text
features (unicode, empty and missing text, unseen categories, missing numbers)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer

from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.config.feature_specs import FeatureSpec, ModelChoice, TextSettings
from bettercat_assets.core.features import featurizer as featurizer_module
from bettercat_assets.core.features import term_keys, text_kernels, text_terms
from bettercat_assets.core.features.featurizer import ARRAYS_FILE, META_FILE, Featurizer
from bettercat_assets.core.features.term_keys import (
    SENTINEL,
    BatchTexts,
    WordTrie,
    char_wb_keys,
    word_keys,
)
from bettercat_assets.core.features.text_terms import (
    WordMemo,
    char_wb_analyzer,
    char_wb_term_ids,
    row_norms,
    term_ids,
    word_analyzer,
    word_term_ids,
)
from bettercat_assets.core.model import forest_kernel_aot
from bettercat_assets.core.model.compact_forest import CompactForest
from bettercat_assets.core.model.scoring_model import ScoringModel
from bettercat_assets.core.model.sparse_forest import sparse_predict_proba
from bettercat_assets.core.model.sparse_kernels import PURE_LIMIT, SPARSE_KERNELS
from bettercat_assets.core.training.fitting import fit_client_model

WORDS = [
    "red",
    "blue",
    "steel",
    "café",
    "naïve",
    "ΣΊΣΥΦΟΣ",
    "日本語",
    "İstanbul",
    "straße",
    "x",
    "y",
]
SPECS = (
    FeatureSpec(name="price"),
    FeatureSpec(name="title", kind="text"),
    FeatureSpec(name="brand", kind="categorical"),
)
ODD_TEXTS = ["", "  lead   trail  ", "a\tb\nc d", "Ǆungla İstanbul ß", "日本語テキスト", "x", "ab"]


def catalogue(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 8, n)
    titles = [" ".join(rng.choice(WORDS, rng.integers(0, 5))) + f" kind{k}" for k in y]
    frame = pd.DataFrame(
        {
            "price": np.where(rng.random(n) < 0.1, np.nan, rng.normal(10, 3, n) + y),
            "title": [t if rng.random() > 0.1 else "" for t in titles],
            "brand": [str(rng.choice(["acme", "zeta", "Ünï", ""])) for _ in y],
        }
    )
    return frame, np.array([f"cat-{k}" for k in y])


def client(kind: str, specs: tuple[FeatureSpec, ...] = SPECS) -> ClientConfig:
    return ClientConfig(
        client_id="shop",
        features=tuple(s.name for s in specs),
        feature_specs=specs,
        model_params={"n_estimators": 12, "min_samples_leaf": 1, "random_state": 0},
        top_k=5,
        test_size=0.2,
        quality_gate={},
        data_checks={},
        sample_data={},
        text=TextSettings(min_df=1),
        model=ModelChoice(kind=kind),
    )


def unusual_rows() -> pd.DataFrame:
    """Unicode, empty and missing text, unseen and missing categories, missing numbers."""
    n = len(ODD_TEXTS)
    return pd.DataFrame(
        {
            "price": [np.nan, 3.0, 1e6, -5.0, np.nan, 0.0, 12.5][:n],
            "title": [None, *ODD_TEXTS[1:]],
            "brand": ["never-seen", None, "acme", "", "Ünï", "zeta", "ZETA"][:n],
        }
    )


@pytest.mark.parametrize("ngrams", [(1, 1), (1, 2), (2, 3)])
def test_analyzers_equal_scikit_learns(ngrams):
    docs = ODD_TEXTS + [" ".join(WORDS), "Hello  World a b"]
    for analyzer, ours in (("word", word_analyzer), ("char_wb", char_wb_analyzer)):
        theirs = TfidfVectorizer(analyzer=analyzer, ngram_range=ngrams).build_analyzer()
        mine = ours(ngrams, True)
        for doc in docs:
            assert sorted(mine(doc)) == sorted(theirs(doc)), (analyzer, doc)


@pytest.mark.parametrize("ngrams", [(1, 1), (1, 2), (2, 3), (1, 4)])
def test_word_terms_of_all_documents_at_once_equal_the_analyzers(ngrams):
    docs = [*ODD_TEXTS, " ".join(WORDS), "Hello  World a b", "one", "", "two words"]
    terms = sorted({t for d in docs for t in word_analyzer(ngrams, True)(d)})
    vocabulary = {t: i for i, t in enumerate(terms) if i % 5 != 3}  # some terms unknown
    expected = term_ids(docs, word_analyzer(ngrams, True), vocabulary)
    rows, cols = word_term_ids(docs, ngrams, True, vocabulary)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == sorted(
        zip(expected[0].tolist(), expected[1].tolist(), strict=True)
    )


def _pairs(rows, cols):
    return sorted(zip(rows.tolist(), cols.tolist(), strict=True))


def _decoded(keys, shift, offset):
    keys = keys.astype(np.int64)
    return _pairs(keys >> shift, (keys & ((1 << shift) - 1)) - offset)


class _Counted:
    """A token pattern that counts its `findall` calls."""

    def __init__(self, pattern, calls):
        self.pattern, self.calls = pattern, calls

    def findall(self, text):
        self.calls.append(text)
        return self.pattern.findall(text)


def _batch(docs):
    """(documents lower-cased, them joined whole or None) as the featurizer passes them."""
    texts = BatchTexts({"text": np.array(docs, dtype=object)})
    return texts.get("text", lower=True), texts.joined("text", lower=True)


@pytest.mark.parametrize("keys", ["i4", "i8"])
@pytest.mark.parametrize("ngrams", [(1, 1), (1, 2), (2, 3), (1, 4)])
@pytest.mark.parametrize("sentinel", ["nowhere", "in a text", "a term"])
def test_word_keys_through_the_trie_equal_the_analyzer(monkeypatch, ngrams, keys, sentinel):
    """The compiled word kernel finds the analyzer's terms, also n-grams whose words are not
    terms themselves, and no n-gram longer or shorter than the range; from the batch's text
    joined whole, or document by document where the documents' end mark is in a text (then
    counted like any token) or a term."""
    kernels = text_kernels.compiled_text_kernels(keys)
    assert kernels is not None, "run make install"
    docs = [*ODD_TEXTS, " ".join(WORDS), "Hello  World a b", "one", "", "two words red blue"]
    docs += ["red blue steel café red blue", "blue red", "steel steel steel"]
    if sentinel == "in a text":
        docs.insert(3, f"red {SENTINEL.upper()} blue")
    analyze = word_analyzer((1, 5), True)
    terms = sorted({t for d in docs for t in analyze(d)} | {SENTINEL})
    unknown = {"red", "steel", "blue steel"}  # words and a bigram of longer known terms
    unknown |= {SENTINEL} if sentinel == "nowhere" else set()
    kept = [t for i, t in enumerate(terms) if (i % 5 != 3 or t == SENTINEL) and t not in unknown]
    vocabulary = {t: i for i, t in enumerate(kept)}
    assert {"red blue", "blue steel café"} <= set(vocabulary)
    assert (SENTINEL in vocabulary) == (sentinel != "nowhere")
    expected = term_ids(docs, word_analyzer(ngrams, True), vocabulary)
    lowered, joined = _batch(docs)
    assert (joined is None) == (sentinel == "in a text")
    trie = WordTrie(vocabulary)
    calls = []
    monkeypatch.setattr(term_keys, "RUN_PATTERN", _Counted(term_keys.RUN_PATTERN, calls))
    found = word_keys(lowered, joined, trie, ngrams, (13, 7, np.dtype(keys)), kernels.word_keys)
    assert found.dtype == np.dtype(keys)
    assert _decoded(found, 13, 7) == _pairs(*expected)
    assert len(calls) == (1 if sentinel == "nowhere" else len(docs))  # the batch at once


def test_char_wb_keys_mark_the_documents_ends_with_a_word_never_remembered():
    """A text with the end mark is analysed document by document (the mark remembered as a
    word); the next batch, joined whole, starts the memo over and finds its documents' ends."""
    kernels = text_kernels.compiled_text_kernels("i8")
    assert kernels is not None, "run make install"
    batches = [[f"ab {SENTINEL.upper()}", "cd"], ["ab cd", "", "ef"], ["ef", "ab  ab"]]
    analyze = char_wb_analyzer((2, 4), True)
    terms = sorted({t for batch in batches for d in batch for t in analyze(d)})
    vocabulary = {t: i for i, t in enumerate(terms)}
    memo = WordMemo()
    for batch in batches:
        lowered, joined = _batch(batch)
        assert (joined is None) == (batch is batches[0])
        layout = (20, 3, np.dtype("i8"))
        keys = char_wb_keys(lowered, joined, (2, 4), vocabulary, memo, layout, kernels.memo_keys)
        assert _decoded(keys, 20, 3) == _pairs(*term_ids(batch, analyze, vocabulary))


def test_the_run_pattern_finds_the_token_patterns_tokens_in_any_unicode_text():
    """Every code point alone, beside a word character and doubled: the compiled path's
    faster pattern finds exactly scikit-learn's tokens."""
    points = (chr(i) for i in range(sys.maxunicode + 1) if not 0xD800 <= i < 0xE000)
    text = " ".join(f"{c}a{c} {c}" for c in points)
    assert text_terms.RUN_PATTERN.findall(text) == text_terms.TOKEN_PATTERN.findall(text)


@pytest.mark.parametrize(("n_rows", "size"), [(4096, 100_000), (3000, 2**21), (1, 1)])
def test_terms_counted_per_row_whether_their_keys_fit_32_bits_or_not(n_rows, size):
    rng = np.random.default_rng(n_rows)
    rows = rng.integers(0, n_rows, 5000)
    columns = np.minimum(rng.integers(0, 40, rows.size) * (size // 40 + 1), size - 1)
    keys, counts = np.unique(rows * size + columns, return_counts=True)
    out_rows, out_cols, out_counts = text_terms._unique_terms(rows, columns, n_rows, size)
    assert np.array_equal(out_rows * size + out_cols, keys)
    assert np.array_equal(out_counts, counts)


def test_char_wb_terms_through_a_memo_equal_the_analyzer(monkeypatch):
    """Batch after batch through one memo, which fills up and starts over: the same terms as
    the analyzer finds document by document."""
    monkeypatch.setattr(text_terms, "WORD_MEMO_SIZE", 12)
    docs = [*ODD_TEXTS, " ".join(WORDS), "Hello  World a b", "one", "", "two words"]
    analyze = char_wb_analyzer((2, 4), True)
    terms = sorted({t for d in docs for t in analyze(d)})
    vocabulary = {t: i for i, t in enumerate(terms) if i % 4 != 1}
    memo, compiled_memo = WordMemo(), WordMemo()
    kernels = text_kernels.compiled_text_kernels("i8")
    assert kernels is not None, "run make install"
    for start in range(0, len(docs), 3):
        batch = docs[start : start + 5]
        expected = _pairs(*term_ids(batch, analyze, vocabulary))
        assert _pairs(*char_wb_term_ids(batch, (2, 4), True, vocabulary, memo)) == expected
        assert len(memo) <= max(12, len(set(" ".join(batch).lower().split())))  # starts over
        for lowered, joined in (_batch(batch), (_batch(batch)[0], None)):  # compiled path's
            layout, kernel = (20, 3, np.dtype("i8")), kernels.memo_keys  # keys, its own memo
            keys = char_wb_keys(lowered, joined, (2, 4), vocabulary, compiled_memo, layout, kernel)
            assert _decoded(keys, 20, 3) == expected


@pytest.mark.parametrize("kind", ["random_forest", "linear"])
def test_compact_model_equals_the_fitted_scikit_learn_pipeline(kind, tmp_path):
    frame, y = catalogue(1200, seed=1)
    fitted = fit_client_model(client(kind), frame.iloc[:1000], y[:1000])
    test = pd.concat([frame.iloc[1000:], unusual_rows()], ignore_index=True)
    reference = fitted.predict_proba(test)
    # bit-identical features, as scikit-learn computes them
    ours = fitted.compact.featurizer.transform({c: test[c].to_numpy() for c in test})
    assert np.array_equal(ours.toarray(), fitted.features.transform(test).toarray())
    fitted.compact.save(tmp_path)
    loaded = ScoringModel.load(tmp_path)
    assert loaded.kind == kind and loaded.feature_kinds["title"] == "text"
    columns = {c: test[c].to_numpy(dtype=object) for c in ("title", "brand")}
    columns["price"] = test["price"].to_numpy(dtype=np.float64)
    for backend in ("numpy", "numba", "compiled"):
        proba = loaded.predict_proba(columns, backend=backend)
        assert np.abs(proba - reference).max() <= 1e-6, backend


def test_random_forest_without_text_keeps_native_missing_values():
    frame, y = catalogue(400, seed=2)
    numeric_only = client("random_forest").model_copy(
        update={"features": ("price",), "feature_specs": (FeatureSpec(name="price"),)}
    )
    fitted = fit_client_model(numeric_only, frame[["price"]], y)
    assert fitted.features is None and isinstance(fitted.estimator, RandomForestClassifier)
    assert fitted.compact.featurizer is None  # the forest reads the column, NaN included


def test_missing_numbers_become_the_median_and_an_indicator():
    frame, y = catalogue(400, seed=3)
    fitted = fit_client_model(client("random_forest"), frame, y)
    featurizer = fitted.compact.featurizer
    median = float(np.nanmedian(frame["price"]))
    rows = featurizer.transform({"price": np.array([np.nan]), "title": [""], "brand": [None]})
    dense = rows.toarray()[0]
    assert dense[0] == median and dense[1] == 1.0  # value, then its missing-indicator
    owners = featurizer.column_owners()
    assert dense[owners == 1].sum() == 0.0  # empty text sets nothing
    # a missing brand is the category "" (training had some), as OneHotEncoder has it
    assert dense[owners == 2].sum() == 1.0
    unseen = featurizer.transform({"price": np.array([1.0]), "title": ["zzz"], "brand": ["new"]})
    assert unseen.toarray()[0][owners == 2].sum() == 0.0  # an unseen brand sets no column


def _tamper(directory, how):
    if how == "arrays":
        data = bytearray((directory / ARRAYS_FILE).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (directory / ARRAYS_FILE).write_bytes(bytes(data))
    else:  # a changed description: n-gram range widened
        meta = json.loads((directory / META_FILE).read_text())
        meta["blocks"][-1]["ngram_range"] = [1, 6]
        (directory / META_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize("how", ["arrays", "description"])
def test_a_tampered_featurizer_is_refused(tmp_path, how):
    frame, y = catalogue(300, seed=4)
    fitted = fit_client_model(client("linear"), frame, y)
    fitted.compact.save(tmp_path)
    _tamper(tmp_path, how)
    with pytest.raises(ValueError, match="checksum"):
        Featurizer.load(tmp_path)
    with pytest.raises(ValueError, match="checksum"):
        ScoringModel.load(tmp_path)


def test_a_featurizer_with_pickled_arrays_is_refused(tmp_path):
    frame, y = catalogue(300, seed=5)
    featurizer = fit_client_model(client("linear"), frame, y).compact.featurizer
    featurizer.arrays["b0_terms"] = np.array([object()], dtype=object)
    with pytest.raises(ValueError):
        featurizer.save(tmp_path)
        Featurizer.load(tmp_path)


@pytest.mark.parametrize("estimator", ["sgd", "logistic"])
def test_compact_linear_links_equal_scikit_learn(estimator):
    from sklearn.linear_model import LogisticRegression, SGDClassifier

    from bettercat_assets.core.features.fit import fit_features
    from bettercat_assets.core.model.compact_linear import CompactLinear

    frame, y = catalogue(800, seed=6)
    features = fit_features(SPECS, frame.iloc[:600], TextSettings(min_df=1), scale_numeric=True)
    x_train, x_test = features.transform(frame.iloc[:600]), features.transform(frame.iloc[600:])
    if estimator == "sgd":
        model = SGDClassifier(loss="log_loss", alpha=1e-4, random_state=0).fit(x_train, y[:600])
        link = "ovr"
    else:
        model = LogisticRegression(C=5.0, max_iter=200).fit(x_train, y[:600])
        link = "softmax"
    compact = CompactLinear.from_coefficients(model.coef_, model.intercept_, model.classes_, link)
    rows = features.export().transform({c: frame.iloc[600:][c].to_numpy() for c in frame})
    assert np.abs(compact.predict_proba(rows) - model.predict_proba(x_test)).max() <= 1e-6


def test_large_batches_are_scored_in_chunks_with_the_same_result(monkeypatch):
    from bettercat_assets.core.model import scoring_model

    frame, y = catalogue(900, seed=7)
    model = fit_client_model(client("random_forest"), frame.iloc[:700], y[:700]).compact
    columns = {c: frame.iloc[700:][c].to_numpy() for c in frame}
    whole = model.predict_proba(columns)
    monkeypatch.setattr(scoring_model, "CHUNK_ROWS", 37)
    assert np.array_equal(model.predict_proba(columns), whole)


def test_row_norms_add_squares_in_order_like_scikit_learn():
    """numpy's own sums are pairwise and round differently; scikit-learn adds in column order."""
    rng = np.random.default_rng(3)
    lengths = rng.integers(0, 300, 500)
    lengths[[4, 9]] = [3000, 0]
    starts = np.concatenate([[0], np.cumsum(lengths)])
    data = rng.random(starts[-1]) * rng.choice([1e-3, 1.0, 1e3], starts[-1])
    expected = []
    for r in range(lengths.size):
        total = 0.0
        for v in data[starts[r] : starts[r + 1]].tolist():
            total += v * v
        expected.append(np.sqrt(total))
    assert np.array_equal(row_norms(starts, data), np.asarray(expected))


def test_packed_forest_keeps_its_arrays_and_dense_predictions(tmp_path):
    frame, y = catalogue(600, seed=4)
    model = fit_client_model(client("random_forest"), frame.iloc[:500], y[:500]).compact
    forest = model.estimator
    before = {name: arr.copy() for name, arr in forest.arrays().items()}
    rows = model.featurizer.transform({c: frame.iloc[500:][c].to_numpy() for c in frame})
    dense = forest.predict_proba(rows.toarray(np.float32))
    sparse = sparse_predict_proba(forest, rows)  # packs the nodes
    assert "feature" not in forest._arrays and forest.packed_nodes()[0].shape == (
        before["feature"].size,
        4,
    )
    for name, arr in forest.arrays().items():
        assert arr.dtype == before[name].dtype and np.array_equal(arr, before[name]), name
    assert np.array_equal(forest.predict_proba(rows.toarray(np.float32)), dense)
    assert np.abs(sparse - dense).max() <= 1e-12
    forest.save(tmp_path)
    assert np.array_equal(CompactForest.load(tmp_path).predict_proba(rows.toarray()), dense)


@pytest.mark.parametrize("min_samples_leaf", [1, 20])
def test_pure_leaves_are_read_from_their_references_and_mixed_ones_from_the_leaf_arrays(
    min_samples_leaf,
):
    """Leaves of one product are pure: the kernel takes their class from the child reference;
    larger leaves mix classes and are read from the leaf arrays. Both give the dense result."""
    frame, y = catalogue(800, seed=5)
    config = client("random_forest")
    config = config.model_copy(
        update={"model_params": config.model_params | {"min_samples_leaf": min_samples_leaf}}
    )
    model = fit_client_model(config, frame.iloc[:600], y[:600]).compact
    forest = model.estimator
    rows = model.featurizer.transform({c: frame.iloc[600:][c].to_numpy() for c in frame})
    dense = forest.predict_proba(rows.toarray(np.float32))
    sparse = sparse_predict_proba(forest, rows)
    nodes, _, _, class_mask = forest.packed_nodes()
    pure = nodes[:, 2:] < PURE_LIMIT
    assert class_mask == 7  # 8 classes: 3 bits
    mixed = (nodes[:, 2:] < 0) & ~pure
    assert pure.any() and mixed.any()  # both ways of reading a leaf are exercised
    assert np.abs(sparse - dense).max() <= 1e-12


def _add_one(x):  # pragma: no cover - compiled by numba
    return x + 1


def test_a_kernel_build_replaces_the_earlier_builds_of_the_same_kernels(tmp_path, monkeypatch):
    """Each source change of a kernel builds a new module; the earlier ones are removed, those
    of other kernels stay."""
    from bettercat_assets.core import aot_kernels

    monkeypatch.setattr(aot_kernels, "KERNEL_DIR", tmp_path)
    kernels = aot_kernels.KernelSet("bettercat_test_kernel", (("add_one", _add_one, "i8(i8)"),))
    stale = tmp_path / "bettercat_test_kernel_0123456789ab.so"
    other = tmp_path / "bettercat_other_kernel_0123456789ab.so"
    for path in (stale, other):
        path.write_bytes(b"")
    built = aot_kernels.build(kernels)
    assert built is not None and aot_kernels.compiled_module(kernels).add_one(41) == 42
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([built.name, other.name])


@pytest.mark.parametrize(
    ("kind", "kernel"),
    [("random_forest", "bettercat_sparse_kernel_"), ("linear", "bettercat_linear_kernel_")],
)
def test_install_built_the_sparse_kernels_and_text_scoring_imports_no_numba(tmp_path, kind, kernel):
    """A Spark worker scoring a text forest or linear model uses the kernels `make install`
    compiled, the featurizer's included: importing numba would cost it ~120 MB."""
    import subprocess

    from bettercat_assets.core.model.linear_kernels import LINEAR_KERNELS

    assert forest_kernel_aot.compiled_module(SPARSE_KERNELS) is not None, "run make install"
    assert forest_kernel_aot.compiled_module(LINEAR_KERNELS) is not None
    assert forest_kernel_aot.compiled_module(text_kernels.TEXT_KERNELS) is not None
    frame, y = catalogue(500, seed=5)
    fit_client_model(client(kind), frame.iloc[:400], y[:400]).compact.save(tmp_path)
    frame.iloc[400:].to_csv(tmp_path / "rows.csv", index=False)
    code = (
        "import sys, numpy as np, pandas as pd; from pathlib import Path; "
        "from bettercat_assets.core.model.scoring_model import ScoringModel; "
        f"d = Path({str(tmp_path)!r}); m = ScoringModel.load(d); "
        "f = pd.read_csv(d / 'rows.csv'); "
        "p = m.predict_proba({c: f[c].to_numpy() for c in m.feature_names}); "
        "print(p.shape[0], 'numba' in sys.modules, 'llvmlite' in sys.modules, "
        "any(n.startswith('bettercat_text_kernel_') for n in sys.modules), "
        f"any(n.startswith({kernel!r}) for n in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["100", "False", "False", "True", "True"], out.stdout


def _odd_terms_rows(n: int) -> pd.DataFrame:
    """Unicode, empty and missing text, terms repeated in a row (more often than the kernel's
    table of `log(count) + 1`), rows with no known term, then many ordinary rows."""
    frame, _ = catalogue(n, seed=11)
    odd = pd.DataFrame(
        {
            "price": [1.0, np.nan, 0.0, 2.0, 3.0, 4.0],
            "title": ["red red red blue red", "zzqq wwxx", None, "", "naïve " * 5000, "ΣΊΣΥΦΟΣ"],
            "brand": ["acme", None, "nope", "", "zeta", "Ünï"],
        }
    )
    return pd.concat([unusual_rows(), odd, frame], ignore_index=True)


def _assert_same_rows(ours, theirs):
    assert ours.n_cols == theirs.n_cols
    assert np.array_equal(ours.indptr, theirs.indptr)
    assert ours.indices.dtype == theirs.indices.dtype == np.int32
    assert np.array_equal(ours.indices, theirs.indices)
    assert np.array_equal(ours.data, theirs.data)  # bit-identical, not merely close


@pytest.mark.parametrize("keys", ["i4", "i8"])
@pytest.mark.parametrize(("kind", "sublinear"), [("random_forest", True), ("linear", False)])
def test_compiled_rows_equal_the_numpy_path_and_scikit_learn(monkeypatch, keys, kind, sublinear):
    """The compiled kernel (keys of 32 or 64 bits) makes the numpy path's rows bit for bit,
    and scikit-learn's features."""
    assert text_kernels.compiled_text_kernels(keys) is not None, "run make install"
    layout = Featurizer._key_layout
    monkeypatch.setattr(
        Featurizer, "_key_layout", lambda self, n: (layout(self, n)[0], np.dtype(keys))
    )
    frame, y = catalogue(600, seed=10)
    settings = client(kind).model_copy(
        update={"text": TextSettings(min_df=1, sublinear_tf=sublinear)}
    )
    fitted = fit_client_model(settings, frame, y)
    test = _odd_terms_rows(3000)
    columns = {c: test[c].to_numpy() for c in test}
    compiled = fitted.compact.featurizer.transform(columns)
    _assert_same_rows(compiled, fitted.compact.featurizer.transform(columns, compiled=False))
    reference = fitted.features.transform(test)
    assert np.array_equal(compiled.toarray(), reference.toarray())  # as scikit-learn, exactly
    single = fitted.compact.featurizer.transform({c: v[4:6] for c, v in columns.items()})
    assert np.array_equal(single.toarray(), compiled.toarray()[4:6])
    empty = fitted.compact.featurizer.transform({c: v[:0] for c, v in columns.items()})
    assert empty.n_rows == 0 and empty.indptr.tolist() == [0] and empty.data.size == 0


def test_transform_uses_the_compiled_kernel_where_it_was_built(monkeypatch):
    frame, y = catalogue(300, seed=12)
    featurizer = fit_client_model(client("random_forest"), frame, y).compact.featurizer
    columns = {c: frame[c].to_numpy() for c in frame}

    def numpy_path(*args, **kwargs):
        raise AssertionError("the numpy path ran")

    monkeypatch.setattr(featurizer_module, "tfidf_rows", numpy_path)
    monkeypatch.setattr(Featurizer, "_terms", numpy_path)
    featurizer.transform(columns)  # the kernels: no numpy terms, no numpy tf-idf
    with pytest.raises(AssertionError, match="numpy path"):
        featurizer.transform(columns, compiled=False)


def test_without_the_compiled_kernel_the_numpy_path_equals_scikit_learn(monkeypatch):
    """Where `make install` built no kernel (no numba, no C compiler), numpy makes the rows."""
    monkeypatch.setattr(featurizer_module, "compiled_text_kernels", lambda keys: None)
    frame, y = catalogue(500, seed=13)
    fitted = fit_client_model(client("random_forest"), frame.iloc[:400], y[:400])
    test = _odd_terms_rows(200)
    ours = fitted.compact.featurizer.transform({c: test[c].to_numpy() for c in test})
    assert np.abs(ours.toarray() - fitted.features.transform(test).toarray()).max() <= 1e-12
