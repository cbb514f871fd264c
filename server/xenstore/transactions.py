"""Transactions: a snapshot of the copy-on-write tree, merged at the end.

START takes the current root (O(1)). Requests inside read and write the
transaction's own root and record what they touched: ``V`` (a node's value
and perms, or its absence), ``C`` (a node's set of children) or ``S`` (a
whole subtree, for RM). Writes are also recorded as operations to replay.

END ``T``:

* nothing committed meanwhile (the current root is the snapshot): the
  transaction's root becomes current;
* otherwise, if every touched node is unchanged between the snapshot and the
  current root (same stamps), the recorded operations are replayed on the
  current root: the result is the serial execution "everything else, then
  this transaction", which is what its client saw. Any difference, or a
  replayed operation that now fails: EAGAIN.

Creating a child does not touch the parent's child set, so transactions
writing disjoint subtrees under a common parent (every domain's
``/local/domain/N``) never conflict; a conflict is real: a node the
transaction read or wrote was changed meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import nodes
from .nodes import Caller, Counts, Event, Node
from .wire import XsError

V = 0
C = 1
S = 2


class Transaction:
    __slots__ = ("id", "snapshot", "root", "caller", "ops", "touched", "events", "max_touched",
                 "accessed", "failed")

    def __init__(self, id_: int, root: Node, caller: Caller, max_touched: int | None) -> None:
        self.id = id_
        self.snapshot = root
        self.root = root
        self.caller = Caller(caller.domid, caller.privileged, caller.target, caller.max_nodes,
                             caller.max_node_size, caller.max_perms, Counts(caller.counts), self)
        self.ops: list[tuple[Callable[..., Node], tuple[Any, ...]]] = []
        self.touched: set[tuple[int, tuple[str, ...]]] = set()
        self.events: list[Event] = []
        self.max_touched = max_touched
        self.accessed: set[tuple[str, ...]] = set()
        self.failed = False  # C trans->fail: END T answers ENOMEM

    def touch(self, kind: int, parts: list[str]) -> None:
        self.touched.add((kind, tuple(parts)))

    def access(self, parts: list[str], op: str = "r") -> None:
        """The transaction-nodes quota, counted as the C daemon does: the
        distinct nodes it reads or writes, missing ones included, plus the
        nearest existing ancestor of a missing node (read for its perms, or
        rewritten with a new child), and for RM the subtree and the parent.
        ``op``: ``r`` read or write, ``rm``."""
        if self.max_touched is None:
            return
        n = self.root
        i = 0
        for p in parts:
            c = n.children.get(p)
            if c is None:
                break
            n = c
            i += 1
        new: list[tuple[str, ...]] = []
        if i == len(parts):
            new.append(tuple(parts))
            if op == "rm" and parts:
                new.append(tuple(parts[:-1]))
                stack = [(tuple(parts), n)]
                while stack:
                    t, m = stack.pop()
                    for name, c in m.children.items():
                        new.append(t + (name,))
                        stack.append((t + (name,), c))
        else:
            # missing nodes are recorded too (C: a later creation conflicts)
            new.append(tuple(parts[:i]))
            new.extend(tuple(parts[:j]) for j in range(i + 1, len(parts) + 1))
        acc = self.accessed
        for t in new:
            if t not in acc:
                if len(acc) >= self.max_touched:
                    self.failed = True
                    raise XsError("ENOSPC")
                acc.add(t)

    @staticmethod
    def _check_nodes(counts: Counts, caller: Caller) -> None:
        """C ``acc_fix_domains`` at commit: an unprivileged transaction may
        not leave a domain above its nodes quota."""
        if caller.privileged:
            return
        for d, n in counts.delta.items():
            if n > 0 and counts.get(d) > caller.max_nodes:
                raise XsError("ENOSPC")

    def touch_path(self, parts: list[str]) -> None:
        """A write touches the node itself (``V``). Its ancestors are not
        touched: parents created meanwhile, or perms changed, show up at
        replay, which fails (EAGAIN) only if the outcome would differ."""
        self.touch(V, parts)

    def apply(self, fn: Callable[..., Node], *args: Any) -> None:
        self.root = fn(self.root, *args, self.caller, self.events)
        self.ops.append((fn, args))

    def conflicts(self, current: Node) -> bool:
        snap = self.snapshot
        lookup = nodes.lookup
        for kind, parts in self.touched:
            p = list(parts)
            a = lookup(snap, p)
            b = lookup(current, p)
            if a is None or b is None:
                if a is not b:
                    return True
                continue
            if kind == V:
                if a.gen != b.gen:
                    return True
            elif kind == C:
                if a.cgen != b.cgen or a.gen != b.gen:
                    return True
            elif a is not b:
                return True
        return False

    def merge(self, current: Node, global_counts: Counts, caller: Caller) -> tuple[Node, list[Event]]:
        """The new current root; XsError("EAGAIN") on a real conflict.
        Counts are folded into ``global_counts`` only on success."""
        if current is self.snapshot:
            self._check_nodes(self.caller.counts, caller)
            self.caller.counts.commit()
            return self.root, self.events
        if not self.ops:
            if self.conflicts(current):
                raise XsError("EAGAIN")
            return current, []
        if self.conflicts(current):
            raise XsError("EAGAIN")
        layer = Counts(global_counts)
        # replayed on copies owned by a new token: ``current`` is left
        # untouched if an operation fails half-way
        who = Caller(caller.domid, caller.privileged, caller.target, caller.max_nodes,
                     caller.max_node_size, caller.max_perms, layer, object())
        events: list[Event] = []
        root = current
        try:
            for fn, args in self.ops:
                root = fn(root, *args, who, events)
        except XsError:
            raise XsError("EAGAIN") from None
        self._check_nodes(layer, caller)
        layer.commit()
        return root, events
