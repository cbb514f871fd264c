"""Server settings: limits, auth and watch buffering, in one dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field

from .auth import Tokens


@dataclass
class ServerConfig:
    #: Largest REST request body (bytes).
    max_body: int = 16 * 1024 * 1024
    #: Largest git push (bytes, after gzip decoding).
    max_push: int = 1024 * 1024 * 1024
    #: Seconds a REST request may take before a 504 (watch streams and git exempt).
    request_timeout: float = 30.0
    #: Seconds a git request may take.
    git_timeout: float = 3600.0
    #: Events buffered per watch client before it is told to resync.
    watch_queue: int = 256
    #: Seconds between SSE keep-alive comments.
    watch_keepalive: float = 15.0
    tokens: Tokens = field(default_factory=Tokens)
