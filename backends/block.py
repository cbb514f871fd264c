"""``block:PATH`` — a log-structured store on a block device or a file used as one.

The device is formatted explicitly (:func:`format_block`, the CLI's ``irmin
init``, or ``?create=1``); opening anything else raises ``NotFormatted``.
The on-disk format is documented in :mod:`block_format`. In short: every
``apply`` appends one checksummed segment (its objects, tombstones and ref
changes) in whole sectors, flushes it, then writes a one-sector root naming
the new log end into the older of two root slots and flushes again. A crash
at any instant therefore leaves the store at the last root that reached the
disk, with nothing to repair on open.

Readers keep an in-memory index (id → offset, length, CRC) and ref table,
loaded from the newest checkpoint segment plus the segments after it. Other
processes' commits are picked up without reopening: a ``get`` miss,
``get_ref``, ``list_refs`` or the poller re-reads the root slots (one small
read) and indexes only the new tail (irmin-pack's "reload"). Writers
serialise with a thread lock and, across processes, ``flock`` on the device.

Space comes back by compaction (:meth:`BlockBackend.compact`, run by ``irmin
gc``): live records of the old part of the log are re-appended, a root with a
later ``log_start`` frees the rest, and the append point wraps round to the
freed space at the start of the device (the log is circular; see
:mod:`block_format`).

URI options: ``create=1`` (make and format the file if it does not exist, or
format a device that is entirely blank), ``size=64M`` (size of a new file),
``sector_size=N`` (at format), ``sync=false`` (do not fsync each apply: a
crash may then lose or damage the latest applies, which checksums detect).
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from .base import Backend, RefUpdate, check_expectations, check_ref_name
from .block_device import Device, FileDevice, create_image
from .block_format import (
    FORMAT_VERSION,
    KIND_BATCH,
    KIND_CHECKPOINT,
    KIND_WRAP,
    SEG_HEADER_FIXED,
    Batch,
    BlockCorruption,
    Damage,
    Root,
    SegmentInfo,
    Superblock,
    align_up,
    crc32,
    decode_checkpoint,
    decode_segment_header,
    encode_batch,
    encode_checkpoint,
    encode_wrap,
    header_len_of,
    newest_root,
    slot_align,
)
from .errors import InvalidURI, NotFormatted, StoreError, StoreFull
from .registry import bool_param

__all__ = ["BlockBackend", "CompactStats", "format_block", "open_block", "verify_block"]

_WINDOW = 1 << 20  # read-ahead when scanning segment headers
_CKPT_MIN = 4096  # tail entries before a checkpoint is due (see _ckpt_due)
_PIPELINE_MIN = 1 << 20  # payload bytes from which CRCs overlap the write
_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_COMPACT_CHUNK = 4 << 20  # bytes re-appended per compaction batch (writer lock held)
_COMPACT_CHUNK_N = 4_000  # objects per compaction batch


@dataclass
class CompactStats:
    """What one :meth:`BlockBackend.compact` did. Sizes are log bytes in use
    (from ``log_start`` to ``log_end``, segment headers and padding included)."""

    used_before: int = 0
    used_after: int = 0
    objects_before: int = 0
    objects_after: int = 0
    copied: int = 0  # objects re-appended
    copied_bytes: int = 0
    switches: int = 0  # roots written with a new log_start (>1 when space was tight)
    seconds: float = 0.0

    @property
    def space_returned(self) -> int:
        return self.used_before - self.used_after

    @property
    def dropped(self) -> int:
        return self.objects_before - self.objects_after

_T = TypeVar("_T")

Index = dict[bytes, tuple[int, int, int]]  # oid -> (offset, length, crc)


class BlockBackend(Backend):
    """Objects and refs in an append-only log of sectors on one device."""

    multi_process = True
    persistent = True

    def __init__(
        self, device: Device, uri: str = "block:", *, durable: bool = True,
        close_device: bool = True,
    ) -> None:
        super().__init__(uri, durable=durable)
        self._dev = device
        self._close_device = close_device
        self._lock = threading.RLock()
        #: Redundant structures found damaged and rebuilt from the log.
        self.repaired: list[Damage] = []
        #: Open a checkpoint once this many entries follow the last one.
        self.checkpoint_min = _CKPT_MIN
        #: Payloads this large are written while their CRCs are computed.
        self.pipeline_min = _PIPELINE_MIN
        self._pool: ThreadPoolExecutor | None = None
        self._compact_mutex = threading.Lock()
        #: Log bytes that commits adding objects must leave free (besides room
        #: for a checkpoint), so that a full store can still record deletions
        #: and be compacted (which copies live records before it frees any).
        self.reserve = 0
        #: While a compaction runs: ids that ``apply`` found already stored
        #: (a writer re-creating them), which ``compact(live_ids)`` keeps.
        self._reput: set[bytes] | None = None
        #: While compaction copies a chunk: records it read before taking
        #: the locks, ``oid -> (location, bytes)``.
        self._preread: dict[bytes, tuple[tuple[int, int, int], bytes]] | None = None
        try:
            self._sb = _read_superblock(device, uri)
            self._check_device()
            cap = self._sb.log_limit - self._sb.log_start
            self.reserve = max(32 * self._sb.sector_size, min(cap // 32, 64 << 20))
            self._load(self._read_root())
        except BaseException:
            if close_device:
                device.close()
            raise

    # -- opening ---------------------------------------------------------

    def _check_device(self) -> None:
        sb, dev = self._sb, self._dev
        if sb.sector_size % dev.sector_size:
            raise StoreError(f"{self.uri}: formatted with {sb.sector_size}-byte sectors, "
                             f"device needs multiples of {dev.sector_size}")
        dev.sector_size = sb.sector_size
        if dev.size < sb.device_size:
            raise BlockCorruption(
                [Damage(dev.size, f"device truncated: {dev.size} bytes, formatted as "
                                  f"{sb.device_size}; records past {dev.size} are lost")],
                self.uri)

    def _read_root(self) -> Root:
        s = self._sb.sector_size
        r0, r1 = self._sb.root_offsets
        raw = self._dev.read(r0, r1 - r0 + s)
        root = newest_root([raw[:s], raw[r1 - r0:r1 - r0 + s]], self._sb.uuid)
        if root is None:
            raise BlockCorruption([Damage(r0, "both root slots are damaged")], self.uri)
        lo, hi = self._sb.log_start, self._sb.log_limit
        if not (lo <= root.log_start <= hi and lo <= root.log_end <= hi):
            raise BlockCorruption([Damage(r0 if root.seq % 2 == 0 else r1,
                                          f"root {root.seq} points outside the log")], self.uri)
        return root

    def _load(self, root: Root) -> None:
        """Rebuild the in-memory state from ``root``'s checkpoint and tail.

        Another process may compact and overwrite the old log while we read
        it: damage found while the roots have moved on is retried from the
        new root; damage under a root that stays put is real."""
        for _attempt in range(8):
            try:
                self._load_once(root)
                return
            except BlockCorruption:
                newer = self._read_root()
                if newer.seq == root.seq:
                    raise
                root = newer
        self._load_once(root)

    def _load_once(self, root: Root) -> None:
        self._index: Index = {}
        self._refs: dict[str, bytes] = {}
        self._tail = 0
        start = root.log_start
        if root.ckpt_off:
            try:
                info, payload = self._read_checkpoint(root.ckpt_off)
                self._index, self._refs = decode_checkpoint(payload, root.ckpt_off)
                start = root.ckpt_off + info.total(self._sb.sector_size)
            except BlockCorruption as e:
                # The checkpoint is redundant: rebuild from the whole log.
                self.repaired.extend(e.damage)
                self._index, self._refs = {}, {}
        self._scan(start, root.log_end)
        self._root = root

    def _read_checkpoint(self, off: int) -> tuple[SegmentInfo, bytes]:
        head = self._read_exact(off, self._sb.sector_size)
        hl = header_len_of(head, off)
        info = decode_segment_header(self._read_exact(off, hl), off)
        if info.kind != KIND_CHECKPOINT:
            raise BlockCorruption([Damage(off, "root names a checkpoint that is not one")])
        payload = self._read_exact(info.payload_off, info.payload_len)
        if crc32(payload) != info.payload_crc:
            raise BlockCorruption([Damage(off, "checkpoint checksum mismatch")])
        return info, payload

    def _read_exact(self, off: int, n: int) -> bytes:
        data = self._dev.read(off, n)
        if len(data) < n:
            raise BlockCorruption([Damage(off + len(data), "device ends inside a record")], self.uri)
        return data

    # -- log geometry (circular: see block_format) -------------------------

    def _dist(self, a: int, b: int) -> int:
        """Bytes of log from position ``a`` to position ``b`` (log order)."""
        if b >= a:
            return b - a
        return (self._sb.log_limit - a) + (b - self._sb.log_start)

    def _in_log(self, off: int, start: int, end: int) -> bool:
        """Whether device offset ``off`` lies in the log part ``[start, end)``."""
        if start <= end:
            return start <= off < end
        return off >= start or off < end

    def _place(self, end: int, n: int, start: int) -> tuple[int, int | None]:
        """Where ``n`` bytes go after log position ``end`` without touching
        anything from ``start`` on: ``(offset, wrap marker offset or None)``."""
        lo, hi = self._sb.log_start, self._sb.log_limit
        if end >= start:  # not wrapped: free at the end, then before start
            if end + n <= hi:
                return end, None
            if lo + n < start:
                return lo, (end if end < hi else None)
        elif end + n < start:  # wrapped: free between end and start
            return end, None
        free = self._sb.log_limit - self._sb.log_start - self._dist(start, end)
        raise StoreFull(f"{self.uri}: device full: {n} bytes needed at offset {end}, "
                        f"{free} bytes free in all (run `irmin gc` to compact)")

    def _segments(self, start: int, end: int) -> Iterator[SegmentInfo]:
        """Decode the segment headers in ``[start, end)`` (log order, across a
        wrap), reading ahead in windows so that many small segments cost few
        reads. WRAP markers are followed, not yielded."""
        s = self._sb.sector_size
        lo, hi = self._sb.log_start, self._sb.log_limit
        pos, win_off, win = start, start, b""
        left = self._dist(start, end)
        while left > 0:
            if pos == hi:
                pos = lo
            stop = end if pos <= end else hi  # end of this contiguous run
            rel = pos - win_off
            if rel < 0 or rel + SEG_HEADER_FIXED > len(win):
                win_off, win, rel = pos, self._read_exact(pos, min(_WINDOW, stop - pos)), 0
            hl = header_len_of(memoryview(win)[rel:], pos)
            if rel + hl > len(win):
                if pos + hl > stop:
                    raise BlockCorruption([Damage(pos, "segment header runs past the log end")])
                win_off, win, rel = pos, self._read_exact(pos, max(hl, min(_WINDOW, stop - pos))), 0
            info = decode_segment_header(memoryview(win)[rel:rel + hl], pos)
            if info.kind == KIND_WRAP:
                if pos <= end:
                    raise BlockCorruption([Damage(pos, "wrap marker inside an unwrapped log")])
                left -= hi - pos
                pos = lo
                continue
            total = info.total(s)
            if pos + total > stop or total > left:
                raise BlockCorruption([Damage(pos, "segment runs past the log end")])
            yield info
            pos += total
            left -= total

    def _scan(self, start: int, end: int) -> None:
        try:
            for info in self._segments(start, end):
                self._absorb(info)
        except BlockCorruption as e:
            raise BlockCorruption(e.damage, self.uri) from e

    def _absorb(self, info: SegmentInfo) -> None:
        if info.kind == KIND_CHECKPOINT:
            self._tail = 0
            return
        for o in info.objects:
            self._index[o.oid] = (o.offset, o.length, o.crc)
        for oid in info.tombstones:
            self._index.pop(oid, None)
        for name, new in info.refs:
            if new is None:
                self._refs.pop(name, None)
            else:
                self._refs[name] = new
        self._tail += 1 + len(info.objects) + len(info.tombstones) + len(info.refs)

    def _refresh(self) -> None:
        """See commits made by other handles or processes since we last looked."""
        root = self._read_root()
        cur = self._root
        if root.seq == cur.seq:
            return
        if (root.seq < cur.seq or root.log_start != cur.log_start
                or self._dist(cur.log_start, root.log_end) < self._dist(cur.log_start, cur.log_end)):
            self._load(root)  # rewound (crash recovery) or compacted: start over
            return
        try:
            self._scan(cur.log_end, root.log_end)
        except BlockCorruption:
            self._load(root)  # the tail moved under us (compacted meanwhile): start over
            return
        self._root = root

    # -- objects ---------------------------------------------------------

    def get(self, oid: bytes) -> bytes | None:
        self._check_open()
        # Hits skip the lock (which writers hold through their fsync): the
        # index is only ever replaced or updated under the GIL, the device
        # reads positionally, and the CRC catches a location that compaction
        # reused meanwhile -- then the locked path below looks again.
        loc = self._index.get(oid)
        if loc is not None:
            try:
                return self._read_object(oid, loc)
            except BlockCorruption:
                pass
        with self._lock:
            loc = self._index.get(oid)
            if loc is None:
                self._refresh()
                loc = self._index.get(oid)
                if loc is None:
                    return None
            try:
                return self._read_object(oid, loc)
            except BlockCorruption:
                # Another process may have compacted the log and reused the
                # space: a moved root means a stale location, so look again.
                seq = self._root.seq
                self._refresh()
                if self._root.seq == seq:
                    raise
                loc = self._index.get(oid)
                if loc is None:
                    return None
                return self._read_object(oid, loc)

    def _read_object(self, oid: bytes, loc: tuple[int, int, int]) -> bytes:
        off, length, want = loc
        data = self._dev.read(off, length)
        if len(data) < length:
            raise BlockCorruption([Damage(off, "record truncated (device ends)", oid)], self.uri)
        if crc32(data) != want:
            raise BlockCorruption([Damage(off, "record checksum mismatch", oid)], self.uri)
        return data

    def has(self, oid: bytes) -> bool:
        self._check_open()
        with self._lock:
            if oid in self._index:
                return True
            self._refresh()
            return oid in self._index

    def put_many(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        self.apply(items, ())

    def iter_ids(self) -> Iterator[bytes]:
        self._check_open()
        with self._lock:
            self._refresh()
            return iter(list(self._index))

    def remove_many(self, oids: Iterable[bytes]) -> int:
        """Record tombstones; the space comes back only with compaction."""
        self._check_open()
        wanted = list(dict.fromkeys(oids))
        with self._lock, _WriterLock(self._dev):
            self._refresh()
            gone = [o for o in wanted if o in self._index]
            if gone:
                self._commit(Batch(tombstones=gone))
            return len(gone)

    def remove_many_if_refs_unchanged(self, oids: Iterable[bytes], token: object) -> int | None:
        """gc's sweep: tombstone ``oids`` only if nothing was committed since
        :meth:`refs_token` returned ``token`` (``None``, nothing removed, if
        something was). Check and tombstones happen under the writer lock."""
        self._check_open()
        wanted = list(dict.fromkeys(oids))
        with self._lock, _WriterLock(self._dev):
            self._refresh()
            if self._root.seq != token:
                return None
            gone = [o for o in wanted if o in self._index]
            if gone:
                self._commit(Batch(tombstones=gone))
            return len(gone)

    def exclusive(self, fn: Callable[[_LockedView], _T]) -> _T:
        """Run ``fn(view)`` holding the thread lock and the cross-process
        writer lock (``flock``): no commit from any thread or process lands
        meanwhile. ``view`` is this handle with ``remove_many`` writing its
        tombstones under the locks already held (reads take only the
        re-entrant thread lock)."""
        self._check_open()
        with self._lock, _WriterLock(self._dev):
            self._refresh()
            return fn(_LockedView(self))

    def _tombstone(self, oids: Iterable[bytes]) -> int:
        """Called with both locks held."""
        wanted = list(dict.fromkeys(oids))
        gone = [o for o in wanted if o in self._index]
        if gone:
            self._commit(Batch(tombstones=gone))
        return len(gone)

    # -- refs ------------------------------------------------------------

    def get_ref(self, name: str) -> bytes | None:
        self._check_open()
        with self._lock:
            self._refresh()
            return self._refs.get(name)

    def list_refs(self, prefix: str = "") -> dict[str, bytes]:
        self._check_open()
        with self._lock:
            self._refresh()
            return {k: v for k, v in self._refs.items() if k.startswith(prefix)}

    def refs_token(self) -> object:
        """The root sequence number: one small read, changes with every commit."""
        return self._read_root().seq

    def apply(
        self, objects: Iterable[tuple[bytes, bytes]], refs: Iterable[RefUpdate] = ()
    ) -> bool:
        self._check_open()
        updates = list(refs)
        for u in updates:
            check_ref_name(u.name)
        items = list(objects)
        with self._lock, _WriterLock(self._dev):
            self._refresh()
            fresh: dict[bytes, bytes] = {}
            reput = self._reput
            for oid, data in items:
                if oid not in self._index and oid not in fresh:
                    fresh[oid] = data
                elif reput is not None:
                    reput.add(oid)
            changes = check_expectations(self._refs, updates) if updates else []
            batch = Batch(objects=list(fresh.items()))
            if changes:
                batch.refs = [(name, new) for name, _old, new in changes]
            if not batch.empty():
                self._commit(batch, keep_free=self.reserve + self._ckpt_room()
                             if batch.objects else 0)
        if changes:
            self._notify(changes)
        return changes is not None

    # -- the commit path -------------------------------------------------

    def _crc_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="irmin-block-crc")
        return self._pool

    def _state_after(self, batch: Batch, new_entries: Index) -> tuple[Index, dict[str, bytes]]:
        """Index and refs as they will be once ``batch`` is applied."""
        after: Index = {**self._index, **new_entries}
        for oid in batch.tombstones:
            after.pop(oid, None)
        refs_after = dict(self._refs)
        for name, new in batch.refs:
            if new is None:
                refs_after.pop(name, None)
            else:
                refs_after[name] = new
        return after, refs_after

    def _ckpt_due(self, extra: int) -> bool:
        return self._tail + extra >= max(self.checkpoint_min, len(self._index) // 4)

    def _commit(self, batch: Batch, *, log_start: int | None = None,
                checkpoint: bool | None = None, keep_free: int = 0) -> None:
        """Append ``batch`` (and a checkpoint when due), flush, flip the root.

        Called with both locks held and the state refreshed. Nothing in memory
        changes unless the root write completed. A large payload is written
        first, sector-aligned, while a worker thread computes its CRCs, and
        its header after.

        ``checkpoint``: ``None`` writes one when due, ``True`` always (raising
        :class:`StoreFull` if it does not fit), ``False`` never. ``log_start``
        (compaction) moves the start of the log: the new root then needs
        nothing before it, so objects located there leave the index, and a
        checkpoint is written (the refs recorded there would be lost
        otherwise). New bytes never go where the *current* root needs them:
        placement respects the old ``log_start`` until the new root is on disk.
        ``keep_free``: raise :class:`StoreFull` rather than leave less free.
        """
        s = self._sb.sector_size
        root = self._root
        seq = root.seq + 1
        new_start = root.log_start if log_start is None else log_start
        moving = new_start != root.log_start
        if moving:
            checkpoint = True
        datas = [d for _o, d in batch.objects]
        payload_len = sum(len(d) for d in datas)
        big = payload_len >= self.pipeline_min
        writes: list[tuple[int, list[bytes]]] = []  # small writes after the payload
        end = root.log_end
        off = end
        hl = 0
        placed: list[tuple[bytes, int, int, int]] = []
        if not batch.empty() or not checkpoint:
            # The header's length does not depend on the CRC values.
            header, placed = encode_batch(batch, seq, crcs=[0] * len(datas) if big else None,
                                          pad_to=s if big else 0)
            hl = len(header)
            off, wrap_at = self._place(end, align_up(hl + payload_len, s), root.log_start)
            if wrap_at is not None:
                writes.append((wrap_at, [encode_wrap(seq)]))
            end = off + align_up(hl + payload_len, s)
            cap = self._sb.log_limit - self._sb.log_start
            if keep_free and cap - self._dist(root.log_start, end) < keep_free:
                raise StoreFull(f"{self.uri}: device full: {end - off} bytes needed at offset "
                                f"{off} would eat into the {keep_free} bytes kept for "
                                "deletions and compaction (run `irmin gc`)")
        nentries = 1 + len(batch.objects) + len(batch.tombstones) + len(batch.refs)
        ckpt_off = root.ckpt_off
        try:
            new_entries = {oid: (off + hl + p, ln, c) for oid, p, ln, c in placed}
            if hl:
                if big:
                    pool = self._crc_pool()
                    futures = [pool.submit(crc32, d) for d in datas]
                    try:
                        self._dev.write(off + hl, datas)
                    finally:
                        crcs = [f.result() for f in futures]
                    header, placed = encode_batch(batch, seq, crcs=crcs, pad_to=s)
                    new_entries = {oid: (off + hl + p, ln, c) for oid, p, ln, c in placed}
                    writes.append((off, [header]))
                else:
                    writes.append((off, [header, *datas]))
            after: tuple[Index, dict[str, bytes]] | None = None
            if checkpoint or (checkpoint is None and self._ckpt_due(nentries)):
                index_after, refs_after = after = self._state_after(batch, new_entries)
                if moving:
                    index_after = {k: v for k, v in index_after.items()
                                   if self._in_log(v[0], new_start, end)}
                    after = (index_after, refs_after)
                ck = encode_checkpoint(index_after, refs_after, seq)
                try:
                    c_off, c_wrap = self._place(end, align_up(len(ck[0]) + len(ck[1]), s),
                                                root.log_start)
                except StoreFull:
                    if checkpoint:
                        raise
                    after = None  # skip it: the data still fits
                else:
                    if c_wrap is not None:
                        writes.append((c_wrap, [encode_wrap(seq)]))
                    writes.append((c_off, list(ck)))
                    ckpt_off, end = c_off, c_off + align_up(len(ck[0]) + len(ck[1]), s)
            for w_off, parts in writes:
                self._dev.write(w_off, parts)
            if self.durable or moving:
                self._dev.sync()
            new_root = Root(seq, new_start, end, ckpt_off, self._sb.uuid)
            self._dev.write(self._sb.root_offsets[seq % 2], [new_root.encode(s)])
            if self.durable or moving:
                self._dev.sync()
        except OSError as e:
            if e.errno in _FULL_ERRNOS:
                raise StoreFull(f"{self.uri}: no space left writing at offset {off}") from e
            raise StoreError(f"{self.uri}: I/O error writing at offset {off}: {e}") from e
        if moving and after is not None:
            self._index, self._refs = after
        else:
            index = self._index
            index.update(new_entries)
            for oid in batch.tombstones:
                index.pop(oid, None)
            for name, new in batch.refs:
                if new is None:
                    self._refs.pop(name, None)
                else:
                    self._refs[name] = new
        self._tail = 0 if ckpt_off != root.ckpt_off else self._tail + nentries
        self._root = new_root

    # -- compaction ------------------------------------------------------

    def _ckpt_room(self) -> int:
        """Generous size of a checkpoint of the current state, plus a sector."""
        est = 64 + 96 * len(self._index) + sum(  # ids up to 64 bytes
            8 + len(n) + len(v) for n, v in self._refs.items())
        return align_up(est, self._sb.sector_size) + 2 * self._sb.sector_size

    def compact(
        self, live_ids: Iterable[bytes] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> CompactStats:
        """Give back the space of deleted (tombstoned) and superseded records.

        The live objects of the log as it is now (every stored object, or
        only those in ``live_ids``: the others are dropped) are re-appended
        in log order, in batches of a few MiB, each an ordinary commit under
        the writer lock, so writers (threads, processes) interleave with the
        copy and lose nothing. Then one root moves ``log_start`` past the old
        part, with a checkpoint of the whole state; the space before it is
        reused when the append point wraps round. When free space runs short
        the log start moves in several steps (each past the part already
        copied). A crash at any instant leaves either the old root, which
        the copy never overwrote, or a later one.

        ``live_ids`` is for callers that computed liveness themselves: an id
        it leaves out is dropped even if a writer in *another process*
        stores the same object meanwhile (in this process such a re-put is
        seen and kept). ``irmin gc`` tombstones first and calls
        ``compact()`` without it. ``progress(done, total)`` is called with
        log bytes walked. Returns :class:`CompactStats`.
        """
        self._check_open()
        t0 = time.perf_counter()
        live = None if live_ids is None else set(live_ids)
        s = self._sb.sector_size
        with self._compact_mutex:
            with self._lock, _WriterLock(self._dev):
                self._refresh()
                root = self._root
                stats = CompactStats(used_before=self._dist(root.log_start, root.log_end),
                                     objects_before=len(self._index))
                old_start, old_end = root.log_start, root.log_end
                if live is not None:
                    self._reput = set()
            # start: log_start as this compaction last set it; copied: every
            # object to keep before this position has been copied.
            state = {"start": old_start, "copied": old_start}
            total = self._dist(old_start, old_end)
            try:
                pending: list[tuple[bytes, tuple[int, int, int]]] = []
                pending_bytes = 0
                done = 0
                for info in self._segments(old_start, old_end):
                    index = self._index
                    for o in info.objects:
                        loc = (o.offset, o.length, o.crc)
                        if index.get(o.oid) != loc:
                            continue  # deleted, or superseded by a later copy
                        if live is not None and o.oid not in live:
                            continue
                        pending.append((o.oid, loc))
                        pending_bytes += o.length
                    # Everything before ``nxt`` is copied once ``pending`` is.
                    nxt = info.offset + info.total(s)
                    done = self._dist(old_start, nxt)
                    # Small batches while space is short, so that the part
                    # copied can be freed early (see _commit_copy).
                    with self._lock:
                        r = self._root
                        free = (self._sb.log_limit - self._sb.log_start
                                - self._dist(r.log_start, r.log_end))
                    chunk = max(s, min(_COMPACT_CHUNK, free // 4))
                    if pending_bytes >= chunk or len(pending) >= _COMPACT_CHUNK_N:
                        self._copy_live(pending, state, stats, live, nxt)
                        pending, pending_bytes = [], 0
                    if progress is not None:
                        progress(done, total)
                self._copy_live(pending, state, stats, live, None, final=old_end)
            finally:
                self._reput = None
            with self._lock:
                r = self._root
                stats.used_after = self._dist(r.log_start, r.log_end)
                stats.objects_after = len(self._index)
        stats.seconds = time.perf_counter() - t0
        return stats

    def _copy_live(
        self, pending: list[tuple[bytes, tuple[int, int, int]]], state: dict[str, int],
        stats: CompactStats, live: set[bytes] | None, copied_to: int | None,
        final: int | None = None,
    ) -> None:
        """Re-append ``pending`` (those still where they were read), one commit.

        ``copied_to``: once this batch is in, every object to keep that lies
        before this log position has been copied. ``final``: the end of the
        old part; this commit also moves log_start there.
        """
        # Read what to copy before taking the locks (writers would otherwise
        # wait for thousands of reads); under the locks only what is still
        # where it was read is copied, and the CRC checked on each read
        # catches space another process reused meanwhile.
        pre: dict[bytes, tuple[tuple[int, int, int], bytes]] = {}
        for oid, loc in pending:
            try:
                pre[oid] = (loc, self._read_object(oid, loc))
            except BlockCorruption:
                continue
        with self._lock, _WriterLock(self._dev):
            self._preread = pre
            try:
                self._copy_live_locked(pending, state, stats, live, copied_to, final)
            finally:
                self._preread = None

    def _copy_live_locked(
        self, pending: list[tuple[bytes, tuple[int, int, int]]], state: dict[str, int],
        stats: CompactStats, live: set[bytes] | None, copied_to: int | None,
        final: int | None,
    ) -> None:
        """:meth:`_copy_live`'s part under both locks."""
        self._refresh()
        if self._root.log_start != state["start"]:
            raise StoreError(f"{self.uri}: the log start moved during compaction "
                             "(another process compacting?); nothing lost, run it again")
        index = self._index
        todo = [(oid, loc) for oid, loc in pending if index.get(oid) == loc]
        if todo or final is not None:
            self._commit_copy(todo, state, stats, live, final)
        if copied_to is not None:
            state["copied"] = copied_to

    def _leftovers(self, a: int, b: int, live: set[bytes] | None,
                   skip: set[bytes]) -> list[tuple[bytes, tuple[int, int, int]]]:
        """Objects to keep that still lie in the log part ``[a, b)``."""
        keep = None if live is None else live | (self._reput or set())
        return [(oid, loc) for oid, loc in self._index.items()
                if oid not in skip and self._in_log(loc[0], a, b)
                and (keep is None or oid in keep)]

    def _commit_copy(
        self, todo: list[tuple[bytes, tuple[int, int, int]]], state: dict[str, int],
        stats: CompactStats, live: set[bytes] | None, move_to: int | None,
    ) -> None:
        """Commit copies of ``todo``; with ``move_to``, then move log_start
        there (copying whatever to keep is still before it in the same commit)."""
        if todo:
            self._copy_items(todo, state, stats, live)
        if move_to is None:
            return
        for attempt in (0, 1):
            root = self._root
            extra = self._leftovers(root.log_start, move_to, live, set())
            try:
                self._commit(self._copy_batch(extra), log_start=move_to)
            except StoreFull:
                if attempt or state["copied"] == root.log_start:
                    raise
                self._switch(state, stats, live)
                continue
            stats.switches += 1
            state["start"] = move_to
            self._count(stats, extra)
            return

    def _copy_batch(self, items: list[tuple[bytes, tuple[int, int, int]]]) -> Batch:
        pre = self._preread or {}
        out = []
        for oid, loc in items:
            got = pre.get(oid)
            out.append((oid, got[1] if got is not None and got[0] == loc
                        else self._read_object(oid, loc)))
        return Batch(objects=out)

    @staticmethod
    def _count(stats: CompactStats, items: list[tuple[bytes, tuple[int, int, int]]]) -> None:
        stats.copied += len(items)
        stats.copied_bytes += sum(loc[1] for _o, loc in items)

    def _copy_items(self, items: list[tuple[bytes, tuple[int, int, int]]],
                    state: dict[str, int], stats: CompactStats, live: set[bytes] | None) -> None:
        """One copy commit, leaving room for a switch's checkpoint. When it
        does not fit: free the part already copied and retry, or else split
        it (free space may be in two pieces, at the end and at the start)."""
        try:
            self._commit(self._copy_batch(items), checkpoint=False,
                         keep_free=self._ckpt_room())
        except StoreFull:
            if state["copied"] != self._root.log_start:
                self._switch(state, stats, live)
                self._copy_items(items, state, stats, live)
            elif len(items) > 1:
                half = len(items) // 2
                self._copy_items(items[:half], state, stats, live)
                self._copy_items(items[half:], state, stats, live)
            else:
                raise
            return
        self._count(stats, items)

    def _switch(self, state: dict[str, int], stats: CompactStats,
                live: set[bytes] | None) -> None:
        """Move log_start past the part already copied (space is short)."""
        p = state["copied"]
        extra = self._leftovers(self._root.log_start, p, live, set())
        self._commit(self._copy_batch(extra), log_start=p)
        stats.switches += 1
        state["start"] = p
        self._count(stats, extra)

    # -- durability, checking, lifetime ----------------------------------------

    def flush(self) -> None:
        self._check_open()
        with self._lock:
            self._dev.sync()

    def verify(self) -> list[Damage]:
        """Read and check every live segment and record; list what is damaged.

        Scanning stops at a damaged segment header (its length is unknown),
        so everything after it is reported as unreachable in that entry.
        """
        self._check_open()
        damage: list[Damage] = []
        with self._lock:
            self._refresh()
            root = self._root
            try:
                for info in self._segments(root.log_start, root.log_end):
                    if info.kind == KIND_CHECKPOINT:
                        payload = self._dev.read(info.payload_off, info.payload_len)
                        if crc32(payload) != info.payload_crc:
                            damage.append(Damage(info.offset, "checkpoint checksum mismatch"))
                        continue
                    if info.kind != KIND_BATCH:
                        damage.append(Damage(info.offset, f"unknown segment kind {info.kind}"))
                    for o in info.objects:
                        data = self._dev.read(o.offset, o.length)
                        if len(data) < o.length:
                            damage.append(Damage(o.offset, "record truncated", o.oid))
                        elif crc32(data) != o.crc:
                            damage.append(Damage(o.offset, "record checksum mismatch", o.oid))
            except BlockCorruption as e:
                damage.extend(Damage(d.offset, d.what + f"; log up to {root.log_end} unreadable "
                                     "from here", d.oid) for d in e.damage)
        return damage

    def check(self) -> None:
        """Raise :class:`BlockCorruption` listing every damaged place, if any."""
        damage = self.verify()
        if damage:
            raise BlockCorruption(damage, self.uri)

    def locate(self, oid: bytes) -> tuple[int, int] | None:
        """Where an object's bytes are on the device: ``(offset, length)``."""
        with self._lock:
            loc = self._index.get(oid)
            return None if loc is None else (loc[0], loc[1])

    @property
    def stats(self) -> dict[str, int]:
        """Sizes for tools and benchmarks (log use, index size, root sequence).

        ``log_used`` is the log's bytes in use (``log_end - log_start``, or
        round the wrap), ``log_free`` what is left; ``compact()`` lowers one
        and raises the other."""
        with self._lock:
            r = self._root
            used = self._dist(r.log_start, r.log_end)
            return {"seq": r.seq, "log_start": r.log_start, "log_end": r.log_end,
                    "log_limit": self._sb.log_limit, "log_used": used,
                    "log_free": self._sb.log_limit - self._sb.log_start - used,
                    "wrapped": int(r.log_end < r.log_start), "objects": len(self._index),
                    "refs": len(self._refs), "tail_entries": self._tail,
                    "sector_size": self._sb.sector_size}

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown()
            if self._close_device:
                self._dev.close()


class _LockedView:
    """:meth:`BlockBackend.exclusive`'s view: reads as usual, deletes
    without re-taking the writer lock."""

    def __init__(self, b: BlockBackend) -> None:
        self.get, self.get_many, self.list_refs = b.get, b.get_many, b.list_refs
        self.remove_many = b._tombstone


class _WriterLock:
    """The cross-process writer lock, held only while appending."""

    def __init__(self, dev: Device) -> None:
        self._dev = dev

    def __enter__(self) -> None:
        self._dev.lock()

    def __exit__(self, *exc: object) -> None:
        self._dev.unlock()


def _read_superblock(dev: Device, what: str) -> Superblock:
    raw = dev.read(0, max(dev.sector_size, 512))
    if not Superblock.is_ours(raw):
        kind = "is empty (all zeros)" if not any(raw) else "holds something else"
        raise NotFormatted(f"{what}: not an irmin block store ({kind}); "
                           "format it with `irmin init` or format_block()")
    sb = Superblock.decode(raw)
    if sb.version != FORMAT_VERSION:
        raise NotFormatted(f"{what}: irmin block format version {sb.version} is not "
                           f"supported (this build reads {FORMAT_VERSION})")
    return sb


def _is_blank(dev: Device) -> bool:
    a = slot_align(dev.sector_size)
    return not any(dev.read(0, 3 * a + dev.sector_size))


def format_block(
    target: str | Device, *, size: int | None = None, sector_size: int | None = None,
    force: bool = False,
) -> None:
    """Write an empty store onto ``target`` (a device path, image file or Device).

    A missing file is created with ``size`` bytes. A target that already holds
    an irmin store or any other non-blank data is refused unless ``force``.
    Roots are written before the superblock, so a format cut short never
    looks like a store.
    """
    if isinstance(target, Device):
        dev, own = target, False
    else:
        if not os.path.exists(target):
            if size is None:
                raise StoreError(f"{target} does not exist; give size= to create it")
            create_image(target, size)
        dev, own = FileDevice(target, sector_size), True
    try:
        if sector_size is not None and sector_size % dev.sector_size == 0:
            dev.sector_size = sector_size
        s = dev.sector_size
        if s & (s - 1) or s < 512:
            raise StoreError(f"sector size {s} is not a power of two >= 512")
        if not force and not _is_blank(dev):
            head = dev.read(0, 8)
            what = "an irmin store" if Superblock.is_ours(head) else "other data"
            raise StoreError(f"{target} already holds {what}; refusing to format "
                             "without force=True")
        sb = Superblock.layout(dev.size, s, os.urandom(16))
        if sb.log_limit - sb.log_start < 16 * s:
            raise StoreError(f"{target}: {dev.size} bytes is too small for a store")
        for seq in (0, 1):
            root = Root(seq, sb.log_start, sb.log_start, 0, sb.uuid)
            dev.write(sb.root_offsets[seq % 2], [root.encode(s)])
        dev.sync()
        dev.write(0, [sb.encode()])
        dev.sync()
    except OSError as e:
        raise StoreError(f"cannot format {target}: {e}") from e
    finally:
        if own:
            dev.close()


def verify_block(path: str) -> list[Damage]:
    """Open ``path`` and check every record (for ``irmin fsck``)."""
    with BlockBackend(FileDevice(path), f"block:{path}") as b:
        return b.verify()


_SUFFIX = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``"64M"`` → 67108864 (K, M, G, T are binary; a trailing ``B``/``iB`` is ok)."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = t[-1:] if t[-1:] in _SUFFIX else ""
    try:
        return int(t[: len(t) - len(unit)]) * _SUFFIX[unit]
    except ValueError:
        raise InvalidURI(f"bad size {text!r}") from None


_OPTIONS = {"create", "size", "sector_size", "sync"}


def open_block(path: str, params: dict[str, str]) -> BlockBackend:
    """Opener for ``block:PATH[?create=1&size=64M&sync=false&sector_size=512]``."""
    unknown = set(params) - _OPTIONS
    if unknown:
        raise InvalidURI(f"unknown block: options {sorted(unknown)}; known: {sorted(_OPTIONS)}")
    if not path:
        raise InvalidURI("block: needs a path, e.g. block:/dev/loop0 or block:store.img")
    durable = bool_param(params, "sync", True)
    sector = int(params["sector_size"]) if "sector_size" in params else None
    uri = f"block:{path}"
    if bool_param(params, "create", False):
        if not os.path.exists(path):
            if "size" not in params:
                raise InvalidURI(f"{uri}: create=1 of a new file needs size=")
            format_block(path, size=parse_size(params["size"]), sector_size=sector)
        else:
            dev = FileDevice(path, sector)
            try:
                blank = _is_blank(dev)
                if blank:
                    format_block(dev, sector_size=sector)
            finally:
                dev.close()
    try:
        dev = FileDevice(path)
    except FileNotFoundError as e:
        raise NotFormatted(f"{uri}: no such device or file (create=1&size=... makes one)") from e
    except OSError as e:
        raise StoreError(f"{uri}: cannot open: {e}") from e
    return BlockBackend(dev, uri, durable=durable)
