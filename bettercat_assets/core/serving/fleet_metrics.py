"""The fleet server's Prometheus metrics (`GET /metrics`, text format).

Requests by status and cache outcome, their latency, model loads and their time, and at
scrape time the cache (hits, misses, evictions, loaded models, their bytes and the budget),
each loaded model's bytes, and the champion sweep (age, duration, last error). Own registry:
a process may run several servers (tests), and nothing of the default registry leaks in.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bettercat_assets.core.serving.champion_watch import ChampionWatch
from bettercat_assets.core.serving.model_cache import ModelCache

PREFIX = "bettercat_serving"
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StateCollector(Collector):
    """Cache and champion-watch state, read when Prometheus scrapes."""

    def __init__(self, cache: ModelCache, watch: ChampionWatch) -> None:
        self._cache, self._watch = cache, watch

    def collect(self) -> Iterator[Metric]:
        stats = self._cache.stats()
        for name, value, doc in (
            ("cache_hits", stats.hits, "Requests answered by a loaded model."),
            ("cache_misses", stats.misses, "Requests that had to load their model."),
            ("cache_evictions", stats.evictions, "Models evicted to stay within the budget."),
        ):
            yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)
        yield GaugeMetricFamily(f"{PREFIX}_loaded_models", "Models in the cache.", stats.loaded)
        yield GaugeMetricFamily(
            f"{PREFIX}_loaded_bytes", "Bytes of the cached models.", stats.bytes
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_cache_budget_bytes",
            "The cache's budget (--cache-mb).",
            self._cache.budget_bytes,
        )
        per_model = GaugeMetricFamily(
            f"{PREFIX}_model_bytes", "Bytes of each loaded model.", labels=["model", "version"]
        )
        for model_name, version in self._cache.loaded_keys():
            entry = self._cache.peek((model_name, version))
            if entry is not None:
                per_model.add_metric([model_name, str(version)], entry.nbytes)
        yield per_model
        age = time.time() - self._watch.last_sweep_at if self._watch.last_sweep_at else float("nan")
        yield GaugeMetricFamily(
            f"{PREFIX}_champion_sweep_age_seconds", "Seconds since the last good sweep.", age
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_champion_sweep_seconds",
            "Duration of the last good sweep of the registry.",
            self._watch.last_sweep_seconds or float("nan"),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_champion_sweep_error",
            "1 when the last champion sweep failed.",
            1 if self._watch.last_error else 0,
        )


class FleetMetrics:
    """Counters and histograms the server updates, plus the state collector."""

    def __init__(self, cache: ModelCache, watch: ChampionWatch) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            f"{PREFIX}_requests",
            "Invocation requests by HTTP status and cache outcome (hit, miss, none).",
            ["status", "cache"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_request_seconds",
            "Invocation latency inside the server, by cache outcome.",
            ["cache"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.loads = Histogram(
            f"{PREFIX}_model_load_seconds",
            "Time to download (first time) and load a model.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(cache, watch))

    def observe(self, status: int, cache: str, seconds: float) -> None:
        self.requests.labels(str(status), cache).inc()
        self.latency.labels(cache).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
