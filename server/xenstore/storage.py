"""The Xenstore tree as a branch of an irmin store.

Node representation (one git directory per Xenstore node)::

    local/domain/5/            the node /local/domain/5
    local/domain/5/.perms      its perms, one entry a line: "b5\\nr0\\n" (always
                               present, so every node is a non-empty directory)
    local/domain/5/.value      its value, raw bytes (absent when empty)
    local/domain/5/.order      child names, one a line, only when the
                               insertion order differs from sorted order
    local/domain/5/name/       a child node

Xenstore names use only ``[A-Za-z0-9-_@]``, so the dot-names can never clash
with a child; values are stored verbatim (NULs included); the root node's
files sit at the top of the tree.

:class:`Storage` loads the tree at start and commits new versions: the
daemon hands it the current root after each change; a commit writes only
the directories on changed paths (unchanged subtrees are skipped by node
identity), moves the branch by compare-and-set (a foreign move is kept as
the parent: our tree wins, history is kept), and then runs the callbacks
waiting for durability. Commits are grouped: everything changed while one
commit is being written goes into the next one.

The event loop only takes the snapshot (the current root, O(1)); exporting
it to irmin trees, hashing and writing the objects and moving the branch run
in the committer's own thread, so requests go on meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import irmin
from irmin.tree import Tree

from . import perms as P
from .nodes import Node, bump_gen_above, initial_root, next_gen

log = logging.getLogger("irmin.xenstored")

VALUE = ".value"
PERMS = ".perms"
ORDER = ".order"
AUTHOR = "xenstored <xenstored@localhost>"


def node_from_tree(tree: Tree) -> Node:
    """Rebuild the in-memory node tree from its irmin representation."""
    g = next_gen()
    names = tree.names()
    value = b""
    perms: P.Perms = P.DEFAULT
    order: list[str] | None = None
    children: dict[str, Node] = {}
    subdirs = []
    for name, kind in tree.list():
        if kind == "contents":
            if name == VALUE:
                value = tree.get((VALUE,))
            elif name == PERMS:
                perms = P.parse_text(tree.get((PERMS,)).decode()) or P.DEFAULT
            elif name == ORDER:
                order = [n for n in tree.get((ORDER,)).decode().split("\n") if n]
        else:
            subdirs.append(name)
    del names
    if order is not None and sorted(order) == sorted(subdirs):
        subdirs = order
    else:
        subdirs.sort()
    for name in subdirs:
        children[name] = node_from_tree(tree.get_tree((name,)))
    return Node(value, perms, children, g, g)


def _sync(tree: Tree, prefix: tuple[str, ...], old: Node | None, new: Node) -> Tree:
    """``tree`` with the representation of ``new`` at ``prefix`` (the root:
    ``()``), given that ``old`` is represented there now."""
    assert prefix == ()
    return _node_tree(tree if old is not None else Tree(tree._repo), old, new)


def _node_tree(t: Tree, old: Node | None, new: Node) -> Tree:
    """The directory of node ``new``, built from ``t``, the directory of
    ``old`` (empty for a new node); changed children are rebuilt bottom-up
    and grafted once, unchanged ones are kept by node identity."""
    if old is new:
        return t
    if old is None or old.value != new.value:
        if new.value:
            t = t.set((VALUE,), new.value)
        elif old is not None:
            t = t.remove((VALUE,))
    if old is None or old.perms != new.perms:
        t = t.set((PERMS,), P.text(new.perms).encode())
    oc = old.children if old is not None else {}
    nc = new.children
    if oc is not nc:
        for name in oc:
            if name not in nc:
                t = t.remove((name,))
        for name, child in nc.items():
            oldc = oc.get(name)
            if oldc is child:
                continue
            if oldc is None:
                sub = _node_tree(Tree(t._repo), None, child)
            else:
                sub = _node_tree(t.get_tree((name,)), oldc, child)
            t = t.set_tree((name,), sub)
        if list(oc) != list(nc):
            names = list(nc)
            if names != sorted(names):
                t = t.set((ORDER,), "".join(n + "\n" for n in names).encode())
            elif old is not None and t.mem((ORDER,)):
                t = t.remove((ORDER,))
    return t


def _names(tree: Tree, prefix: tuple[str, ...]) -> list[str]:
    t = tree.find_tree(prefix) if prefix else tree
    return t.names() if t is not None else []


class Storage:
    """Loads and commits the Xenstore tree on one branch."""

    def __init__(self, repo: irmin.Repo, branch: str = "xenstore", *, durable: bool = True,
                 interval: float = 0.0) -> None:
        self.repo = repo
        self.branch = branch
        self.store = repo.branch(branch)
        self.durable = durable
        self.interval = interval
        self.committed: Node | None = None
        self.tree: Tree | None = None
        self.head: irmin.Commit | None = None
        self.seq = 0  # number of the last change handed over
        self.done = 0  # number of the last change that is durable
        self.messages: list[tuple[str, str]] = []  # (what, detail), joined at commit
        self.commits = 0
        self._running = False
        self._scheduled = False
        self._get_root: Callable[[], Node] | None = None
        self._on_done: Callable[[int], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: asyncio.Event | None = None
        self._thread: ThreadPoolExecutor | None = None

    def load(self) -> Node:
        """The tree at the branch head (the initial tree for a new branch,
        committed at once)."""
        head = self.store.head
        if head is None:
            root = initial_root()
            self.tree = _sync(Tree(self.repo), (), None, root)
            c, objects = self.repo.prepare_commit(self.tree, [], irmin.Info(AUTHOR, "xenstored: initial tree"))
            if not self.repo.set_head(self.branch, c, None, objects):
                return self.load()
            self.head = c
        else:
            self.head = head
            self.tree = head.tree
            root = node_from_tree(self.tree)
            bump_gen_above(next_gen() + 1)
        self.committed = root
        return root

    def start(self, loop: asyncio.AbstractEventLoop, get_root: Callable[[], Node],
              on_done: Callable[[int], None]) -> None:
        self._loop = loop
        self._get_root = get_root
        self._on_done = on_done
        self._idle = asyncio.Event()
        self._idle.set()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="xenstored-commit")

    def changed(self, message: str, detail: str = "") -> int:
        """Note a change (already in the current root); returns its sequence
        number, durable once ``done`` reaches it. The commit message is
        ``message`` + " " + ``detail`` (joined only when committing)."""
        self.seq += 1
        msgs = self.messages
        if len(msgs) < 20:
            msgs.append((message, detail))
        elif len(msgs) == 20:
            msgs.append(("...", ""))
        if not self._scheduled and not self._running:
            self._schedule()
        return self.seq

    def _schedule(self) -> None:
        assert self._loop is not None and self._idle is not None
        self._scheduled = True
        self._idle.clear()
        if self.interval > 0:
            self._loop.call_later(self.interval, self._kick)
        else:
            self._loop.call_soon(self._kick)

    def _kick(self) -> None:
        self._scheduled = False
        if self._running:
            return
        assert self._loop is not None
        self._running = True
        self._loop.create_task(self._commit())

    async def _commit(self) -> None:
        assert self._get_root is not None and self._loop is not None
        try:
            root = self._get_root()  # a snapshot: never changed from now on
            seq = self.seq
            msgs = [f"{m} {d}" if d else m for m, d in self.messages]
            self.messages = []
            if root is not self.committed:
                n = seq - self.done
                title = msgs[0] if n == 1 and msgs else f"xenstored: {n} changes"
                body = "" if n == 1 else "\n\n" + "\n".join(msgs)
                info = irmin.Info(AUTHOR, title + body)
                await self._loop.run_in_executor(self._thread, self._write, root, info)
            self.done = seq
            if self._on_done is not None:
                self._on_done(seq)
        except Exception:  # keep serving; the next change retries
            log.exception("commit failed")
        finally:
            self._running = False
            if self.seq > self.done:
                self._schedule()
            else:
                assert self._idle is not None
                self._idle.set()

    def _write(self, root: Node, info: irmin.Info) -> None:
        """In the committer thread: export ``root`` (only the directories
        on changed paths), write the commit and move the branch."""
        tree = _sync(self.tree, (), self.committed, root)  # type: ignore[arg-type]
        parent = self.head
        commit, objects = self.repo.prepare_commit(tree, [parent] if parent else [], info)
        ok = self.repo.set_head(self.branch, commit, parent, objects)
        if not ok:  # someone else moved our branch: keep it as parent
            log.warning("branch %s moved under xenstored; recommitting on top", self.branch)
            while not ok:
                parent = self.store.head
                commit, objects = self.repo.prepare_commit(tree, [parent] if parent else [], info)
                ok = self.repo.set_head(self.branch, commit, parent, objects)
        self.tree = tree
        self.committed = root
        self.head = commit
        self.commits += 1

    def close(self) -> None:
        """Stop the committer thread (after :meth:`flush`)."""
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None

    async def flush(self) -> None:
        """Wait until every change so far is committed."""
        if self.seq > self.done and not self._scheduled and not self._running:
            self._schedule()
        while self.seq > self.done:
            assert self._idle is not None
            await self._idle.wait()
            if self.seq > self.done and not self._scheduled and not self._running:
                self._schedule()
