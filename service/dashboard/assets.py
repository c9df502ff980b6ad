"""The dashboard's static files, read once from the package data and versioned by content.

The page (``index.html``) is served at a stable URL and revalidated on every load, with a
``modulepreload`` link for every module; the modules, styles and icon are served under
``static/<version>/``, where the version is a hash
of all of them, so they can be cached for a year: a new release is a new URL. Modules import
each other with relative paths, so they stay inside one version.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["Asset", "Bundle", "bundle"]

INDEX = "index.html"
VERSION_MARK = "{{version}}"
PRELOADS_MARK = "{{preloads}}"
ENTRY = "app.js"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


@dataclass(frozen=True)
class Bundle:
    version: str
    index: Asset
    files: dict[str, Asset]


def _asset(name: str, body: bytes) -> Asset:
    suffix = name[name.rfind(".") :]
    digest = hashlib.sha256(body).hexdigest()[:20]
    return Asset(body=body, media_type=MEDIA_TYPES[suffix], etag=f'"{digest}"')


@cache
def bundle() -> Bundle:
    """Every static file of the package (read once per process)."""
    root = resources.files("service.dashboard") / "static"
    raw = {
        entry.name: entry.read_bytes()
        for entry in root.iterdir()
        if entry.is_file() and entry.name[entry.name.rfind(".") :] in MEDIA_TYPES
    }
    index_template = raw.pop(INDEX)
    h = hashlib.sha256()
    for name in sorted(raw):
        h.update(name.encode() + b"\0" + raw[name] + b"\0")
    version = h.hexdigest()[:12]
    # Every module is fetched at once instead of level by level down the import graph.
    preloads = "\n  ".join(
        f'<link rel="modulepreload" href="dashboard/static/{version}/{name}">'
        for name in sorted(raw)
        if name.endswith(".js") and name != ENTRY
    )
    index = index_template.replace(PRELOADS_MARK.encode(), preloads.encode())
    index = index.replace(VERSION_MARK.encode(), version.encode())
    return Bundle(
        version=version,
        index=_asset(INDEX, index),
        files={name: _asset(name, body) for name, body in raw.items()},
    )
