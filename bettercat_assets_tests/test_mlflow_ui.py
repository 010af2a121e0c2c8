"""`bettercat mlflow-ui` started by its full path, as `make mlflow-ui` does, with a PATH that
does not contain the venv: it must start the venv's own MLflow, not search PATH for one."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from bettercat_assets_tests.process_support import (
    free_port,
    start_process,
    stop_process_group,
    wait_for_http,
)

pytestmark = pytest.mark.slow  # a real `mlflow ui` process

BIN = Path(sys.executable).parent
PLAIN_PATH = "/usr/bin:/bin"


def test_mlflow_ui_runs_the_venvs_mlflow_without_the_venv_on_path(tmp_path):
    assert shutil.which("mlflow", path=PLAIN_PATH) is None, "PATH must not find an mlflow"
    port = free_port()
    env = {
        **os.environ,
        "PATH": PLAIN_PATH,
        "BETTERCAT_HOME": str(tmp_path / "home"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    env.pop("VIRTUAL_ENV", None)
    env.pop("BETTERCAT_ARTIFACT_ROOT", None)
    ui = start_process(
        "bettercat mlflow-ui",
        [BIN / "bettercat", "mlflow-ui", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        log=tmp_path / "mlflow-ui.log",
        cwd=tmp_path,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", timeout=90, processes=[ui])
        assert "workflowType=machine_learning" in ui.log_tail(), ui.log_tail()
        # The exec'd process (same pid) is this venv's interpreter running MLflow.
        proc = Path("/proc") / str(ui.popen.pid)
        assert Path(os.readlink(proc / "exe")) == Path(sys.executable).resolve()
        argv = (proc / "cmdline").read_bytes().split(b"\0")
        assert argv[0] == os.fsencode(sys.executable) and argv[1:4] == [b"-m", b"mlflow", b"ui"]
        # MLflow's job runner (started beside the server, before it answers) is off.
        tree = ui.descendants()
        assert tree, "the UI's server process"
        assert not [cmd for cmd in tree if "mlflow.server.jobs" in cmd], tree
        # One uvicorn worker (MLflow's default is four spawned worker processes).
        assert len([cmd for cmd in tree if "spawn_main" in cmd]) <= 1, tree
    finally:
        stop_process_group(ui.popen)
    assert ui.popen.poll() is not None
