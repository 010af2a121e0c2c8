"""Monitoring: a reference profile per model version, the current profile counted in the
scoring pass, drift and label-free accuracy per client, and the fleet view over all clients.

`statistic`, `reference`, `estimate`, `strings` and `words` run in Spark workers: numpy and
pyarrow only.

Offers:
- `reference`: ReferenceProfile, build_reference, PROFILE_FILE
- `statistic`: MonitoringStatistic, MonitorSpec, count_slice
- `drift`: DriftReport, compare
- `signals`: MONITORING_CHECKS, monitoring_outcomes, monitoring_numbers, read_summary
- `fleet`: FleetRow, fleet_table, fleet_frame
"""

from bettercat_assets.core._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "ReferenceProfile": "reference",
        "build_reference": "reference",
        "PROFILE_FILE": "reference",
        "MonitoringStatistic": "statistic",
        "MonitorSpec": "statistic",
        "count_slice": "statistic",
        "DriftReport": "drift",
        "compare": "drift",
        "MONITORING_CHECKS": "signals",
        "monitoring_outcomes": "signals",
        "monitoring_numbers": "signals",
        "read_summary": "signals",
        "FleetRow": "fleet",
        "fleet_table": "fleet",
        "fleet_frame": "fleet",
    },
)
