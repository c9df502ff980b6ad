"""A throwaway Postgres database for one benchmark run (created, yielded, dropped)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def server_url() -> str:
    """The Postgres server benchmarks use (the CI/test server unless told otherwise)."""
    return (
        os.environ.get("ACPROP_TUNER_BENCH_POSTGRES_URL")
        or os.environ.get("ACPROP_TUNER_TEST_POSTGRES_URL")
        or "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )


@contextmanager
def fresh_database() -> Iterator[str]:
    """Yields the URL of a new, empty database on :func:`server_url`; drops it afterwards."""
    server = make_url(server_url())
    name = f"acprop_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
