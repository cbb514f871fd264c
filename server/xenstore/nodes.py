"""The Xenstore tree in memory: copy-on-write nodes, shared between versions.

A :class:`Node` has a byte value, perms and children in insertion order (a
dict). A snapshot's nodes are never changed: an operation copies the nodes
on the path it changes and shares everything else (see ``owner`` below for
the copies it may change again), so a snapshot (for a transaction, or for
the committer) is the root pointer, O(1), and two roots can be compared
subtree by subtree with ``is`` (see :mod:`.storage`).

Each node carries two generation stamps from one global counter: ``gen``
moves when its value or perms change (or it is created), ``cgen`` when its
set of children changes. Transactions compare them to find real conflicts;
DIRECTORY_PART reports ``max(gen, cgen)``.

Copy-on-write only where it is needed: a node may carry an ``owner`` token
(the server's current epoch, or a transaction). An operation whose caller
has the same ``owner`` changes such a node in place instead of copying it
and its ancestors. Whoever takes a snapshot of a root (a transaction's
START, the committer) first moves the owner on to a new token, so the
nodes of a snapshot are never changed again. A node owning a children dict
is the only node referencing it (nodes that share a dict have no owner).

The operations here are the semantics of the C xenstored's WRITE, MKDIR, RM
and SET_PERMS on a root: functions returning the new root (the same object
when it was changed in place), raising
:class:`~.wire.XsError`, and appending watch events ``(path, exact, perms)``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from . import perms as P
from .wire import XsError

_gen = itertools.count(1)

#: struct xs_tdb_record_hdr (generation, num_perms, datalen, childlen), padded
NODE_HDR = 24


def next_gen() -> int:
    return next(_gen)


def bump_gen_above(n: int) -> None:
    """After a restart, keep generations above what the store recorded."""
    global _gen
    _gen = itertools.count(n + 1)


class Node:
    __slots__ = ("value", "perms", "children", "gen", "cgen", "owner")

    def __init__(self, value: bytes, perms: P.Perms, children: dict[str, Node],
                 gen: int, cgen: int, owner: object = None) -> None:
        self.value = value
        self.perms = perms
        self.children = children
        self.gen = gen
        self.cgen = cgen
        self.owner = owner

    def with_child(self, name: str, child: Node | None, owner: object = None) -> Node:
        ch = dict(self.children)
        cgen = self.cgen
        if child is None:
            del ch[name]
            cgen = next_gen()
        else:
            if name not in ch:
                cgen = next_gen()
            ch[name] = child
        return Node(self.value, self.perms, ch, self.gen, cgen, owner)

    def size(self) -> int:
        """The C daemon's node size for the node-size quota (its record:
        a 24-byte header, 8 bytes a perm, the value, the child names);
        ENOSPC when it reaches the quota."""
        return NODE_HDR + len(self.value) + 8 * len(self.perms) + sum(len(n) + 1 for n in self.children)

    def count(self) -> int:
        return 1 + sum(c.count() for c in self.children.values())


def initial_root() -> Node:
    """The C daemon's initial tree: ``/``, ``/tool``, ``/tool/xenstored``."""
    g = next_gen()
    xs = Node(b"", P.DEFAULT, {}, g, g)
    tool = Node(b"", P.DEFAULT, {"xenstored": xs}, g, g)
    return Node(b"", P.DEFAULT, {"tool": tool}, g, g)


def lookup(root: Node, parts: list[str]) -> Node | None:
    n: Node | None = root
    for p in parts:
        n = n.children.get(p)  # type: ignore[union-attr]
        if n is None:
            return None
    return n


def replace(root: Node, parts: list[str], new: Node | None, owner: object = None) -> Node:
    """``root`` with the node at ``parts`` replaced (None: removed); every
    parent on the path must exist. Parents owned by ``owner`` are changed in
    place (then the root may be the same object), the others copied."""
    if not parts:
        assert new is not None
        return new
    chain = [root]
    n = root
    for p in parts[:-1]:
        n = n.children[p]
        chain.append(n)
    child = new
    for i in range(len(parts) - 1, -1, -1):
        par = chain[i]
        if owner is not None and par.owner is owner:
            ch = par.children
            name = parts[i]
            if child is None:
                del ch[name]
                par.cgen = next_gen()
            else:
                if name not in ch:
                    par.cgen = next_gen()
                ch[name] = child
            return root
        child = par.with_child(parts[i], child, owner)
    return child  # type: ignore[return-value]


class Counts:
    """Nodes owned per domain (for the nodes quota); a transaction layers a
    delta over the global counts."""

    __slots__ = ("base", "delta")

    def __init__(self, base: Counts | None = None) -> None:
        self.base = base
        self.delta: dict[int, int] = {}

    def get(self, domid: int) -> int:
        v = self.delta.get(domid, 0)
        return v + self.base.get(domid) if self.base is not None else v

    def quota_count(self, domid: int) -> int:
        """The count the nodes quota checks: a transaction's own creations
        are not counted until it commits (as the C daemon does)."""
        return self.base.get(domid) if self.base is not None else self.delta.get(domid, 0)

    def add(self, domid: int, n: int) -> None:
        self.delta[domid] = self.delta.get(domid, 0) + n

    def commit(self) -> None:
        """Fold this layer's delta into its base."""
        assert self.base is not None
        for d, n in self.delta.items():
            self.base.add(d, n)
        self.delta.clear()


@dataclass
class Caller:
    """Who performs an operation, and the limits that apply."""

    domid: int = 0
    privileged: bool = True
    target: int | None = None
    max_nodes: int = 1000
    max_node_size: int = 2048
    max_perms: int = 5
    counts: Counts = field(default_factory=Counts)
    owner: object = None  # nodes with this owner are changed in place (see above)

    def access(self, perms: P.Perms) -> int:
        return P.for_conn(perms, self.domid, self.privileged, self.target)


Event = tuple[str, bool, P.Perms]


def _hidden_errno(root: Node, parts: list[str], who: Caller, errnum: str, need: int = P.READ) -> str:
    """C ``errno_from_parents``: ENOENT becomes EACCES unless the nearest
    existing ancestor grants the caller some of the access ``need`` (READ
    for reads, WRITE to create or remove)."""
    if who.privileged:
        return errnum
    n = root
    best = root
    for p in parts[:-1]:
        c = n.children.get(p)
        if c is None:
            break
        n = best = c
    return errnum if who.access(best.perms) & need else "EACCES"


def get(root: Node, parts: list[str], who: Caller, need: int) -> Node:
    """The node at ``parts`` if the caller has ``need`` access (C get_node)."""
    n = lookup(root, parts)
    if n is None:
        raise XsError(_hidden_errno(root, parts, who, "ENOENT", need))
    if not who.privileged and (who.access(n.perms) & need) != need:
        raise XsError("EACCES")
    return n


def _create(root: Node, parts: list[str], path: str, value: bytes, who: Caller,
            events: list[Event], n: Node | None = None, i: int = 0) -> Node:
    """Create the node and its missing parents (inheriting the nearest
    existing ancestor's perms; an unprivileged creator owns them). ``n``:
    that ancestor if known, at depth ``i``."""
    if n is None:
        n = root
        while i < len(parts) - 1:
            c = n.children.get(parts[i])
            if c is None:
                break
            n = c
            i += 1
    inherited = n.perms
    if not who.privileged:
        inherited = ((inherited[0][0], who.domid),) + inherited[1:]
    new_count = len(parts) - i
    if not who.privileged:
        owner = who.domid
        if who.counts.quota_count(owner) + new_count > who.max_nodes:
            raise XsError("ENOSPC")
        if NODE_HDR + len(value) + 8 * len(inherited) >= who.max_node_size:
            raise XsError("ENOSPC")
        # the existing parent is rewritten with one more child name
        if n.size() + len(parts[i]) + 1 >= who.max_node_size:
            raise XsError("ENOSPC")
    g = next_gen()
    owner = who.owner
    node = Node(value, inherited, {}, g, g, owner)
    for j in range(len(parts) - 1, i, -1):
        node = Node(b"", inherited, {parts[j]: node}, g, g, owner)
    who.counts.add(inherited[0][1], new_count)
    # one event, for the requested path (watches on the created parents
    # match it as its ancestors)
    events.append((path, False, inherited))
    if owner is not None and n.owner is owner:  # the parent is ours: in place
        n.children[parts[i]] = node
        n.cgen = next_gen()
        return root
    return replace(root, parts[: i + 1], node, owner)


def write(root: Node, parts: list[str], path: str, value: bytes, who: Caller,
          events: list[Event]) -> Node:
    n = root
    i = 0
    for p in parts:
        c = n.children.get(p)
        if c is None:
            # missing: ``n`` is its nearest existing ancestor (C
            # errno_from_parents: EACCES unless it grants WRITE)
            if not who.privileged and not who.access(n.perms) & P.WRITE:
                raise XsError("EACCES")
            return _create(root, parts, path, value, who, events, n, i)
        n = c
        i += 1
    if not who.privileged:
        if not who.access(n.perms) & P.WRITE:
            raise XsError("EACCES")
        if (NODE_HDR + len(value) + 8 * len(n.perms) + sum(len(c) + 1 for c in n.children)
                >= who.max_node_size):
            raise XsError("ENOSPC")
    events.append((path, False, n.perms))
    owner = who.owner
    if owner is not None and n.owner is owner:
        n.value = value
        n.gen = next_gen()
        return root
    new = Node(value, n.perms, n.children, next_gen(), n.cgen)  # shares the dict: no owner
    return replace(root, parts, new, owner)


def mkdir(root: Node, parts: list[str], path: str, who: Caller, events: list[Event]) -> Node:
    n = lookup(root, parts)
    if n is not None:
        if not who.privileged and not who.access(n.perms) & P.WRITE:
            raise XsError("EACCES")
        return root
    err = _hidden_errno(root, parts, who, "ENOENT", P.WRITE)
    if err != "ENOENT":
        raise XsError(err)
    return _create(root, parts, path, b"", who, events)


def _removed(node: Node, path: str, who: Caller, events: list[Event]) -> None:
    for name, c in node.children.items():
        _removed(c, path + "/" + name, who, events)
    who.counts.add(node.perms[0][1], -1)
    events.append((path, True, node.perms))


def rm(root: Node, parts: list[str], path: str, who: Caller, events: list[Event]) -> Node:
    n = lookup(root, parts)
    if n is None:
        err = _hidden_errno(root, parts, who, "ENOENT", P.WRITE)
        if err != "ENOENT":
            raise XsError(err)
        if lookup(root, parts[:-1]) is not None:
            return root
        raise XsError("ENOENT")
    if not who.privileged and not who.access(n.perms) & P.WRITE:
        raise XsError("EACCES")
    if not parts:
        raise XsError("EINVAL")
    for name, c in n.children.items():
        _removed(c, path + "/" + name, who, events)
    who.counts.add(n.perms[0][1], -1)
    events.append((path, False, n.perms))
    return replace(root, parts, None, who.owner)


def set_perms(root: Node, parts: list[str], path: str, new_perms: P.Perms, who: Caller,
              events: list[Event]) -> Node:
    if not who.privileged and len(new_perms) > who.max_perms:
        raise XsError("ENOSPC")
    n = get(root, parts, who, P.WRITE | P.OWNER)
    if not who.privileged:
        if new_perms[0][1] != n.perms[0][1]:
            raise XsError("EPERM")
        if n.size() + 8 * (len(new_perms) - len(n.perms)) >= who.max_node_size:
            raise XsError("ENOSPC")
    if new_perms[0][1] != n.perms[0][1]:
        who.counts.add(n.perms[0][1], -1)
        who.counts.add(new_perms[0][1], 1)
    events.append((path, False, n.perms))
    owner = who.owner
    if owner is not None and n.owner is owner:
        n.perms = new_perms
        n.gen = next_gen()
        return root
    new = Node(n.value, new_perms, n.children, next_gen(), n.cgen)  # shares the dict: no owner
    return replace(root, parts, new, owner)
