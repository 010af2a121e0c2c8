"""clients.yaml loading: shipped file, defaults merge, and one clear ConfigError per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from bettercat_assets.core.config.clients import (
    CLIENTS_FILE_ENV,
    DEFAULT_MODEL_PARAMS,
    clients_file_path,
    load_clients,
)
from bettercat_assets.core.config.errors import ConfigError, UnknownClientError

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = REPO_ROOT / "clients.yaml"

SHIPPED_IDS = [
    "acme_fashion",
    "blue_hardware",
    "citrus_grocery",
    "delta_books",
    "echo_electronics",
    "fjord_outdoor",
    "garnet_beauty",
    "harbor_home",
    "indigo_toys",
    "juniper_pets",
]

DEFAULTS = """\
defaults:
  model_params:
    n_estimators: 100
    min_samples_leaf: 5
    random_state: 7
  top_k: 5
  test_size: 0.25
  quality_gate:
    min_top5_accuracy: 0.3
    max_top5_regression: 0.05
  data_checks:
    max_null_share: 0.1
    min_rows: 20
"""


def write(tmp_path: Path, text: str, name: str = "clients.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def client_block(
    client_id: str = "acme", features: str = "[price, weight_g]", extra: str = ""
) -> str:
    block = f"  - client_id: {client_id}\n    features: {features}\n"
    return block + "".join(f"    {line}\n" for line in extra.splitlines() if line)


def client_error(tmp_path: Path, text: str, client_id: str) -> str:
    """The file loads; the client keeps its partition and `get` raises its one-line error."""
    path = write(tmp_path, text)
    registry = load_clients(path)
    assert client_id in registry.client_ids
    assert client_id not in registry.clients
    with pytest.raises(ConfigError) as info:
        registry.get(client_id)
    message = str(info.value)
    assert message.startswith(f"{path}: client '{client_id}': "), message
    assert "\n" not in message, message
    assert message.split(" (+")[0] in registry.problems
    return message


def left_out(tmp_path: Path, text: str) -> list[str]:
    """The file loads without the entry's partition; its problem lines."""
    registry = load_clients(write(tmp_path, text))
    assert registry.problems
    assert all("\n" not in line and str(registry.path) in line for line in registry.problems)
    return registry.problems


def load_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_clients(path)
    message = str(info.value)
    assert str(path) in message, message
    assert "\n" not in message, message
    return message


# --- the shipped file and the defaults merge ---------------------------------------------------


def test_shipped_clients_yaml_loads_ten_clients():
    registry = load_clients(SHIPPED)
    assert registry.client_ids == SHIPPED_IDS
    assert registry.path == SHIPPED
    for cfg in registry.clients.values():
        assert cfg.features, cfg.client_id
        assert cfg.model_name == f"{cfg.client_id}_model"
        assert cfg.experiment_name == f"bettercat/{cfg.client_id}"
        assert cfg.id_column == "product_id"
        assert cfg.label_column == "category_id"


def test_shipped_client_overrides_merge_over_defaults():
    registry = load_clients(SHIPPED)
    citrus = registry.get("citrus_grocery")
    assert citrus.model_params == {
        "n_estimators": 60,
        "min_samples_leaf": 10,
        "max_features": "sqrt",
        "n_jobs": -1,
        "random_state": 42,
    }
    assert citrus.features == (
        "price",
        "weight_g",
        "shelf_life_days",
        "is_organic",
        "calories",
        "sugar_g",
        "protein_g",
    )
    echo = registry.get("echo_electronics")
    assert echo.model_params["max_leaf_nodes"] == 800
    assert echo.model_params["n_estimators"] == 60
    assert echo.model_params["min_samples_leaf"] == 5  # from defaults
    acme = registry.get("acme_fashion")  # a text client: defaults.text_model_params apply
    assert acme.model_params == {**DEFAULT_MODEL_PARAMS, "min_samples_leaf": 1}
    assert acme.quality_gate.min_top5_accuracy == pytest.approx(0.30)
    assert acme.sample_data.products == 20000


def test_client_settings_override_defaults(tmp_path):
    text = (
        DEFAULTS
        + "clients:\n"
        + client_block("plain")
        + client_block(
            "custom",
            extra="model_params: {n_estimators: 7, max_depth: 4}\n"
            "top_k: 3\n"
            "test_size: 0.5\n"
            "quality_gate: {min_top5_accuracy: 0.9}\n"
            "data_checks: {min_rows: 1000}\n",
        )
    )
    registry = load_clients(write(tmp_path, text))
    plain, custom = registry.get("plain"), registry.get("custom")

    assert plain.model_params == {"n_estimators": 100, "min_samples_leaf": 5, "random_state": 7}
    assert (plain.top_k, plain.test_size) == (5, 0.25)
    assert plain.quality_gate.max_top5_regression == pytest.approx(0.05)

    assert custom.model_params == {
        "n_estimators": 7,
        "min_samples_leaf": 5,
        "random_state": 7,
        "max_depth": 4,
    }
    assert (custom.top_k, custom.test_size) == (3, 0.5)
    # A partial nested block overrides only the keys it sets; the rest keep `defaults`.
    assert custom.quality_gate.min_top5_accuracy == pytest.approx(0.9)
    assert custom.quality_gate.max_top5_regression == pytest.approx(0.05)
    assert custom.data_checks.min_rows == 1000
    assert custom.data_checks.max_null_share == pytest.approx(0.1)


def test_without_defaults_block_builtin_defaults_apply(tmp_path):
    registry = load_clients(write(tmp_path, "clients:\n" + client_block("solo")))
    solo = registry.get("solo")
    assert solo.model_params == DEFAULT_MODEL_PARAMS
    assert solo.top_k == 5
    assert solo.features == ("price", "weight_g")


def test_env_var_overrides_clients_file_path(tmp_path, monkeypatch):
    path = write(tmp_path, "clients:\n" + client_block("from_env"), name="other.yaml")
    monkeypatch.setenv(CLIENTS_FILE_ENV, str(path))
    assert clients_file_path() == path
    registry = load_clients()
    assert registry.client_ids == ["from_env"]
    assert registry.path == path
    # An explicit path still wins over the environment.
    assert load_clients(SHIPPED).client_ids == SHIPPED_IDS


def test_without_env_var_default_is_cwd_clients_yaml(tmp_path, monkeypatch):
    monkeypatch.delenv(CLIENTS_FILE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert clients_file_path() == Path("clients.yaml")
    write(tmp_path, "clients:\n" + client_block("in_cwd"))
    assert load_clients().client_ids == ["in_cwd"]


# --- validation errors name the client and the key ---------------------------------------------


def test_random_forest_param_typo_names_key_client_and_suggestion(tmp_path):
    text = (
        "clients:\n"
        + client_block("acme")
        + client_block("typo_co", extra="model_params: {n_estimater: 50}")
    )
    message = client_error(tmp_path, text, "typo_co")
    assert "'n_estimater'" in message
    assert "did you mean 'n_estimators'" in message
    assert "model_params" in message


def test_invalid_param_value_names_key_and_value(tmp_path):
    text = "clients:\n" + client_block("neg_co", extra="model_params: {n_estimators: -3}")
    message = client_error(tmp_path, text, "neg_co")
    assert "model_params" in message
    assert "'n_estimators'" in message
    assert "-3" in message


def test_invalid_param_in_defaults_names_defaults(tmp_path):
    text = "defaults:\n  model_params: {max_features: banana}\nclients:\n" + client_block()
    message = load_error(tmp_path, text)
    assert "defaults.model_params" in message
    assert "'max_features'" in message
    assert "banana" in message


def test_empty_feature_list(tmp_path):
    message = client_error(tmp_path, "clients:\n" + client_block("nofeat", features="[]"), "nofeat")
    assert "features" in message
    assert "at least 1" in message


def test_duplicate_client_id_leaves_every_copy_out(tmp_path):
    text = "clients:\n" + client_block("twin") + client_block("other") + client_block("twin")
    registry = load_clients(write(tmp_path, text))
    assert registry.client_ids == ["other"]
    assert len(registry.problems) == 1
    assert (
        "client 'twin': client_id: duplicate client_id 'twin' (entries #1, #3)"
        in (registry.problems[0])
    )
    with pytest.raises(ConfigError, match="duplicate client_id 'twin'"):
        registry.get("twin")


@pytest.mark.parametrize(
    "client_id",
    ["../../etc", "a/b", "", "x" * 65, "has space", "dot.ted"],
    ids=["traversal", "slash", "empty", "65-chars", "space", "dot"],
)
def test_unsafe_client_id_is_left_out(tmp_path, client_id):
    text = f"clients:\n  - client_id: '{client_id}'\n    features: [price]\n" + client_block("ok")
    (message,) = left_out(tmp_path, text)
    assert f"client '{client_id}'" in message
    assert "client_id" in message
    assert "not a safe identifier" in message
    assert load_clients(tmp_path / "clients.yaml").client_ids == ["ok"]


def test_only_unsafe_ids_fail_the_whole_file(tmp_path):
    message = load_error(tmp_path, "clients:\n  - client_id: '../../etc'\n    features: [p]\n")
    assert "not a safe identifier" in message
    assert "no usable client entry" in message


@pytest.mark.parametrize(
    ("entry", "expected"),
    [("  - just a string\n", "expected a mapping"), ("  - {features: [a]}\n", "client_id: Field")],
    ids=["not-a-mapping", "no-id"],
)
def test_entry_without_an_id_is_left_out_by_position(tmp_path, entry, expected):
    (message,) = left_out(tmp_path, "clients:\n" + client_block("ok") + entry)
    assert "client #2: " in message and expected in message


def test_64_char_client_id_is_allowed(tmp_path):
    client_id = "x" * 64
    registry = load_clients(write(tmp_path, "clients:\n" + client_block(client_id)))
    assert registry.client_ids == [client_id]


def test_invalid_yaml_names_line(tmp_path):
    text = "clients:\n  - client_id: acme\n    features: [price, weight_g\n    top_k: 3\n"
    message = load_error(tmp_path, text)
    assert "invalid YAML" in message
    assert "at line 4" in message


def test_yaml_that_is_not_a_mapping(tmp_path):
    message = load_error(tmp_path, "- just\n- a list\n")
    assert "expected a mapping" in message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_clients(path)
    assert str(path) in str(info.value)
    assert "not found" in str(info.value)
    assert CLIENTS_FILE_ENV in str(info.value)


def test_directory_instead_of_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_clients(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_unknown_top_level_key(tmp_path):
    message = load_error(tmp_path, "clientz: []\nclients:\n" + client_block())
    assert "clientz" in message
    assert "Extra inputs are not permitted" in message


def test_unknown_client_key(tmp_path):
    message = client_error(tmp_path, "clients:\n" + client_block("acme", extra="topk: 3"), "acme")
    assert "topk: Extra inputs are not permitted (did you mean 'top_k'?)" in message


def test_missing_clients_list(tmp_path):
    message = load_error(tmp_path, DEFAULTS)
    assert "clients" in message
    assert "Field required" in message


@pytest.mark.parametrize("reserved", ["product_id", "category_id"])
def test_reserved_feature_name(tmp_path, reserved):
    text = "clients:\n" + client_block("resv", features=f"[price, {reserved}]")
    message = client_error(tmp_path, text, "resv")
    assert "features" in message
    assert f"'{reserved}' is reserved" in message


def test_duplicate_feature(tmp_path):
    text = "clients:\n" + client_block("dupf", features="[price, weight_g, price]")
    message = client_error(tmp_path, text, "dupf")
    assert "features" in message
    assert "duplicate feature(s): price" in message


def test_out_of_range_nested_setting_names_dotted_key(tmp_path):
    text = "clients:\n" + client_block("gate", extra="quality_gate: {min_top5_accuracy: 2}")
    message = client_error(tmp_path, text, "gate")
    assert "quality_gate.min_top5_accuracy" in message


# --- lookups ------------------------------------------------------------------------------------


def test_unknown_client_has_did_you_mean_hint():
    registry = load_clients(SHIPPED)
    with pytest.raises(UnknownClientError) as info:
        registry.get("acme_fashon")
    message = str(info.value)
    assert "unknown client 'acme_fashon'" in message
    assert "did you mean 'acme_fashion'" in message
    assert str(SHIPPED) in message


def test_unknown_client_without_close_match_has_no_hint():
    registry = load_clients(SHIPPED)
    with pytest.raises(UnknownClientError) as info:
        registry.get("zzzzzzzz")
    assert "unknown client 'zzzzzzzz'" in str(info.value)
    assert "did you mean" not in str(info.value)


# --- one client's mistake stays that client's ---------------------------------------------------


def test_invalid_entry_keeps_its_partition_and_the_others_load(tmp_path):
    text = (
        DEFAULTS
        + "clients:\n"
        + client_block("A")
        + client_block("B", extra="model_params: {n_estimator: 50}")
        + client_block("C", extra="top_k: 3")
    )
    path = write(tmp_path, text)
    registry = load_clients(path)
    assert registry.client_ids == ["A", "B", "C"]
    assert list(registry.clients) == ["A", "C"]
    assert registry.get("C").top_k == 3
    assert registry.problems == [
        f"{path}: client 'B': model_params: unknown RandomForestClassifier parameter "
        "'n_estimator' (did you mean 'n_estimators'?)"
    ]
    with pytest.raises(ConfigError) as info:
        registry.get("B")
    assert str(info.value) == registry.problems[0]


def test_every_error_of_an_entry_is_a_problem_and_get_counts_the_rest(tmp_path):
    text = "clients:\n" + client_block("ok") + client_block("bad", features="[]", extra="topk: 1")
    registry = load_clients(write(tmp_path, text))
    assert len(registry.problems) == 2
    with pytest.raises(ConfigError, match=r"\(\+1 more; `bettercat check-config` lists them\)"):
        registry.get("bad")


def test_valid_file_has_no_problems():
    assert load_clients(SHIPPED).problems == []


def test_invalid_defaults_fail_the_whole_file_even_with_valid_clients(tmp_path):
    text = "defaults:\n  top_k: 0\nclients:\n" + client_block("A") + client_block("B")
    message = load_error(tmp_path, text)
    assert "defaults.top_k" in message


# --- refit_on_all_rows -----------------------------------------------------------------------


def test_refit_on_all_rows_defaults_to_true_and_a_client_may_turn_it_off(tmp_path):
    text = (
        "clients:\n"
        + client_block("plain")
        + client_block("split_only", extra="refit_on_all_rows: false")
    )
    registry = load_clients(write(tmp_path, text))
    assert registry.get("plain").refit_on_all_rows is True
    assert registry.get("split_only").refit_on_all_rows is False
    off = "defaults:\n  refit_on_all_rows: false\nclients:\n" + client_block("a")
    off += client_block("b", extra="refit_on_all_rows: true")
    registry = load_clients(write(tmp_path, off))
    assert (registry.get("a").refit_on_all_rows, registry.get("b").refit_on_all_rows) == (
        False,
        True,
    )


def test_refit_on_all_rows_must_be_a_boolean(tmp_path):
    text = "clients:\n" + client_block("acme", extra="refit_on_all_rows: sometimes")
    message = client_error(tmp_path, text, "acme")
    assert "refit_on_all_rows" in message and "boolean" in message
    misspelt = "clients:\n" + client_block("acme", extra="refit_on_all_row: true")
    assert "did you mean 'refit_on_all_rows'" in client_error(tmp_path, misspelt, "acme")
    bad_default = "defaults:\n  refit_on_all_rows: 3\nclients:\n" + client_block()
    assert "defaults.refit_on_all_rows" in load_error(tmp_path, bad_default)
