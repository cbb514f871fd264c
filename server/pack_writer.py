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


@dataclass(slots=True)
class PackEntry:
    """One object to send; ``base`` is a proposed delta base (or ``None``)."""

    oid: bytes
    base: bytes | None = None


@dataclass
class PackStats:
    objects: int = 0
    deltas: int = 0
    bytes: int = 0


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


def write_pack(
    entries: Sequence[PackEntry],
    read: Callable[[bytes], tuple[bytes, bytes]],
    client_has: Callable[[bytes], bool] = lambda oid: False,
    *,
    level: int = 1,
    stats: PackStats | None = None,
    chunk: int = 256 * 1024,
) -> Iterator[bytes]:
    """Stream a pack of ``entries`` in order; ``read(oid)`` gives ``(kind, body)``.

    ``client_has(oid)``: the client holds ``oid`` (thin pack: a REF_DELTA
    base may be outside the pack)."""
    sha = hashlib.sha1()
    buf = bytearray(b"PACK" + struct.pack(">II", 2, len(entries)))
    offset = 0
    offsets: dict[bytes, int] = {}
    depths: dict[bytes, int] = {}
    cache: OrderedDict[bytes, bytes] = OrderedDict()
    stats = stats if stats is not None else PackStats()

    def body_of(oid: bytes) -> bytes | None:
        b = cache.get(oid)
        if b is None:
            try:
                _, b = read(oid)
            except KeyError:
                return None
        return b

    for e in entries:
        kind, body = read(e.oid)
        type_num = TYPE_NUMS[kind]
        data = body
        head: bytes | None = None
        base = e.base
        if base is not None and len(body) >= MIN_DELTA_SIZE:
            in_pack = base in offsets
            if (in_pack and depths.get(base, 0) < MAX_DEPTH) or (not in_pack and client_has(base)):
                base_body = body_of(base)
                if base_body is not None:
                    delta = _create_delta(base_body, body)
                    if len(delta) < len(body) // 2:
                        data = delta
                        if in_pack:
                            start = offset + len(buf)
                            head = _header(OFS_DELTA, len(delta)) + _ofs(start - offsets[base])
                            depths[e.oid] = depths.get(base, 0) + 1
                        else:
                            head = _header(REF_DELTA, len(delta)) + base
                            depths[e.oid] = 1
                        stats.deltas += 1
        if head is None:
            head = _header(type_num, len(body))
        offsets[e.oid] = offset + len(buf)
        buf += head
        buf += zlib.compress(data, level)
        if kind != b"commit":
            cache[e.oid] = body
            if len(cache) > BASE_CACHE:
                cache.popitem(last=False)
        if len(buf) >= chunk:
            out = bytes(buf)
            sha.update(out)
            offset += len(out)
            stats.bytes += len(out)
            buf.clear()
            yield out
    stats.objects = len(entries)
    out = bytes(buf)
    sha.update(out)
    out += sha.digest()
    stats.bytes += len(out)
    yield out
