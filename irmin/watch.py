"""Watches: callbacks on branch head changes, with the diff of each change.

One hub per repository subscribes to the backend's ref notifications (which
cover other threads and, for LMDB and block stores, other processes) and
delivers events in order on one dispatcher thread, so callbacks never run
under a backend lock and a slow callback delays only other callbacks. Each
watcher remembers the last head it was told about, so a burst of changes
coalesced by the backend still yields a correct diff, and duplicates are
never delivered.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .commit import Commit
from .path import Path
from .tree import Tree

if TYPE_CHECKING:
    from .repo import Repo

log = logging.getLogger("irmin.watch")

Change = tuple[Path, str, bytes | None, bytes | None]


@dataclass
class WatchEvent:
    """A head change: ``old``/``new`` commits (``None``: branch absent) and
    the changes below the watched prefix."""

    branch: str
    old: Commit | None
    new: Commit | None
    diff: list[Change] = field(default_factory=list)


def restrict(tree: Tree, prefix: Path) -> Tree:
    """A tree holding only what ``tree`` has at ``prefix`` (same paths)."""
    if not prefix:
        return tree
    e = tree._walk(prefix)
    empty = Tree(tree._repo)
    if e is None:
        return empty
    return empty._update(prefix, 0, e)  # type: ignore[arg-type]


class Watch:
    """Handle of one watcher; ``close()`` stops its callbacks."""

    def __init__(self, hub: WatchHub, branch: str, prefix: Path,
                 callback: Callable[[WatchEvent], None], head: bytes | None) -> None:
        self.hub = hub
        self.branch = branch
        self.prefix = prefix
        self.callback = callback
        self.last = head
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.hub.remove(self)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WatchHub:
    """Routes the backend's ref changes to watchers, off the writer's thread."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self._watches: list[Watch] = []
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, bytes | None, bytes | None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="irmin-watch", daemon=True)
        self._thread.start()
        self._unsubscribe = repo.backend.subscribe(self._queue.put)

    def add(self, branch: str, prefix: Path, callback: Callable[[WatchEvent], None]) -> Watch:
        w = Watch(self, branch, prefix, callback, self.repo.head_id(branch))
        with self._lock:
            self._watches.append(w)
        return w

    def remove(self, w: Watch) -> None:
        with self._lock:
            if w in self._watches:
                self._watches.remove(w)

    def close(self) -> None:
        self._unsubscribe()
        self._queue.put(None)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        prefix_len = len("refs/heads/")
        while True:
            change = self._queue.get()
            if change is None:
                return
            name, _old, new = change
            if not name.startswith("refs/heads/"):
                continue
            branch = name[prefix_len:]
            with self._lock:
                watches = [w for w in self._watches if w.branch == branch]
            steps: dict[bytes | None, list[bytes | None]] = {}
            for w in watches:
                if w.closed or w.last == new:
                    continue
                if w.last not in steps:
                    steps[w.last] = self._steps(w.last, new)
                prev = w.last
                for head in steps[w.last]:
                    try:
                        self._deliver(w, branch, prev, head)
                    except Exception:
                        log.exception("watch callback on %s failed", branch)
                    prev = head
                w.last = new

    def _steps(self, old: bytes | None, new: bytes | None, limit: int = 10_000) -> list[bytes | None]:
        """The heads between ``old`` and ``new``: when ``new`` descends from
        ``old`` by first parents (commits made elsewhere and seen together),
        one step per commit, so every head change is reported; otherwise
        (a reset, a deletion) the one jump."""
        if old is None or new is None:
            return [new]
        chain: list[bytes | None] = []
        cur: bytes | None = new
        try:
            while cur is not None and cur != old and len(chain) < limit:
                chain.append(cur)
                parents = self.repo.commit(cur).parent_ids
                cur = parents[0] if parents else None
        except Exception:
            return [new]
        if cur != old:
            return [new]
        chain.reverse()
        return chain

    def _deliver(self, w: Watch, branch: str, old_id: bytes | None, new_id: bytes | None) -> None:
        repo = self.repo
        old = repo.commit(old_id) if old_id is not None else None
        new = repo.commit(new_id) if new_id is not None else None
        old_tree = old.tree if old is not None else Tree(repo)
        new_tree = new.tree if new is not None else Tree(repo)
        diff = restrict(old_tree, w.prefix).diff(restrict(new_tree, w.prefix))
        if w.prefix and not diff:
            return
        w.callback(WatchEvent(branch, old, new, diff))
