"""Fixtures for the service's integration tests: a fresh migrated database per test module,
on SQLite and on Postgres, an app on it, and API keys.

Postgres comes from ``ACPROP_TUNER_TEST_POSTGRES_URL`` (a server URL such as
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``). Without it the Postgres variants
skip, unless ``ACPROP_TUNER_REQUIRE_POSTGRES=1`` (as ``.ci/run`` sets), where they fail.
A migrated template database (with Optuna's tables too) is built once per session and
each module gets its own copy (``CREATE DATABASE ... TEMPLATE``, as procrastinate does),
dropped afterwards. SQLite modules get a copy of a migrated file.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url

from service.app import create_app
from service.db.migrate import upgrade
from service.db.models import Base, KeyScope
from service.db.scratch import create_database, drop_database
from service.keys import create_key
from service.settings import Settings

POSTGRES_ENV = "ACPROP_TUNER_TEST_POSTGRES_URL"
REQUIRE_ENV = "ACPROP_TUNER_REQUIRE_POSTGRES"

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def postgres_required() -> bool:
    return os.environ.get(REQUIRE_ENV) == "1"


def _no_postgres(reason: str) -> None:
    if postgres_required():
        pytest.fail(f"Postgres is required ({REQUIRE_ENV}=1) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[tuple[Engine, URL]]:
    """An AUTOCOMMIT engine on the Postgres server, and the server's URL."""
    raw = os.environ.get(POSTGRES_ENV)
    if not raw:
        _no_postgres(f"{POSTGRES_ENV} is not set")
    server = make_url(raw)  # type: ignore[arg-type]
    admin = create_engine(server, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        admin.dispose()
        _no_postgres(f"the Postgres server does not answer ({type(exc).__name__})")
    yield admin, server
    admin.dispose()


def _create_optuna_tables(url: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url)
    storage.engine.dispose()


def _url_string(url: URL) -> str:
    return url.render_as_string(hide_password=False)


create_postgres_database = create_database
drop_postgres_database = drop_database


@pytest.fixture(scope="session")
def postgres_template(postgres_admin: tuple[Engine, URL]) -> Iterator[str]:
    admin, server = postgres_admin
    name = f"acprop_api_tpl_{uuid.uuid4().hex[:10]}"
    create_postgres_database(admin, name)
    try:
        url = _url_string(server.set(database=name))
        upgrade(url)
        _create_optuna_tables(url)
        yield name
    finally:
        drop_postgres_database(admin, name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite"
    url = f"sqlite:///{path}"
    upgrade(url)
    _create_optuna_tables(url)
    return path


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh, migrated database for this test module."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path_factory.mktemp("db") / "acprop.sqlite"
        shutil.copy(template, path)
        yield f"sqlite:///{path}"
        return
    admin, server = request.getfixturevalue("postgres_admin")
    template_name = request.getfixturevalue("postgres_template")
    name = f"acprop_api_{uuid.uuid4().hex[:10]}"
    create_postgres_database(admin, name, template=template_name)
    try:
        yield _url_string(server.set(database=name))
    finally:
        drop_postgres_database(admin, name)


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": SecretStr(database_url),
        "data_dir": data_dir,
        "rate_limit_per_s": 10_000.0,
        "rate_limit_burst": 100_000,
        "quota_active_jobs": 1_000,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(database_url, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@dataclass(frozen=True)
class Key:
    secret: str
    id: uuid.UUID
    tenant: str
    tenant_id: uuid.UUID

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


KeyFactory = Callable[..., Key]


def key_factory(app: FastAPI) -> KeyFactory:
    def make(tenant: str | None = None, scope: KeyScope = KeyScope.USER) -> Key:
        tenant = tenant or f"tenant-{uuid.uuid4().hex[:8]}"
        with app.state.session_factory() as session:
            key, secret = create_key(session, tenant=tenant, scope=scope)
            return Key(secret, key.id, tenant, key.tenant_id)

    return make


@pytest.fixture(scope="module")
def make_key(app: FastAPI) -> KeyFactory:
    """Create an API key (for a new tenant unless one is named)."""
    return key_factory(app)


def count_rows(app: FastAPI) -> dict[str, int]:
    """Rows in every table of ours and in Optuna's studies table."""
    tables = [*sorted(Base.metadata.tables), "studies"]
    with app.state.engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in tables}
