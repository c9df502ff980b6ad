"""Routes of the dashboard: ``/`` (redirect), ``/dashboard`` (the page) and its assets.

Every answer carries a strict Content-Security-Policy: only this origin's scripts, styles,
images and API; no inline script or style; Trusted Types required, so a stray ``innerHTML``
would throw instead of rendering server text as markup. The page is revalidated (ETag) on
every load; versioned assets are immutable.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from service.dashboard.assets import Asset, bundle
from service.errors import NotFound

router = APIRouter(include_in_schema=False)

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
REVALIDATE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"


def _serve(request: Request, asset: Asset, cache_control: str) -> Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": cache_control, "ETag": asset.etag}
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("dashboard", status_code=307)


@router.get("/dashboard")
def dashboard(request: Request) -> Response:
    return _serve(request, bundle().index, REVALIDATE)


@router.get("/dashboard/static/{version}/{name}")
def static_file(version: str, name: str, request: Request) -> Response:
    assets = bundle()
    asset = assets.files.get(name)
    if asset is None:
        raise NotFound(f"no dashboard file {name[:64]!r}")
    # A page from an older release (another replica mid-deploy) still gets today's file,
    # but must not cache it under the old version's name.
    return _serve(request, asset, IMMUTABLE if version == assets.version else REVALIDATE)
