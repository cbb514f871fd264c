"""Typed contents: codecs from blob bytes to values, with a three-way merge.

The tree layer stores every value as bytes (a git blob). A :class:`Contents`
turns those bytes into a typed value and back, and merges three versions
(base, ours, theirs) when two branches changed the same path. It is Irmin's
``Contents.S`` (type + merge) with its ``Merge`` combinators folded into plain
methods: one object per kind of value, no functors.

Merges work in the bytes domain, because that is what the tree holds and
because most merges never need to decode anything: ``None`` means "absent"
(deleted, or never existed). :meth:`Contents.merge` returns the merged bytes
(``None`` = the merged result is absent) or raises :class:`MergeConflict`,
which the core turns into a structured conflict (path, three versions,
reason). A conflict is never resolved silently.

Instances shipped here (module-level singletons, also reachable by name via
:func:`resolve`, which the CLI and HTTP server use):

    name       singleton       value               merge when both sides changed
    "bytes"    BYTES           bytes (identity)    conflict
    "string"   STRING          str (UTF-8)         conflict
    "json"     JSON_CONTENTS   JSON values         per key, recursively; else conflict
    "counter"  COUNTER         int64 (decimal)     base + Δours + Δtheirs
    "lww"      LWW_REGISTER    LWW.Value           greatest (timestamp, writer) wins
    "set"      SET             frozenset[str|bytes] base + additions − removals

:class:`ByPath` chooses contents per path (longest prefix wins), so one store
can keep counters under ``counters/`` and JSON documents elsewhere.

Adding your own kind of contents: subclass :class:`Contents`, give it a
``name``, implement ``encode``/``decode``, and implement ``merge_values`` if
concurrent changes can be reconciled (the default raises a conflict)::

    class MaxInt(Contents[int]):
        '''An int register whose merge keeps the larger value.'''
        name = "max-int"

        def encode(self, value: int) -> bytes:
            if type(value) is not int:
                raise TypeError(f"max-int expects an int, got {type(value).__name__}")
            return str(value).encode("ascii")

        def decode(self, data: bytes) -> int:
            try:
                return int(data.decode("ascii"))
            except (UnicodeDecodeError, ValueError) as e:
                raise ValueError(f"max-int: not a decimal integer: {data[:40]!r}") from e

        def merge_values(self, base, ours, theirs):
            if ours is None or theirs is None:       # deleted on one side
                raise MergeConflict("max-int: deleted on one side, changed on the other")
            return max(ours, theirs)

    register(MaxInt())          # now resolve("max-int") works for the CLI/server

The generic rule in :meth:`Contents.merge` (equal sides, or only one side
changed) runs first, on bytes, so ``merge_values`` only sees real concurrent
changes. Override ``merge`` itself only when that rule is wrong for your type
(as :class:`Counter` does: two equal increments must both count).
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any, Generic, NamedTuple, TypeVar

__all__ = [
    "MergeConflict",
    "Contents",
    "Bytes",
    "String",
    "JSON",
    "Counter",
    "LWW",
    "Set",
    "ByPath",
    "BYTES",
    "STRING",
    "JSON_CONTENTS",
    "COUNTER",
    "LWW_REGISTER",
    "SET",
    "resolve",
    "register",
    "names",
]

V = TypeVar("V")


class MergeConflict(Exception):
    """Three versions that cannot be merged automatically.

    Deliberately not an ``IrminError``: it is a signal from a codec to the core,
    which knows the path and the three versions and converts it into the
    structured conflict users see. ``key_path`` locates the conflict inside the
    value when the codec can say (JSON object keys), else it is ``()``.
    """

    def __init__(self, reason: str, key_path: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.key_path = key_path


class Contents(ABC, Generic[V]):
    """A codec between blob bytes and values of type ``V``, with a three-way merge."""

    name: str = ""
    #: Whether two sides making the *same* change merge into that change.
    #: False (Counter) tells the tree merge not to skip equal sides unasked.
    idempotent: bool = True
    #: Opaque values have no structure to merge: a transaction that read such
    #: a value and wrote it back must not commit over a concurrent change to
    #: it, even an equal one (that would be a lost update).
    opaque: bool = False

    @abstractmethod
    def encode(self, value: V) -> bytes:
        """The blob bytes for ``value``; ``TypeError``/``ValueError`` if it is not a ``V``."""

    @abstractmethod
    def decode(self, data: bytes) -> V:
        """The value held in ``data``; ``ValueError`` (saying what is wrong) if it holds none."""

    def merge(self, base: bytes | None, ours: bytes | None, theirs: bytes | None) -> bytes | None:
        """Three-way merge of blob bytes; ``None`` is absent. Raises :class:`MergeConflict`.

        Equal sides, or a side equal to the base, settle it without decoding:
        that is nearly every merge, and it keeps opaque values cheap.
        """
        if ours == theirs or theirs == base:
            return ours
        if ours == base:
            return theirs
        values = [self._decode_for_merge(side, data)
                  for side, data in (("base", base), ("ours", ours), ("theirs", theirs))]
        merged = self.merge_values(values[0], values[1], values[2])
        return None if merged is None else self.encode(merged)

    def merge_values(self, base: V | None, ours: V | None, theirs: V | None) -> V | None:
        """Reconcile two concurrent changes of decoded values (``None`` = absent).

        Called only when both sides changed, differently. The default cannot
        reconcile anything: subclasses with a meaningful merge override it.
        """
        raise MergeConflict(f"{self.name}: both sides changed the value differently")

    def _decode_for_merge(self, side: str, data: bytes | None) -> V | None:
        # Undecodable bytes make the merge impossible, not the store broken:
        # report them as a conflict so the user sees the three versions.
        if data is None:
            return None
        try:
            return self.decode(data)
        except ValueError as e:
            raise MergeConflict(f"{self.name}: cannot decode {side}: {e}") from e

    def __repr__(self) -> str:
        return f"<{type(self).__name__} contents {self.name!r}>"


# --------------------------------------------------------------------------- bytes, string


class Bytes(Contents[bytes]):
    """Opaque bytes: identity codec; conflict unless only one side changed or both agree.

    On the hot path of every read and write, so every method is a few
    instructions and nothing is copied.
    """

    name = "bytes"
    opaque = True

    def encode(self, value: bytes | bytearray | memoryview) -> bytes:
        if type(value) is bytes:
            return value
        if isinstance(value, (bytearray, memoryview)):
            return bytes(value)
        raise TypeError(f"bytes contents expects bytes, got {type(value).__name__}")

    def decode(self, data: bytes) -> bytes:
        return data

    def merge(self, base: bytes | None, ours: bytes | None, theirs: bytes | None) -> bytes | None:
        if ours == theirs or theirs == base:
            return ours
        if ours == base:
            return theirs
        raise MergeConflict("bytes: both sides changed the value differently")


class String(Contents[str]):
    """A UTF-8 string; same merge rule as :class:`Bytes` (a line merge is the caller's job)."""

    name = "string"
    opaque = True

    def encode(self, value: str) -> bytes:
        if not isinstance(value, str):
            raise TypeError(f"string contents expects str, got {type(value).__name__}")
        return value.encode("utf-8")

    def decode(self, data: bytes) -> str:
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"string contents: not valid UTF-8 at byte {e.start}: "
                             f"{bytes(data)[max(0, e.start - 8):e.start + 8]!r}") from e


# --------------------------------------------------------------------------- json


class _Absent:
    """A missing key or blob, distinct from JSON ``null`` (which is ``None``)."""

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as the canonical encoding sees it: ``1``, ``1.0`` and ``true`` differ."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _pointer(path: tuple[str, ...]) -> str:
    """RFC 6901 JSON Pointer for a key path ("" is the whole document)."""
    return "".join("/" + k.replace("~", "~0").replace("/", "~1") for k in path)


def _merge_json(base: Any, ours: Any, theirs: Any, path: tuple[str, ...],
                conflicts: list[tuple[str, ...]]) -> Any:
    """Merge three JSON values (``_ABSENT`` for missing); conflicting key paths go to ``conflicts``."""
    if _json_equal(ours, theirs) or _json_equal(theirs, base):
        return ours
    if _json_equal(ours, base):
        return theirs
    if isinstance(ours, dict) and isinstance(theirs, dict):
        old = base if isinstance(base, dict) else {}
        merged: dict[str, Any] = {}
        for key in sorted(old.keys() | ours.keys() | theirs.keys()):
            value = _merge_json(old.get(key, _ABSENT), ours.get(key, _ABSENT),
                                theirs.get(key, _ABSENT), path + (key,), conflicts)
            if value is not _ABSENT:
                merged[key] = value
        return merged
    conflicts.append(path)
    return ours


class JSON(Contents[Any]):
    """JSON values, stored canonically; objects merge per key, recursively.

    Canonical encoding (sorted keys, no spaces, UTF-8) makes equal values equal
    blobs, so equal documents share one git object and the bytes-level rule
    applies. A key changed on one side takes that side; added on both with equal
    values is fine; changed differently recurses into two objects, and is
    otherwise a conflict whose reason names the key path (JSON Pointer).
    """

    name = "json"

    def encode(self, value: Any) -> bytes:
        try:
            return json.dumps(value, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as e:
            raise type(e)(f"json contents: value is not JSON-serializable: {e}") from e

    def decode(self, data: bytes) -> Any:
        try:
            return json.loads(bytes(data).decode("utf-8"), parse_constant=_reject_constant)
        except UnicodeDecodeError as e:
            raise ValueError(f"json contents: not valid UTF-8 at byte {e.start}") from e
        except json.JSONDecodeError as e:
            raise ValueError(f"json contents: invalid JSON at line {e.lineno} column {e.colno}: "
                             f"{e.msg}") from e

    def merge(self, base: bytes | None, ours: bytes | None, theirs: bytes | None) -> bytes | None:
        # Bytes that are equal settle it; otherwise compare decoded values, since
        # blobs written by other tools need not be canonical.
        if ours == theirs or theirs == base:
            return ours
        if ours == base:
            return theirs
        values = [_ABSENT if data is None else self._decode_for_merge(side, data)
                  for side, data in (("base", base), ("ours", ours), ("theirs", theirs))]
        conflicts: list[tuple[str, ...]] = []
        merged = _merge_json(values[0], values[1], values[2], (), conflicts)
        if conflicts:
            raise _json_conflict(conflicts)
        return None if merged is _ABSENT else self.encode(merged)

    def merge_values(self, base: Any, ours: Any, theirs: Any) -> Any:
        """Value-level merge; here ``None`` means absent, so JSON ``null`` cannot be told apart.

        :meth:`merge` does not go through this hook and keeps the distinction.
        """
        conflicts: list[tuple[str, ...]] = []
        absent = [_ABSENT if v is None else v for v in (base, ours, theirs)]
        merged = _merge_json(absent[0], absent[1], absent[2], (), conflicts)
        if conflicts:
            raise _json_conflict(conflicts)
        return None if merged is _ABSENT else merged


def _reject_constant(name: str) -> Any:
    raise ValueError(f"json contents: {name} is not valid JSON")


def _json_conflict(paths: list[tuple[str, ...]]) -> MergeConflict:
    where = ", ".join(repr(_pointer(p)) if p else "the whole document" for p in paths)
    return MergeConflict(f"json: both sides changed differently at {where}", key_path=paths[0])


# --------------------------------------------------------------------------- counter

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_DECIMAL = re.compile(rb"-?(?:0|[1-9][0-9]{0,18})")
_UINT64_MAX = 2**64 - 1
_TIMESTAMP = re.compile(rb"0|[1-9][0-9]{0,19}")


class Counter(Contents[int]):
    """A signed 64-bit counter stored as decimal ASCII; concurrent changes add up.

    merge = base + (ours − base) + (theirs − base), with an absent base counting
    as 0. Unlike the generic rule, two equal increments both count (Irmin's
    ``Merge.counter``), so ``merge(b, x, x)`` is ``2x − b``, not ``x``. Deleting
    on one side while the other changed is a conflict; overflow too.
    """

    name = "counter"
    idempotent = False

    def encode(self, value: int) -> bytes:
        if type(value) is not int:   # bool is an int subclass, and not a count
            raise TypeError(f"counter contents expects an int, got {type(value).__name__}")
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"counter contents: {value} does not fit in a signed 64-bit integer")
        return b"%d" % value

    def decode(self, data: bytes) -> int:
        if not _DECIMAL.fullmatch(data) or data == b"-0":
            raise ValueError(f"counter contents: expected a canonical decimal integer, "
                             f"got {bytes(data)[:40]!r}")
        value = int(data)
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"counter contents: {value} does not fit in a signed 64-bit integer")
        return value

    def merge(self, base: bytes | None, ours: bytes | None, theirs: bytes | None) -> bytes | None:
        if ours == base:         # only theirs changed (or nothing did)
            return theirs
        if theirs == base:
            return ours
        values = [self._decode_for_merge(side, data)
                  for side, data in (("base", base), ("ours", ours), ("theirs", theirs))]
        merged = self.merge_values(values[0], values[1], values[2])
        return None if merged is None else self.encode(merged)

    def merge_values(self, base: int | None, ours: int | None, theirs: int | None) -> int | None:
        if ours is None or theirs is None:
            if ours is None and theirs is None:
                return None
            raise MergeConflict("counter: deleted on one side, changed on the other")
        old = 0 if base is None else base
        merged = old + (ours - old) + (theirs - old)
        if not _INT64_MIN <= merged <= _INT64_MAX:
            raise MergeConflict(f"counter: merged value {merged} overflows a signed 64-bit integer")
        return merged


# --------------------------------------------------------------------------- lww


class LWW(Contents["LWW.Value"]):
    """A last-writer-wins register: the write with the greatest (timestamp, writer) wins.

    Stored as ``b"<timestamp_ns> <writer>\\n" + data`` so blobs stay readable
    in git. Merge never conflicts: if only one side changed it wins whatever its
    clock says (causality beats clocks); concurrent writes are ordered by
    (timestamp, writer, data), a total order, so every replica picks the same
    one; a concurrent write beats a delete (a delete carries no timestamp).
    """

    name = "lww"

    class Value(NamedTuple):
        """One write: when (ns since the epoch), by whom, and the bytes written."""

        timestamp: int
        writer: str
        data: bytes

    def __init__(self, writer: str | None = None) -> None:
        """``writer`` breaks timestamp ties; by default ``host/pid`` of the writing process."""
        if writer is not None:
            _check_writer(writer)
        self._writer = writer

    @property
    def writer(self) -> str:
        # Computed per call: a forked child is a different writer.
        return self._writer if self._writer is not None else f"{socket.gethostname()}/{os.getpid()}"

    def encode(self, value: LWW.Value | bytes) -> bytes:
        """Encode a :class:`LWW.Value`, or stamp plain bytes with now and this writer."""
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = LWW.Value(time.time_ns(), self.writer, bytes(value))
        if not isinstance(value, LWW.Value):
            raise TypeError(f"lww contents expects bytes or LWW.Value, got {type(value).__name__}")
        ts, writer, data = value
        if type(ts) is not int or not 0 <= ts <= _UINT64_MAX:
            raise ValueError(f"lww contents: timestamp must be an int in [0, 2**64), got {ts!r}")
        _check_writer(writer)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"lww contents: data must be bytes, got {type(data).__name__}")
        return b"%d %s\n" % (ts, writer.encode("utf-8")) + bytes(data)

    def decode(self, data: bytes) -> LWW.Value:
        header, newline, payload = bytes(data).partition(b"\n")
        ts, space, writer = header.partition(b" ")
        if not newline or not space or not _TIMESTAMP.fullmatch(ts) or int(ts) > _UINT64_MAX:
            raise ValueError("lww contents: expected b'<timestamp_ns> <writer>\\n<data>', "
                             f"got {bytes(data)[:40]!r}")
        try:
            writer_str = writer.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"lww contents: writer id is not valid UTF-8: {writer[:40]!r}") from e
        return LWW.Value(int(ts), writer_str, payload)

    def merge(self, base: bytes | None, ours: bytes | None, theirs: bytes | None) -> bytes | None:
        if ours == theirs or theirs == base:
            return ours
        if ours == base:
            return theirs
        if ours is None or theirs is None:
            return theirs if ours is None else ours
        a, b = self._decode_for_merge("ours", ours), self._decode_for_merge("theirs", theirs)
        assert a is not None and b is not None
        return ours if a >= b else theirs

    def merge_values(self, base: LWW.Value | None, ours: LWW.Value | None,
                     theirs: LWW.Value | None) -> LWW.Value | None:
        if ours is None or theirs is None:
            return theirs if ours is None else ours
        return max(ours, theirs)


def _check_writer(writer: object) -> None:
    if not isinstance(writer, str) or "\n" in writer:
        raise ValueError(f"lww contents: writer id must be a str without newlines, got {writer!r}")


# --------------------------------------------------------------------------- set

Element = str | bytes


def _element_key(e: Element) -> tuple[int, str | bytes]:
    # str before bytes; each in its natural order (code points / byte values).
    return (0, e) if isinstance(e, str) else (1, e)


class Set(Contents[frozenset[Element]]):
    """A set of str and/or bytes elements: concurrent additions and removals both apply.

    Stored as a canonical JSON list, sorted (str first by code point, then
    bytes), with bytes elements written as ``{"b64": "..."}``; equal sets are
    equal blobs. merge = base + additions of both − removals of both. A delete
    of the whole set while the other side changed it is a conflict.
    """

    name = "set"

    def encode(self, value: Iterable[Element]) -> bytes:
        if isinstance(value, (str, bytes, bytearray, memoryview, Mapping)):
            raise TypeError(f"set contents expects a set of str/bytes, got {type(value).__name__}")
        items: list[Any] = []
        for e in sorted(set(value), key=_element_key):
            if isinstance(e, str):
                items.append(e)
            elif isinstance(e, bytes):
                items.append({"b64": base64.b64encode(e).decode("ascii")})
            else:
                raise TypeError(f"set contents: elements must be str or bytes, "
                                f"got {type(e).__name__}")
        return json.dumps(items, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def decode(self, data: bytes) -> frozenset[Element]:
        try:
            items = json.loads(bytes(data).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"set contents: not a JSON list: {e}") from e
        if not isinstance(items, list):
            raise ValueError(f"set contents: expected a JSON list, got {type(items).__name__}")
        out: set[Element] = set()
        for item in items:
            if isinstance(item, str):
                out.add(item)
            elif isinstance(item, dict) and item.keys() == {"b64"} and isinstance(item["b64"], str):
                try:
                    out.add(base64.b64decode(item["b64"], validate=True))
                except ValueError as e:
                    raise ValueError(f"set contents: bad base64 element {item['b64'][:40]!r}") from e
            else:
                raise ValueError(f"set contents: elements must be strings or "
                                 f'{{"b64": ...}} objects, got {item!r:.60}')
        return frozenset(out)

    def merge_values(self, base: frozenset[Element] | None, ours: frozenset[Element] | None,
                     theirs: frozenset[Element] | None) -> frozenset[Element] | None:
        if ours is None or theirs is None:
            if ours is None and theirs is None:
                return None
            raise MergeConflict("set: deleted on one side, changed on the other")
        old = base or frozenset()
        # Kept by both, or added by either: removals of either side apply.
        return (ours & theirs) | (ours - old) | (theirs - old)


# --------------------------------------------------------------------------- per path


def _split(prefix: str) -> tuple[str, ...]:
    return tuple(s for s in prefix.split("/") if s)


class ByPath:
    """Chooses contents per path: the rule with the longest matching prefix wins.

    Prefixes match whole path segments: ``"counters"`` matches
    ``("counters", "x")`` but not ``("counters2",)``; ``""`` matches everything.
    """

    def __init__(self, rules: Mapping[str, Contents[Any]],
                 default: Contents[Any] | None = None) -> None:
        self._rules = {_split(prefix): contents for prefix, contents in rules.items()}
        self.default: Contents[Any] = self._rules.pop((), default or BYTES)
        self._depths = sorted({len(p) for p in self._rules}, reverse=True)

    def for_path(self, path: tuple[str, ...] | str) -> Contents[Any]:
        """The contents for ``path``: O(number of distinct prefix depths) lookups."""
        if isinstance(path, str):   # a str would be sliced into characters
            path = _split(path)
        for depth in self._depths:
            if depth <= len(path):
                found = self._rules.get(tuple(path[:depth]))
                if found is not None:
                    return found
        return self.default

    @property
    def idempotent(self) -> bool:
        return self.default.idempotent and all(c.idempotent for c in self._rules.values())

    @property
    def rules(self) -> dict[str, Contents[Any]]:
        return {"/".join(p): c for p, c in self._rules.items()}

    def __repr__(self) -> str:
        return f"ByPath({self.rules!r}, default={self.default!r})"


# --------------------------------------------------------------------------- singletons, names

BYTES = Bytes()
STRING = String()
JSON_CONTENTS = JSON()
COUNTER = Counter()
LWW_REGISTER = LWW()
SET = Set()

_registry: dict[str, Contents[Any]] = {
    c.name: c for c in (BYTES, STRING, JSON_CONTENTS, COUNTER, LWW_REGISTER, SET)
}


def register(contents: Contents[Any]) -> None:
    """Make ``resolve(contents.name)`` return ``contents`` (user-defined kinds)."""
    if not contents.name:
        raise ValueError(f"{contents!r} has no name")
    _registry[contents.name] = contents


def names() -> list[str]:
    return sorted(_registry)


def resolve(name: str) -> Contents[Any]:
    """The contents called ``name`` ("bytes", "string", "json", "counter", "lww", "set", ...)."""
    try:
        return _registry[name]
    except KeyError:
        raise ValueError(f"unknown contents {name!r}; expected one of: "
                         + ", ".join(names())) from None
