"""Append throughput and open time of the ``block:`` backend.

Usage: python bench/block_bench.py DEVICE_OR_IMAGE [MiB per object] [objects]
The target is reformatted (force=True). Compare with
``dd if=/dev/zero of=DEVICE oflag=direct bs=1M count=N``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

from irmin.backends import RefUpdate
from irmin.backends.block import BlockBackend, format_block, open_block


def dd(target: str, mib: int, count: int, extra: list[str]) -> float:
    """MiB/s of ``dd oflag=direct`` writing the same amount, for comparison."""
    t = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={target}", "oflag=direct", f"bs={mib}M",
                    f"count={count}", "conv=notrunc", *extra], check=True, capture_output=True)
    return count * mib / (time.perf_counter() - t)


def main() -> None:
    target = sys.argv[1]
    mib = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 60
    payload = os.urandom(mib << 20)
    items = []
    for i in range(count):  # hashing is the caller's cost, not the store's
        data = b"%d\0" % i + payload
        items.append((hashlib.sha1(data).digest(), data))
    for sync, flush in (("true", False), ("false", False), ("false", True)):
        format_block(target, force=True)
        with open_block(target, {"sync": sync}) as b:
            assert isinstance(b, BlockBackend)
            t = time.perf_counter()
            for oid, data in items:
                assert b.apply([(oid, data)], [])
            if flush:
                b.flush()
            rate = count * mib / (time.perf_counter() - t)
            print(f"append {count} x {mib} MiB, sync={sync}{' + final flush' if flush else ''}: "
                  f"{rate:.0f} MiB/s (O_DIRECT: {b._dev.direct})")
    print(f"dd oflag=direct bs={mib}M: {dd(target, mib, count, []):.0f} MiB/s; "
          f"with conv=fdatasync: {dd(target, mib, count, ['conv=fdatasync']):.0f} MiB/s")
    format_block(target, force=True)
    n = 10_000
    with open_block(target, {}) as b:
        t = time.perf_counter()
        for i in range(0, n, 4):  # commits of 4 small objects
            objs = []
            for j in range(i, i + 4):
                data = b"blob %d\0object %d" % (len(b"object %d" % j), j)
                objs.append((hashlib.sha1(data).digest(), data))
            b.apply(objs, [RefUpdate("refs/heads/main", b.get_ref("refs/heads/main"), objs[0][0])])
        dt = time.perf_counter() - t
        print(f"small commits: {n // 4 / dt:.0f} durable applies/s of 4 objects")
    t = time.perf_counter()
    with open_block(target, {}) as b:
        dt = time.perf_counter() - t
        print(f"open with {b.stats['objects']} objects: {dt * 1000:.1f} ms "
              f"(tail entries scanned: {b.stats['tail_entries']})")


if __name__ == "__main__":
    main()
