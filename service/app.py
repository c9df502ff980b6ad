"""The application factory: ``create_app(settings)`` wires settings, database, routers,
middleware and error handlers into one FastAPI app.

Nothing happens at import time: the engine is built by the factory and disposed of when the
app shuts down. At startup the app refuses to run on a database whose schema is not at the
migrations' head, and says what to run (``acprop-tuner migrate``).

Routers: ``service.api.health`` (``/healthz``, ``/readyz``, ``/metrics``) and, under
``/api/v1``, ``service.api.jobs``, the worker protocol (``service.api.leases``) and users' data
sets (``service.api.datasets``); ``service.dashboard`` serves the web page at ``/dashboard``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from service import dashboard
from service.api import datasets as datasets_api
from service.api import docs, health, insights
from service.api import jobs as jobs_api
from service.api import leases as leases_api
from service.db.engine import create_db_engine
from service.db.migrate import check_at_head
from service.db.session import create_session_factory
from service.errors import ErrorBody, install_error_handlers
from service.middleware import (
    BodySizeLimitMiddleware,
    Metrics,
    MetricsMiddleware,
    SecurityHeadersMiddleware,
)
from service.ratelimit import TokenBucketLimiter
from service.recommendation_cache import RecommendationCache
from service.recommendation_fitter import RecommendationFitter
from service.settings import Settings, get_settings
from service.studies import Studies

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def _version() -> str:
    """This distribution's version, from its installed metadata."""
    try:
        return metadata.version("acprop-tuner")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _include_routers(app: FastAPI) -> None:
    app.include_router(health.router)
    app.include_router(docs.router)
    app.include_router(jobs_api.router, prefix=API_PREFIX)
    app.include_router(insights.router, prefix=API_PREFIX)
    app.include_router(leases_api.router, prefix=API_PREFIX)
    app.include_router(datasets_api.router, prefix=API_PREFIX)
    app.include_router(datasets_api.worker_router, prefix=API_PREFIX)
    app.include_router(dashboard.router)


def _document_common_errors(app: FastAPI) -> None:
    """Every ``/api/v1`` operation can answer 401, 403, 422, 429 and 503 (and 413 when it
    takes a body) in the one error shape: say so in the OpenAPI description, once, here."""
    from fastapi.openapi.utils import get_openapi

    from service.api.responses import errors

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            error_ref = {"$ref": "#/components/schemas/ErrorBody"}
            schema.setdefault("components", {}).setdefault("schemas", {})["ErrorBody"] = (
                ErrorBody.model_json_schema()
            )
            for path, item in schema.get("paths", {}).items():
                if not path.startswith(API_PREFIX):
                    continue
                for operation in item.values():
                    codes = [401, 403, 422, 429, 503]
                    if "requestBody" in operation:
                        codes.append(413)
                    responses = operation.setdefault("responses", {})
                    for code, spec in errors(*codes).items():
                        responses.setdefault(
                            str(code),
                            {
                                "description": spec["description"],
                                "content": {"application/json": {"schema": error_ref}},
                            },
                        )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None, *, check_schema: bool = True) -> FastAPI:
    """Build the API for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    engine = create_db_engine(settings)
    studies = Studies(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if check_schema:
            await run_in_threadpool(check_at_head, engine)
        recommendations.fitter.start()
        logger.info("acprop-tuner API on %s", settings.database_url_redacted())
        try:
            yield
        finally:
            recommendations.close()
            studies.close()
            engine.dispose()

    app = FastAPI(
        title="acprop-tuner",
        version=_version(),
        summary="Find a safe, good initial configuration for ACProp (optax.contrib.acprop).",
        lifespan=lifespan,
        # Served by service.api.docs from installed assets, not FastAPI's CDN links.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = create_session_factory(engine)
    app.state.studies = studies
    app.state.rate_limiter = TokenBucketLimiter(
        settings.rate_limit_per_s, settings.rate_limit_burst
    )
    app.state.metrics = Metrics()
    recommendations = RecommendationCache(
        RecommendationFitter(
            app.state.session_factory, settings, in_child=settings.recommendation_fit_process
        ),
        wait_s=settings.recommendation_wait_s,
        max_lag_s=settings.recommendation_max_lag_s,
        on_fit=app.state.metrics.recommendation_fits.inc,
    )
    app.state.recommendations = recommendations

    install_error_handlers(app, retry_after_unavailable_s=settings.retry_after_unavailable_s)
    _include_routers(app)
    _document_common_errors(app)
    # Added last = outermost: the size limit runs before anything reads the body.
    app.add_middleware(
        MetricsMiddleware,
        metrics=app.state.metrics,
        paths=lambda: [*app.openapi()["paths"], "/openapi.json", "/docs"],
    )
    app.add_middleware(SecurityHeadersMiddleware, api_prefix=API_PREFIX)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        streamed={("POST", datasets_api.UPLOAD_PATH): settings.max_dataset_bytes},
    )
    return app
