"""The client's one error hierarchy, built from the service's ``{"error", "detail"}`` bodies.

Every failure a :class:`~acprop_tuner.client.TunerClient` call can raise is a
:class:`TunerError`: an answer from the server (with its status, error code and detail), a
server that could not be reached (:class:`Unavailable` with ``status`` None), or a wait that
ran out (:class:`WaitTimeout`). Messages are built from the server's answer and the request's
method and path only, never from headers, so the API key cannot leak through an exception.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "RateLimited",
    "TunerError",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
    "error_from_response",
]


class TunerError(Exception):
    """A call to the tuning service failed.

    Attributes:
        status: the HTTP status code, or None when no answer came (connection, timeout).
        error: the service's error code (``not_found``, ``conflict``, ``rate_limited``, ...).
        detail: the service's explanation: a string, or a list/object for some errors
            (422 lists ``{"loc", "msg", "type"}``; quotas give an object).
    """

    def __init__(self, status: int | None, error: str, detail: Any = None) -> None:
        self.status = status
        self.error = error
        self.detail = detail
        super().__init__(self._message())

    def _message(self) -> str:
        prefix = f"{self.status} {self.error}" if self.status is not None else self.error
        return f"{prefix}: {_describe(self.detail)}" if self.detail is not None else prefix

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, error={self.error!r})"


class Unauthorized(TunerError):
    """401: the API key is missing, malformed, unknown or revoked."""


class Forbidden(TunerError):
    """403: the key's scope does not allow this call (a worker key used for jobs)."""


class NotFound(TunerError):
    """404: no such job or data set for this key's tenant (or a malformed id)."""


class Conflict(TunerError):
    """409: the call conflicts with the job's state (cancelling a finished job, reusing an
    Idempotency-Key for another job, a recommendation that does not exist yet)."""


class InvalidRequest(TunerError):
    """422 (or 413): the request was refused as invalid; :attr:`fields` names what was wrong."""

    @property
    def fields(self) -> list[str]:
        """The offending fields as dotted paths, e.g. ``["body.budget.n_trials"]``."""
        if not isinstance(self.detail, list):
            return []
        return [
            ".".join(str(part) for part in item.get("loc", []))
            for item in self.detail
            if isinstance(item, Mapping)
        ]


class RateLimited(TunerError):
    """429: the key's rate limit or a tenant quota (``error == "quota_exceeded"``) was hit.

    Attributes:
        retry_after_s: the server's ``Retry-After``, in seconds (None if it gave none).
    """

    def __init__(
        self, status: int | None, error: str, detail: Any = None, retry_after_s: float | None = None
    ) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(status, error, detail)


class Unavailable(TunerError):
    """503 (the service's database is unreachable) or no answer at all (connection refused,
    timeout); ``retry_after_s`` is the server's hint when it answered."""

    def __init__(
        self, status: int | None, error: str, detail: Any = None, retry_after_s: float | None = None
    ) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(status, error, detail)


class WaitTimeout(TunerError, TimeoutError):
    """:meth:`TunerClient.wait` gave up before the job ended (the job itself goes on)."""


_BY_STATUS: dict[int, type[TunerError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    422: InvalidRequest,
}


def _describe(detail: Any) -> str:
    """A one-line rendering of a detail (422 lists become ``loc: msg; ...``)."""
    if isinstance(detail, list) and all(isinstance(d, Mapping) and "msg" in d for d in detail):
        return "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', []))}: {d['msg']}" for d in detail
        )
    if isinstance(detail, Mapping) and ("msg" in detail or "message" in detail):
        return str(detail.get("msg", detail.get("message")))
    return str(detail)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the service sends integers; an HTTP date is ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def error_from_response(
    status: int, body: Any, retry_after: str | None = None, text: str = ""
) -> TunerError:
    """The :class:`TunerError` for an error answer (``body``: its decoded JSON, if any)."""
    if isinstance(body, Mapping) and "error" in body:
        error, detail = str(body["error"]), body.get("detail")
    else:
        # Not the service's shape (a proxy in between, say): keep a short excerpt.
        error, detail = "http_error", text[:200] or None
    if status == 429:
        return RateLimited(status, error, detail, parse_retry_after(retry_after))
    if status == 503:
        return Unavailable(status, error, detail, parse_retry_after(retry_after))
    return _BY_STATUS.get(status, TunerError)(status, error, detail)
