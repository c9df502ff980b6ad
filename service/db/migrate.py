"""Schema migrations driven from Python: upgrade, downgrade, and "is this database at head?".

The Alembic scripts live in the ``migrations`` package; its location is taken from the
imported package, so this works from any working directory and from an installed wheel.
The URL is handed to Alembic through ``Config.attributes`` (never argv or an ini file).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

import migrations
from service.db.models import TABLE_PREFIX

VERSION_TABLE = "acprop_tuner_alembic_version"


def owns_table(name: str | None) -> bool:
    """Whether a table is one of ours (Optuna's tables and both version tables are not)."""
    return name is not None and name.startswith(TABLE_PREFIX) and name != VERSION_TABLE


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic ``include_name`` hook: autogenerate compares our tables only."""
    return owns_table(name) if type_ == "table" else True


class SchemaNotAtHead(RuntimeError):
    """The database's schema is not the one this code expects."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["url"] = url
    return config


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE}
        ).get_current_revision()


def upgrade(url: str, revision: str = "head") -> None:
    from service.db.engine import ensure_sqlite_directory

    ensure_sqlite_directory(url)
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def check_at_head(engine: Engine) -> None:
    """Raise :class:`SchemaNotAtHead` with what to run unless the schema is current."""
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        found = (
            "the database has no acprop-tuner schema yet"
            if current is None
            else f"the database is at revision {current}"
        )
        raise SchemaNotAtHead(
            f"{found}, this version of acprop-tuner needs revision {head}: "
            "run `acprop-tuner migrate` (with the same ACPROP_TUNER_DATABASE_URL) and start again"
        )
