"""REST: Server-Sent Events stream of a branch's head changes.

``GET /api/branches/{b}/watch?prefix=a/b`` first sends ``event: hello`` with
the current head, then ``event: change`` for each new head (``id:`` is the
commit id, ``data:`` JSON with old/new ids and the diff below the prefix).
Each client has a bounded queue: a client that falls behind gets one
``event: overflow`` carrying the current head (it must resync from there),
never a silent gap. Comments (``: keep-alive``) are sent while idle.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from irmin.path import parse
from irmin.watch import WatchEvent

from .rest_common import BranchName, branch_store, diff_json, repo_of

router = APIRouter(prefix="/api", tags=["watch"])

_OVERFLOW = object()


def _sse(event: str, data: dict[str, Any], eid: str | None = None) -> bytes:
    head = f"event: {event}\n" + (f"id: {eid}\n" if eid else "")
    return (head + f"data: {json.dumps(data)}\n\n").encode()


@router.get("/branches/{branch}/watch", summary="Server-Sent Events of head changes",
            responses={200: {"content": {"text/event-stream": {}}}})
async def watch(request: Request, branch: BranchName,
                prefix: str = Query("", max_length=4096, description="only changes below this path")) -> StreamingResponse:
    repo = repo_of(request)
    steps = parse(prefix)
    store = branch_store(repo, branch, must_exist=False)
    cfg = request.app.state.config
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=cfg.watch_queue)
    overflowed = False

    def put(item: bytes) -> None:  # on the event loop
        nonlocal overflowed
        if overflowed:
            return
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            overflowed = True
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(_OVERFLOW)

    def on_event(ev: WatchEvent) -> None:  # on the watch dispatcher thread
        data = {"branch": ev.branch,
                "old": ev.old.id if ev.old is not None else None,
                "new": ev.new.id if ev.new is not None else None,
                "prefix": "/".join(steps),
                "diff": diff_json(ev.diff)}
        item = _sse("change", data, data["new"])
        loop.call_soon_threadsafe(put, item)

    handle = store.watch(on_event, steps)
    head = store.head_id()

    async def stream() -> AsyncIterator[bytes]:
        nonlocal overflowed
        try:
            yield _sse("hello", {"branch": branch, "head": head.hex() if head else None,
                                 "prefix": "/".join(steps)})
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), cfg.watch_keepalive)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield b": keep-alive\n\n"
                    continue
                if item is _OVERFLOW:
                    overflowed = False
                    now = store.head_id()
                    yield _sse("overflow", {"branch": branch, "head": now.hex() if now else None,
                                            "detail": "events were dropped: resync from this head"})
                    continue
                yield item
        finally:
            handle.close()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
