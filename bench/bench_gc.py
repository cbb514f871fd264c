"""GC pause felt by a concurrent writer: p50/p99/max commit latency of a
writer thread while nothing else runs, then while gc runs back to back.

gc holds writers off only for its locked steps (one per batch of 2,000
garbage ids: re-mark from the refs that moved, then delete the batch):
``pause_max_ms`` is the longest single step over all runs
(GcStats.pause_max), ``pause_total_ms`` the mean per run of their sum
(GcStats.pause); ``gc_runs`` counts gc runs that finished (on block each
one also compacts, under the same busy writer).

    python bench/bench_gc.py [--backend lmdb|block] [--seconds 5] [--garbage 20000]

The store is pre-filled with a history and with garbage (a deleted branch
and loose blobs) so that each gc has work to do; the writer commits in a
loop on its own branch and the gc thread re-creates garbage between runs
(commits overlapping that re-creation are not counted).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import irmin
from irmin.gc import gc


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def make_garbage(repo: irmin.Repo, n: int, salt: int) -> None:
    items = [repo.fmt.canonical(b"blob", b"garbage %d %d " % (salt, i) + b"z" * 500)
             for i in range(n)]
    for k in range(0, n, 1000):
        repo.backend.put_many(items[k:k + 1000])


def run(uri: str, seconds: float, garbage: int) -> dict[str, object]:
    repo = irmin.open(uri)
    main = repo.main()
    with main.transaction() as tx:
        for i in range(5000):
            tx.set(f"d{i % 100}/k{i}", b"v%d" % i)
    for i in range(200):
        main.set(f"d{i % 100}/k{i}", b"w%d" % i)
    make_garbage(repo, garbage, 0)

    def writer(stop: threading.Event, lat: list[tuple[float, float]]) -> None:
        s = repo.branch("writer")
        i = 0
        while not stop.is_set():
            t = time.perf_counter()
            s.set(f"w/{i % 50}", b"%d" % i)
            lat.append((t, time.perf_counter()))
            i += 1

    def phase(with_gc: bool) -> tuple[list[float], list[float]]:
        stop = threading.Event()
        lat: list[tuple[float, float]] = []
        refill: list[tuple[float, float]] = []  # when the garbage was re-created
        t = threading.Thread(target=writer, args=(stop, lat))
        t.start()
        gcs: list[float] = []
        end = time.monotonic() + seconds
        salt = 1
        while time.monotonic() < end:
            if with_gc:
                t0 = time.perf_counter()
                st = gc(repo, progress=False)
                gcs.append(time.perf_counter() - t0)
                pauses.append(st.pause_max)
                totals.append(st.pause)
                removed.append(st.removed)
                compacted.append(st.compacted)
                t1 = time.perf_counter()
                make_garbage(repo, garbage, salt)
                refill.append((t1, time.perf_counter()))
                salt += 1
            else:
                time.sleep(0.05)
        stop.set()
        t.join()
        # Commits that overlapped the re-creation of garbage (20,000 puts,
        # not gc) are left out of the "during gc" figures.
        return [b - a for a, b in lat
                if not any(a < r1 and b > r0 for r0, r1 in refill)], gcs

    pauses: list[float] = []  # longest locked step of each run
    totals: list[float] = []  # all locked steps of each run
    removed: list[int] = []
    compacted: list[bool] = []
    base, _ = phase(False)
    during, gcs = phase(True)
    repo.close()
    ms = 1000.0
    return {
        "commits_without_gc": len(base), "commits_during_gc": len(during), "gc_runs": len(gcs),
        "gc_mean_s": round(statistics.mean(gcs), 3) if gcs else None,
        "compacted": sum(compacted),
        "removed_mean": int(statistics.mean(removed)) if removed else 0,
        "pause_total_ms": round(statistics.mean(totals) * 1000, 2) if totals else None,
        "pause_max_ms": round(max(pauses) * 1000, 2) if pauses else None,
        "p50_ms": (round(pct(base, 0.5) * ms, 2), round(pct(during, 0.5) * ms, 2)),
        "p99_ms": (round(pct(base, 0.99) * ms, 2), round(pct(during, 0.99) * ms, 2)),
        "max_ms": (round(max(base) * ms, 2), round(max(during) * ms, 2)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["lmdb", "block"], action="append")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--garbage", type=int, default=20000)
    args = ap.parse_args()
    for b in args.backend or ["lmdb", "block"]:
        with tempfile.TemporaryDirectory() as d:
            uri = f"lmdb:{Path(d) / 's'}" if b == "lmdb" else f"block:{Path(d) / 's.img'}?create=1&size=1G"
            r = run(uri, args.seconds, args.garbage)
        print(f"{b}: {r}", flush=True)


if __name__ == "__main__":
    main()
