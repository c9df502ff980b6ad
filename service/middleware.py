"""Pure ASGI middleware: the request-body size limit, the security headers and the Prometheus
request metrics.

The size limit reads the body before the application does, counting bytes as they arrive,
so it holds whether or not the client sent ``Content-Length`` (chunked uploads included);
a body over the limit gets 413 in the service's error shape and the application never runs.
Bodies are small (64 KiB by default), so the accepted body is replayed to the application
from memory. The routes named in ``streamed`` (the data-set upload) are not buffered: a
``Content-Length`` over their own limit is refused here, and the route counts what arrives.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def _send_error(send: Send, status: int, error: str, detail: str) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodySizeLimitMiddleware:
    """Answer 413 to any request whose body exceeds ``max_bytes``; requests to the
    ``(method, path)`` pairs of ``streamed`` pass unbuffered under their own limit."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, streamed: dict[tuple[str, str], int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.streamed = dict(streamed or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        own_limit = self.streamed.get((scope.get("method", ""), scope.get("path", "")))
        limit = self.max_bytes if own_limit is None else own_limit
        too_large = f"the request body is larger than the limit of {limit} bytes"
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit():
                    await _send_error(send, 400, "bad_request", "invalid Content-Length header")
                    return
                if int(value) > limit:
                    await _send_error(send, 413, "payload_too_large", too_large)
                    return
        if own_limit is not None:
            await self.app(scope, receive, send)  # the route counts the bytes as they arrive
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_error(send, 413, "payload_too_large", too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class Metrics:
    """The process's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "acprop_tuner_http_requests",
            "HTTP requests answered, by method, route template and status code",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "acprop_tuner_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template",
            ("method", "route"),
            registry=self.registry,
        )
        self.jobs_created = Counter(
            "acprop_tuner_jobs_created", "Tuning jobs created", registry=self.registry
        )
        self.recommendation_fits = Counter(
            "acprop_tuner_recommendation_fits",
            "Recommendations fitted in the background (service/recommendation_cache.py)",
            registry=self.registry,
        )


class MetricsMiddleware:
    """Count and time every HTTP request by its route template (never the raw path, whose
    ids would make the label set unbounded). Templates come from ``paths()`` (the OpenAPI
    paths of the app), compiled on first use."""

    def __init__(self, app: ASGIApp, metrics: Metrics, paths: Callable[[], Iterable[str]]) -> None:
        self.app = app
        self.metrics = metrics
        self._paths = paths
        self._templates: list[tuple[re.Pattern[str], str]] | None = None

    def _template(self, path: str) -> str:
        if self._templates is None:
            self._templates = [(compile_path(p)[0], p) for p in self._paths()]
        for regex, template in self._templates:
            if regex.match(path):
                return template
        return "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            template = self._template(scope.get("path", ""))
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)


class SecurityHeadersMiddleware:
    """Headers on every answer: ``X-Content-Type-Options: nosniff`` (a browser must not guess
    a JSON error to be a page), and ``Cache-Control: no-store`` on the API's answers, which
    hold a tenant's data (no shared or browser cache keeps them). An answer that set its own
    ``Cache-Control`` (the dashboard's versioned assets) keeps it."""

    def __init__(self, app: ASGIApp, api_prefix: str) -> None:
        self.app = app
        self.api_prefix = api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        private = str(scope.get("path", "")).startswith(self.api_prefix)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                if private and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
