"""MLflow tracking: client, experiments, champion alias, UI links, and lineage (code version).

Offers:
- `runs`: mlflow_client, ensure_experiment, champion_version, serving_version, set_champion, CHAMPION_ALIAS
- `views`: set_gate_view, runs_url (the runs list with the gate's columns)
- `lineage`: code_version, git_sha
"""

from bettercat_assets.core._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "mlflow_client": "runs",
        "ensure_experiment": "runs",
        "champion_version": "runs",
        "serving_version": "runs",
        "set_champion": "runs",
        "CHAMPION_ALIAS": "runs",
        "set_gate_view": "views",
        "runs_url": "views",
        "code_version": "lineage",
        "git_sha": "lineage",
    },
)
