"""The public exception tree (rooted in :class:`IrminError`, see
``irmin.backends.errors`` for the storage half), plus the core's own errors.

Conflicts carry structured data (:class:`Conflict` records: path, the three
versions, a reason) so that callers, the HTTP server and the CLI can show or
resolve them; nothing is ever silently resolved.
"""

from __future__ import annotations

from dataclasses import dataclass

from irmin.backends.errors import (
    CorruptStore,
    InvalidRefName,
    InvalidURI,
    IrminError,
    MalformedObject,
    MissingObject,
    NotFormatted,
    ObjectError,
    RefError,
    StoreClosed,
    StoreError,
    StoreFull,
)

__all__ = [
    "IrminError", "StoreError", "InvalidURI", "NotFormatted", "StoreFull", "StoreClosed",
    "CorruptStore", "ObjectError", "MissingObject", "MalformedObject", "RefError",
    "InvalidRefName", "PathError", "InvalidPath", "NotFoundError", "BranchNotFound",
    "Conflict", "ConflictError", "TestAndSetFailed",
]


class PathError(IrminError, ValueError):
    """A path is malformed, or names a node where contents were expected (or
    the reverse)."""


class InvalidPath(PathError):
    """The path itself is malformed (empty step, '.', '..', NUL...)."""


class NotFoundError(IrminError, KeyError):
    """Nothing at this path, or no such branch or commit."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class BranchNotFound(NotFoundError, RefError):
    """The branch does not exist."""


@dataclass(frozen=True)
class Conflict:
    """One conflicting path: the three versions and why they did not merge.

    ``base``/``ours``/``theirs`` are the raw bytes (``None``: absent there);
    for a node/contents clash they are the blob or tree id as text.
    """

    path: tuple[str, ...]
    base: bytes | None
    ours: bytes | None
    theirs: bytes | None
    reason: str

    @property
    def path_str(self) -> str:
        return "/".join(self.path)

    def as_dict(self) -> dict[str, object]:
        def show(v: bytes | None) -> str | None:
            if v is None:
                return None
            return v.decode("utf-8", "backslashreplace")

        return {"path": self.path_str, "base": show(self.base), "ours": show(self.ours),
                "theirs": show(self.theirs), "reason": self.reason}


class ConflictError(IrminError):
    """A merge or a transaction could not be completed without a choice.

    ``conflicts`` lists every conflicting path; nothing was written.
    """

    def __init__(self, conflicts: list[Conflict], message: str | None = None) -> None:
        self.conflicts = conflicts
        paths = ", ".join(c.path_str or "/" for c in conflicts[:10])
        more = f" (+{len(conflicts) - 10} more)" if len(conflicts) > 10 else ""
        super().__init__(message or f"merge conflict at {paths}{more}")


class TestAndSetFailed(IrminError):
    """test_and_set found a value other than the one it was told to expect."""

    __test__ = False  # not a pytest test class
