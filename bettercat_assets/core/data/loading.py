"""Loading and validating a client's input files, with errors that name client, file and column."""

from __future__ import annotations

import csv
import gzip
import hashlib
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.config.errors import DataError

_log = logging.getLogger(__name__)
GZIP_MAGIC = b"\x1f\x8b"
#: Feature cells (lower-cased) that mean "missing"; RandomForest handles NaN natively.
MISSING_MARKERS = frozenset({"", "nan", "na", "null"})


@dataclass(frozen=True)
class TrainingTable:
    """A validated training table: numeric features as float64 (NaN = missing), text and
    categorical features as strings (empty = missing), and string labels."""

    client_id: str
    path: Path
    fingerprint: str
    product_ids: pd.Series
    features: pd.DataFrame
    labels: pd.Series

    @property
    def rows(self) -> int:
        return len(self.labels)

    @property
    def classes(self) -> list[str]:
        return sorted(self.labels.unique())


def file_fingerprint(path: Path) -> str:
    """sha256 of the file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_gzip_file(client_id: str, path: Path) -> None:
    if not path.is_file():
        raise DataError(client_id, path, "file not found")
    with path.open("rb") as handle:
        magic = handle.read(2)
    if not magic:
        raise DataError(client_id, path, "file is empty (0 bytes)")
    if magic != GZIP_MAGIC:
        raise DataError(client_id, path, "not a gzip file (expected .csv.gz)")


def read_header(client_id: str, path: Path) -> list[str]:
    """The CSV header of a gzip file, checked for existence, gzip framing and emptiness."""
    _check_gzip_file(client_id, path)
    try:
        # utf-8-sig: a byte-order mark (Excel exports) must not become part of the first name.
        with gzip.open(path, "rt", encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise DataError(client_id, path, f"cannot read gzip CSV: {exc}") from None
    if not header or not any(h.strip() for h in header):
        raise DataError(client_id, path, "file is empty (no header row)")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DataError(client_id, path, f"duplicate column(s) {', '.join(map(repr, dupes))}")
    return header


def require_columns(client_id: str, path: Path, header: list[str], required: list[str]) -> None:
    """Fail naming every missing column."""
    missing = [c for c in required if c not in header]
    if missing:
        what = "column" if len(missing) == 1 else "columns"
        raise DataError(client_id, path, f"missing {what} {', '.join(map(repr, missing))}")


def _read_frame(
    client_id: str, path: Path, id_cols: list[str], features: list[str]
) -> pd.DataFrame:
    """Read ids/labels as exact strings (no NA guessing) and features as text for checking.

    All columns are read (no `usecols`) with `index_col=False`: with `usecols`, pandas silently
    truncates rows that have too many fields and, on files with a trailing delimiter, shifts
    every value one column to the left. Reading everything makes a ragged row a ParserError.
    """
    try:
        frame = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            index_col=False,
            compression="gzip",
            encoding="utf-8",
        )
        return frame[list(dict.fromkeys([*id_cols, *features]))]
    except pd.errors.EmptyDataError:
        raise DataError(client_id, path, "file is empty") from None
    except (pd.errors.ParserError, OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(client_id, path, f"malformed CSV: {first}") from None


def numeric_features(
    client_id: str, path: Path, raw: pd.DataFrame, features: list[str]
) -> pd.DataFrame:
    """Parse feature columns as float64; empty fields are missing, other text is an error."""
    parsed = {}
    for name in features:
        text = raw[name].str.strip()
        missing = text.str.lower().isin(MISSING_MARKERS)
        values = pd.to_numeric(text.mask(missing), errors="coerce")
        # "inf", "-Infinity", "1e999" parse but RandomForest rejects non-finite input.
        bad = pd.Series(~np.isfinite(values.to_numpy(dtype="float64")), index=raw.index) & ~missing
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            value = raw[name].iloc[row]
            fix = ""
            if np.isnan(pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]):
                fix = (
                    f"; if it holds words, declare it as `{{name: {name}, kind: text}}` "
                    f"(or `kind: categorical`) in the client's features"
                )
            raise DataError(
                client_id,
                path,
                f"column '{name}' must be numeric; line {row + 2} has {value!r}{fix}",
            )
        if values.isna().all():
            raise DataError(client_id, path, f"column '{name}' has no values (all missing)")
        parsed[name] = values.astype("float64")
    return pd.DataFrame(parsed, index=raw.index)


def feature_frame(
    client_id: str, path: Path, raw: pd.DataFrame, kinds: Mapping[str, str]
) -> pd.DataFrame:
    """Numeric features parsed (`numeric_features`); text and categorical ones kept as the
    exact strings of the file (an empty cell is missing text, never an error)."""
    numeric = [name for name, kind in kinds.items() if kind == "numeric"]
    parsed = numeric_features(client_id, path, raw, numeric) if numeric else None
    columns = {
        name: parsed[name] if kind == "numeric" else raw[name].astype(str)
        for name, kind in kinds.items()
    }
    return pd.DataFrame(columns, index=raw.index)


def _check_ids(client_id: str, path: Path, ids: pd.Series, column: str) -> None:
    empty = ids.str.strip().eq("")
    if empty.any():
        line = int(np.flatnonzero(empty.to_numpy())[0]) + 2
        raise DataError(client_id, path, f"column '{column}' is empty on line {line}")
    dupes = ids[ids.duplicated()]
    if not dupes.empty:
        raise DataError(
            client_id,
            path,
            f"column '{column}' has {dupes.size} duplicate value(s), e.g. {dupes.iloc[0]!r}",
        )


def load_training_table(client: ClientConfig, path: Path) -> TrainingTable:
    """Load and validate a client's training CSV (gzip)."""
    cid, label, pid = client.client_id, client.label_column, client.id_column
    features = list(client.features)
    header = read_header(cid, path)
    require_columns(cid, path, header, [pid, *features, label])
    raw = _read_frame(cid, path, [pid, label], features)
    if raw.empty:
        raise DataError(cid, path, "no data rows (header only)")
    _check_ids(cid, path, raw[pid], pid)
    labels = raw[label]
    blank = labels.str.strip().eq("")
    if blank.any():
        line = int(np.flatnonzero(blank.to_numpy())[0]) + 2
        raise DataError(cid, path, f"column '{label}' is empty on line {line}")
    if labels.nunique() < 2:
        raise DataError(
            cid, path, f"column '{label}' has a single class {labels.iloc[0]!r}; need at least 2"
        )
    return TrainingTable(
        client_id=cid,
        path=path,
        fingerprint=file_fingerprint(path),
        product_ids=raw[pid],
        features=feature_frame(cid, path, raw, {s.name: s.kind for s in client.feature_specs}),
        labels=labels,
    )


def load_scoring_table(
    client: ClientConfig,
    path: Path,
    features: list[str],
    kinds: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Load and validate a scoring CSV in pandas (reference path and small inputs).

    `kinds` (feature -> numeric/text/categorical, the model's) defaults to all numeric."""
    cid, pid = client.client_id, client.id_column
    header = read_header(cid, path)
    check_scoring_header(cid, path, header, pid, features)
    raw = _read_frame(cid, path, [pid], features)
    if raw.empty:
        raise DataError(cid, path, "no data rows (header only)")
    _check_ids(cid, path, raw[pid], pid)
    kinds = {name: (kinds or {}).get(name, "numeric") for name in features}
    frame = feature_frame(cid, path, raw, kinds) if features else pd.DataFrame(index=raw.index)
    frame.insert(0, pid, raw[pid])
    return frame


def check_scoring_header(
    client_id: str, path: Path, header: list[str], id_column: str, features: list[str]
) -> list[str]:
    """The scoring file must hold the id column and the model's features; other columns (a
    catalogue export has more) are ignored, and the log says which."""
    require_columns(client_id, path, header, [id_column, *features])
    extra = [c for c in header if c not in {id_column, *features}]
    if extra:
        _log.info(
            "client '%s': %s: ignoring column(s) %s (not features of the model)",
            client_id,
            path,
            ", ".join(map(repr, extra)),
        )
    return extra


def read_raw_training_file(client: ClientConfig, path: Path) -> pd.DataFrame:
    """Every expected column that is present, as exact strings, for the data-quality checks.

    Only an unreadable file (missing, not gzip, empty) raises; everything else is for the
    checks to judge.
    """
    header = read_header(client.client_id, path)
    wanted = [client.id_column, *client.features, client.label_column]
    return _read_frame(client.client_id, path, [c for c in wanted if c in header], [])
