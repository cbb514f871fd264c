"""git smart HTTP (``/git``): clone, fetch and push with the git CLI, from
whatever backend holds the store.

Routes: ``GET /git/info/refs?service=...``, ``POST /git/git-upload-pack``,
``POST /git/git-receive-pack``. Protocol v2 is chosen by the client's
``Git-Protocol: version=2`` header. Request bodies may be gzip-encoded
(git compresses large negotiation requests) and chunked (git switches to
chunked transfer above 1 MiB: the ASGI server has already de-chunked it).
The protocol work lives in :mod:`upload_pack` and :mod:`receive_pack`; this
module only reads bodies, picks the protocol and streams the replies.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from . import receive_pack, upload_pack
from .git_objects import WantError
from .guard import BodyTooLarge
from .pktline import ProtocolError, pkt

router = APIRouter(prefix="/git", include_in_schema=False)

NO_CACHE = {"Cache-Control": "no-cache", "Pragma": "no-cache"}


def _v2(request: Request) -> bool:
    return "version=2" in request.headers.get("git-protocol", "")


async def _body(request: Request) -> bytes:
    limit = request.app.state.config.max_push
    data = await request.body()
    if request.headers.get("content-encoding", "").lower() in ("gzip", "x-gzip"):
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out = d.decompress(data, limit + 1)
        except zlib.error as e:
            raise ProtocolError(f"bad gzip body: {e}") from None
        if len(out) > limit or d.unconsumed_tail:
            raise BodyTooLarge(limit)
        data = out
    return data


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


@router.get("/info/refs")
def info_refs(request: Request, service: str | None = None) -> Response:
    repo = request.app.state.repo
    if service not in ("git-upload-pack", "git-receive-pack"):
        return _error(403, "dumb HTTP is not supported: use a git client that speaks smart HTTP")
    if service == "git-upload-pack" and _v2(request):
        body = upload_pack.advertise_v2()
    else:
        body = upload_pack.advertise(repo, service)
    return Response(body, media_type=f"application/x-{service}-advertisement", headers=NO_CACHE)


def _guarded(gen: Iterator[bytes]) -> Iterator[bytes]:
    """Turn a protocol error after the response started into git's ERR line."""
    try:
        yield from gen
    except (ProtocolError, WantError) as e:
        yield pkt(f"ERR {e}\n")


async def _stream(request: Request, media: str, make: object) -> Response:
    try:
        body = await _body(request)
    except ProtocolError as e:
        return _error(400, str(e))
    repo = request.app.state.repo
    gen = make(repo, body)  # type: ignore[operator]
    # Run the protocol up to its first reply in a worker thread, so that
    # malformed requests become a 400 rather than a broken stream.
    try:
        first = await run_in_threadpool(next, gen, None)
    except (ProtocolError, WantError) as e:
        if isinstance(e, WantError):
            return Response(pkt(f"ERR {e}\n"), media_type=media, headers=NO_CACHE)
        return _error(400, str(e))

    def chain() -> Iterator[bytes]:
        if first is not None:
            yield first
        yield from _guarded(gen)

    return StreamingResponse(chain(), media_type=media, headers=NO_CACHE)


@router.post("/git-upload-pack")
async def git_upload_pack(request: Request) -> Response:
    handler = upload_pack.handle_v2 if _v2(request) else upload_pack.handle_v0
    return await _stream(request, "application/x-git-upload-pack-result", handler)


@router.post("/git-receive-pack")
async def git_receive_pack(request: Request) -> Response:
    return await _stream(request, "application/x-git-receive-pack-result", receive_pack.handle)
