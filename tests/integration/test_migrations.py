"""Migrations: upgrade from empty, downgrade, upgrade again; the models match the
migrations; Optuna's tables (and its ``alembic_version``) are never touched; the server
refuses to start on a database that is not at head."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import Column, Integer, MetaData, create_engine, inspect, text

from service.app import create_app
from service.db.migrate import (
    VERSION_TABLE,
    SchemaNotAtHead,
    downgrade,
    head_revision,
    include_name,
    upgrade,
)
from service.db.models import Base
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    make_settings,
)

OUR_TABLES = {
    "acprop_tenants",
    "acprop_api_keys",
    "acprop_jobs",
    "acprop_trials",
    "acprop_leases",
    "acprop_trial_reports",
    "acprop_baseline_runs",
    "acprop_baseline_leases",
    "acprop_datasets",
    "acprop_workers",
}
TENANT_ID = "00000000-0000-4000-8000-000000000001"
JOB_ID = "00000000-0000-4000-8000-000000000002"


@pytest.fixture
def empty_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no template)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite'}"
        return
    admin, server = request.getfixturevalue("postgres_admin")
    name = f"acprop_mig_{uuid.uuid4().hex[:10]}"
    create_postgres_database(admin, name)
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        drop_postgres_database(admin, name)


def _optuna_snapshot(url: str) -> dict[str, Any]:
    """Optuna's tables, their columns, its alembic_version row and its studies."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            tables = sorted(t for t in insp.get_table_names() if not t.startswith("acprop_"))
            return {
                "tables": tables,
                "columns": {t: [c["name"] for c in insp.get_columns(t)] for t in tables},
                "alembic_version": conn.execute(
                    text("SELECT version_num FROM alembic_version")
                ).all(),
                "studies": conn.execute(text("SELECT study_id, study_name FROM studies")).all(),
                "trials": conn.execute(text("SELECT COUNT(*) FROM trials")).scalar_one(),
            }
    finally:
        engine.dispose()


def _our_state(url: str) -> tuple[set[str], list[Any]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
            version = (
                conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
                if VERSION_TABLE in names
                else []
            )
            return names & OUR_TABLES, version
    finally:
        engine.dispose()


def _optuna_study_with_a_trial(url: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(storage=storage, study_name="users-own-study")
    study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=2)
    storage.engine.dispose()


def test_upgrade_downgrade_upgrade_leaves_optuna_alone(empty_url: str) -> None:
    _optuna_study_with_a_trial(empty_url)
    optuna_before = _optuna_snapshot(empty_url)
    assert optuna_before["trials"] == 2

    upgrade(empty_url)
    assert _our_state(empty_url) == (OUR_TABLES, [(head_revision(),)])
    assert _optuna_snapshot(empty_url) == optuna_before

    downgrade(empty_url, "base")
    assert _our_state(empty_url) == (set(), [])
    assert _optuna_snapshot(empty_url) == optuna_before

    upgrade(empty_url)
    assert _our_state(empty_url) == (OUR_TABLES, [(head_revision(),)])
    assert _optuna_snapshot(empty_url) == optuna_before

    # Optuna still works on its study after all that.
    storage = optuna.storages.RDBStorage(empty_url)
    assert len(optuna.load_study(study_name="users-own-study", storage=storage).trials) == 2
    storage.engine.dispose()


def test_models_match_the_migrations(empty_url: str) -> None:
    upgrade(empty_url)
    _optuna_study_with_a_trial(empty_url)  # Optuna's tables must not show up as a diff
    engine = create_engine(empty_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_name": include_name,
                    "compare_type": True,
                    "version_table": VERSION_TABLE,
                },
            )
            assert compare_metadata(context, Base.metadata) == []
            # The comparison does see a difference when there is one.
            changed = MetaData(naming_convention=Base.metadata.naming_convention)
            for table in Base.metadata.tables.values():
                table.to_metadata(changed)
            changed.tables["acprop_jobs"].append_column(Column("surprise", Integer))
            diff = compare_metadata(context, changed)
            assert [d[0] for d in diff] == ["add_column"]
    finally:
        engine.dispose()


def test_server_refuses_a_database_not_at_head(empty_url: str, tmp_path: Path) -> None:
    app = create_app(make_settings(empty_url, tmp_path))
    with pytest.raises(SchemaNotAtHead, match="run `acprop-tuner migrate`"), TestClient(app):
        pass
    upgrade(empty_url)
    app = create_app(make_settings(empty_url, tmp_path))
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200


def _schema(url: str) -> dict[str, Any]:
    """Our tables' columns, indexes (with their partial-index predicates), unique and check
    constraints and foreign keys, comparable with ==."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            out: dict[str, Any] = {}
            for table in sorted(t for t in insp.get_table_names() if t in OUR_TABLES):
                out[table] = {
                    "columns": [
                        (c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)
                    ],
                    "indexes": sorted(
                        (
                            i["name"],
                            tuple(i["column_names"]),
                            bool(i["unique"]),
                            tuple(
                                sorted(
                                    (k, str(v)) for k, v in (i.get("dialect_options") or {}).items()
                                )
                            ),
                        )
                        for i in insp.get_indexes(table)
                    ),
                    "unique": sorted(
                        (u["name"], tuple(u["column_names"]))
                        for u in insp.get_unique_constraints(table)
                    ),
                    "checks": sorted(
                        (c["name"], c["sqltext"]) for c in insp.get_check_constraints(table)
                    ),
                    "foreign_keys": sorted(
                        (f["name"], tuple(f["constrained_columns"]), f["referred_table"])
                        for f in insp.get_foreign_keys(table)
                    ),
                }
            return out
    finally:
        engine.dispose()


def test_0003_adds_per_seed_divergence_and_steps_back_cleanly(empty_url: str) -> None:
    upgrade(empty_url, "0002")
    before = _schema(empty_url)
    assert "seeds_diverged_at" not in [c[0] for c in before["acprop_trials"]["columns"]]
    engine = create_engine(empty_url)
    try:
        with engine.begin() as conn:  # a trial finished before 0003
            conn.execute(
                text(
                    "INSERT INTO acprop_tenants (id, name, created_at) "
                    "VALUES (:id, 't', CURRENT_TIMESTAMP)"
                ),
                {"id": TENANT_ID},
            )
            conn.execute(
                text(
                    "INSERT INTO acprop_jobs (id, tenant_id, name, spec, status, n_trials, steps, "
                    "seeds, report_every, max_attempts, study_name, created_at) VALUES (:id, "
                    ":tenant, 'j', '{}', 'running', 1, 10, 2, 5, 3, 's', CURRENT_TIMESTAMP)"
                ),
                {"id": JOB_ID, "tenant": TENANT_ID},
            )
            conn.execute(
                text(
                    "INSERT INTO acprop_trials (job_id, number, params, source, state, attempt, "
                    "diverged_at_step, created_at) VALUES (:job, 0, '{}', 'sampler', "
                    "'diverged', 1, 4, CURRENT_TIMESTAMP)"
                ),
                {"job": JOB_ID},
            )
        upgrade(empty_url)
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT state, diverged_at_step, seeds_diverged_at FROM acprop_trials")
            ).one()
        assert tuple(row) == ("diverged", 4, None)  # old rows keep the column empty
        assert "seeds_diverged_at" in [c[0] for c in _schema(empty_url)["acprop_trials"]["columns"]]

        downgrade(empty_url, "0002")
        # The step back restores 0002's schema exactly (on SQLite the table is rebuilt, which
        # must keep the partial indexes partial) and keeps the rows.
        assert _schema(empty_url) == before
        with engine.connect() as conn:
            row = conn.execute(text("SELECT state, diverged_at_step FROM acprop_trials")).one()
        assert tuple(row) == ("diverged", 4)
    finally:
        engine.dispose()
