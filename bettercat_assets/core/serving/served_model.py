"""A registered version as the fleet server holds it: built from its compact form, answering
plain requests the lean way and everything else through MLflow's own request handling.

Loading (`load_served`): a version's MLflow model folder (downloaded once by the loader) holds
`MLmodel`, `artifacts/compact/` and `artifacts/registration.json`. The server reads the
pyfunc's `model_config` from `MLmodel` and builds the registered pyfunc's own Python model
(`TopKCategoriesModel.from_files`): the compact form is checked against its checksum and read
with `allow_pickle=False`, as batch scoring and `mlflow.pyfunc.load_model` do, without MLflow's
per-load work (requirement checks, importing the model's code, signature objects: ~70 ms).

Answering (`ServedModel.answer`): a plain request (every model column present once, ids as
strings, numbers as JSON numbers or null, text as strings; `params` absent or only `output`)
takes its columns straight from the JSON into the pyfunc's own `predict_columns`, and the
answer is written as MLflow's `predictions_to_json` writes it (its own function for the
per-product layout): the same bytes as MLflow's answer.
Anything else (a missing column, a number sent as a string, another param, ...) goes through
MLflow's scoring-server handling with a `PyFuncModel` over the same Python model (made on
first need, sharing the arrays), so its answers and 400 messages stay MLflow's.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException

from bettercat_assets.core.model.pyfunc import (
    COMPACT_ARTIFACT,
    OUTPUT_PARAM,
    OUTPUT_ROWS,
    OUTPUTS,
    REGISTRATION_ARTIFACT,
    TopKCategoriesModel,
)
from bettercat_assets.core.serving.fleet_requests import PARAMS, RECORDS, SPLIT

MLMODEL_FILE = "MLmodel"
#: What `load_served` reads of a registered version's MLflow model (the loader downloads only
#: these: not its environment files, code copy or input examples).
SERVED_PARTS = (MLMODEL_FILE, "artifacts")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built
_PLAIN_NUMBER = (int, float)  # not bool: MLflow reads true/false as numbers, the lean way not


class NotLean(Exception):
    """A request the lean path leaves to MLflow's handling."""


class _PythonModelImpl:
    """What MLflow's PyFuncModel calls: the Python model's predict, without a context."""

    def __init__(self, python_model: TopKCategoriesModel) -> None:
        self.python_model = python_model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        return self.python_model.predict(None, data, params)


@dataclass
class ServedModel:
    """One loaded version (see module docstring)."""

    python_model: TopKCategoriesModel
    mlmodel: Path
    _pyfunc: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def version(self) -> int:
        """The `model_version` its answers carry (from its registration.json)."""
        return self.python_model.model_version

    @property
    def nbytes(self) -> int:
        return self.python_model.nbytes

    def answer(self, payload: dict[str, Any], lean_only: bool = False) -> str:
        """`{"predictions": [...]}` for a checked request body (fleet_requests.parse_payload);
        MlflowException for a frame the model refuses; NotLean if `lean_only` and it is not."""
        try:
            return self._lean(payload)
        except NotLean:
            if lean_only:
                raise
        return self._through_mlflow(payload)

    def _lean(self, payload: dict[str, Any]) -> str:
        from mlflow.pyfunc.scoring_server import predictions_to_json

        output = _lean_output(payload.get(PARAMS))
        ids, columns = lean_columns(payload, self.python_model)
        frame = self.python_model.predict_columns(ids, columns, output)
        if output == OUTPUT_ROWS:
            return rows_json(frame)
        out = StringIO()
        predictions_to_json(frame, out)
        return out.getvalue()

    def pyfunc(self) -> Any:
        """An MLflow PyFuncModel over this Python model (its signature from `MLmodel`)."""
        with self._lock:
            if self._pyfunc is None:
                from mlflow.models import Model
                from mlflow.pyfunc import PyFuncModel

                impl = _PythonModelImpl(self.python_model)
                self._pyfunc = PyFuncModel(model_meta=Model.load(self.mlmodel), model_impl=impl)
            return self._pyfunc

    def _through_mlflow(self, payload: dict[str, Any]) -> str:
        from mlflow.pyfunc import scoring_server

        pyfunc = self.pyfunc()
        response = scoring_server.invocations(
            payload, "application/json", pyfunc, pyfunc.metadata.get_input_schema()
        )
        if response.status != 200:
            raise MlflowException.invalid_parameter_value(str(response.response))
        return response.response


def rows_json(frame: pd.DataFrame) -> str:
    """MLflow's `predictions_to_json` of a frame of plain columns (numbers, strings), byte for
    byte, without pandas' record boxing and the pure-Python encoder it streams through."""
    names = [str(name) for name in frame.columns]
    values = zip(*(frame[name].tolist() for name in frame.columns), strict=True)
    return json.dumps({"predictions": [dict(zip(names, row, strict=True)) for row in values]})


def _lean_output(params: Any) -> str:
    if params is None or params == {}:
        return OUTPUTS[0]
    if (
        isinstance(params, dict)
        and set(params) == {OUTPUT_PARAM}
        and params[OUTPUT_PARAM] in OUTPUTS
    ):
        return params[OUTPUT_PARAM]
    raise NotLean


def _values_by_column(payload: dict[str, Any], names: list[str]) -> dict[str, list[Any]]:
    """The values of each of `names`, from a plain `dataframe_split` or `dataframe_records`."""
    if SPLIT in payload:
        frame = payload[SPLIT]
        columns = frame["columns"]
        if set(frame) != {"columns", "data"} or len(set(columns)) != len(columns):
            raise NotLean
        where = {name: i for i, name in enumerate(columns)}
        if any(name not in where for name in names):
            raise NotLean
        return {name: [row[where[name]] for row in frame["data"]] for name in names}
    try:
        return {name: [record[name] for record in payload[RECORDS]] for name in names}
    except KeyError:
        raise NotLean from None


def _numbers(values: list[Any]) -> np.ndarray:
    """A numeric column as `TopKCategoriesModel._columns_of` makes it (float32 precision)."""
    if not all(v is None or type(v) in _PLAIN_NUMBER for v in values):
        raise NotLean
    try:
        x = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    except (OverflowError, ValueError, TypeError):
        raise NotLean from None
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)
    if np.isinf(x32).any():  # MLflow's handling names the column
        raise NotLean
    return x32.astype(np.float64)


def _strings(values: list[Any]) -> np.ndarray:
    if not all(type(v) is str for v in values):
        raise NotLean
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def lean_columns(
    payload: dict[str, Any], model: TopKCategoriesModel
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(ids, feature columns) of a plain request, as the pyfunc reads them; NotLean if the
    request is not plain."""
    values = _values_by_column(payload, [model.id_column, *model.features])
    numeric = set(model.numeric)
    columns = {
        name: _numbers(values[name]) if name in numeric else _strings(values[name])
        for name in model.features
    }
    return _strings(values[model.id_column]), columns


def _inside(root: Path, relative: Any) -> Path:
    path = (root / str(relative)).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ValueError(f"{MLMODEL_FILE} points outside the model folder: {relative!r}")
    return path


def load_served(local: Path, checked: set[tuple[str, ...]] | None = None) -> ServedModel:
    """Build a downloaded version (see module docstring); ValueError if it is not a bettercat
    top-k model or its compact form is damaged, MlflowException if its registration is.
    `checked` (the loader's): files whose arrays passed validation before, re-checksummed but
    not re-validated (`CompactForest.load_files`)."""
    mlmodel = Path(local) / MLMODEL_FILE
    try:
        doc = yaml.load(mlmodel.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
        flavor = doc["flavors"]["python_function"]
        artifacts = {name: spec["path"] for name, spec in flavor["artifacts"].items()}
        config = dict(flavor.get("config") or {})
        compact, registration = artifacts[COMPACT_ARTIFACT], artifacts[REGISTRATION_ARTIFACT]
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{MLMODEL_FILE} is not a bettercat top-k model: {exc!r}") from None
    model = TopKCategoriesModel.from_files(
        _inside(local, compact), _inside(local, registration), config, checked
    )
    return ServedModel(model, mlmodel)
