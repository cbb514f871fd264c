"""Sector I/O for the ``block:`` backend: a device is a fixed-size run of sectors.

The backend talks to a :class:`Device`, never to a file descriptor, so tests
can substitute a device that simulates power loss (dropping writes that were
not flushed) without mocks in the backend itself. :class:`FileDevice` is the
real thing, for block devices and for regular files used as one.

``FileDevice`` opens with ``O_DIRECT`` when the kernel and file system allow
it (so a large append goes to the device without a page-cache copy, like
``dd oflag=direct``), staging data in page-aligned ``mmap`` buffers as
``O_DIRECT`` demands; when they do not, it falls back to ordinary buffered
I/O, which is equally correct because durability comes from ``fdatasync``.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import stat
import struct
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

Buffer = bytes | bytearray | memoryview

BLKSSZGET = 0x1268  # logical block size, int
BLKGETSIZE64 = 0x80081272  # device size in bytes, u64

_STAGE = 4 << 20  # each of two aligned staging buffers for O_DIRECT writes
_SCRATCH = 1 << 20  # reused aligned buffer for O_DIRECT reads
_IOV_MAX = 512


class Device(ABC):
    """Fixed-size, sector-addressed storage with an explicit durability point."""

    sector_size: int = 512
    size: int = 0

    @abstractmethod
    def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` (short only at the device end)."""

    @abstractmethod
    def write(self, offset: int, parts: Sequence[Buffer]) -> None:
        """Write the concatenation of ``parts`` at the sector-aligned ``offset``,
        zero-padded to whole sectors. Not durable until :meth:`sync`."""

    @abstractmethod
    def sync(self) -> None:
        """Make every completed write durable."""

    def lock(self) -> None:
        """Take the cross-process writer lock (a no-op for private devices)."""

    def unlock(self) -> None:
        """Release the writer lock."""

    def close(self) -> None:
        """Release the device."""

    def padded(self, n: int) -> int:
        s = self.sector_size
        return (n + s - 1) // s * s


class FileDevice(Device):
    """A block device or a regular file, via ``O_DIRECT`` when possible."""

    def __init__(self, path: str, sector_size: int | None = None, *, direct: bool = True) -> None:
        self.path = path
        st = os.stat(path)
        self.is_block = stat.S_ISBLK(st.st_mode)
        flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
        o_direct = getattr(os, "O_DIRECT", 0) if direct else 0
        self._fd = -1
        if o_direct:
            try:
                self._fd = os.open(path, flags | o_direct)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
        self.direct = self._fd >= 0
        if not self.direct:
            self._fd = os.open(path, flags)
        if self.is_block:
            buf = fcntl.ioctl(self._fd, BLKSSZGET, b"\0" * 4)
            self.logical_block_size = struct.unpack("i", buf)[0]
            buf = fcntl.ioctl(self._fd, BLKGETSIZE64, b"\0" * 8)
            self.size = struct.unpack("Q", buf)[0]
        else:
            self.logical_block_size = 512
            self.size = st.st_size
        self.sector_size = max(sector_size or self.logical_block_size, self.logical_block_size)
        self._io_lock = threading.Lock()
        self._stages: tuple[mmap.mmap, mmap.mmap] | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._scratch: mmap.mmap | None = None
        if self.direct and not self._probe_direct():
            os.close(self._fd)
            self._fd = os.open(path, flags)
            self.direct = False

    def _probe_direct(self) -> bool:
        """Some file systems accept ``O_DIRECT`` at open but refuse the I/O."""
        buf = mmap.mmap(-1, self.sector_size)
        try:
            os.preadv(self._fd, [buf], 0)
            return True
        except OSError as e:
            if e.errno == errno.EINVAL:
                return False
            raise
        finally:
            buf.close()

    # -- reads ------------------------------------------------------------

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        if not self.direct:
            return os.pread(self._fd, length, offset)
        s = self.sector_size
        start = offset - offset % s
        end = (offset + length + s - 1) // s * s
        span = end - start
        with self._io_lock:
            if span <= _SCRATCH:
                if self._scratch is None:
                    self._scratch = mmap.mmap(-1, _SCRATCH)
                buf, own = self._scratch, False
            else:
                buf, own = mmap.mmap(-1, span), True
            try:
                got = os.preadv(self._fd, [memoryview(buf)[:span]], start)
                lo = offset - start
                hi = min(lo + length, got)
                return buf[lo:hi] if hi > lo else b""
            finally:
                if own:
                    buf.close()

    # -- writes -----------------------------------------------------------

    def write(self, offset: int, parts: Sequence[Buffer]) -> None:
        if offset % self.sector_size:
            raise ValueError(f"unaligned write at {offset}")
        total = sum(len(p) for p in parts)
        pad = self.padded(total) - total
        if self.direct:
            with self._io_lock:
                self._write_staged(offset, parts, pad)
        else:
            views = [memoryview(p) for p in parts if len(p)]
            if pad:
                views.append(memoryview(bytes(pad)))
            self._pwritev_all(offset, views)

    def _write_staged(self, offset: int, parts: Sequence[Buffer], pad: int) -> None:
        """Copy into aligned buffers and write them; for writes larger than one
        buffer, a second buffer is filled while the first is being written
        (``pwritev`` releases the GIL), so the copy costs no wall time."""
        if self._stages is None:
            self._stages = (mmap.mmap(-1, _STAGE), mmap.mmap(-1, _STAGE))
        big = sum(len(p) for p in parts) + pad > _STAGE
        pending: Future[None] | None = None
        cur, fill, pos = 0, 0, offset
        sv = memoryview(self._stages[0])

        def submit() -> None:
            nonlocal pending, cur, fill, pos, sv
            if pending is not None:
                pending.result()
                pending = None
            if big:
                if self._writer is None:
                    self._writer = ThreadPoolExecutor(1, thread_name_prefix="irmin-block-io")
                pending = self._writer.submit(self._pwritev_all, pos, [sv[:fill]])
            else:
                self._pwritev_all(pos, [sv[:fill]])
            pos += fill
            fill = 0
            cur ^= 1
            sv = memoryview(self._stages[cur])  # type: ignore[index]

        try:
            for p in (*parts, bytes(pad)):
                mv = memoryview(p).cast("B")
                i = 0
                while i < len(mv):
                    n = min(len(mv) - i, _STAGE - fill)
                    sv[fill:fill + n] = mv[i:i + n]
                    fill += n
                    i += n
                    if fill == _STAGE:
                        submit()
            if fill:
                submit()
        finally:
            if pending is not None:  # never leave a buffer in flight
                pending.result()

    def _pwritev_all(self, offset: int, views: list[memoryview]) -> None:
        """pwritev every byte, resuming after short writes (ENOSPC shows as 0)."""
        i = 0
        while i < len(views):
            batch = views[i:i + _IOV_MAX]
            want = sum(len(v) for v in batch)
            done = os.pwritev(self._fd, batch, offset)
            if done == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
            offset += done
            if done != want and self.direct:
                # The rest would be unaligned; a short direct write means full.
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
            if done == want:
                i += len(batch)
                continue
            # Short write: drop the bytes already written and go on.
            rest: list[memoryview] = []
            for v in batch:
                if done >= len(v):
                    done -= len(v)
                    continue
                rest.append(v[done:])
                done = 0
            views = rest + views[i + len(batch):]
            i = 0

    def sync(self) -> None:
        os.fdatasync(self._fd)

    def lock(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def unlock(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None
        for m in (*(self._stages or ()), self._scratch):
            if m is not None:
                m.close()
        self._stages, self._scratch = None, None


def create_image(path: str, size: int) -> None:
    """Create a sparse regular file of ``size`` bytes to use as a device."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
