"""What the fleet server accepts in a request body, and its errors as one sentence each.

The body is MLflow's scoring-server JSON (`dataframe_split` or `dataframe_records`, optional
`params`); it is checked here for size, shape and types before a model sees it, so a malformed
or oversized request costs no model load and disturbs no other client. The frame's columns and
values are then checked by the model itself (MLflow's schema enforcement and the pyfunc), as
`mlflow models serve` does.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

SPLIT = "dataframe_split"
RECORDS = "dataframe_records"
FORMATS = (SPLIT, RECORDS)
PARAMS = "params"
MAX_MESSAGE_CHARS = 300
#: MLflow's wrapping of a model's error, which repeats the whole input frame
_MLFLOW_ECHO = re.compile(r"\s*Failed to (?:predict|enforce schema of) data .*?Error: ", re.S)
#: MLflow error codes by HTTP status, as its scoring server answers them
ERROR_CODES = {
    400: "BAD_REQUEST",
    404: "RESOURCE_DOES_NOT_EXIST",
    405: "METHOD_NOT_ALLOWED",
    413: "REQUEST_LIMIT_EXCEEDED",
    415: "UNSUPPORTED_MEDIA_TYPE",
    503: "TEMPORARILY_UNAVAILABLE",
}


class ServingError(Exception):
    """A request the server answers with `status` and one sentence."""

    def __init__(self, status: int, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = one_sentence(message)
        self.error_code = error_code or ERROR_CODES.get(status, "INTERNAL_ERROR")

    def body(self) -> dict[str, str]:
        return {"error_code": self.error_code, "message": self.message}


def one_sentence(message: str) -> str:
    """The useful first line of an error message, without MLflow's echo of the whole input."""
    text = str(message)
    while echo := _MLFLOW_ECHO.match(text):  # "Failed to predict data '<the frame>'. Error: ..."
        text = text[echo.end() :]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    text = lines[0] if lines else "error"
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def check_content_type(content_type: str | None) -> None:
    mime = (content_type or "application/json").split(";")[0].strip().lower()
    if mime != "application/json":
        raise ServingError(415, f"content type {mime!r} is not supported; send application/json")


async def read_body(
    stream: AsyncIterator[bytes], content_length: str | None, max_bytes: int
) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed `max_bytes`."""
    limit = f"the limit of {max_bytes / 2**20:g} MB (--max-body-mb)"
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise ServingError(
                400, f"Content-Length {content_length[:40]!r} is not a number"
            ) from None
        if declared > max_bytes:
            raise ServingError(413, f"request body of {declared} bytes is over {limit}")
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > max_bytes:
            raise ServingError(413, f"request body is over {limit}")
        chunks.append(chunk)
    return b"".join(chunks)


def _rows_of_split(frame: Any) -> int:
    if not isinstance(frame, dict) or not isinstance(frame.get("columns"), list):
        raise ServingError(400, f"'{SPLIT}' must be an object with 'columns' (a list) and 'data'")
    columns, data = frame["columns"], frame.get("data")
    if not all(isinstance(c, str) for c in columns):
        raise ServingError(400, f"'{SPLIT}.columns' must be a list of column names (strings)")
    if not isinstance(data, list):
        raise ServingError(400, f"'{SPLIT}.data' must be a list of rows")
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise ServingError(
                400,
                f"'{SPLIT}.data' row {i} must be a list of {len(columns)} values, one per column",
            )
    return len(data)


def _rows_of_records(records: Any) -> int:
    if not isinstance(records, list):
        raise ServingError(400, f"'{RECORDS}' must be a list of objects, one per product")
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise ServingError(400, f"'{RECORDS}' item {i} must be an object (column: value)")
    return len(records)


def parse_payload(body: bytes, max_rows: int) -> dict[str, Any]:
    """The decoded request: exactly one frame format, at most `max_rows` rows, params an object."""
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ServingError(
            400,
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    except (UnicodeDecodeError, RecursionError):
        raise ServingError(400, "request body is not valid UTF-8 JSON") from None
    if not isinstance(payload, dict):
        raise ServingError(
            400,
            f"request body must be a JSON object with '{SPLIT}' or '{RECORDS}', got {type(payload).__name__}",
        )
    formats = [key for key in FORMATS if key in payload]
    unknown = sorted(set(payload) - {*FORMATS, PARAMS})
    if len(formats) != 1 or unknown:
        found = ", ".join(repr(k) for k in sorted(payload)[:5]) or "no keys"
        raise ServingError(
            400,
            f"request body must hold exactly one of '{SPLIT}' or '{RECORDS}' (and optionally '{PARAMS}'); found {found}",
        )
    if PARAMS in payload and not isinstance(payload[PARAMS], dict):
        raise ServingError(400, f'\'{PARAMS}\' must be an object, e.g. {{"output": "rows"}}')
    rows = (
        _rows_of_split(payload[SPLIT])
        if formats[0] == SPLIT
        else _rows_of_records(payload[RECORDS])
    )
    if rows == 0:
        raise ServingError(400, "the request holds no products (0 rows)")
    if rows > max_rows:
        raise ServingError(
            413, f"the request holds {rows} rows, over the limit of {max_rows} (--max-rows)"
        )
    return payload
