"""Where each client's files live under the data prefix; every path is confined to its client."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from bettercat_assets.core.config.clients import CLIENT_ID_PATTERN
from bettercat_assets.core.config.errors import BettercatError

_SAFE_ID = re.compile(CLIENT_ID_PATTERN)


def _safe_client_id(client_id: str) -> str:
    if not _SAFE_ID.fullmatch(client_id or ""):
        raise BettercatError(
            f"client id {client_id!r} is not a safe identifier ({CLIENT_ID_PATTERN})"
        )
    return client_id


@dataclass(frozen=True)
class DataLayout:
    """The Hive-style layout under `$DATA_PREFIX`, one `client_id=<id>` directory per client."""

    prefix: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", Path(self.prefix).expanduser().resolve())

    def _client_dir(self, area: str, client_id: str) -> Path:
        area_dir = (self.prefix / area).resolve()  # the area itself may be a mounted link
        expected = area_dir / f"client_id={_safe_client_id(client_id)}"
        path = expected.resolve()
        # resolve() follows symlinks: the folder must still be this client's own, not B's.
        if path != expected:
            raise BettercatError(
                f"client '{client_id}': {expected} escapes to {path}, outside the client's folder"
            )
        return path

    def train_file(self, client_id: str) -> Path:
        return self._client_dir("train", client_id) / "data_train.csv.gz"

    def predict_file(self, client_id: str) -> Path:
        return self._client_dir("prediction", client_id) / "data_predict.csv.gz"

    def predictions_root(self, client_id: str) -> Path:
        return self._client_dir("products_categories", client_id)

    def predictions_dir(self, client_id: str, day: date) -> Path:
        return self.predictions_root(client_id) / f"date={day.isoformat()}"

    def scoring_workdir(self, day: date, tag: str) -> Path:
        """A scoring run's scratch folder (decompressed inputs, staged output) beside the outputs.

        Under `$DATA_PREFIX`, so the driver and every executor see it; its `_` prefix keeps
        readers of `products_categories/` away from it.
        """
        area = (self.prefix / "products_categories").resolve()
        return area / f"_run-date={day.isoformat()}-{tag}"
