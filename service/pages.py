"""The pages a person opens in a browser, served from files installed with the packages, so
they work on a machine without internet: the console (``service/static/``, plain HTML, CSS
and JavaScript over the HTTP API, no build step) and the API docs (FastAPI's documented
self-hosting of Swagger UI and ReDoc, their assets from the ``fastapi-offline`` package).

Both carry a Content-Security-Policy that allows this origin only: the browser itself refuses
any request elsewhere (ReDoc's bundle, for one, always tries to load the Redocly logo from
its CDN; the policy stops it before it leaves the machine, and ReDoc hides the image)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

CONSOLE_PATH = "/console"
DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
DOCS_ASSETS_PATH = "/docs/assets"
STATIC_DIR = Path(__file__).parent / "static"
# swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js, favicon.png
DOCS_ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
_COMMON = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
# No inline script, no inline style: the console is three files of this origin.
CONSOLE_HEADERS = {
    **_COMMON,
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-cache",
}
# The docs pages start their UI from an inline script and style it inline (both bundles);
# ReDoc indexes the spec in a blob worker.
DOCS_HEADERS = {
    **_COMMON,
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' "
        "'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
        "worker-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


class ConsoleFiles(StaticFiles):
    """The console's static files with ``CONSOLE_HEADERS``."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(CONSOLE_HEADERS)
        return response


def offline_docs_app(**fastapi_kwargs: Any) -> FastAPI:
    """A FastAPI app whose ``/docs`` (Swagger UI) and ``/redoc`` load their scripts, styles
    and favicon from ``DOCS_ASSETS_PATH`` on this service: no CDN, no Google Fonts, no
    Swagger validator badge."""
    app = FastAPI(docs_url=None, redoc_url=None, **fastapi_kwargs)
    app.mount(DOCS_ASSETS_PATH, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")

    def _urls(request: Request) -> tuple[str, str]:
        root = request.scope.get("root_path", "")
        return f"{root}{app.openapi_url}", f"{root}{DOCS_ASSETS_PATH}"

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        spec, assets = _urls(request)
        page = get_swagger_ui_html(
            openapi_url=spec,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
            # The default validator badge calls validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )
        page.headers.update(DOCS_HEADERS)
        return page

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        spec, assets = _urls(request)
        page = get_redoc_html(
            openapi_url=spec,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{assets}/redoc.standalone.js",
            redoc_favicon_url=f"{assets}/favicon.png",
            with_google_fonts=False,
        )
        page.headers.update(DOCS_HEADERS)
        return page

    return app


def mount_console(app: FastAPI) -> None:
    """Serve the console at ``/console/`` (``/console`` redirects there)."""
    app.mount(CONSOLE_PATH, ConsoleFiles(directory=STATIC_DIR, html=True), name="console")
