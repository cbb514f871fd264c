"""What py-lmdb alone costs per commit, for the layouts an LMDB store could use.

Why this exists: on the 100,000-key tree the 3x-pygit2 goal leaves about
0.033 ms per commit for everything. This script measures, with no irmin code
at all, what LMDB takes to make one commit's objects durable-on-kill (one write
transaction, sync off) in a store already holding 200,000 objects:

- the objects as records keyed by id (what ``lmdb:`` does), full-size or as
  small deltas: every record lands on its own random page of the B-tree;
- one appended record per commit plus an id index merged in batches (an
  irmin-pack-like log): the batched merge still dirties a page per key;
- the same with ``writemap`` (LMDB writes through its memory map).

Usage: ``python bench/lmdb_floor.py [--commits N] [--repeat R] [--no-docs]``
(writes its section of docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lmdb
from report import write_section

# Sizes of what one commit writes on the deep tree: two nodes of 100 entries,
# the root node, the blob, the commit.
FULL = [3500, 3000, 300, 60, 250]
DELTA = [90, 90, 300, 60, 250]  # the two big nodes as ~90-byte deltas
_SEQ = struct.Struct(">Q")


def _env(path: Path, writemap: bool) -> lmdb.Environment:
    return lmdb.open(str(path), map_size=1 << 32, sync=False, metasync=False, max_dbs=4,
                     readahead=False, writemap=writemap)


def _prefill(env: lmdb.Environment, db: object, n: int = 200_000) -> None:
    with env.begin(write=True) as txn:
        for _ in range(n):
            txn.put(os.urandom(20), b"x" * 100, db=db)


def records(sizes: list[int]) -> Callable[[lmdb.Environment, int], float]:
    """Each object its own record keyed by a random 20-byte id, plus the ref."""
    def run(env: lmdb.Environment, n: int) -> float:
        objs, refs = env.open_db(b"objects"), env.open_db(b"refs")
        _prefill(env, objs)
        vals = [b"v" * s for s in sizes]
        keys = [[os.urandom(20) for _ in sizes] for _ in range(n)]
        os.sync()
        t0 = time.perf_counter()
        for ks in keys:
            with env.begin(write=True) as txn:
                for k, v in zip(ks, vals):
                    txn.put(k, v, db=objs)
                if ks:
                    txn.put(b"refs/heads/main", ks[-1], db=refs)
        return time.perf_counter() - t0
    return run


def log_and_index(size: int, batch: int | None) -> Callable[[lmdb.Environment, int], float]:
    """One appended record per commit (all its objects) and the ref; every
    ``batch`` commits, one transaction adds their five ids to the id index
    (None: never, which no store could do: nothing would find the objects)."""
    def run(env: lmdb.Environment, n: int) -> float:
        index, refs, log = env.open_db(b"objects"), env.open_db(b"refs"), env.open_db(b"log")
        _prefill(env, index)
        val = b"v" * size
        keys = [[os.urandom(20) for _ in range(5)] for _ in range(n)]
        os.sync()
        t0 = time.perf_counter()
        pending: list[int] = []
        for i in range(n):
            with env.begin(write=True) as txn:
                txn.put(_SEQ.pack(i), val, db=log, append=True)
                txn.put(b"refs/heads/main", keys[i][-1], db=refs)
            pending.append(i)
            if batch is not None and len(pending) >= batch:
                with env.begin(write=True) as txn:
                    for j in pending:
                        for k in keys[j]:
                            txn.put(k, _SEQ.pack(j), db=index)
                pending.clear()
        return time.perf_counter() - t0
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each, the best kept")
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()
    cases: list[tuple[str, Callable[[lmdb.Environment, int], float], bool]] = [
        ("empty write transaction", records([]), False),
        ("records by id, full size (what lmdb: writes)", records(FULL), False),
        ("records by id, big nodes as deltas", records(DELTA), False),
        ("records by id, full size, writemap", records(FULL), True),
        ("records by id, deltas, writemap", records(DELTA), True),
        ("one appended record + ref, no index (not a store)", log_and_index(7200, None), False),
        ("one appended record + ref, index merged every 100 commits", log_and_index(7200, 100), False),
        ("one appended record + ref, index merged every 1,000 commits", log_and_index(7200, 1000), False),
    ]
    tmp = Path(tempfile.mkdtemp(prefix="lmdb-floor-"))
    best: dict[str, float] = {}
    try:
        for _ in range(args.repeat):
            for name, fn, writemap in cases:  # rounds, so a slow phase hits all alike
                path = tmp / "env"
                shutil.rmtree(path, ignore_errors=True)
                env = _env(path, writemap)
                try:
                    ms = fn(env, args.commits) / args.commits * 1e3
                finally:
                    env.close()
                best[name] = min(best.get(name, ms), ms)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [
        f"py-lmdb {lmdb.__version__}, {args.commits:,} commits per run, best of {args.repeat} "
        "(rounds through every case), a store prefilled with 200,000 ids, sync off.",
        "",
        "| one commit's LMDB work | ms / commit |",
        "|---|---|",
        *(f"| {name} | {best[name]:.4f} |" for name, _, _ in cases),
        "",
        "Compare with the budget of the core section (pygit2's dict odb / 3 on the deep "
        "tree). A record per object costs a random B-tree page each, whatever its size; "
        "a batched index merge dirties a page per key as well.",
    ]
    print("\n".join(lines))
    if not args.no_docs:
        write_section("lmdb-floor", "What LMDB alone costs per commit", "python bench/lmdb_floor.py",
                      "\n".join(lines))


if __name__ == "__main__":
    main()
