"""The one exception tree of irmin.

It lives in the lowest layer so that backends can raise it without importing
the core; ``irmin.errors`` re-exports it and adds the core's own classes.

    IrminError                      root: catch this to catch everything we raise
    ├── StoreError                  a store cannot be opened or used
    │   ├── InvalidURI              unknown scheme or malformed store URI
    │   ├── NotFormatted            the target holds no store (or a foreign one)
    │   ├── StoreFull               no space left (device full, map limit)
    │   ├── StoreClosed             used after close()
    │   └── CorruptStore            on-disk damage detected (checksum, torn record)
    ├── ObjectError
    │   ├── MissingObject           an id that the store does not hold
    │   └── MalformedObject         bytes that do not decode as a git object
    ├── RefError
    │   └── InvalidRefName          a ref/branch name git would refuse
    ├── PathError                   (core) bad path, or wrong kind at a path
    │   └── NotFoundError           (core) nothing at that path / no such branch
    ├── ConflictError               (core) a merge or transaction conflict
    └── ...                         front ends add their own below IrminError

Library errors (lmdb, dulwich, OSError) are converted at the backend boundary
with the original chained as ``__cause__``. A failed compare-and-set is not an
error: it is a ``False`` return value.
"""

from __future__ import annotations


class IrminError(Exception):
    """Root of every error irmin raises on purpose."""


class StoreError(IrminError):
    """A store cannot be opened or used."""


class InvalidURI(StoreError, ValueError):
    """The store URI has an unknown scheme or is malformed."""


class NotFormatted(StoreError):
    """The target exists but holds no store of ours (or a foreign format)."""


class StoreFull(StoreError):
    """No space is left for the write; nothing of it was applied."""


class StoreClosed(StoreError):
    """The store was used after ``close()``."""


class CorruptStore(StoreError):
    """Damage was found in the store's files (checksum, torn or truncated record)."""


class ObjectError(IrminError):
    """Base for errors about a single object."""


class MissingObject(ObjectError, KeyError):
    """The store does not hold an object with this id."""

    def __init__(self, oid: bytes | str, message: str | None = None) -> None:
        self.oid = oid if isinstance(oid, str) else oid.hex()
        super().__init__(message or f"object {self.oid} is not in the store")

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return str(self.args[0])


class MalformedObject(ObjectError, ValueError):
    """Bytes that do not decode as a well-formed git object."""


class RefError(IrminError):
    """Base for errors about refs and branches."""


class InvalidRefName(RefError, ValueError):
    """A ref or branch name that git would refuse."""
