"""Sessions: one per request (or per command), opened and closed here, committed by use cases.

The request dependency only closes the session (rolling back anything uncommitted): FastAPI
runs dependency teardown after the response is built, so a commit there could fail after the
client was told it succeeded. Use-case functions in ``service.jobs``, ``service.keys`` (and
the broker) call ``session.commit()`` themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that is closed (and uncommitted work rolled back) on exit."""
    session = factory()
    try:
        yield session
    finally:
        session.close()
