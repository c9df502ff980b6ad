"""The live web dashboard: a static page (vanilla ES modules, CSS, inline SVG) served by the
API process itself under ``/dashboard``. It reads only the public REST API with a user key
that the browser keeps in ``sessionStorage``; the server side is just the asset routes.
"""

from service.dashboard.routes import router

__all__ = ["router"]
