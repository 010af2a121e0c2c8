"""Pins the Dagster 1.13 behaviour the range runs rely on (partitioned checks are a preview).

A stand-in multi-asset with the same shape as `client_assets`: a range run reports each
client's metadata and checks on its own partition; when one client fails, the others are
materialized one by one and the step raises, so only the failed client's partitions fail.
"""

import inspect
import warnings

import dagster as dg
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

from bettercat_assets.partitions import range_tags

KEYS = ["a", "b", "c", "d"]
PARTS = dg.StaticPartitionsDefinition(KEYS)
FIRST, SECOND = dg.AssetKey("first"), dg.AssetKey("second")
FAIL_TAG = "test/fail"

with warnings.catch_warnings():
    warnings.simplefilter("error", dg.PreviewWarning)
    try:
        CHECKS = [dg.AssetCheckSpec("ok", asset="first", partitions_def=PARTS)]
        PREVIEW = False
    except dg.PreviewWarning:
        PREVIEW = True
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)
    CHECKS = [dg.AssetCheckSpec("ok", asset="first", partitions_def=PARTS)]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(FIRST, partitions_def=PARTS, skippable=True),
        dg.AssetSpec(SECOND, deps=[FIRST], partitions_def=PARTS, skippable=True),
    ],
    check_specs=CHECKS,
    can_subset=True,
    backfill_policy=dg.BackfillPolicy.multi_run(2),
)
def pair(context: dg.AssetExecutionContext):
    bad = {k for k in context.partition_keys if k == context.run.tags.get(FAIL_TAG)}
    good = [k for k in context.partition_keys if k not in bad]
    for key in (FIRST, SECOND):
        if bad:
            for k in good:
                yield dg.AssetMaterialization(asset_key=key, partition=k, metadata={"who": k})
        else:
            for k in good:
                context.add_asset_metadata({"who": k}, asset_key=key, partition_key=k)
            yield dg.MaterializeResult(asset_key=key)
        if key == FIRST:
            for k in context.partition_keys:
                yield dg.AssetCheckEvaluation(
                    asset_key=FIRST, check_name="ok", passed=k not in bad, partition=k
                )
            yield dg.Output(None, output_name="first_ok")
    if bad:
        raise dg.Failure(description=f"failed: {sorted(bad)}")


DEFS = dg.Definitions(
    assets=[pair],
    jobs=[dg.define_asset_job("both", partitions_def=PARTS)],
    executor=dg.in_process_executor,
)


def _run(instance, keys, fail=None):
    tags = {**range_tags(keys), **({FAIL_TAG: fail} if fail else {})}
    return DEFS.resolve_job_def("both").execute_in_process(
        instance=instance, tags=tags, raise_on_error=False
    )


def _materializations(result, key):
    return [
        e.event_specific_data.materialization
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
        and e.event_specific_data.materialization.asset_key == key
    ]


def test_partitioned_check_specs_are_still_a_preview():
    """If this fails, the preview ended: drop the warning filter in checks.py."""
    assert PREVIEW


def test_range_run_gives_each_partition_its_own_metadata_once():
    instance = dg.DagsterInstance.ephemeral()
    result = _run(instance, ["a", "b"])
    assert result.success
    for key in (FIRST, SECOND):
        mats = _materializations(result, key)
        assert sorted(m.partition for m in mats) == ["a", "b"], "one event per partition"
        assert {m.partition: m.metadata["who"].value for m in mats} == {"a": "a", "b": "b"}
    checks = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert sorted((c.partition, c.passed) for c in checks) == [("a", True), ("b", True)]


def test_one_failed_partition_fails_alone():
    instance = dg.DagsterInstance.ephemeral()
    result = _run(instance, ["c", "d"], fail="c")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "failed: ['c']" in failure.event_specific_data.error.message
    for key in (FIRST, SECOND):
        assert [m.partition for m in _materializations(result, key)] == ["d"]
        assert instance.get_materialized_partitions(key) == {"d"}
        status = get_and_update_asset_status_cache_value(instance, key, PARTS)
        assert set(status.deserialize_failed_partition_subsets(PARTS).get_partition_keys()) == {"c"}


def test_run_request_takes_one_partition_key_and_ranges_come_from_tags():
    single = dg.RunRequest(partition_key="a")
    assert single.partition_key == "a" and single.partition_key_range is None
    ranged = dg.RunRequest(tags=range_tags(["b", "c"]))
    assert ranged.partition_key_range == dg.PartitionKeyRange("b", "c")
    # There is no multi-partition RunRequest: an unknown keyword is silently dropped.
    assert "partition_keys" not in inspect.signature(dg.RunRequest.__new__).parameters
    assert dg.RunRequest(partition_keys=["a", "b"]).partition_key is None


def test_backfill_policy_splits_contiguous_ranges():
    from dagster._core.definitions.partitions.subset import DefaultPartitionsSubset

    policy = pair.backfill_policy
    assert policy.max_partitions_per_run == 2
    subset = DefaultPartitionsSubset(set(KEYS))
    ranges = subset.get_partition_key_ranges(PARTS)
    assert ranges == [dg.PartitionKeyRange("a", "d")], "one range in key order"
