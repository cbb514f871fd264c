"""ASGI middleware that guards every request before FastAPI sees it:
authentication and scope, request body size, and request time.

* Scope: GET/HEAD/OPTIONS need ``read``, other methods ``write``; git's
  receive-pack (push, including its ``info/refs``) needs ``write``.
  ``/openapi.json``, ``/docs`` and ``/health`` are public.
* Body: ``Content-Length`` over the limit is refused at once (413); a chunked
  body is counted as it arrives and refused when it passes the limit.
* Time: REST requests that take longer than ``request_timeout`` get a 504
  (watch streams and git get ``git_timeout``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from . import auth
from .config import ServerConfig

PUBLIC = ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/health")


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than the limit of {limit} bytes")
        self.limit = limit


def needed_scope(path: str, method: str, query: bytes) -> str | None:
    if path in PUBLIC:
        return None
    if path.startswith("/git"):
        if path.endswith("/git-receive-pack") or b"service=git-receive-pack" in query:
            return "write"
        return "read"
    return "read" if method in ("GET", "HEAD", "OPTIONS") else "write"


async def _send_json(send: Any, status: int, body: dict[str, Any],
                     headers: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()), *headers]})
    await send({"type": "http.response.body", "body": data})


class Guard:
    def __init__(self, app: Any, config: ServerConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cfg = self.config
        path: str = scope["path"]
        headers = dict(scope["headers"])
        is_git = path.startswith("/git")
        needed = needed_scope(path, scope["method"], scope.get("query_string", b""))
        if needed is not None:
            header = headers.get(b"authorization")
            refused = auth.check(cfg.tokens, header.decode("latin-1") if header else None, needed)
            if refused is not None:
                status, message = refused
                extra = []
                if status == 401:
                    extra.append((b"www-authenticate",
                                  b'Basic realm="irmin"' if is_git else b'Bearer realm="irmin"'))
                await _send_json(send, status, {"detail": message}, extra)
                return
        limit = cfg.max_push if is_git else cfg.max_body
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                await _send_json(send, 400, {"detail": "bad Content-Length"})
                return
            if too_big:
                await _send_json(send, 413, {"detail": BodyTooLarge(limit).args[0]})
                return
        seen = 0

        async def counted_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        started = False

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        streaming = is_git or path.endswith("/watch")
        timeout = cfg.git_timeout if is_git else (None if streaming else cfg.request_timeout)
        try:
            if timeout is None:
                await self.app(scope, counted_receive, tracked_send)
            else:
                await asyncio.wait_for(self.app(scope, counted_receive, tracked_send), timeout)
        except BodyTooLarge as e:
            if not started:
                await _send_json(send, 413, {"detail": str(e)})
        except TimeoutError:
            if not started:
                await _send_json(send, 504, {"detail": f"request took longer than {timeout} s"})
