"""A typed HTTP client for the worker protocol (`/api/v1/leases/...`).

Owns transport concerns so the loop never sees them: the bearer token (sent in a header, never
logged or put in an exception message), bounded retries with exponential backoff and jitter on
connection errors, timeouts, 5xx and 429 (honouring `Retry-After`), and lease fencing: a `409`
names the tokens that are no longer current; the client drops those items and resends the rest,
and returns what was lost beside the answer. Every write of the protocol is idempotent on the
server, so resending a call whose answer was lost in transit is safe.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import httpx

from worker.protocol import (
    BaselineLease,
    CompleteAnswer,
    Failure,
    HeartbeatAnswer,
    Lease,
    LeaseAnswer,
    Report,
    ReportAnswer,
    Result,
)

log = logging.getLogger(__name__)

PREFIX = "/api/v1/leases"
DATASETS = "/api/v1/worker/datasets"


class ClientError(Exception):
    """Base class of what the client raises."""


class ServerUnavailable(ClientError):
    """The server did not answer usefully within the retry budget."""


class ProtocolError(ClientError):
    """A 4xx the worker cannot fix by retrying (bad key, invalid body): a bug or misconfiguration."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"server answered {status}: {detail}")
        self.status = status
        self.detail = detail


class LeasesLost(ClientError):
    """A `409`: some tokens of the call are no longer current."""

    def __init__(self, lost: frozenset[str]) -> None:
        super().__init__(f"{len(lost)} lease(s) lost")
        self.lost = lost


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with "equal jitter": half the delay fixed, half random, so retries
    from many workers after an API restart spread out but the total wait stays bounded
    (with the defaults about 15-25 s, longer than an API restart takes)."""

    attempts: int = 9
    base_s: float = 0.1
    max_s: float = 4.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        cap = min(self.max_s, self.base_s * 2**attempt)
        delay = cap / 2 + rng.uniform(0, cap / 2)
        if retry_after is not None:
            # The server knows best when it can take us again; never ask earlier than that.
            delay = max(delay, min(retry_after, 60.0))
        return delay


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare for APIs; fall back to our own backoff


def _detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return body.get("detail", body) if isinstance(body, dict) else body


def _lost_tokens(detail: Any) -> frozenset[str]:
    if isinstance(detail, dict):
        lost = detail.get("lost")
        if isinstance(lost, list):
            return frozenset(str(t) for t in lost)
    return frozenset()


class WorkerClient:
    """Synchronous, thread-safe client; one instance per thread keeps retries independent."""

    def __init__(
        self,
        server: str,
        token: str,
        *,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], object] | None = None,
        seed: int | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._server = server.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s
        self._retry = retry or RetryPolicy()
        # An interruptible sleep (an Event's wait) lets SIGTERM cut a backoff short.
        self._sleep = sleep or threading.Event().wait
        self._rng = random.Random(seed)
        self._transport = transport
        self._http = httpx.Client(
            base_url=self._server,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            transport=transport,
        )

    def clone(self) -> WorkerClient:
        """A new client with the same settings and its own connection pool (for another thread)."""
        return WorkerClient(
            self._server,
            self._token,
            timeout_s=self._timeout_s,
            retry=self._retry,
            sleep=self._sleep,
            transport=self._transport,
        )

    def close(self) -> None:
        self._http.close()

    # -- transport -------------------------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        last: str = "no attempt made"
        for attempt in range(self._retry.attempts):
            retry_after: float | None = None
            try:
                response = self._http.post(PREFIX + path, json=body)
            except httpx.TransportError as exc:
                # Connection refused/reset, timeouts, a server killed mid-answer: all retryable,
                # because the server makes every protocol write idempotent.
                last = type(exc).__name__
            else:
                status = response.status_code
                if 200 <= status < 300:
                    data = response.json()
                    return data if isinstance(data, dict) else {}
                if status == 409:
                    raise LeasesLost(_lost_tokens(_detail(response)))
                if status == 429 or status >= 500:
                    retry_after = _retry_after(response)
                    last = f"HTTP {status}"
                else:
                    raise ProtocolError(status, _detail(response))
            if attempt + 1 < self._retry.attempts:
                delay = self._retry.delay(attempt, retry_after, self._rng)
                log.info("POST %s failed (%s); retrying in %.2fs", PREFIX + path, last, delay)
                self._sleep(delay)
        raise ServerUnavailable(
            f"POST {PREFIX + path}: {last} after {self._retry.attempts} attempts"
        )

    def download(self, path: str, out: BinaryIO, max_bytes: int) -> None:
        """GET ``path`` into ``out`` (truncated and rewritten on each retry), with the retries
        of a POST; an answer longer than ``max_bytes`` is a :class:`ProtocolError`."""
        last = "no attempt made"
        for attempt in range(self._retry.attempts):
            retry_after: float | None = None
            try:
                with self._http.stream("GET", path) as response:
                    status = response.status_code
                    if 200 <= status < 300:
                        out.seek(0)
                        out.truncate()
                        size = 0
                        for chunk in response.iter_bytes():
                            size += len(chunk)
                            if size > max_bytes:
                                raise ProtocolError(status, f"more than {max_bytes} bytes")
                            out.write(chunk)
                        return
                    response.read()
                    if status != 429 and status < 500:
                        raise ProtocolError(status, _detail(response))
                    retry_after, last = _retry_after(response), f"HTTP {status}"
            except httpx.TransportError as exc:
                last = type(exc).__name__
            if attempt + 1 < self._retry.attempts:
                delay = self._retry.delay(attempt, retry_after, self._rng)
                log.info("GET %s failed (%s); retrying in %.2fs", path, last, delay)
                self._sleep(delay)
        raise ServerUnavailable(f"GET {path}: {last} after {self._retry.attempts} attempts")

    def _post_fenced(
        self, path: str, key: str, items: Sequence[Report | Result | Failure]
    ) -> tuple[dict[str, Any], list[str], frozenset[str]]:
        """POST `items`, dropping those a 409 names as lost and resending the rest."""
        pending: list[Report | Result | Failure] = list(items)
        lost: set[str] = set()
        while pending:
            try:
                data = self._post(path, {key: [item.to_json() for item in pending]})
            except LeasesLost as exc:
                mine = {item.token for item in pending}
                newly = exc.lost & mine
                # A 409 that names none of our tokens cannot be resolved by resending: treat
                # the whole call as lost rather than loop forever.
                lost |= newly or mine
                pending = [item for item in pending if item.token not in lost]
                continue
            return data, [item.token for item in pending], frozenset(lost)
        return {}, [], frozenset(lost)

    # -- the protocol ----------------------------------------------------------------------

    def lease(self, worker_id: str, capacity: int) -> LeaseAnswer:
        data = self._post("", {"worker_id": worker_id, "capacity": capacity})
        retry = data.get("retry_after_s")
        return LeaseAnswer(
            leases=tuple(Lease.from_json(item) for item in data.get("leases", [])),
            retry_after_s=float(retry) if retry is not None else None,
            baselines=tuple(BaselineLease.from_json(item) for item in data.get("baselines", [])),
        )

    def heartbeat(self, tokens: Sequence[str]) -> HeartbeatAnswer:
        if not tokens:
            return HeartbeatAnswer(held=frozenset(), lost=frozenset())
        try:
            data = self._post("/heartbeat", {"tokens": list(tokens)})
        except LeasesLost as exc:  # the contract says heartbeats never 409; be lenient anyway
            lost = exc.lost or frozenset(tokens)
            return HeartbeatAnswer(held=frozenset(tokens) - lost, lost=lost)
        return HeartbeatAnswer(
            held=frozenset(str(t) for t in data.get("held", [])),
            lost=frozenset(str(t) for t in data.get("lost", [])),
        )

    def report(self, reports: Sequence[Report]) -> ReportAnswer:
        data, accepted, lost = self._post_fenced("/report", "reports", reports)
        return ReportAnswer(
            accepted=tuple(accepted),
            stop=frozenset(str(t) for t in data.get("stop", [])),
            lost=lost,
        )

    def complete(self, results: Sequence[Result]) -> CompleteAnswer:
        _, accepted, lost = self._post_fenced("/complete", "results", results)
        return CompleteAnswer(accepted=tuple(accepted), lost=lost)

    def fail(self, failures: Sequence[Failure]) -> CompleteAnswer:
        """Report trials this worker could not build or train (they fail, with the reason)."""
        if not failures:
            return CompleteAnswer(accepted=(), lost=frozenset())
        _, accepted, lost = self._post_fenced("/fail", "failures", failures)
        return CompleteAnswer(accepted=tuple(accepted), lost=lost)

    def release(self, tokens: Sequence[str]) -> frozenset[str]:
        if not tokens:
            return frozenset()
        pending = list(tokens)
        while pending:
            try:
                data = self._post("/release", {"tokens": pending})
            except LeasesLost as exc:
                # Already gone (reaped or finished elsewhere): nothing left to give back.
                pending = [t for t in pending if t not in (exc.lost or set(pending))]
                continue
            return frozenset(str(t) for t in data.get("released", []))
        return frozenset()
