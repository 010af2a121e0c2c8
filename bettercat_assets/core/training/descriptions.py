"""What MLflow shows at the top of a training's pages: the registered model's description (what
the model is, how it is scored), each version's (the gate's verdict, metric and values) and the
run's (the same verdict, with links to the version and the Dagster run; MLflow renders
descriptions as Markdown, tags as plain text)."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.tracking import runs as tracking
from bettercat_assets.core.tracking.views import set_gate_view
from bettercat_assets.core.training.gate import GateResult, p_text

#: The tag MLflow shows as a run's description.
RUN_DESCRIPTION_TAG = "mlflow.note.content"


def gate_summary(gate: GateResult) -> str:
    """One Markdown line: the verdict, the metric that judged and its values."""
    values = [f"**{gate.metric} {gate.value:.4f}**"]
    if gate.floor is not None:
        values.append(f"floor {gate.floor:.4f}")
    if gate.baseline_value is not None:
        chance = f", {p_text(gate.p_value)}" if gate.p_value is not None else ""
        values.append(f"baseline {gate.baseline_metric} {gate.baseline_value:.4f}{chance}")
    if gate.champion_value is not None:
        values.append(f"champion v{gate.champion_version} {gate.champion_value:.4f}")
    return f"Quality gate **{gate.verdict}**, judged on `{gate.metric}`: " + ", ".join(values)


def version_description(gate: GateResult, champion_after: int | None, version: int) -> str:
    """The version page's description: verdict first, then why, then what became champion."""
    if gate.passed:
        outcome = f"v{version} is `@champion`."
    elif champion_after is not None:
        outcome = f"`@champion` stays v{champion_after}."
    else:
        outcome = "The client has no `@champion` yet."
    return f"{gate_summary(gate)}.\n\n{gate.reason}.\n\n{outcome}"


def run_description(
    gate: GateResult, version_url: str, version: int, dagster_run_url: str | None
) -> str:
    """The run page's description: the verdict, the version and the Dagster run as links."""
    lines = [f"{gate_summary(gate)}.", "", f"Registered as [version {version}]({version_url})."]
    if dagster_run_url:
        run_id = dagster_run_url.rstrip("/").rsplit("/", 1)[-1]
        lines.append(f"Trained by Dagster run [{run_id[:8]}]({dagster_run_url}).")
    return "\n".join(lines)


def model_description(client: ClientConfig) -> str:
    """The registered model's description: what it is and how it is scored."""
    features = ", ".join(f"`{f}`" for f in client.features)
    return (
        f"Product categorisation for client `{client.client_id}`: a scikit-learn "
        f"RandomForest over {len(client.features)} features ({features}), registered as an "
        f"MLflow pyfunc that answers with the top {client.top_k} categories per product "
        "(`product_id`, `pred_label`, `pred_score`, `rank`, `model_version`) from a compact, "
        "pickle-free form of the forest.\n\n"
        "Each training registers a version; the alias `@champion` moves to it only when it "
        "passes the quality gate (top-5 accuracy on the held-out split, or top-1 accuracy "
        "against the most-frequent-category baseline when a client has at most 5 categories). "
        "bettercat scores `@champion` in batch with Spark (`bettercat predict`, Dagster's "
        "`category_predictions`) and serves it over HTTP (`bettercat serve`, "
        "`mlflow models serve`)."
    )


def describe_registration(
    client: MlflowClient,
    cfg: ClientConfig,
    version: int,
    gate: GateResult,
    champion_after: int | None,
) -> None:
    """Write the registered model's and the new version's descriptions."""
    client.update_registered_model(cfg.model_name, description=model_description(cfg))
    client.update_model_version(
        cfg.model_name, str(version), description=version_description(gate, champion_after, version)
    )


def describe_training(
    client: MlflowClient,
    settings: TrackingSettings,
    experiment_id: str,
    run_tags: dict[str, str],
    cfg: ClientConfig,
    version: int,
    gate: GateResult,
    champion_after: int | None,
) -> None:
    """The verdict where MLflow users look, from inside the training's active run: the run's
    description and gate tags, the registered model's and version's descriptions, and the
    runs list's gate columns."""
    import mlflow

    url = tracking.model_version_url(settings, cfg.model_name, version)
    description = run_description(gate, url, version, run_tags.get("dagster_run_url"))
    mlflow.set_tags(
        {
            "gate_status": gate.verdict,
            "gate_metric": gate.metric,
            "gate_reason": gate.reason,
            RUN_DESCRIPTION_TAG: description,
        }
    )
    describe_registration(client, cfg, version, gate, champion_after)
    set_gate_view(client, experiment_id, gate.metric, gate.baseline_metric)
