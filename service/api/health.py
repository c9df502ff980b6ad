"""Liveness, readiness and metrics: ``/healthz``, ``/readyz``, ``/metrics`` (no key needed)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from service.api.responses import errors
from service.deps import SessionDep
from service.views import Status

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Status)
def healthz() -> Status:
    """The process is alive (says nothing about the database)."""
    return Status(status="ok")


@router.get("/readyz", response_model=Status, responses=errors(503))
def readyz(session: SessionDep) -> Status:
    """The database answers; 503 with Retry-After while it does not."""
    session.execute(text("SELECT 1"))
    session.rollback()
    return Status(status="ready")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(request: Request) -> Response:
    """Prometheus metrics of this process."""
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
