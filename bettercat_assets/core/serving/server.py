"""How `bettercat serve` runs MLflow's scoring server for a client's `@champion`.

Two ways, both MLflow's own server (`mlflow.pyfunc.scoring_server`, uvicorn) on the registered
top-k pyfunc:

* `scoring_server_command` (the default): download the champion's model once, then exec the
  command MLflow itself builds for `--env-manager local` (`scoring_server.get_cmd`), with
  MLflow's app behind `errors.TrimmedErrors` (a 400 says what is wrong in one sentence). One
  process: what `mlflow models serve` runs, without its CLI process (~260 MB) waiting beside it;
* `mlflow_cli_command`: `mlflow models serve -m models:/<client>_model@champion --env-manager
  local`, from the venv's own `mlflow`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.config.errors import ConfigError, ModelNotFoundError
from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.model import store as model_store
from bettercat_assets.core.tracking import runs as tracking

#: MLflow's scoring app, and the same app with 400 messages cut to the useful sentence.
MLFLOW_APP = "mlflow.pyfunc.scoring_server.app:app"
TRIMMED_APP = "bettercat_assets.core.serving.app:app"


@dataclass(frozen=True)
class ServeCommand:
    """What to exec: argv and environment, and which registered version it serves."""

    argv: list[str]
    env: dict[str, str]
    model_name: str
    version: int


def venv_bin() -> Path:
    """The bin folder of the running interpreter (mlflow, uvicorn live there)."""
    return Path(sys.executable).parent


def champion_model_uri(cfg: ClientConfig) -> str:
    return f"models:/{cfg.model_name}@{tracking.CHAMPION_ALIAS}"


def servable_champion(settings: TrackingSettings, cfg: ClientConfig) -> int:
    """The champion's version number; an error when there is none or it predates serving."""
    client = tracking.mlflow_client(settings)
    version = int(tracking.serving_version(client, cfg.model_name, cfg.client_id).version)
    if not model_store.is_serving_layout(settings, cfg.model_name, version):
        raise ModelNotFoundError(
            f"client '{cfg.client_id}': {cfg.model_name} v{version} (@champion) was registered "
            "before top-k serving (sklearn flavour only, one label per product); run "
            f"`bettercat train --client-id {cfg.client_id}` to register a servable version"
        )
    return version


def check_port(client_id: str | None, host: str, port: int) -> None:
    """Refuse a port something already listens on, before a server fails on it (client_id
    None: the fleet server)."""
    who = f"client '{client_id}'" if client_id else "fleet server"
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"{who}: cannot serve on {host}:{port}: {exc.strerror}") from None


def _env(settings: TrackingSettings) -> dict[str, str]:
    path = os.pathsep.join(p for p in [str(venv_bin()), os.environ.get("PATH", "")] if p)
    return {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": settings.tracking_uri}


def mlflow_cli_command(
    settings: TrackingSettings, cfg: ClientConfig, host: str, port: int, workers: int = 1
) -> ServeCommand:
    """`mlflow models serve` on the champion alias (MLflow resolves it once, at start)."""
    version = servable_champion(settings, cfg)
    argv = [
        str(venv_bin() / "mlflow"),
        *("models", "serve", "-m", champion_model_uri(cfg), "--env-manager", "local"),
        *("--host", host, "--port", str(port), "--workers", str(workers)),
    ]
    # MLflow starts `uvicorn` through a shell: the venv's bin goes first on PATH.
    return ServeCommand(argv, _env(settings), cfg.model_name, version)


def scoring_server_command(
    settings: TrackingSettings,
    cfg: ClientConfig,
    host: str,
    port: int,
    model_dir: Path,
    workers: int = 1,
) -> ServeCommand:
    """Download the champion into `model_dir` (replacing what is there) and build MLflow's
    scoring-server command for it."""
    import mlflow.artifacts
    from mlflow.pyfunc import scoring_server

    version = servable_champion(settings, cfg)
    shutil.rmtree(model_dir, ignore_errors=True)
    model_dir.mkdir(parents=True)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{cfg.model_name}/{version}",
        dst_path=str(model_dir),
        tracking_uri=settings.tracking_uri,
    )
    command, env = scoring_server.get_cmd(local, port, host, None, workers)
    program, *args = shlex.split(command)
    if program != "uvicorn" or MLFLOW_APP not in args:  # pragma: no cover - MLflow changed
        raise RuntimeError(f"unexpected MLflow scoring server command: {command}")
    args = [TRIMMED_APP if arg == MLFLOW_APP else arg for arg in args]
    argv = [sys.executable, "-m", "uvicorn", *args]
    return ServeCommand(argv, {**_env(settings), **env}, cfg.model_name, version)
