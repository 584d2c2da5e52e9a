"""The web app of ``biounet serve`` (FastAPI): the API of :mod:`.api` under ``/api/v1``, its docs page
(Swagger UI on the OpenAPI description, both served from here), the web page at ``/`` and the files they
load, security headers on every answer, CORS only for the origins given, and the service's worker started
and stopped with the server (its lifespan). Every file sent is one the service wrote or ships: an asset
is looked up by name in a fixed table, never by path.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from biounet import __version__
from biounet.core.errors import ConfigError
from biounet.integrations.service.api import API, router
from biounet.integrations.service.server import Service, Settings
from biounet.integrations.service.work import ServedModel

STATIC = Path(__file__).resolve().parent / "static"
# Scripts and styles come from this server only (Swagger UI sets inline styles); images may be blob:
# URLs (the page shows the results it fetched with the token); nothing may frame the pages.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
NO_STORE = [(b"cache-control", b"no-store")]  # a job's status and results are nobody else's: no cache keeps them


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response (and :data:`NO_STORE` to the jobs')."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        extra = SECURITY_HEADERS + (NO_STORE if scope["path"].startswith(f"{API}/jobs") else [])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def swagger_ui_folder() -> Path:
    """The folder of Swagger UI's files in the swagger-ui-py package (found without importing it: its
    ``__init__`` looks for web frameworks; only its static files are used here)."""
    import importlib.util

    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the API docs need the swagger-ui-py package (Swagger UI's files, served from here: no CDN); "
            "install biounet's serve extra: pip install 'biounet[serve]'"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "static"


def _assets() -> dict[str, tuple[Path, str]]:
    """Name -> (file, media type) of everything the page and the docs load: the package's own files and
    Swagger UI's (no CDN: the service works offline)."""
    swagger = swagger_ui_folder()
    return {
        "page.js": (STATIC / "page.js", "text/javascript"),
        "page.css": (STATIC / "page.css", "text/css"),
        "docs.js": (STATIC / "docs.js", "text/javascript"),
        "swagger-ui-bundle.js": (swagger / "swagger-ui-bundle.js", "text/javascript"),
        "swagger-ui.css": (swagger / "swagger-ui.css", "text/css"),
    }


def create_app(model: ServedModel, settings: Settings) -> FastAPI:
    """The web app serving ``model`` under ``settings``; its worker starts and stops with the server."""
    service = Service(model, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start(asyncio.get_running_loop())
        reaper = asyncio.create_task(service.reap())
        try:
            yield
        finally:
            reaper.cancel()
            await run_in_threadpool(service.stop)

    app = FastAPI(
        title="biounet",
        version=__version__,
        description="Segment EM images with a U-Net: upload an image, poll its job, download the results.",
        lifespan=lifespan,
        openapi_url=f"{API}/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    _add_middleware(app, settings)
    _add_pages(app)
    app.include_router(router)
    return app


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    if settings.cors_origins:  # off unless asked: a page of another origin cannot read the answers
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Location", "Retry-After"],
        )
    app.add_middleware(SecurityHeaders)


def _add_pages(app: FastAPI) -> None:
    assets = _assets()

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get(f"{API}/docs", include_in_schema=False)
    def docs() -> FileResponse:
        return FileResponse(STATIC / "docs.html", media_type="text/html")

    @app.get("/assets/{name}", include_in_schema=False)
    def asset(name: str) -> FileResponse:
        if name not in assets:
            raise HTTPException(404, f"no asset {name[:60]!r}")
        path, media_type = assets[name]
        return FileResponse(path, media_type=media_type)
