"""Pack generation for git clients, with deltas where they pay.

The caller plans the objects (:mod:`irmin.server.git_objects` proposes, for
each tree and blob, the same path's version in the parent commit as a delta
base); :func:`write_pack` streams a version-2 pack: OFS_DELTA when the base is
earlier in this pack, REF_DELTA against an object the client already has
(thin packs), the whole object otherwise, zlib-compressed and closed by the
SHA-1 trailer git checks. Deltas come from dulwich's Rust ``create_delta``
(pure Python fallback) and are kept only when under half the object's size;
chains are cut at :data:`MAX_DEPTH` as git does.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

try:  # ISA-L's deflate: same streams, ~1.5x faster than zlib at level 1
    from isal.isal_zlib import compress as _compress
except ImportError:  # pragma: no cover
    from zlib import compress as _compress

try:  # the Rust extension ships with dulwich wheels
    from dulwich._pack import create_delta as _create_delta
except ImportError:  # pragma: no cover - pure Python fallback
    from dulwich.pack import _create_delta_py as _py_delta

    def _create_delta(base: bytes, target: bytes) -> bytes:
        return b"".join(_py_delta(base, target))

TYPE_NUMS = {b"commit": 1, b"tree": 2, b"blob": 3, b"tag": 4}
OFS_DELTA = 6
REF_DELTA = 7
MAX_DEPTH = 50
#: Objects smaller than this are never deltified (the header would eat the gain).
MIN_DELTA_SIZE = 64
#: Bodies kept for use as delta bases.
BASE_CACHE = 4096
#: Objects read from the backend per batch (``get_many``).
BATCH = 1024
#: Data shorter than this is stored, not deflated (tiny deltas: deflate
#: gains a byte or two and its setup costs microseconds).
STORED_BELOW = 48

_pack_hh = struct.Struct("<HH").pack
_pack_i = struct.Struct(">I").pack
_adler32 = zlib.adler32
_from_bytes = int.from_bytes


class PackEntry(NamedTuple):
    """One object to send; ``base`` is a proposed delta base (or ``None``).
    Plain ``(oid, base)`` tuples are accepted wherever a PackEntry is."""

    oid: bytes
    base: bytes | None = None


@dataclass
class PackStats:
    objects: int = 0
    deltas: int = 0
    bytes: int = 0


@lru_cache(maxsize=1 << 16)
def _header(type_num: int, size: int) -> bytes:
    c = (type_num << 4) | (size & 0x0F)
    size >>= 4
    out = bytearray()
    while size:
        out.append(c | 0x80)
        c = size & 0x7F
        size >>= 7
    out.append(c)
    return bytes(out)


def _ofs(delta: int) -> bytes:
    out = bytearray((delta & 0x7F,))
    delta >>= 7
    while delta:
        delta -= 1
        out.append(0x80 | (delta & 0x7F))
        delta >>= 7
    out.reverse()
    return bytes(out)


@lru_cache(maxsize=1 << 16)
def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@lru_cache(maxsize=1 << 16)
def _copy_op(off: int, n: int) -> bytes:
    """One delta copy instruction: ``n`` (1..65536) bytes of the base at ``off``."""
    cmd = 0x80
    args = bytearray()
    for i in range(4):
        b = (off >> (8 * i)) & 0xFF
        if b:
            cmd |= 1 << i
            args.append(b)
    m = 0 if n == 0x10000 else n
    for i in range(3):
        b = (m >> (8 * i)) & 0xFF
        if b:
            cmd |= 0x10 << i
            args.append(b)
    return bytes((cmd,)) + args


def _copy_ops(off: int, size: int, out: list[bytes]) -> None:
    """Delta copy instructions for ``size`` bytes of the base at ``off``
    (at most 64 KiB each, as git writes them)."""
    while size:
        n = size if size < 0x10000 else 0x10000
        out.append(_copy_op(off, n))
        off += n
        size -= n


def common_ends(a: bytes, b: bytes) -> tuple[int, int]:
    """Lengths of the common prefix and of the common suffix (not
    overlapping the prefix) of ``a`` and ``b``, found in C: the highest set
    bit of the XOR of the two buffers read as integers."""
    la, lb = len(a), len(b)
    m = la if la < lb else lb
    if la == lb:
        x = _from_bytes(a, "big") ^ _from_bytes(b, "big")
    else:
        x = _from_bytes(a[:m], "big") ^ _from_bytes(b[:m], "big")
    p = m if not x else m - 1 - ((x.bit_length() - 1) >> 3)
    r = m - p
    s = 0
    if r:
        y = _from_bytes(a[la - r:], "little") ^ _from_bytes(b[lb - r:], "little")
        s = r if not y else r - 1 - ((y.bit_length() - 1) >> 3)
    return p, s


def _edit_delta(base: bytes, target: bytes) -> bytes | None:
    """A delta for a target that is the base with one region replaced (a
    changed line, a tree entry's new id): copy the common prefix, insert
    the middle, copy the common suffix. Prefix and suffix are found in C
    (the highest set bit of the XOR of the two buffers read as integers).
    ``None`` when the changed region is large (then ``create_delta``
    looks for moved blocks)."""
    lb, lt = len(base), len(target)
    p, s = common_ends(base, target)
    mid = lt - p - s
    if mid > 64 and mid * 4 > lt:
        return None
    out = [_varint(lb), _varint(lt)]
    if p:
        _copy_ops(0, p, out)
    i = p
    end = lt - s
    while i < end:
        j = i + 127 if end - i > 127 else end
        out.append(bytes((j - i,)))
        out.append(target[i:j])
        i = j
    if s:
        _copy_ops(lb - s, s, out)
    return b"".join(out)


def _delta(base: bytes, target: bytes) -> bytes:
    d = _edit_delta(base, target)
    return d if d is not None else _create_delta(base, target)


def _stored(data: bytes) -> bytes:
    """A zlib stream holding ``data`` in one stored (uncompressed) block:
    for tiny deltas, where deflate cannot gain and its setup is most of
    the cost."""
    n = len(data)
    return b"".join((b"\x78\x01\x01", _pack_hh(n, n ^ 0xFFFF), data, _pack_i(_adler32(data))))


def write_pack(
    entries: Sequence[tuple[bytes, bytes | None]],
    read: Callable[[bytes], tuple[bytes, bytes]] | None = None,
    client_has: Callable[[bytes], bool] = lambda oid: False,
    *,
    level: int = 1,
    stats: PackStats | None = None,
    chunk: int = 64 * 1024,
    raw: dict[bytes, bytes] | None = None,
    read_many: Callable[[list[bytes]], dict[bytes, bytes]] | None = None,
    read_raw: Callable[[bytes], bytes] | None = None,
) -> Iterator[bytes]:
    """Stream a pack of ``entries`` (``(oid, base)``) in order.

    Objects come from ``raw`` (canonical bytes the planner already read),
    else from ``read_many(ids)`` (canonical bytes, a batch at a time; a
    backend's ``get_many``) with ``read_raw(oid)`` for what it lacks, else
    from ``read(oid)`` → ``(kind, body)``. ``client_has(oid)``: the client
    holds ``oid`` (thin pack: a REF_DELTA base may be outside the pack).
    Chunks of about ``chunk`` bytes are yielded as soon as they are ready."""
    stats = stats if stats is not None else PackStats()
    known = raw if raw is not None else {}
    sha = hashlib.sha1()
    parts: list[bytes] = [b"PACK" + struct.pack(">II", 2, len(entries))]
    pending = len(parts[0])
    offset = 0  # bytes already yielded
    offsets: dict[bytes, int] = {}
    depths: dict[bytes, int] = {}
    bodies: OrderedDict[bytes, bytes] = OrderedDict()  # recent trees/blobs: delta bases
    compress = _compress
    pack_hh = _pack_hh
    pack_i = _pack_i
    adler = _adler32
    delta_of = _delta
    header = _header
    ofs = _ofs
    deltas = 0
    n = len(entries)

    def body_of(oid: bytes) -> bytes | None:
        b = bodies.get(oid)
        if b is not None:
            return b
        r = known.get(oid)
        if r is None:
            try:
                if read_raw is not None:
                    r = read_raw(oid)
                elif read is not None:
                    return read(oid)[1]
                else:
                    return None
            except KeyError:
                return None
        return r[r.index(b"\0") + 1:]

    for start in range(0, n, BATCH):
        batch = entries[start:start + BATCH]
        fetched: dict[bytes, bytes] = {}
        if read_many is not None:
            fetched = read_many([oid for oid, _ in batch if oid not in known])
        for oid, base in batch:
            r = known.get(oid)
            if r is None:
                r = fetched.get(oid)
            if r is None and read_raw is not None:
                r = read_raw(oid)
            if r is None:
                if read is None:
                    raise KeyError(oid)
                kind, body = read(oid)
            else:
                nul = r.index(b"\0")
                kind = r[:r.index(b" ", 0, nul)]
                body = r[nul + 1:]
            here = offset + pending
            data = body
            head = None
            if base is not None and len(body) >= MIN_DELTA_SIZE:
                base_off = offsets.get(base)
                if (base_off is not None and depths.get(base, 0) < MAX_DEPTH) or (
                        base_off is None and client_has(base)):
                    base_body = body_of(base)
                    if base_body is not None:
                        delta = delta_of(base_body, body)
                        if len(delta) < len(body) // 2:
                            data = delta
                            if base_off is not None:
                                head = header(OFS_DELTA, len(delta)) + ofs(here - base_off)
                                depths[oid] = depths.get(base, 0) + 1
                            else:
                                head = header(REF_DELTA, len(delta)) + base
                                depths[oid] = 1
                            deltas += 1
            if head is None:
                head = header(TYPE_NUMS[kind], len(body))
            offsets[oid] = here
            if len(data) < STORED_BELOW:
                z = b"".join((b"\x78\x01\x01", pack_hh(len(data), len(data) ^ 0xFFFF), data,
                              pack_i(adler(data))))
            else:
                z = compress(data, level)
            parts.append(head)
            parts.append(z)
            pending += len(head) + len(z)
            if kind != b"commit":
                bodies[oid] = body
                if len(bodies) > BASE_CACHE:
                    bodies.popitem(last=False)
            if pending >= chunk:
                out = b"".join(parts)
                sha.update(out)
                offset += pending
                parts.clear()
                pending = 0
                yield out
    out = b"".join(parts)
    sha.update(out)
    out += sha.digest()
    stats.objects = n
    stats.deltas = deltas
    stats.bytes = offset + len(out)
    yield out
