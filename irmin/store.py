"""A store bound to a branch (or a detached head): Irmin's ``Store.t``.

Reads go to the head commit's tree. Writes make a new tree version, commit it
with the current head as parent and move the branch by compare-and-set in
one atomic batch; if another writer moved the branch meanwhile, the write is
re-applied on top of the new head (a blind ``set`` wins on its own path, as
in a key-value store). Read-modify-write goes through :meth:`Store.transaction`
or :meth:`Store.test_and_set`, which merge or fail instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from irmin.backends.base import RefUpdate

from .commit import Commit, Info
from .contents import BYTES, Contents
from .errors import BranchNotFound, ConflictError, TestAndSetFailed
from .history import is_ancestor, lcas, walk
from .merge import merge_commits
from .path import Path, PathLike, parse
from .repo import Carry
from .tree import Kind, Tree

if TYPE_CHECKING:
    from .repo import Repo
    from .transaction import Transaction
    from .watch import Watch, WatchEvent


class Store:
    """Reads and writes on one branch of a :class:`~irmin.repo.Repo`.

    ``branch=None`` is a detached head: it starts at ``commit`` and writes
    move only this object's head.
    """

    def __init__(self, repo: Repo, branch: str | None, commit: Commit | None = None) -> None:
        self.repo = repo
        self.branch = branch
        self._detached = commit
        self._ref = repo.ref_name(branch) if branch is not None else None
        self._get_ref = repo.backend.get_ref

    def __repr__(self) -> str:
        where = self.branch if self.branch is not None else f"detached {self._detached}"
        return f"<Store {self.repo.backend.uri} {where}>"

    # -- head ---------------------------------------------------------------------

    @property
    def head(self) -> Commit | None:
        """The current head commit (``None`` for a branch with no commits)."""
        if self.branch is None:
            return self._detached
        return self.repo.head(self.branch)

    def head_id(self) -> bytes | None:
        if self._ref is None:
            return None if self._detached is None else self._detached.oid
        return self._get_ref(self._ref)

    def tree(self) -> Tree:
        """The tree at the head (empty when there is no head)."""
        oid = self.head_id()
        if oid is None:
            return Tree(self.repo)
        return self.repo.commit(oid).tree

    def _contents(self, path: Path) -> Contents:
        c = self.repo.contents
        for_path = getattr(c, "for_path", None)
        return for_path(path) if for_path is not None else c  # type: ignore[no-any-return]

    def _move(
        self, new: Commit, expected: bytes | None, objects: list[tuple[bytes, bytes]]
    ) -> bool:
        if self.branch is None:
            self.repo.backend.apply(objects)
            if (self._detached.oid if self._detached else None) != expected:
                return False
            self._detached = new
            return True
        return self.repo.backend.apply(objects, (RefUpdate(self._ref, expected, new.oid),))  # type: ignore[arg-type]

    # -- reads --------------------------------------------------------------------

    def get(self, path: PathLike) -> Any:
        """The value at ``path`` (decoded by the contents codec);
        :class:`NotFoundError` if there is none."""
        steps = parse(path)
        raw = self.tree()._get_steps(steps)
        c = self.repo.contents
        if c is BYTES:
            return raw
        return self._contents(steps).decode(raw)

    def find(self, path: PathLike, default: Any = None) -> Any:
        steps = parse(path)
        raw = self.tree().find(steps)
        return default if raw is None else self._contents(steps).decode(raw)

    def get_raw(self, path: PathLike) -> bytes:
        return self.tree().get(path)

    def mem(self, path: PathLike) -> bool:
        return self.tree().mem(path)

    def mem_tree(self, path: PathLike) -> bool:
        return self.tree().mem_tree(path)

    def kind(self, path: PathLike) -> Kind | None:
        return self.tree().kind(path)

    def list(self, path: PathLike = (), offset: int = 0, length: int | None = None) -> list[tuple[str, Kind]]:
        return self.tree().list(path, offset, length)

    def find_tree(self, path: PathLike) -> Tree | None:
        return self.tree().find_tree(path)

    def get_tree(self, path: PathLike) -> Tree:
        return self.tree().get_tree(path)

    # -- writes -------------------------------------------------------------------

    def update_tree(
        self,
        f: Callable[[Tree], Tree],
        info: Info | None = None,
        *,
        allow_empty: bool = False,
        retries: int | None = None,
    ) -> Commit | None:
        """Commit ``f(head tree)``, re-running ``f`` on the new head if another
        writer got in first. Returns the new commit (``None`` when nothing
        changed and ``allow_empty`` is false)."""
        return self._commit_edit(lambda t, _out: f(t), info, allow_empty, retries)

    def _commit_edit(
        self,
        edit: Callable[[Tree, list[tuple[bytes, bytes]]], Tree],
        info: Info | None,
        allow_empty: bool = False,
        retries: int | None = None,
    ) -> Commit | None:
        """:meth:`update_tree` for an ``edit`` that may write some of its new
        objects to the list it is given (a tree returned clean has them there)."""
        commit, lost = self._attempt(edit, info, allow_empty, self.head_id(), None)
        if lost is None:
            return commit  # the common case: no other writer got in first
        attempt = 0
        with Carry(self.repo) as carry:
            while lost is not None:
                carry.add(lost)
                attempt += 1
                if retries is not None and attempt > retries:
                    raise ConflictError([], f"branch {self.branch} kept moving; gave up after {retries} retries")
                commit, lost = self._attempt(edit, info, allow_empty, self.head_id(), carry)
            return commit

    def _attempt(
        self,
        edit: Callable[[Tree, list[tuple[bytes, bytes]]], Tree],
        info: Info | None,
        allow_empty: bool,
        head_id: bytes | None,
        carry: Carry | None,
    ) -> tuple[Commit | None, list[tuple[bytes, bytes]] | None]:
        """One try of :meth:`_commit_edit` on ``head_id``: ``(commit, None)``
        (commit None: nothing to commit), or ``(None, objects)`` when the head
        moved meanwhile, with the objects this try exported in vain (its trees
        are marked clean, so a retry must carry them: see :class:`Carry`)."""
        head = None if head_id is None else self.repo.commit(head_id)
        old = head.tree if head is not None else Tree(self.repo)
        objects: list[tuple[bytes, bytes]] = []
        new_tree = edit(old, objects)
        if not allow_empty and head is not None and new_tree is old:
            return None, None
        commit, objects = self.repo.prepare_commit(new_tree, [head] if head else [], info, objects)
        if not allow_empty and head is not None and commit.tree_id == head.tree_id:
            return None, None
        if carry is not None:
            objects = carry.plus(objects)
        if self._move(commit, head_id, objects):
            return commit, None
        return None, objects

    def set(self, path: PathLike, value: Any, message: str = "", *, author: str | None = None,
            info: Info | None = None) -> Commit | None:
        """Write ``value`` at ``path`` and commit."""
        steps = parse(path)
        raw = self._contents(steps).encode(value)
        if info is None:
            info = _info(None, message or f"set {'/'.join(steps)}", author)
        return self._commit_edit(lambda t, out: t._set_exported(steps, raw, out), info)

    def set_raw(self, path: PathLike, raw: bytes, message: str = "", *, author: str | None = None) -> Commit | None:
        steps = parse(path)
        info = _info(None, message or f"set {'/'.join(steps)}", author)
        return self._commit_edit(lambda t, out: t._set_exported(steps, raw, out), info)

    def remove(self, path: PathLike, message: str = "", *, author: str | None = None,
               info: Info | None = None) -> Commit | None:
        """Remove the contents or subtree at ``path`` and commit (no commit if
        nothing was there)."""
        steps = parse(path)
        return self.update_tree(lambda t: t.remove(steps), _info(info, message or f"remove {'/'.join(steps)}", author))

    def set_tree(self, path: PathLike, tree: Tree, message: str = "", *, author: str | None = None,
                 info: Info | None = None) -> Commit | None:
        steps = parse(path)
        return self.update_tree(lambda t: t.set_tree(steps, tree), _info(info, message or f"set tree {'/'.join(steps)}", author))

    def test_and_set(self, path: PathLike, test: Any, set: Any, message: str = "", *,
                     author: str | None = None) -> Commit | None:
        """Set ``path`` to ``set`` only if it holds ``test`` now (``None``:
        absent; ``set=None`` removes). :class:`TestAndSetFailed` otherwise."""
        steps = parse(path)
        codec = self._contents(steps)
        want = None if test is None else codec.encode(test)
        new = None if set is None else codec.encode(set)

        def f(t: Tree) -> Tree:
            have = t.find(steps)
            if have != want:
                raise TestAndSetFailed(f"{'/'.join(steps)} does not hold the expected value")
            return t.remove(steps) if new is None else t.set(steps, new)

        return self.update_tree(f, _info(None, message or f"test and set {'/'.join(steps)}", author))

    def transaction(self, message: str = "", *, author: str | None = None,
                    strict: bool = False) -> Transaction:
        """A snapshot to read and write; on exit it commits (fast-forward, or
        three-way merge with what happened meanwhile) or raises
        :class:`ConflictError`. ``strict``: also fail when a path it read
        changed meanwhile (serializable, as Xenstore needs)."""
        from .transaction import Transaction

        return Transaction(self, _info(None, message or "transaction", author), strict=strict)

    # -- history ------------------------------------------------------------------

    def history(self, depth: int | None = None) -> Iterator[Commit]:
        """Commits reachable from the head, newest first, lazily."""
        head = self.head
        if head is None:
            return iter(())
        return walk(self.repo, [head], depth)

    log = history

    def last_modified(self, path: PathLike, n: int = 1) -> list[Commit]:
        """The ``n`` latest commits that changed the contents or subtree at
        ``path``."""
        steps = parse(path)
        out: list[Commit] = []
        for c in self.history():
            mine = _id_at(c.tree, steps)
            parents = c.parents
            if not parents:
                if mine is not None:
                    out.append(c)
            elif all(_id_at(p.tree, steps) != mine for p in parents):
                out.append(c)
            if len(out) >= n:
                break
        return out

    def lcas(self, other: Store | Commit) -> list[Commit]:
        a = self.head
        b = other.head if isinstance(other, Store) else other
        if a is None or b is None:
            return []
        return lcas(self.repo, a, b)

    # -- moving the head ------------------------------------------------------------

    def reset(self, commit: Commit | bytes | str) -> None:
        """Point the branch at ``commit`` (any commit; history may be lost)."""
        target = self.repo.resolve(commit)
        while True:
            expected = self.head_id()
            if self._move(target, expected, []):
                return

    def revert(self, commit: Commit | bytes | str, message: str = "", *, author: str | None = None) -> Commit | None:
        """A new commit whose tree is that of ``commit`` (history is kept)."""
        target = self.repo.resolve(commit)
        return self.update_tree(lambda _t: target.tree,
                                _info(None, message or f"revert to {target.id[:12]}", author))

    def fast_forward(self, commit: Commit | bytes | str) -> bool:
        """Move the head to ``commit`` if it descends from the head."""
        target = self.repo.resolve(commit)
        expected = self.head_id()
        if expected is not None and not is_ancestor(self.repo, self.repo.commit(expected), target):
            return False
        return self._move(target, expected, [])

    def merge(self, other: str | Commit | Store, message: str = "", *, author: str | None = None) -> Commit:
        """Merge a branch (name, Store) or commit into this one. Fast-forwards
        when possible; otherwise a merge commit with both parents.
        :class:`ConflictError` lists the conflicts and nothing is written."""
        if isinstance(other, Store):
            theirs = other.head
            name = other.branch or "detached head"
        else:
            if isinstance(other, str) and other in self.repo.branches():
                name = other
            elif isinstance(other, str):
                name = other
            else:
                name = other.id[:12]
            theirs = self.repo.resolve(other)
        if theirs is None:
            raise BranchNotFound(f"nothing to merge from {name}")
        info = _info(None, message or f"merge {name} into {self.branch or 'detached head'}", author)
        with Carry(self.repo) as carry:
            while True:
                head_id = self.head_id()
                if head_id is None:
                    if self._move(theirs, None, []):
                        return theirs
                    continue
                ours = self.repo.commit(head_id)
                if is_ancestor(self.repo, theirs, ours):
                    return ours
                if is_ancestor(self.repo, ours, theirs):
                    if self._move(theirs, head_id, []):
                        return theirs
                    continue
                tree, _bases = merge_commits(self.repo, ours, theirs, info)
                commit, objects = self.repo.prepare_commit(tree, [ours, theirs], info)
                objects = carry.plus(objects)
                if self._move(commit, head_id, objects):
                    return commit
                carry.add(objects)

    merge_with_branch = merge

    def diff(self, a: Commit | str, b: Commit | str | None = None) -> list[tuple[Path, str, bytes | None, bytes | None]]:
        """Changes from commit ``a`` to ``b`` (default: the head)."""
        ca = self.repo.resolve(a)
        cb = self.repo.resolve(b) if b is not None else self.head
        tb = cb.tree if cb is not None else Tree(self.repo)
        return ca.tree.diff(tb)

    # -- watches --------------------------------------------------------------------

    def watch(self, callback: Callable[[WatchEvent], None], prefix: PathLike = ()) -> Watch:
        """Call ``callback(event)`` for every change of this branch's head
        (from this thread, other threads or other processes); with
        ``prefix``, only for heads that change something below it. Events
        carry the diff. Returns a handle whose ``close()`` stops it."""
        if self.branch is None:
            raise ValueError("a detached head cannot be watched")
        return self.repo._watch_hub().add(self.branch, parse(prefix), callback)


def _id_at(tree: Tree, steps: Path) -> bytes | None:
    if not steps:
        return tree.hash()
    e = tree._walk(steps)
    if e is None:
        return None
    from .tree import _entry_id

    return _entry_id(e)  # type: ignore[arg-type]


def _info(info: Info | None, message: str, author: str | None) -> Info:
    if info is not None:
        return info
    if author is not None:
        return Info(author=author, message=message)
    return Info(message=message)
