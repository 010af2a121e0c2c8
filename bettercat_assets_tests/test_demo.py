"""`bettercat demo` end to end with two tiny clients: a readable console, and runs that belong
to the code location's `client_pipeline` job as the Dagster UI sees them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from bettercat_assets_tests.reliability_support import BIN, REPO, subprocess_env

CLIENTS_YAML = """\
defaults:
  model_params: {n_estimators: 8, min_samples_leaf: 3, n_jobs: 1, random_state: 7}
  quality_gate: {min_top5_accuracy: 0.0, max_top5_regression: 1.0, min_lift_over_prior: null}
clients:
  - {client_id: demo_a, features: [price, weight_g], sample_data: {products: 200, categories: 6}}
  - {client_id: demo_b, features: [price], sample_data: {products: 150, categories: 4}}
"""
CLIENTS = ["demo_a", "demo_b"]
LOCATION, REPOSITORY = "bettercat", "__repository__"

#: The query behind a job's Runs tab (PipelineRunsFeedRoot: job name + repository tag), the Jobs
#: sparkline (Pipeline.runs) and the run page's version check (origin and snapshot id).
UI_QUERY = """
query ($runsFilter: RunsFilter!, $selector: PipelineSelector!) {
  runsOrError(filter: $runsFilter) {
    ... on Runs { results { runId status pipelineName pipelineSnapshotId
                            repositoryOrigin { repositoryLocationName repositoryName } } }
  }
  pipelineOrError(params: $selector) {
    ... on Pipeline { pipelineSnapshotId runs(limit: 10) { runId } }
  }
}
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("demo")
    (root / "clients.yaml").write_text(CLIENTS_YAML, encoding="utf-8")
    env = subprocess_env(
        BETTERCAT_CLIENTS_FILE=str(root / "clients.yaml"),
        DATA_PREFIX=str(root / "data"),
        BETTERCAT_HOME=str(root / "home"),
        DAGSTER_HOME=str(root / "dagster_home"),
        MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
        BETTERCAT_ARTIFACT_ROOT=(root / "mlartifacts").as_uri(),
    )
    proc = subprocess.run(
        [str(BIN / "bettercat"), "demo"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(proc.stderr)  # the progress lines, with their timings (shown with -s or on failure)
    return {"proc": proc, "env": env, "home": root / "dagster_home"}


@pytest.mark.integration
@pytest.mark.slow
def test_console_has_a_few_lines_per_client_and_the_table(demo):
    proc = demo["proc"]
    out, err = proc.stdout.splitlines(), proc.stderr.splitlines()
    assert not [line for line in out + err if "DEBUG" in line or "Warning" in line], err
    # stderr: two header lines, then at most ~3 progress lines per client, nothing else
    assert len(err) <= 2 + 3 * len(CLIENTS), err
    assert all(re.match(r"^\[\s*\d+\.\ds\] ", line) for line in err), err
    for client in CLIENTS:
        mine = [line for line in err if f"] {client}: " in line]
        assert 1 <= len(mine) <= 3, err
        assert sum(f"] {client}: done in " in line for line in mine) == 1, err
    header, *rows = [line for line in out if line.strip()]
    assert header.split()[:3] == ["client", "status", "rows"]
    assert [row.split()[:2] for row in rows[: len(CLIENTS)]] == [[c, "ok"] for c in CLIENTS]
    log = Path(demo["home"]) / "logs" / "demo.log"
    assert log.is_file(), "the code server's output should go to the demo log"


@pytest.mark.integration
@pytest.mark.slow
def test_runs_belong_to_the_code_locations_job(demo, monkeypatch):
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster_graphql.test.utils import execute_dagster_graphql

    from bettercat_assets.code_location_runs import workspace_target

    # `make dev` after `make demo`: the same environment and workspace.yaml. (While resources
    # take their settings as values rather than EnvVars, those values are part of the snapshot.)
    for key, value in demo["env"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(REPO)
    with DagsterInstance.from_config(str(demo["home"])) as instance:
        label = f"{REPOSITORY}@{LOCATION}"
        runs = instance.get_runs(
            RunsFilter(job_name="client_pipeline", tags={".dagster/repository": label})
        )
        # One range run over the clients (MAX_CLIENTS_PER_RUN covers them all).
        assert [
            (
                r.tags["dagster/asset_partition_range_start"],
                r.tags["dagster/asset_partition_range_end"],
            )
            for r in runs
        ] == [(CLIENTS[0], CLIENTS[-1])]
        for run in runs:
            assert run.status == DagsterRunStatus.SUCCESS
            assert run.job_name == "client_pipeline"
            origin = run.remote_job_origin
            assert origin.location_name == LOCATION
            assert origin.repository_origin.repository_name == REPOSITORY
            assert run.job_code_origin.repository_origin.code_pointer.module == (
                "bettercat_assets.definitions"
            )

        with (
            WorkspaceProcessContext(instance, workspace_target()) as process,
            process.create_request_context() as workspace,
        ):
            result = execute_dagster_graphql(
                workspace,
                UI_QUERY,
                {
                    "runsFilter": {
                        "pipelineName": "client_pipeline",
                        "tags": [{"key": ".dagster/repository", "value": label}],
                    },
                    "selector": {
                        "repositoryLocationName": LOCATION,
                        "repositoryName": REPOSITORY,
                        "pipelineName": "client_pipeline",
                    },
                },
            )
    assert not result.errors, result.errors
    listed = result.data["runsOrError"]["results"]
    assert sorted(r["runId"] for r in listed) == sorted(r.run_id for r in runs)
    job = result.data["pipelineOrError"]
    assert sorted(r["runId"] for r in job["runs"]) == sorted(r.run_id for r in runs)
    for run in listed:
        # origin and snapshot both match the loaded job: the UI shows no version warning
        assert run["repositoryOrigin"] == {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
        }
        assert run["pipelineSnapshotId"] == job["pipelineSnapshotId"]


# --- the pieces, fast ---------------------------------------------------------------------------


def test_runs_are_ranges_of_consecutive_valid_clients(tmp_path):
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.demo import run_ranges
    from bettercat_assets.partitions import MAX_CLIENTS_PER_RUN

    entries = [
        {"client_id": f"c{i:03d}", "features": ["price"]} for i in range(MAX_CLIENTS_PER_RUN + 3)
    ]
    entries[1]["model_params"] = {"n_estimator": 5}  # invalid: ends the first range
    (tmp_path / "clients.yaml").write_text(yaml.safe_dump({"clients": entries}))
    ranges = run_ranges(load_clients(tmp_path / "clients.yaml"))
    ids = [e["client_id"] for e in entries]
    assert ranges == [ids[:1], ids[2 : 2 + MAX_CLIENTS_PER_RUN], ids[2 + MAX_CLIENTS_PER_RUN :]]


def test_output_to_sends_child_process_output_to_the_file(tmp_path, capfd):
    import sys

    from bettercat_assets.code_location_runs import output_to

    log = tmp_path / "logs" / "demo.log"
    with output_to(log):
        subprocess.run(
            [sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"]
        )
    subprocess.run([sys.executable, "-c", "print('back')"])
    assert log.read_text().split() == ["out", "err"]
    assert capfd.readouterr().out == "back\n"


def test_failure_summary_names_the_step_and_the_first_line():
    from dagster import Failure, instance_for_test, job, op

    from bettercat_assets.code_location_runs import failure_summary

    @op
    def training_data() -> None:
        raise Failure(description="client 'x': model_params: bad key\nsecond line")

    @job
    def broken() -> None:
        training_data()

    with instance_for_test() as instance:
        result = broken.execute_in_process(instance=instance, raise_on_error=False)
        summary = failure_summary(instance, result.run_id)
    assert summary.startswith("training_data: ")
    assert "client 'x': model_params: bad key" in summary and "second line" not in summary


def test_invalid_clients_are_skipped_with_their_error(tmp_path):
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.demo import invalid_rows

    path = tmp_path / "clients.yaml"
    path.write_text(
        "clients:\n  - {client_id: a, features: [p]}\n"
        "  - {client_id: b, features: [p], model_params: {n_estimator: 3}}\n",
        encoding="utf-8",
    )
    lines: list[str] = []
    rows = invalid_rows(load_clients(path), lines.append)
    assert rows == [{"client": "b", "status": "INVALID CONFIG"}]
    assert len(lines) == 1 and "b: skipped" in lines[0] and "'n_estimator'" in lines[0]


@pytest.mark.integration
def test_a_code_location_that_fails_to_load_is_one_clear_error(tmp_path):
    from dagster import instance_for_test
    from dagster._core.workspace.load_target import ModuleTarget

    from bettercat_assets.code_location_runs import RunLaunchError, loaded_job

    target = ModuleTarget(
        module_name="no_such_bettercat_module",
        attribute=None,
        working_directory=None,
        location_name="bettercat",
    )
    with (
        instance_for_test() as instance,
        pytest.raises(RunLaunchError) as info,
        loaded_job(instance, "client_pipeline", target, server_log=tmp_path / "server.log"),
    ):
        pass
    message = str(info.value)
    assert message.startswith("code location 'bettercat': ")
    assert "No module named 'no_such_bettercat_module'" in message and "\n" not in message


def test_progress_line_names_the_gate_metric_when_it_is_not_top5():
    from bettercat_assets.demo import _progress_line

    row = {
        "client": "fjord",
        "status": "ok",
        "rows": 1600,
        "top5_accuracy": 1.0,
        "gate_metric": "accuracy",
        "gate_value": 0.5906,
        "model_version": 1,
        "run_id": "b131eae1-f0cb",
    }
    line = _progress_line(row, 12.0, "")
    assert line == (
        "fjord: done in 12 s: 1600 rows, top-5 1.000, gate judged on accuracy 0.591, "
        "scored with v1 (run b131eae1)"
    )
    top5 = {**row, "gate_metric": "top5_accuracy", "gate_value": 0.9}
    assert "judged on" not in _progress_line(top5, 12.0, "")
