"""Helpers for tests that drive real processes: ports, HTTP readiness, process groups, and the
Dagster webserver's GraphQL API (as the UI uses it).

No pytest import and no fixtures: failures raise AssertionError (or TimeoutError) with the
tails of the processes' logs, so any test module can use these.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

#: Backfill statuses (BulkActionStatus) after which nothing more will happen.
BACKFILL_SUCCESS = frozenset({"COMPLETED", "COMPLETED_SUCCESS"})
BACKFILL_FAILURE = frozenset({"FAILED", "COMPLETED_FAILED", "CANCELED", "CANCELING", "FAILING"})
#: Run statuses that end a run without success.
RUN_FAILURE = frozenset({"FAILURE", "CANCELED", "CANCELING"})


# --- ports and HTTP -------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS's pick)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def http_ok(url: str, timeout: float = 5) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    processes: Iterable[ManagedProcess] = (),
    interval: float = 1.0,
) -> None:
    """Poll `predicate` until true; fail early when one of `processes` has exited."""
    processes = list(processes)
    deadline = time.monotonic() + timeout
    while True:
        for proc in processes:
            proc.assert_alive()
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f}s\n{describe(processes)}")
        time.sleep(interval)


def wait_for_http(
    url: str, timeout: float = 120, *, processes: Iterable[ManagedProcess] = ()
) -> None:
    """Wait for a 2xx answer from `url`."""
    wait_until(lambda: http_ok(url), timeout, f"GET {url}", processes=processes)


# --- processes ------------------------------------------------------------------------------


@dataclass
class ManagedProcess:
    """A command started in its own session (process group), output in a log file."""

    name: str
    popen: subprocess.Popen
    log: Path
    args: list[str] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def assert_alive(self) -> None:
        if not self.alive:
            raise AssertionError(
                f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}"
            )

    def stop(self, grace: float = 20) -> None:
        stop_process_group(self.popen, grace)

    def descendants(self) -> list[str]:
        """The command line of every live process below this one."""
        found = []
        for child in psutil.Process(self.popen.pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                found.append(" ".join(child.cmdline()))
        return found


def start_process(
    name: str,
    args: Sequence[str | os.PathLike],
    *,
    env: Mapping[str, str],
    log: Path,
    cwd: Path | None = None,
) -> ManagedProcess:
    """Start `args` in a new session so that `stop()` reaches every descendant (run workers,
    Spark JVMs, uvicorn workers) through the process group."""
    argv = [str(a) for a in args]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return ManagedProcess(name, popen, log, argv)


def stop_process_group(popen: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM the process group of `popen` (its own session), SIGKILL what is left."""
    pgid = popen.pid  # start_new_session: the leader's pid is the group id
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        try:
            popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone: give its children a moment, then make sure.
        time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        break
    with contextlib.suppress(subprocess.TimeoutExpired):
        popen.wait(timeout=5)


def stop_all(processes: Iterable[ManagedProcess], grace: float = 20) -> None:
    """SIGTERM every process group at once (newest first), then wait for all of them within
    one shared `grace`; SIGKILL what is left. One failing stop does not keep the others running."""
    procs = list(reversed(list(processes)))
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.stop(grace=5)  # SIGKILLs the group's leftovers (children of a leader gone)


def describe(processes: Iterable[ManagedProcess], lines: int = 40) -> str:
    return "\n".join(
        f"--- {p.name} ({'running' if p.alive else f'exit {p.popen.returncode}'}) ---\n"
        f"{p.log_tail(lines)}"
        for p in processes
    )


# --- Dagster GraphQL ------------------------------------------------------------------------

WORKSPACE = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
    ... on PythonError { message }
  }
}
"""

PARTITION_KEYS = """
query Keys($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    __typename
    ... on AssetNode { partitionKeys }
  }
}
"""

# The UI's "Materialize all" for assets sharing one partitions definition sends exactly these
# params (assetSelection + partitionNames, fromFailure false) to this mutation.
LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionSetNotFoundError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}
"""

BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status error { message } }
    ... on PythonError { message }
  }
}
"""

RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs {
      results { runId jobName status startTime endTime tags { key value } assetSelection { path } }
    }
    ... on PythonError { message }
  }
}
"""


def graphql(url: str, query: str, variables: Mapping[str, object] | None = None) -> dict:
    """POST a query to `<url>/graphql`; the `data` of an answer without `errors`."""
    body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
    request = urllib.request.Request(
        f"{url.rstrip('/')}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = json.load(response)
    if payload.get("errors"):
        raise AssertionError(f"GraphQL errors: {payload['errors']}")
    return payload["data"]


def code_locations_loaded(url: str) -> bool:
    """True once every code location is LOADED; AssertionError for one that failed to load."""
    try:
        result = graphql(url, WORKSPACE)["workspaceOrError"]
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False
    if result["__typename"] != "Workspace":
        return False
    entries = result["locationEntries"]
    if not entries or any(e["loadStatus"] != "LOADED" for e in entries):
        return False
    errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
    if errors:
        raise AssertionError(f"code location failed to load: {errors}")
    return True


def wait_for_webserver(
    url: str, timeout: float = 240, *, processes: Iterable[ManagedProcess] = ()
) -> None:
    """Wait for the webserver to answer and every code location to be loaded."""
    processes = list(processes)
    wait_for_http(f"{url}/server_info", timeout, processes=processes)
    wait_until(
        lambda: code_locations_loaded(url), timeout, "code locations loaded", processes=processes
    )


def partition_keys(url: str, asset_path: Sequence[str]) -> list[str]:
    node = graphql(url, PARTITION_KEYS, {"path": list(asset_path)})["assetNodeOrError"]
    assert node["__typename"] == "AssetNode", node
    return node["partitionKeys"]


def launch_partition_backfill(
    url: str,
    asset_paths: Sequence[Sequence[str]],
    partition_names: Sequence[str],
    tags: Mapping[str, str] | None = None,
) -> str:
    """Launch a backfill of `asset_paths` over `partition_names`; its id."""
    params = {
        "assetSelection": [{"path": list(p)} for p in asset_paths],
        "partitionNames": list(partition_names),
        "fromFailure": False,
        "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()],
    }
    result = graphql(url, LAUNCH_BACKFILL, {"backfillParams": params})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


def runs(url: str, job: str | None = None, tags: Mapping[str, str] | None = None) -> list[dict]:
    """Runs (newest first) with `tags` as a dict, optionally of one job / with given tags."""
    run_filter: dict[str, object] = {}
    if job:
        run_filter["pipelineName"] = job
    if tags:
        run_filter["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
    result = graphql(url, RUNS, {"filter": run_filter})["runsOrError"]
    assert result["__typename"] == "Runs", result
    for run in result["results"]:
        run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
    return result["results"]


def wait_for_backfill(
    url: str,
    backfill_id: str,
    timeout: float,
    *,
    processes: Iterable[ManagedProcess] = (),
    interval: float = 5,
) -> str:
    """Wait for the backfill to complete successfully; its final status."""
    processes = list(processes)
    deadline = time.monotonic() + timeout
    status = None
    while True:
        for proc in processes:
            proc.assert_alive()
        backfill = graphql(url, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        status = backfill["status"]
        if status in BACKFILL_SUCCESS:
            return status
        if status in BACKFILL_FAILURE:
            failed = [
                r
                for r in runs(url, tags={"dagster/backfill": backfill_id})
                if r["status"] != "SUCCESS"
            ]
            raise AssertionError(
                f"backfill {status}: {backfill['error']} {failed}\n{describe(processes)}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"backfill still {status} after {timeout:.0f}s: "
                f"{runs(url, tags={'dagster/backfill': backfill_id})}\n{describe(processes)}"
            )
        time.sleep(interval)


def wait_for_runs(
    url: str,
    job: str,
    count: int,
    timeout: float,
    *,
    processes: Iterable[ManagedProcess] = (),
    interval: float = 5,
) -> list[dict]:
    """Wait until `count` runs of `job` succeeded; fail at the first failed one."""
    processes = list(processes)
    deadline = time.monotonic() + timeout
    while True:
        for proc in processes:
            proc.assert_alive()
        found = runs(url, job)
        bad = [r for r in found if r["status"] in RUN_FAILURE]
        if bad:
            raise AssertionError(f"{job} runs failed: {bad}\n{describe(processes)}")
        if sum(r["status"] == "SUCCESS" for r in found) >= count:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{job}: {count} successful runs not after {timeout:.0f}s: {found}\n"
                f"{describe(processes)}"
            )
        time.sleep(interval)
