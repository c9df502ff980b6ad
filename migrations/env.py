"""Alembic environment for the service's own tables.

Our version table is ``acprop_tuner_alembic_version``: Optuna stamps the default
``alembic_version`` table in the same database and owns its own tables; autogenerate only
looks at tables whose names start with ``acprop_``. The database URL (or an open connection)
comes from ``config.attributes``, never from an ini file or the command line, so a password
never has to be written down (see ``service.db.migrate``).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from service.db.migrate import VERSION_TABLE, include_name
from service.db.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        include_name=include_name,
        compare_type=True,
        render_as_batch=True,  # SQLite needs batch mode for ALTER
        **kwargs,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    _configure(url=config.attributes["url"], literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.attributes["url"], poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            _configure(connection=conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
