"""A throwaway Postgres database for one benchmark run (created, yielded, dropped)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from service.db.scratch import scratch_database


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
    with scratch_database(server_url(), prefix="acprop_bench") as url:
        yield url.render_as_string(hide_password=False)
