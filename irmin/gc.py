"""``irmin gc``: delete what no ref reaches, while others keep working.

Mark and sweep, made safe for concurrent readers and writers:

1. **Snapshot** the stored ids (``iter_ids``). Only ids in this snapshot can
   ever be deleted, so an object written by a commit that lands while gc runs
   is never a candidate.
2. **Mark** from every ref (all of ``refs/``: branches, tags, the boundary
   list): commits, their trees, every subtree and blob. Only commits, trees
   and tags are read; blobs are marked by id. With ``keep_last=N`` only the
   newest N commits reachable from each ref (newest first by committer date,
   all parents, as ``irmin log`` shows them) are kept; see "window" below.
3. **Sweep** under ``backend.exclusive(fn)``, one batch of the unmarked
   snapshot ids at a time: while ``fn`` runs no writer of the store can
   commit (LMDB: one write transaction; block: the writer lock and its
   ``flock``; memory: its lock; git: a gate for this process's writers).
   Inside, gc reads the refs again, marks from every ref that moved since
   it last looked -- only the new commits and trees: the walk stops at ids
   already marked -- and deletes what of the batch is still unmarked.
   Writers wait only for that (``GcStats.pause``). This covers the one
   subtle case: a writer re-creating an object identical to a garbage one
   (same content, same id), which ``put``'s idempotence would otherwise let
   gc delete under it -- its commit lands either before the lock (the
   re-mark sees it) or after the delete (its ``put`` stores the object
   again). Backends without ``exclusive`` get the older scheme: batches
   deleted with ``remove_many_if_refs_unchanged(oids, token)``, re-mark and
   retry when a ref moved, bounded.
4. **Compact** (``block:``): deletes there are tombstones, and the space
   comes back when the backend's ``compact()`` rewrites the live log. On
   ``git:`` loose objects are unlinked; objects inside pack files cannot be
   deleted one by one and are counted in ``GcStats.packed_kept``.

Window (``keep_last``): cutting history leaves the oldest kept commits naming
parents that are gone. Their ids are recorded as the *boundary*
(:mod:`irmin.boundary`, ref ``refs/irmin/gc-boundary``) before anything is
deleted, so fsck knows these absences are intended and everything else
missing is still reported. A later gc (windowed or not) does not walk past
the boundary.

gc never deletes anything if the mark finds a reachable object missing: it
raises :class:`MissingObject` (run ``irmin fsck``).
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from irmin.backends.base import Backend

from .boundary import BOUNDARY_REF, boundary_update, read_boundary
from .commit import Commit
from .errors import MalformedObject, MissingObject, StoreError
from .objects import BLOB_MODES, MODE_TREE
from .progress import bar

if TYPE_CHECKING:
    from .repo import Repo

__all__ = ["GcStats", "gc", "store_usage"]


@dataclass
class GcStats:
    scanned: int = 0  # ids in the pre-mark snapshot
    live: int = 0  # ids marked reachable
    removed: int = 0  # ids deleted (dry run: that would be)
    kept_commits: int = 0
    boundary: int = 0  # commits on the history boundary after this gc
    remarks: int = 0  # times the sweep re-marked because refs moved
    pause: float = 0.0  # seconds writers were held off (all locked sweep steps)
    pause_max: float = 0.0  # the longest single locked step
    packed_kept: int = 0  # git: unreachable objects inside packs (not deleted)
    compacted: bool = False
    bytes_before: int = 0  # block: live log bytes before/after compaction
    bytes_after: int = 0
    dry_run: bool = False
    seconds: float = 0.0

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        s = (f"{verb} {self.removed} of {self.scanned} objects ({self.live} live, "
             f"{self.kept_commits} commits kept")
        if self.boundary:
            s += f", {self.boundary} boundary commits"
        s += f") in {self.seconds:.2f}s"
        if self.remarks:
            s += f"; re-marked {self.remarks}x for concurrent commits"
        if self.packed_kept:
            s += f"; {self.packed_kept} unreachable objects are in git packs (run git repack -a -d)"
        if self.compacted:
            s += f"; compacted {self.bytes_before} -> {self.bytes_after} bytes"
        return s


class _Marker:
    """Mark state shared by the first mark and the re-marks of the sweep."""

    def __init__(self, repo: Repo, keep_last: int | None, boundary: set[bytes],
                 pb: Any) -> None:
        self.repo = repo
        self.fmt = repo.fmt
        self.keep_last = keep_last
        self.old_boundary = boundary
        self.marked: set[bytes] = set()
        self.kept: set[bytes] = set()  # commits kept
        self.kept_log: list[bytes] = []  # the same, in the order they were kept
        self.pb = pb
        #: where objects are read: the backend, or the view of
        #: ``backend.exclusive`` during the locked re-mark
        self.src: Any = repo.backend

    def _read(self, oid: bytes) -> tuple[bytes, bytes]:
        raw = self.src.get(oid)
        if raw is None:
            raise MissingObject(oid, f"object {oid.hex()} is reachable but missing; "
                                     "gc refuses to run (see `irmin fsck`)")
        return self.fmt.split(raw)

    def _commit(self, oid: bytes) -> Commit:
        c = self.repo._commits.get(oid)
        if c is not None:
            return c
        kind, body = self._read(oid)
        if kind != b"commit":
            raise MalformedObject(f"{oid.hex()} is a {kind.decode()}, not a commit")
        return Commit(self.repo, oid, self.fmt.parse_commit(body))

    def _mark(self, oid: bytes) -> bool:
        if oid in self.marked:
            return False
        self.marked.add(oid)
        self.pb.update(1)
        return True

    def root(self, oid: bytes) -> None:
        """Mark what the ref value ``oid`` keeps alive."""
        if oid in self.marked:
            return
        kind, body = self._read(oid)
        if kind == b"commit":
            self._commits(oid)
        elif kind == b"tree":
            self._trees([oid])
        elif kind == b"tag":
            self._mark(oid)
            target = None
            for line in body.split(b"\n"):
                if line.startswith(b"object "):
                    target = self.fmt.parse_id(line[7:])
                    break
            if target is not None:
                self.root(target)
        else:
            self._mark(oid)

    def _commits(self, head: bytes) -> None:
        """Keep the commits of one ref (all, or its newest ``keep_last``)."""
        limit = self.keep_last
        counter = itertools.count()
        seen = {head}
        c = self._commit(head)
        heap = [(-c.date, next(counter), c)]
        n = 0
        new_commits = []
        while heap and (limit is None or n < limit):
            _, _, c = heapq.heappop(heap)
            n += 1
            if c.oid not in self.kept:
                self.kept.add(c.oid)
                self.kept_log.append(c.oid)
                new_commits.append(c)
            elif limit is None:
                continue  # its ancestry was walked when it was first kept
            if c.oid in self.old_boundary:
                continue
            for pid in c.parent_ids:
                if pid not in seen:
                    seen.add(pid)
                    try:
                        p = self._commit(pid)
                    except MissingObject:
                        raise MissingObject(pid, f"commit {pid.hex()} (parent of {c.id}) is "
                                                 "missing; gc refuses to run (see `irmin fsck`)") from None
                    heapq.heappush(heap, (-p.date, next(counter), p))
        for c in new_commits:
            self._mark(c.oid)
        self._trees([c.tree_id for c in new_commits])

    def _trees(self, roots: list[bytes]) -> None:
        stack = [t for t in roots if self._mark(t)]
        fmt = self.fmt
        get_many = self.src.get_many
        while stack:
            chunk, stack = stack[-256:], stack[:-256]
            found = get_many(chunk)
            for tid in chunk:
                raw = found.get(tid)
                if raw is None:
                    raise MissingObject(tid, f"tree {tid.hex()} is reachable but missing; "
                                             "gc refuses to run (see `irmin fsck`)")
                kind, body = fmt.split(raw)
                if kind != b"tree":
                    raise MalformedObject(f"{tid.hex()} is a {kind.decode()}, expected a tree")
                for mode, _name, child in fmt.parse_tree(body):
                    if mode is MODE_TREE:
                        if self._mark(child):
                            stack.append(child)
                    elif mode in BLOB_MODES:
                        self._mark(child)

    def boundary(self) -> set[bytes]:
        """Kept commits with a parent that is not kept (their parents go)."""
        out = set()
        for oid in self.kept:
            c = self.repo.commit(oid)
            if oid in self.old_boundary or any(p not in self.kept for p in c.parent_ids):
                out.add(oid)
        return out


def _remove(backend: Any, oids: list[bytes], token: object) -> int | None:
    atomic = getattr(backend, "remove_many_if_refs_unchanged", None)
    if atomic is not None:
        return atomic(oids, token)  # type: ignore[no-any-return]
    if backend.refs_token() != token:
        return None
    return backend.remove_many(oids)  # type: ignore[no-any-return]


def gc(repo: Repo, *, keep_last: int | None = None, dry_run: bool = False,
       progress: bool | None = None, batch: int = 2000, compact: bool = True,
       max_retries: int = 200) -> GcStats:
    """Delete every object no ref reaches (see the module docstring)."""
    if keep_last is not None and keep_last < 1:
        raise ValueError("keep_last must be at least 1")
    t0 = time.perf_counter()
    backend = repo.backend
    stats = GcStats(dry_run=dry_run)
    snapshot = list(backend.iter_ids())
    stats.scanned = len(snapshot)

    token = backend.refs_token()
    refs = backend.list_refs()
    old_blob, old_boundary = read_boundary(repo)
    with bar(progress, "gc mark", unit="obj") as pb:
        m = _Marker(repo, keep_last, old_boundary, pb)
        for name, oid in sorted(refs.items()):
            if name != BOUNDARY_REF:
                m.root(oid)
        new_boundary = m.boundary()

        def record_boundary(oids: set[bytes]) -> None:
            # Written before anything goes: fsck must see it first.
            nonlocal old_blob
            while True:
                objs, upd, blob = boundary_update(repo, old_blob, oids)
                if upd is None or backend.apply(objs, [upd]):
                    break
                old_blob, _ = read_boundary(repo)  # another gc moved it
            old_blob = blob
            if blob is not None:
                m.marked.add(blob)

        if not dry_run:
            record_boundary(new_boundary)
        elif old_blob is not None:
            m.marked.add(old_blob)

        def remark() -> tuple[object, dict[str, bytes]]:
            """Mark from every ref that moved; the token is read before the
            refs, so it covers exactly what was marked (a later change makes
            the next conditional delete fail). A few passes, so that the
            last one is short and the next delete likely to succeed, but
            bounded: with writers committing without pause, every pass finds
            a moved ref."""
            nonlocal new_boundary, refs
            for _pass in range(3):
                tok = backend.refs_token()
                now = backend.list_refs()
                moved = [(n, o) for n, o in sorted(now.items()) if refs.get(n) != o]
                if not moved:
                    break
                for name, oid in moved:
                    if name == BOUNDARY_REF:
                        m.marked.add(oid)
                    else:
                        m.root(oid)
                refs = now
                if keep_last is not None:  # a ref moved to a new window may cut more
                    nb = m.boundary()
                    if nb != new_boundary:
                        new_boundary = nb
                        record_boundary(nb)
            return tok, now

        if not dry_run:
            token, refs = remark()
    stats.live = len(m.marked)
    stats.kept_commits = len(m.kept)
    stats.boundary = len(new_boundary)

    dead = [o for o in snapshot if o not in m.marked]
    if dry_run:
        stats.removed = len(dead)
        stats.seconds = time.perf_counter() - t0
        return stats

    def rerecord() -> None:
        nonlocal new_boundary
        nb = m.boundary()
        if nb != new_boundary:
            new_boundary = nb
            record_boundary(nb)

    if _has_exclusive(backend):
        with bar(progress, "gc sweep", total=len(dead)) as pb:
            stats.removed = _sweep_exclusive(backend, m, dead, dict(refs), old_boundary,
                                             lambda: new_boundary, rerecord, stats, batch)
            pb.update(len(dead))
    else:
        _sweep_retrying(backend, m, dead, token, remark, stats, progress, batch, max_retries)
    stats.live = len(m.marked)
    stats.kept_commits = len(m.kept)
    stats.boundary = len(new_boundary)

    if hasattr(backend, "_packed_refs"):  # git: count what packs still hold
        stats.packed_kept = _git_packed_dead(backend, [o for o in dead if o not in m.marked])
    compactor = getattr(backend, "compact", None)
    if compact and compactor is not None and stats.removed:
        cs = compactor()
        stats.compacted = True
        stats.bytes_before = getattr(cs, "used_before", 0)
        stats.bytes_after = getattr(cs, "used_after", 0)
    stats.seconds = time.perf_counter() - t0
    return stats


def _has_exclusive(backend: Any) -> bool:
    ex = getattr(type(backend), "exclusive", None)
    return ex is not None and ex is not Backend.exclusive


def _sweep_exclusive(backend: Any, m: _Marker, dead: list[bytes], refs: dict[str, bytes],
                     old_boundary: set[bytes], current_boundary: Any, record_boundary: Any,
                     stats: GcStats, batch: int, attempts: int = 5) -> int:
    """Delete ``dead`` in batches, each under its own ``backend.exclusive``:
    read the refs again there, mark from every ref that moved since ``refs``
    (only the new commits and trees: the walk stops at what is marked
    already), and delete what of the batch is still unmarked, all before any
    writer may commit again. Writers commit between batches, so each pause
    stays short however much garbage there is.

    Under the lock a moved ref keeps its whole new history down to what is
    already kept (no window), so the boundary recorded before stays right,
    except when a ref moved onto a commit of the old boundary that this gc
    was cutting: then the boundary is recorded again outside the lock and
    the locked step is retried."""
    removed = 0
    for i in range(0, len(dead), batch):
        chunk = dead[i:i + batch]
        removed += _locked_delete(backend, m, chunk, refs, old_boundary, current_boundary,
                                  record_boundary, stats, attempts)
    return removed


def _locked_delete(backend: Any, m: _Marker, dead: list[bytes], refs: dict[str, bytes],
                   old_boundary: set[bytes], current_boundary: Any, record_boundary: Any,
                   stats: GcStats, attempts: int) -> int:
    """One batch of :func:`_sweep_exclusive` (``refs`` is updated in place)."""
    for _attempt in range(attempts):
        k0 = len(m.kept_log)

        def locked(view: Any) -> tuple[int | None, dict[str, bytes]]:
            t = time.perf_counter()
            m.src, limit, m.keep_last = view, m.keep_last, None
            try:
                now = view.list_refs()
                for name, oid in sorted(now.items()):
                    if refs.get(name) == oid:
                        continue
                    if name == BOUNDARY_REF:
                        m.marked.add(oid)
                    else:
                        m.root(oid)
                recorded = current_boundary()
                if any(c in old_boundary and c not in recorded for c in m.kept_log[k0:]):
                    return None, now
                return view.remove_many([o for o in dead if o not in m.marked]), now
            finally:
                m.src, m.keep_last = backend, limit
                dt = time.perf_counter() - t
                stats.pause += dt
                stats.pause_max = max(stats.pause_max, dt)

        n, now = backend.exclusive(locked)
        if refs != now:
            stats.remarks += 1
            refs.clear()
            refs.update(now)
        if n is not None:
            return n
        record_boundary()
    raise StoreError(f"gc: refs kept moving onto cut history during {attempts} attempts; "
                     "nothing live was touched; run gc again")


def _sweep_retrying(backend: Any, m: _Marker, dead: list[bytes], token: object, remark: Any,
                    stats: GcStats, progress: bool | None, batch: int,
                    max_retries: int) -> None:
    """Backends without ``exclusive``: conditional deletes, re-marking and
    retrying whenever a ref moved (bounded)."""
    with bar(progress, "gc sweep", total=len(dead)) as pb:
        i = failures = 0
        while i < len(dead):
            chunk = [o for o in dead[i:i + batch] if o not in m.marked]
            n = _remove(backend, chunk, token) if chunk else 0
            if n is None:
                stats.remarks += 1
                failures += 1
                if failures > max_retries:
                    raise StoreError(
                        f"gc: refs changed before each of {max_retries} delete attempts "
                        f"(writers too busy); {stats.removed} objects removed so far, "
                        "nothing live was touched; run gc again")
                if failures > 8:  # let a burst of commits pass
                    time.sleep(random.uniform(0, 0.002 * min(failures, 50)))
                token, _refs = remark()
                continue
            failures = 0
            stats.removed += n
            pb.update(min(batch, len(dead) - i))
            i += batch


def _git_packed_dead(backend: Any, oids: list[bytes]) -> int:
    try:
        return sum(1 for o in oids if backend.has(o))
    except Exception:
        return 0


def store_usage(backend: Any) -> dict[str, int]:
    """What a store occupies, for tests and benchmarks: ``objects`` (count)
    and ``bytes`` (LMDB: pages in use by objects; block: live log bytes;
    git: loose object files; memory: object bytes)."""
    stats = getattr(backend, "stats", None)
    if callable(stats):  # lmdb
        st = stats()
        return {"objects": st["objects"], "bytes": st.get("object_bytes", 0)}
    if isinstance(stats, dict):  # block (a property)
        used = stats.get("log_used", stats["log_end"] - stats["log_start"])
        return {"objects": stats["objects"], "bytes": used}
    gitdir = getattr(backend, "gitdir", None)
    if gitdir is not None:
        import os

        total = count = 0
        for dirpath, _dirs, files in os.walk(os.path.join(gitdir, "objects")):
            for f in files:
                count += len(f) == 38
                total += os.path.getsize(os.path.join(dirpath, f))
        return {"objects": count, "bytes": total}
    ids = list(backend.iter_ids())
    return {"objects": len(ids), "bytes": sum(len(backend.get(o) or b"") for o in ids)}

