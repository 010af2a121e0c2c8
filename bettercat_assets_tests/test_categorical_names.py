"""A categorical column of mostly unique values (a package or model name, an id) is also read
as text: its one-hot columns would each describe one training product and never help again."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bettercat_assets.core.config.feature_specs import FeatureSpec
from bettercat_assets.core.features.fit import mostly_unique
from bettercat_assets.core.model.scoring_model import ScoringModel
from bettercat_assets.core.training.fitting import fit_client_model
from bettercat_assets_tests.test_features import client

KINDS = ["python3", "libfoo", "fonts", "golang", "texlive", "ruby"]
SPECS = (
    FeatureSpec(name="price"),
    FeatureSpec(name="title", kind="text"),
    FeatureSpec(name="name", kind="categorical"),
    FeatureSpec(name="brand", kind="categorical"),
)


def catalogue(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The category shows only in the product's (unique) name, never in its title."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(KINDS), n)
    frame = pd.DataFrame(
        {
            "price": rng.normal(10, 3, n),
            "title": [" ".join(rng.choice(["tool", "pack", "set", "Ünï"], 3)) for _ in y],
            "name": [f"{KINDS[k]}-{rng.integers(10**6)}-{i}" for i, k in enumerate(y)],
            "brand": rng.choice(["acme", "zeta"], n),
        }
    )
    frame.loc[::17, "name"] = None  # missing names: the empty text, as for text columns
    return frame, np.array([f"cat-{k}" for k in y])


def test_mostly_unique_means_more_than_half_the_products_have_a_value_of_their_own():
    assert mostly_unique([f"pkg-{i}" for i in range(10)])
    assert mostly_unique(["a", "a"] + [f"pkg-{i}" for i in range(3)])  # 3 of 5
    assert not mostly_unique(["a", "a", "b", "b"] + [f"pkg-{i}" for i in range(4)])  # 4 of 8
    assert not mostly_unique(["acme", "zeta"] * 50) and not mostly_unique([])


@pytest.mark.parametrize("kind", ["random_forest", "linear"])
def test_a_mostly_unique_categorical_column_is_read_as_text_too(kind, tmp_path):
    frame, y = catalogue(900, seed=3)
    fitted = fit_client_model(client(kind, SPECS), frame.iloc[:700], y[:700])
    blocks = [
        (b["column"], b["kind"], b.get("analyzer"))
        for b in fitted.compact.featurizer.spec["blocks"]
    ]
    assert ("name", "categorical", None) in blocks and ("brand", "categorical", None) in blocks
    assert {("name", "text", "word"), ("name", "text", "char_wb")} <= set(blocks)
    assert not any(column == "brand" and k == "text" for column, k, _ in blocks)

    test = frame.iloc[700:]  # names never seen in training
    fitted.compact.save(tmp_path)
    loaded = ScoringModel.load(tmp_path)
    assert loaded.feature_kinds["name"] == "categorical"
    columns = {c: test[c].to_numpy(dtype=object) for c in ("title", "name", "brand")}
    columns["price"] = test["price"].to_numpy(dtype=np.float64)
    proba = loaded.predict_proba(columns)
    assert np.abs(proba - fitted.predict_proba(test)).max() <= 1e-6
    top1 = loaded.classes_[proba.argmax(axis=1)]
    assert (top1 == y[700:]).mean() > 0.85  # read from the names' words and n-grams
