"""What to send a git client: commits, trees and blobs between its wants and
haves, with a delta base proposed for each tree and blob.

This replaces dulwich's ``MissingObjectFinder`` (slow: ~2 s for 7,000
objects) with a walk that diffs each commit's tree against its first
parent's, in raw tree entries: unchanged subtrees are skipped by id without
being read, and each new object's proposed base is the object that held the
same path in the parent (the cheap, good delta source). Commits are
processed oldest first so a base precedes its deltas in the pack.

Shallow (``deepen N``) and partial (``filter blob:none`` / ``blob:limit``)
requests are handled here too.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from irmin.errors import MissingObject
from irmin.objects import MODE_GITLINK, MODE_TREE
from irmin.repo import Repo

from .pack_writer import PackEntry


class WantError(ValueError):
    """The client asked for an object the store does not hold."""


@dataclass
class Filter:
    """A partial-clone object filter: ``blob:none`` or ``blob:limit=<n>``."""

    blob_limit: int | None = None  # None: every blob; 0: none

    @classmethod
    def parse(cls, spec: str) -> Filter:
        if spec == "blob:none":
            return cls(0)
        if spec.startswith("blob:limit="):
            text = spec[len("blob:limit="):].lower()
            mult = 1
            for suffix, m in (("k", 1024), ("m", 1024**2), ("g", 1024**3)):
                if text.endswith(suffix):
                    text, mult = text[:-1], m
            if text.isdigit():
                return cls(int(text) * mult)
        raise ValueError(f"unsupported filter {spec!r} (blob:none and blob:limit=N are)")


@dataclass
class Plan:
    entries: list[PackEntry] = field(default_factory=list)
    shallow: list[bytes] = field(default_factory=list)
    unshallow: list[bytes] = field(default_factory=list)
    #: Objects the client already holds (thin-pack delta bases).
    client_has: set[bytes] = field(default_factory=set)


class ObjectGraph:
    """Reads of raw objects and parsed commits/trees for the walks."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self.fmt = repo.fmt
        self._entries: dict[bytes, list[tuple[bytes, bytes, bytes]]] = {}
        self._split = re.compile(rb"(\d+) ([^\0]+)\0(.{%d})" % repo.fmt.id_len, re.S).findall

    def kind(self, oid: bytes) -> bytes | None:
        raw = self.repo.backend.get(oid)
        if raw is None:
            return None
        return raw[: raw.index(b" ")]

    def read(self, oid: bytes) -> tuple[bytes, bytes]:
        return self.repo.read_object(oid)

    def parents(self, oid: bytes) -> tuple[bytes, ...]:
        return self.repo.commit(oid).parent_ids

    def tree_of(self, oid: bytes) -> bytes:
        return self.repo.commit(oid).tree_id

    def entries(self, tree: bytes) -> list[tuple[bytes, bytes, bytes]]:
        """``[(mode, name, id)]`` of a stored tree. The store's trees were
        validated when written, so a C-speed split is enough here (the
        validating parser costs ~3 us an entry, most of a clone's time)."""
        hit = self._entries.get(tree)
        if hit is not None:
            return hit
        raw = self.repo.read_raw(tree)
        if not raw.startswith(b"tree "):
            raise MissingObject(tree)
        out = self._split(raw, raw.index(b"\0") + 1)
        cache = self._entries
        if len(cache) >= 256:
            cache.pop(next(iter(cache)))
        cache[tree] = out
        return out

    def tag_target(self, oid: bytes) -> bytes:
        _, body = self.repo.read_object(oid)
        first = body.split(b"\n", 1)[0]
        if not first.startswith(b"object "):
            raise WantError(f"tag {oid.hex()} has no object line")
        return self.fmt.parse_id(first[7:])


def plan(
    repo: Repo,
    wants: Iterable[bytes],
    haves: Iterable[bytes] = (),
    *,
    client_shallow: Iterable[bytes] = (),
    depth: int | None = None,
    filter: Filter | None = None,
    thin: bool = False,
) -> Plan:
    """The objects reachable from ``wants`` and not from ``haves``."""
    g = ObjectGraph(repo)
    out = Plan()
    shallow_in = set(client_shallow)
    want_commits: list[bytes] = []
    extra: list[PackEntry] = []  # wanted tags, trees, blobs
    seen_extra: set[bytes] = set()
    todo = list(dict.fromkeys(wants))
    while todo:
        w = todo.pop()
        kind = g.kind(w)
        if kind is None:
            raise WantError(f"not our ref {w.hex()}")
        if kind == b"commit":
            want_commits.append(w)
        elif w not in seen_extra:
            seen_extra.add(w)
            if kind == b"tag":
                extra.append(PackEntry(w))
                todo.append(g.tag_target(w))
            elif kind == b"tree":
                extra.append(PackEntry(w))
                _all_below(g, w, extra, seen_extra, None)
            else:
                extra.append(PackEntry(w))

    # Commits the client has: the haves we know and their ancestors
    # (not past its shallow boundary).
    have_set: set[bytes] = set()
    stack = [h for h in haves if g.kind(h) == b"commit"]
    while stack:
        c = stack.pop()
        if c in have_set:
            continue
        have_set.add(c)
        if c not in shallow_in:
            stack.extend(p for p in g.parents(c) if p not in have_set)

    # Commits to send, breadth first with depth, newest first.
    order: list[bytes] = []
    depth_of: dict[bytes, int] = {}
    queue: deque[bytes] = deque()
    for w in want_commits:
        if w not in have_set and w not in depth_of:
            depth_of[w] = 1
            queue.append(w)
    boundary: set[bytes] = set()  # sent without their parents
    while queue:
        c = queue.popleft()
        order.append(c)
        d = depth_of[c]
        parents = g.parents(c)
        if depth is not None and d >= depth:
            if parents:
                boundary.add(c)
                if c not in shallow_in:
                    out.shallow.append(c)
            continue
        if c in shallow_in:
            if depth is None:
                boundary.add(c)
                continue
            if parents:
                out.unshallow.append(c)
        for p in parents:
            if p not in have_set and p not in depth_of:
                depth_of[p] = d + 1
                queue.append(p)
    if depth is not None:
        # Wanted commits the client already has but not deep enough.
        for w in want_commits:
            if w in shallow_in and w in have_set and g.parents(w) and depth > 1:
                out.unshallow.append(w)

    sent = set(order)
    out.entries.extend(PackEntry(c) for c in order)
    blob_limit = filter.blob_limit if filter is not None else None
    done: set[bytes] = set(seen_extra)
    client_has = out.client_has
    for h in have_set:
        if h not in shallow_in:
            client_has.add(g.tree_of(h))
    done |= client_has
    objects = out.entries
    for c in reversed(order):
        parents = g.parents(c)
        base_tree: bytes | None = None
        if parents and c not in boundary:
            p = parents[0]
            if p in sent or p in have_set:
                base_tree = g.tree_of(p)
        _diff_tree(g, g.tree_of(c), base_tree, objects, done, blob_limit)
    objects.extend(e for e in extra)
    if not thin:
        client_has.clear()
    return out


def _blob_ok(g: ObjectGraph, oid: bytes, limit: int | None) -> bool:
    if limit is None:
        return True
    if limit == 0:
        return False
    raw = g.repo.backend.get(oid)
    return raw is not None and len(raw) - raw.index(b"\0") - 1 <= limit


def _diff_tree(
    g: ObjectGraph,
    tree: bytes,
    base: bytes | None,
    out: list[PackEntry],
    done: set[bytes],
    blob_limit: int | None,
) -> None:
    """Append ``tree`` and what is new below it relative to ``base`` (the
    same path's tree in the parent), each with its delta base."""
    stack: list[tuple[bytes, bytes | None]] = [(tree, base)]
    while stack:
        t, b = stack.pop()
        if t in done:
            continue
        done.add(t)
        out.append(PackEntry(t, b))
        old: dict[bytes, tuple[bytes, bytes]] = {}
        if b is not None:
            old = {name: (mode, oid) for mode, name, oid in g.entries(b)}
        for mode, name, oid in g.entries(t):
            if oid in done:
                continue
            prev = old.get(name)
            if prev is not None and prev[1] == oid:
                continue
            if mode == MODE_TREE:
                stack.append((oid, prev[1] if prev is not None and prev[0] == MODE_TREE else None))
            elif mode == MODE_GITLINK:
                continue
            else:
                if _blob_ok(g, oid, blob_limit):
                    done.add(oid)
                    out.append(PackEntry(oid, prev[1] if prev is not None and prev[0] != MODE_TREE else None))


def _all_below(g: ObjectGraph, tree: bytes, out: list[PackEntry], done: set[bytes],
               blob_limit: int | None) -> None:
    for mode, _name, oid in g.entries(tree):
        if oid in done or mode == MODE_GITLINK:
            continue
        done.add(oid)
        if mode == MODE_TREE:
            out.append(PackEntry(oid))
            _all_below(g, oid, out, done, blob_limit)
        elif _blob_ok(g, oid, blob_limit):
            out.append(PackEntry(oid))
