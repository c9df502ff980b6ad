"""Request authentication: the bearer key, its scope, and the per-key rate limit.

Routes declare what they need with the ``Annotated`` dependencies at the bottom
(``UserPrincipal``, ``WorkerPrincipal``). A missing, malformed, unknown or revoked key gets
401; a key of the wrong scope gets 403 (which says nothing about any resource); a key past
its rate limit gets 429 with ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.db.models import KeyScope
from service.deps import SessionDep
from service.errors import Forbidden, TooManyRequests, Unauthorized
from service.keys import Principal, resolve_key

_bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer acpt_...`")


def authenticate(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    principal = resolve_key(session, credentials.credentials)
    # Release the connection now: the route opens its own transaction.
    session.rollback()
    if principal is None:
        raise Unauthorized("invalid or revoked API key")
    wait = request.app.state.rate_limiter.take(principal.key_id)
    if wait is not None:
        raise TooManyRequests(
            "rate limit exceeded for this API key; retry after the Retry-After seconds", wait
        )
    return principal


def require_scope(*scopes: KeyScope) -> Callable[[Principal], Principal]:
    allowed = ", ".join(s.value for s in scopes)

    def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.scope not in scopes:
            raise Forbidden(f"this route needs a key with scope {allowed}, not {principal.scope}")
        return principal

    return check


UserPrincipal = Annotated[Principal, Depends(require_scope(KeyScope.USER, KeyScope.ADMIN))]
WorkerPrincipal = Annotated[Principal, Depends(require_scope(KeyScope.WORKER, KeyScope.ADMIN))]
