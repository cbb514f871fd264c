"""Immutable, lazy trees (git tree objects), shared between versions.

A :class:`Tree` is one directory. Its state is explicit, as in Irmin's
``tree.ml``:

* *lazy*: only ``_oid`` is known; the node loads from the store on first use
  (through the repository's bounded node cache);
* *loaded*: ``_raw`` is the node's git object (header and body) and
  ``_shape`` says what is where in it (a :class:`_Shape`: names in git order,
  their positions, modes and where each entry ends); ``_over`` maps the names
  of children that
  live in memory only (a new :class:`Tree` or a pending blob) to them.

A write below a node usually changes one child's id and nothing else, so the
new version shares its parent's shape and gets an object that is the old one
with 20 bytes spliced in (same size, so same header): one ``bytes`` copy of
contiguous memory, hashed and stored as it is, and no per-entry objects
touched, which is what keeps commits to large directories cheap. Only adding, removing or re-kinding an entry makes a new shape.
Unchanged subtrees are shared; a commit writes only the nodes on changed
paths; ids are computed on demand and cached; reading one path loads only the
nodes on that path.
"""

from __future__ import annotations

import bisect
from sys import intern
from collections.abc import Callable, Iterator
from itertools import accumulate
from operator import add, methodcaller
from typing import TYPE_CHECKING, Literal

from .errors import InvalidPath, NotFoundError, PathError
from .objects import BLOB_MODES, MODE_FILE, MODE_TREE, MalformedObject, ObjectFormat, encode_name
from .path import Path, PathLike, parse, show

if TYPE_CHECKING:
    from .repo import Repo

Kind = Literal["contents", "node"]


class _Pending:
    """A blob made in memory: its canonical bytes, written at commit."""

    __slots__ = ("mode", "oid", "raw", "hlen")

    def __init__(self, mode: bytes, oid: bytes, raw: bytes, hlen: int) -> None:
        self.mode = mode
        self.oid = oid
        self.raw = raw
        self.hlen = hlen

    @property
    def data(self) -> bytes:
        return self.raw[self.hlen :]


Entry = "tuple[bytes, bytes] | _Pending | Tree"

_decode = methodcaller("decode", "utf-8", "surrogateescape")
_NO_CHILDREN: dict[str, Entry] = {}  # shared; never mutated
_EMPTY_RAW = b"tree 0\0"


def _entry_is_tree(e: object) -> bool:
    if type(e) is tuple:
        return e[0] is MODE_TREE  # type: ignore[index]
    return type(e) is Tree


class _Shape:
    """What the versions of one directory share while only child ids change:
    names in git order, each name's position, mode (interned) and the offset
    where its encoded entry ends in the object (``hl``, the header's length,
    is where the first one starts); sort keys are made on demand."""

    __slots__ = ("names", "pos", "modes", "ends", "keys", "idl", "hl")

    def __init__(self, names: list[str], modes: list[bytes], ends: list[int], idl: int, hl: int,
                 keys: list[bytes] | None = None) -> None:
        self.names = names
        self.modes = modes
        self.ends = ends
        self.idl = idl
        self.hl = hl
        self.pos = dict(zip(names, range(len(names))))
        self.keys = keys

    @classmethod
    def parse(cls, fmt: ObjectFormat, body: bytes, hl: int) -> _Shape:
        """The shape of a stored body behind a header of ``hl`` bytes,
        validated (by C-level maps, no Python loop per entry)."""
        modes, raw_names, _oids = fmt.parse_tree_columns(body)
        names = list(map(intern, map(_decode, raw_names)))  # interned: lookups compare by identity
        fixed = 2 + fmt.id_len  # " ", NUL and the id
        ends = list(map(add, accumulate(map(add, map(len, modes), map(len, raw_names))),
                        range(hl + fixed, hl + fixed * (len(names) + 1), fixed)))
        shape = cls(names, modes, ends, fmt.id_len, hl)
        if len(shape.pos) != len(names):
            raise MalformedObject("tree has two entries with one name")
        return shape

    def sort_keys(self) -> list[bytes]:
        """git's sort key of each entry (a node's name ends with ``/``)."""
        keys = self.keys
        if keys is None:
            keys = [encode_name(n) + b"/" if m is MODE_TREE else encode_name(n)
                    for n, m in zip(self.names, self.modes)]
            self.keys = keys
        return keys


class Tree:
    """An immutable directory node. See the module docstring for its states."""

    __slots__ = ("_repo", "_oid", "_shape", "_raw", "_over", "_origin", "_new")

    def __init__(self, repo: Repo, oid: bytes | None = None) -> None:
        self._repo = repo
        self._oid = oid
        self._shape: _Shape | None = None
        self._raw = _EMPTY_RAW
        self._over: dict[str, Entry] = _NO_CHILDREN
        if oid is None:
            self._shape = _Shape([], [], [], repo.fmt.id_len, len(_EMPTY_RAW), [])
        #: Id of the stored version this in-memory node was derived from.
        self._origin: bytes | None = None
        #: Made in memory and not exported yet (its id may be known: hash()).
        self._new = oid is None

    # -- loading --------------------------------------------------------------

    def _load(self) -> _Shape:
        shape = self._shape
        if shape is None:
            assert self._oid is not None
            src = self._repo._nodes.get(self._oid)
            if src is not None and src._shape is not None and not src._over:
                # Another instance of the same node is loaded: share it (clean
                # nodes never change their shape or body).
                self._raw = src._raw
                shape = self._shape = src._shape
            else:
                raw, body = self._repo._read_tree(self._oid)
                shape = _Shape.parse(self._repo.fmt, body, len(raw) - len(body))
                self._raw = raw
                self._shape = shape
                self._repo._nodes.put(self._oid, self)
        return shape

    def _entry(self, name: str) -> Entry | None:
        """The child ``name``: an in-memory one, or a clean ``(mode, id)``."""
        shape = self._shape
        if shape is None:
            shape = self._load()
        over = self._over
        if over:
            e = over.get(name)
            if e is not None:
                return e
        i = shape.pos.get(name)
        if i is None:
            return None
        end = shape.ends[i]
        return shape.modes[i], self._raw[end - shape.idl : end]

    def _mapping(self) -> dict[str, Entry]:
        """Every child by name (for merges and diffs, which visit them all)."""
        shape = self._load()
        body, idl, over = self._raw, shape.idl, self._over
        out: dict[str, Entry] = {
            n: (m, body[e - idl : e]) for n, m, e in zip(shape.names, shape.modes, shape.ends)
        }
        if over:
            out.update(over)
        return out

    def _as_tree(self, e: Entry) -> Tree:
        if type(e) is Tree:
            return e
        return self._repo.tree(e[1])  # type: ignore[index]

    def _blob(self, e: Entry) -> bytes:
        if type(e) is _Pending:
            return e.data
        return self._repo._read_blob(e[1])  # type: ignore[index]

    # -- identity -------------------------------------------------------------

    def hash(self) -> bytes:
        """The tree's object id (computed once, then cached)."""
        oid = self._oid
        if oid is None:
            oid = self._repo.fmt.hash_raw(self._serialize(None))
            self._oid = oid
        return oid

    @property
    def id(self) -> str:
        return self.hash().hex()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tree) and self.hash() == other.hash()

    def __hash__(self) -> int:
        return hash(self.hash())

    def __repr__(self) -> str:
        return f"<Tree {self.hash().hex()[:12]}>"

    def is_empty(self) -> bool:
        return not self._load().names

    # -- reads ----------------------------------------------------------------

    def _walk(self, steps: Path) -> Entry | Tree | None:
        """The entry at ``steps`` (the tree itself for the root), or None."""
        node: Tree = self
        last = len(steps) - 1
        for i, step in enumerate(steps):
            shape = node._shape
            if shape is None:
                shape = node._load()
            over = node._over
            e = over.get(step) if over else None
            if e is None:
                j = shape.pos.get(step)
                if j is None:
                    return None
                end = shape.ends[j]
                mode = shape.modes[j]
                if i == last:
                    return mode, node._raw[end - shape.idl : end]
                if mode is not MODE_TREE:
                    return None
                node = self._repo.tree(node._raw[end - shape.idl : end])
            elif i == last:
                return e
            elif type(e) is Tree:
                node = e
            else:
                return None
        return node

    def find(self, path: PathLike) -> bytes | None:
        """The contents at ``path`` as bytes, or ``None`` (absent or a node)."""
        e = self._walk(parse(path))
        if e is None or _entry_is_tree(e):
            return None
        return self._blob(e)  # type: ignore[arg-type]

    def get(self, path: PathLike) -> bytes:
        """The contents at ``path``; :class:`NotFoundError` if there are none."""
        return self._get_steps(parse(path))

    def _get_steps(self, steps: Path) -> bytes:
        e = self._walk(steps)
        if type(e) is tuple and e[0] is not MODE_TREE:
            return self._repo._read_blob(e[1])
        if e is None or _entry_is_tree(e):
            raise NotFoundError(f"no contents at {show(steps) or '/'}")
        return self._blob(e)  # type: ignore[arg-type]

    def find_tree(self, path: PathLike) -> Tree | None:
        e = self._walk(parse(path))
        if e is None or not _entry_is_tree(e):
            return None
        return self._as_tree(e)  # type: ignore[arg-type]

    def get_tree(self, path: PathLike) -> Tree:
        steps = parse(path)
        t = self.find_tree(steps)
        if t is None:
            raise NotFoundError(f"no node at {show(steps) or '/'}")
        return t

    def kind(self, path: PathLike) -> Kind | None:
        """``"contents"``, ``"node"`` or ``None`` for what is at ``path``."""
        e = self._walk(parse(path))
        if e is None:
            return None
        return "node" if _entry_is_tree(e) else "contents"

    def mem(self, path: PathLike) -> bool:
        return self.kind(path) == "contents"

    def mem_tree(self, path: PathLike) -> bool:
        return self.kind(path) == "node"

    def mode(self, path: PathLike) -> bytes | None:
        """The git mode of the entry at ``path`` (``None`` for the root/absent)."""
        steps = parse(path)
        e = self._walk(steps)
        if e is None or not steps:
            return None
        return _entry_mode(e)  # type: ignore[arg-type]

    def list(
        self, path: PathLike = (), offset: int = 0, length: int | None = None
    ) -> list[tuple[str, Kind]]:
        """Children of the node at ``path`` in git order, paginated."""
        t = self.find_tree(path) if path else self
        if t is None:
            return []
        shape = t._load()
        end = None if length is None else offset + length
        return [(n, "node" if m is MODE_TREE else "contents")
                for n, m in zip(shape.names[offset:end], shape.modes[offset:end])]

    def __len__(self) -> int:
        return len(self._load().names)

    def names(self) -> list[str]:
        return list(self._load().names)

    def walk(
        self, max_depth: int | None = None, prefix: Path = ()
    ) -> Iterator[tuple[Path, bytes]]:
        """Every ``(path, contents)`` below this node, depth first, in git
        order; ``max_depth`` limits how many levels are visited (1: only
        direct children)."""
        if max_depth is not None and max_depth <= 0:
            return
        for name, e in self._mapping().items():
            p = prefix + (name,)
            if _entry_is_tree(e):
                yield from self._as_tree(e).walk(  # type: ignore[arg-type]
                    None if max_depth is None else max_depth - 1, p
                )
            else:
                yield p, self._blob(e)  # type: ignore[arg-type]

    def fold(
        self,
        f: Callable[[Path, bytes, object], object],
        acc: object,
        max_depth: int | None = None,
    ) -> object:
        """Irmin's fold: ``acc = f(path, contents, acc)`` over :meth:`walk`."""
        for p, v in self.walk(max_depth):
            acc = f(p, v, acc)
        return acc

    # -- writes ---------------------------------------------------------------

    def _pending(self, value: bytes, mode: bytes) -> _Pending:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"tree contents are bytes, not {type(value).__name__}")
        value = bytes(value)
        header = b"blob %d\0" % len(value)
        raw = header + value
        return _Pending(mode, self._repo.fmt.hash_raw(raw), raw, len(header))

    def set(self, path: PathLike, value: bytes, mode: bytes = MODE_FILE) -> Tree:
        """A tree with ``value`` at ``path`` (parents made as needed; contents
        standing on the way are replaced by nodes)."""
        steps = parse(path)
        if not steps:
            raise InvalidPath("cannot set contents at the root")
        if mode not in BLOB_MODES:
            raise PathError(f"mode {mode!r} is not a contents mode")
        return self._update(steps, 0, self._pending(value, BLOB_MODES[mode]))

    def _set_exported(self, steps: Path, value: bytes, out: list[tuple[bytes, bytes]]) -> Tree:
        """:meth:`set`, then export, for a write about to be committed: the
        new nodes above the changed one are made clean at once (id spliced
        into the parent's object, hashed, cached, appended to ``out``) rather
        than kept in memory and walked again by :meth:`_export`."""
        if self._oid is None or self._over or not steps:
            return self.set(steps, value)
        repo = self._repo
        chain: list[tuple[Tree, int]] = []
        node = self
        last = len(steps) - 1
        for k, name in enumerate(steps):
            shape = node._shape
            if shape is None:
                shape = node._load()
            i = shape.pos.get(name)
            if i is None or (shape.modes[i] is not MODE_TREE if k < last else shape.modes[i] is not MODE_FILE):
                return self.set(steps, value)  # a node to make, or a new or other kind of entry
            chain.append((node, i))
            if k < last:
                end = shape.ends[i]
                node = repo.tree(node._raw[end - shape.idl : end])
        if type(value) is not bytes:
            return self.set(steps, value)  # checked and converted there
        hash_raw = repo.fmt.hash_raw
        raw = b"blob %d\0%s" % (len(value), value)
        oid = hash_raw(raw)
        end = shape.ends[i]
        if node._raw[end - shape.idl : end] == oid:
            return self  # the same contents: nothing to write
        out.append((oid, raw))
        nodes = repo._nodes
        for node, i in reversed(chain):
            shape = node._shape
            end = shape.ends[i]  # type: ignore[union-attr]
            raw = node._raw
            raw = raw[: end - shape.idl] + oid + raw[end:]  # type: ignore[union-attr]
            oid = hash_raw(raw)
            t = _node(repo, oid, shape, raw, _NO_CHILDREN, node._oid, False)  # type: ignore[arg-type]
            out.append((oid, raw))
            nodes.replace(node._oid, oid, t)  # type: ignore[arg-type]
        return t

    def remove(self, path: PathLike) -> Tree:
        """A tree without the contents or node at ``path``; emptied parents go."""
        steps = parse(path)
        if not steps:
            return Tree(self._repo)
        return self._update(steps, 0, None)

    def set_tree(self, path: PathLike, tree: Tree) -> Tree:
        """A tree with ``tree`` grafted at ``path`` (an empty one removes)."""
        steps = parse(path)
        if not isinstance(tree, Tree):
            raise TypeError("set_tree takes a Tree")
        if tree._repo is not self._repo and tree._repo.backend is not self._repo.backend:
            raise ValueError("cannot graft a tree from another store")
        if not steps:
            return tree
        return self._update(steps, 0, None if tree.is_empty() else tree)

    def _update(self, steps: Path, i: int, leaf: Entry | None) -> Tree:
        name = steps[i]
        shape = self._shape
        if shape is None:
            shape = self._load()
        over = self._over
        old = over.get(name) if over else None
        if old is None:  # as _entry does, inline: this runs for every level of every write
            j = shape.pos.get(name)
            if j is not None:
                end = shape.ends[j]
                old = (shape.modes[j], self._raw[end - shape.idl : end])
        if i + 1 < len(steps):
            kind = type(old)
            if kind is Tree:
                sub = old
            elif kind is tuple and old[0] is MODE_TREE:  # type: ignore[index]
                sub = self._repo.tree(old[1])  # type: ignore[index]
            elif leaf is None:
                return self  # removing below something that is not a node
            else:
                sub = Tree(self._repo)
            new_sub = sub._update(steps, i + 1, leaf)  # type: ignore[union-attr]
            if new_sub is sub:
                return self
            child: Entry | None = new_sub if new_sub._load().names else None
        else:
            child = leaf
        return self._with(name, old, child)

    def _with(self, name: str, old: Entry | None, child: Entry | None) -> Tree:
        """This tree with entry ``name`` replaced by ``child`` (None: removed).

        ``child`` is a clean ``(mode, id)`` reference, a pending blob or a Tree.
        When only the child's id changes, the new version shares this one's
        shape and splices the id into a copy of the body.
        """
        if old is None or child is None:
            if old is None and child is None:
                return self
            return self._reshape(name, old, child)
        kind = type(child)
        if kind is Tree:
            mode, oid = MODE_TREE, child._oid  # type: ignore[union-attr]
        elif kind is tuple:
            mode, oid = child  # type: ignore[misc]
        else:
            mode, oid = child.mode, child.oid  # type: ignore[union-attr]
        shape = self._shape
        assert shape is not None
        i = shape.pos[name]
        if shape.modes[i] != mode:
            return self._reshape(name, old, child)
        if kind is not Tree and _entry_id(old) == oid:
            return self  # the same entry as before: keep sharing
        body = self._raw
        over = self._over
        if oid is not None:
            end = shape.ends[i]
            body = body[: end - shape.idl] + oid + body[end:]
        if kind is tuple:
            if name in over:
                over = over.copy()
                del over[name]
        else:
            over = over.copy()
            over[name] = child
        return self._derive(shape, body, over)

    def _reshape(self, name: str, old: Entry | None, child: Entry | None) -> Tree:
        """:meth:`_with` when a name comes or goes or an entry changes kind or
        mode: a new shape for the new version."""
        shape = self._shape
        assert shape is not None
        idl = shape.idl
        names, modes, keys = shape.names.copy(), shape.modes.copy(), shape.sort_keys().copy()
        hl = shape.hl
        ends = [e - hl for e in shape.ends]  # offsets in the body, while it changes
        body = self._raw[hl:]
        over = self._over.copy()
        over.pop(name, None)
        if old is not None:
            i = shape.pos[name]
            start, end = ends[i - 1] if i else 0, ends[i]
            body = body[:start] + body[end:]
            gone = end - start
            ends = ends[:i] + [e - gone for e in ends[i + 1 :]]
            del names[i], modes[i], keys[i]
        if child is not None:
            kind = type(child)
            if kind is Tree:
                mode, oid = MODE_TREE, child._oid or bytes(idl)  # type: ignore[union-attr]
            elif kind is tuple:
                mode, oid = child  # type: ignore[misc]
            else:
                mode, oid = child.mode, child.oid  # type: ignore[union-attr]
            if kind is not tuple:
                over[name] = child
            raw = encode_name(name)
            key = raw + b"/" if mode is MODE_TREE else raw
            j = bisect.bisect_left(keys, key)
            enc = self._repo.fmt.tree_entry(mode, raw, oid)
            start = ends[j - 1] if j else 0
            body = body[:start] + enc + body[start:]
            n = len(enc)
            ends = ends[:j] + [start + n] + [e + n for e in ends[j:]]
            names.insert(j, name)
            modes.insert(j, mode)
            keys.insert(j, key)
        header = b"tree %d\0" % len(body)
        hl = len(header)
        ends = [e + hl for e in ends]
        return self._derive(_Shape(names, modes, ends, idl, hl, keys), header + body, over or _NO_CHILDREN)

    def _derive(self, shape: _Shape, raw: bytes, over: dict[str, Entry]) -> Tree:
        """A new version of this node with the given shape, object bytes and
        in-memory children."""
        origin = self._oid if self._oid is not None else self._origin
        return _node(self._repo, None, shape, raw, over, origin, True)

    # -- encoding and export ----------------------------------------------------

    def _serialize(self, out: list[tuple[bytes, bytes]] | None) -> bytes:
        """This node's object (canonical form); with ``out``, also append
        every new object below and turn in-memory children into clean
        references."""
        shape = self._load()
        over = self._over
        body = self._raw
        if over:
            idl, ends, pos = shape.idl, shape.ends, shape.pos
            for name, e in over.items():
                if type(e) is Tree:
                    oid = e._export(out) if out is not None else e.hash()
                    end = ends[pos[name]]
                    if body[end - idl : end] != oid:
                        body = body[: end - idl] + oid + body[end:]
                elif out is not None:
                    out.append((e.oid, e.raw))  # type: ignore[union-attr]
            self._raw = body
            if out is not None:
                self._over = _NO_CHILDREN
        return body

    def _export(self, out: list[tuple[bytes, bytes]]) -> bytes:
        """Append this tree's new objects to ``out``; return its id."""
        if not self._new:
            assert self._oid is not None
            return self._oid
        raw = self._serialize(out)
        self._new = False
        repo = self._repo
        oid = self._oid
        if oid is None:
            oid = self._oid = repo.fmt.hash_raw(raw)
        out.append((oid, raw))
        nodes = repo._nodes
        origin = self._origin
        if origin is not None and origin != oid:
            nodes.demote(origin)  # superseded by this version
        nodes.put(oid, self)
        return oid

    # -- diff -----------------------------------------------------------------

    def diff(self, other: Tree, prefix: Path = ()) -> list[tuple[Path, str, bytes | None, bytes | None]]:
        """``[(path, change, old, new)]`` from ``self`` to ``other`` where change
        is ``added``, ``removed`` or ``updated``; unchanged subtrees are
        skipped by id without being loaded."""
        out: list[tuple[Path, str, bytes | None, bytes | None]] = []
        self._diff_into(other, prefix, out)
        return out

    def _diff_into(self, other: Tree, prefix: Path, out: list) -> None:  # type: ignore[type-arg]
        if self.hash() == other.hash():
            return
        a = self._mapping()
        b = other._mapping()
        names = sorted(a.keys() | b.keys())
        for name in names:
            ea, eb = a.get(name), b.get(name)
            p = prefix + (name,)
            ta = ea is not None and _entry_is_tree(ea)
            tb = eb is not None and _entry_is_tree(eb)
            if ea is not None and eb is not None and _entry_id(ea) == _entry_id(eb):
                continue
            if ta and tb:
                self._as_tree(ea)._diff_into(other._as_tree(eb), p, out)  # type: ignore[arg-type]
                continue
            if ta:
                for q, v in self._as_tree(ea).walk(prefix=p):  # type: ignore[arg-type]
                    out.append((q, "removed", v, None))
            elif ea is not None:
                if eb is not None and not tb:
                    out.append((p, "updated", self._blob(ea), other._blob(eb)))
                    continue
                out.append((p, "removed", self._blob(ea), None))
            if tb:
                for q, v in other._as_tree(eb).walk(prefix=p):  # type: ignore[arg-type]
                    out.append((q, "added", None, v))
            elif eb is not None:
                out.append((p, "added", None, other._blob(eb)))


def _node(repo: Repo, oid: bytes | None, shape: _Shape, raw: bytes, over: dict[str, Entry],
          origin: bytes | None, new: bool) -> Tree:
    """A loaded node made from its parts (no load, no checks: the callers
    derive it from a node already loaded)."""
    t = Tree.__new__(Tree)
    t._repo = repo
    t._oid = oid
    t._shape = shape
    t._raw = raw
    t._over = over
    t._origin = origin
    t._new = new
    return t


def _entry_mode(e: Entry) -> bytes:
    if type(e) is tuple:
        return e[0]  # type: ignore[index,no-any-return]
    if type(e) is Tree:
        return MODE_TREE
    return e.mode  # type: ignore[union-attr]


def _entry_id(e: Entry) -> bytes:
    if type(e) is tuple:
        return e[1]  # type: ignore[index,no-any-return]
    if type(e) is Tree:
        return e.hash()
    return e.oid  # type: ignore[union-attr]
