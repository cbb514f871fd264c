"""On-disk format of the ``block:`` backend: superblock, root slots, segments.

Everything here is pure encoding (no I/O), so tests and a future compactor
or ``fsck`` can reason about the bytes without a device.

Layout (``A = max(sector_size, 4096)``; all integers little-endian)::

    0        superblock   one sector: what this device is and where things are
    A        root slot 0  one sector
    2A       root slot 1  one sector
    3A       log          append-only segments, each starting on a sector
    ...                   boundary, up to ``log_limit`` (the device size)

The two root slots sit in different 4 KiB pages so that a torn write of one,
even on a 512e drive that rewrites a whole physical 4 KiB sector, cannot
damage the other (LMDB keeps its two meta pages apart for the same reason).

Superblock (``SUPER``): magic ``IRMINBLK``, format version, sector size,
device size, the two root-slot offsets, log start, log limit, a 16-byte store
uuid and a CRC-32 of the preceding bytes.

Root slot (``ROOT``): magic ``IRRT``, the store uuid, a sequence number,
``log_start`` (first live segment; a compactor moves it), ``log_end`` (end of
the last committed segment) and ``ckpt_off`` (the newest checkpoint segment, or
0), then a CRC-32. Slot ``seq % 2`` is written for sequence ``seq``; opening
takes the valid slot with the highest ``seq``. A slot that fails its CRC (torn
write, garbage) is ignored, so the store opens at the previous commit with no
repair step. Bytes past ``log_end`` are never trusted.

Segment: a header, then its payload immediately after, the whole padded with
zeros to the next sector boundary (a batch with a large payload pads its
header to a sector, so the payload can be written aligned, and before the
header, while its CRCs are computed in parallel)::

    magic "IRSG" | kind u8 | 3 pad | seq u64 | header_len u32 | n_entries u32
    | payload_len u64 | header_crc u32 | payload_crc u32 | entries...

``header_crc`` covers the header with the crc field zeroed. Kinds:

* ``BATCH`` — one ``apply``: entries are objects (id, payload offset, length,
  CRC-32 of the data), tombstones (id) and ref changes (name, new id or
  deletion). ``payload_crc`` is 0: every object carries its own CRC, which
  ``get`` checks on every read (so a flipped byte names one object, and
  the data is hashed once, not twice).
* ``CHECKPOINT`` — a snapshot of the whole index and ref table as of the
  segment's own offset; ``payload_crc`` covers it. Opening loads the newest
  checkpoint and scans only the segments after it (irmin-pack's index +
  "reload"), so open time is bounded by the checkpoint interval, not the
  store size.

* ``WRAP`` — a header alone: the log goes on at the start of the log area
  (``Superblock.log_start``); the bytes from here to ``log_limit`` are unused.

The log is circular. ``Root.log_start`` is the oldest byte the root needs and
``log_end`` the append point; when ``log_end < log_start`` the log has wrapped
and runs ``[log_start, log_limit)`` (up to a ``WRAP`` marker, or to the limit
itself when a segment ends exactly there) then ``[area start, log_end)``. The
append point never catches up with ``log_start`` (a wrapped log keeps at least
one free sector), so ``log_end == log_start`` only ever means empty. Every
position in the log is found by walking segments from ``log_start`` (or from
the end of the checkpoint), so nothing records where the wrap is but the
marker.

Compaction (``BlockBackend.compact``) re-appends the live objects of the old
part of the log as ordinary BATCH segments, then commits a root whose
``log_start`` is past the old part and whose checkpoint holds the whole state
(refs too, whose older records lie in the freed part). Until that root is on
disk the old root and everything it names are untouched (new segments only
go into space no durable root needs), so a crash at any instant leaves one
of the two states. Readers that still hold a location in the freed part see
a CRC mismatch (the bytes there are overwritten by later appends), re-read
the roots and look again. A build that predates wrapping refuses a wrapped
root ("points outside the log") rather than misreading it.

Checksum: CRC-32 (ISO-HDLC, the polynomial of zlib, gzip and PNG; the value
``zlib.crc32`` returns). Every byte written and read is checksummed, so its
speed bounds append throughput: it is computed with ISA-L
(``isal.isal_zlib.crc32``, PCLMUL, ~14 GB/s here) when the ``isal`` package
is installed and with ``zlib.crc32`` (~1-1.3 GB/s here) otherwise. Both give
the same values, so the format does not depend on which one wrote it.
32 bits is ample to catch torn sectors and flipped bits, and content
integrity is also covered by the object ids (SHA-1 of the content) the core
can re-check.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from .errors import CorruptStore

FORMAT_VERSION = 1
SUPER_MAGIC = b"IRMINBLK"
ROOT_MAGIC = b"IRRT"
SEG_MAGIC = b"IRSG"

KIND_BATCH = 1
KIND_CHECKPOINT = 2
KIND_WRAP = 3

E_OBJECT = 1
E_TOMBSTONE = 2
E_REF_SET = 3
E_REF_DEL = 4

_SUPER = struct.Struct("<8sIIQQQQQ16s")
_ROOT = struct.Struct("<4s16sQQQQ")
_SEG = struct.Struct("<4sB3xQIIQII")
SEG_HEADER_FIXED = _SEG.size
_CRC = struct.Struct("<I")


try:  # same CRC-32, ~10x faster (see "Checksum" above)
    from isal.isal_zlib import crc32 as _crc32_impl
except ImportError:  # pragma: no cover - depends on the environment
    _crc32_impl = zlib.crc32

#: Which implementation computes CRC-32 here (for benchmarks and reports).
CRC32_IMPL = "isal" if _crc32_impl is not zlib.crc32 else "zlib"


def crc32(data: bytes | bytearray | memoryview, start: int = 0) -> int:
    return _crc32_impl(data, start) & 0xFFFFFFFF


def align_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def slot_align(sector_size: int) -> int:
    """Distance between superblock, root slots and the log (see layout)."""
    return max(sector_size, 4096)


# -- damage reports --------------------------------------------------------


@dataclass(frozen=True)
class Damage:
    """One damaged place: where it is, which object (if known), what is wrong."""

    offset: int
    what: str
    oid: bytes | None = None

    def __str__(self) -> str:
        oid = f" (object {self.oid.hex()})" if self.oid is not None else ""
        return f"offset {self.offset}{oid}: {self.what}"


class BlockCorruption(CorruptStore):
    """Damage in a ``block:`` store; ``damage`` lists every place found."""

    def __init__(self, damage: list[Damage], context: str = "") -> None:
        self.damage = damage
        lines = "; ".join(str(d) for d in damage)
        super().__init__(f"{context}{': ' if context else ''}{lines}")


# -- superblock -------------------------------------------------------------


@dataclass(frozen=True)
class Superblock:
    sector_size: int
    device_size: int
    root_offsets: tuple[int, int]
    log_start: int
    log_limit: int
    uuid: bytes
    version: int = FORMAT_VERSION

    def encode(self) -> bytes:
        body = _SUPER.pack(
            SUPER_MAGIC, self.version, self.sector_size, self.device_size,
            self.root_offsets[0], self.root_offsets[1], self.log_start,
            self.log_limit, self.uuid,
        )
        raw = body + _CRC.pack(crc32(body))
        return raw + bytes(self.sector_size - len(raw))

    @staticmethod
    def is_ours(raw: bytes) -> bool:
        return raw[:8] == SUPER_MAGIC

    @classmethod
    def decode(cls, raw: bytes) -> Superblock:
        """Decode; the caller has checked :meth:`is_ours` (else NotFormatted)."""
        n = _SUPER.size
        if len(raw) < n + 4:
            raise BlockCorruption([Damage(0, "superblock truncated")])
        (magic, version, ss, dev, r0, r1, ls, ll, uuid) = _SUPER.unpack_from(raw)
        (want,) = _CRC.unpack_from(raw, n)
        if crc32(raw[:n]) != want:
            raise BlockCorruption([Damage(0, "superblock checksum mismatch")])
        return cls(ss, dev, (r0, r1), ls, ll, uuid, version)

    @classmethod
    def layout(cls, device_size: int, sector_size: int, uuid: bytes) -> Superblock:
        a = slot_align(sector_size)
        return cls(sector_size, device_size, (a, 2 * a), 3 * a,
                   device_size - device_size % sector_size, uuid)


# -- root slots -------------------------------------------------------------


@dataclass(frozen=True)
class Root:
    seq: int
    log_start: int
    log_end: int
    ckpt_off: int
    uuid: bytes

    def encode(self, sector_size: int) -> bytes:
        body = _ROOT.pack(ROOT_MAGIC, self.uuid, self.seq, self.log_start,
                          self.log_end, self.ckpt_off)
        raw = body + _CRC.pack(crc32(body))
        return raw + bytes(sector_size - len(raw))

    @classmethod
    def decode(cls, raw: bytes, uuid: bytes) -> Root | None:
        """The root in ``raw``, or ``None`` if it is torn, garbage or foreign."""
        n = _ROOT.size
        if len(raw) < n + 4:
            return None
        magic, u, seq, ls, le, ck = _ROOT.unpack_from(raw)
        (want,) = _CRC.unpack_from(raw, n)
        if magic != ROOT_MAGIC or u != uuid or crc32(raw[:n]) != want:
            return None
        return cls(seq, ls, le, ck, u)


def newest_root(slots: list[bytes], uuid: bytes) -> Root | None:
    roots = [r for r in (Root.decode(s, uuid) for s in slots) if r is not None]
    return max(roots, key=lambda r: r.seq) if roots else None


# -- segments -------------------------------------------------------------------


@dataclass
class Batch:
    """The contents of one BATCH segment, before payload offsets are fixed."""

    objects: list[tuple[bytes, bytes]] = field(default_factory=list)
    tombstones: list[bytes] = field(default_factory=list)
    refs: list[tuple[str, bytes | None]] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.objects or self.tombstones or self.refs)


@dataclass(frozen=True)
class ObjectEntry:
    oid: bytes
    offset: int  # absolute device offset of the data
    length: int
    crc: int


@dataclass
class SegmentInfo:
    """A decoded segment header (payload not read)."""

    offset: int
    kind: int
    seq: int
    header_len: int
    payload_len: int
    payload_crc: int
    objects: list[ObjectEntry]
    tombstones: list[bytes]
    refs: list[tuple[str, bytes | None]]

    @property
    def payload_off(self) -> int:
        return self.offset + self.header_len

    def total(self, sector_size: int) -> int:
        return align_up(self.header_len + self.payload_len, sector_size)


def encode_batch(
    batch: Batch, seq: int, crcs: list[int] | None = None, pad_to: int = 0
) -> tuple[bytes, list[tuple[bytes, int, int, int]]]:
    """Header bytes and ``(oid, payload offset, length, crc)`` per object.

    The payload is the objects' data concatenated in order, written by the
    caller straight after the header (no copy into one big buffer here).
    ``crcs`` may be given when computed elsewhere (in parallel with the
    payload write); ``pad_to`` zero-pads the header to a multiple, so that
    a large payload starts sector-aligned and can be written before the
    header is known. The header length does not depend on the CRC values.
    """
    parts: list[bytes] = []
    placed: list[tuple[bytes, int, int, int]] = []
    pos = 0
    for i, (oid, data) in enumerate(batch.objects):
        c = crcs[i] if crcs is not None else crc32(data)
        parts.append(struct.pack(f"<BB{len(oid)}sQQI", E_OBJECT, len(oid), oid, pos, len(data), c))
        placed.append((oid, pos, len(data), c))
        pos += len(data)
    for oid in batch.tombstones:
        parts.append(struct.pack(f"<BB{len(oid)}s", E_TOMBSTONE, len(oid), oid))
    for name, new in batch.refs:
        nb = name.encode()
        if new is None:
            parts.append(struct.pack(f"<BH{len(nb)}s", E_REF_DEL, len(nb), nb))
        else:
            parts.append(struct.pack(f"<BH{len(nb)}sB{len(new)}s", E_REF_SET, len(nb), nb, len(new), new))
    n = len(batch.objects) + len(batch.tombstones) + len(batch.refs)
    entries = b"".join(parts)
    if pad_to:
        entries += bytes(align_up(SEG_HEADER_FIXED + len(entries), pad_to)
                         - SEG_HEADER_FIXED - len(entries))
    return _seal(KIND_BATCH, seq, entries, n, pos, 0), placed


def encode_wrap(seq: int) -> bytes:
    """A WRAP marker: the log continues at the start of the log area."""
    return _seal(KIND_WRAP, seq, b"", 0, 0, 0)


def encode_checkpoint(
    index: dict[bytes, tuple[int, int, int]], refs: dict[str, bytes], seq: int
) -> tuple[bytes, bytes]:
    """Header and payload of a CHECKPOINT segment snapshotting index and refs."""
    out: list[bytes] = [struct.pack("<I", len(refs))]
    for name, oid in refs.items():
        nb = name.encode()
        out.append(struct.pack(f"<H{len(nb)}sB{len(oid)}s", len(nb), nb, len(oid), oid))
    groups: dict[int, list[bytes]] = {}
    for oid in index:
        groups.setdefault(len(oid), []).append(oid)
    out.append(struct.pack("<I", len(groups)))
    for klen, oids in groups.items():
        rec = struct.Struct(f"<{klen}sQQI")
        out.append(struct.pack("<BQ", klen, len(oids)))
        out.extend(rec.pack(o, *index[o]) for o in oids)
    payload = b"".join(out)
    return _seal(KIND_CHECKPOINT, seq, b"", 0, len(payload), crc32(payload)), payload


def decode_checkpoint(
    payload: bytes, offset: int
) -> tuple[dict[bytes, tuple[int, int, int]], dict[str, bytes]]:
    try:
        pos = 0
        (nrefs,) = struct.unpack_from("<I", payload, pos)
        pos += 4
        refs: dict[str, bytes] = {}
        for _ in range(nrefs):
            (nl,) = struct.unpack_from("<H", payload, pos)
            name = payload[pos + 2:pos + 2 + nl].decode()
            pos += 2 + nl
            il = payload[pos]
            refs[name] = bytes(payload[pos + 1:pos + 1 + il])
            pos += 1 + il
        (ngroups,) = struct.unpack_from("<I", payload, pos)
        pos += 4
        index: dict[bytes, tuple[int, int, int]] = {}
        for _ in range(ngroups):
            klen, count = struct.unpack_from("<BQ", payload, pos)
            pos += 9
            rec = struct.Struct(f"<{klen}sQQI")
            end = pos + rec.size * count
            for oid, off, ln, c in rec.iter_unpack(payload[pos:end]):
                index[oid] = (off, ln, c)
            pos = end
        return index, refs
    except (struct.error, UnicodeDecodeError, IndexError) as e:
        raise BlockCorruption([Damage(offset, f"checkpoint undecodable: {e}")]) from e


def _seal(kind: int, seq: int, entries: bytes, n: int, payload_len: int, payload_crc: int) -> bytes:
    header_len = SEG_HEADER_FIXED + len(entries)
    fixed = _SEG.pack(SEG_MAGIC, kind, seq, header_len, n, payload_len, 0, payload_crc)
    c = crc32(entries, crc32(fixed))
    return _SEG.pack(SEG_MAGIC, kind, seq, header_len, n, payload_len, c, payload_crc) + entries


def header_len_of(raw: bytes | memoryview, offset: int) -> int:
    """The full header length, from the fixed part (validated loosely)."""
    if len(raw) < SEG_HEADER_FIXED or bytes(raw[:4]) != SEG_MAGIC:
        raise BlockCorruption([Damage(offset, "no segment header here (torn or overwritten)")])
    (hl,) = struct.unpack_from("<I", raw, 16)
    if hl < SEG_HEADER_FIXED or hl > 1 << 30:
        raise BlockCorruption([Damage(offset, f"segment header length {hl} is impossible")])
    return int(hl)


def decode_segment_header(raw: bytes | memoryview, offset: int) -> SegmentInfo:
    """Decode and check a whole header (``raw`` holds at least header_len bytes)."""
    magic, kind, seq, hl, n, plen, hcrc, pcrc = _SEG.unpack_from(raw)
    head = bytearray(raw[:hl])
    head[32:36] = b"\0\0\0\0"
    if magic != SEG_MAGIC or crc32(head) != hcrc:
        raise BlockCorruption([Damage(offset, "segment header checksum mismatch")])
    info = SegmentInfo(offset, kind, seq, hl, plen, pcrc, [], [], [])
    base = offset + hl
    pos = SEG_HEADER_FIXED
    try:
        for _ in range(n):
            t = raw[pos]
            if t == E_OBJECT:
                kl = raw[pos + 1]
                oid = bytes(raw[pos + 2:pos + 2 + kl])
                off, ln, c = struct.unpack_from("<QQI", raw, pos + 2 + kl)
                info.objects.append(ObjectEntry(oid, base + off, ln, c))
                pos += 2 + kl + 20
            elif t == E_TOMBSTONE:
                kl = raw[pos + 1]
                info.tombstones.append(bytes(raw[pos + 2:pos + 2 + kl]))
                pos += 2 + kl
            elif t in (E_REF_SET, E_REF_DEL):
                (nl,) = struct.unpack_from("<H", raw, pos + 1)
                name = bytes(raw[pos + 3:pos + 3 + nl]).decode()
                pos += 3 + nl
                new: bytes | None = None
                if t == E_REF_SET:
                    il = raw[pos]
                    new = bytes(raw[pos + 1:pos + 1 + il])
                    pos += 1 + il
                info.refs.append((name, new))
            else:
                raise ValueError(f"unknown entry type {t}")
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as e:
        raise BlockCorruption([Damage(offset, f"segment entries undecodable: {e}")]) from e
    return info
