"""Footprint and speed of CompactForest versus sklearn's RandomForestClassifier.

The case from the memory investigation: 50k training rows, 20 features, 100 classes,
n_estimators=100, min_samples_leaf=5, max_features="sqrt". Synthetic data with real signal:
one prototype per class plus Gaussian noise, Zipf-ish class frequencies.

    python -m bench.compact_footprint [--train 50000] [--test 10000] [--trees 100]
"""

from __future__ import annotations

import argparse
import pickle
import time

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from bettercat_assets.core.model import compact_forest
from bettercat_assets.core.model.forest_conversion import compact_from_sklearn


def make_data(n_rows: int, n_features: int, n_classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(scale=1.0, size=(n_classes, n_features))
    freq = 1.0 / np.arange(1, n_classes + 1) ** 0.8  # Zipf-ish
    freq /= freq.sum()
    y = rng.choice(n_classes, size=n_rows, p=freq)
    X = prototypes[y] + rng.normal(scale=2.0, size=(n_rows, n_features))
    labels = np.array([f"cat_{i:03d}" for i in range(n_classes)])
    return X, labels[y]


def top_k_accuracy(proba: np.ndarray, classes: np.ndarray, y: np.ndarray, k: int = 5) -> float:
    top = np.argsort(-proba, axis=1)[:, :k]
    return float(np.mean((classes[top] == y[:, None]).any(axis=1)))


def rows_per_second(fn, X: np.ndarray, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(X)
        best = min(best, time.perf_counter() - t0)
    return X.shape[0] / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--trees", type=int, default=100)
    args = parser.parse_args()

    X, y = make_data(args.train + args.test, args.features, args.classes)
    X_train, y_train = X[: args.train], y[: args.train]
    X_test, y_test = X[args.train :], y[args.train :]

    t0 = time.perf_counter()
    forest = RandomForestClassifier(
        n_estimators=args.trees,
        min_samples_leaf=5,
        max_features="sqrt",
        n_jobs=-1,
        random_state=0,
    ).fit(X_train, y_train)
    fit_s = time.perf_counter() - t0
    forest.set_params(n_jobs=1)

    t0 = time.perf_counter()
    compact = compact_from_sklearn(forest)
    convert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compact.predict_proba(X_test[:10])  # first call: numba compile or cache load
    first_call_s = time.perf_counter() - t0

    pickled = len(pickle.dumps(forest, protocol=pickle.HIGHEST_PROTOCOL))
    p_sk = forest.predict_proba(X_test)
    p_cf = compact.predict_proba(X_test)
    backend = "numba" if compact_forest.HAVE_NUMBA else "numpy"

    print(
        f"case: {args.train} train rows, {args.test} test rows, {args.features} features, "
        f"{args.classes} classes, {args.trees} trees, min_samples_leaf=5, max_features=sqrt"
    )
    print(f"fit (n_jobs=-1): {fit_s:.1f} s; from_sklearn: {convert_s:.2f} s")
    print(f"compact: {compact}")
    print(f"sklearn pickled size:     {pickled / 1e6:10.1f} MB")
    print(f"compact nbytes:           {compact.nbytes / 1e6:10.1f} MB")
    print(f"top-5 accuracy sklearn:   {top_k_accuracy(p_sk, forest.classes_, y_test):.4f}")
    print(f"top-5 accuracy compact:   {top_k_accuracy(p_cf, compact.classes_, y_test):.4f}")
    print(f"max |proba diff|:         {np.abs(p_sk - p_cf).max():.3e}")
    sk_rate = rows_per_second(forest.predict_proba, X_test)
    cf_rate = rows_per_second(compact.predict_proba, X_test)
    print(f"predict_proba sklearn (n_jobs=1):            {sk_rate:12,.0f} rows/s")
    print(f"predict_proba compact ({backend}, 1 thread):   {cf_rate:12,.0f} rows/s")
    if backend == "numba":
        np_rate = rows_per_second(lambda X: compact.predict_proba(X, backend="numpy"), X_test)
        print(f"predict_proba compact (numpy fallback):      {np_rate:12,.0f} rows/s")
    print(f"compact first call (compile/cache load): {first_call_s:.2f} s")


if __name__ == "__main__":
    main()
