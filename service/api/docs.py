"""The interactive API documentation, `/docs` (Swagger UI) and `/redoc`, served from assets
shipped in an installed package (`fastapi-offline`, in the lock), so the pages work on a
machine without internet and load nothing from another origin.

If the assets are missing (an install without that package), both pages say so and point at
`/openapi.json`, which is always served.
"""

from __future__ import annotations

import mimetypes
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from service.errors import NotFound

__all__ = ["ASSETS", "router"]

router = APIRouter(include_in_schema=False)

#: The files the two pages need, as the package ships them.
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
_STATIC = "/docs/static"
_TITLE = "acprop-tuner API"
# Both pages load only from this server (their one inline script, the UI's configuration, and
# ReDoc's worker from a blob: URL are theirs).
_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)
# ReDoc's bundle shows Redocly's logo from its CDN; it is served pointing at our own icon.
_FOREIGN_IN_ASSETS = {"https://cdn.redoc.ly/redoc/logo-mini.svg": f"{_STATIC}/favicon.png"}


@cache
def asset_dir() -> Traversable | None:
    """Where the installed documentation assets are, or None without them."""
    try:
        folder = resources.files("fastapi_offline") / "static"
    except ModuleNotFoundError:
        return None
    return folder if all((folder / name).is_file() for name in ASSETS) else None


def _missing() -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><title>API docs</title><p>The documentation pages' assets are not "
        'installed here (the package fastapi-offline). The API description is at <a href="'
        '/openapi.json">/openapi.json</a>.</p>',
        status_code=503,
    )


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    if asset_dir() is None:
        return _missing()
    page = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=_TITLE,
        swagger_js_url=f"{_STATIC}/swagger-ui-bundle.js",
        swagger_css_url=f"{_STATIC}/swagger-ui.css",
        swagger_favicon_url=f"{_STATIC}/favicon.png",
        # No badge from validator.swagger.io (Swagger UI's default for a non-local spec).
        swagger_ui_parameters={"validatorUrl": None},
    )
    page.headers["Content-Security-Policy"] = _CSP
    return page


@router.get("/redoc")
def redoc() -> HTMLResponse:
    if asset_dir() is None:
        return _missing()
    page = get_redoc_html(
        openapi_url="/openapi.json",
        title=_TITLE,
        redoc_js_url=f"{_STATIC}/redoc.standalone.js",
        redoc_favicon_url=f"{_STATIC}/favicon.png",
        with_google_fonts=False,
    )
    page.headers["Content-Security-Policy"] = _CSP
    return page


@router.get(_STATIC + "/{name}")
def asset(name: str) -> Response:
    folder = asset_dir()
    if folder is None or name not in ASSETS:
        raise NotFound(f"no documentation asset {name[:64]!r}")
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(
        _asset_bytes(name),
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=86400"},
    )


@cache
def _asset_bytes(name: str) -> bytes:
    """An asset's content (read once), with any address it would fetch from another origin
    pointed at this server instead."""
    folder = asset_dir()
    assert folder is not None
    content = (folder / name).read_bytes()
    if name.endswith(".js"):
        for foreign, local in _FOREIGN_IN_ASSETS.items():
            content = content.replace(foreign.encode(), local.encode())
    return content
