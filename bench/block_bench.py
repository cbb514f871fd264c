"""Append throughput (vs ``dd``), small commits, and open time after a crash,
for the ``block:`` backend.

Usage::

    python bench/block_bench.py DEVICE [--mib 16] [--count 60] [--runs 3]
                                [--open 10000,1000000]

DEVICE is reformatted (force=True): use a loop device, e.g.
``truncate -s 2G /tmp/loop.img && losetup -f --show /tmp/loop.img``.

Throughput: each run formats the device, appends ``count`` objects of
``mib`` MiB (one ``apply`` each) and, interleaved in the same run, ``dd
if=/dev/zero of=DEVICE oflag=direct bs=1M`` writes the same number of bytes
(``conv=notrunc``; with ``conv=fdatasync`` as well). ``sync=false`` (O_DIRECT
writes, no fsync, like dd without conv=fdatasync) is the like-for-like
figure; ``sync=true`` fsyncs every apply (dd with conv=fdatasync syncs once). Best of ``runs`` and median are printed.

Open after a crash: a child process writes N small objects (batches of 10,000
per apply, a ref moved with each), then keeps committing until it is killed
with SIGKILL; the time to open the store afterwards is measured (three opens,
best and median).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time

from irmin.backends.block import BlockBackend, format_block, open_block
from irmin.backends.block_format import CRC32_IMPL


def dd(target: str, total_mib: int, extra: list[str]) -> float:
    """MiB/s of ``dd oflag=direct bs=1M`` writing ``total_mib`` MiB."""
    t = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={target}", "oflag=direct", "bs=1M",
                    f"count={total_mib}", "conv=notrunc", *extra], check=True,
                   capture_output=True)
    return total_mib / (time.perf_counter() - t)


def append_rate(target: str, items: list[tuple[bytes, bytes]], mib: int, sync: str) -> float:
    format_block(target, force=True)
    with open_block(target, {"sync": sync}) as b:
        assert isinstance(b, BlockBackend) and b._dev.direct  # type: ignore[attr-defined]
        t = time.perf_counter()
        for oid, data in items:
            assert b.apply([(oid, data)], [])
        return len(items) * mib / (time.perf_counter() - t)


def show(name: str, xs: list[float], ref: list[float] | None = None) -> str:
    line = f"{name}: best {max(xs):.0f} MiB/s, median {statistics.median(xs):.0f} MiB/s"
    if ref is not None:
        line += (f"  = {max(xs) / max(ref):.0%} of dd (best/best), "
                 f"{statistics.median(xs) / statistics.median(ref):.0%} (median/median)")
    return line


CRASH_CHILD = textwrap.dedent("""
    import hashlib, sys
    from irmin.backends import RefUpdate
    from irmin.backends.block import open_block
    n = int(sys.argv[2])
    b = open_block(sys.argv[1], {})
    def objs(lo, hi):
        out = []
        for j in range(lo, hi):
            body = b"object %d" % j
            data = b"blob %d\\0" % len(body) + body
            out.append((hashlib.sha1(data).digest(), data))
        return out
    head = None
    for i in range(0, n, 10_000):
        batch = objs(i, min(n, i + 10_000))
        assert b.apply(batch, [RefUpdate("refs/heads/main", head, batch[-1][0])])
        head = batch[-1][0]
    print("ready", flush=True)
    i = n
    while True:  # small commits until killed
        batch = objs(i, i + 4)
        assert b.apply(batch, [RefUpdate("refs/heads/main", head, batch[-1][0])])
        head = batch[-1][0]
        i += 4
""")


def open_after_crash(target: str, n: int) -> tuple[list[float], dict[str, int]]:
    format_block(target, force=True)
    child = subprocess.Popen([sys.executable, "-c", CRASH_CHILD, target, str(n)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    child.send_signal(signal.SIGKILL)
    child.wait()
    times = []
    stats: dict[str, int] = {}
    for _ in range(3):
        t = time.perf_counter()
        with open_block(target, {}) as b:
            times.append(time.perf_counter() - t)
            stats = b.stats  # type: ignore[attr-defined]
    return times, stats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("target")
    ap.add_argument("--mib", type=int, default=16)
    ap.add_argument("--count", type=int, default=60)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--open", default="10000,1000000")
    a = ap.parse_args()
    print(f"crc32: {CRC32_IMPL}; {os.cpu_count()} CPUs; target {a.target}")
    payload = os.urandom(a.mib << 20)
    items = []
    for i in range(a.count):  # hashing is the caller's cost, not the store's
        data = b"%d\0" % i + payload
        items.append((hashlib.sha1(data).digest(), data))
    total = a.mib * a.count
    rates: dict[str, list[float]] = {"sync=false": [], "sync=true": [], "dd": [], "dd_sync": []}
    for _ in range(a.runs):
        rates["sync=false"].append(append_rate(a.target, items, a.mib, "false"))
        rates["dd"].append(dd(a.target, total, []))
        rates["sync=true"].append(append_rate(a.target, items, a.mib, "true"))
        rates["dd_sync"].append(dd(a.target, total, ["conv=fdatasync"]))
    print(f"append {a.count} x {a.mib} MiB ({total} MiB), {a.runs} runs")
    print("  " + show("dd oflag=direct bs=1M", rates["dd"]))
    print("  " + show("block sync=false", rates["sync=false"], rates["dd"]))
    print("  " + show("dd oflag=direct bs=1M conv=fdatasync", rates["dd_sync"]))
    print("  " + show("block sync=true (fsync per apply)", rates["sync=true"], rates["dd_sync"]))
    for n in (int(x) for x in a.open.split(",") if x):
        t0 = time.perf_counter()
        times, st = open_after_crash(a.target, n)
        print(f"open after kill -9, {st['objects']} objects (made in "
              f"{time.perf_counter() - t0:.0f}s): best {min(times) * 1000:.1f} ms, "
              f"median {statistics.median(times) * 1000:.1f} ms; tail entries scanned "
              f"{st['tail_entries']}, log {st['log_used'] >> 20} MiB")


if __name__ == "__main__":
    main()
