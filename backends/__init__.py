"""Storage backends: bytes by id and refs by compare-and-set (see ``base``).

This namespace is for backend authors and for tools that work below the
object layer; most users only pass a URI to :func:`irmin.open`.
"""

from .base import Backend, RefChange, RefUpdate, check_ref_name
from .registry import open_backend, parse_uri, register, schemes

__all__ = [
    "Backend",
    "RefChange",
    "RefUpdate",
    "check_ref_name",
    "open_backend",
    "parse_uri",
    "register",
    "schemes",
]
