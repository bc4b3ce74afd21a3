"""The FastAPI application: FHIR R4 API at ``/fhir``, health probes, error rendering."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub import __version__, logs, processes
from hub.admin.router import router as admin_router
from hub.billing.files_router import router as billing_files_router
from hub.billing.router import router as billing_router
from hub.broker import Enqueuer
from hub.dashboard.router import router as dashboard_router
from hub.documents.router import router as documents_router
from hub.errors import HubError, operation_outcome
from hub.fhir.router import fhir_response
from hub.fhir.router import router as fhir_router
from hub.fhir.service import instant
from hub.inbound.fax_router import router as inbound_fax_router
from hub.inbound.hep_router import router as inbound_hep_router
from hub.kit import utcnow
from hub.metrics import HttpMetricsMiddleware
from hub.metrics import router as metrics_router
from hub.middleware import (
    BodyLimitMiddleware,
    CorrelationIdMiddleware,
    EnqueuerMiddleware,
    RateLimitMiddleware,
    SecurityHeadersMiddleware,
)
from hub.referrals.router import router as referrals_router
from hub.security import tokens
from hub.security.router import router as auth_router
from hub.settings import Settings, get_settings
from hub.store import repository
from hub.store.db import engine_for
from hub.sync.inbound_router import router as inbound_router
from hub.unit_of_work import unit_of_work
from mappings.fhir.validation import Issue

log = logging.getLogger("hub.app")

_HTTP_CODES = {404: "not-found", 405: "not-supported", 406: "not-supported", 413: "too-costly", 415: "not-supported"}


def _is_fhir(request: Request) -> bool:
    return request.url.path == "/fhir" or request.url.path.startswith("/fhir/")


def _render(request: Request, status: int, issues: list[Issue], headers: dict[str, str] | None = None) -> Response:
    if _is_fhir(request):
        return fhir_response(operation_outcome(issues), status, headers)
    problem = {
        "type": "about:blank",
        "status": status,
        "title": issues[0].diagnostics if issues else "Error",
        "issues": [i.as_fhir() for i in issues],
    }
    return JSONResponse(problem, status_code=status, headers=headers, media_type="application/problem+json")


def ensure_default_tenant(settings: Settings) -> None:
    with unit_of_work(settings) as session:
        repository.ensure_tenant(
            session,
            tenant_id=settings.default_tenant,
            name="Default clinic",
            now=datetime.now(UTC).replace(tzinfo=None),
        )


def _token_client(settings: Settings) -> Any:
    """token -> its client id when it is a valid access token of this hub, else None (rate limiting)."""
    secrets = [settings.secret_key.get_secret_value(), *settings.previous_keys]

    def identify(token: str) -> str | None:
        try:
            return tokens.verify(token, secrets=secrets, now=utcnow()).client_id
        except tokens.TokenError:
            return None

    return identify


#: where the API docs' scripts and styles are served from (the hub itself, not a CDN)
DOCS_ASSETS = "/docs/assets"
#: the docs pages need their inline bootstrap script, inline styles and ReDoc's blob: worker, and
#: nothing from another host
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
            "frame-ancestors 'none'")


#: the docs' scripts and styles hold no patient data: browsers keep them (their URLs carry the version of
#: the package that ships them, so an upgrade is fetched anew); API responses stay ``no-store``
DOCS_ASSETS_CACHE = "public, max-age=31536000, immutable"


def _offline_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with their assets served by the hub (package
    ``fastapi-offline`` ships them), so the pages work without internet access."""
    from importlib.metadata import version

    from starlette.types import Scope

    class CachedAssets(StaticFiles):
        async def get_response(self, path: str, scope: Scope) -> Response:
            response = await super().get_response(path, scope)
            if response.status_code in (200, 304):
                response.headers["Cache-Control"] = DOCS_ASSETS_CACHE
            return response

    app.mount(DOCS_ASSETS, CachedAssets(directory=str(files("fastapi_offline") / "static")), name="docs-assets")
    tag = f"?v={version('fastapi-offline')}"
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    def with_csp(page: Response) -> Response:
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        return with_csp(get_swagger_ui_html(
            openapi_url=root + openapi_url, title=f"{app.title} - Swagger UI", oauth2_redirect_url=root + redirect_url,
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js{tag}",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css{tag}",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png{tag}",
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
        ))

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> Response:
        return with_csp(get_swagger_ui_oauth2_redirect_html())

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        return with_csp(get_redoc_html(
            openapi_url=root + openapi_url, title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js{tag}",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png{tag}", with_google_fonts=False,
        ))


def create_worker_app() -> FastAPI:
    """The app of one API worker process of ``hub serve --workers N`` (or ``--reload``): the worker
    ends when the ``hub serve`` that supervises it does, also when that one is killed."""
    processes.die_with_supervisor()
    return create_app()


def create_app(settings: Settings | None = None, *, enqueuer: Enqueuer | None = None) -> FastAPI:
    """The application; ``enqueuer`` publishes the delivery jobs its requests commit (default: the
    Celery producer of the settings' broker, :class:`hub.broker.CeleryEnqueuer`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        current = settings or get_settings()
        logs.install()
        app.state.started_at = instant(datetime.now(UTC).replace(tzinfo=None))
        try:
            await run_in_threadpool(ensure_default_tenant, current)
        except Exception:  # the store may not be migrated yet; /readyz will say so
            log.warning("hub.startup.store_unavailable")
        yield

    app = FastAPI(
        title="Therapy Interop Hub",
        version=__version__,
        description="FHIR R4 gateway and sync engine for outpatient rehab clinics.",
        lifespan=lifespan,
        docs_url=None,  # served by _offline_docs: FastAPI's own pages load their scripts from a CDN
        redoc_url=None,
    )
    _offline_docs(app)
    if settings is not None:
        app.dependency_overrides[get_settings] = lambda: settings

    @app.exception_handler(HubError)
    async def hub_error(request: Request, exc: HubError) -> Response:
        return _render(request, exc.status_code, exc.issues, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "processing")
        text_ = str(exc.detail) if exc.detail else "Error"
        if exc.status_code == 404 and _is_fhir(request):
            text_ = "No such FHIR endpoint"
        return _render(request, exc.status_code, [Issue("error", code, text_)], getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        issues = [
            Issue("error", "invalid", err.get("msg", "Invalid request"), ".".join(str(p) for p in err.get("loc", ())))
            for err in exc.errors()
        ]
        return _render(request, 400, issues)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("hub.request.unhandled", extra={"path": request.url.path})
        return _render(request, 500, [Issue("fatal", "exception", "Internal error; the event was logged")])

    @app.get("/healthz", tags=["health"], summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["health"], summary="The store is reachable")
    async def readyz(request: Request) -> Response:
        current = settings or get_settings()

        def ping() -> None:
            with engine_for(current.database_url).connect() as conn:
                conn.execute(text("SELECT 1 FROM resources LIMIT 1"))

        try:
            await run_in_threadpool(ping)
        except Exception:
            return JSONResponse({"status": "unavailable", "database": "unreachable or not migrated"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    app.include_router(fhir_router)
    app.include_router(admin_router)
    app.include_router(billing_router)
    app.include_router(documents_router)
    app.include_router(billing_files_router)
    app.include_router(referrals_router)
    app.include_router(auth_router)
    app.include_router(inbound_fax_router)
    app.include_router(inbound_hep_router)
    app.include_router(inbound_router)
    app.include_router(dashboard_router)
    app.include_router(metrics_router)
    current = settings or get_settings()
    app.add_middleware(BodyLimitMiddleware, limit=current.max_body_bytes)
    app.add_middleware(RateLimitMiddleware, per_minute=current.rate_limit_per_minute,
                       identify=_token_client(current))
    if current.cors_origins:  # CORS stays off unless origins are configured
        app.add_middleware(CORSMiddleware, allow_origins=current.cors_origins, allow_credentials=False,
                           allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "If-Match", "If-None-Exist",
                                          "If-None-Match", "Prefer", "Idempotency-Key", "X-Correlation-ID"],
                           expose_headers=["Location", "ETag", "Last-Modified", "X-Correlation-ID"])
    app.add_middleware(HttpMetricsMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(CorrelationIdMiddleware)
    if enqueuer is not None:
        app.add_middleware(EnqueuerMiddleware, enqueuer=enqueuer)
    return app
