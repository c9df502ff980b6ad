"""The declarative base of the service's tables, with the constraint naming convention every
table follows, and the CHECK-constraint helper for status vocabularies."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

__all__ = ["NAMING_CONVENTION", "TABLE_PREFIX", "Base", "in_values"]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TABLE_PREFIX = "acprop_"


def in_values(column: str, enum: type[StrEnum] | tuple[StrEnum, ...]) -> str:
    """The SQL of ``column IN (...)`` over the members' values (a CHECK constraint's text)."""
    values = ", ".join(f"'{member.value}'" for member in enum)
    return f"{column} IN ({values})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
