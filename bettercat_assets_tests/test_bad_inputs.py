"""Bad inputs end to end through the CLI, for a client that already has a champion and output.

Every case must give exit code 2 and one `error:` line naming the client, the file and the
column or key, with no traceback, and must leave the previous predictions byte-identical, the
`@champion` alias where it was, and no new model version or MLflow run.

The loaders' own unit tests (test_data.py, test_config.py) cover the parsing details; here each
case goes through `bettercat train` / `bettercat predict` (click's CliRunner, in-process so the
session's Spark is reused) against a private copy of the data, with the session MLflow store.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from click.testing import CliRunner

from bettercat_assets.cli import main
from bettercat_assets_tests.reliability_support import (
    BIN,
    REPO,
    assert_one_error_line,
    mlflow_state,
    read_gz_rows,
    subprocess_env,
    tree_digest,
    write_clients_file,
    write_gz_rows,
)

pytestmark = pytest.mark.integration

CID = "bi_shop"
UNICODE_CID = "bi_unicode"
TRAIN_DAY = "2026-02-01"
SCORE_DAY = "2026-02-02"
FEATURES = ["price", "weight_g"]


@dataclass
class World:
    clients_file: Path
    prefix: Path
    train_file: Path
    predict_file: Path
    good_train: bytes
    good_predict: bytes
    predictions_root: Path
    backup: Path
    before: dict[str, object]

    def cli(self, *args: str):
        result = CliRunner().invoke(
            main,
            [*args, "--clients-file", str(self.clients_file), "--data-prefix", str(self.prefix)],
        )
        return result


def _traceback(result) -> str:
    import traceback

    return "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""


@pytest.fixture(scope="module")
def world(tmp_path_factory, spark, tracking_settings) -> World:
    """One trained client with one good predictions output, shared by every case."""
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.config.paths import DataLayout
    from bettercat_assets.core.data.generate import generate_client_data
    from bettercat_assets.core.tracking import runs as tracking

    root = tmp_path_factory.mktemp("bad_inputs")
    clients_file = write_clients_file(
        root / "clients.yaml",
        [
            f"{{client_id: {CID}, features: [price, weight_g], "
            "sample_data: {products: 300, categories: 5, noise: 0.2}}",
            f"{{client_id: {UNICODE_CID}, features: [price, weight_g]}}",
        ],
    )
    layout = DataLayout(root / "data")
    generated = generate_client_data(load_clients(clients_file).get(CID), layout, seed=11)
    world = World(
        clients_file=clients_file,
        prefix=layout.prefix,
        train_file=generated.train_file,
        predict_file=generated.predict_file,
        good_train=generated.train_file.read_bytes(),
        good_predict=generated.predict_file.read_bytes(),
        predictions_root=layout.predictions_root(CID),
        backup=root / "predictions-backup",
        before={},
    )
    trained = world.cli("train", "--client-id", CID, "--training-date", TRAIN_DAY)
    assert trained.exit_code == 0, (trained.output, _traceback(trained))
    scored = world.cli("predict", "--client-id", CID, "--inference-date", SCORE_DAY)
    assert scored.exit_code == 0, (scored.output, _traceback(scored))
    assert (world.predictions_root / f"date={SCORE_DAY}").is_dir()
    shutil.copytree(world.predictions_root, world.backup)
    client = tracking.mlflow_client(tracking_settings)
    world.before = {
        "outputs": tree_digest(world.predictions_root),
        "mlflow": mlflow_state(client, f"{CID}_model", f"bettercat/{CID}"),
    }
    assert world.before["mlflow"]["champion"] == 1
    return world


@pytest.fixture
def fresh(world, tracking_settings):
    """Restore the good input files after each case, then check nothing else changed."""
    from bettercat_assets.core.tracking import runs as tracking

    yield world
    world.train_file.write_bytes(world.good_train)
    world.predict_file.write_bytes(world.good_predict)
    after = tree_digest(world.predictions_root)
    if after != world.before["outputs"]:  # put it back, so one failure does not cascade
        shutil.rmtree(world.predictions_root)
        shutil.copytree(world.backup, world.predictions_root)
    assert after == world.before["outputs"]
    client = tracking.mlflow_client(tracking_settings)
    assert mlflow_state(client, f"{CID}_model", f"bettercat/{CID}") == world.before["mlflow"]


# --- the cases ------------------------------------------------------------------------------

Mutation = Callable[[Path], None]


def _rows(path: Path) -> list[list[str]]:
    return read_gz_rows(path)


def _rewrite(path: Path, change: Callable[[list[list[str]]], list[list[str]]]) -> None:
    write_gz_rows(path, change(_rows(path)))


def _drop_column(name: str) -> Mutation:
    def mutate(path: Path) -> None:
        def change(rows):
            i = rows[0].index(name)
            return [r[:i] + r[i + 1 :] for r in rows]

        _rewrite(path, change)

    return mutate


def _rename_column(old: str, new: str) -> Mutation:
    def mutate(path: Path) -> None:
        _rewrite(path, lambda rows: [[new if h == old else h for h in rows[0]], *rows[1:]])

    return mutate


def _set_cell(column: str, row: int, value: str) -> Mutation:
    def mutate(path: Path) -> None:
        def change(rows):
            rows[row][rows[0].index(column)] = value
            return rows

        _rewrite(path, change)

    return mutate


def _set_column(column: str, value: str) -> Mutation:
    def mutate(path: Path) -> None:
        def change(rows):
            i = rows[0].index(column)
            for r in rows[1:]:
                r[i] = value
            return rows

        _rewrite(path, change)

    return mutate


def _duplicate_id(path: Path) -> None:
    def change(rows):
        rows[2][0] = rows[1][0]
        return rows

    _rewrite(path, change)


def _missing(path: Path) -> None:
    path.unlink()


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _header_only(path: Path) -> None:
    write_gz_rows(path, _rows(path)[:1])


def _not_gzip(path: Path) -> None:
    path.write_bytes(gzip.decompress(path.read_bytes()))


@dataclass(frozen=True)
class Case:
    command: str  # train | predict
    mutate: Mutation
    fragments: tuple[str, ...]  # besides the client and the file, which every line must name


CASES: dict[str, Case] = {
    # training file
    "train-missing-file": Case("train", _missing, ("file not found",)),
    "train-empty-file": Case("train", _empty, ("file is empty",)),
    "train-header-only": Case("train", _header_only, ("no data rows (header only)",)),
    "train-not-gzip": Case("train", _not_gzip, ("not a gzip file",)),
    "train-missing-feature": Case("train", _drop_column("weight_g"), ("column 'weight_g'",)),
    "train-missing-label": Case("train", _drop_column("category_id"), ("column 'category_id'",)),
    "train-non-numeric": Case(
        "train", _set_cell("price", 3, "twelve"), ("column 'price'", "line 4", "'twelve'")
    ),
    "train-all-nan-feature": Case(
        "train", _set_column("weight_g", ""), ("column 'weight_g'", "all missing")
    ),
    "train-single-class": Case(
        "train", _set_column("category_id", "shoes"), ("column 'category_id'", "single class")
    ),
    "train-duplicate-id": Case(
        "train", _duplicate_id, ("column 'product_id'", "duplicate value(s)")
    ),
    # scoring file
    "predict-missing-file": Case("predict", _missing, ("file not found",)),
    "predict-empty-file": Case("predict", _empty, ("file is empty",)),
    "predict-not-gzip": Case("predict", _not_gzip, ("not a gzip file",)),
    "predict-missing-feature": Case("predict", _drop_column("weight_g"), ("column 'weight_g'",)),
    "predict-non-numeric": Case(
        "predict", _set_cell("weight_g", 5, "heavy"), ("column 'weight_g'", "line 6", "'heavy'")
    ),
    "predict-duplicate-id": Case("predict", _duplicate_id, ("column 'product_id'", "duplicate")),
    # an extra column is not bad input any more: it is ignored and logged (test_text_scoring.py)
    "predict-renamed-column-not-in-signature": Case(
        "predict", _rename_column("weight_g", "weight_kg"), ("column 'weight_g'",)
    ),
}
HEADER_ONLY_SCORING = pytest.param(
    "predict-header-only",
    Case("predict", _header_only, ("no data rows (header only)",)),
    id="predict-header-only",
)


def _run_case(world: World, name: str, case: Case) -> None:
    target = world.train_file if case.command == "train" else world.predict_file
    case.mutate(target)
    day = ["--training-date", TRAIN_DAY] if case.command == "train" else []
    day = day or ["--inference-date", SCORE_DAY]
    result = world.cli(case.command, "--client-id", CID, *day)
    assert result.exit_code == 2, _traceback(result)
    line = assert_one_error_line(result.exit_code, result.stdout, result.stderr)
    assert line.startswith(f"error: client '{CID}': {target}: "), line
    for fragment in case.fragments:
        assert fragment in line, (name, fragment, line)


@pytest.mark.parametrize(
    ("name", "case"),
    [*CASES.items(), HEADER_ONLY_SCORING],
    ids=lambda v: v if isinstance(v, str) else v.command,
)
def test_bad_input_fails_cleanly_and_changes_nothing(fresh, name, case):
    _run_case(fresh, name, case)


@pytest.mark.parametrize("command", ["train", "predict"])
def test_unknown_client_id(fresh, command):
    result = fresh.cli(command, "--client-id", "bi_shopp")
    line = assert_one_error_line(result.exit_code, result.stdout, result.stderr)
    assert line == (
        f"error: unknown client 'bi_shopp' in {fresh.clients_file} (did you mean '{CID}'?)"
    )


def test_real_process_prints_only_the_error_line(fresh):
    """The installed `bettercat` executable, not CliRunner: no warnings or traceback leak."""
    _not_gzip(fresh.train_file)
    proc = subprocess.run(
        [str(BIN / "bettercat"), "train", "--client-id", CID],
        env=subprocess_env(
            BETTERCAT_CLIENTS_FILE=str(fresh.clients_file), DATA_PREFIX=str(fresh.prefix)
        ),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = assert_one_error_line(proc.returncode, proc.stdout, proc.stderr)
    assert line == (
        f"error: client '{CID}': {fresh.train_file}: not a gzip file (expected .csv.gz)"
    )


# --- exact round trip of awkward ids and labels ----------------------------------------------

#: Labels only pass through pandas (training) and the model's class list, quotes included.
LABELS = ["Bags, leather & more", "Ünïcode ✓", "日本語/カテゴリ", "NA", '6" pipes, "quoted"']
AWKWARD_IDS = [
    "Ünïcode, ltd ✓",
    "comma,separated,id",
    "עברית-42",
    "emoji 🚀",
    "NA",
    "null",
    "  padded  ",
    "back\\slash",
    "semi;colon|pipe\ttab",
    "'single'",
]
#: Ids with a double quote are written by every CSV writer as RFC 4180 doubled quotes.
QUOTED_IDS = ['say "hi"', '"fully quoted"', 'inch 6" pipe']


def _write_predict_file(prefix: Path, ids: list[str]) -> list[list[str]]:
    import numpy as np

    rng = np.random.default_rng(6)
    predict = [["product_id", *FEATURES]]
    for i, pid in enumerate(ids):
        k = i % len(LABELS)
        predict.append([pid, f"{rng.normal(10 * k, 1.0):.3f}", f"{rng.normal(100 * k, 5):.1f}"])
    write_gz_rows(
        prefix / "prediction" / f"client_id={UNICODE_CID}" / "data_predict.csv.gz", predict
    )
    return predict


@pytest.fixture(scope="module")
def unicode_client(world):
    """A client trained on labels with unicode, commas and quotes (product ids likewise)."""
    import numpy as np

    rng = np.random.default_rng(5)
    train = [["product_id", *FEATURES, "category_id"]]
    for i in range(250):
        k = i % len(LABELS)
        price, weight = rng.normal(10 * k, 1.0), rng.normal(100 * k, 5.0)
        train.append([f"{LABELS[k]} / item {i}", f"{price:.3f}", f"{weight:.1f}", LABELS[k]])
    write_gz_rows(world.prefix / "train" / f"client_id={UNICODE_CID}" / "data_train.csv.gz", train)
    trained = world.cli("train", "--client-id", UNICODE_CID, "--training-date", TRAIN_DAY)
    assert trained.exit_code == 0, (trained.output, _traceback(trained))
    return world


def _score(world: World, ids: list[str], day: str):
    predict = _write_predict_file(world.prefix, ids)
    scored = world.cli("predict", "--client-id", UNICODE_CID, "--inference-date", day)
    assert scored.exit_code == 0, (scored.output, _traceback(scored))
    out = world.prefix / "products_categories" / f"client_id={UNICODE_CID}" / f"date={day}"
    return predict, ds.dataset(out, format="parquet").to_table().to_pandas()


def test_unicode_and_commas_round_trip_exactly(unicode_client):
    ids = [pid if i < len(AWKWARD_IDS) else f"{pid} #{i}" for i, pid in enumerate(AWKWARD_IDS * 3)]
    predict, table = _score(unicode_client, ids, "2026-02-03")
    assert sorted(table["product_id"].unique()) == sorted(ids)
    assert (table.groupby("product_id").size() == len(LABELS)).all()
    # Every label comes back byte for byte (top-5 of 5 classes lists each of them) ...
    assert set(table["pred_label"]) == set(LABELS)
    # ... attached to the right products: each product's best label is its own.
    best = table[table["rank"] == 0].set_index("product_id")["pred_label"]
    wanted = {row[0]: LABELS[i % len(LABELS)] for i, row in enumerate(predict[1:])}
    assert sum(best[pid] == label for pid, label in wanted.items()) >= 0.9 * len(wanted)


def test_double_quotes_in_product_ids_round_trip_exactly(unicode_client):
    _, table = _score(unicode_client, AWKWARD_IDS[:3] + QUOTED_IDS, "2026-02-04")
    assert sorted(table["product_id"].unique()) == sorted(AWKWARD_IDS[:3] + QUOTED_IDS)


# --- a clients.yaml with no usable client list reaches Dagster as the same ConfigError --------

BAD_CLIENTS = {
    "unsafe-id": "clients:\n  - {client_id: ../../etc, features: [price]}\n",
    "invalid-yaml": "clients:\n  - {client_id: ok, features: [price]\n",
}


# A file with no trustworthy client list fails the code location as a whole; one client's bad
# entry does not (test_config_isolation.py).
@pytest.mark.parametrize("kind", ["unsafe-id", "invalid-yaml"])
def test_dagster_definitions_fail_to_load_with_the_config_error(tmp_path, kind):
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.config.errors import ConfigError

    bad = tmp_path / "clients.yaml"
    bad.write_text(BAD_CLIENTS[kind], encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_clients(bad)
    message = str(info.value)
    assert str(bad) in message and "\n" not in message

    proc = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", "bettercat_assets.definitions"],
        env=subprocess_env(BETTERCAT_CLIENTS_FILE=str(bad)),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode != 0
    assert f"ConfigError: {message}" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
