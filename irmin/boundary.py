"""The history boundary left by a windowed gc (git's "shallow" list).

``irmin gc --keep-last N`` keeps only the newest N commits of each ref and
deletes the older ones. The oldest kept commits then name parents that are no
longer stored. So that this stays distinguishable from damage, gc records the
ids of those commits -- the *boundary* -- in a blob pointed at by the ref
``refs/irmin/gc-boundary``:

    irmin gc-boundary 1
    <hex id of a boundary commit>
    ...

Readers of history (fsck, gc, copy, and :mod:`irmin.history`'s walks behind
``Store.history``, ``irmin log`` and merge bases) treat a boundary commit as
a root: its parents are not followed, and their absence is not an error.
Anything else missing is. Because the list is an ordinary blob behind an ordinary ref, it
travels with ``irmin copy`` and sync like any other object, and a ref that
points at a blob is legal git.

(A git directory written through ``git:`` does not carry git's own
``shallow`` file, so ``git fsck`` run by the git CLI on a windowed store will
report the cut parents as missing; ``irmin fsck`` will not.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from irmin.backends.base import RefUpdate

if TYPE_CHECKING:
    from .repo import Repo

__all__ = ["BOUNDARY_REF", "read_boundary", "encode_boundary", "boundary_update", "cut_commits"]

BOUNDARY_REF = "refs/irmin/gc-boundary"
_MAGIC = b"irmin gc-boundary 1\n"


def encode_boundary(oids: set[bytes]) -> bytes:
    return _MAGIC + b"".join(o.hex().encode() + b"\n" for o in sorted(oids))


def decode_boundary(body: bytes) -> set[bytes]:
    if not body.startswith(_MAGIC):
        return set()
    out: set[bytes] = set()
    for line in body[len(_MAGIC):].split(b"\n"):
        line = line.strip()
        if line:
            try:
                out.add(bytes.fromhex(line.decode()))
            except ValueError:
                continue
    return out


def read_boundary(repo: Repo) -> tuple[bytes | None, set[bytes]]:
    """``(blob id or None, set of boundary commit ids)``; a missing or
    unreadable list counts as no boundary (fsck reports the missing blob)."""
    oid = repo.backend.get_ref(BOUNDARY_REF)
    if oid is None:
        return None, set()
    raw = repo.backend.get(oid)
    if raw is None:
        return oid, set()
    try:
        kind, body = repo.fmt.split(raw)
    except Exception:
        return oid, set()
    if kind != b"blob":
        return oid, set()
    return oid, decode_boundary(body)


def cut_commits(repo: Repo) -> frozenset[bytes]:
    """The boundary commits, for history walks: one ref read per call; the
    list itself is read (and decoded) only when the ref moved since the last
    call on this ``repo``."""
    oid = repo.backend.get_ref(BOUNDARY_REF)
    if oid is None:
        return frozenset()
    cached = getattr(repo, "_cut_cache", None)
    if cached is not None and cached[0] == oid:
        return cached[1]  # type: ignore[no-any-return]
    blob, oids = read_boundary(repo)
    out = frozenset(oids)
    if blob is not None:
        repo._cut_cache = (blob, out)  # type: ignore[attr-defined]
    return out


def boundary_update(repo: Repo, old: bytes | None, oids: set[bytes]) -> tuple[
        list[tuple[bytes, bytes]], RefUpdate | None, bytes | None]:
    """The objects and ref update that record ``oids`` as the boundary
    (``None`` update when nothing changes), and the new blob id."""
    if not oids:
        return [], (RefUpdate(BOUNDARY_REF, old, None) if old is not None else None), None
    oid, raw = repo.fmt.canonical(b"blob", encode_boundary(oids))
    if oid == old:
        return [], None, oid
    return [(oid, raw)], RefUpdate(BOUNDARY_REF, old, oid), oid
