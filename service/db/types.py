"""Column types of the service's tables: UTC timestamps, integer ids, and the typed job spec."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, TypeDecorator
from sqlalchemy.engine import Dialect

from optimizer.job_spec import JobSpec

__all__ = ["BigIntId", "JobSpecJSON", "UTCDateTime", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite drops the zone on storage)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


# BIGINT autoincrement on Postgres; SQLite only autoincrements INTEGER PRIMARY KEY.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class JobSpecJSON(TypeDecorator[JobSpec]):
    """A job's spec: stored as its JSON form (:meth:`JobSpec.to_dict`), read back typed.
    A plain mapping is stored as given (tests write rows from before a rule existed)."""

    impl = JSON
    cache_ok = True

    def process_bind_param(
        self, value: JobSpec | Mapping[str, Any] | None, dialect: Dialect
    ) -> dict[str, Any] | None:
        if value is None:
            return None
        return value.to_dict() if isinstance(value, JobSpec) else dict(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> JobSpec | None:
        return None if value is None else JobSpec.from_dict(value)
