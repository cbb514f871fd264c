"""REST: branches (list, create, delete, head with compare-and-set), merge,
history and last_modified."""

from __future__ import annotations

import itertools
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from irmin.path import parse

from .rest_common import AuthorQuery, BranchName, MessageQuery, StorePath, branch_store, commit_json, parse_id, repo_of, write_info

router = APIRouter(prefix="/api", tags=["branches"])


class NewBranch(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    start: str | None = Field(None, alias="from", description="commit id or branch; null: empty")

    model_config = {"populate_by_name": True}


class HeadUpdate(BaseModel):
    expected: str | None = Field(None, description="the head it must hold now (null: absent)")
    new: str | None = Field(None, description="the commit to move to (null: delete)")


class MergeRequest(BaseModel):
    source: str = Field(alias="from", min_length=1, max_length=255,
                        description="branch name or commit id to merge in")
    message: str | None = None
    author: str | None = None

    model_config = {"populate_by_name": True}


def _branch_json(repo: Any, name: str) -> dict[str, Any]:
    head = repo.head_id(name)
    return {"name": name, "head": head.hex() if head is not None else None}


@router.get("/branches", summary="List branches")
def list_branches(request: Request) -> dict[str, Any]:
    repo = repo_of(request)
    return {"branches": [_branch_json(repo, b) for b in repo.branches()]}


@router.post("/branches", status_code=201, summary="Create a branch")
def create_branch(request: Request, body: NewBranch) -> dict[str, Any]:
    repo = repo_of(request)
    branch_store(repo, body.name, must_exist=False)
    if body.start is None:
        raise HTTPException(400, "a new branch needs a start commit (\"from\")")
    start = repo.resolve(body.start)
    if not repo.backend.cas_ref(repo.ref_name(body.name), None, start.oid):
        raise HTTPException(409, f"branch {body.name!r} already exists")
    return _branch_json(repo, body.name)


@router.get("/branches/{branch}", summary="A branch and its head commit")
def get_branch(request: Request, branch: BranchName) -> dict[str, Any]:
    repo = repo_of(request)
    store = branch_store(repo, branch)
    head = store.head
    return {"name": branch, "head": commit_json(head) if head is not None else None}


@router.delete("/branches/{branch}", status_code=204, summary="Delete a branch")
def delete_branch(request: Request, branch: BranchName) -> Response:
    repo = repo_of(request)
    branch_store(repo, branch, must_exist=False)
    repo.delete_branch(branch)
    return Response(status_code=204)


@router.get("/branches/{branch}/head", summary="The head id of a branch")
def get_head(request: Request, branch: BranchName) -> dict[str, Any]:
    repo = repo_of(request)
    branch_store(repo, branch)
    return _branch_json(repo, branch)


@router.put("/branches/{branch}/head", summary="Compare-and-set a branch head",
            responses={409: {"description": "the head was not the expected one"}})
def set_head(request: Request, branch: BranchName, body: HeadUpdate) -> Any:
    repo = repo_of(request)
    branch_store(repo, branch, must_exist=False)
    expected = parse_id(repo, body.expected) if body.expected is not None else None
    new = None
    if body.new is not None:
        new = repo.commit(parse_id(repo, body.new)).oid  # must be a commit we hold
    if not repo.set_head(branch, new, expected):
        current = repo.head_id(branch)
        return JSONResponse({"detail": "head is not the expected commit",
                             "head": current.hex() if current else None}, status_code=409)
    return _branch_json(repo, branch)


@router.post("/branches/{branch}/merge", summary="Merge a branch or commit into this branch",
             responses={409: {"description": "conflicts: {\"conflicts\": [...]}"}})
def merge(request: Request, branch: BranchName, body: MergeRequest,
          author: AuthorQuery = None,
          message: MessageQuery = None) -> dict[str, Any]:
    repo = repo_of(request)
    store = branch_store(repo, branch)
    # like every write: the body's fields, else ?author=/?message=, else the headers
    info = write_info(request, body.author or author, body.message or message,
                      f"merge {body.source} into {branch}")
    commit = store.merge(body.source, info.message, author=info.author)
    return {"commit": commit.id}


@router.get("/branches/{branch}/history", summary="Commits from the head, newest first")
def history(request: Request, branch: BranchName,
            depth: int | None = Query(None, ge=1, le=1_000_000, description="generations to walk"),
            offset: int = Query(0, ge=0, le=10_000_000),
            limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    repo = repo_of(request)
    store = branch_store(repo, branch)
    commits = list(itertools.islice(store.history(depth), offset, offset + limit + 1))
    more = len(commits) > limit
    return {"commits": [commit_json(c) for c in commits[:limit]],
            "next_offset": offset + limit if more else None}


@router.get("/branches/{branch}/last_modified/{path:path}",
            summary="The latest commits that changed a path")
def last_modified(request: Request, branch: BranchName, path: StorePath,
                  n: int = Query(1, ge=1, le=100)) -> dict[str, Any]:
    repo = repo_of(request)
    store = branch_store(repo, branch)
    return {"path": "/".join(parse(path)),
            "commits": [commit_json(c) for c in store.last_modified(path, n)]}
