"""`clients.yaml`: per-client configuration, each client entry validated on its own with pydantic."""

from __future__ import annotations

import difflib
import os
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bettercat_assets.core.config.entry_problems import (
    CLIENT_ID_PATTERN,
    EntryProblem,
    _left_out,
    _safe_id,
)
from bettercat_assets.core.config.errors import ConfigError, UnknownClientError
from bettercat_assets.core.config.feature_specs import (
    DEFAULT_MODEL_PARAMS,
    DEFAULT_TEXT_MODEL_PARAMS,
    RANDOM_FOREST_PARAMS,  # noqa: F401  (re-exported)
    FeatureSpec,
    ModelChoice,
    TextSettings,
    _check_model_params,
    parse_features,
)
from bettercat_assets.core.config.monitoring import Monitoring

CLIENTS_FILE_ENV = "BETTERCAT_CLIENTS_FILE"
_M = TypeVar("_M", bound=BaseModel)


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
    #: merged over `model_params` for a client with text features (its own keys still win)
    text_model_params: dict[str, Any] = Field(
        default_factory=lambda: dict(DEFAULT_TEXT_MODEL_PARAMS)
    )
    top_k: int = Field(5, ge=1, le=100)
    test_size: float = Field(0.2, gt=0.0, lt=1.0)
    #: after the split model is evaluated and gated, register a model refit on every row
    refit_on_all_rows: bool = True
    quality_gate: QualityGate = Field(default_factory=QualityGate)
    data_checks: DataChecks = Field(default_factory=DataChecks)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    text: TextSettings = Field(default_factory=TextSettings)
    model: ModelChoice = Field(default_factory=ModelChoice)

    _check_params = field_validator("model_params", "text_model_params")(
        classmethod(lambda cls, v: _check_model_params(v))
    )


class ClientEntry(BaseModel):
    """One client as written in `clients.yaml`; unset fields fall back to the defaults."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(pattern=CLIENT_ID_PATTERN)
    #: column names (numeric) or {name, kind} mappings, see `feature_specs`
    features: list[Any] = Field(min_length=1)
    model_params: dict[str, Any] = Field(default_factory=dict)
    top_k: int | None = Field(None, ge=1, le=100)
    test_size: float | None = Field(None, gt=0.0, lt=1.0)
    refit_on_all_rows: bool | None = None
    quality_gate: QualityGate | None = None
    data_checks: DataChecks | None = None
    monitoring: Monitoring | None = None
    text: TextSettings | None = None
    model: ModelChoice | None = None
    sample_data: SampleData = Field(default_factory=SampleData)

    @field_validator("features")
    @classmethod
    def _features_unique_and_named(cls, features: list[Any]) -> list[FeatureSpec]:
        return parse_features(features)


class ClientConfig(BaseModel):
    """A client's effective configuration: its entry merged over the defaults."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    #: feature column names, in order (the kinds are in `feature_specs`)
    features: tuple[str, ...]
    #: default: every feature numeric
    feature_specs: tuple[FeatureSpec, ...] = ()
    model_params: dict[str, Any]
    top_k: int
    test_size: float
    quality_gate: QualityGate
    data_checks: DataChecks
    sample_data: SampleData
    monitoring: Monitoring = Monitoring()
    text: TextSettings = TextSettings()
    model: ModelChoice = ModelChoice()
    #: register a model refit on train + test rows (metrics and gate: the split model's)
    refit_on_all_rows: bool = True
    id_column: str = "product_id"
    label_column: str = "category_id"

    @model_validator(mode="after")
    def _specs_for_features(self) -> ClientConfig:
        if not self.feature_specs:
            specs = tuple(FeatureSpec(name=name) for name in self.features)
            object.__setattr__(self, "feature_specs", specs)
        return self

    @property
    def has_text_or_categorical(self) -> bool:
        """True when a feature is text or categorical (the model then reads sparse features)."""
        return any(spec.kind != "numeric" for spec in self.feature_specs)

    def features_of_kind(self, kind: str) -> list[str]:
        """The names of this client's features of one kind, in order."""
        return [spec.name for spec in self.feature_specs if spec.kind == kind]

    @property
    def model_name(self) -> str:
        """Name of this client's model in the MLflow registry."""
        return f"{self.client_id}_model"

    @property
    def experiment_name(self) -> str:
        """Name of this client's MLflow experiment."""
        return f"bettercat/{self.client_id}"


class ClientsFile(BaseModel):
    """The whole `clients.yaml` document: trusted `defaults`, and client entries still raw.

    Each entry is validated on its own (`_load_entries`), so one client's mistake does not
    stop the others.
    """

    model_config = ConfigDict(extra="forbid")

    defaults: ClientDefaults = Field(default_factory=ClientDefaults)
    clients: list[Any] = Field(min_length=1)

    def resolve(self, entry: ClientEntry) -> ClientConfig:
        """Merge one entry over the defaults."""
        d = self.defaults
        return ClientConfig(
            client_id=entry.client_id,
            features=tuple(spec.name for spec in entry.features),
            feature_specs=tuple(entry.features),
            model_params=_forest_params(d, entry),
            top_k=entry.top_k or d.top_k,
            test_size=entry.test_size or d.test_size,
            refit_on_all_rows=(
                d.refit_on_all_rows if entry.refit_on_all_rows is None else entry.refit_on_all_rows
            ),
            quality_gate=_merge(d.quality_gate, entry.quality_gate),
            data_checks=_merge(d.data_checks, entry.data_checks),
            monitoring=_merge(d.monitoring, entry.monitoring),
            sample_data=entry.sample_data,
            text=_merge(d.text, entry.text),
            model=_merge(d.model, entry.model),
        )


def _forest_params(defaults: ClientDefaults, entry: ClientEntry) -> dict[str, Any]:
    """defaults.model_params, then defaults.text_model_params for a text client, then the
    client's own model_params."""
    has_text = any(spec.kind == "text" for spec in entry.features)
    text = defaults.text_model_params if has_text else {}
    return {**defaults.model_params, **text, **entry.model_params}


def _merge(default: _M, override: _M | None) -> _M:
    """Field-wise: keys the client sets win, the others keep the `defaults` value."""
    if override is None:
        return default
    return default.model_copy(update=override.model_dump(exclude_unset=True))


class ClientRegistry:
    """The clients of one `clients.yaml`: valid ones by id, and the entries that have problems.

    `client_ids` lists every partition in file order, including a client whose entry is invalid
    but whose id is safe and unique: its runs fail with the validation error (`get` raises it),
    while every other client works as usual.
    """

    def __init__(
        self, document: ClientsFile, path: Path, entries: list[ClientEntry | EntryProblem]
    ) -> None:
        self.path = path
        self.document = document
        self._entries = entries

    @cached_property
    def clients(self) -> dict[str, ClientConfig]:
        """The valid clients' effective configurations, in file order."""
        return {
            e.client_id: self.document.resolve(e)
            for e in self._entries
            if isinstance(e, ClientEntry)
        }

    @property
    def client_ids(self) -> list[str]:
        """Every partition (valid or not), in file order."""
        return [
            e.client_id if isinstance(e, ClientEntry) else e.partition
            for e in self._entries
            if isinstance(e, ClientEntry) or e.partition
        ]

    @property
    def entry_problems(self) -> list[EntryProblem]:
        """The entries that cannot be used, in file order."""
        return [e for e in self._entries if isinstance(e, EntryProblem)]

    @property
    def problems(self) -> list[str]:
        """Every problem of the file, one self-contained line each (empty: all clients valid)."""
        return [line for p in self.entry_problems for line in p.lines(self.path)]

    def get(self, client_id: str) -> ClientConfig:
        """Look a client up: ConfigError for an invalid entry, UnknownClientError for no entry."""
        if client_id in self.clients:
            return self.clients[client_id]
        for problem in self.entry_problems:
            if problem.who == f"client '{client_id}'":
                more = len(problem.errors) - 1
                extra = f" (+{more} more; `bettercat check-config` lists them)" if more else ""
                raise ConfigError(problem.lines(self.path)[0] + extra)
        close = difflib.get_close_matches(client_id, self.client_ids, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UnknownClientError(f"unknown client '{client_id}' in {self.path}{hint}")


def clients_file_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The clients file: an explicit path, else $BETTERCAT_CLIENTS_FILE, else ./clients.yaml."""
    return Path(path or os.environ.get(CLIENTS_FILE_ENV) or "clients.yaml")


#: Which model a nested key belongs to, for "did you mean" hints on unknown keys.
_NESTED_MODELS: dict[str, type[BaseModel]] = {
    "quality_gate": QualityGate,
    "data_checks": DataChecks,
    "sample_data": SampleData,
    "monitoring": Monitoring,
    "text": TextSettings,
    "model": ModelChoice,
}


def _describe_error(err: Any, root: type[BaseModel]) -> str:
    """Turn one pydantic error into 'key: message', with a hint for a misspelt key."""
    loc = [str(part) for part in err["loc"]]
    key = ".".join(loc) or "document"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden" and loc:
        model = _NESTED_MODELS.get(loc[0], root) if len(loc) == 2 else root
        close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
        if len(loc) <= 2 and close:
            msg += f" (did you mean '{close[0]}'?)"
    return f"{key}: {msg}"


def _validate_entry(raw: dict[str, Any], defaults: ClientDefaults) -> ClientEntry | list[str]:
    """One entry on its own: the validated entry, or its errors as 'key: message' lines."""
    try:
        entry = ClientEntry.model_validate(raw)
    except ValidationError as exc:
        return [_describe_error(err, ClientEntry) for err in exc.errors()]
    try:  # an entry without its own parameters has the defaults, validated once
        if entry.model_params:
            _check_model_params({**defaults.model_params, **entry.model_params})
    except ValueError as exc:
        return [f"model_params: {exc}"]
    return entry


def _load_entries(document: ClientsFile) -> list[ClientEntry | EntryProblem]:
    """Validate each entry on its own, in file order."""
    ids = [_safe_id(raw) for raw in document.clients]
    entries: list[ClientEntry | EntryProblem] = []
    for index, raw in enumerate(document.clients):
        problem = _left_out(index, raw, ids)
        if problem is not None:
            if problem.partition is None and problem not in entries:  # one line per duplicate id
                entries.append(problem)
            continue
        outcome = _validate_entry(raw, document.defaults)
        if isinstance(outcome, ClientEntry):
            entries.append(outcome)
        else:
            entries.append(EntryProblem(f"client '{ids[index]}'", tuple(outcome), ids[index]))
    return entries


def _read_document(file: Path) -> Any:
    """The parsed YAML of the clients file; ConfigError if it cannot be read or parsed."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: clients file not found (set ${CLIENTS_FILE_ENV})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read clients file: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{file}: invalid YAML{where}: {problem}") from None


def load_clients(path: str | os.PathLike[str] | None = None) -> ClientRegistry:
    """Load the clients file, validating each client entry on its own.

    The whole file fails (ConfigError, one line naming the file and key) only when there is no
    trustworthy client list: unreadable file, invalid YAML, not a mapping, an unknown top-level
    key, an invalid `defaults` block (every client inherits it), or no usable entry at all.
    A bad entry is reported in `registry.problems`; see `ClientRegistry` for what it keeps.
    """
    file = clients_file_path(path)
    doc = _read_document(file)
    if not isinstance(doc, dict):
        raise ConfigError(f"{file}: expected a mapping with 'defaults' and 'clients'")
    try:
        document = ClientsFile.model_validate(doc)
    except ValidationError as exc:
        first = _describe_error(exc.errors()[0], ClientsFile)
        more = len(exc.errors()) - 1
        raise ConfigError(f"{file}: {first}" + (f" (+{more} more)" if more else "")) from None
    registry = ClientRegistry(document, file, _load_entries(document))
    if not registry.client_ids:
        first = registry.problems[0]
        raise ConfigError(f"{first} (no usable client entry in the file)")
    return registry
