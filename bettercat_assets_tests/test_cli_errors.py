"""User mistakes on the command line: exit code 2 and one `error:` line, never a traceback."""

from __future__ import annotations

import csv
import gzip
import io
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bettercat_assets.cli import main

CLIENTS = """\
defaults:
  model_params: {n_estimators: 5, random_state: 1}
clients:
  - client_id: acme_shop
    features: [price, weight_g]
  - client_id: blue_store
    features: [price]
"""

PROGRESS_LINE = re.compile(r"^\[\s*\d+\.\ds\] ")


@pytest.fixture
def env(tmp_path, monkeypatch) -> dict[str, Path]:
    """A tmp clients file and data prefix; MLflow and state folders confined to tmp_path."""
    clients = tmp_path / "clients.yaml"
    clients.write_text(CLIENTS, encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BETTERCAT_CLIENTS_FILE", str(clients))
    monkeypatch.setenv("DATA_PREFIX", str(data))
    monkeypatch.setenv("BETTERCAT_HOME", str(tmp_path / ".bettercat"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("BETTERCAT_ARTIFACT_ROOT", raising=False)
    return {"clients": clients, "data": data, "root": tmp_path}


def write_train(data: Path, client_id: str, rows: list[list[str]]) -> Path:
    path = data / "train" / f"client_id={client_id}" / "data_train.csv.gz"
    path.parent.mkdir(parents=True)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path.write_bytes(gzip.compress(buffer.getvalue().encode("utf-8")))
    return path


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def error_line(result: Result, *, only_line: bool = True) -> str:
    """Check the user-error contract and return the `error:` line."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines, "nothing on stderr"
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, lines
    assert lines[-1] == errors[0], lines
    if only_line:
        assert lines == errors, lines
    else:
        # Anything before the error is a timestamped progress line, not a stack trace.
        assert all(PROGRESS_LINE.match(line) for line in lines[:-1]), lines
    return errors[0]


def test_unknown_client_id(env):
    line = error_line(run("train", "--client-id", "acme_shopp"))
    assert "unknown client 'acme_shopp'" in line
    assert str(env["clients"]) in line
    assert "did you mean 'acme_shop'" in line


def test_clients_file_option_wins_over_env(env, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text("clients:\n  - client_id: zed\n    features: [a]\n", encoding="utf-8")
    line = error_line(run("train", "--clients-file", str(other), "--client-id", "acme_shop"))
    assert "unknown client 'acme_shop'" in line
    assert str(other) in line


def test_missing_clients_file(env, tmp_path):
    missing = tmp_path / "nope.yaml"
    line = error_line(run("train", "--clients-file", str(missing), "--client-id", "acme_shop"))
    assert str(missing) in line
    assert "clients file not found" in line


def test_invalid_clients_file_names_client_and_key(env):
    env["clients"].write_text(
        "clients:\n  - client_id: acme_shop\n    features: [price]\n"
        "    model_params: {n_estimater: 3}\n",
        encoding="utf-8",
    )
    line = error_line(run("train", "--client-id", "acme_shop"))
    assert str(env["clients"]) in line
    assert "client 'acme_shop'" in line
    assert "'n_estimater'" in line
    assert "did you mean 'n_estimators'" in line


def test_missing_training_file(env):
    expected = env["data"] / "train" / "client_id=acme_shop" / "data_train.csv.gz"
    line = error_line(run("train", "--client-id", "acme_shop"), only_line=False)
    assert line == f"error: client 'acme_shop': {expected.resolve()}: file not found"
    assert not (env["root"] / "mlruns").exists()


def test_data_prefix_option(env, tmp_path):
    prefix = tmp_path / "elsewhere"
    line = error_line(
        run("train", "--data-prefix", str(prefix), "--client-id", "blue_store"), only_line=False
    )
    assert "client 'blue_store'" in line
    assert str(prefix.resolve() / "train" / "client_id=blue_store" / "data_train.csv.gz") in line
    assert "file not found" in line


def test_missing_column(env):
    path = write_train(
        env["data"],
        "acme_shop",
        [["product_id", "price", "category_id"], ["p1", "1", "a"], ["p2", "2", "b"]],
    )
    line = error_line(run("train", "--client-id", "acme_shop"), only_line=False)
    assert "client 'acme_shop'" in line
    assert str(path.resolve()) in line
    assert "missing column 'weight_g'" in line


def test_non_numeric_feature(env):
    path = write_train(
        env["data"],
        "blue_store",
        [["product_id", "price", "category_id"], ["p1", "1", "a"], ["p2", "two", "b"]],
    )
    line = error_line(run("train", "--client-id", "blue_store"), only_line=False)
    assert "client 'blue_store'" in line
    assert str(path.resolve()) in line
    assert "column 'price'" in line and "line 3" in line and "'two'" in line


def test_features_override_names_missing_column(env):
    write_train(
        env["data"],
        "blue_store",
        [["product_id", "price", "category_id"], ["p1", "1", "a"], ["p2", "2", "b"]],
    )
    line = error_line(
        run("train", "--client-id", "blue_store", "--features", "price, colour"), only_line=False
    )
    assert "client 'blue_store'" in line
    assert "missing column 'colour'" in line


def test_empty_features_override(env):
    line = error_line(run("train", "--client-id", "blue_store", "--features", " , "))
    assert line == "error: client 'blue_store': --features is empty"


def test_invalid_model_params_json(env):
    line = error_line(
        run("train", "--client-id", "acme_shop", "--model-params", "{n_estimators: 5")
    )
    assert line.startswith("error: client 'acme_shop': --model-params:")
    assert "Expecting property name" in line


def test_unknown_model_param(env):
    line = error_line(
        run("train", "--client-id", "acme_shop", "--model-params", '{"max_detph": 3}')
    )
    assert "client 'acme_shop'" in line
    assert "--model-params" in line
    assert "'max_detph'" in line
    assert "did you mean 'max_depth'" in line


def test_invalid_model_param_value(env):
    line = error_line(
        run("train", "--client-id", "acme_shop", "--model-params", '{"n_estimators": -3}')
    )
    assert "client 'acme_shop'" in line
    assert "'n_estimators'" in line
    assert "-3" in line


def test_model_params_json_that_is_not_an_object(env):
    line = error_line(run("train", "--client-id", "acme_shop", "--model-params", "[1, 2]"))
    assert "client 'acme_shop'" in line
    assert "--model-params" in line


# --- one client's bad entry: its commands fail, the others' work, check-config lists all ------

BAD_B = """\
defaults:
  model_params: {n_estimators: 5, random_state: 1}
clients:
  - {client_id: A, features: [price]}
  - {client_id: B, features: [price], model_params: {n_estimator: 3}}
  - {client_id: ../up, features: [price]}
"""


def test_bad_client_command_exits_2_naming_client_and_key(env):
    env["clients"].write_text(BAD_B, encoding="utf-8")
    line = error_line(run("train", "--client-id", "B"))
    assert line == (
        f"error: {env['clients']}: client 'B': model_params: unknown RandomForestClassifier "
        "parameter 'n_estimator' (did you mean 'n_estimators'?)"
    )


def test_good_client_of_a_file_with_a_bad_one_still_runs(env):
    env["clients"].write_text(BAD_B, encoding="utf-8")
    result = run("generate-data", "--client-id", "A")
    assert result.exit_code == 0, result.output
    assert (env["data"] / "train" / "client_id=A" / "data_train.csv.gz").exists()


def test_generate_data_for_all_skips_bad_clients_and_says_so(env):
    env["clients"].write_text(BAD_B, encoding="utf-8")
    line = error_line(run("generate-data"), only_line=False)
    assert "2 problem(s), invalid clients skipped" in line and "check-config" in line
    assert (env["data"] / "train" / "client_id=A").exists()
    assert not (env["data"] / "train" / "client_id=B").exists()


def test_check_config_lists_every_problem_and_exits_2(env):
    env["clients"].write_text(BAD_B, encoding="utf-8")
    result = run("check-config")
    assert result.exit_code == 2, result.output
    listed = result.stdout.splitlines()
    assert len(listed) == 2
    assert listed[0].startswith(f"{env['clients']}: client 'B': model_params: ")
    assert "client '../up': client_id:" in listed[1] and "left out" in listed[1]
    assert result.stderr.splitlines() == [
        f"error: {env['clients']}: 1 of 2 client partition(s) valid; 2 problem(s) listed above"
    ]


def test_check_config_on_a_valid_file_exits_0(env):
    result = run("check-config")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("2 of 2 client partition(s) valid; no problems")


def test_check_config_on_invalid_yaml_is_one_line(env):
    env["clients"].write_text("clients: [\n", encoding="utf-8")
    line = error_line(run("check-config"))
    assert "invalid YAML" in line and str(env["clients"]) in line


def test_missing_path_is_one_error_line(env):
    missing = env["root"] / "data" / "products_categories" / "part-0.parquet"
    line = error_line(run("lineage", str(missing)))
    assert line == f"error: {missing}: no such file or directory"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["predict", "--client-id", "acme_shop", "--version", "abc"], "'abc' is not a valid"),
        (["lineage"], "Missing argument 'PARQUET_PATH'"),
        (["retrain"], "No such command 'retrain'"),
        (["show", "--client", "acme_shop"], "No such option '--client'"),
    ],
)
def test_click_usage_errors_are_one_error_line(env, args, expected):
    """Click's own errors get the same one line as every other user mistake, not its usage block."""
    line = error_line(run(*args))
    assert expected in line and "--help" in line, line


def test_help_still_works(env):
    result = run("lineage", "--help")
    assert result.exit_code == 0 and "PARQUET_PATH" in result.stdout
