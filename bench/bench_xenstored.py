"""Benchmark our xenstored side by side with the reference daemons.

    python bench/bench_xenstored.py [--iterations 1000] [--clients 100] [--rounds 1] [--no-write-docs]

1. ``test-xenstore -i N``: per-operation means (one libxenstore client).
2. A bootstorm: C clients (4 processes x C/4 asyncio connections) each
   build a domain's subtree of ~50 nodes in 5 transactions of 10 writes,
   watching it; total time, p99 request latency, EAGAIN count (retried).

Daemons: ours (memory:, grouped commits), ours (lmdb:, durable: every reply
after its commit is written), the C xenstored and oxenstored via
../shared/tools/xsref. With ``--rounds R`` every daemon is measured R times,
interleaved (a fresh daemon each round), and each figure is the median over
the rounds: a loaded machine then disturbs all daemons alike. Results go to
docs/benchmarks.md between the xenstored markers.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from xsutil import TEST_XENSTORE, Daemon, start_ours, start_reference  # noqa: E402

H = struct.Struct("<IIII")
OPS = ["read 1", "read 2000", "write 1", "write 2000", "dir", "rm node", "rm dir",
       "ta empty", "ta empty x", "ta rmw", "ta rmw x", "ta err"]


def test_xenstore(d: Daemon, iterations: int) -> dict[str, float]:
    r = subprocess.run([TEST_XENSTORE, "-i", str(iterations)], env=d.env, capture_output=True,
                       text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(r.stdout + r.stderr)
    out = {}
    for line in r.stdout.splitlines():
        m = re.match(r"(.+?)\s*: avg: (\d+) ns", line)
        if m:
            out[m.group(1).strip()] = int(m.group(2)) / 1000.0
    return out


# -- bootstorm ------------------------------------------------------------------------------

class AClient:
    def __init__(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.r, self.w = r, w
        self.lat: list[float] = []

    async def req(self, t: int, payload: bytes, tx: int = 0) -> tuple[int, bytes]:
        t0 = time.perf_counter()
        self.w.write(H.pack(t, 1, tx, len(payload)) + payload)
        while True:
            h = await self.r.readexactly(16)
            rt, _, _, n = H.unpack(h)
            body = await self.r.readexactly(n)
            if rt != 15:
                self.lat.append(time.perf_counter() - t0)
                return rt, body


async def one_domain(path: str, domid: int, stats: dict[str, object]) -> None:
    # the reference daemons listen(..., 1): connect blocking, with retries
    sock = socket.socket(socket.AF_UNIX)
    for _ in range(2000):
        try:
            sock.connect(path)
            break
        except (BlockingIOError, ConnectionRefusedError):
            await asyncio.sleep(0.002)
    else:
        raise ConnectionError(path)
    r, w = await asyncio.open_unix_connection(sock=sock)
    c = AClient(r, w)
    base = b"/local/domain/%d" % domid
    await c.req(4, base + b"\0dom\0")
    eagain = 0
    for batch in range(5):
        while True:
            t, body = await c.req(6, b"\0")
            tx = int(body.rstrip(b"\0"))
            for k in range(10):
                await c.req(11, base + b"/dev/b%d/k%d\0value-%d" % (batch, k, k), tx)
            t, body = await c.req(7, b"T\0", tx)
            if t == 16 and body == b"EAGAIN\0":
                eagain += 1
                continue
            break
    stats["eagain"] = int(stats.get("eagain", 0)) + eagain  # type: ignore[call-overload]
    stats.setdefault("lat", []).extend(c.lat)  # type: ignore[attr-defined]
    w.close()


def storm_proc(path: str, domids: list[int], start_at: float, q: mp.Queue) -> None:  # type: ignore[type-arg]
    async def main() -> dict[str, object]:
        stats: dict[str, object] = {}
        while time.time() < start_at:
            await asyncio.sleep(0.001)
        t0 = time.perf_counter()
        await asyncio.gather(*(one_domain(path, d, stats) for d in domids))
        stats["elapsed"] = time.perf_counter() - t0
        return stats

    try:
        q.put(asyncio.run(main()))
    except BaseException as e:  # report, never leave the parent waiting
        q.put({"error": repr(e)})
        raise


def bootstorm(d: Daemon, clients: int, procs: int = 4) -> dict[str, float]:
    q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    start_at = time.time() + 0.5
    chunks = [list(range(1 + i, clients + 1, procs)) for i in range(procs)]
    ps = [mp.Process(target=storm_proc, args=(d.socket, ch, start_at, q)) for ch in chunks]
    t0 = time.time()
    for p in ps:
        p.start()
    res = [q.get(timeout=600) for _ in ps]
    for p in ps:
        p.join()
    errors = [r["error"] for r in res if "error" in r]
    if errors:
        raise RuntimeError(errors)
    total = max(r["elapsed"] for r in res)  # type: ignore[type-var]
    lat = sorted(x for r in res for x in r["lat"])  # type: ignore[attr-defined]
    del t0
    nodes = clients * 50
    return {
        "total_s": float(total),  # type: ignore[arg-type]
        "p99_ms": lat[int(len(lat) * 0.99)] * 1000,
        "eagain": sum(int(r.get("eagain", 0)) for r in res),  # type: ignore[call-overload]
        "nodes_per_s": nodes / float(total),  # type: ignore[arg-type]
        "requests": len(lat),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds; figures are medians")
    ap.add_argument("--no-write-docs", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="xsbench-"))
    daemons = {
        "ours (memory, grouped)": lambda: start_ours(tmp, "memory:", name="ours-mem"),
        "ours (lmdb, durable)": lambda: start_ours(tmp, f"lmdb:{tmp / 'db'}", name="ours-lmdb"),
        "C xenstored": lambda: start_reference(tmp),
        "oxenstored": lambda: start_reference(tmp, True),
    }
    runs_ops: dict[str, list[dict[str, float]]] = {n: [] for n in daemons}
    runs_storm: dict[str, list[dict[str, float]]] = {n: [] for n in daemons}
    for r in range(args.rounds):
        for name, start in daemons.items():
            d = start()
            try:
                runs_ops[name].append(test_xenstore(d, args.iterations))
                runs_storm[name].append(bootstorm(d, args.clients))
            finally:
                d.stop()
            print(f"round {r + 1}", name, runs_ops[name][-1], runs_storm[name][-1], flush=True)
    ops = {n: _median(v) for n, v in runs_ops.items()}
    storms = {n: _median(v) for n, v in runs_storm.items()}
    report = render(ops, storms, args)
    print(report)
    if not args.no_write_docs:
        write_docs(report)


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0] if all(k in r for r in runs)}


def render(ops: dict[str, dict[str, float]], storms: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    names = list(ops)
    c = "C xenstored"
    lines = ["## xenstored", "",
             f"`python bench/bench_xenstored.py --iterations {args.iterations} --clients {args.clients}"
             f" --rounds {args.rounds}` ({time.strftime('%Y-%m-%d')}, same machine, daemons one after the"
             f" other, {'one round' if args.rounds == 1 else f'medians of {args.rounds} interleaved rounds'};"
             f" load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs).", "",
             f"### test-xenstore -i {args.iterations}: mean µs per operation (ratio to C)", "",
             "| operation | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for op in OPS:
        row = [op]
        for n in names:
            v = ops[n].get(op)
            row.append("" if v is None else f"{v:.1f} ({v / ops[c][op]:.2f}×)")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", f"### bootstorm: {args.clients} clients × 50 nodes in 5 transactions, watching", "",
              "| daemon | total s | nodes/s | throughput vs C | p99 ms | EAGAIN |", "|---|---|---|---|---|---|"]
    for n in names:
        s = storms[n]
        lines.append(f"| {n} | {s['total_s']:.3f} | {s['nodes_per_s']:.0f} | "
                     f"{s['nodes_per_s'] / storms[c]['nodes_per_s']:.2f}× | {s['p99_ms']:.2f} | {int(s['eagain'])} |")
    return "\n".join(lines) + "\n"


def write_docs(report: str) -> None:
    path = ROOT / "docs/benchmarks.md"
    begin, end = "<!-- xenstored:begin -->", "<!-- xenstored:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{report}{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
