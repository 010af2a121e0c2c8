"""MLflow's scoring server with its 400 answers cut to the sentence that says what is wrong.

MLflow wraps every error of `/invocations` as `Failed to predict data '<the whole input
table>'. Error: Failed to enforce schema of data '<the table again>' with schema '<every
column>'. Error: Model is missing inputs ['title_length'].`: with a real request that is pages
of text around one useful sentence. `TrimmedErrors` keeps MLflow's answer (status,
`error_code`, JSON) and replaces `message` with what is inside MLflow's wrappers, as the
fleet server does (`fleet_requests.one_sentence`). `bettercat serve --client-id` runs MLflow's app
through it (`bettercat_assets.core.serving.app:app`); `mlflow models serve`
(`bettercat serve --mlflow-cli`) answers with MLflow's own text.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from bettercat_assets.core.serving.fleet_requests import one_sentence

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def useful_message(message: str) -> str:
    """MLflow's message without the wrappers that repeat the input table and the schema: the
    fleet server's `one_sentence`, so both servers answer a bad request alike."""
    return one_sentence(message)


class TrimmedErrors:
    """ASGI middleware: a JSON 4xx answer of `/invocations` gets `useful_message` as message."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != "/invocations":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body = bytearray()

        async def trimming_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                start = message  # hold it: the length changes with the body
                return
            if start is None:
                await send(message)
                return
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                await _send_trimmed(send, start, bytes(body))

        await self.app(scope, receive, trimming_send)


async def _send_trimmed(send: Send, start: Message, body: bytes) -> None:
    try:
        answer = json.loads(body)
        answer["message"] = useful_message(str(answer["message"]))
        body = json.dumps(answer).encode("utf-8")
    except (ValueError, KeyError, TypeError):
        pass  # not MLflow's JSON error: pass it on as it was
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode("latin-1")))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
