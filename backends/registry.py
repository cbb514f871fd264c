"""Store URIs resolved through a registry of schemes.

``scheme:rest[?key=value&...]`` — the scheme picks the backend, the rest is
its path, the query its options. Backends register lazily (module path and
function name) so that opening ``memory:`` never imports lmdb or dulwich.
Third-party backends call :func:`register`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from urllib.parse import parse_qsl

from .base import Backend
from .errors import InvalidURI

Opener = Callable[[str, dict[str, str]], Backend]

_schemes: dict[str, str | Opener] = {
    "memory": "irmin.backends.memory:open_memory",
    "lmdb": "irmin.backends.lmdb_store:open_lmdb",
    "git": "irmin.backends.git_dir:open_git",
    "block": "irmin.backends.block:open_block",
}


def register(scheme: str, opener: str | Opener) -> None:
    """Make ``scheme:`` URIs open through ``opener(path, params)``."""
    _schemes[scheme] = opener


def schemes() -> list[str]:
    return sorted(_schemes)


def parse_uri(uri: str) -> tuple[str, str, dict[str, str]]:
    """Split ``scheme:path?query`` into its parts (no I/O)."""
    if not isinstance(uri, str) or ":" not in uri:
        raise InvalidURI(f"store URI {uri!r} has no scheme; expected one of: "
                         + ", ".join(f"{s}:" for s in schemes()))
    scheme, rest = uri.split(":", 1)
    if scheme not in _schemes:
        raise InvalidURI(f"unknown store scheme {scheme!r} in {uri!r}; expected one of: "
                         + ", ".join(f"{s}:" for s in schemes()))
    path, _, query = rest.partition("?")
    try:
        params = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError as e:
        raise InvalidURI(f"bad options in store URI {uri!r}: {e}") from e
    return scheme, path, params


def open_backend(uri: str, **options: str) -> Backend:
    """Open the backend a URI names; ``options`` add to the URI's query."""
    scheme, path, params = parse_uri(uri)
    params.update({k: str(v) for k, v in options.items()})
    opener = _schemes[scheme]
    if isinstance(opener, str):
        module_name, func_name = opener.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise InvalidURI(f"backend for {scheme}: is not available: {e}") from e
        opener = getattr(module, func_name)
        _schemes[scheme] = opener
    return opener(path, params)


def bool_param(params: dict[str, str], key: str, default: bool) -> bool:
    """Read a boolean URI option (``1/0, true/false, yes/no, on/off``)."""
    if key not in params:
        return default
    v = params[key].lower()
    if v in ("1", "true", "yes", "on", ""):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise InvalidURI(f"option {key}={params[key]!r} is not a boolean")
