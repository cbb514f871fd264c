"""REST: commits, trees and raw objects by id, and the diff of two commits."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from irmin.errors import MissingObject
from irmin.objects import MODE_TREE

from .rest_common import ObjectRef, commit_json, diff_json, parse_id, repo_of

router = APIRouter(prefix="/api", tags=["objects"])


@router.get("/commits/{commit_id}", summary="A commit by id")
def get_commit(request: Request, commit_id: ObjectRef) -> dict[str, Any]:
    repo = repo_of(request)
    return commit_json(repo.commit(parse_id(repo, commit_id)))


@router.get("/trees/{tree_id}", summary="A tree's entries by id, paginated")
def get_tree(request: Request, tree_id: ObjectRef,
             offset: int = Query(0, ge=0, le=10_000_000),
             limit: int = Query(1000, ge=1, le=10_000)) -> dict[str, Any]:
    repo = repo_of(request)
    oid = parse_id(repo, tree_id)
    kind, body = repo.read_object(oid)
    if kind != b"tree":
        raise HTTPException(400, f"{tree_id} is a {kind.decode()}, not a tree")
    entries = repo.fmt.parse_tree(body)
    page = entries[offset : offset + limit]
    return {"id": tree_id,
            "entries": [{"name": name.decode("utf-8", "surrogateescape"), "mode": mode.decode(),
                         "id": eid.hex(), "kind": "node" if mode == MODE_TREE else "contents"}
                        for mode, name, eid in page],
            "next_offset": offset + limit if offset + limit < len(entries) else None}


@router.get("/objects/{object_id}", summary="A raw object's body (git type in X-Git-Type)",
            responses={200: {"content": {"application/octet-stream": {}}}})
def get_object(request: Request, object_id: ObjectRef,
               canonical: bool = Query(False, description="include git's '<type> <size>\\0' header")) -> Response:
    repo = repo_of(request)
    oid = parse_id(repo, object_id)
    raw = repo.backend.get(oid)
    if raw is None:
        raise MissingObject(oid)
    kind, body = repo.fmt.split(raw)
    return Response(raw if canonical else body, media_type="application/octet-stream",
                    headers={"X-Git-Type": kind.decode()})


@router.get("/diff", summary="Changes between two commits (ids or branch names)")
def diff(request: Request,
         a: str = Query(..., alias="from", min_length=1, max_length=255),
         b: str = Query(..., alias="to", min_length=1, max_length=255),
         limit: int = Query(10_000, ge=1, le=100_000)) -> dict[str, Any]:
    repo = repo_of(request)
    ca, cb = repo.resolve(a), repo.resolve(b)
    changes = ca.tree.diff(cb.tree)
    return {"from": ca.id, "to": cb.id, "changes": diff_json(changes[:limit]),
            "truncated": len(changes) > limit}
