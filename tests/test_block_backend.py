"""The ``block:`` backend on real files, a real loop device and a simulated
power-loss device (a :class:`Device` whose unflushed writes a crash drops).

The contract itself is checked by ``test_backend_conformance.py``; this file
checks what only a block store promises: explicit formatting, crash safety
without repair, corruption reports that name the place, a full device that
loses nothing, and readers in other processes that see new commits.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from irmin.backends import RefUpdate, open_backend
from irmin.backends.block import BlockBackend, format_block, open_block
from irmin.backends.block_device import Device, FileDevice
from irmin.backends.block_format import BlockCorruption, slot_align
from irmin.backends.errors import CorruptStore, NotFormatted, StoreError, StoreFull

MAIN = "refs/heads/main"


def obj(body: bytes) -> tuple[bytes, bytes]:
    data = b"blob %d\0" % len(body) + body
    return hashlib.sha1(data).digest(), data


def new_store(tmp_path: Path, size: str = "8M", name: str = "store.img") -> str:
    return f"block:{tmp_path / name}?create=1&size={size}"


# ---------------------------------------------------------------------------
# A device with a volatile write cache, for power-loss tests
# ---------------------------------------------------------------------------


class PowerCut(Exception):
    """The power went off in the middle of an operation."""


class CacheDevice(Device):
    """In-memory device: writes are visible at once but durable only after
    ``sync``; :meth:`crash` keeps a random subset of unflushed sectors, like a
    disk losing its write cache. ``cut_at`` raises :class:`PowerCut` at the
    n-th write or sync."""

    def __init__(self, image: bytearray, sector_size: int = 512) -> None:
        self.size = len(image)
        self.sector_size = sector_size
        self.image = bytearray(image)  # what reads see
        self.durable = bytearray(image)  # what survives a crash
        self.pending: list[tuple[int, bytes]] = []
        self.ops = 0
        self.cut_at: int | None = None

    def _tick(self) -> None:
        self.ops += 1
        if self.cut_at is not None and self.ops >= self.cut_at:
            raise PowerCut(self.ops)

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self.image[offset:offset + length])

    def write(self, offset: int, parts) -> None:  # type: ignore[no-untyped-def]
        data = b"".join(bytes(p) for p in parts)
        data += bytes(self.padded(len(data)) - len(data))
        if offset + len(data) > self.size:
            raise OSError(28, "No space left on device")
        self._tick()
        self.image[offset:offset + len(data)] = data
        self.pending.append((offset, data))

    def sync(self) -> None:
        self._tick()
        for off, data in self.pending:
            self.durable[off:off + len(data)] = data
        self.pending.clear()

    def crash(self, rng: random.Random) -> CacheDevice:
        """The device as it comes back: durable bytes plus some unflushed sectors."""
        image = bytearray(self.durable)
        s = self.sector_size
        for off, data in self.pending:
            for i in range(0, len(data), s):
                if rng.random() < 0.5:
                    image[off + i:off + i + s] = data[i:i + s]
        return CacheDevice(image, self.sector_size)


def snapshot(b: BlockBackend) -> tuple[dict[bytes, bytes], dict[str, bytes]]:
    objects = {oid: b.get(oid) for oid in b.iter_ids()}
    return objects, b.list_refs()  # type: ignore[return-value]


# ---------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------


def test_format_open_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.img"
    format_block(str(path), size=4 << 20)
    a, b_ = obj(b"a"), obj(b"b" * 5000)
    with open_backend(f"block:{path}") as b:
        assert isinstance(b, BlockBackend)
        assert b.apply([a, b_], [RefUpdate(MAIN, None, a[0])])
    with open_backend(f"block:{path}") as b:
        assert b.get(a[0]) == a[1] and b.get(b_[0]) == b_[1]
        assert b.list_refs() == {MAIN: a[0]}
        assert b.verify() == []
    with pytest.raises(StoreError, match="already holds an irmin store"):
        format_block(str(path))
    format_block(str(path), force=True)
    with open_backend(f"block:{path}") as b:
        assert b.list_refs() == {} and list(b.iter_ids()) == []


@pytest.mark.parametrize("content", ["zeros", "random", "ext4"])
def test_foreign_or_blank_device_is_not_formatted(tmp_path: Path, content: str) -> None:
    path = tmp_path / "foreign.img"
    image = bytearray(1 << 20)
    if content == "random":
        image[:] = os.urandom(len(image))
    elif content == "ext4":
        image[1024 + 56:1024 + 58] = b"\x53\xef"  # ext4 superblock magic
        image[1024:1028] = (128).to_bytes(4, "little")
    path.write_bytes(image)
    with pytest.raises(NotFormatted):
        open_backend(f"block:{path}")
    assert path.read_bytes() == image  # never a silent format
    if content != "zeros":
        # create=1 formats only a missing or blank target, never foreign data
        with pytest.raises(NotFormatted):
            open_backend(f"block:{path}?create=1&size=1M")
        assert path.read_bytes() == image
        with pytest.raises(StoreError, match="other data"):
            format_block(str(path))
    else:
        with open_backend(f"block:{path}?create=1") as b:
            b.put(*obj(b"x"))
    with pytest.raises(NotFormatted):
        open_backend(f"block:{tmp_path / 'absent.img'}")


def test_sector_size_4096_and_direct_io(tmp_path: Path) -> None:
    path = tmp_path / "big-sectors.img"
    format_block(str(path), size=4 << 20, sector_size=4096)
    with open_backend(f"block:{path}") as b:
        assert b.stats["sector_size"] == 4096  # type: ignore[attr-defined]
        items = [obj(os.urandom(n)) for n in (1, 511, 4097, 70000)]
        assert b.apply(items, [RefUpdate(MAIN, None, items[0][0])])
        assert b.stats["log_end"] % 4096 == 0  # type: ignore[attr-defined]
        assert b._dev.direct  # type: ignore[attr-defined]  # ext4 here allows O_DIRECT
    with open_backend(f"block:{path}") as b:
        assert b.get_many([o for o, _ in items]) == dict(items)


def test_small_apply_is_few_sector_writes() -> None:
    dev = CacheDevice(bytearray(1 << 20))
    format_block(dev)
    b = BlockBackend(dev, "block:test")
    writes: list[tuple[int, int]] = []
    real_write = dev.write
    dev.write = lambda off, parts: (writes.append((off, sum(len(p) for p in parts))),  # type: ignore[method-assign]
                                    real_write(off, parts))[1]
    items = [obj(b"small %d" % i) for i in range(4)]
    assert b.apply(items, [RefUpdate(MAIN, None, items[0][0])])
    assert len(writes) == 2  # one segment (≤ 2 sectors), one root
    assert writes[0][1] <= 2 * 512 and writes[1][1] == 512


# ---------------------------------------------------------------------------
# Checkpoints: opening does not rescan the whole log
# ---------------------------------------------------------------------------


def test_checkpoints_bound_the_tail_scanned_on_open(tmp_path: Path) -> None:
    uri = new_store(tmp_path, "16M")
    expected: dict[bytes, bytes] = {}
    with open_backend(uri) as b:
        b.checkpoint_min = 50  # type: ignore[attr-defined]
        for i in range(400):
            item = obj(b"ckpt %d" % i)
            expected[item[0]] = item[1]
            assert b.apply([item], [RefUpdate(MAIN, b.get_ref(MAIN), item[0])])
        gone = list(expected)[:10]
        assert b.remove_many(gone) == 10
        for oid in gone:
            del expected[oid]
    with open_backend(uri) as b:
        assert b.stats["tail_entries"] < 3 * 100  # type: ignore[attr-defined]
        assert set(b.iter_ids()) == set(expected)
        assert b.get_many(list(expected)) == expected
        assert b.get_ref(MAIN) == obj(b"ckpt 399")[0]
        assert b.verify() == []


def test_damaged_checkpoint_is_rebuilt_from_the_log(tmp_path: Path) -> None:
    path = tmp_path / "store.img"
    uri = f"block:{path}?create=1&size=8M"
    with open_backend(uri) as b:
        b.checkpoint_min = 20  # type: ignore[attr-defined]
        items = [obj(b"c %d" % i) for i in range(30)]
        for item in items:
            b.put(*item)
        root = b._root  # type: ignore[attr-defined]
        assert root.ckpt_off
    with open(path, "r+b") as f:  # damage the checkpoint payload
        f.seek(root.ckpt_off + 200)
        byte = f.read(1)
        f.seek(root.ckpt_off + 200)
        f.write(bytes([byte[0] ^ 0xFF]))
    with open_backend(f"block:{path}") as b:
        assert b.repaired and b.repaired[0].offset == root.ckpt_off  # type: ignore[attr-defined]
        assert b.get_many([o for o, _ in items]) == dict(items)


# ---------------------------------------------------------------------------
# A full device
# ---------------------------------------------------------------------------


def test_full_device_raises_store_full_and_loses_nothing(tmp_path: Path) -> None:
    uri = new_store(tmp_path, "256K")
    stored: dict[bytes, bytes] = {}
    with open_backend(uri) as b:
        with pytest.raises(StoreFull):
            for i in range(10_000):
                item = obj(os.urandom(3000) + b"%d" % i)
                assert b.apply([item], [RefUpdate(MAIN, b.get_ref(MAIN), item[0])])
                stored[item[0]] = item[1]
        assert len(stored) > 40
        last = list(stored)[-1]
        assert b.get_ref(MAIN) == last
        assert b.get_many(list(stored)) == stored  # readable after StoreFull
        with pytest.raises(StoreFull):
            b.put(*obj(os.urandom(100_000)))
        assert b.cas_ref("refs/heads/small", None, last) in (True, False)  # may still fit
    with open_backend(uri) as b:
        assert b.get_many(list(stored)) == stored
        assert b.get_ref(MAIN) == last
        assert b.verify() == []


@pytest.mark.parametrize("direct", [True, False], ids=["o_direct", "buffered"])
def test_enospc_from_the_host_file_system(tmp_path: Path, direct: bool) -> None:
    """A sparse image on a tiny tmpfs: the kernel's ENOSPC becomes StoreFull."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    # The suite runs as root (loop devices need it too): mounting must work.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        uri = new_store(mnt, "8M")
        open_backend(uri).close()
        stored: dict[bytes, bytes] = {}
        with BlockBackend(FileDevice(str(mnt / "store.img"), direct=direct), uri) as b:
            assert b._dev.direct == direct  # type: ignore[attr-defined]
            with pytest.raises(StoreFull):
                for i in range(1000):
                    item = obj(os.urandom(64 << 10) + b"%d" % i)
                    b.put(*item)
                    stored[item[0]] = item[1]
            assert stored and b.get_many(list(stored)) == stored
        with open_backend(uri) as b:
            assert b.get_many(list(stored)) == stored
            assert b.verify() == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


# ---------------------------------------------------------------------------
# Corruption: detected, and the damaged place named
# ---------------------------------------------------------------------------


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x55]))


def test_flipped_byte_in_a_record(tmp_path: Path) -> None:
    path = tmp_path / "store.img"
    good, bad = obj(b"good"), obj(b"will be damaged" * 10)
    with open_backend(f"block:{path}?create=1&size=4M") as b:
        b.put_many([good, bad])
        where = b.locate(bad[0])  # type: ignore[attr-defined]
    assert where is not None
    flip(path, where[0] + 7)
    with open_backend(f"block:{path}") as b:
        assert b.get(good[0]) == good[1]
        with pytest.raises(CorruptStore) as e:
            b.get(bad[0])
        assert isinstance(e.value, BlockCorruption)
        assert [(d.offset, d.oid) for d in e.value.damage] == [(where[0], bad[0])]
        assert bad[0].hex() in str(e.value) and str(where[0]) in str(e.value)
        damage = b.verify()
        assert [(d.offset, d.oid) for d in damage] == [(where[0], bad[0])]


def test_flipped_byte_in_a_segment_header_fails_open(tmp_path: Path) -> None:
    path = tmp_path / "store.img"
    with open_backend(f"block:{path}?create=1&size=4M") as b:
        b.put(*obj(b"first"))
        seg = b.stats["log_end"]  # type: ignore[attr-defined]
        b.put(*obj(b"second"))
    flip(path, seg + 45)
    with pytest.raises(CorruptStore) as e:
        open_backend(f"block:{path}")
    assert isinstance(e.value, BlockCorruption) and e.value.damage[0].offset == seg


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "store.img"
    with open_backend(f"block:{path}?create=1&size=4M") as b:
        b.put(*obj(os.urandom(100_000)))
        end = b.stats["log_end"]  # type: ignore[attr-defined]
    os.truncate(path, end // 2)
    with pytest.raises(CorruptStore, match="truncated") as e:
        open_backend(f"block:{path}")
    assert isinstance(e.value, BlockCorruption) and e.value.damage[0].offset == end // 2


def test_torn_root_write_opens_at_the_previous_commit(tmp_path: Path) -> None:
    path = tmp_path / "store.img"
    one, two = obj(b"one"), obj(b"two")
    with open_backend(f"block:{path}?create=1&size=4M") as b:
        assert b.apply([one], [RefUpdate(MAIN, None, one[0])])
        assert b.apply([two], [RefUpdate(MAIN, one[0], two[0])])
        seq = b.stats["seq"]  # type: ignore[attr-defined]
    slot = slot_align(512) * (1 + seq % 2)
    with open(path, "r+b") as f:  # the newest root slot: half new garbage, torn
        f.seek(slot + 20)
        f.write(os.urandom(200))
    with open_backend(f"block:{path}") as b:
        assert b.stats["seq"] == seq - 1  # type: ignore[attr-defined]
        assert b.get_ref(MAIN) == one[0]
        assert b.get(two[0]) is None and b.get(one[0]) == one[1]
        assert b.verify() == []
        three = obj(b"three")  # and it goes on from there
        assert b.apply([three], [RefUpdate(MAIN, one[0], three[0])])
    with open_backend(f"block:{path}") as b:
        assert b.get_ref(MAIN) == three[0] and b.get(three[0]) == three[1]
    with open(path, "r+b") as f:  # both slots gone: reported, not guessed
        for s in (slot_align(512), 2 * slot_align(512)):
            f.seek(s)
            f.write(b"\0" * 512)
    with pytest.raises(CorruptStore, match="both root slots"):
        open_backend(f"block:{path}")


# ---------------------------------------------------------------------------
# Power loss at any instant
# ---------------------------------------------------------------------------


def _random_apply(b: BlockBackend, rng: random.Random, step: int) -> None:
    """One random apply or gc (deterministic for a given rng and store state)."""
    refs = b.list_refs()
    ids = list(b.iter_ids())
    if ids and rng.random() < 0.15:
        victims = [v for v in rng.sample(ids, k=min(2, len(ids))) if v not in refs.values()]
        b.remove_many(victims)
        return
    items = [obj(b"%d-%d-" % (step, i) + rng.randbytes(rng.choice((10, 300, 700, 5000))))
             for i in range(rng.randint(0, 4))]
    name = rng.choice(["refs/heads/a", "refs/heads/b", "refs/tags/t"])
    target = items[0][0] if items else (rng.choice(ids) if ids else None)
    b.apply(items, [RefUpdate(name, refs.get(name), target)])


def _run(seed: int, steps: int, cut_at: int | None = None) -> tuple[
        list[tuple[dict[bytes, bytes], dict[str, bytes]]], CacheDevice]:
    """Snapshots after each completed step; stops at the power cut, if any."""
    rng = random.Random(seed)
    dev = CacheDevice(bytearray(2 << 20))
    format_block(dev)
    b = BlockBackend(dev, "block:powerloss", close_device=False)
    b.checkpoint_min = 6
    b.pipeline_min = 4000 if seed % 2 else 1 << 20  # odd seeds: payload before header
    done = [snapshot(b)]
    if cut_at is not None:
        dev.cut_at = dev.ops + cut_at
    for step in range(steps):
        try:
            _random_apply(b, rng, step)
        except PowerCut:
            break
        done.append(snapshot(b))
    return done, dev


@pytest.mark.parametrize("seed", range(40))
def test_power_loss_comes_back_at_the_last_flush(seed: int) -> None:
    reference, _ = _run(seed, 60)
    done, dev = _run(seed, 60, cut_at=random.Random(seed).randint(1, 150))
    k = len(done) - 1  # completed steps; step k was in flight
    crashed = dev.crash(random.Random(seed + 1000))
    b2 = BlockBackend(crashed, "block:recovered")
    state = snapshot(b2)
    # Durable applies return only after their root is flushed: the store is at
    # the last one that returned, or at the one in flight if its root made it.
    assert state == reference[k] or (k + 1 < len(reference) and state == reference[k + 1])
    assert b2.verify() == []
    item = obj(b"after recovery")
    assert b2.apply([item], [RefUpdate("refs/heads/after", None, item[0])])
    b3 = BlockBackend(CacheDevice(crashed.image), "block:again")
    assert b3.get(item[0]) == item[1] and b3.get_ref("refs/heads/after") == item[0]
    assert b3.get_many(list(state[0])) == state[0]


def test_unflushed_appends_without_root_are_invisible() -> None:
    """Dropping every unflushed write after each step always gives the last apply."""
    dev = CacheDevice(bytearray(1 << 20))
    format_block(dev)
    b = BlockBackend(dev, "block:t", close_device=False)
    b.checkpoint_min = 5
    rng = random.Random(7)
    for step in range(30):
        _random_apply(b, rng, step)
        want = snapshot(b)
        after = BlockBackend(dev.crash(random.Random(step)), "block:c")
        assert snapshot(after) == want


# ---------------------------------------------------------------------------
# Several processes
# ---------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import hashlib, sys, time
    from irmin.backends import open_backend, RefUpdate
    b = open_backend(sys.argv[1])
    prev = None
    for i in range(int(sys.argv[2])):
        data = b"blob %d\\0" % len(b"w%d" % i) + b"w%d" % i
        oid = hashlib.sha1(data).digest()
        assert b.apply([(oid, data)], [RefUpdate("refs/heads/main", prev, oid)])
        prev = oid
        print(oid.hex(), flush=True)
        sys.stdin.readline()  # wait for the reader to check
    b.close()
""")


def test_reader_in_this_process_sees_another_process_commits(tmp_path: Path) -> None:
    uri = new_store(tmp_path, "8M")
    reader = open_backend(uri)
    reader.get_ref(MAIN)  # loaded before the writer starts
    writer = subprocess.Popen([sys.executable, "-c", WRITER, uri, "20"], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=tmp_path)
    assert writer.stdin is not None and writer.stdout is not None
    try:
        for i in range(20):
            oid = bytes.fromhex(writer.stdout.readline().strip())
            assert reader.get_ref(MAIN) == oid  # no reopen: the root is re-read
            data = reader.get(oid)
            assert data is not None and data.endswith(b"w%d" % i)
            writer.stdin.write("\n")
            writer.stdin.flush()
        assert writer.wait(30) == 0
    finally:
        writer.kill()
        reader.close()


# ---------------------------------------------------------------------------
# A real loop device
# ---------------------------------------------------------------------------


def test_loop_device(tmp_path: Path) -> None:
    assert os.geteuid() == 0 and shutil.which("losetup"), "loop devices need root and losetup"
    image = tmp_path / "loop.img"
    image.write_bytes(b"")
    os.truncate(image, 32 << 20)
    dev = subprocess.run(["losetup", "-f", "--show", str(image)], check=True,
                         capture_output=True, text=True).stdout.strip()
    try:
        fd = FileDevice(dev)
        assert fd.is_block and fd.size == 32 << 20 and fd.direct
        fd.close()
        with pytest.raises(NotFormatted):
            open_backend(f"block:{dev}")
        format_block(dev)
        items = [obj(os.urandom(n)) for n in (10, 1000, 1 << 20)]
        with open_backend(f"block:{dev}") as b:
            assert b.apply(items, [RefUpdate(MAIN, None, items[0][0])])
        with open_backend(f"block:{dev}") as b:
            assert b.get_many([o for o, _ in items]) == dict(items)
            assert b.get_ref(MAIN) == items[0][0]
            assert b.verify() == []
            with pytest.raises(StoreFull):
                b.put(*obj(os.urandom(40 << 20)))
            assert b.get_ref(MAIN) == items[0][0]
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)
    # the image file holds the same store
    with open_block(str(image), {}) as b:
        assert b.get(items[2][0]) == items[2][1]


def test_uri_options(tmp_path: Path) -> None:
    from irmin.backends.errors import InvalidURI

    with pytest.raises(InvalidURI):
        open_backend(f"block:{tmp_path / 'x.img'}?create=1")  # no size for a new file
    with pytest.raises(InvalidURI):
        open_backend(f"block:{tmp_path / 'x.img'}?bogus=1")
    with open_backend(f"block:{tmp_path / 'x.img'}?create=1&size=2M&sync=false") as b:
        assert not b.durable
        b.put(*obj(b"x"))
        b.flush()
    assert os.path.getsize(tmp_path / "x.img") == 2 << 20
    time.sleep(0)


def test_gc_sweep_is_atomic_with_commits(tmp_path: Path) -> None:
    with open_backend(new_store(tmp_path, "2M")) as b:
        garbage, live = obj(b"garbage"), obj(b"live")
        b.put_many([garbage, live])
        token = b.refs_token()
        b.put(*obj(b"a writer got in"))  # any commit moves the token
        assert b.remove_many_if_refs_unchanged([garbage[0]], token) is None  # type: ignore[attr-defined]
        assert b.has(garbage[0])
        token = b.refs_token()
        assert b.remove_many_if_refs_unchanged([garbage[0]], token) == 1  # type: ignore[attr-defined]
        assert not b.has(garbage[0]) and b.get(live[0]) == live[1]


# ---------------------------------------------------------------------------
# Compaction: space comes back, live objects and refs stay, the log wraps
# ---------------------------------------------------------------------------


def _fill(b: BlockBackend, n: int, size: int, tag: bytes) -> list[tuple[bytes, bytes]]:
    items = []
    for i in range(0, n, 5):
        batch = [obj(tag + b"%d-" % j + os.urandom(size)) for j in range(i, min(n, i + 5))]
        b.put_many(batch)
        items.extend(batch)
    return items


def test_compact_returns_space_and_keeps_every_live_object(tmp_path: Path) -> None:
    uri = new_store(tmp_path, "8M")
    with open_backend(uri) as b:
        assert isinstance(b, BlockBackend)
        b.checkpoint_min = 40
        items = _fill(b, 600, 3000, b"a")
        live = dict(items[::3])
        gone = [o for o, _ in items if o not in live]
        assert b.apply([], [RefUpdate(MAIN, None, items[0][0]),
                            RefUpdate("refs/tags/v1", None, items[3][0])])
        assert b.remove_many(gone) == len(gone)
        refs = b.list_refs()
        before = b.stats["log_used"]
        st = b.compact()
        assert st.space_returned == before - b.stats["log_used"] > 0
        assert b.stats["log_used"] < before * 0.5
        assert st.copied == len(live) and st.dropped == 0 and st.switches == 1
        assert b.get_many(list(live)) == live
        assert set(b.iter_ids()) == set(live)
        assert all(b.get(o) is None for o in gone[:50])
        assert b.list_refs() == refs
        assert b.verify() == []
        more = _fill(b, 50, 1000, b"after")
        live.update(more)
    with open_backend(uri) as b:
        assert b.get_many(list(live)) == live and set(b.iter_ids()) == set(live)
        assert b.list_refs() == refs
        assert b.verify() == []
        assert b.compact().space_returned >= 0  # idempotent: nothing left to drop


def test_compact_live_ids_drops_the_rest(tmp_path: Path) -> None:
    with open_backend(new_store(tmp_path, "4M")) as b:
        assert isinstance(b, BlockBackend)
        items = _fill(b, 100, 2000, b"l")
        keep = dict(items[:30])
        st = b.compact(live_ids=list(keep))
        assert st.dropped == 70 and st.copied == 30 and st.space_returned > 0
        assert set(b.iter_ids()) == set(keep) and b.get_many(list(keep)) == keep


def test_log_wraps_after_compaction_and_fills_again(tmp_path: Path) -> None:
    """Rounds of fill-to-full, delete most, compact: the append point wraps
    round to the freed start of the device again and again."""
    uri = new_store(tmp_path, "384K")
    live: dict[bytes, bytes] = {}
    wrapped = 0
    rng = random.Random(5)
    with open_backend(uri) as b:
        assert isinstance(b, BlockBackend)
        b.checkpoint_min = 30
        for rnd in range(8):
            added = []
            with pytest.raises(StoreFull):
                for i in range(10_000):
                    item = obj(b"r%d-%d-" % (rnd, i) + rng.randbytes(rng.choice((100, 900, 3000))))
                    assert b.apply([item], [RefUpdate(MAIN, b.get_ref(MAIN), item[0])])
                    added.append(item)
                    wrapped += b.stats["wrapped"]
            assert len(added) > 5
            live.update(added)
            head = b.get_ref(MAIN)
            victims = [o for o in list(live) if o != head and rng.random() < 0.8]
            b.remove_many(victims)
            for o in victims:
                del live[o]
            used = b.stats["log_used"]
            st = b.compact()
            assert b.stats["log_used"] < used and st.space_returned > 0
            assert b.get_many(list(live)) == live and set(b.iter_ids()) == set(live)
            assert b.get_ref(MAIN) == head
            assert b.verify() == []
            with open_backend(uri) as again:
                assert again.get_many(list(live)) == live
                assert again.get_ref(MAIN) == head
    assert wrapped > 0


def test_compact_on_a_full_device_frees_in_steps(tmp_path: Path) -> None:
    with open_backend(new_store(tmp_path, "512K")) as b:
        assert isinstance(b, BlockBackend)
        items: list[tuple[bytes, bytes]] = []
        with pytest.raises(StoreFull):
            for i in range(10_000):
                item = obj(b"f%d-" % i + os.urandom(1500))
                b.put(*item)
                items.append(item)
        live = dict(items[::4])
        b.remove_many([o for o, _ in items if o not in live])
        st = b.compact()
        assert st.space_returned > 0 and st.switches >= 1
        assert b.get_many(list(live)) == live and set(b.iter_ids()) == set(live)
        more = _fill(b, 60, 1500, b"more")
        live.update(more)
        assert b.get_many(list(live)) == live and b.verify() == []


def test_writers_during_compaction_lose_nothing(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import threading

    from irmin.backends import block as block_mod

    monkeypatch.setattr(block_mod, "_COMPACT_CHUNK", 8192)  # many small copy batches
    uri = new_store(tmp_path, "16M")
    with open_backend(uri) as b:
        assert isinstance(b, BlockBackend)
        items = _fill(b, 400, 2000, b"w")
        b.remove_many([o for o, _ in items[::2]])
        live = dict(items[1::2])
        written: dict[bytes, bytes] = {}
        stop = threading.Event()

        def writer() -> None:
            i = 0
            while not stop.is_set():
                item = obj(b"concurrent %d" % i)
                assert b.apply([item], [RefUpdate("refs/heads/w", b.get_ref("refs/heads/w"), item[0])])
                written[item[0]] = item[1]
                i += 1

        t = threading.Thread(target=writer)
        t.start()
        try:
            st = b.compact()
        finally:
            stop.set()
            t.join()
        assert st.space_returned > 0 and written
        live.update(written)
        assert b.get_many(list(live)) == live
        assert b.get_ref("refs/heads/w") == list(written)[-1]
    with open_backend(uri) as b:
        assert b.get_many(list(live)) == live and set(b.iter_ids()) == set(live)


def test_other_handle_holding_old_locations_rereads(tmp_path: Path) -> None:
    """A reader (another handle: same as another process) keeps locations from
    before a compaction; the space is then overwritten after the wrap."""
    path = tmp_path / "s.img"
    uri = f"block:{path}?create=1&size=512K"
    with open_backend(uri) as w, open_backend(f"block:{path}") as r:
        items = _fill(w, 60, 3000, b"x")
        w.remove_many([o for o, _ in items[1:]])
        keep = items[0]
        assert r.get(keep[0]) == keep[1]  # r's index: the old location
        old = r.locate(keep[0])  # type: ignore[attr-defined]
        w.compact()  # type: ignore[attr-defined]
        for i in range(200):  # wrap round and overwrite the old place
            w.put(*obj(b"y%d" % i + os.urandom(3000)))
            if w.stats["wrapped"] and w.stats["log_end"] > old[0] + 4096:  # type: ignore[attr-defined]
                break
        assert w.stats["wrapped"]  # type: ignore[attr-defined]
        assert r.get(keep[0]) == keep[1]
        assert r.locate(keep[0]) != old  # type: ignore[attr-defined]


def _compaction_run(cut_at: int | None, seed: int = 3) -> tuple[CacheDevice, dict, dict, int]:
    rng = random.Random(seed)
    dev = CacheDevice(bytearray(1 << 20))
    format_block(dev)
    b = BlockBackend(dev, "block:c", close_device=False)
    b.checkpoint_min = 10
    items = []
    for i in range(120):
        item = obj(b"p%d-" % i + rng.randbytes(rng.choice((50, 900, 4000))))
        b.apply([item], [RefUpdate(MAIN, b.get_ref(MAIN), item[0])])
        items.append(item)
    b.remove_many([o for o, _ in items if rng.random() < 0.7 and o != b.get_ref(MAIN)])
    want_objects, want_refs = snapshot(b)
    ops0 = dev.ops
    if cut_at is not None:
        dev.cut_at = dev.ops + cut_at
    try:
        b.compact()
    except PowerCut:
        pass
    return dev, want_objects, want_refs, dev.ops - ops0


def test_power_loss_at_any_instant_of_compaction(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from irmin.backends import block as block_mod

    monkeypatch.setattr(block_mod, "_COMPACT_CHUNK", 20_000)  # several copy commits
    _dev, want_objects, want_refs, nops = _compaction_run(None)
    assert nops > 8
    for cut in range(1, nops + 1):
        dev, w_obj, w_refs, _ = _compaction_run(cut)
        assert (w_obj, w_refs) == (want_objects, want_refs)
        crashed = dev.crash(random.Random(cut))
        b = BlockBackend(crashed, "block:recovered", close_device=False)
        assert snapshot(b) == (want_objects, want_refs), f"cut at op {cut}"
        assert b.verify() == []
        b.compact()  # and compaction can run again to the end
        item = obj(b"after %d" % cut)
        assert b.apply([item], [RefUpdate("refs/heads/after", None, item[0])])
        b2 = BlockBackend(CacheDevice(crashed.image), "block:again")
        assert b2.get_many(list(want_objects)) == want_objects
        assert b2.get(item[0]) == item[1] and b2.list_refs()[MAIN] == want_refs[MAIN]


KILLED_COMPACTOR = textwrap.dedent("""
    import sys
    from irmin.backends import open_backend
    from irmin.backends import block
    block._COMPACT_CHUNK = 4096
    b = open_backend(sys.argv[1])
    print("go", flush=True)
    b.compact()
    print("done", flush=True)
""")


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.3])
def test_kill_9_during_compaction(tmp_path: Path, delay: float) -> None:
    uri = new_store(tmp_path, "16M")
    with open_backend(uri) as b:
        items = _fill(b, 1500, 2000, b"k")
        b.apply([], [RefUpdate(MAIN, None, items[-1][0])])
        b.remove_many([o for o, _ in items[::2]])
        want = snapshot(b)  # type: ignore[arg-type]
        used = b.stats["log_used"]  # type: ignore[attr-defined]
    child = subprocess.Popen([sys.executable, "-c", KILLED_COMPACTOR, uri],
                             stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    assert child.stdout is not None and child.stdout.readline().strip() == "go"
    time.sleep(delay)
    child.kill()
    child.wait()
    with open_backend(uri) as b:
        assert snapshot(b) == want  # type: ignore[arg-type]
        assert b.verify() == []  # type: ignore[attr-defined]
        b.compact()  # type: ignore[attr-defined]
        assert b.stats["log_used"] < used  # type: ignore[attr-defined]
        assert snapshot(b) == want  # type: ignore[arg-type]


def test_gc_compacts_block(tmp_path: Path) -> None:
    """``irmin gc`` calls ``compact()`` after its sweep (irmin/gc.py)."""
    import inspect

    from irmin import gc as gc_mod

    assert "compactor()" in inspect.getsource(gc_mod.gc)
    with open_backend(new_store(tmp_path, "2M")) as b:
        b.put_many([obj(b"x")])
        assert b.compact().used_after <= b.stats["log_used"]  # type: ignore[attr-defined]
