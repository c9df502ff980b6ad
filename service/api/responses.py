"""OpenAPI descriptions of the error responses routes can give (all in the one error shape)."""

from __future__ import annotations

from typing import Any

from service.errors import ErrorBody

_DESCRIPTIONS = {
    400: "malformed request",
    401: "missing, malformed, unknown or revoked API key",
    403: "the key's scope does not allow this route",
    404: "no such resource for this tenant",
    409: "the request conflicts with the resource's state",
    413: "request body over the configured limit",
    422: "invalid input; `detail` names the field",
    429: "rate limit or tenant quota exceeded; see Retry-After",
    503: "database unreachable; see Retry-After",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in codes}


# Every authenticated route can answer these.
AUTHENTICATED = (401, 403, 429, 503)
