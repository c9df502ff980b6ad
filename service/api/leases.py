"""The worker protocol's routes, `/api/v1/leases/...` (docs/architecture.md), for worker keys.

Routes are plain `def`: the broker's database and Optuna calls are synchronous and run in
FastAPI's thread pool, never on the event loop. Losses may arrive as null, NaN or +-Infinity
(a diverged lane); they are all kept as null, since the server never stores a non-finite
value. Every other float must be finite.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from optimizer.versions import VERSION_PATTERN
from service.api.lease_answers import BaselineLeaseOut, LeaseOut, LeaseResponse
from service.auth import require_scope
from service.broker.broker import Broker
from service.broker.fencing import LeasesLost
from service.broker.writes import FailureIn, ReportIn, ResultIn
from service.db.models import MAX_ERROR, KeyScope
from service.errors import Conflict, ErrorBody
from service.inbound import InboundModel
from service.keys import Principal


def make_broker(app: FastAPI) -> Broker:
    """The app's broker, built from its settings, session factory and Optuna storage; its
    lease path fits where the app's recommendations are fitted."""
    settings = app.state.settings
    return Broker(
        app.state.session_factory,
        app.state.studies.storage,
        lease_ttl_s=settings.lease_ttl_s,
        retry_after_s=settings.lease_retry_after_s,
        reaper_period_s=settings.reaper_period_s,
        max_capacity=settings.max_lease_capacity,
        fits=app.state.recommendations.fitter,
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Merged into the app's lifespan by `include_router`: the broker and its reaper thread
    live as long as the app (the reaper stops before the engine is disposed)."""
    # Stop the reaper this lifespan started, even if the app was served twice at once
    # (tests do) and app.state.broker now holds the other lifespan's broker.
    broker = make_broker(app)
    app.state.broker = broker
    broker.reaper.start()
    try:
        yield
    finally:
        broker.reaper.stop()


router = APIRouter(prefix="/leases", tags=["worker protocol"], lifespan=lifespan)

MAX_BATCH = 4_096  # tokens per call
MAX_SEEDS = 1_024

Worker = Annotated[Principal, Depends(require_scope(KeyScope.WORKER))]


def get_broker(request: Request) -> Broker:
    broker = getattr(request.app.state, "broker", None)
    if broker is None:  # an app served without its lifespan (no reaper then)
        broker = request.app.state.broker = make_broker(request.app)
    return broker


BrokerDep = Annotated[Broker, Depends(get_broker)]


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


Loss = Annotated[float | None, AfterValidator(_finite_or_none)]
Losses = Annotated[list[Loss], Field(max_length=MAX_SEEDS)]
Token = Annotated[str, Field(min_length=1, max_length=200)]
Tokens = Annotated[list[Token], Field(max_length=MAX_BATCH)]


class _In(InboundModel):
    pass


class LeaseRequest(_In):
    worker_id: str = Field(min_length=1, max_length=200)
    capacity: int = Field(1, ge=1, le=4_096)


class TokensRequest(_In):
    tokens: Tokens


class HeartbeatResponse(BaseModel):
    held: list[str]
    lost: list[str]
    expires_at: datetime


class ReportItem(_In):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=True)

    token: Token
    step: int = Field(ge=0, le=1_000_000_000)
    losses: Losses


class ReportRequest(_In):
    reports: Annotated[list[ReportItem], Field(max_length=MAX_BATCH)]


class StopResponse(BaseModel):
    stop: list[str]


_Version = Annotated[str, Field(pattern=VERSION_PATTERN)]


class TrainingVersions(_In):
    """The library versions the worker trained with (optimizer.versions.TRAINING_PACKAGES)."""

    jax: _Version
    jaxlib: _Version
    optax: _Version


class ResultItem(_In):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=True)

    token: Token
    final_losses: Annotated[list[Loss], Field(min_length=1, max_length=MAX_SEEDS)]
    validation_losses: Losses | None = None
    last_finite_losses: Losses | None = None
    diverged_at_step: (
        Annotated[
            list[Annotated[int, Field(ge=0, le=1_000_000_000)] | None], Field(max_length=MAX_SEEDS)
        ]
        | None
    ) = None
    pruned: bool = False
    wall_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    compile_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    versions: TrainingVersions | None = None


class CompleteRequest(_In):
    results: Annotated[list[ResultItem], Field(max_length=MAX_BATCH)]


class FailureItem(_In):
    token: Token
    error: str = Field(
        min_length=1,
        max_length=MAX_ERROR,
        description="the exception's class and message (no traceback)",
    )


class FailRequest(_In):
    failures: Annotated[list[FailureItem], Field(max_length=MAX_BATCH)]


class AcceptedResponse(BaseModel):
    accepted: list[str]


class ReleasedResponse(BaseModel):
    released: list[str]


_LOST: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorBody,
        "description": "some tokens no longer hold their trial; "
        "`detail.lost` lists them and nothing was changed",
    }
}


def _conflict(exc: LeasesLost) -> Conflict:
    return Conflict({"message": "leases no longer held; drop these trials", "lost": exc.lost})


@router.post("", response_model=LeaseResponse)
def lease(body: LeaseRequest, worker: Worker, broker: BrokerDep) -> LeaseResponse:
    """Lease up to `capacity` trials, all of one job, or, when that job has no trial to hand
    out, up to `capacity` of its baseline runs; empty lists and a retry hint when there is no
    work."""
    answer = broker.lease(
        tenant_id=worker.tenant_id, worker_id=body.worker_id, capacity=body.capacity
    )
    return LeaseResponse(
        leases=[
            LeaseOut(token=g.token, expires_at=g.expires_at, ttl_s=g.ttl_s, trial=g.trial)  # type: ignore[arg-type]
            for g in answer.grants
            if g.kind == "trial"
        ],
        baselines=[
            BaselineLeaseOut(token=g.token, expires_at=g.expires_at, ttl_s=g.ttl_s, run=g.trial)  # type: ignore[arg-type]
            for g in answer.grants
            if g.kind == "baseline"
        ],
        retry_after_s=answer.retry_after_s,
    )


@router.post("/heartbeat", response_model=HeartbeatResponse)
def heartbeat(body: TokensRequest, worker: Worker, broker: BrokerDep) -> HeartbeatResponse:
    """Renew leases; never 409: says which are no longer held."""
    held, lost, expires_at = broker.heartbeat(worker.tenant_id, body.tokens)
    return HeartbeatResponse(held=held, lost=lost, expires_at=expires_at)


@router.post("/report", response_model=StopResponse, responses=_LOST)
def report(body: ReportRequest, worker: Worker, broker: BrokerDep) -> StopResponse:
    """Intermediate losses of many trials; answers which trials to stop."""
    try:
        stop = broker.report(
            worker.tenant_id, [ReportIn(r.token, r.step, r.losses) for r in body.reports]
        )
    except LeasesLost as exc:
        raise _conflict(exc) from None
    return StopResponse(stop=stop)


@router.post("/complete", response_model=AcceptedResponse, responses=_LOST)
def complete(body: CompleteRequest, worker: Worker, broker: BrokerDep) -> AcceptedResponse:
    """Final results of many trials."""
    items = [
        ResultIn(
            token=r.token,
            final_losses=r.final_losses,
            validation_losses=r.validation_losses,
            last_finite_losses=r.last_finite_losses,
            diverged_at_step=r.diverged_at_step,
            pruned=r.pruned,
            wall_s=r.wall_s,
            compile_s=r.compile_s,
            versions=r.versions.model_dump() if r.versions else None,
        )
        for r in body.results
    ]
    try:
        return AcceptedResponse(accepted=broker.complete(worker.tenant_id, items))
    except LeasesLost as exc:
        raise _conflict(exc) from None


@router.post("/fail", response_model=AcceptedResponse, responses=_LOST)
def fail(body: FailRequest, worker: Worker, broker: BrokerDep) -> AcceptedResponse:
    """Trials the worker could not build or train (a task that fails to load, raises, or
    cannot be traced), with the reason; they fail, and so does their job if none of its
    trials has a result yet."""
    items = [FailureIn(token=f.token, error=f.error) for f in body.failures]
    try:
        return AcceptedResponse(accepted=broker.fail(worker.tenant_id, items))
    except LeasesLost as exc:
        raise _conflict(exc) from None


@router.post("/release", response_model=ReleasedResponse, responses=_LOST)
def release(body: TokensRequest, worker: Worker, broker: BrokerDep) -> ReleasedResponse:
    """Give unfinished trials back (a stopping worker); not counted as attempts."""
    try:
        return ReleasedResponse(released=broker.release(worker.tenant_id, body.tokens))
    except LeasesLost as exc:
        raise _conflict(exc) from None
