"""The repository: objects and branches of one store, over one backend.

A :class:`Repo` reads and writes git objects through a backend, keeps the
bounded caches that make lazy trees fast (parsed tree nodes, commits), and
moves branches only by compare-and-set. Branch-bound reads and writes live in
:class:`irmin.store.Store`; merges in :mod:`irmin.merge`; history walks in
:mod:`irmin.history`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from irmin.backends.base import Backend, RefUpdate, check_ref_name
from irmin.backends.registry import open_backend

from .commit import Commit, Info
from .contents import BYTES, Contents
from .errors import BranchNotFound, MalformedObject, MissingObject, NotFoundError
from .objects import SHA1, CommitData, ObjectFormat
from .tree import Tree

if TYPE_CHECKING:
    from .store import Store
    from .watch import WatchHub

BRANCH_PREFIX = "refs/heads/"
DEFAULT_BRANCH = "main"


class _NodeCache:
    """LRU of loaded tree nodes (immutable, so shared by every reader),
    bounded by the number of entries held (a node of 1,000 entries weighs
    1,000), so memory stays bounded whatever the shape of the tree.

    A commit that exports a new version of a node demotes the version it
    replaced (see ``Tree._origin``) to the cold end: on a branch being
    written, superseded versions would otherwise crowd out the nodes the
    next commits need. (Not dropped: identical subtrees share one id, so the
    replaced version may still stand elsewhere in the tree.)"""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.size = 0
        self._d: OrderedDict[bytes, Tree] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, oid: bytes) -> Tree | None:
        # Lock-free on the read path: OrderedDict's C methods are atomic under
        # the GIL; a concurrent eviction only makes move_to_end miss.
        v = self._d.get(oid)
        if v is not None:
            try:
                self._d.move_to_end(oid)
            except KeyError:
                pass
        return v

    def put(self, oid: bytes, tree: Tree) -> None:
        d = self._d
        if oid in d:
            return
        with self._lock:
            if oid in d:
                return
            d[oid] = tree
            size = self.size + _weight(tree)
            while size > self.max_entries and len(d) > 1:
                size -= _weight(d.popitem(last=False)[1])
            self.size = size

    def replace(self, old: bytes, oid: bytes, tree: Tree) -> None:
        """:meth:`demote` ``old`` and :meth:`put` its new version ``tree``."""
        self.demote(old)
        self.put(oid, tree)

    def demote(self, oid: bytes) -> None:
        """Make ``oid`` the first to go when room is needed."""
        try:
            self._d.move_to_end(oid, last=False)
        except KeyError:
            pass

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self.size = 0


def _weight(tree: Tree) -> int:
    shape = tree._shape
    return 1 + (len(shape.names) if shape is not None else 0)


class _BlobCache:
    """Small-blob LRU by total bytes: warm point reads then cost a dict hit
    instead of a backend read and a header parse."""

    def __init__(self, max_bytes: int, max_blob: int = 4096) -> None:
        self.max_bytes = max_bytes
        self.max_blob = max_blob
        self.size = 0
        self._d: OrderedDict[bytes, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, oid: bytes) -> bytes | None:
        return self._d.get(oid)

    def put(self, oid: bytes, data: bytes) -> None:
        if len(data) > self.max_blob or self.max_bytes <= 0:
            return
        with self._lock:
            if oid in self._d:
                return
            self._d[oid] = data
            self.size += len(data) + 80
            while self.size > self.max_bytes and self._d:
                _, old = self._d.popitem(last=False)
                self.size -= len(old) + 80


class Carry:
    """Objects exported by the failed attempts of one write.

    Exporting a tree marks its nodes clean (referred to by id), so a retry
    that reuses them does not export them again: they travel with the retry,
    and until the write ends they are readable through the repository even
    though no backend holds them yet. Use as ``with Carry(repo) as carry``.
    """

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self.objects: list[tuple[bytes, bytes]] = []
        self._ids: set[bytes] = set()

    def plus(self, objects: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """This attempt's objects and everything carried so far."""
        return self.objects + objects if self.objects else objects

    def add(self, objects: Iterable[tuple[bytes, bytes]]) -> None:
        held = self.repo._held
        with self.repo._held_lock:
            for oid, raw in objects:
                if oid not in self._ids:
                    self._ids.add(oid)
                    self.objects.append((oid, raw))
                    entry = held.get(oid)
                    held[oid] = (raw, entry[1] + 1 if entry else 1)

    def __enter__(self) -> Carry:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if not self.objects:
            return  # the first attempt succeeded: nothing was carried
        if exc_type is not None:
            # The write gave up (a conflict, a failed test): trees it exported
            # stay marked clean in the caller's hands, so what they refer to
            # must exist. Storing it costs space until gc, never correctness.
            self.repo.backend.put_many(self.objects)
        held = self.repo._held
        with self.repo._held_lock:
            for oid in self._ids:
                raw, n = held[oid]
                if n > 1:
                    held[oid] = (raw, n - 1)
                else:
                    del held[oid]


class Repo:
    """A store: objects and branches over one backend.

    ``contents`` is the codec for values (bytes by default; see
    :mod:`irmin.contents`), used by branch stores and merges.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        contents: Contents = BYTES,
        fmt: ObjectFormat = SHA1,
        cache_entries: int = 200_000,
        blob_cache_bytes: int = 16 << 20,
    ) -> None:
        self.backend = backend
        self.fmt = fmt
        self.contents = contents
        self._nodes = _NodeCache(cache_entries)
        self._blobs = _BlobCache(blob_cache_bytes)
        self._commits: OrderedDict[bytes, Commit] = OrderedDict()
        self._commits_lock = threading.Lock()
        self._hub: WatchHub | None = None
        self._hub_lock = threading.Lock()
        #: Objects read from the backend (tests use it to prove laziness).
        self.reads = 0
        #: Objects carried by writes in flight (see :class:`Carry`): id -> (raw, holders).
        self._held: dict[bytes, tuple[bytes, int]] = {}
        self._held_lock = threading.Lock()

    @classmethod
    def open(cls, uri: str, **kwargs: object) -> Repo:
        """Open the store a URI names (``memory:``, ``lmdb:PATH``...)."""
        return cls(open_backend(uri), **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        if self._hub is not None:
            self._hub.close()
        self.backend.close()

    def __enter__(self) -> Repo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Repo {self.backend.uri}>"

    # -- raw objects ------------------------------------------------------------

    def read_raw(self, oid: bytes) -> bytes:
        """The canonical bytes of an object; :class:`MissingObject` if absent."""
        self.reads += 1
        raw = self.backend.get(oid)
        if raw is None:
            held = self._held.get(oid)
            raw = held[0] if held is not None else self._fetch_missing(oid)
        return raw

    def _fetch_missing(self, oid: bytes) -> bytes:
        """Hook for lazy stores (sync fills it); by default the object is missing."""
        raise MissingObject(oid)

    def read_object(self, oid: bytes) -> tuple[bytes, bytes]:
        """``(kind, body)`` of an object, header checked."""
        return self.fmt.split(self.read_raw(oid))

    def _read_blob(self, oid: bytes) -> bytes:
        body = self._blobs.get(oid)
        if body is not None:
            return body
        kind, body = self.read_object(oid)
        if kind != b"blob":
            raise MalformedObject(f"{oid.hex()} is a {kind.decode()}, not a blob")
        self._blobs.put(oid, body)
        return body

    def _read_tree(self, oid: bytes) -> tuple[bytes, bytes]:
        """``(raw, body)`` of a tree object, header checked."""
        raw = self.read_raw(oid)
        kind, body = self.fmt.split(raw)
        if kind != b"tree":
            raise MalformedObject(f"{oid.hex()} is a {kind.decode()}, not a tree")
        return raw, body

    def write_objects(self, objects: Iterable[tuple[bytes, bytes]]) -> None:
        self.backend.put_many(objects)

    # -- trees and commits ------------------------------------------------------

    def empty_tree(self) -> Tree:
        return Tree(self)

    def tree(self, oid: bytes | str) -> Tree:
        """The tree with this id (lazy: nothing is read until it is used)."""
        if isinstance(oid, str):
            oid = self.fmt.parse_id(oid)
        hit = self._nodes.get(oid)
        return hit if hit is not None else Tree(self, oid)

    def commit(self, oid: bytes | str) -> Commit:
        """The commit with this id (read once, then cached)."""
        if isinstance(oid, str):
            oid = self.fmt.parse_id(oid)
        c = self._commits.get(oid)
        if c is not None:
            return c
        kind, body = self.read_object(oid)
        if kind != b"commit":
            raise MalformedObject(f"{oid.hex()} is a {kind.decode()}, not a commit")
        return self._remember(Commit(self, oid, self.fmt.parse_commit(body)))

    def _remember(self, c: Commit) -> Commit:
        commits = self._commits
        commits[c.oid] = c  # atomic under the GIL; only eviction needs the lock
        if len(commits) > 65536:
            with self._commits_lock:
                while len(commits) > 65536:
                    commits.popitem(last=False)
        return c

    def prepare_commit(
        self, tree: Tree, parents: Iterable[Commit | bytes], info: Info | None = None,
        objects: list[tuple[bytes, bytes]] | None = None,
    ) -> tuple[Commit, list[tuple[bytes, bytes]]]:
        """The commit of ``tree`` and every new object to write for it
        (appended to ``objects``: those of ``tree`` already exported)."""
        info = info or Info()
        if objects is None:
            objects = []
        tree_id = tree._export(objects)
        if tree._shape is not None and not tree._shape.names and tree_id == self.fmt.empty_tree_id:
            objects.append(self.fmt.canonical(b"tree", b""))
        who = info.person()
        data = CommitData(
            tree_id,
            tuple([p.oid if type(p) is Commit else p for p in parents]),
            who,
            who,
            info.message,
        )
        oid, raw = self.fmt.canonical(b"commit", self.fmt.encode_commit(data))
        objects.append((oid, raw))
        return self._remember(Commit(self, oid, data)), objects

    def write_commit(
        self, tree: Tree, parents: Iterable[Commit | bytes], info: Info | None = None
    ) -> Commit:
        """Write a commit (and its new objects) without moving any branch."""
        c, objects = self.prepare_commit(tree, parents, info)
        self.backend.apply(objects)
        return c

    # -- branches -----------------------------------------------------------------

    @staticmethod
    def ref_name(branch: str) -> str:
        return check_ref_name(BRANCH_PREFIX + branch)

    def branches(self) -> list[str]:
        n = len(BRANCH_PREFIX)
        return sorted(name[n:] for name in self.backend.list_refs(BRANCH_PREFIX))

    def head_id(self, branch: str) -> bytes | None:
        return self.backend.get_ref(self.ref_name(branch))

    def head(self, branch: str) -> Commit | None:
        oid = self.head_id(branch)
        return None if oid is None else self.commit(oid)

    def set_head(
        self,
        branch: str,
        commit: Commit | bytes | None,
        expected: Commit | bytes | None,
        objects: Iterable[tuple[bytes, bytes]] = (),
    ) -> bool:
        """Compare-and-set a branch head (with ``objects`` written first, in
        the same atomic batch). ``None`` means absent. False if the head was
        not ``expected``."""
        new = commit.oid if isinstance(commit, Commit) else commit
        old = expected.oid if isinstance(expected, Commit) else expected
        return self.backend.apply(objects, (RefUpdate(self.ref_name(branch), old, new),))

    def branch(self, name: str = DEFAULT_BRANCH) -> Store:
        """A store bound to branch ``name`` (it need not exist yet)."""
        from .store import Store

        self.ref_name(name)
        return Store(self, name)

    def main(self) -> Store:
        return self.branch(DEFAULT_BRANCH)

    def checkout(self, commit: Commit | bytes | str) -> Store:
        """A detached store on ``commit``: reads work, writes move only the
        detached head (use :meth:`Store.create_branch` to keep them)."""
        from .store import Store

        return Store(self, None, self.resolve(commit))

    def resolve(self, rev: Commit | bytes | str) -> Commit:
        """A commit from a Commit, a raw id, a hex id (or unique prefix of at
        least 4 digits) or a branch name."""
        if isinstance(rev, Commit):
            return rev
        if isinstance(rev, bytes):
            return self.commit(rev)
        if rev.startswith(BRANCH_PREFIX):
            rev = rev[len(BRANCH_PREFIX):]
        if rev in self.branches():
            head = self.head(rev)
            if head is None:
                raise BranchNotFound(f"branch {rev!r} has no commits")
            return head
        text = rev.lower()
        if len(text) == 2 * self.fmt.id_len and all(c in "0123456789abcdef" for c in text):
            return self.commit(text)
        if 4 <= len(text) < 2 * self.fmt.id_len and all(c in "0123456789abcdef" for c in text):
            matches = [o for o in self.backend.iter_ids() if o.hex().startswith(text)]
            commits = []
            for o in matches:
                try:
                    commits.append(self.commit(o))
                except MalformedObject:
                    continue
            if len(commits) == 1:
                return commits[0]
            if len(commits) > 1:
                raise NotFoundError(f"commit prefix {rev!r} is ambiguous")
        raise NotFoundError(f"no branch or commit {rev!r}")

    def create_branch(self, name: str, start: Commit | bytes | str | None = None) -> Store:
        """Create branch ``name`` at ``start`` (a commit, id or branch; None:
        an empty branch, made on first write). Error if it exists."""
        ref = self.ref_name(name)
        if start is not None:
            c = self.resolve(start)
            if not self.backend.cas_ref(ref, None, c.oid):
                raise ValueError(f"branch {name!r} already exists")
        elif self.backend.get_ref(ref) is not None:
            raise ValueError(f"branch {name!r} already exists")
        return self.branch(name)

    def delete_branch(self, name: str) -> None:
        if not self.backend.delete_ref(self.ref_name(name)):
            raise BranchNotFound(f"no branch {name!r}")

    # -- watches ------------------------------------------------------------------

    def _watch_hub(self) -> WatchHub:
        with self._hub_lock:
            if self._hub is None:
                from .watch import WatchHub

                self._hub = WatchHub(self)
            return self._hub
