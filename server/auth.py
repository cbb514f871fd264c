"""Bearer tokens with ``read`` or ``write`` scope, and the anonymous policy.

Tokens come from a JSON file (``{"TOKEN": "read", ...}`` or
``{"tokens": [{"token": ..., "scope": ...}]}``) and/or the ``IRMIN_TOKENS``
environment variable (``TOKEN:scope,TOKEN:scope``). A request without a
token gets the ``anonymous`` scope: ``read`` (default), ``write`` or
``none``. Clients send ``Authorization: Bearer TOKEN``; git may also send
HTTP Basic with the token as the password (``http://x:TOKEN@host/git``).

Reads (GET/HEAD, git fetch) need ``read``; everything else, and every
``git push``, needs ``write``. A missing or unknown token is a 401, a token
whose scope is too small a 403, each with a message.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
from dataclasses import dataclass, field

SCOPES = ("none", "read", "write")
_RANK = {s: i for i, s in enumerate(SCOPES)}


def _check_scope(scope: str) -> str:
    if scope not in _RANK:
        raise ValueError(f"unknown scope {scope!r}; expected one of {', '.join(SCOPES)}")
    return scope


@dataclass
class Tokens:
    tokens: dict[str, str] = field(default_factory=dict)
    anonymous: str = "read"

    @classmethod
    def load(cls, path: str | None = None, env: str | None = None,
             anonymous: str = "read") -> Tokens:
        tokens: dict[str, str] = {}
        if path:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            if isinstance(data, dict) and isinstance(data.get("tokens"), list):
                for item in data["tokens"]:
                    tokens[str(item["token"])] = _check_scope(str(item.get("scope", "read")))
            elif isinstance(data, dict):
                for tok, scope in data.items():
                    tokens[str(tok)] = _check_scope(str(scope))
            else:
                raise ValueError(f"{path}: expected a JSON object of token: scope")
        env = os.environ.get("IRMIN_TOKENS", "") if env is None else env
        for pair in filter(None, (p.strip() for p in env.split(","))):
            tok, sep, scope = pair.rpartition(":")
            if not sep or not tok:
                raise ValueError(f"IRMIN_TOKENS entry {pair!r} is not TOKEN:scope")
            tokens[tok] = _check_scope(scope)
        return cls(tokens, _check_scope(anonymous))

    def scope_of(self, token: str) -> str | None:
        for known, scope in self.tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return scope
        return None


def token_from_header(value: str | None) -> str | None:
    """The token in an ``Authorization`` header (Bearer, or Basic's password)."""
    if not value:
        return None
    kind, _, rest = value.partition(" ")
    kind = kind.lower()
    if kind == "bearer":
        return rest.strip()
    if kind == "basic":
        try:
            user, _, password = base64.b64decode(rest.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return password or user
    return ""


def check(tokens: Tokens, header: str | None, needed: str) -> tuple[int, str] | None:
    """``None`` if allowed, else ``(status, message)``."""
    token = token_from_header(header)
    if token is None:
        scope = tokens.anonymous
        if _RANK[scope] >= _RANK[needed]:
            return None
        if scope == "none":
            return 401, "authentication required: send Authorization: Bearer TOKEN"
        return 401, f"{needed} access needs a token with {needed} scope: send Authorization: Bearer TOKEN"
    scope = tokens.scope_of(token)
    if scope is None:
        return 401, "unknown token"
    if _RANK[scope] < _RANK[needed]:
        return 403, f"token has {scope} scope; this request needs {needed}"
    return None
