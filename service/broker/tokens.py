"""Lease tokens: what a worker holds, and the only form the database keeps.

A token is a bearer secret for one (trial, attempt). The database stores a SHA-256 hash, so a
leaked database dump cannot be used to write results for a running trial. Tokens are random
(256 bits), so a plain unsalted hash is enough: there is nothing to guess or precompute.
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["BASELINE_TOKEN_PREFIX", "TOKEN_PREFIX", "hash_token", "is_baseline_token", "new_token"]

# A recognisable prefix lets secret scanners and humans tell lease tokens from API keys.
TOKEN_PREFIX = "lt_"
# The leases of baseline runs (service/broker/baseline_writes.py): the prefix routes a
# worker's write to their table without a lookup in the other.
BASELINE_TOKEN_PREFIX = "lb_"


def new_token(prefix: str = TOKEN_PREFIX) -> str:
    """Return a fresh lease token (shown to the worker once, never stored)."""
    return prefix + secrets.token_urlsafe(32)


def is_baseline_token(token: str) -> bool:
    """Whether ``token`` holds a baseline run (else a trial, or nothing)."""
    return token.startswith(BASELINE_TOKEN_PREFIX)


def hash_token(token: str) -> str:
    """Return the hex SHA-256 of a token: the value stored in `leases.token_hash`."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
