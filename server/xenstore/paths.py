"""Xenstore paths: validation and relative-to-absolute, as the C daemon does.

A path is bytes on the wire. Absolute paths start with ``/``; others are
relative to the connection's home ``/local/domain/<domid>``. Allowed bytes:
``[A-Za-z0-9-/_@]``; no ``//``, no trailing ``/`` (except ``/``). The length
limit (``path-max`` quota, 2048) applies to the part after
``/local/domain/<domid>/``. Names starting with ``@`` are special (watch
names such as ``@introduceDomain``).
"""

from __future__ import annotations

import re

from .wire import XsError

_VALID = re.compile(rb"[A-Za-z0-9\-/_@]*\Z")
_LOCAL = re.compile(rb"/local/domain/(\d{1,5})/")

PATH_MAX = 2048


def home(domid: int) -> bytes:
    return b"/local/domain/%d" % domid


def canonical(path: bytes, home_: bytes, path_max: int = PATH_MAX) -> str:
    """The absolute path (as str) for a request path; EINVAL if invalid."""
    if not path.startswith(b"/"):
        if not path or path.startswith(b"@"):
            raise XsError("EINVAL")
        path = home_ + b"/" + path
    if not valid(path, path_max):
        raise XsError("EINVAL")
    return path.decode("ascii")


def valid(path: bytes, path_max: int = PATH_MAX) -> bool:
    if not path.startswith(b"/"):
        return False
    if path.endswith(b"/") and path != b"/":
        return False
    if b"//" in path:
        return False
    m = _LOCAL.match(path)
    off = m.end() if m is not None else 0
    if len(path) - off > path_max:
        return False
    return _VALID.match(path) is not None


def relative_to(path: str, home_: str) -> str:
    """``path`` as seen by a watch registered relative to ``home_``."""
    if path.startswith(home_):
        rest = path[len(home_):]
        return rest[1:] if rest.startswith("/") else rest
    return path


def parent(path: str) -> str:
    i = path.rfind("/")
    return "/" if i <= 0 else path[:i]


def split(path: str) -> list[str]:
    return [] if path == "/" else path[1:].split("/")
