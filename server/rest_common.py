"""Helpers shared by the REST routers: the repo, revisions, values as JSON,
and commit info from headers or query parameters."""

from __future__ import annotations

import base64
import dataclasses
from urllib.parse import unquote_to_bytes
from typing import Annotated, Any

from fastapi import HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator

from irmin.commit import Commit, Info
from irmin.contents import Contents, resolve
from irmin.errors import BranchNotFound, MalformedObject
from irmin.repo import Repo
from irmin.store import Store


#: Stands for a ``/`` inside a branch segment of a REST path (sent as ``%2F``:
#: ``/api/branches/feature%2Fx/head``) between :class:`BranchSlashes`, which
#: rewrites the routed path, and :data:`BranchName`, which restores it.
SLASH = "\x00"


def _branch_name(name: str) -> str:
    return name.replace(SLASH, "/")


#: A ``{branch}`` path parameter: ``%2F`` in it is a ``/`` of the branch name.
BranchName = Annotated[str, Path(max_length=255), AfterValidator(_branch_name)]
#: A ``{path}`` in the store (``a/b/c``); longer ones get a 422, not a dropped connection.
StorePath = Annotated[str, Path(max_length=4096)]
#: An object id (hex, or a unique prefix) or, where documented, a branch name.
ObjectRef = Annotated[str, Path(max_length=255)]
#: Commit metadata given in the query string (longer messages go in the body or headers).
AuthorQuery = Annotated[str | None, Query(max_length=1000, description="commit author, 'Name <email>'")]
MessageQuery = Annotated[str | None, Query(max_length=4096, description="commit message")]


class BranchSlashes:
    """ASGI middleware: ``%2F`` in the branch segment of ``/api/branches/{b}/...``
    is part of the branch name (``feature/x``), not a path separator. The
    router sees the decoded path, so the segment's slashes are swapped for
    :data:`SLASH` there; ``%00`` in the segment is refused."""

    PREFIX = b"/api/branches/"

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            raw = scope.get("raw_path") or b""
            if raw.startswith(self.PREFIX) and b"%" in raw:
                seg = raw[len(self.PREFIX):].split(b"/", 1)[0]
                low = seg.lower()
                if b"%00" in low:
                    response = JSONResponse({"detail": "NUL in a branch name"}, status_code=400)
                    await response(scope, receive, send)
                    return
                if b"%2f" in low:
                    name = unquote_to_bytes(seg).decode("utf-8", "surrogateescape")
                    rest = scope["path"][len("/api/branches/"):]
                    # the decoded path: the segment's decoded text, then the rest
                    if rest.startswith(name):
                        scope = dict(scope)
                        scope["path"] = ("/api/branches/" + name.replace("/", SLASH)
                                         + rest[len(name):])
        await self.app(scope, receive, send)


def repo_of(request: Request) -> Repo:
    return request.app.state.repo  # type: ignore[no-any-return]


def branch_store(repo: Repo, branch: str, *, must_exist: bool = True) -> Store:
    try:
        store = repo.branch(branch)
    except ValueError as e:
        raise HTTPException(400, f"invalid branch name {branch!r}: {e}") from None
    if must_exist and repo.head_id(branch) is None:
        raise BranchNotFound(f"no branch {branch!r}")
    return store


def parse_id(repo: Repo, text: str) -> bytes:
    try:
        return repo.fmt.parse_id(text)
    except MalformedObject:
        raise HTTPException(400, f"{text[:80]!r} is not a {2 * repo.fmt.id_len}-digit hex object id") from None


def commit_json(c: Commit) -> dict[str, Any]:
    return c.as_dict()


def value_json(v: bytes | None) -> dict[str, str] | None:
    """Bytes for JSON: UTF-8 text when it is, base64 otherwise."""
    if v is None:
        return None
    try:
        return {"encoding": "utf-8", "data": v.decode("utf-8")}
    except UnicodeDecodeError:
        return {"encoding": "base64", "data": base64.b64encode(v).decode()}


def diff_json(changes: list[tuple[tuple[str, ...], str, bytes | None, bytes | None]]) -> list[dict[str, Any]]:
    return [{"path": "/".join(p), "change": kind, "old": value_json(old), "new": value_json(new)}
            for p, kind, old, new in changes]


def contents_codec(name: str | None) -> Contents[Any] | None:
    if name is None or name == "bytes":
        return None
    try:
        return resolve(name)
    except ValueError as e:
        raise HTTPException(400, str(e)) from None


def jsonable(value: Any) -> Any:
    if isinstance(value, (frozenset, set)):
        return sorted((jsonable(v) for v in value), key=repr)
    if isinstance(value, bytes):
        return value_json(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, tuple):
        return [jsonable(v) for v in value]
    return value


def write_info(request: Request, author: str | None, message: str | None, default: str) -> Info:
    author = author or request.headers.get("x-irmin-author")
    message = message or request.headers.get("x-irmin-message") or default
    if author is not None:
        if not author.strip() or len(author) > 1000:
            raise HTTPException(400, "bad author")
        return Info(author=author, message=message)
    return Info(message=message)
