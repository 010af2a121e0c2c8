"""A real public catalogue available offline: Debian's package index as products.

Debian's `Packages` index (apt's lists, or any mirror's `dists/<suite>/main/binary-amd64/
Packages`) describes ~63k packages in ~58 sections. As a catalogue: product_id = package,
category_id = section, title = the one-line description, name = the package name,
maintainer = the maintainer, and a few numbers (sizes, dependency counts).

    python bench/debian_catalogue.py PACKAGES_FILE OUT_DIR

writes, for two clients (`debian_rf`: the default RandomForest; `debian_linear`:
`model: {kind: linear}`), OUT_DIR/train/client_id=<client>/data_train.csv.gz (80 %) and
OUT_DIR/prediction/client_id=<client>/data_predict.csv.gz (20 %, without labels), plus
OUT_DIR/labels.csv.gz (the held-out labels), split with a fixed seed, and OUT_DIR/clients.yaml
declaring the five numbers, `title` and `name` as text and `maintainer` as categorical,
`defaults` only. Then, in OUT_DIR:

    bettercat train --client-id debian_rf --data-prefix . && bettercat predict --client-id debian_rf --data-prefix .
    python bench/debian_catalogue.py --evaluate labels.csv.gz products_categories/client_id=debian_rf/date=<day>

prints the held-out top-5 and top-1 accuracy of the written predictions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

FIELDS = {
    "Package": "product_id",
    "Section": "category_id",
    "Description": "title",
    "Maintainer": "maintainer",
    "Installed-Size": "installed_size_kb",
    "Size": "size_bytes",
}


def parse_packages(path: Path) -> pd.DataFrame:
    """One row per package stanza; numbers as floats."""
    rows, current = [], {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                if current:
                    rows.append(current)
                current = {}
                continue
            if line[0] in " \t" or ":" not in line:
                continue
            key, _, value = line.partition(":")
            current[key] = value.strip()
    if current:
        rows.append(current)
    frame = pd.DataFrame(rows)
    out = frame[list(FIELDS)].rename(columns=FIELDS)
    out["name"] = out["product_id"]
    out["category_id"] = out["category_id"].str.split("/").str[-1]
    out["n_depends"] = frame["Depends"].fillna("").str.count(",") + frame["Depends"].notna()
    out["n_recommends"] = (
        frame.get("Recommends", pd.Series(index=frame.index)).fillna("").str.count(",")
        + frame.get("Recommends", pd.Series(index=frame.index)).notna()
    )
    out["is_arch_all"] = (frame["Architecture"] == "all").astype(int)
    for col in ("installed_size_kb", "size_bytes"):
        out[col] = pd.to_numeric(out[col], errors="coerce")
    return out.drop_duplicates("product_id").reset_index(drop=True)


NUMBERS = ["installed_size_kb", "size_bytes", "n_depends", "n_recommends", "is_arch_all"]
TEXT_FEATURES = [{"name": "title", "kind": "text"}, {"name": "name", "kind": "text"}]
CLIENTS = {"debian_rf": {}, "debian_linear": {"model": {"kind": "linear"}}}


def clients_yaml() -> str:
    """The clients file of the two clients: the same features, defaults only."""
    features = [*NUMBERS, *TEXT_FEATURES, {"name": "maintainer", "kind": "categorical"}]
    entries = [{"client_id": cid, "features": features, **extra} for cid, extra in CLIENTS.items()]
    return json.dumps({"defaults": {}, "clients": entries}, indent=1)  # JSON is YAML


def evaluate(labels: Path, predictions: Path) -> dict[str, float]:
    """Held-out top-5 and top-1 of a client's prediction parquet against the labels."""
    truth = pd.read_csv(labels, dtype=str).set_index("product_id")["category_id"]
    rows = pd.read_parquet(predictions)
    rows = rows[rows["product_id"].isin(truth.index)]
    hit = rows["pred_label"].to_numpy() == truth.loc[rows["product_id"]].to_numpy()
    top5 = pd.Series(hit, index=rows["product_id"]).groupby(level=0).any()
    top1 = pd.Series(hit & (rows["rank"].to_numpy() == 0), index=rows["product_id"])
    return {
        "products": float(truth.size),
        "top5": float(top5.reindex(truth.index, fill_value=False).mean()),
        "top1": float(top1.groupby(level=0).any().reindex(truth.index, fill_value=False).mean()),
    }


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--evaluate":
        print(json.dumps(evaluate(Path(sys.argv[2]), Path(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packages", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    frame = parse_packages(args.packages)
    test = np.random.default_rng(args.seed).random(len(frame)) < 0.2
    for client in CLIENTS:
        train_dir = args.out / "train" / f"client_id={client}"
        predict_dir = args.out / "prediction" / f"client_id={client}"
        train_dir.mkdir(parents=True, exist_ok=True)
        predict_dir.mkdir(parents=True, exist_ok=True)
        frame[~test].to_csv(train_dir / "data_train.csv.gz", index=False)
        frame[test].drop(columns="category_id").to_csv(
            predict_dir / "data_predict.csv.gz", index=False
        )
    (args.out / "clients.yaml").write_text(clients_yaml())
    frame[test][["product_id", "category_id"]].to_csv(args.out / "labels.csv.gz", index=False)
    print(f"{len(frame)} packages, {frame.category_id.nunique()} sections, {test.sum()} held out")


if __name__ == "__main__":
    main()
