"""The registered `<client>_model`: an MLflow pyfunc answering with the top-k categories.

`predict(df)` returns the rows batch scoring writes (`product_id`, `pred_label`, `pred_score`,
`rank`, `model_version`; k rows per product) from the compact form alone: `ScoringModel.load`
checks the checksums and reads the arrays with `allow_pickle=False`. No sklearn, no skops, no
pickle: the model is logged as code (`pyfunc_entry.py`), which MLflow runs at load time.

Where things come from at load time:

* `artifacts["compact"]`: the compact forest (the registered model's `artifacts/compact/`);
* `artifacts["registration"]`: `registration.json`, rewritten by `model_store.record_registration`
  once the registry has numbered the version. A model loaded before that (or never
  registered) reports `model_version` -1; `model_config={"model_version": N}` overrides it;
* `model_config`: `id_column` (the client's id column, e.g. `product_id`) and `top_k`.

Params (`params={"output": ...}` in `predict`, in the JSON body or in `spark_udf`):

* `"rows"` (default): the batch layout, k rows per product;
* `"per_product"`: one row per input row (`product_id`, `pred_labels`, `pred_scores`,
  `model_version`, the arrays best first), which is what `mlflow.pyfunc.spark_udf` needs.

No Dagster, MLflow-tracking, sklearn or Spark imports here: a serving process stays small.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from bettercat_assets.core.model.scoring_model import ScoringModel
from bettercat_assets.core.model.topk import top_k_frame, top_k_indices

COMPACT_ARTIFACT = "compact"
REGISTRATION_ARTIFACT = "registration"
REGISTRATION_FILE = "registration.json"
UNREGISTERED_VERSION = -1
OUTPUT_PARAM = "output"
OUTPUT_ROWS = "rows"
OUTPUT_PER_PRODUCT = "per_product"
OUTPUTS = (OUTPUT_ROWS, OUTPUT_PER_PRODUCT)
#: Up to this many rows a request is scored with the numpy kernel (well under a millisecond
#: for a request of a few products), so a server answering requests never imports numba
#: (~60 MB); larger batches (spark_udf) use the default kernel, numba when installed.
NUMPY_MAX_ROWS = 1000


def serving_signature(
    features: list[str], id_column: str, kinds: dict[str, str] | None = None
) -> ModelSignature:
    """Input: the id column (string) and every feature (double for numbers, string for text and
    categories; a column must be there, a value may be missing, as in batch scoring); output:
    the batch's top-k rows."""
    kinds = kinds or {}
    inputs = Schema(
        [ColSpec("string", id_column)]
        + [
            ColSpec("double" if kinds.get(f, "numeric") == "numeric" else "string", f)
            for f in features
        ]
    )
    outputs = Schema(
        [
            ColSpec("string", "product_id"),
            ColSpec("string", "pred_label"),
            ColSpec("float", "pred_score"),
            ColSpec("integer", "rank"),
            ColSpec("integer", "model_version"),
        ]
    )
    params = ParamSchema([ParamSpec(OUTPUT_PARAM, "string", OUTPUT_ROWS)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def registration_document(model_name: str | None, version: int | None) -> str:
    """Content of `registration.json`: which registered version this model is."""
    return json.dumps({"model_name": model_name, "model_version": version}) + "\n"


def _invalid(message: str) -> MlflowException:
    """A 400 in `mlflow models serve`, with our message."""
    return MlflowException.invalid_parameter_value(message)


def _read_version(path: Path) -> int:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MlflowException(f"cannot read {path}: {exc}") from None
    version = doc.get("model_version") if isinstance(doc, dict) else None
    if version is None:
        return UNREGISTERED_VERSION
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise MlflowException(f"{path}: model_version must be a positive integer, got {version!r}")
    return version


class TopKCategoriesModel(PythonModel):
    """Top-k categories per product from a client's compact forest (see module docstring)."""

    def load_context(self, context: PythonModelContext) -> None:
        config = context.model_config or {}
        try:
            model = ScoringModel.load(Path(context.artifacts[COMPACT_ARTIFACT]))
        except ValueError as exc:
            raise MlflowException(f"compact model refused: {exc}") from None
        override = config.get("model_version")
        version = (
            int(override)
            if override is not None
            else _read_version(Path(context.artifacts[REGISTRATION_ARTIFACT]))
        )
        self.configure(model, config, version)

    @classmethod
    def from_files(
        cls,
        compact_dir: Path,
        registration: Path,
        config: dict,
        checked: set[tuple[str, ...]] | None = None,
    ) -> TopKCategoriesModel:
        """The model `load_context` makes, from its files, without MLflow's loader (the fleet
        server); ValueError if the compact form is damaged, MlflowException if the version is.
        `checked`: see `CompactForest.load_files`."""
        model = cls()
        scoring = ScoringModel.load(compact_dir, checked)
        model.configure(scoring, config, _read_version(registration))
        return model

    def configure(self, model: ScoringModel, config: dict, version: int) -> None:
        """Hold `model` with the logged `model_config` and the registered `version`."""
        self._model = model
        self._id_column = str(config.get("id_column", "product_id"))
        self._k = int(config.get("top_k", 5))
        self._version = version
        self._features = list(self._model.feature_names)
        self._numeric = self._model.names_of_kind("numeric")
        # Touch every array once now rather than in the first request.
        self._model.predict_proba(self._columns_of(self._example()), backend="numpy")

    def _example(self) -> pd.DataFrame:
        """One product with every number missing and every text empty."""
        return pd.DataFrame(
            {f: [np.nan if f in self._numeric else ""] for f in self._features}
            | {self._id_column: ["example"]}
        )

    @property
    def model_version(self) -> int:
        return self._version

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays this model holds: what a serving cache budgets for it."""
        return int(self._model.nbytes)

    def _columns_of(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """The feature columns as batch scoring reads them; errors name the column."""
        missing = [c for c in [self._id_column, *self._features] if c not in frame.columns]
        if missing:
            raise _invalid(f"missing column(s) {', '.join(repr(c) for c in missing)}")
        columns: dict[str, np.ndarray] = {}
        for name in self._features:
            if name not in self._numeric:
                values = frame[name].astype(object).to_numpy()
                columns[name] = np.where(pd.isna(values), None, values)
                continue
            try:  # after MLflow's schema enforcement the columns are float64 already
                x = pd.to_numeric(frame[name], errors="raise").to_numpy(np.float32, na_value=np.nan)
            except (TypeError, ValueError):
                raise _invalid(f"column '{name}' must be numeric") from None
            if np.isinf(x).any():
                raise _invalid(f"column '{name}' holds infinity or a value too large for float32")
            columns[name] = x.astype(np.float64)
        return columns

    @property
    def id_column(self) -> str:
        return self._id_column

    @property
    def features(self) -> list[str]:
        """The feature columns, in the model's order."""
        return list(self._features)

    @property
    def numeric(self) -> list[str]:
        """The feature columns read as numbers (the others are text or categories)."""
        return list(self._numeric)

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Top-k rows per product (or one row per product with `output="per_product"`)."""
        output = output_of(params)
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        columns = self._columns_of(model_input)
        ids = model_input[self._id_column].astype(object).to_numpy()
        return self.predict_columns(ids, columns, output)

    def predict_columns(
        self, ids: np.ndarray, columns: dict[str, np.ndarray], output: str = OUTPUT_ROWS
    ) -> pd.DataFrame:
        """`predict` from the ids and the feature columns as `_columns_of` makes them."""
        backend = "numpy" if len(ids) <= NUMPY_MAX_ROWS else None
        proba = self._model.predict_proba(columns, backend=backend)
        classes = self._model.classes_
        if output == OUTPUT_ROWS:
            return top_k_frame(ids, proba, classes, self._k, self._version)
        best = top_k_indices(proba, self._k)
        return pd.DataFrame(
            {
                "product_id": ids,
                "pred_labels": list(classes[best]),
                "pred_scores": list(np.take_along_axis(proba, best, axis=1).astype(np.float32)),
                "model_version": np.full(len(ids), self._version, dtype=np.int32),
            }
        )


def output_of(params: dict[str, Any] | None) -> str:
    """The `output` param's value (default "rows"); a 400 naming the choices otherwise."""
    output = (params or {}).get(OUTPUT_PARAM) or OUTPUT_ROWS
    if output not in OUTPUTS:
        raise _invalid(f"param '{OUTPUT_PARAM}' must be one of {list(OUTPUTS)}, got {output!r}")
    return output
