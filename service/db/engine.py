"""The SQLAlchemy engine: one per process, built from :class:`~service.settings.Settings`.

Owns the connection behaviour that keeps the API responsive when the database is not:
``pool_pre_ping`` drops connections that died with a database restart, a short connect
timeout and a statement timeout turn an unreachable or stuck database into an error within
seconds (the API answers 503), and SQLite runs in WAL mode with foreign keys on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from service.settings import Settings


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control from the driver (it would BEGIN lazily, before the first
    # write), so that each transaction starts with BEGIN IMMEDIATE below: SQLite has one
    # writer, and a transaction that reads and then writes would otherwise fail with
    # "database is locked" instead of waiting for the other writer.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def engine_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``create_engine`` (shared with Optuna's storage engine)."""
    url = make_url(settings.database_url_value())
    if url.get_backend_name() == "sqlite":
        return {
            "connect_args": {"timeout": settings.db_pool_timeout_s, "check_same_thread": False},
            "pool_pre_ping": True,
        }
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        connect_args = {
            "connect_timeout": settings.db_connect_timeout_s,
            "options": f"-c statement_timeout={settings.db_statement_timeout_ms}"
            f" -c lock_timeout={settings.db_statement_timeout_ms}",
            "application_name": "acprop-tuner",
        }
    return {
        "connect_args": connect_args,
        "pool_pre_ping": True,
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_pool_size,
        "pool_timeout": settings.db_pool_timeout_s,
        "pool_recycle": 1800,
    }


def ensure_sqlite_directory(raw_url: str) -> None:
    """Create the directory of a SQLite database file (the per-user data dir on first use)."""
    url = make_url(raw_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def create_db_engine(settings: Settings) -> Engine:
    """A new engine for the configured database (the caller disposes of it)."""
    url = make_url(settings.database_url_value())
    ensure_sqlite_directory(settings.database_url_value())
    engine = create_engine(url, **engine_kwargs(settings))
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine
