"""Git's object encoding and the hash seam.

Every object is stored in git's canonical form ``b"<type> <size>\\0" + body``
and named by the hash of exactly those bytes, so ids match ``git
hash-object`` and a store can be cloned and checked by git itself.

The hash and the codec sit behind :class:`ObjectFormat`: code above this
module asks ``fmt.hash_object(...)``/``fmt.id_len`` and never calls hashlib or
hard-codes 20, so a second format (SHA-256, or a format that splits large
directories) plugs in here without touching the layers above.

Decoders are strict: anything git's ``fsck --strict`` would reject raises
:class:`MalformedObject`; nothing is ever half-decoded.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple, NewType

from irmin.backends.errors import MalformedObject

__all__ = [
    "ObjectId",
    "ObjectFormat",
    "SHA1",
    "MODE_FILE",
    "MODE_EXEC",
    "MODE_LINK",
    "MODE_TREE",
    "MODE_GITLINK",
    "MalformedObject",
    "Person",
    "CommitData",
    "tree_sort_key",
]

#: Raw (binary) object id; ``.hex()`` gives git's spelling.
ObjectId = NewType("ObjectId", bytes)

MODE_FILE = b"100644"
MODE_EXEC = b"100755"
MODE_LINK = b"120000"
MODE_TREE = b"40000"
MODE_GITLINK = b"160000"
#: Every mode git writes; interned so parsed trees share these objects.
_MODES = {m: m for m in (MODE_FILE, MODE_EXEC, MODE_LINK, MODE_TREE, MODE_GITLINK)}
#: Contents modes, each mapped to its interned constant (tested with ``in``).
_BLOB_MODES = {m: m for m in (MODE_FILE, MODE_EXEC, MODE_LINK)}
_BAD_NAMES = frozenset((b".", b"..", b".git"))
_TYPES = (b"blob", b"tree", b"commit", b"tag")


def tree_sort_key(name: bytes, is_tree: bool) -> bytes:
    """Git sorts tree entries by name bytes, a subtree's name read with a '/'."""
    return name + b"/" if is_tree else name


def encode_name(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def decode_name(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Person:
    """An author or committer line: ``name <email> time tz``."""

    name: str
    email: str
    time: int
    tz_minutes: int = 0

    @cached_property
    def encoded(self) -> bytes:
        """The line as stored (made once: every commit by a writer repeats it)."""
        sign = "-" if self.tz_minutes < 0 else "+"
        tz = abs(self.tz_minutes)
        return (
            f"{self.name} <{self.email}> {self.time} {sign}{tz // 60:02d}{tz % 60:02d}"
        ).encode("utf-8", "surrogateescape")

    def encode(self) -> bytes:
        """The line as stored (public name of :attr:`encoded`)."""
        return self.encoded

    @classmethod
    def parse(cls, raw: bytes) -> Person:
        m = _PERSON.fullmatch(raw)
        if m is None:
            raise MalformedObject(f"bad person line {raw[:80]!r}")
        name, email, time, sign, hh, mm = m.groups()
        tz = int(hh) * 60 + int(mm)
        return cls(
            decode_name(name),
            decode_name(email),
            int(time),
            -tz if sign == b"-" else tz,
        )

    @classmethod
    def from_string(cls, who: str, time: int, tz_minutes: int = 0) -> Person:
        """``"Name <email>"`` or a bare name (its email left empty)."""
        m = re.fullmatch(r"\s*([^<>]*?)\s*<([^<>]*)>\s*", who)
        if m:
            return cls(m.group(1), m.group(2), time, tz_minutes)
        if "<" in who or ">" in who or "\n" in who:
            raise ValueError(f"bad author {who!r}")
        return cls(who.strip(), "", time, tz_minutes)

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


_PERSON = re.compile(rb"([^<>\n]*?) ?<([^<>\n]*)> (\d+) ([+-])(\d\d)(\d\d)")


class CommitData(NamedTuple):
    """The decoded fields of a commit object (a named tuple: one is made per
    commit)."""

    tree: bytes
    parents: tuple[bytes, ...]
    author: Person
    committer: Person
    message: str
    #: Headers we do not interpret (``gpgsig``, ``encoding``...), kept verbatim.
    extra: tuple[tuple[bytes, bytes], ...] = ()


class ObjectFormat:
    """A hash function and git's codec: the one seam for a second format."""

    def __init__(self, name: str, hash_factory: object, id_len: int) -> None:
        self.name = name
        self._new = hash_factory
        self.id_len = id_len
        self.empty_tree_id = self.hash_object(b"tree", b"")
        # Tree bodies are parsed by the regex engine in C: one pass checks the
        # whole framing, one returns the columns; Python only checks order.
        entry = rb"(100644|100755|120000|40000|160000) ([^\0/]+)\0(.{%d})" % id_len
        self._tree_entry_re = re.compile(entry, re.S)
        self._tree_entries_re = re.compile(rb"(?:%s)*" % entry.replace(b"(", b"(?:"), re.S)

    def __repr__(self) -> str:
        return f"<ObjectFormat {self.name}>"

    # -- hashing --------------------------------------------------------------

    def hash_raw(self, raw: bytes) -> bytes:
        """Id of a canonical ``<type> <size>\\0body`` buffer."""
        return self._new(raw).digest()  # type: ignore[operator,no-any-return]

    def hash_object(self, kind: bytes, body: bytes) -> bytes:
        return self._new(b"%s %d\0%s" % (kind, len(body), body)).digest()  # type: ignore[operator,no-any-return]

    def canonical(self, kind: bytes, body: bytes) -> tuple[bytes, bytes]:
        """``(id, raw)`` for an object of ``kind`` with ``body``."""
        raw = b"%s %d\0%s" % (kind, len(body), body)
        return self._new(raw).digest(), raw  # type: ignore[operator]

    def parse_id(self, text: str | bytes) -> bytes:
        """A hex id (full length) to raw bytes, or MalformedObject."""
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
        if len(text) != 2 * self.id_len:
            raise MalformedObject(f"{text!r} is not a {self.name} object id")
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise MalformedObject(f"{text!r} is not a {self.name} object id") from None

    # -- framing --------------------------------------------------------------

    @staticmethod
    def split(raw: bytes) -> tuple[bytes, bytes]:
        """``raw`` → ``(kind, body)``, checking the header and size."""
        nul = raw.find(b"\0", 0, 32)
        if nul < 0:
            raise MalformedObject("object has no header")
        header = raw[:nul]
        kind, _, size = header.partition(b" ")
        if kind not in _TYPES:
            raise MalformedObject(f"unknown object type {kind[:16]!r}")
        if not size.isdigit() or (len(size) > 1 and size[0:1] == b"0"):
            raise MalformedObject(f"bad object size {size[:16]!r}")
        body = raw[nul + 1 :]
        if int(size) != len(body):
            raise MalformedObject(
                f"{kind.decode()} object says {int(size)} bytes but holds {len(body)}"
            )
        return kind, body

    # -- trees ----------------------------------------------------------------

    def parse_tree(self, body: bytes) -> list[tuple[bytes, bytes, bytes]]:
        """``[(mode, name, id)]`` in stored order, validated as git fsck would."""
        modes, names, oids = self.parse_tree_columns(body)
        return list(zip(modes, names, oids))

    def parse_tree_columns(self, body: bytes) -> tuple[list[bytes], list[bytes], list[bytes]]:
        """Modes (interned), names and ids of a tree body, as three lists."""
        if self._tree_entries_re.fullmatch(body) is None:
            self._explain_bad_tree(body)
        found = self._tree_entry_re.findall(body)
        if not found:
            return [], [], []
        modes_raw, names, oids = (list(col) for col in zip(*found))
        modes = list(map(_MODES.__getitem__, modes_raw))
        if _BAD_NAMES.intersection(names):
            bad = sorted(_BAD_NAMES.intersection(names))[0]
            raise MalformedObject(f"tree entry has a bad name {bad!r}")
        if MODE_TREE in modes:
            keys = [n + b"/" if m is MODE_TREE else n for m, n in zip(modes, names)]
        else:
            keys = names
        if not all(map(bytes.__lt__, keys, keys[1:])):
            for a, b in zip(keys, keys[1:]):
                if not a < b:
                    raise MalformedObject(f"tree entries not sorted or duplicated at {b!r}")
        return modes, names, oids

    def _explain_bad_tree(self, body: bytes) -> None:
        """Walk a body the fast parser refused and say what is wrong where."""
        id_len = self.id_len
        n = len(body)
        i = 0
        while i < n:
            sp = body.find(b" ", i, i + 8)
            if sp < 0:
                raise MalformedObject(f"tree entry at byte {i}: no mode")
            if body[i:sp] not in _MODES:
                raise MalformedObject(f"tree entry at byte {i}: bad mode {body[i:sp]!r}")
            nul = body.find(b"\0", sp + 1)
            if nul < 0 or nul + 1 + id_len > n:
                raise MalformedObject(f"tree entry at byte {i}: truncated")
            name = body[sp + 1 : nul]
            if not name or b"/" in name:
                raise MalformedObject(f"tree entry at byte {i}: bad name {name!r}")
            i = nul + 1 + id_len
        raise MalformedObject("malformed tree")

    @staticmethod
    def tree_entry(mode: bytes, name: bytes, oid: bytes) -> bytes:
        """One encoded entry; a tree body is these joined in git order."""
        return b"%s %s\0%s" % (mode, name, oid)

    # -- commits --------------------------------------------------------------

    def encode_commit(self, c: CommitData) -> bytes:
        if not c.extra and len(c.parents) == 1:  # the common case, in one step
            return b"tree %s\nparent %s\nauthor %s\ncommitter %s\n\n%s" % (
                c.tree.hex().encode(), c.parents[0].hex().encode(), c.author.encoded,
                c.committer.encoded, c.message.encode("utf-8", "surrogateescape"))
        lines = [b"tree " + c.tree.hex().encode()]
        lines += [b"parent " + p.hex().encode() for p in c.parents]
        lines.append(b"author " + c.author.encoded)
        lines.append(b"committer " + c.committer.encoded)
        for key, value in c.extra:
            lines.append(key + b" " + value.replace(b"\n", b"\n "))
        return b"\n".join(lines) + b"\n\n" + c.message.encode("utf-8", "surrogateescape")

    def parse_commit(self, body: bytes) -> CommitData:
        head, sep, message = body.partition(b"\n\n")
        if not sep:
            # A commit with an empty message may end right after its headers.
            if body.endswith(b"\n"):
                head, message = body[:-1], b""
            else:
                raise MalformedObject("commit has no end of headers")
        tree: bytes | None = None
        parents: list[bytes] = []
        author = committer = None
        extra: list[tuple[bytes, bytes]] = []
        for line in head.split(b"\n"):
            if line.startswith(b" ") and extra:
                k, v = extra[-1]
                extra[-1] = (k, v + b"\n" + line[1:])
                continue
            key, _, value = line.partition(b" ")
            if key == b"tree" and tree is None and not parents:
                tree = self.parse_id(value)
            elif key == b"parent" and tree is not None and author is None:
                parents.append(self.parse_id(value))
            elif key == b"author" and tree is not None and author is None:
                author = Person.parse(value)
            elif key == b"committer" and author is not None and committer is None:
                committer = Person.parse(value)
            elif committer is not None and key and b"\0" not in line:
                extra.append((key, value))
            else:
                raise MalformedObject(f"bad commit header line {line[:60]!r}")
        if tree is None or author is None or committer is None:
            raise MalformedObject("commit lacks tree, author or committer")
        return CommitData(
            tree, tuple(parents), author, committer,
            message.decode("utf-8", "surrogateescape"), tuple(extra),
        )

    # -- checks ---------------------------------------------------------------

    def check(self, oid: bytes, raw: bytes) -> bytes:
        """Validate a whole object (header, body, id); returns its kind."""
        if self.hash_raw(raw) != oid:
            raise MalformedObject(f"object {oid.hex()} does not hash to its id")
        kind, body = self.split(raw)
        if kind == b"tree":
            self.parse_tree(body)
        elif kind == b"commit":
            self.parse_commit(body)
        return kind


SHA1 = ObjectFormat("sha1", hashlib.sha1, 20)
BLOB_MODES = _BLOB_MODES
