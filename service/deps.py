"""FastAPI dependencies shared by the routers: settings, the request's session, Optuna studies.

The session dependency only opens and closes; use cases commit (see ``service.db.session``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.recommendation_cache import RecommendationCache
from service.settings import Settings
from service.studies import Studies

logger = logging.getLogger(__name__)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    session = request.app.state.session_factory()
    try:
        yield session
    finally:
        try:
            session.close()
        except Exception:  # a connection lost mid-request: the pool discards it
            logger.debug("closing a session failed", exc_info=True)


def get_studies(request: Request) -> Studies:
    return request.app.state.studies


def get_recommendations(request: Request) -> RecommendationCache:
    return request.app.state.recommendations


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
StudiesDep = Annotated[Studies, Depends(get_studies)]
RecommendationsDep = Annotated[RecommendationCache, Depends(get_recommendations)]
