"""API keys and tenants: create, revoke, list, and resolve a presented key.

A key is ``acpt_`` followed by 43 URL-safe random characters. It is shown once, when
created; the database keeps its SHA-256 hash (a key has 256 bits of entropy, so a plain
hash is enough: there is nothing to brute-force) and a short ``prefix`` that identifies it
in listings. Resolution looks the hash up on every request, so a revocation takes effect on
the next request.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import ApiKey, KeyScope, Tenant, utcnow
from service.errors import NotFound

KEY_PREFIX = "acpt_"
_SHOWN_CHARS = 12


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_key(secret: str) -> bool:
    return secret.startswith(KEY_PREFIX) and 20 <= len(secret) <= 200 and secret.isascii()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key, its tenant and its scope."""

    key_id: uuid.UUID
    tenant_id: uuid.UUID
    scope: KeyScope


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: uuid.UUID
    tenant: str
    scope: str
    name: str | None
    prefix: str
    created_at: str
    revoked_at: str | None


def get_or_create_tenant(session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
    return tenant


def create_key(
    session: Session, *, tenant: str, scope: KeyScope, name: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key for ``tenant`` (created if new); returns the row and the secret."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    owner = get_or_create_tenant(session, tenant)
    key = ApiKey(
        tenant_id=owner.id,
        name=name,
        prefix=secret[:_SHOWN_CHARS],
        secret_hash=hash_secret(secret),
        scope=scope.value,
    )
    session.add(key)
    session.commit()
    return key, secret


def revoke_key(session: Session, key_id: uuid.UUID) -> ApiKey:
    """Revoke a key (idempotent: a revoked key stays revoked at its first time)."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key with id {key_id}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.commit()
    return key


def list_keys(session: Session, tenant: str | None = None) -> list[KeyInfo]:
    query = select(ApiKey, Tenant.name).join(Tenant).order_by(ApiKey.created_at, ApiKey.id)
    if tenant is not None:
        query = query.where(Tenant.name == tenant)
    return [
        KeyInfo(
            id=key.id,
            tenant=tenant_name,
            scope=key.scope,
            name=key.name,
            prefix=key.prefix,
            created_at=key.created_at.isoformat(),
            revoked_at=key.revoked_at.isoformat() if key.revoked_at else None,
        )
        for key, tenant_name in session.execute(query).all()
    ]


def resolve_key(session: Session, secret: str) -> Principal | None:
    """The principal of a presented key, or None if it is unknown or revoked."""
    if not looks_like_key(secret):
        return None
    key = session.scalar(select(ApiKey).where(ApiKey.secret_hash == hash_secret(secret)))
    if key is None or key.revoked_at is not None:
        return None
    return Principal(key_id=key.id, tenant_id=key.tenant_id, scope=KeyScope(key.scope))
