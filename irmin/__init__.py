"""irmin: a Git-format, branchable, content-addressed store.

    import irmin
    repo = irmin.open("lmdb:./db")          # or memory:, git:PATH, block:PATH
    main = repo.branch("main")
    main.set("a/b", b"hello", message="first")
    main.get("a/b")                          # b'hello'
    with main.transaction() as tx:           # snapshot, merged at the end
        tx.set("a/c", b"world")

Objects are git objects (ids as ``git hash-object`` computes them), trees are
lazy and immutable, branches move by compare-and-set, and conflicts come back
as data. See README.md for the tour.
"""

from __future__ import annotations

from . import contents
from .commit import Commit, Info
from .contents import Contents, MergeConflict
from .errors import (
    BranchNotFound,
    Conflict,
    ConflictError,
    CorruptStore,
    InvalidPath,
    InvalidRefName,
    InvalidURI,
    IrminError,
    MalformedObject,
    MissingObject,
    NotFormatted,
    NotFoundError,
    PathError,
    StoreClosed,
    StoreError,
    StoreFull,
    TestAndSetFailed,
)
from .objects import SHA1, ObjectFormat
from .repo import DEFAULT_BRANCH, Repo
from .store import Store
from .transaction import Transaction
from .tree import Tree
from .watch import Watch, WatchEvent

__version__ = "0.1.0"


def open(uri: str, **kwargs: object) -> Repo:  # noqa: A001 - mirrors irmin.open in the docs
    """Open (creating if needed) the store a URI names."""
    return Repo.open(uri, **kwargs)


__all__ = [
    "BranchNotFound", "Commit", "Conflict", "ConflictError", "Contents", "CorruptStore",
    "DEFAULT_BRANCH", "Info", "InvalidPath", "InvalidRefName", "InvalidURI", "IrminError",
    "MalformedObject", "MergeConflict", "MissingObject", "NotFormatted", "NotFoundError",
    "ObjectFormat", "PathError", "Repo", "SHA1", "Store", "StoreClosed", "StoreError",
    "StoreFull", "TestAndSetFailed", "Transaction", "Tree", "Watch", "WatchEvent",
    "contents", "open", "__version__",
]
