"""REST: read, write and remove paths on a branch; list directories.

``GET /api/branches/{b}/tree/{path}`` answers with the value's bytes
(``application/octet-stream``), or the decoded value as JSON with
``?contents=json|string|counter|set|lww``; on a directory it answers the
paginated listing as JSON. ``PUT`` writes the request body (raw bytes, or
JSON for typed contents) and commits; ``DELETE`` removes. Author and message
come from ``X-Irmin-Author``/``X-Irmin-Message`` or ``?author=``/``?message=``.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse

from irmin.errors import NotFoundError
from irmin.path import parse

from .rest_common import AuthorQuery, BranchName, MessageQuery, StorePath, branch_store, contents_codec, jsonable, repo_of, write_info

router = APIRouter(prefix="/api", tags=["paths"])

CONTENTS_HELP = "typed contents: bytes (default), string, json, counter, set, lww"
_VALUE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}, "application/json": {}},
          "description": "the value's bytes, its JSON (typed contents) or a directory listing"},
}


def _listing(tree: Any, path: tuple[str, ...], offset: int, limit: int) -> dict[str, Any]:
    items = tree.list(path, offset, limit + 1)
    more = len(items) > limit
    return {"path": "/".join(path), "kind": "node",
            "entries": [{"name": n, "kind": k} for n, k in items[:limit]],
            "next_offset": offset + limit if more else None}


def _read(request: Request, branch: str, path: str, contents: str | None,
          offset: int, limit: int) -> Response:
    repo = repo_of(request)
    steps = parse(path)
    store = branch_store(repo, branch)
    tree = store.tree()
    kind = tree.kind(steps) if steps else "node"
    if kind is None:
        raise NotFoundError(f"nothing at {'/'.join(steps)!r} on branch {branch!r}")
    if kind == "node":
        return JSONResponse(_listing(tree, steps, offset, limit))
    raw = tree.get(steps)
    codec = contents_codec(contents)
    if codec is None:
        return Response(raw, media_type="application/octet-stream",
                        headers={"X-Irmin-Kind": "contents"})
    try:
        value = codec.decode(raw)
    except Exception as e:  # a codec's own error type
        raise HTTPException(422, f"value at {'/'.join(steps)} is not {codec.name}: {e}") from None
    return JSONResponse(jsonable(value), headers={"X-Irmin-Kind": "contents"})


@router.get("/branches/{branch}/tree", summary="List the root directory",
            responses=_VALUE_RESPONSES)
def read_root(request: Request, branch: BranchName,
              offset: int = Query(0, ge=0, le=10_000_000),
              limit: int = Query(1000, ge=1, le=10_000)) -> Response:
    return _read(request, branch, "", None, offset, limit)


@router.get("/branches/{branch}/tree/{path:path}", summary="Read a value or list a directory",
            responses=_VALUE_RESPONSES)
def read_path(request: Request, branch: BranchName, path: StorePath,
              contents: str | None = Query(None, description=CONTENTS_HELP),
              offset: int = Query(0, ge=0, le=10_000_000),
              limit: int = Query(1000, ge=1, le=10_000)) -> Response:
    return _read(request, branch, path, contents, offset, limit)


@router.put("/branches/{branch}/tree/{path:path}", summary="Write a value and commit",
            openapi_extra={"requestBody": {"required": True, "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": {}}}}})
async def write_path(request: Request, branch: BranchName, path: StorePath,
                     contents: str | None = Query(None, description=CONTENTS_HELP),
                     author: AuthorQuery = None, message: MessageQuery = None) -> dict[str, Any]:
    repo = repo_of(request)
    steps = parse(path)
    if not steps:
        raise HTTPException(400, "cannot write a value at the root")
    store = branch_store(repo, branch, must_exist=False)
    body = await request.body()
    codec = contents_codec(contents)
    if codec is not None:
        try:
            raw = codec.encode(_decode_json(body))
        except HTTPException:
            raise
        except (TypeError, ValueError) as e:
            raise HTTPException(400, f"not a valid {codec.name} value: {e}") from None
    else:
        raw = body
    info = write_info(request, author, message, f"set {'/'.join(steps)}")
    from fastapi.concurrency import run_in_threadpool

    commit = await run_in_threadpool(
        lambda: store.update_tree(lambda t: t.set(steps, raw), info))
    head = store.head_id()
    return {"commit": commit.id if commit is not None else None,
            "head": head.hex() if head is not None else None}


def _decode_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise HTTPException(400, f"invalid JSON body: {e}") from None


@router.delete("/branches/{branch}/tree/{path:path}", summary="Remove a value or subtree and commit")
def remove_path(request: Request, branch: BranchName, path: StorePath,
                author: AuthorQuery = None, message: MessageQuery = None) -> dict[str, Any]:
    repo = repo_of(request)
    steps = parse(path)
    if not steps:
        raise HTTPException(400, "cannot remove the root")
    store = branch_store(repo, branch)
    if store.tree().kind(steps) is None:
        raise NotFoundError(f"nothing at {'/'.join(steps)!r} on branch {branch!r}")
    info = write_info(request, author, message, f"remove {'/'.join(steps)}")
    commit = store.update_tree(lambda t: t.remove(steps), info)
    return {"commit": commit.id if commit is not None else None}
