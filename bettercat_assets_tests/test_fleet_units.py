"""The fleet server's parts on their own: model cache, request checks, champion sweep."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import numpy as np
import pytest

from bettercat_assets.core.serving.champion_watch import ChampionWatch, sweep
from bettercat_assets.core.serving.fleet_requests import (
    ServingError,
    one_sentence,
    parse_payload,
    read_body,
)
from bettercat_assets.core.serving.model_cache import CachedModel, ModelCache, ModelTooLargeError

# --- model cache ----------------------------------------------------------------------------


def _entry(nbytes: int) -> CachedModel:
    return CachedModel(model=object(), version=1, nbytes=nbytes)


def test_cache_stays_within_its_budget_and_evicts_least_recently_used():
    cache = ModelCache(budget_bytes=300)
    for key in "abc":
        assert cache.put(key, _entry(100)) == []
    assert cache.put("d", _entry(100)) == ["a"]  # nobody asked twice: plain LRU
    assert cache.get("a") is None
    assert cache.stats().bytes == 300 and cache.stats().evictions == 1
    assert cache.put("e", _entry(250)) == ["b", "c", "d"]
    assert sorted(cache.loaded_keys()) == ["e"]
    with pytest.raises(ModelTooLargeError, match="more than the whole cache budget"):
        cache.put("huge", _entry(301))
    assert cache.stats().bytes == 250


def test_a_popular_model_survives_a_burst_of_cold_ones():
    cache = ModelCache(budget_bytes=1000, protected_fraction=0.5)
    cache.put("popular", _entry(300))
    assert cache.get("popular") is not None  # second use: protected
    for i in range(50):  # a scan of one-off clients, each bigger than what is left
        cache.put(f"cold-{i}", _entry(400))
        assert cache.peek("popular") is not None, i
    stats = cache.stats()
    assert stats.bytes <= 1000 and stats.protected_bytes == 300 and stats.evictions >= 48
    assert (stats.hits, stats.misses) == (1, 0)


def test_protected_overflow_goes_back_to_probation_not_out():
    cache = ModelCache(budget_bytes=1000, protected_fraction=0.3)
    for key in ("a", "b"):
        cache.put(key, _entry(200))
        cache.get(key)
    # only one 200-byte model fits 300 protected bytes: 'a' was demoted, not evicted
    assert cache.stats().protected_bytes == 200
    assert cache.peek("a") is not None and cache.stats().evictions == 0
    assert cache.discard("a") and not cache.discard("a")


# --- request checks -------------------------------------------------------------------------


def _split(rows: int) -> bytes:
    data = [["p", 1.0] for _ in range(rows)]
    return json.dumps({"dataframe_split": {"columns": ["product_id", "x"], "data": data}}).encode()


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"\xff\xfe\x00", 400, "not valid"),
        (b"[1, 2]", 400, "got list"),
        (b'{"dataframe_split": 3}', 400, "'dataframe_split' must be an object"),
        (b'{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}', 400, "row 0 must be"),
        (b'{"dataframe_split": {"columns": [1], "data": []}}', 400, "column names"),
        (b'{"dataframe_records": {"a": 1}}', 400, "must be a list of objects"),
        (b'{"dataframe_records": [1]}', 400, "item 0 must be an object"),
        (b'{"dataframe_records": [{"a": 1}], "params": [1]}', 400, "'params' must be an object"),
        (b'{"dataframe_records": [], "dataframe_split": {}}', 400, "exactly one of"),
        (b'{"instances": [[1]]}', 400, "found 'instances'"),
        (b'{"dataframe_records": []}', 400, "no products"),
        (_split(11), 413, "11 rows, over the limit of 10"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "JSON"),
    ],
)
def test_bad_bodies_get_one_sentence(body, status, words):
    with pytest.raises(ServingError) as caught:
        parse_payload(body, max_rows=10)
    assert caught.value.status == status
    assert words in caught.value.message and "\n" not in caught.value.message


def test_good_bodies_pass_unchanged():
    assert parse_payload(_split(10), max_rows=10)["dataframe_split"]["columns"][1] == "x"
    records = {"dataframe_records": [{"a": 1}], "params": {"output": "rows"}}
    assert parse_payload(json.dumps(records).encode(), max_rows=10) == records


def test_body_size_is_refused_from_the_header_or_while_reading():
    async def stream(chunks):
        for chunk in chunks:
            yield chunk

    run = asyncio.run
    assert run(read_body(stream([b"ab", b"cd"]), None, 4)) == b"abcd"
    with pytest.raises(ServingError, match="5 bytes is over the limit") as caught:
        run(read_body(stream([]), "5", 4))
    assert caught.value.status == 413
    with pytest.raises(ServingError, match="over the limit"):
        run(read_body(stream([b"abc", b"de"]), None, 4))
    with pytest.raises(ServingError, match="not a number"):
        run(read_body(stream([]), "lots", 4))


def test_one_sentence_drops_mlflows_echo_of_the_frame():
    message = (
        "Failed to predict data '  product_id  price\n0  P1  2.0'. \nError: Failed to enforce "
        "schema of data '  product_id  price\n0  P1  2.0' with schema '['price': double]'. "
        "Error: Model is missing inputs ['weight_g']."
    )
    assert one_sentence(message) == "Model is missing inputs ['weight_g']."
    assert one_sentence("x" * 1000).endswith("...") and len(one_sentence("x" * 1000)) == 300


def test_body_budget_refuses_a_burst_of_large_bodies_not_small_ones():
    from bettercat_assets.core.serving.fleet import BodyBudget

    budget = BodyBudget(limit=100)
    with budget.reserve("60", 80), budget.reserve("30", 80):
        # an unknown length counts as the largest allowed
        with (
            pytest.raises(ServingError, match="too many large") as caught,
            budget.reserve(None, 80),
        ):
            pass
        assert caught.value.status == 503
        with budget.reserve("10", 80), budget.reserve("500", 80):  # 500: a 413 later, not here
            assert budget.used == 100
    assert budget.used == 0


# --- champion sweep -------------------------------------------------------------------------


class _Pages(list):
    def __init__(self, items, token):
        super().__init__(items)
        self.token = token


class _FakeRegistry:
    """search_registered_models in pages of 2, counting calls."""

    def __init__(self, aliases: dict[str, int | None]):
        self.aliases, self.calls, self.fail = aliases, 0, False

    def search_registered_models(self, max_results, page_token=None):
        self.calls += 1
        if self.fail:
            raise ConnectionError("registry down")
        names = sorted(self.aliases)
        start = int(page_token or 0)
        page = [
            SimpleNamespace(
                name=n, aliases={} if self.aliases[n] is None else {"champion": self.aliases[n]}
            )
            for n in names[start : start + 2]
        ]
        return _Pages(page, str(start + 2) if start + 2 < len(names) else None)


def test_sweep_reads_every_page_once():
    registry = _FakeRegistry({"a_model": 1, "b_model": None, "c_model": 3, "d_model": 2})
    assert sweep(registry) == {"a_model": 1, "b_model": None, "c_model": 3, "d_model": 2}
    assert registry.calls == 2


def test_watch_reports_moves_before_publishing_and_keeps_state_when_the_registry_fails():
    registry = _FakeRegistry({"a_model": 1, "b_model": 2})
    seen = []
    watch = ChampionWatch(registry, interval=60)
    watch.on_sweep = lambda changes: seen.append(
        (changes, watch.get("a_model").version)  # still the old champion while handed over
    )
    watch.refresh()
    assert seen == [] and watch.get("a_model").version == 1
    first_seen_at = watch.get("b_model").seen_at
    registry.aliases.update({"a_model": 5, "c_model": None})
    watch.refresh()
    ((changes, published),) = seen
    assert published == 1 and watch.get("a_model").version == 5
    assert {(c.model_name, c.old, c.new) for c in changes} == {
        ("a_model", 1, 5),
        ("c_model", None, None),
    }
    assert watch.get("b_model").seen_at == first_seen_at  # unchanged champion keeps its time
    registry.fail = True
    assert watch.refresh() == []
    assert "registry down" in watch.last_error and watch.get("a_model").version == 5


# --- the bench's load summary -----------------------------------------------------------------


def test_fleet_bench_draws_zipf_popularity_and_splits_hits_from_misses():
    from bench.fleet_serving import summarize_load, zipf_weights

    weights = zipf_weights(1000)
    top = np.sort(weights)[::-1]
    assert abs(weights.sum() - 1) < 1e-9 and top[0] / top[9] == pytest.approx(10**1.1)
    records = [  # client, status, latency s, cache, version, rows, start, cpu ms, app ms
        ["a", 200, 0.010, "hit", 1, 5, 0.0, 1.0, 2.0],
        ["a", 200, 0.020, "hit", 1, 5, 0.1, 1.0, 2.0],
        ["b", 200, 0.200, "miss", 1, 5, 0.2, 80.0, 90.0],
        ["c", 404, 0.001, None, None, 0, 0.3, float("nan"), float("nan")],
        ["d", 200, 0.001, "hit", 1, 3, 0.4, 1.0, 1.0],  # fewer rows than top-5: not a success
    ]
    summary = summarize_load(records, wall_s=1.0)
    assert (summary["requests"], summary["failed"], summary["requests_per_s"]) == (5, 2, 5.0)
    assert summary["hit"]["n"] == 2 and summary["miss"]["n"] == 1
    assert summary["miss"]["p50_ms"] == 200.0 and summary["miss_cpu"]["p50_ms"] == 80.0


def test_freed_memory_is_handed_back_at_most_once_per_interval():
    from bettercat_assets.core.serving.process_memory import release_free_memory

    release_free_memory(interval=0)  # whatever ran before
    assert release_free_memory(interval=60) is False  # just ran
    assert release_free_memory(interval=0) is True  # glibc here: malloc_trim ran


def test_requests_wait_for_the_registry_and_name_what_is_missing(tmp_path):
    """Before any sweep succeeded: 503 naming the registry's error; then 404s that say why."""
    from bettercat_assets.core.config.settings import TrackingSettings
    from bettercat_assets.core.serving.fleet_models import FleetModels
    from bettercat_assets.core.serving.model_loader import ModelLoader
    from bettercat_assets_tests.reliability_support import write_clients_file

    clients = write_clients_file(
        tmp_path / "clients.yaml",
        ["{client_id: shop_a, features: [price]}", "{client_id: shop_b, features: [price]}"],
    )
    registry = _FakeRegistry({"shop_b_model": None})
    registry.fail = True
    watch = ChampionWatch(registry, interval=60)
    loader = ModelLoader(TrackingSettings(tracking_uri="sqlite:///unused.db"), tmp_path)
    models = FleetModels(clients, watch, ModelCache(2**20), loader)
    watch.refresh()
    cfg = models.client("shop_a")
    with pytest.raises(ServingError, match="registry has not answered yet.*registry down") as e:
        models.champion(cfg)
    assert e.value.status == 503
    registry.fail = False
    watch.refresh()
    with pytest.raises(ServingError, match="no registered model 'shop_a_model'"):
        models.champion(cfg)
    with pytest.raises(ServingError, match="'shop_b_model' has no @champion alias"):
        models.champion(models.client("shop_b"))
    for bad, status in (("nobody", 404), ("../x", 400), ("a" * 65, 400)):
        with pytest.raises(ServingError) as e:
            models.client(bad)
        assert e.value.status == status
