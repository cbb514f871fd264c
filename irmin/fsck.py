"""``irmin fsck``: is every object reachable from every ref present and sound?

The check walks from every ref (branches, tags, the gc boundary list...)
through commits, trees and blobs, reading each object once, in batches
(``get_many``). Every object read is re-hashed (its id must be the hash of
its bytes) and decoded strictly (``fmt.check``); a tree's entries must point
at objects of the kind their mode promises (a ``40000`` entry at a tree, a
file or symlink at a blob; gitlinks name commits of other repositories and
are not followed).

The result is a :class:`FsckReport`:

* ``missing``: reachable ids the store does not hold, with where they were
  needed (``refs/heads/main`` > commit > path in its tree);
* ``corrupt``: objects that do not hash to their id, do not decode, are of
  the wrong kind, or that the backend reports damaged (checksums);
* ``dangling``: ids stored but reachable from no ref (harmless: a failed
  compare-and-set, an interrupted copy or a ``gc`` not yet run leaves them).

``clean`` means no missing and no corrupt objects; dangling ones do not make
a store unclean (as with ``git fsck``). Commits on the gc boundary (see
:mod:`irmin.boundary`) are checked but their parents are not followed: a
windowed ``gc`` deleted them on purpose.

The check is a point-in-time one and safe to run while others write: the
stored ids are listed before the refs are read, so objects written
meanwhile are neither reported dangling nor, being reachable only from newer
ref values, looked for.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from irmin.backends.errors import CorruptStore, MalformedObject

from .boundary import read_boundary
from .objects import BLOB_MODES, MODE_GITLINK, MODE_TREE
from .progress import bar

if TYPE_CHECKING:
    from .repo import Repo

__all__ = ["Problem", "FsckReport", "fsck"]


@dataclass(frozen=True)
class Problem:
    """One missing or corrupt object and where it was needed."""

    oid: str
    kind: str  # the kind expected there: commit, tree, blob, tag or object
    where: str
    reason: str = ""

    def __str__(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"{self.kind} {self.oid} (at {self.where}){why}"


@dataclass
class FsckReport:
    missing: list[Problem] = field(default_factory=list)
    corrupt: list[Problem] = field(default_factory=list)
    dangling: list[str] = field(default_factory=list)
    checked: int = 0
    refs: int = 0
    #: Commits on the gc boundary (their parents were cut on purpose).
    boundary: int = 0

    @property
    def clean(self) -> bool:
        return not self.missing and not self.corrupt

    def summary(self) -> str:
        state = "clean" if self.clean else "NOT CLEAN"
        return (f"{state}: {self.checked} objects checked from {self.refs} refs; "
                f"{len(self.missing)} missing, {len(self.corrupt)} corrupt, "
                f"{len(self.dangling)} dangling"
                + (f"; {self.boundary} boundary commits (history cut by gc)"
                   if self.boundary else ""))

    def as_dict(self) -> dict[str, object]:
        return {
            "clean": self.clean,
            "checked": self.checked,
            "refs": self.refs,
            "boundary": self.boundary,
            "missing": [p.__dict__ for p in self.missing],
            "corrupt": [p.__dict__ for p in self.corrupt],
            "dangling": list(self.dangling),
        }


def _read_batch(repo: Repo, oids: list[bytes]) -> tuple[dict[bytes, bytes], dict[bytes, str]]:
    """Objects among ``oids``, and the ones the backend itself found damaged."""
    backend = repo.backend
    try:
        return backend.get_many(oids), {}
    except CorruptStore:
        pass
    found: dict[bytes, bytes] = {}
    damaged: dict[bytes, str] = {}
    for oid in oids:
        try:
            raw = backend.get(oid)
        except CorruptStore as e:
            damaged[oid] = f"the store reports damage: {e}"
            continue
        if raw is not None:
            found[oid] = raw
    return found, damaged


def _parse_tag(body: bytes) -> tuple[bytes, bytes]:
    obj = kind = None
    for line in body.split(b"\n\n", 1)[0].split(b"\n"):
        k, _, v = line.partition(b" ")
        if k == b"object" and obj is None:
            obj = v
        elif k == b"type" and kind is None:
            kind = v
    if obj is None or kind is None:
        raise MalformedObject("tag lacks object or type")
    return obj, kind


def fsck(repo: Repo, *, dangling: bool = True, progress: bool | None = None,
         batch: int = 512) -> FsckReport:
    """Check every object reachable from every ref; see the module docstring."""
    fmt = repo.fmt
    backend = repo.backend
    report = FsckReport()
    stored: set[bytes] | None = set(backend.iter_ids()) if dangling else None
    refs = backend.list_refs()
    report.refs = len(refs)
    _, boundary = read_boundary(repo)

    seen: set[bytes] = set()
    todo: deque[tuple[bytes, bytes, str]] = deque()

    def need(oid: bytes, kind: bytes, where: str) -> None:
        if oid not in seen:
            seen.add(oid)
            todo.append((oid, kind, where))

    for name, oid in sorted(refs.items()):
        if len(oid) != fmt.id_len:
            report.corrupt.append(Problem(oid.hex(), "object", name, "ref holds a malformed id"))
            continue
        need(oid, b"object", name)

    with bar(progress, "fsck", total=len(stored) if stored is not None else None) as pb:
        while todo:
            chunk = [todo.popleft() for _ in range(min(batch, len(todo)))]
            found, damaged = _read_batch(repo, [c[0] for c in chunk])
            for oid, want, where in chunk:
                hexid = oid.hex()
                label = want.decode()
                if oid in damaged:
                    report.corrupt.append(Problem(hexid, label, where, damaged[oid]))
                    continue
                raw = found.get(oid)
                if raw is None:
                    report.missing.append(Problem(hexid, label, where, "not in the store"))
                    continue
                report.checked += 1
                try:
                    kind = fmt.check(oid, raw)
                except MalformedObject as e:
                    report.corrupt.append(Problem(hexid, label, where, str(e)))
                    continue
                if want != b"object" and kind != want:
                    report.corrupt.append(Problem(
                        hexid, label, where, f"is a {kind.decode()}, expected a {label}"))
                    continue
                body = fmt.split(raw)[1]
                short = hexid[:12]
                if kind == b"commit":
                    c = fmt.parse_commit(body)
                    need(c.tree, b"tree", f"{where} > commit {short}:")
                    if oid in boundary:
                        report.boundary += 1
                    else:
                        for p in c.parents:
                            need(p, b"commit", f"parent of commit {short} ({where})")
                elif kind == b"tree":
                    for mode, name, child in fmt.parse_tree(body):
                        sep = "" if where.endswith(":") else "/"
                        path = f"{where}{sep}{name.decode('utf-8', 'surrogateescape')}"
                        if mode is MODE_TREE:
                            need(child, b"tree", path)
                        elif mode in BLOB_MODES:
                            need(child, b"blob", path)
                        elif mode is MODE_GITLINK:
                            continue  # a submodule's commit: not ours to hold
                elif kind == b"tag":
                    try:
                        target, tkind = _parse_tag(body)
                        need(fmt.parse_id(target), tkind if tkind in (
                            b"commit", b"tree", b"blob", b"tag") else b"object",
                            f"{where} > tag {short}")
                    except MalformedObject as e:
                        report.corrupt.append(Problem(hexid, label, where, str(e)))
            pb.update(len(chunk))
            pb.set_postfix_str(f"missing={len(report.missing)} corrupt={len(report.corrupt)}",
                               refresh=False)

    if stored is not None:
        report.dangling = sorted(o.hex() for o in stored - seen)
    return report
