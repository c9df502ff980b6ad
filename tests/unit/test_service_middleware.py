"""The request-body limit as pure ASGI: with and without Content-Length, in chunks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from service.middleware import BodySizeLimitMiddleware


def _run(
    headers: list[tuple[bytes, bytes]], chunks: list[bytes], limit: int = 10
) -> tuple[int, Any, bytes | None]:
    seen: dict[str, bytes] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen["body"] = body
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    asyncio.run(BodySizeLimitMiddleware(app, max_bytes=limit)(scope, receive, send))
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return status, json.loads(body) if status != 200 else body, seen.get("body")


def test_small_chunked_body_reaches_the_app_whole() -> None:
    status, _, seen = _run([], [b"abc", b"def", b"g"])
    assert status == 200 and seen == b"abcdefg"


def test_chunked_body_over_the_limit_is_413_and_app_never_runs() -> None:
    status, body, seen = _run([], [b"123456", b"789012"])
    assert status == 413
    assert body["error"] == "payload_too_large"
    assert seen is None


def test_declared_length_over_the_limit_is_413_before_reading() -> None:
    status, _, seen = _run([(b"content-length", b"11")], [b"x" * 11])
    assert status == 413 and seen is None


def test_lying_content_length_is_caught_by_counting() -> None:
    status, _, seen = _run([(b"content-length", b"3")], [b"x" * 5, b"x" * 6])
    assert status == 413 and seen is None


def test_invalid_content_length_is_400() -> None:
    status, body, _ = _run([(b"content-length", b"-1")], [b""])
    assert status == 400 and body["error"] == "bad_request"
