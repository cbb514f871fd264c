"""Immutable, lazy trees (git tree objects), shared between versions.

A :class:`Tree` is one directory. Its state is explicit, as in Irmin's
``tree.ml``:

* *lazy*: only ``_oid`` is known; entries load from the store on first use
  (through the repository's bounded node cache);
* *loaded*: ``_entries`` maps each name to a clean reference ``(mode, id)``,
  or to an in-memory child: a :class:`Tree` or a pending blob not yet written;
* ``_order`` holds the names in git's order; ``_keys`` and ``_encl``, made
  the first time a node is changed, hold each entry's sort key and encoded
  bytes in the same order, so writing a node of 1,000 entries after one
  change is one list copy and one ``bytes.join``; ``_dirty`` names the
  children that are in memory only.

Every change returns a new Tree that copies one dict per level on the path
and shares the rest, so unchanged subtrees are shared and a commit writes
only the nodes on changed paths. Ids are computed on demand and cached.
Reading one path loads only the nodes on that path.
"""

from __future__ import annotations

import bisect
from operator import methodcaller
from collections.abc import Callable, Iterator
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


def _entry_is_tree(e: object) -> bool:
    if type(e) is tuple:
        return e[0] is MODE_TREE  # type: ignore[index]
    return type(e) is Tree


class Tree:
    """An immutable directory node. See the module docstring for its states."""

    __slots__ = ("_repo", "_oid", "_entries", "_order", "_keys", "_encl", "_dirty", "_origin")

    def __init__(self, repo: Repo, oid: bytes | None = None) -> None:
        self._repo = repo
        self._oid = oid
        self._entries: dict[str, Entry] | None = None if oid is not None else {}
        self._order: list[str] | None = None if oid is not None else []
        self._keys: list[bytes] | None = None if oid is not None else []
        self._encl: list[bytes | None] | None = None if oid is not None else []
        self._dirty: frozenset[str] = frozenset()
        #: Id of the stored version this in-memory node was derived from.
        self._origin: bytes | None = None

    # -- loading --------------------------------------------------------------

    def _load(self) -> dict[str, Entry]:
        entries = self._entries
        if entries is None:
            assert self._oid is not None
            src = self._repo._nodes.get(self._oid)
            if src is not None and src._entries is not None:
                # Another instance of the same node is loaded: share its dicts
                # (clean nodes never change them in place).
                self._order, self._keys, self._encl = src._order, src._keys, src._encl
                entries = self._entries = src._entries
            else:
                entries, self._order = self._repo._read_tree_node(self._oid)
                self._entries = entries
                self._repo._nodes.put(self._oid, self)
        return entries

    def _writable(self) -> tuple[list[bytes], list[bytes | None]]:
        """Sort keys and encoded entries in git order (made once per node)."""
        keys = self._keys
        if keys is None and self._oid is not None and not self._dirty:
            # A clean node: its stored body already holds every entry encoded.
            entries = self._load()
            fmt = self._repo.fmt
            _kind, body = self._repo.read_object(self._oid)
            encl_clean: list[bytes | None] = fmt.raw_tree_entries(body)  # type: ignore[assignment]
            order = self._order
            assert order is not None
            keys = [encode_name(n) for n in order]
            for i, n in enumerate(order):
                if _entry_is_tree(entries[n]):
                    keys[i] += b"/"
            self._encl = encl_clean
            self._keys = keys
            return keys, encl_clean
        if keys is None:
            entries = self._load()
            te = self._repo.fmt.tree_entry
            keys = []
            encl: list[bytes | None] = []
            for name in self._order:  # type: ignore[union-attr]
                e = entries[name]
                raw = encode_name(name)
                if type(e) is tuple:
                    mode, oid = e  # type: ignore[misc]
                    keys.append(raw + b"/" if mode is MODE_TREE else raw)
                    encl.append(te(mode, raw, oid))
                elif type(e) is Tree:
                    keys.append(raw + b"/")
                    encl.append(None if e._oid is None else te(MODE_TREE, raw, e._oid))
                else:
                    keys.append(raw)
                    encl.append(te(e.mode, raw, e.oid))  # type: ignore[union-attr]
            self._encl = encl
            self._keys = keys
        return keys, self._encl  # type: ignore[return-value]

    def _child(self, name: str) -> Entry | None:
        return self._load().get(name)

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
            oid = self._repo.fmt.hash_object(b"tree", self._serialize(None))
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
        return not self._load()

    # -- reads ----------------------------------------------------------------

    def _walk(self, steps: Path) -> Entry | Tree | None:
        """The entry at ``steps`` (the tree itself for the root), or None."""
        node: Tree = self
        last = len(steps) - 1
        for i, step in enumerate(steps):
            entries = node._entries
            if entries is None:
                entries = node._load()
            e = entries.get(step)
            if e is None:
                return None
            if i == last:
                return e
            if type(e) is Tree:
                node = e
            elif type(e) is tuple and e[0] is MODE_TREE:
                node = self._repo.tree(e[1])
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
        if type(e) is tuple:
            return e[0]  # type: ignore[index]
        return MODE_TREE if type(e) is Tree else e.mode  # type: ignore[union-attr]

    def list(
        self, path: PathLike = (), offset: int = 0, length: int | None = None
    ) -> list[tuple[str, Kind]]:
        """Children of the node at ``path`` in git order, paginated."""
        t = self.find_tree(path) if path else self
        if t is None:
            return []
        t._load()
        order = t._order
        assert order is not None and t._entries is not None
        end = None if length is None else offset + length
        entries = t._entries
        return [(n, "node" if _entry_is_tree(entries[n]) else "contents") for n in order[offset:end]]

    def __len__(self) -> int:
        return len(self._load())

    def names(self) -> list[str]:
        self._load()
        return list(self._order or ())

    def walk(
        self, max_depth: int | None = None, prefix: Path = ()
    ) -> Iterator[tuple[Path, bytes]]:
        """Every ``(path, contents)`` below this node, depth first, in git
        order; ``max_depth`` limits how many levels are visited (1: only
        direct children)."""
        if max_depth is not None and max_depth <= 0:
            return
        entries = self._load()
        for name in list(self._order or ()):
            e = entries[name]
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
        fmt = self._repo.fmt
        header = b"blob %d\0" % len(value)
        raw = header + value
        return _Pending(mode, fmt.hash_raw(raw), raw, len(header))

    def set(self, path: PathLike, value: bytes, mode: bytes = MODE_FILE) -> Tree:
        """A tree with ``value`` at ``path`` (parents made as needed; contents
        standing on the way are replaced by nodes)."""
        steps = parse(path)
        if not steps:
            raise InvalidPath("cannot set contents at the root")
        if mode not in BLOB_MODES:
            raise PathError(f"mode {mode!r} is not a contents mode")
        return self._update(steps, 0, self._pending(value, mode))

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
        entries = self._load()
        old = entries.get(name)
        if i + 1 < len(steps):
            if old is not None and _entry_is_tree(old):
                sub = self._as_tree(old)  # type: ignore[arg-type]
            else:
                if leaf is None:
                    return self  # removing below something that is not a node
                sub = Tree(self._repo)
            new_sub = sub._update(steps, i + 1, leaf)
            if new_sub is sub:
                return self
            child: Entry | None = None if new_sub.is_empty() else new_sub
        else:
            child = leaf
        return self._with(name, old, child)

    def _with(self, name: str, old: Entry | None, child: Entry | None) -> Tree:
        """This tree with entry ``name`` replaced by ``child`` (None: removed).

        ``child`` is a clean ``(mode, id)`` reference, a pending blob or a Tree.
        """
        if child is None and old is None:
            return self
        if old is not None and child is not None and type(child) is not Tree:
            # Same entry as before: nothing changes, keep sharing.
            if _entry_mode(old) == _entry_mode(child) and _entry_id(old) == _entry_id(child):
                return self
        keys, encl = self._writable()
        entries = dict(self._entries)  # type: ignore[arg-type]
        order = self._order
        assert order is not None
        dirty = set(self._dirty)
        raw = encode_name(name)
        i = -1
        was_tree = False
        if old is not None:
            was_tree = _entry_is_tree(old)
            i = bisect.bisect_left(keys, raw + b"/" if was_tree else raw)
        if child is None:
            del entries[name]
            order, keys, encl = order.copy(), keys.copy(), encl.copy()
            del order[i], keys[i], encl[i]
            dirty.discard(name)
        else:
            entries[name] = child
            te = self._repo.fmt.tree_entry
            kind = type(child)
            enc: bytes | None
            if kind is tuple:
                mode, oid = child  # type: ignore[misc]
                is_tree = mode is MODE_TREE
                enc = te(mode, raw, oid)
                dirty.discard(name)
            elif kind is Tree:
                is_tree = True
                coid = child._oid  # type: ignore[union-attr]
                enc = None if coid is None else te(MODE_TREE, raw, coid)
                dirty.add(name)
            else:
                is_tree = False
                enc = te(child.mode, raw, child.oid)  # type: ignore[union-attr]
                dirty.add(name)
            encl = encl.copy()
            if old is not None and was_tree == is_tree:
                encl[i] = enc
            else:
                order, keys = order.copy(), keys.copy()
                if old is not None:
                    del order[i], keys[i], encl[i]
                key = raw + b"/" if is_tree else raw
                j = bisect.bisect_left(keys, key)
                order.insert(j, name)
                keys.insert(j, key)
                encl.insert(j, enc)
        t = Tree.__new__(Tree)
        t._repo = self._repo
        t._oid = None
        t._entries = entries
        t._order = order
        t._keys = keys
        t._encl = encl
        t._dirty = frozenset(dirty)
        t._origin = self._oid if self._oid is not None else self._origin
        return t

    # -- encoding and export ----------------------------------------------------

    def _serialize(self, out: list[tuple[bytes, bytes]] | None) -> bytes:
        """This node's body; with ``out``, also append every new object below
        (canonical form) and turn in-memory children into clean references."""
        entries = self._load()
        keys, encl = self._writable()
        te = self._repo.fmt.tree_entry
        for name in self._dirty:
            e = entries[name]
            if type(e) is Tree:
                oid = e._export(out) if out is not None else e.hash()
                raw = encode_name(name)
                i = bisect.bisect_left(keys, raw + b"/")
                if encl[i] is None:
                    encl[i] = te(MODE_TREE, raw, oid)
                if out is not None:
                    entries[name] = (MODE_TREE, oid)
            elif type(e) is _Pending and out is not None:
                out.append((e.oid, e.raw))
                entries[name] = (e.mode, e.oid)
        if out is not None:
            self._dirty = frozenset()
        return b"".join(encl)  # type: ignore[arg-type]

    def _export(self, out: list[tuple[bytes, bytes]]) -> bytes:
        """Append this tree's new objects to ``out``; return its id."""
        if self._entries is None or (not self._dirty and self._oid is not None):
            assert self._oid is not None
            return self._oid
        body = self._serialize(out)
        header = b"tree %d\0" % len(body)
        raw = header + body
        oid = self._oid
        if oid is None:
            oid = self._repo.fmt.hash_raw(raw)
            self._oid = oid
        out.append((oid, raw))
        nodes = self._repo._nodes
        if self._origin is not None and self._origin != oid:
            nodes.demote(self._origin)  # superseded by this version
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
        a = self._load()
        b = other._load()
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


_decode = methodcaller("decode", "utf-8", "surrogateescape")


def decode_tree_body(fmt: ObjectFormat, body: bytes) -> tuple[dict[str, Entry], list[str]]:
    """A validated tree body → the loaded-node dict and git order, built by
    C-level maps and zips (no Python loop per entry)."""
    modes, names, oids = fmt.parse_tree_columns(body)
    order = list(map(_decode, names))
    entries: dict[str, Entry] = dict(zip(order, zip(modes, oids)))
    if len(entries) != len(order):
        raise MalformedObject("tree has two entries with one name")
    return entries, order
