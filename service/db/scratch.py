"""Throwaway Postgres databases: made empty or cloned from a template database
(``CREATE DATABASE ... TEMPLATE``, a file copy, much faster than running the migrations), and
dropped with every connection to them (``WITH (FORCE)``). The benchmarks and the tests make
theirs here; the service itself never does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url

__all__ = ["create_database", "drop_database", "scratch_database"]


def create_database(admin: Engine, name: str, template: str | None = None) -> None:
    """``admin``: an AUTOCOMMIT engine on the server (CREATE DATABASE runs outside a
    transaction)."""
    clause = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))


def drop_database(admin: Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def scratch_database(
    server_url: str | URL, *, prefix: str = "acprop_scratch", template: str | None = None
) -> Iterator[URL]:
    """A new database on the server at ``server_url`` (empty, or a copy of ``template``);
    yields its URL and drops it afterwards."""
    server = make_url(server_url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        create_database(admin, name, template)
        try:
            yield server.set(database=name)
        finally:
            drop_database(admin, name)
    finally:
        admin.dispose()
