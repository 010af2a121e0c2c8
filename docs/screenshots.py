"""Retake the screenshots in docs/img with headless Chromium (Debian's `chromium` package).

Needs a running `dagster dev` (`make dev`, http://127.0.0.1:3000) and MLflow UI
(`make mlflow-ui`, http://127.0.0.1:5000) on a state with materialized clients, e.g. after
`make demo`. Install the browser once with `apt-get update && apt-get install -y chromium`.

    .venv/bin/python docs/screenshots.py                  # every shot into docs/img
    .venv/bin/python docs/screenshots.py --only partitions.png --out /tmp/shots

The shots: `asset_graph.png` (Lineage), `partitions.png` (registered_model's Partitions tab on
`--client-id`), both used by README.md and docs/ui.md, `mlflow_runs.png` (the client's runs
list in the "Model training" view, opened through the `bettercat-gate` view the training writes:
the gate metric, its baseline and the verdict as columns) and `mlflow_model_version.png` (the
`@champion` version page of `--version-client-id`, default the 5-category `fjord_outdoor`: the
gate's verdict in the version's description), both used by docs/ui.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DOCS_IMG = Path(__file__).resolve().parent / "img"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
#: A PNG smaller than this is a blank or error page, not a screenshot of the UI.
MIN_PNG_BYTES = 20_000


class ScreenshotError(Exception):
    """A user-facing problem: a UI not running, no browser, an unknown client."""


@dataclass(frozen=True)
class Shot:
    """One screenshot: the file in docs/img and the page it shows."""

    file: str
    url: str


def _get_json(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise ScreenshotError(f"GET {url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ScreenshotError(f"GET {url}: {exc}; is the UI running?") from None


def require_up(url: str, what: str, hint: str) -> None:
    """Fail with one line when the UI at `url` does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=10):
            return
    except (urllib.error.URLError, OSError) as exc:
        raise ScreenshotError(
            f"{what} is not answering at {url} ({exc}); start it: {hint}"
        ) from None


def dismiss_dagster_welcome(dagster_url: str) -> None:
    """Mark the "Join the Dagster community" dialog as seen (`setNuxSeen`, what its Skip button
    sends), so it does not cover the shots; a fresh browser profile would show it every time."""
    request = urllib.request.Request(
        f"{dagster_url}/graphql",
        data=json.dumps({"query": "mutation SetNuxSeen { setNuxSeen }"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
    except (urllib.error.URLError, OSError) as exc:
        raise ScreenshotError(f"POST {dagster_url}/graphql: {exc}") from None
    if answer.get("errors"):
        raise ScreenshotError(f"setNuxSeen: {answer['errors'][0].get('message')}")


def experiment_id(mlflow_url: str, client_id: str) -> str:
    """The id of the client's experiment `bettercat/<client_id>`, from MLflow's REST API."""
    query = urllib.parse.urlencode({"experiment_name": f"bettercat/{client_id}"})
    try:
        answer = _get_json(f"{mlflow_url}/api/2.0/mlflow/experiments/get-by-name?{query}")
    except ScreenshotError as exc:
        raise ScreenshotError(
            f"client '{client_id}': no MLflow experiment bettercat/{client_id} ({exc}); "
            "train it first (make demo)"
        ) from None
    return answer["experiment"]["experiment_id"]


def champion_version(mlflow_url: str, client_id: str) -> str:
    """The `@champion` version of the client's registered model, from MLflow's REST API."""
    query = urllib.parse.urlencode({"name": f"{client_id}_model", "alias": "champion"})
    try:
        answer = _get_json(f"{mlflow_url}/api/2.0/mlflow/registered-models/alias?{query}")
    except ScreenshotError as exc:
        raise ScreenshotError(f"client '{client_id}': no @champion ({exc})") from None
    return answer["model_version"]["version"]


def shots(
    dagster_url: str,
    mlflow_url: str,
    client_id: str,
    mlflow_experiment: str,
    version_client: tuple[str, str],
) -> list[Shot]:
    partition = urllib.parse.quote(client_id)
    model, version = f"{version_client[0]}_model", version_client[1]
    return [
        Shot("asset_graph.png", f"{dagster_url}/asset-groups"),
        Shot(
            "partitions.png",
            f"{dagster_url}/assets/registered_model?view=partitions&partition={partition}",
        ),
        Shot(
            "mlflow_runs.png",
            f"{mlflow_url}/#/experiments/{mlflow_experiment}/runs"
            "?viewStateShareKey=bettercat-gate&workflowType=machine_learning",
        ),
        Shot(
            "mlflow_model_version.png",
            f"{mlflow_url}/#/models/{model}/versions/{version}?workflowType=machine_learning",
        ),
    ]


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    raise ScreenshotError(
        "no chromium on PATH; install it: apt-get update && apt-get install -y chromium"
    )


def take(browser: str, shot: Shot, out_dir: Path, budget_ms: int, size: str) -> Path:
    """Load `shot.url` in a fresh profile, let it render for `budget_ms`, save the PNG."""
    target = out_dir / shot.file
    target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="bettercat-chromium-") as profile:
        command = [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={size}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={target}",
            shot.url,
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=budget_ms / 1000 + 90
        )
    if done.returncode != 0 or not target.exists():
        tail = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise ScreenshotError(f"{shot.file}: chromium exited {done.returncode}: {tail[0]}")
    if target.stat().st_size < MIN_PNG_BYTES:
        raise ScreenshotError(
            f"{shot.file}: only {target.stat().st_size} bytes, the page did not render "
            f"({shot.url}); raise --budget-ms"
        )
    return target


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dagster-url", default="http://127.0.0.1:3000")
    parser.add_argument("--mlflow-url", default="http://127.0.0.1:5000")
    parser.add_argument("--client-id", default="acme_fashion", help="The partition to show.")
    parser.add_argument(
        "--version-client-id", default="fjord_outdoor", help="The client whose version to show."
    )
    parser.add_argument("--out", type=Path, default=DOCS_IMG, help="Default docs/img.")
    parser.add_argument("--only", action="append", default=[], help="Only this file (repeatable).")
    parser.add_argument("--budget-ms", type=int, default=20_000, help="Render time per page.")
    parser.add_argument("--window-size", default="1600,1000")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> list[Path]:
    dagster_url, mlflow_url = args.dagster_url.rstrip("/"), args.mlflow_url.rstrip("/")
    browser = chromium()
    require_up(f"{dagster_url}/server_info", "dagster dev", "make dev")
    require_up(f"{mlflow_url}/health", "the MLflow UI", "make mlflow-ui")
    dismiss_dagster_welcome(dagster_url)
    version_client = (
        args.version_client_id,
        champion_version(mlflow_url, args.version_client_id),
    )
    selected = shots(
        dagster_url,
        mlflow_url,
        args.client_id,
        experiment_id(mlflow_url, args.client_id),
        version_client,
    )
    unknown = set(args.only) - {s.file for s in selected}
    if unknown:
        raise ScreenshotError(f"--only: unknown file(s) {sorted(unknown)}")
    args.out.mkdir(parents=True, exist_ok=True)
    return [
        take(browser, shot, args.out, args.budget_ms, args.window_size)
        for shot in selected
        if not args.only or shot.file in args.only
    ]


def main(argv: list[str] | None = None) -> int:
    try:
        for path in run(parse_args(argv)):
            print(path)
    except ScreenshotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
