"""``irmin copy`` and ``irmin snapshot``: whole stores between any two backends.

:func:`copy` moves every object, then every ref. Objects go in batches
(``get_many`` from the source, ``put_many`` into the destination), skipping
those the destination already holds, so an interrupted copy (Ctrl-C, a
crash, ``limit=``) is resumed by running it again: the second run only
checks what is there and sends the rest. Every object is re-hashed on the
way (a damaged source object stops the copy rather than spreading). Refs are
set last, each by compare-and-set, so a ref in the destination never names
an object it does not hold. Refs that exist only in the destination are left
alone.

:func:`snapshot` writes a store that holds one version: the tree of one
commit (every object under it) and a single parentless commit of it (same
author, committer, date and message, so snapshotting the same commit twice
gives the same id), on the branch the revision named, or ``main``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from irmin.backends.base import Backend, RefUpdate
from irmin.backends.errors import CorruptStore
from irmin.backends.registry import open_backend

from .objects import BLOB_MODES, MODE_TREE, CommitData
from .progress import bar
from .repo import BRANCH_PREFIX, DEFAULT_BRANCH

if TYPE_CHECKING:
    from .commit import Commit
    from .repo import Repo

__all__ = ["CopyStats", "copy", "snapshot"]


@dataclass
class CopyStats:
    objects: int = 0  # objects in the source
    copied: int = 0  # objects written to the destination by this run
    skipped: int = 0  # already there
    refs: int = 0  # refs set
    complete: bool = False  # False when ``limit`` stopped the copy early
    commit: str | None = None  # snapshot: the commit written

    def summary(self) -> str:
        if not self.complete:
            return (f"INCOMPLETE: copied {self.copied} objects ({self.skipped} already there) "
                    f"of {self.objects}; refs not set; run again to resume")
        s = (f"copied {self.copied} objects ({self.skipped} already there) of {self.objects}, "
             f"{self.refs} refs")
        if self.commit:
            s += f"; commit {self.commit}"
        return s


def _open(store: Backend | Repo | str) -> tuple[Backend, bool]:
    if isinstance(store, str):
        return open_backend(store), True
    if isinstance(store, Backend):
        return store, False
    return store.backend, False


def _chunks(items: Iterable[bytes], n: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for x in items:
        chunk.append(x)
        if len(chunk) >= n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _send(src: Backend, dst: Backend, ids: list[bytes], stats: CopyStats,
          limit: int | None) -> bool:
    """Copy the objects among ``ids`` that ``dst`` lacks; ``False`` once
    ``limit`` objects have been written by this run."""
    import hashlib

    todo = [o for o in ids if not dst.has(o)]
    stats.skipped += len(ids) - len(todo)
    if limit is not None:
        todo = todo[: max(0, limit - stats.copied)]
    if todo:
        found = src.get_many(todo)
        for oid in todo:
            raw = found.get(oid)
            if raw is None:
                raise CorruptStore(f"{src.uri}: object {oid.hex()} vanished during the copy")
            if hashlib.new("sha1" if len(oid) == 20 else "sha256", raw).digest() != oid:
                raise CorruptStore(f"{src.uri}: object {oid.hex()} does not hash to its id; "
                                   "run `irmin fsck` on the source")
        dst.put_many([(o, found[o]) for o in todo])
        stats.copied += len(todo)
    return limit is None or stats.copied < limit


def _set_refs(dst: Backend, refs: dict[str, bytes], stats: CopyStats) -> None:
    for name, oid in sorted(refs.items()):
        while True:
            have = dst.get_ref(name)
            if have == oid or dst.cas_ref(name, have, oid):
                break
        stats.refs += 1


def copy(src: Backend | Repo | str, dst: Backend | Repo | str, *, batch: int = 1000,
         progress: bool | None = None, limit: int | None = None) -> CopyStats:
    """Copy every object and ref of ``src`` into ``dst`` (URIs, backends or
    repos). ``limit`` stops after writing that many objects, before any ref
    (for tests of resumption and for copying in slices)."""
    s, close_s = _open(src)
    d, close_d = _open(dst)
    stats = CopyStats()
    try:
        refs = s.list_refs()  # read first: every object they name is in iter_ids
        ids = list(s.iter_ids())
        stats.objects = len(ids)
        with bar(progress, "copy", total=len(ids)) as pb:
            for chunk in _chunks(ids, batch):
                more = _send(s, d, chunk, stats, limit)
                pb.update(len(chunk))
                if not more:
                    d.flush()
                    return stats
        d.flush()
        _set_refs(d, refs, stats)
        d.flush()
        stats.complete = True
        return stats
    finally:
        if close_s:
            s.close()
        if close_d:
            d.close()


def _tree_objects(repo: Repo, root: bytes) -> Iterator[bytes]:
    """Every object id under the tree ``root`` (itself included), each once."""
    seen = {root}
    stack = [root]
    fmt = repo.fmt
    yield root
    while stack:
        tid = stack.pop()
        _kind, body = repo.read_object(tid)
        for mode, _name, child in fmt.parse_tree(body):
            if child in seen or not (mode is MODE_TREE or mode in BLOB_MODES):
                continue
            seen.add(child)
            yield child
            if mode is MODE_TREE:
                stack.append(child)


def snapshot(src: Repo, rev: str | bytes | Commit = DEFAULT_BRANCH, dst: Backend | Repo | str = "",
             *, branch: str | None = None, batch: int = 1000,
             progress: bool | None = None) -> CopyStats:
    """Write the tree of ``rev`` into ``dst`` as a single parentless commit on
    ``branch`` (default: the branch ``rev`` names, else ``main``)."""
    commit = src.resolve(rev)
    if branch is None:
        name = rev[len(BRANCH_PREFIX):] if isinstance(rev, str) and rev.startswith(BRANCH_PREFIX) else rev
        branch = name if isinstance(name, str) and name in src.branches() else DEFAULT_BRANCH
    ref = src.ref_name(branch)
    d, close_d = _open(dst)
    stats = CopyStats()
    try:
        s = src.backend
        with bar(progress, "snapshot") as pb:
            for chunk in _chunks(_tree_objects(src, commit.tree_id), batch):
                stats.objects += len(chunk)
                _send(s, d, chunk, stats, None)
                pb.update(len(chunk))
        data = commit.data
        oid, raw = src.fmt.canonical(b"commit", src.fmt.encode_commit(CommitData(
            data.tree, (), data.author, data.committer, data.message,
            tuple(kv for kv in data.extra if kv[0] != b"gpgsig"))))  # a signature would not match
        while True:
            have = d.get_ref(ref)
            if have == oid or d.apply([(oid, raw)], [RefUpdate(ref, have, oid)]):
                break
        d.flush()
        stats.objects += 1
        stats.refs = 1
        stats.commit = oid.hex()
        stats.complete = True
        return stats
    finally:
        if close_d:
            d.close()
