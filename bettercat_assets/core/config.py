"""`clients.yaml`: per-client configuration, validated with pydantic when it loads."""

from __future__ import annotations

import difflib
import os
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sklearn.ensemble import RandomForestClassifier

from bettercat_assets.core.errors import ConfigError, UnknownClientError

CLIENTS_FILE_ENV = "BETTERCAT_CLIENTS_FILE"
CLIENT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
RANDOM_FOREST_PARAMS = frozenset(RandomForestClassifier().get_params())

_M = TypeVar("_M", bound=BaseModel)

#: Bounded trees by default: unbounded leaves cost GBs per model (see README, "Model size").
DEFAULT_MODEL_PARAMS: dict[str, Any] = {
    "n_estimators": 100,
    "min_samples_leaf": 5,
    "max_features": "sqrt",
    "n_jobs": -1,
    "random_state": 42,
}


def _check_model_params(params: dict[str, Any]) -> dict[str, Any]:
    """Reject unknown RandomForestClassifier parameters and invalid values, naming the key."""
    for key in params:
        if key not in RANDOM_FOREST_PARAMS:
            close = difflib.get_close_matches(key, RANDOM_FOREST_PARAMS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"unknown RandomForestClassifier parameter '{key}'{hint}")
    try:
        RandomForestClassifier(**params)._validate_params()
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc).splitlines()[0]) from None
    return params


class QualityGate(BaseModel):
    """Conditions a newly trained model must meet before it becomes the champion."""

    model_config = ConfigDict(extra="forbid")

    min_top5_accuracy: float = Field(0.0, ge=0.0, le=1.0)
    max_top5_regression: float = Field(0.02, ge=0.0, le=1.0)
    #: Must beat the class-prior baseline's top-5 accuracy by more than this; null: rule off.
    min_lift_over_prior: float | None = Field(0.0, ge=0.0, le=1.0)


class DataChecks(BaseModel):
    """Bounds for the training-data asset checks."""

    model_config = ConfigDict(extra="forbid")

    max_null_share: float = Field(0.2, ge=0.0, le=1.0)
    min_rows: int = Field(50, ge=2)


class SampleData(BaseModel):
    """How `bettercat generate-data` fakes this client's catalogue (demo and tests only)."""

    model_config = ConfigDict(extra="forbid")

    products: int = Field(5000, ge=10, le=2_000_000)
    categories: int = Field(20, ge=2, le=5000)
    zipf_exponent: float = Field(1.1, ge=0.0, le=3.0)
    missing_share: float = Field(0.01, ge=0.0, le=0.5)
    noise: float = Field(1.0, gt=0.0)


class ClientDefaults(BaseModel):
    """Settings every client inherits unless its own entry overrides them."""

    model_config = ConfigDict(extra="forbid")

    model_params: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_MODEL_PARAMS))
    top_k: int = Field(5, ge=1, le=100)
    test_size: float = Field(0.2, gt=0.0, lt=1.0)
    quality_gate: QualityGate = Field(default_factory=QualityGate)
    data_checks: DataChecks = Field(default_factory=DataChecks)

    _check_params = field_validator("model_params")(
        classmethod(lambda cls, v: _check_model_params(v))
    )


class ClientEntry(BaseModel):
    """One client as written in `clients.yaml`; unset fields fall back to the defaults."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(pattern=CLIENT_ID_PATTERN)
    features: list[str] = Field(min_length=1)
    model_params: dict[str, Any] = Field(default_factory=dict)
    top_k: int | None = Field(None, ge=1, le=100)
    test_size: float | None = Field(None, gt=0.0, lt=1.0)
    quality_gate: QualityGate | None = None
    data_checks: DataChecks | None = None
    sample_data: SampleData = Field(default_factory=SampleData)

    @field_validator("features")
    @classmethod
    def _features_unique_and_named(cls, features: list[str]) -> list[str]:
        reserved = {"product_id", "category_id"}
        for name in features:
            if not name or not name.strip():
                raise ValueError("feature names must not be empty")
            if name in reserved:
                raise ValueError(f"'{name}' is reserved and cannot be a feature")
        dupes = sorted({f for f in features if features.count(f) > 1})
        if dupes:
            raise ValueError(f"duplicate feature(s): {', '.join(dupes)}")
        return features

    _check_params = field_validator("model_params")(
        classmethod(lambda cls, v: _check_model_params(v))
    )


class ClientConfig(BaseModel):
    """A client's effective configuration: its entry merged over the defaults."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    features: tuple[str, ...]
    model_params: dict[str, Any]
    top_k: int
    test_size: float
    quality_gate: QualityGate
    data_checks: DataChecks
    sample_data: SampleData
    id_column: str = "product_id"
    label_column: str = "category_id"

    @property
    def model_name(self) -> str:
        """Name of this client's model in the MLflow registry."""
        return f"{self.client_id}_model"

    @property
    def experiment_name(self) -> str:
        """Name of this client's MLflow experiment."""
        return f"bettercat/{self.client_id}"


class ClientsFile(BaseModel):
    """The whole `clients.yaml` document."""

    model_config = ConfigDict(extra="forbid")

    defaults: ClientDefaults = Field(default_factory=ClientDefaults)
    clients: list[ClientEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_and_valid_merged(self) -> ClientsFile:
        seen: set[str] = set()
        for entry in self.clients:
            if entry.client_id in seen:
                raise ValueError(f"duplicate client_id '{entry.client_id}'")
            seen.add(entry.client_id)
            try:
                _check_model_params({**self.defaults.model_params, **entry.model_params})
            except ValueError as exc:
                raise ValueError(f"client '{entry.client_id}': model_params: {exc}") from None
        return self

    def resolve(self, entry: ClientEntry) -> ClientConfig:
        """Merge one entry over the defaults."""
        d = self.defaults
        return ClientConfig(
            client_id=entry.client_id,
            features=tuple(entry.features),
            model_params={**d.model_params, **entry.model_params},
            top_k=entry.top_k or d.top_k,
            test_size=entry.test_size or d.test_size,
            quality_gate=_merge(d.quality_gate, entry.quality_gate),
            data_checks=_merge(d.data_checks, entry.data_checks),
            sample_data=entry.sample_data,
        )


def _merge(default: _M, override: _M | None) -> _M:
    """Field-wise: keys the client sets win, the others keep the `defaults` value."""
    if override is None:
        return default
    return default.model_copy(update=override.model_dump(exclude_unset=True))


class ClientRegistry:
    """The validated clients of one `clients.yaml`, by id."""

    def __init__(self, document: ClientsFile, path: Path) -> None:
        self.path = path
        self.document = document

    @cached_property
    def clients(self) -> dict[str, ClientConfig]:
        return {e.client_id: self.document.resolve(e) for e in self.document.clients}

    @property
    def client_ids(self) -> list[str]:
        return list(self.clients)

    def get(self, client_id: str) -> ClientConfig:
        """Look a client up, with a clear error for an unknown id."""
        try:
            return self.clients[client_id]
        except KeyError:
            close = difflib.get_close_matches(client_id, self.clients, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UnknownClientError(f"unknown client '{client_id}' in {self.path}{hint}") from None


def clients_file_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The clients file: an explicit path, else $BETTERCAT_CLIENTS_FILE, else ./clients.yaml."""
    return Path(path or os.environ.get(CLIENTS_FILE_ENV) or "clients.yaml")


def _describe_error(doc: Any, err: dict[str, Any]) -> str:
    """Turn one pydantic error into 'client X: key: message'."""
    loc = list(err["loc"])
    who = ""
    if len(loc) >= 2 and loc[0] == "clients" and isinstance(loc[1], int):
        try:
            who = f"client '{doc['clients'][loc[1]]['client_id']}': "
        except (KeyError, IndexError, TypeError):
            who = f"client #{loc[1] + 1}: "
        loc = loc[2:]
    key = ".".join(str(part) for part in loc) or "document"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "string_pattern_mismatch":
        msg = f"{err.get('input')!r} is not a safe identifier (allowed: {CLIENT_ID_PATTERN})"
    return f"{who}{key}: {msg}"


def load_clients(path: str | os.PathLike[str] | None = None) -> ClientRegistry:
    """Load and validate the clients file; raise ConfigError naming the file, client and key."""
    file = clients_file_path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: clients file not found (set ${CLIENTS_FILE_ENV})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read clients file: {exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{file}: invalid YAML{where}: {problem}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{file}: expected a mapping with 'defaults' and 'clients'")
    try:
        document = ClientsFile.model_validate(doc)
    except ValidationError as exc:
        first = _describe_error(doc, exc.errors()[0])
        more = len(exc.errors()) - 1
        raise ConfigError(f"{file}: {first}" + (f" (+{more} more)" if more else "")) from None
    return ClientRegistry(document, file)
