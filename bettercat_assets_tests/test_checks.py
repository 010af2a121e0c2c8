"""Asset checks: every check passes on good data and fails, alone, on a crafted defect.

The training-data check functions (core/data/quality.py) are tested on crafted frames; the
prediction checks (core/scoring/prediction_checks.py) on crafted outputs summarised by the code
the scoring workers run (core/scoring/check_stats.py), in one slice or over two tasks (the
same defects injected into a real Spark pass: test_pass_checks.py); one in-process Dagster run shows that a failing blocking `training_data` check
stops `registered_model` from training.
"""

from __future__ import annotations

import gzip
import io
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bettercat_assets.core.config.clients import DataChecks
from bettercat_assets.core.data.quality import (
    PREDICTION_CHECKS,
    TRAINING_DATA_CHECKS,
    training_data_outcomes,
)

PATH = Path("/data/train/client_id=bravo/data_train.csv.gz")


@pytest.fixture(scope="module")
def cfg(registry):
    """bravo: features price, length_cm, rating; max_null_share 0.2, min_rows 50."""
    cfg = registry.get("bravo")
    assert cfg.data_checks == DataChecks(max_null_share=0.2, min_rows=50)
    return cfg


def training_frame(rows: int = 60, classes: int = 3) -> pd.DataFrame:
    """A raw training table as read for the checks: every column as exact strings."""
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "product_id": [f"p{i:04d}" for i in range(rows)],
            "price": [f"{v:.2f}" for v in rng.uniform(1, 100, rows)],
            "length_cm": [str(v) for v in rng.integers(1, 300, rows)],
            "rating": [f"{v:.1f}" for v in rng.uniform(0, 5, rows)],
            "category_id": [f"cat_{i % classes}" for i in range(rows)],
        }
    )


def outcomes(cfg, raw: pd.DataFrame) -> dict[str, object]:
    return {o.name: o for o in training_data_outcomes(cfg, raw, PATH)}


def failed(results: dict[str, object]) -> set[str]:
    return {name for name, o in results.items() if not o.passed}


# --- training_data checks -----------------------------------------------------------------------


def test_training_checks_pass_on_good_data(cfg):
    results = outcomes(cfg, training_frame())
    assert set(results) == set(TRAINING_DATA_CHECKS)
    assert failed(results) == set(), {n: o.description for n, o in results.items()}


def test_missing_markers_are_nulls_not_schema_errors(cfg):
    raw = training_frame()
    raw.loc[:5, "rating"] = ["", "NA", " null ", "nan", "NaN", "  "]
    results = outcomes(cfg, raw)
    assert failed(results) == set(), results["schema"].description
    assert results["null_share"].metadata["null_share"]["rating"] == pytest.approx(6 / 60)


def test_schema_fails_on_missing_column(cfg):
    results = outcomes(cfg, training_frame().drop(columns="length_cm"))
    assert "schema" in failed(results)
    assert "length_cm" in results["schema"].description
    assert results["schema"].metadata["missing_columns"] == ["length_cm"]


@pytest.mark.parametrize("bad", ["abc", "12,5", "inf", "-Infinity", "1e999"])
def test_schema_fails_on_non_numeric_or_non_finite_feature(cfg, bad):
    raw = training_frame()
    raw.loc[7, "price"] = bad
    results = outcomes(cfg, raw)
    assert failed(results) == {"schema"}
    text = results["schema"].description
    assert "'price'" in text and repr(bad) in text and "bravo" in text and str(PATH) in text


def test_null_share_fails_above_the_bound(cfg):
    raw = training_frame()
    raw.loc[: int(0.3 * len(raw)) - 1, "rating"] = ""  # 30% missing, bound 20%
    results = outcomes(cfg, raw)
    assert failed(results) == {"null_share"}
    text = results["null_share"].description
    assert "'rating'" in text and "30.0%" in text and "20.0%" in text
    assert results["null_share"].metadata["null_share"]["rating"] == pytest.approx(0.3)


def test_null_share_at_the_bound_passes_and_the_bound_is_configurable(cfg):
    raw = training_frame()
    raw.loc[: int(0.2 * len(raw)) - 1, "rating"] = ""  # exactly 20%
    assert outcomes(cfg, raw)["null_share"].passed
    raw.loc[: int(0.3 * len(raw)) - 1, "rating"] = ""
    lenient = cfg.model_copy(update={"data_checks": DataChecks(max_null_share=0.5)})
    assert outcomes(lenient, raw)["null_share"].passed
    strict = cfg.model_copy(update={"data_checks": DataChecks(max_null_share=0.0)})
    assert not outcomes(strict, training_frame().assign(price=[""] + ["1"] * 59))[
        "null_share"
    ].passed


def test_rows_and_classes_fails_on_too_few_rows(cfg):
    results = outcomes(cfg, training_frame(rows=49))
    assert failed(results) == {"rows_and_classes"}
    assert "49 rows < 50" in results["rows_and_classes"].description
    assert outcomes(cfg, training_frame(rows=50))["rows_and_classes"].passed
    fewer = cfg.model_copy(update={"data_checks": DataChecks(min_rows=20)})
    assert outcomes(fewer, training_frame(rows=49))["rows_and_classes"].passed


def test_rows_and_classes_fails_on_a_single_class(cfg):
    results = outcomes(cfg, training_frame(classes=1))
    assert failed(results) == {"rows_and_classes"}
    assert "1 class(es) in 'category_id' < 2" in results["rows_and_classes"].description
    assert outcomes(cfg, training_frame(classes=2))["rows_and_classes"].passed


def test_unique_product_id_fails_on_duplicates(cfg):
    raw = training_frame()
    raw.loc[10, "product_id"] = raw.loc[3, "product_id"]
    results = outcomes(cfg, raw)
    assert failed(results) == {"unique_product_id"}
    text = results["unique_product_id"].description
    assert "1 duplicate" in text and "'p0003'" in text


# --- category_predictions checks ----------------------------------------------------------------

K = 5
N_CLASSES = 8
CHAMPION = 3


def prediction_frame(products: int = 4, kk: int = K, version: int = CHAMPION) -> pd.DataFrame:
    """A correct long output: kk rows per product, ranks 0..kk-1, descending scores, sum <= 1."""
    scores = np.array([0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.01, 0.01][:kk], dtype=np.float32)
    return pd.DataFrame(
        {
            "product_id": np.repeat([f"p{i}" for i in range(products)], kk),
            "pred_label": np.tile([f"cat_{j}" for j in range(kk)], products),
            "pred_score": np.tile(scores, products),
            "rank": np.tile(np.arange(kk, dtype=np.int32), products),
            "model_version": np.full(products * kk, version, dtype=np.int32),
        }
    )


INPUTS = pd.Series([f"p{i}" for i in range(4)], name="product_id")
CLIENT = "bravo"


def _slice(cid: str, frame: pd.DataFrame, inputs: pd.Series, kk: int):
    """One worker slice: the input ids and the output rows made from them."""
    from bettercat_assets.core.scoring.pass_stats import ScoredSlice

    dtypes = {"pred_score": "float32", "rank": "int32", "model_version": "int32"}
    ids = pd.Series(inputs, dtype=object).reset_index(drop=True)
    empty = np.zeros((len(ids), 0))
    return ScoredSlice(cid, ids, empty, empty, frame.astype(dtypes).reset_index(drop=True), kk)


def _one_slice_stats(frames, rows_per_product, tmp_path):
    """Each client's output summarised as one worker slice."""
    from bettercat_assets.core.scoring.check_stats import CheckStatistic

    statistic = CheckStatistic()
    return {
        cid: statistic.merge([statistic.observe(_slice(cid, f, i, rows_per_product[cid]))])
        for cid, (f, i) in frames.items()
    }


def _two_tasks_stats(frames, rows_per_product, tmp_path):
    """Each client's products split over two Spark tasks, whose states go through the files
    the workers write and the driver merges."""
    from bettercat_assets.core.scoring.check_stats import CheckStatistic
    from bettercat_assets.core.scoring.pass_stats import read_pass_stats, write_states

    statistic = CheckStatistic()
    for task in range(2):
        states = {}
        for cid, (frame, inputs) in frames.items():
            ids = pd.Series(inputs, dtype=object)
            mine = ids[np.arange(len(ids)) % 2 == task]
            rows = frame[frame["product_id"].isin(mine)]
            states[(cid, statistic.name)] = statistic.observe(
                _slice(cid, rows, mine, rows_per_product[cid])
            )
        write_states(tmp_path / "stats" / f"{task}-0.arrow", states)
    merged = read_pass_stats([tmp_path / "stats"], [statistic])
    return {cid: by_name[statistic.name] for cid, by_name in merged.items()}


#: Two ways the scoring pass meets an output: all of a client's rows in one worker slice, or
#: spread over Spark tasks whose states are merged on the driver.
ENGINES = {"one_slice": _one_slice_stats, "two_tasks": _two_tasks_stats}


@pytest.fixture(params=sorted(ENGINES))
def engine(request):
    return request.param


def client_results(frames, n_classes=N_CLASSES, champion=CHAMPION, engine="one_slice"):
    """client -> check name -> outcome, through the numbers the scoring pass makes."""
    import tempfile

    from bettercat_assets.core.scoring.prediction_checks import (
        duplicate_hashes,
        pass_stats_to_checks,
        prediction_outcomes,
    )

    rows_per_product = {cid: min(K, n_classes) for cid in frames}
    with tempfile.TemporaryDirectory() as tmp:
        states = ENGINES[engine](frames, rows_per_product, Path(tmp))
    assert set(states) == set(frames), states
    results = {}
    for cid, (frame, _) in frames.items():
        out, inp = pass_stats_to_checks(states[cid], len(frame), duplicate_hashes(states[cid]))
        results[cid] = {
            o.name: o
            for o in prediction_outcomes(
                out, inp, n_classes=n_classes, k=K, champion_version=champion
            )
        }
    return results


def prediction_results(
    frame, inputs=INPUTS, n_classes=N_CLASSES, champion=CHAMPION, engine="one_slice"
):
    return client_results({CLIENT: (frame, inputs)}, n_classes, champion, engine)[CLIENT]


def test_both_engines_give_identical_stats_on_every_case():
    """Merged over tasks or made in one slice, the numbers are the same, field by field."""
    frames = {"good": (prediction_frame(), INPUTS)}
    for defect, _ in DEFECTS:
        changed = defect(prediction_frame())
        frames[defect.__name__] = changed if isinstance(changed, tuple) else (changed, INPUTS)
    rows_per_product = {cid: K for cid in frames}
    with tempfile.TemporaryDirectory() as tmp:
        one = _one_slice_stats(frames, rows_per_product, Path(tmp))
        two = _two_tasks_stats(frames, rows_per_product, Path(tmp))
    assert set(one) == set(two)
    for cid, expected in one.items():
        assert set(two[cid]) == set(expected)
        for name, a in expected.items():
            assert np.array_equal(a, two[cid][name], equal_nan=a.dtype.kind == "f"), (cid, name)


def test_scorer_layout_and_general_aggregation_agree():
    """A slice in the scorer's own layout takes the short path; the general per-product
    aggregation gives the same numbers for it."""
    from bettercat_assets.core.scoring import check_stats

    for kk, products in ((5, 4), (3, 200)):
        frame = prediction_frame(products=products, kk=min(kk, 5)) if kk == 5 else _float32_frame()
        ids = pd.Series(frame["product_id"].iloc[::kk].to_numpy(), dtype=object)
        scored = _slice(CLIENT, frame, ids, kk)
        assert check_stats._in_scorer_layout(scored.product_ids, scored.output, kk)
        short = check_stats._layout_stats(scored.output, len(ids), kk)
        general = check_stats._general_stats(scored.product_ids, scored.output, kk)
        for name, a in general.items():
            assert np.array_equal(a, short[name], equal_nan=a.dtype.kind == "f"), (
                name,
                a,
                short[name],
            )


def test_a_duplicated_output_product_fails_rows_and_ranks_not_the_input():
    """The scorer writing a product twice is a wrong output (its checks fail); it is not
    mistaken for a duplicate id in the client's file."""
    frame = prediction_frame()
    doubled = pd.concat([frame, frame[frame["product_id"] == "p2"]], ignore_index=True)
    results = prediction_results(doubled)
    # its 10 rows also sum its scores twice
    assert failed(results) == {"rows_per_product", "rank_order", "score_bounds"}
    assert "'p2' has 10" in results["rows_per_product"].description


def test_rows_written_must_match_rows_scored():
    """Parquet footers that disagree with the pass's own count fail rows_per_product."""
    from bettercat_assets.core.scoring.check_stats import CheckStatistic
    from bettercat_assets.core.scoring.prediction_checks import (
        pass_stats_to_checks,
        prediction_outcomes,
    )

    statistic = CheckStatistic()
    frame = prediction_frame()
    state = statistic.merge([statistic.observe(_slice(CLIENT, frame, INPUTS, K))])
    out, inp = pass_stats_to_checks(state, len(frame) - 1, 0)
    results = {o.name: o for o in prediction_outcomes(out, inp, N_CLASSES, K, CHAMPION)}
    assert failed(results) == {"rows_per_product"}
    assert (
        "19 rows written (Parquet footers) but 20 rows scored"
        in results["rows_per_product"].description
    )


def test_input_duplicates_are_counted_from_the_id_hashes():
    from bettercat_assets.core.scoring.check_stats import CheckStatistic
    from bettercat_assets.core.scoring.prediction_checks import duplicate_hashes

    statistic = CheckStatistic()
    a = statistic.observe(_slice(CLIENT, prediction_frame(), INPUTS, K))
    b = statistic.observe(_slice(CLIENT, prediction_frame(products=1), INPUTS[:1], K))
    assert duplicate_hashes(statistic.merge([a])) == 0
    assert duplicate_hashes(statistic.merge([a, b])) == 1  # p0 in two slices (two tasks)


def _float32_frame() -> pd.DataFrame:
    proba = np.random.default_rng(1).dirichlet(np.ones(3), size=200)
    return pd.DataFrame(
        {
            "product_id": np.repeat([f"p{i}" for i in range(200)], 3),
            "pred_label": "c",
            "pred_score": -np.sort(-proba, axis=1).ravel().astype(np.float32),
            "rank": np.tile(np.arange(3, dtype=np.int32), 200),
            "model_version": np.int32(CHAMPION),
        }
    )


def test_prediction_checks_pass_on_good_output(defect_results):
    """Scored in the same Spark pass as every defective client below: theirs are not its."""
    results = defect_results["good"]
    assert set(results) == set(PREDICTION_CHECKS)
    assert failed(results) == set(), {n: o.description for n, o in results.items()}


def test_fewer_classes_than_k_means_n_classes_rows_per_product(engine):
    results = prediction_results(prediction_frame(kk=3), n_classes=3, engine=engine)
    assert failed(results) == set(), {n: o.description for n, o in results.items()}
    # ...and k rows where only 3 classes exist is wrong
    wrong = prediction_results(prediction_frame(kk=5), n_classes=3, engine=engine)
    assert failed(wrong) >= {"rows_per_product"}


def _unscored_input(frame):
    return frame, pd.concat([INPUTS, pd.Series(["p_missing"])], ignore_index=True)


def _drop_last_row_of_one_product(frame):
    return frame.drop(index=frame.index[(frame["product_id"] == "p1") & (frame["rank"] == 4)])


def _rising_score(frame):
    frame = frame.copy()
    first = frame.index[(frame["product_id"] == "p2") & (frame["rank"] == 0)][0]
    second = frame.index[(frame["product_id"] == "p2") & (frame["rank"] == 1)][0]
    frame.loc[[first, second], "pred_score"] = frame.loc[[second, first], "pred_score"].to_numpy()
    return frame


def _duplicate_rank(frame):
    frame = frame.copy()
    frame.loc[(frame["product_id"] == "p0") & (frame["rank"] == 2), "rank"] = 1
    return frame


def _ranks_start_at_one(frame):
    return frame.assign(
        rank=np.where(frame["product_id"] == "p3", frame["rank"] + 1, frame["rank"])
    )


def _score_above_one(frame):
    frame = frame.copy()
    frame.loc[(frame["product_id"] == "p0") & (frame["rank"] == 0), "pred_score"] = 1.2
    return frame


def _negative_score(frame):
    frame = frame.copy()
    frame.loc[(frame["product_id"] == "p0") & (frame["rank"] == 4), "pred_score"] = -0.01
    return frame


def _nan_score(frame):
    frame = frame.copy()
    frame.loc[(frame["product_id"] == "p0") & (frame["rank"] == 4), "pred_score"] = np.nan
    return frame


def _sum_above_one(frame):
    frame = frame.copy()
    frame.loc[frame["product_id"] == "p1", "pred_score"] = [0.5, 0.3, 0.2, 0.1, 0.05]
    return frame


def _older_version(frame):
    return frame.assign(model_version=np.int32(CHAMPION - 1))


def _mixed_versions(frame):
    return frame.assign(model_version=np.where(frame["product_id"] == "p0", 2, CHAMPION))


DEFECTS = [
    (_unscored_input, "all_products_scored"),
    (_drop_last_row_of_one_product, "rows_per_product"),
    (_rising_score, "rank_order"),
    (_duplicate_rank, "rank_order"),
    (_ranks_start_at_one, "rank_order"),
    (_score_above_one, "score_bounds"),
    (_negative_score, "score_bounds"),
    (_nan_score, "score_bounds"),
    (_sum_above_one, "score_bounds"),
    (_older_version, "model_is_champion"),
    (_mixed_versions, "model_is_champion"),
]


@pytest.fixture(scope="module", params=sorted(ENGINES))
def defect_results(request):
    """Every defect as a client of its own, plus a good one, checked in one shared pass."""
    frames = {"good": (prediction_frame(), INPUTS)}
    for case in DEFECTS:
        defect = case.values[0] if hasattr(case, "values") else case[0]
        changed = defect(prediction_frame())
        frames[defect.__name__] = changed if isinstance(changed, tuple) else (changed, INPUTS)
    return client_results(frames, engine=request.param)


@pytest.mark.parametrize(("defect", "check"), DEFECTS)
def test_each_prediction_defect_fails_only_its_check(defect_results, defect, check):
    results = defect_results[defect.__name__]
    assert failed(results) == {check}, {n: o.description for n, o in results.items()}


def test_failed_prediction_checks_name_an_example(defect_results):
    ranks = defect_results["_duplicate_rank"]["rank_order"].description
    assert "1 product(s) whose ranks are not 0..n-1, e.g. 'p0'" in ranks, ranks
    unscored = defect_results["_unscored_input"]["all_products_scored"].description
    assert "1 of 5 input product(s) not scored, e.g. 'p_missing'" in unscored, unscored
    rows = defect_results["_drop_last_row_of_one_product"]["rows_per_product"].description
    assert "1 product(s) do not have 5 rows, e.g. 'p1' has 4" in rows, rows


def test_no_champion_fails_model_is_champion(engine):
    results = prediction_results(prediction_frame(), champion=None, engine=engine)
    assert failed(results) == {"model_is_champion"}
    assert "no @champion" in results["model_is_champion"].description


def test_float32_scores_summing_to_one_pass(engine):
    """All classes scored (n_classes <= k): float32 rounding must not trip the <= 1 + 1e-6 bound."""
    proba = np.random.default_rng(1).dirichlet(np.ones(3), size=200)
    frame = pd.DataFrame(
        {
            "product_id": np.repeat([f"p{i}" for i in range(200)], 3),
            "pred_label": "c",
            "pred_score": -np.sort(-proba, axis=1).ravel().astype(np.float32),
            "rank": np.tile(np.arange(3, dtype=np.int32), 200),
            "model_version": np.int32(CHAMPION),
        }
    )
    inputs = pd.Series([f"p{i}" for i in range(200)])
    results = prediction_results(frame, inputs, n_classes=3, engine=engine)
    assert failed(results) == set(), {n: o.description for n, o in results.items()}


def test_partitioned_check_specs_build_without_a_preview_warning():
    """Partitioned specs are a deliberate use of a Dagster preview feature: no log noise on
    every code-location load, while other warnings still show."""
    import warnings

    from dagster import PreviewWarning, StaticPartitionsDefinition

    from bettercat_assets.checks import check_specs

    partitions = StaticPartitionsDefinition(["a", "b"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        specs = check_specs("training_data", {"schema": "Columns."}, True, partitions)
        warnings.warn("still shown", PreviewWarning, stacklevel=1)
    assert specs[0].partitions_def == partitions
    assert [str(w.message) for w in caught] == ["still shown"]


# --- a failing blocking check stops the graph (in-process Dagster) ------------------------------


def _write_gz_csv(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    path.write_bytes(gzip.compress(buffer.getvalue().encode("utf-8")))


@pytest.mark.integration
def test_too_many_nulls_blocks_registered_model(tmp_path, registry):
    from dagster import AssetKey, instance_for_test

    from bettercat_assets.core.config.paths import DataLayout
    from bettercat_assets.resources import ClientsResource, MlflowResource, SparkResource
    from bettercat_assets_tests.dagster_support import (
        checks_by_name,
        failed_clients,
        materialize_clients,
        materialized_partitions,
    )

    # hotel (price, weight_g) in a private data prefix: 40% of `price` missing, bound 20%
    rng = np.random.default_rng(5)
    rows = 100
    frame = pd.DataFrame(
        {
            "product_id": [f"h{i:04d}" for i in range(rows)],
            "price": np.where(np.arange(rows) < 40, "", np.round(rng.uniform(1, 50, rows), 2)),
            "weight_g": rng.integers(10, 900, rows).astype(str),
            "category_id": [f"cat_{i % 4}" for i in range(rows)],
        }
    )
    layout = DataLayout(tmp_path / "data")
    _write_gz_csv(layout.train_file("hotel"), frame)
    db = tmp_path / "mlflow.db"
    resources = {
        "clients": ClientsResource(
            clients_file=str(registry.path), data_prefix=str(tmp_path / "data")
        ),
        "mlflow": MlflowResource(
            tracking_uri=f"sqlite:///{db}", artifact_root=(tmp_path / "art").as_uri()
        ),
        "spark": SparkResource(master="local[2]"),  # never started: nothing is scored
    }
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        result = materialize_clients(
            ["training_data", "registered_model"],
            "hotel",
            instance,
            resources=resources,
            raise_on_error=False,
        )
        assert not result.success

        checks = checks_by_name(result, "hotel")
        assert set(checks) == set(TRAINING_DATA_CHECKS)
        assert not checks["null_share"].passed
        assert checks["null_share"].description and "'price'" in checks["null_share"].description
        assert "40.0%" in checks["null_share"].description
        assert all(checks[n].passed for n in TRAINING_DATA_CHECKS if n != "null_share")
        assert checks["null_share"].blocking

        # One step serves all stages: the model stage never ran for hotel (no gate check, no
        # MLflow store below), and the run's failure names the client and the failed check.
        assert materialized_partitions(result) == {("training_data", "hotel")}
        reason = failed_clients(result)["hotel"]
        assert reason.startswith("training_data: ") and "'price'" in reason, reason
        records = instance.fetch_materializations(AssetKey("registered_model"), limit=1).records
        assert records == []
    assert not db.exists(), "nothing may have been tracked in MLflow"


def test_a_retried_task_counts_once(tmp_path):
    """A task attempt that Spark retried (or ran speculatively) wrote the same states again:
    the driver keeps one file per partition."""
    from bettercat_assets.core.scoring.check_stats import CheckStatistic
    from bettercat_assets.core.scoring.pass_stats import read_pass_stats, write_states

    statistic = CheckStatistic()
    state = statistic.observe(_slice(CLIENT, prediction_frame(), INPUTS, K))
    for name in ("0-0", "0-1", "1-0"):  # partition 0 twice (attempts 0 and 1), partition 1 once
        write_states(tmp_path / f"{name}.arrow", {(CLIENT, statistic.name): state})
    merged = read_pass_stats([tmp_path], [statistic])[CLIENT][statistic.name]
    assert int(merged["input_rows"][0]) == 2 * len(INPUTS)
    assert int(merged["rows"][0]) == 2 * len(prediction_frame())
