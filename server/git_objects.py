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

from binascii import unhexlify
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from irmin.errors import MissingObject
from irmin.repo import Repo

from .pack_writer import PackEntry, common_ends



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
    #: Raw (canonical) bytes of objects the planner read: the writer reuses them.
    raw: dict[bytes, bytes] = field(default_factory=dict)


def tag_target(repo: Repo, oid: bytes) -> bytes:
    """The object an annotated tag points at."""
    _, body = repo.read_object(oid)
    first = body.split(b"\n", 1)[0]
    if not first.startswith(b"object "):
        raise WantError(f"tag {oid.hex()} has no object line")
    return repo.fmt.parse_id(first[7:])


#: Raw commits and trees the planner keeps for the pack writer (so they are
#: not read twice), in bytes; beyond it the writer reads them again.
KEEP_RAW_BYTES = 64 << 20
#: What ``git fetch --unshallow`` sends as its depth.
INFINITE_DEPTH = 0x7FFFFFFF


class _Walker:
    """The planner's object access: raw commits parsed for their tree and
    parents only, trees split into ``{b"mode name": id}`` dicts (C-speed:
    the store validated them when they were written), raw bytes kept for
    the pack writer."""

    __slots__ = ("repo", "get", "hexlen", "idlen", "commits", "trees", "raw", "raw_bytes")

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self.get = repo.backend.get
        self.hexlen = 2 * repo.fmt.id_len
        self.idlen = repo.fmt.id_len
        self.commits: dict[bytes, tuple[bytes, tuple[bytes, ...]]] = {}
        self.trees: dict[bytes, tuple[bytes, list[int]]] = {}
        self.raw: dict[bytes, bytes] = {}
        self.raw_bytes = 0

    def read(self, oid: bytes) -> bytes:
        raw = self.get(oid)
        if raw is None:
            raw = self.repo.read_raw(oid)  # lazy stores fetch it, others raise
        return raw

    def _keep(self, oid: bytes, raw: bytes) -> None:
        if self.raw_bytes < KEEP_RAW_BYTES:
            self.raw[oid] = raw
            self.raw_bytes += len(raw)

    def commit(self, oid: bytes) -> tuple[bytes, tuple[bytes, ...]]:
        """``(tree, parents)`` of a commit."""
        hit = self.commits.get(oid)
        if hit is not None:
            return hit
        raw = self.read(oid)
        if not raw.startswith(b"commit "):
            raise MissingObject(oid)
        n = self.hexlen
        i = raw.index(b"\0") + 1
        if raw[i:i + 5] != b"tree ":
            raise MissingObject(oid)
        tree = unhexlify(raw[i + 5:i + 5 + n])
        i += 6 + n
        parents: list[bytes] = []
        while raw.startswith(b"parent ", i):
            parents.append(unhexlify(raw[i + 7:i + 7 + n]))
            i += 8 + n
        out = (tree, tuple(parents))
        self.commits[oid] = out
        self._keep(oid, raw)
        return out

    def _body(self, oid: bytes) -> bytes:
        raw = self.read(oid)
        if not raw.startswith(b"tree "):
            raise MissingObject(oid)
        self._keep(oid, raw)
        return raw[raw.index(b"\0") + 1:]

    def _cache(self, oid: bytes, value: tuple[bytes, list[int]]) -> None:
        cache = self.trees
        if len(cache) >= 1024:
            del cache[next(iter(cache))]
        cache[oid] = value

    def tree(self, oid: bytes) -> tuple[bytes, list[int]]:
        """A tree's body and the offsets where its entries start (and its
        length last)."""
        hit = self.trees.get(oid)
        if hit is not None:
            return hit
        body = self._body(oid)
        bounds = []
        find = body.find
        pos = 0
        n = len(body)
        idl = self.idlen
        while pos < n:
            bounds.append(pos)
            nul = find(b"\0", pos)
            if nul < 0:
                raise MissingObject(oid, f"tree {oid.hex()} is malformed")
            pos = nul + 1 + idl
        bounds.append(n)
        out = (body, bounds)
        self._cache(oid, out)
        return out

    def entries(self, oid: bytes) -> list[tuple[bytes, bytes]]:
        """``[(b"mode name", id)]`` of a tree."""
        body, bounds = self.tree(oid)
        idl = self.idlen
        return [(body[a:e - idl - 1], body[e - idl:e]) for a, e in zip(bounds, bounds[1:])]

    def diff(self, new: bytes, old: bytes) -> list[tuple[bytes, bytes, bytes | None]]:
        """``[(b"mode name", id, old id or None)]``: the entries of tree
        ``new`` that are not in tree ``old``.

        Only the changed stretch of ``new`` is parsed: the common prefix and
        suffix of the two bodies are found in C (XOR of the buffers read as
        integers), the entries before the change keep ``old``'s offsets, and
        parsing stops where it meets one of ``old``'s entry starts in the
        common suffix (from there on the two parse alike)."""
        ob, obounds = self.tree(old)
        hit = self.trees.get(new)
        nb = hit[0] if hit is not None else self._body(new)
        idl = self.idlen
        lo = len(ob)
        ln = len(nb)
        p, s = common_ends(ob, nb)
        i = bisect_right(obounds, p) - 1
        pos = obounds[i]
        shift = ln - lo
        sync = ln - s
        nob = len(obounds)
        mid: list[tuple[bytes, bytes]] = []
        mid_bounds: list[int] = []
        find = nb.find
        j = nob - 1
        while pos < ln:
            if pos >= sync:
                k = bisect_left(obounds, pos - shift)
                if k < nob and obounds[k] == pos - shift:
                    j = k
                    break
            nul = find(b"\0", pos)
            if nul < 0:
                raise MissingObject(new, f"tree {new.hex()} is malformed")
            end = nul + 1 + idl
            mid.append((nb[pos:nul], nb[nul + 1:end]))
            mid_bounds.append(pos)
            pos = end
        if hit is None:
            tail = obounds[j:] if not shift else [b + shift for b in obounds[j:]]
            self._cache(new, (nb, obounds[:i] + mid_bounds + tail))
        old_mid = {ob[a:e - idl - 1]: ob[e - idl:e]
                   for a, e in zip(obounds[i:j], obounds[i + 1:j + 1])}
        out = []
        for key, oid in mid:
            prev = old_mid.get(key)
            if prev != oid:
                out.append((key, oid, prev))
        return out

    def kind(self, oid: bytes) -> bytes | None:
        raw = self.get(oid)
        if raw is None:
            return None
        return raw[: raw.index(b" ")]


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
    w = _Walker(repo)
    out = Plan()
    shallow_in = set(client_shallow)
    if shallow_in and depth is not None and depth >= INFINITE_DEPTH:
        # The walk below stops at the client's haves, so it cannot find how
        # deep the client's shallow commits lie: say so rather than answer
        # "done" and leave the clone shallow.
        raise WantError("fetch --unshallow is not supported by this server: "
                        "clone again without --depth")
    want_commits: list[bytes] = []
    extra: list[PackEntry] = []  # wanted tags, trees, blobs
    seen_extra: set[bytes] = set()
    todo = list(dict.fromkeys(wants))
    while todo:
        want = todo.pop()
        kind = w.kind(want)
        if kind is None:
            raise WantError(f"not our ref {want.hex()}")
        if kind == b"commit":
            want_commits.append(want)
        elif want not in seen_extra:
            seen_extra.add(want)
            extra.append((want, None))
            if kind == b"tag":
                todo.append(tag_target(repo, want))
            elif kind == b"tree":
                _all_below(w, want, extra, seen_extra, None)

    # Commits the client has: the haves we know and their ancestors
    # (not past its shallow boundary).
    have_set: set[bytes] = set()
    stack = [h for h in haves if w.kind(h) == b"commit"]
    while stack:
        c = stack.pop()
        if c in have_set:
            continue
        have_set.add(c)
        if c not in shallow_in:
            stack.extend(p for p in w.commit(c)[1] if p not in have_set)

    # Commits to send, breadth first with depth, newest first.
    order: list[bytes] = []
    depth_of: dict[bytes, int] = {}
    queue: deque[bytes] = deque()
    for c in want_commits:
        if c not in have_set and c not in depth_of:
            depth_of[c] = 1
            queue.append(c)
    boundary: set[bytes] = set()  # sent without their parents
    commit = w.commit
    while queue:
        c = queue.popleft()
        order.append(c)
        d = depth_of[c]
        parents = commit(c)[1]
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
        for c in want_commits:
            if c in shallow_in and c in have_set and commit(c)[1] and depth > 1:
                out.unshallow.append(c)

    sent = set(order)
    objects = out.entries
    objects.extend((c, None) for c in order)
    blob_limit = filter.blob_limit if filter is not None else None
    done: set[bytes] = set(seen_extra)
    client_has = out.client_has
    for h in have_set:
        if h not in shallow_in:
            client_has.add(commit(h)[0])
    done |= client_has
    for c in reversed(order):
        tree, parents = commit(c)
        base_tree: bytes | None = None
        if parents and c not in boundary:
            p = parents[0]
            if p in sent or p in have_set:
                base_tree = commit(p)[0]
        if tree not in done:
            _diff_tree(w, tree, base_tree, objects, done, blob_limit)
    objects.extend(extra)
    if not thin:
        client_has.clear()
    out.raw = w.raw
    return out


def _blob_ok(w: _Walker, oid: bytes, limit: int | None) -> bool:
    if limit is None:
        return True
    if limit == 0:
        return False
    raw = w.get(oid)
    return raw is not None and len(raw) - raw.index(b"\0") - 1 <= limit


def _diff_tree(
    w: _Walker,
    tree: bytes,
    base: bytes | None,
    out: list[PackEntry],
    done: set[bytes],
    blob_limit: int | None,
) -> None:
    """Append ``tree`` and what is new below it relative to ``base`` (the
    same path's tree in the parent), each with its delta base. Entries are
    compared as ``(b"mode name", id)`` pairs: a subtree whose id is already
    sent (or unchanged) is skipped without being read."""
    append = out.append
    stack: list[tuple[bytes, bytes | None]] = [(tree, base)]
    while stack:
        t, b = stack.pop()
        if t in done:
            continue
        done.add(t)
        append((t, b))
        if b is None:
            changed = [(key, oid, None) for key, oid in w.entries(t)]
        else:
            changed = w.diff(t, b)
        for key, oid, prev in changed:
            if oid in done:
                continue
            if key.startswith(b"40000 "):
                stack.append((oid, prev))
            elif key.startswith(b"160000 "):
                continue
            elif blob_limit is None or _blob_ok(w, oid, blob_limit):
                done.add(oid)
                append((oid, prev))


def _all_below(w: _Walker, tree: bytes, out: list[PackEntry], done: set[bytes],
               blob_limit: int | None) -> None:
    for key, oid in w.entries(tree):
        if oid in done or key.startswith(b"160000 "):
            continue
        done.add(oid)
        if key.startswith(b"40000 "):
            out.append((oid, None))
            _all_below(w, oid, out, done, blob_limit)
        elif _blob_ok(w, oid, blob_limit):
            out.append((oid, None))
