"""Transactions: a snapshot to read and write, committed atomically.

A transaction reads the head's tree once (an O(1) snapshot, since trees are
immutable) and sees its own writes. At the end, if the branch has not moved,
it commits on top of its snapshot; otherwise it three-way merges its tree
with the new head over the snapshot and commits that, or raises
:class:`ConflictError` naming each conflicting path and its three versions.
A ``strict`` transaction also fails when something it *read* changed
meanwhile (serializable isolation, which Xenstore's EAGAIN needs). Even
without ``strict``, a transaction that read an opaque value (bytes, str) and
wrote that path fails if the value changed meanwhile: two read-modify-write
transactions writing the same result must not both win (a lost update).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .commit import Commit, Info
from .errors import Conflict, ConflictError
from .merge import merge_trees
from .path import Path, PathLike, parse
from .repo import Carry
from .tree import Kind, Tree

if TYPE_CHECKING:
    from .store import Store


class Transaction:
    """Use as a context manager: ``with store.transaction() as tx: ...``."""

    def __init__(self, store: Store, info: Info, *, strict: bool = False) -> None:
        self.store = store
        self.repo = store.repo
        self.info = info
        self.strict = strict
        self.base_id = store.head_id()
        self.base: Commit | None = None if self.base_id is None else self.repo.commit(self.base_id)
        self.base_tree = self.base.tree if self.base is not None else Tree(self.repo)
        self.tree = self.base_tree
        self.reads: set[Path] = set()
        self.writes: set[Path] = set()
        self.commit_result: Commit | None = None
        self._done = False

    # -- reads (recorded when strict) -------------------------------------------

    def _read(self, steps: Path) -> None:
        self.reads.add(steps)

    def get(self, path: PathLike) -> Any:
        steps = parse(path)
        self._read(steps)
        return self.store._contents(steps).decode(self.tree.get(steps))

    def find(self, path: PathLike, default: Any = None) -> Any:
        steps = parse(path)
        self._read(steps)
        raw = self.tree.find(steps)
        return default if raw is None else self.store._contents(steps).decode(raw)

    def mem(self, path: PathLike) -> bool:
        steps = parse(path)
        self._read(steps)
        return self.tree.mem(steps)

    def kind(self, path: PathLike) -> Kind | None:
        steps = parse(path)
        self._read(steps)
        return self.tree.kind(steps)

    def list(self, path: PathLike = (), offset: int = 0, length: int | None = None) -> list[tuple[str, Kind]]:
        steps = parse(path)
        self._read(steps)
        return self.tree.list(steps, offset, length)

    def find_tree(self, path: PathLike) -> Tree | None:
        steps = parse(path)
        self._read(steps)
        return self.tree.find_tree(steps)

    # -- writes -------------------------------------------------------------------

    def set(self, path: PathLike, value: Any) -> None:
        steps = parse(path)
        self.writes.add(steps)
        self.tree = self.tree.set(steps, self.store._contents(steps).encode(value))

    def remove(self, path: PathLike) -> None:
        steps = parse(path)
        self.writes.add(steps)
        self.tree = self.tree.remove(steps)

    def set_tree(self, path: PathLike, tree: Tree) -> None:
        self.tree = self.tree.set_tree(parse(path), tree)

    # -- end ----------------------------------------------------------------------

    def _check_reads(self, current: Tree, paths: set[Path]) -> None:
        from .store import _id_at

        stale = [p for p in sorted(paths)
                 if _id_at(self.base_tree, p) != _id_at(current, p)]
        if stale:
            raise ConflictError([
                Conflict(p, self.base_tree.find(p), self.tree.find(p), current.find(p),
                         "read by the transaction and changed since")
                for p in stale
            ])

    def commit(self) -> Commit | None:
        """Commit now; returns the new head commit (``None``: nothing to do)."""
        if self._done:
            raise RuntimeError("transaction already ended")
        self._done = True
        if self.tree is self.base_tree:
            return None
        with Carry(self.repo) as carry:  # see Store.update_tree
            while True:
                head_id = self.store.head_id()
                if head_id == self.base_id:
                    tree, parent = self.tree, self.base
                else:
                    parent = self.repo.commit(head_id) if head_id is not None else None
                    current = parent.tree if parent is not None else Tree(self.repo)
                    if self.strict:
                        self._check_reads(current, self.reads)
                    else:
                        rmw = {p for p in self.reads & self.writes
                               if getattr(self.store._contents(p), "opaque", False)}
                        if rmw:
                            self._check_reads(current, rmw)
                    tree = merge_trees(self.repo, self.base_tree, self.tree, current)
                commit, objects = self.repo.prepare_commit(tree, [parent] if parent else [], self.info)
                if parent is not None and commit.tree_id == parent.tree_id:
                    return None
                objects = carry.plus(objects)
                if self.store._move(commit, head_id, objects):
                    self.commit_result = commit
                    return commit
                carry.add(objects)

    def abort(self) -> None:
        self._done = True

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._done:
            return
        if exc_type is not None:
            self.abort()
        else:
            self.commit()
