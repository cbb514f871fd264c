"""History as a lazy walk over the commit DAG, and merge bases.

Commits are loaded only as the walk reaches them. The merge base is the set
of lowest common ancestors, found as git does (paint both sides down in date
order until only stale commits remain, then drop results that are ancestors
of other results).

History cut by ``irmin gc --keep-last`` ends at the recorded boundary
(:mod:`irmin.boundary`): a boundary commit is treated as a root, its parents
are not followed. The list is read once per walk (one ref read; the list
itself only when it changed).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .boundary import cut_commits

if TYPE_CHECKING:
    from .commit import Commit
    from .repo import Repo


def walk(
    repo: Repo, heads: list[Commit], depth: int | None = None, first_parent: bool = False
) -> Iterator[Commit]:
    """Commits reachable from ``heads``, newest first (by committer date,
    children before parents), each once; ``depth`` bounds the distance from
    the heads (1: the heads only). Stops at the gc boundary."""
    cut = cut_commits(repo)
    counter = itertools.count()
    seen: set[bytes] = set()
    heap: list[tuple[int, int, Commit, int]] = []
    for h in heads:
        if h.oid not in seen:
            seen.add(h.oid)
            heapq.heappush(heap, (-h.date, next(counter), h, 1))
    while heap:
        _, _, c, d = heapq.heappop(heap)
        yield c
        if (depth is not None and d >= depth) or c.oid in cut:
            continue
        parents = c.parent_ids[:1] if first_parent else c.parent_ids
        for pid in parents:
            if pid not in seen:
                seen.add(pid)
                p = repo.commit(pid)
                heapq.heappush(heap, (-p.date, next(counter), p, d + 1))


_P1, _P2, _STALE, _RESULT = 1, 2, 4, 8


def _paint(repo: Repo, one: Commit, others: list[Commit]) -> list[Commit]:
    cut = cut_commits(repo)
    flags: dict[bytes, int] = {}
    counter = itertools.count()
    heap: list[tuple[int, int, Commit]] = []

    def push(c: Commit) -> None:
        heapq.heappush(heap, (-c.date, next(counter), c))

    flags[one.oid] = _P1
    push(one)
    for o in others:
        flags[o.oid] = flags.get(o.oid, 0) | _P2
        push(o)
    results: list[Commit] = []

    def still_interesting() -> bool:
        return any(not (flags[c.oid] & _STALE) for _, _, c in heap)

    while heap and still_interesting():
        _, _, c = heapq.heappop(heap)
        f = flags[c.oid] & (_P1 | _P2 | _STALE)
        if f == (_P1 | _P2):
            if not flags[c.oid] & _RESULT:
                flags[c.oid] |= _RESULT
                results.append(c)
            f |= _STALE
        if c.oid in cut:
            continue
        for pid in c.parent_ids:
            pf = flags.get(pid, 0)
            if (pf & f) == f:
                continue
            flags[pid] = pf | f
            push(repo.commit(pid))
    return results


def is_ancestor(repo: Repo, ancestor: Commit, descendant: Commit) -> bool:
    """Whether ``ancestor`` is reachable from ``descendant`` (or equal)."""
    if ancestor.oid == descendant.oid:
        return True
    for c in walk(repo, [descendant]):
        if c.oid == ancestor.oid:
            return True
    return False


def lcas(repo: Repo, a: Commit, b: Commit) -> list[Commit]:
    """The lowest common ancestors of ``a`` and ``b`` (empty if unrelated)."""
    if a.oid == b.oid:
        return [a]
    candidates = _paint(repo, a, [b])
    if len(candidates) <= 1:
        return candidates
    # Remove candidates that are ancestors of other candidates.
    keep: list[Commit] = []
    for c in candidates:
        others = [o for o in candidates if o.oid != c.oid]
        if not any(is_ancestor(repo, c, o) for o in others):
            keep.append(c)
    keep.sort(key=lambda c: (-c.date, c.oid))
    return keep
