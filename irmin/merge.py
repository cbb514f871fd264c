"""Three-way merges of trees and commits.

Trees merge entry by entry, skipping equal subtrees by id without loading
them; contents that changed on both sides go to the store's contents codec
(:mod:`irmin.contents`), which either merges them or reports a conflict.
Every conflict is collected (path, the three versions, a reason) and raised
together as :class:`ConflictError`; nothing is resolved silently.

Commits merge over their lowest common ancestors; when there are several,
they are first merged into a virtual ancestor (git's "recursive" strategy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .commit import Commit, Info
from .contents import Contents, MergeConflict
from .errors import Conflict, ConflictError
from .history import lcas
from .path import Path
from .tree import Entry, Tree, _entry_id, _entry_is_tree, _entry_mode

if TYPE_CHECKING:
    from .repo import Repo

ContentsFor = Callable[[Path], Contents]


def contents_chooser(repo: Repo) -> ContentsFor:
    """The codec for each path: a ``ByPath`` chooser or one codec for all."""
    c = repo.contents
    for_path = getattr(c, "for_path", None)
    if for_path is not None:
        return for_path  # type: ignore[no-any-return]
    return lambda _path: c


def merge_trees(
    repo: Repo, base: Tree | None, ours: Tree, theirs: Tree, contents: ContentsFor | None = None
) -> Tree:
    """The three-way merge of two trees; :class:`ConflictError` lists every
    conflict."""
    conflicts: list[Conflict] = []
    # With a codec whose equal changes must still be merged (counters), two
    # equal sides are not proof that nothing is left to do.
    exact = getattr(repo.contents, "idempotent", True)
    result = _merge(repo, base, ours, theirs, (), contents or contents_chooser(repo), conflicts, exact)
    if conflicts:
        raise ConflictError(conflicts)
    return result if result is not None else Tree(repo)


def _merge(
    repo: Repo,
    base: Tree | None,
    a: Tree,
    b: Tree,
    prefix: Path,
    contents: ContentsFor,
    conflicts: list[Conflict],
    exact: bool = True,
) -> Tree:
    ha, hb = a.hash(), b.hash()
    if ha == hb and exact:
        return a
    if base is not None:
        h0 = base.hash()
        if hb == h0:
            return a
        if ha == h0:
            return b
    elif ha == hb and base is None and exact:
        return a
    ea_all = a._mapping()
    eb_all = b._mapping()
    e0_all = base._mapping() if base is not None else {}
    result = a
    for name in sorted(ea_all.keys() | eb_all.keys() | e0_all.keys()):
        ea, eb, e0 = ea_all.get(name), eb_all.get(name), e0_all.get(name)
        ida = None if ea is None else (_entry_mode(ea), _entry_id(ea))
        idb = None if eb is None else (_entry_mode(eb), _entry_id(eb))
        id0 = None if e0 is None else (_entry_mode(e0), _entry_id(e0))
        if idb == id0:
            continue  # result already holds ours
        if ida == id0:
            result = result._with(name, result._entry(name), eb)
            continue
        path = prefix + (name,)
        ta = ea is not None and _entry_is_tree(ea)
        tb = eb is not None and _entry_is_tree(eb)
        t0 = e0 is not None and _entry_is_tree(e0)
        if ida == idb and (exact or (ea is not None and not ta and contents(path).idempotent)):
            continue
        if ta and tb:
            sub = _merge(
                repo,
                a._as_tree(e0) if t0 else None,  # type: ignore[arg-type]
                a._as_tree(ea),  # type: ignore[arg-type]
                b._as_tree(eb),  # type: ignore[arg-type]
                path,
                contents,
                conflicts,
                exact,
            )
            merged: Entry | None = None if sub.is_empty() else sub
        elif (ea is None or not ta) and (eb is None or not tb) and (e0 is None or not t0):
            merged = _merge_contents(repo, a, b, e0, ea, eb, path, contents, conflicts)
            if merged is _FAILED:
                continue
        else:
            conflicts.append(
                Conflict(path, _show(e0), _show(ea), _show(eb), "a node on one side, contents on the other")
            )
            continue
        result = result._with(name, result._entry(name), merged)
    return result


_FAILED: Entry = (b"", b"")


def _show(e: Entry | None) -> bytes | None:
    if e is None:
        return None
    kind = "node" if _entry_is_tree(e) else "contents"
    return f"{kind} {_entry_id(e).hex()}".encode()


def _merge_contents(
    repo: Repo,
    a: Tree,
    b: Tree,
    e0: Entry | None,
    ea: Entry | None,
    eb: Entry | None,
    path: Path,
    contents: ContentsFor,
    conflicts: list[Conflict],
) -> Entry | None:
    v0 = None if e0 is None else a._blob(e0)
    va = None if ea is None else a._blob(ea)
    vb = None if eb is None else b._blob(eb)
    codec = contents(path)
    try:
        merged = codec.merge(v0, va, vb)
    except MergeConflict as e:
        conflicts.append(Conflict(path, v0, va, vb, e.reason))
        return _FAILED
    if merged is None:
        return None
    mode = _entry_mode(ea if ea is not None else eb)  # type: ignore[arg-type]
    return a._pending(merged, mode)


def merge_commits(
    repo: Repo, ours: Commit, theirs: Commit, info: Info | None = None
) -> tuple[Tree, list[Commit]]:
    """The merged tree of two commits and their merge bases (the recursive
    strategy builds a virtual base when there are several)."""
    bases = lcas(repo, ours, theirs)
    base_tree = _virtual_base(repo, bases, info)
    return merge_trees(repo, base_tree, ours.tree, theirs.tree), bases


def _virtual_base(repo: Repo, bases: list[Commit], info: Info | None) -> Tree | None:
    if not bases:
        return None
    if len(bases) == 1:
        return bases[0].tree
    acc = bases[0]
    for other in bases[1:]:
        sub_bases = lcas(repo, acc, other)
        base_tree = _virtual_base(repo, sub_bases, info)
        try:
            merged = merge_trees(repo, base_tree, acc.tree, other.tree)
        except ConflictError:
            # git keeps conflict markers in the virtual base; we keep ours,
            # so a real conflict still surfaces in the final merge.
            merged = acc.tree
        acc = repo.write_commit(merged, [acc, other], Info(message="virtual merge base"))
    return acc.tree
