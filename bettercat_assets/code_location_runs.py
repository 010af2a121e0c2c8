"""Launch runs of a job through the instance and the code location, as the Dagster UI does.

The workspace (by default `workspace.yaml`, the one `make dev` loads) starts its code server; a
run is created from that location's remote job (its snapshot, repository origin and code origin)
and handed to the instance's run launcher. Such a run shows under the job's Runs, in Jobs and in
Overview, with no "may be a different version" warning.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import DagsterEventType, DagsterInstance, DagsterRun
from dagster._core.remote_representation.code_location import CodeLocation
from dagster._core.remote_representation.external import RemoteJob, RemoteRepository
from dagster._core.workspace.context import WorkspaceProcessContext, WorkspaceRequestContext
from dagster._core.workspace.load_target import (
    ModuleTarget,
    WorkspaceFileTarget,
    WorkspaceLoadTarget,
)
from dagster_shared.error import SerializableErrorInfo

#: The code location `workspace.yaml` declares; used when there is no workspace file to read.
DEFAULT_TARGET = ModuleTarget(
    module_name="bettercat_assets.definitions",
    attribute="defs",
    working_directory=None,
    location_name="bettercat",
)

#: Run config for a quiet, quick run: the console logger (the only logger the jobs have) prints
#: warnings and errors only, while the event log still goes to the instance in full (the UI shows
#: every event); all steps run in the run worker's process, which saves a Python start and the
#: import of the definitions per step.
#: The jobs already run in one process (the code location's in-process executor); the console
#: logger shows warnings and errors only (the full event log goes to the instance).
QUIET_IN_PROCESS: dict[str, Any] = {
    "loggers": {"console": {"config": {"log_level": "WARNING"}}},
}


class RunLaunchError(RuntimeError):
    """The workspace did not load, or a run could not be created or launched."""


@dataclass(frozen=True)
class LoadedJob:
    """A job of a loaded code location, ready to launch runs of."""

    workspace: WorkspaceRequestContext
    location: CodeLocation
    repository: RemoteRepository
    job: RemoteJob

    def launch(self, tags: Mapping[str, str], run_config: Mapping[str, Any]) -> DagsterRun:
        """Create a run of the job, as the UI's launch mutation does, and launch it now.

        The instance's run launcher starts it (bypassing a queue, which needs a daemon).
        """
        instance = self.workspace.instance
        plan = self.location.get_execution_plan(
            self.job, dict(run_config), step_keys_to_execute=None, known_state=None
        )
        run = instance.create_run(
            job_name=self.job.name,
            run_id=None,
            run_config=dict(run_config),
            resolved_op_selection=None,
            step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags={**self.job.tags, **tags},
            job_snapshot=self.job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=self.job.parent_job_snapshot,
            remote_job_origin=self.job.get_remote_origin(),
            job_code_origin=self.job.get_python_origin(),
            asset_selection=None,
            asset_check_selection=None,
            asset_graph=self.repository.asset_graph,
        )
        return instance.launch_run(run.run_id, self.workspace)


def workspace_target(workspace_file: Path | None = None) -> WorkspaceLoadTarget:
    """The given workspace file, else ./workspace.yaml if present, else the bettercat module."""
    if workspace_file is not None:
        return WorkspaceFileTarget(paths=[str(workspace_file)])
    if Path("workspace.yaml").is_file():
        return WorkspaceFileTarget(paths=["workspace.yaml"])
    return DEFAULT_TARGET


@contextmanager
def output_to(log_file: Path | None) -> Iterator[None]:
    """Point this process's stdout/stderr file descriptors at a file for the block (no-op for
    None), so that subprocesses started meanwhile, and theirs, write there."""
    if log_file is None:
        yield
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    try:
        with log_file.open("ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


@contextmanager
def loaded_job(
    instance: DagsterInstance,
    job_name: str,
    target: WorkspaceLoadTarget | None = None,
    server_log: Path | None = None,
) -> Iterator[LoadedJob]:
    """Start the workspace's (single) code location and yield its job; stop the server after.

    With `server_log`, the code server's output and that of the run workers it starts (Dagster's
    console, MLflow's and Spark's messages) go to that file instead of this terminal, as they
    would go to `dagster dev`'s terminal; the event log and each step's captured output still go
    to the instance.
    """
    with output_to(server_log), warnings.catch_warnings():
        # a load error is raised below as one line; Dagster would also warn about it here
        warnings.filterwarnings("ignore", "Error loading repository location", UserWarning)
        process = WorkspaceProcessContext(
            instance, target or workspace_target(), code_server_log_level="WARNING"
        )
    with process, process.create_request_context() as workspace:
        entries = list(workspace.get_code_location_entries().values())
        if len(entries) != 1:
            raise RunLaunchError(f"expected one code location in the workspace, got {len(entries)}")
        if entries[0].load_error or entries[0].code_location is None:
            reason = root_cause(entries[0].load_error) if entries[0].load_error else "not loaded"
            raise RunLaunchError(f"code location '{entries[0].origin.location_name}': {reason}")
        location = entries[0].code_location
        (repository,) = location.get_repositories().values()
        if not repository.has_job(job_name):
            raise RunLaunchError(f"code location '{location.name}' has no job '{job_name}'")
        yield LoadedJob(workspace, location, repository, repository.get_full_job(job_name))


def root_cause(error: SerializableErrorInfo) -> str:
    """The first line of the innermost cause: the user's own error, not Dagster's wrapper."""
    while error.cause is not None:
        error = error.cause
    lines = error.message.strip().splitlines()
    return lines[0] if lines else error.cls_name or "unknown error"


def wait_for_run(
    instance: DagsterInstance, run_id: str, timeout: float = 3600, poll: float = 0.5
) -> DagsterRun:
    """Block until the run has finished (success, failure or canceled)."""
    deadline = time.monotonic() + timeout
    while True:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return run
        if time.monotonic() > deadline:
            raise RunLaunchError(f"run {run_id} did not finish within {timeout:.0f} s")
        time.sleep(poll)


def failure_summary(instance: DagsterInstance, run_id: str) -> str:
    """What failed, in one line: the first failed step and its error's first line."""
    for record in instance.get_records_for_run(
        run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}
    ).records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        if event.is_step_failure and event.step_failure_data.error:
            first = event.step_failure_data.error.message.strip().splitlines()[0]
            return f"{event.step_key}: {first}"
        if event.message:
            return event.message.strip().splitlines()[0]
    return "run failed (see the run's event log in the UI)"
