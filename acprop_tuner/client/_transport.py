"""How the client talks HTTP: the API key on each request, retries, and error answers.

Owns the one place where requests are sent (:class:`Transport`), so every call of
:class:`~acprop_tuner.client.TunerClient` gets the same treatment: a 2xx is returned, an
error answer becomes a :class:`~acprop_tuner.client._errors.TunerError`, and 429, 503 and
connection errors are retried with exponential backoff and jitter, honouring
``Retry-After``. Only calls that are safe to repeat come through here (see the client's
module docstring), which is why this layer retries every method.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Generator, Mapping
from typing import Any

import httpx

from acprop_tuner import __version__
from acprop_tuner.client._errors import RateLimited, TunerError, Unavailable, error_from_response

__all__ = ["Transport"]

logger = logging.getLogger("acprop_tuner.client")

# Backoff before retry n (0-based): BASE * 2**n seconds, at most CAP, times a jitter in
# [0.5, 1] so that many clients refused together do not come back together.
_BACKOFF_BASE_S = 0.5
_BACKOFF_CAP_S = 8.0


class _BearerAuth(httpx.Auth):
    """Adds the API key to each request; holding it here (not in the client's default
    headers) keeps it out of everything that reprs or logs the client."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    def __repr__(self) -> str:
        return "_BearerAuth(<hidden>)"


class Transport:
    """Requests to ``<base_url>/api/v1`` with the key, retries and error mapping."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float,
        max_retries: int,
        max_retry_wait_s: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_url = f"{base_url}/api/v1"
        self.max_retries = max_retries
        self.max_retry_wait_s = max_retry_wait_s
        self._http = httpx.Client(
            base_url=self.api_url,
            auth=_BearerAuth(token) if token else None,
            timeout=timeout,
            headers={"User-Agent": f"acprop-tuner-client/{__version__}"},
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON of a successful answer (see :meth:`request`)."""
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise TunerError(
                response.status_code, "bad_response", f"{method} {path}: the answer is not JSON"
            ) from None

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        gone_after_retry_ok: bool = False,
    ) -> httpx.Response:
        """Send a request, retrying as the module docstring says; returns a 2xx answer.

        Args:
            gone_after_retry_ok: a 404 on a retry counts as success (a DELETE whose earlier
                try went through although its answer was lost).

        Raises:
            TunerError: the error answer (or :class:`Unavailable` without one) once retries
                are spent or not allowed.
        """
        for attempt in range(self.max_retries + 1):
            try:
                response = self._http.request(
                    method, path, params=params, json=json, content=content, headers=headers
                )
            except httpx.TransportError as exc:  # refused, reset, timed out: worth a retry
                error: TunerError = Unavailable(
                    None, "unreachable", f"{method} {self.api_url}{path}: {type(exc).__name__}"
                )
            except httpx.HTTPError as exc:  # e.g. an undecodable body: a retry will not help
                raise TunerError(
                    None, "bad_response", f"{method} {path}: {type(exc).__name__}"
                ) from None
            else:
                if response.is_success:
                    return response
                if gone_after_retry_ok and attempt > 0 and response.status_code == 404:
                    return response
                error = _error(response)
            delay = self._retry_delay(error, attempt)
            if delay is None:
                raise error
            logger.info("%s %s: %s; retrying in %.1f s", method, path, error.error, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _retry_delay(self, error: TunerError, attempt: int) -> float | None:
        """Seconds to wait before retrying after ``error``, or None to raise it."""
        if attempt >= self.max_retries or not isinstance(error, RateLimited | Unavailable):
            return None
        if error.error == "quota_exceeded":
            return None  # frees up only when a job ends, not within a retry's wait
        backoff = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**attempt) * (0.5 + random.random() / 2)
        delay = max(backoff, error.retry_after_s or 0.0)
        return delay if delay <= self.max_retry_wait_s else None


def _error(response: httpx.Response) -> TunerError:
    try:
        body = response.json()
    except ValueError:
        body = None
    return error_from_response(
        response.status_code, body, response.headers.get("Retry-After"), response.text
    )
