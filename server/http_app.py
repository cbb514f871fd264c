"""The HTTP server's FastAPI application: REST under ``/api``, git smart
HTTP under ``/git``, OpenAPI at ``/openapi.json`` and docs at ``/docs``.

:func:`create_app` takes an open :class:`irmin.Repo` and a
:class:`ServerConfig`; library errors are mapped to HTTP statuses here (not
found 404, bad input 400, conflicts 409 with the structured conflicts, auth
401/403, oversize 413), so no bad input ever reaches a 500.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from irmin.errors import (
    ConflictError,
    InvalidRefName,
    IrminError,
    MalformedObject,
    MissingObject,
    NotFoundError,
    PathError,
    StoreClosed,
    StoreFull,
    TestAndSetFailed,
)
from irmin.repo import Repo

from . import git_http, rest_branches, rest_objects, rest_paths, rest_watch
from .config import ServerConfig
from .guard import BodyTooLarge, Guard
from .rest_common import BranchSlashes

log = logging.getLogger("irmin.server")


def _json(status: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


def create_app(repo: Repo, config: ServerConfig | None = None, *, close_repo: bool = False) -> FastAPI:
    """The FastAPI app serving ``repo``; ``close_repo``: close it at shutdown."""
    config = config or ServerConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if close_repo:
            repo.close()

    app = FastAPI(
        title="irmin",
        version="0.1.0",
        description="A Git-format branchable store: REST API, watch streams and git smart HTTP "
                    "(clone/fetch/push at /git).",
        lifespan=lifespan,
    )
    app.state.repo = repo
    app.state.config = config

    @app.exception_handler(ConflictError)
    async def conflict(_r: Request, e: ConflictError) -> JSONResponse:
        return _json(409, str(e), conflicts=[c.as_dict() for c in e.conflicts])

    # Errors as statuses; the message is the exception's own text.
    for cls, status in ((TestAndSetFailed, 409), (NotFoundError, 404), (MissingObject, 404),
                        (BodyTooLarge, 413), (StoreFull, 507), (StoreClosed, 503)):
        app.add_exception_handler(cls, _status_handler(status))

    for bad in (PathError, MalformedObject, InvalidRefName, ValueError):
        app.add_exception_handler(bad, _bad_request)

    @app.exception_handler(IrminError)
    async def other(_r: Request, e: IrminError) -> JSONResponse:
        log.warning("request failed: %r", e)
        return _json(400, str(e))

    @app.get("/health", tags=["server"], summary="Liveness")
    def health() -> dict[str, Any]:
        return {"ok": True, "store": repo.backend.uri}

    app.include_router(rest_branches.router)
    app.include_router(rest_paths.router)
    app.include_router(rest_objects.router)
    app.include_router(rest_watch.router)
    app.include_router(git_http.router)
    app.add_middleware(Guard, config=config)
    app.add_middleware(BranchSlashes)
    return app


def _status_handler(status: int) -> Any:
    async def handler(_r: Request, e: Exception) -> JSONResponse:
        return _json(status, str(e))

    return handler


async def _bad_request(_r: Request, e: Exception) -> JSONResponse:
    return _json(400, str(e) or type(e).__name__)
