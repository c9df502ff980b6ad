"""Lease tokens: what a worker holds, and the only form the database keeps.

A token is a bearer secret for one (trial, attempt). The database stores a SHA-256 hash, so a
leaked database dump cannot be used to write results for a running trial. Tokens are random
(256 bits), so a plain unsalted hash is enough: there is nothing to guess or precompute.
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["TOKEN_PREFIX", "hash_token", "new_token"]

# A recognisable prefix lets secret scanners and humans tell lease tokens from API keys.
TOKEN_PREFIX = "lt_"


def new_token() -> str:
    """Return a fresh lease token (shown to the worker once, never stored)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Return the hex SHA-256 of a token: the value stored in `leases.token_hash`."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
