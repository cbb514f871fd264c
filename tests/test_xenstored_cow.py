"""xenstored's copy-on-write tree: nodes owned by the caller's token are
changed in place, everything else is copied, so a snapshot (a transaction's
START, the committer's root) never changes, and a transaction replay that
fails half-way leaves the current tree untouched."""

from __future__ import annotations

import pytest

from irmin.server.xenstore import nodes
from irmin.server.xenstore.nodes import Caller, Node
from irmin.server.xenstore.transactions import Transaction
from irmin.server.xenstore.wire import XsError


def dump(n: Node) -> tuple[object, ...]:
    return (n.value, n.perms, n.gen, n.cgen, {k: dump(c) for k, c in n.children.items()})


def parts(p: str) -> list[str]:
    return p[1:].split("/")


def test_snapshot_never_changes() -> None:
    who = Caller(owner=object())
    ev: list[nodes.Event] = []
    root = nodes.initial_root()
    for p in ("/a/b", "/a/c/d", "/e"):
        root = nodes.write(root, parts(p), p, b"v", who, ev)
    # the same owner: in place
    again = nodes.write(root, parts("/a/b"), "/a/b", b"w", who, ev)
    assert again is root and nodes.lookup(root, ["a", "b"]).value == b"w"  # type: ignore[union-attr]
    snap, before = root, dump(root)
    who.owner = object()  # what Server.snapshot does
    r = nodes.write(root, parts("/a/b"), "/a/b", b"x", who, ev)
    assert r is not snap
    r2 = nodes.write(r, parts("/a/b"), "/a/b", b"y", who, ev)
    assert r2 is r  # the copies are owned now
    r = nodes.write(r, parts("/a/c/d/f"), "/a/c/d/f", b"z", who, ev)
    r = nodes.set_perms(r, parts("/e"), "/e", (("r", 3),), who, ev)
    r = nodes.rm(r, parts("/a/c"), "/a/c", who, ev)
    r = nodes.mkdir(r, parts("/g/h"), "/g/h", who, ev)
    assert dump(snap) == before
    assert nodes.lookup(r, ["a", "b"]).value == b"y"  # type: ignore[union-attr]
    assert nodes.lookup(r, ["a", "c"]) is None and nodes.lookup(r, ["g", "h"]) is not None


def test_failed_replay_leaves_current_untouched() -> None:
    main = Caller(owner=object())
    ev: list[nodes.Event] = []
    root = nodes.initial_root()
    root = nodes.write(root, ["z"], "/z", b"", main, ev)
    tx = Transaction(1, root, main, None)
    main.owner = object()  # the snapshot
    tx.apply(nodes.write, ["p", "a"], "/p/a", b"1")
    tx.apply(nodes.rm, ["z", "w"], "/z/w")  # a missing child of /z: OK
    current = nodes.rm(root, ["z"], "/z", main, ev)
    current = nodes.write(current, ["q"], "/q", b"", main, ev)
    before = dump(current)
    with pytest.raises(XsError) as e:
        tx.merge(current, main.counts, main)  # replaying RM /z/w: ENOENT
    assert e.value.name == "EAGAIN"
    assert dump(current) == before and nodes.lookup(current, ["p"]) is None
