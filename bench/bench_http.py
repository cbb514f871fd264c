"""HTTP server benchmarks.

1. ``git clone`` of a store with 2,000 commits over 1,000 files from our
   server (LMDB store) vs ``git clone`` of the same history, repacked by git
   (``git repack -adf``), from ``git http-backend`` (run as CGI by a tiny
   threaded Python HTTP server). Reports wall time (best of N) and bytes.
2. REST reads/s and writes/s with 16 concurrent clients (httpx, asyncio).

    python bench/bench_http.py [--commits 2000] [--files 1000] [--runs 3]
                               [--seconds 5] [--write-docs]

``--write-docs`` puts the results between the http markers in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import irmin  # noqa: E402
from http_server import Server, git, git_env  # noqa: E402


def build_store(uri: str, commits: int, files: int) -> str:
    repo = irmin.open(uri)
    main = repo.branch("main")
    rnd = random.Random(42)
    names = [f"d{i // 25:02d}/f{i % 25:02d}.txt" for i in range(files)]
    tree = repo.empty_tree()
    for i, name in enumerate(names):
        tree = tree.set(name, "".join(f"{name} line {j} {rnd.random()}\n" for j in range(20)).encode())
    main.set_tree("", tree, message="initial")
    for c in range(1, commits):
        name = rnd.choice(names)
        old = main.get(name).decode().splitlines(keepends=True)
        old[rnd.randrange(len(old))] = f"{name} changed in {c} {rnd.random()}\n"
        main.set(name, "".join(old).encode(), message=f"commit {c}: {name}")
    head = main.head_id().hex()
    repo.close()
    return head


class CGIGit(BaseHTTPRequestHandler):
    """``git http-backend`` as CGI, one process per request (as Apache does)."""

    root = ""

    def log_message(self, *a: object) -> None:
        pass

    def _run(self, body: bytes) -> None:
        path, _, query = self.path.partition("?")
        env = dict(os.environ, GIT_PROJECT_ROOT=self.root, GIT_HTTP_EXPORT_ALL="1",
                   PATH_INFO=path, QUERY_STRING=query, REQUEST_METHOD=self.command,
                   CONTENT_TYPE=self.headers.get("content-type", ""),
                   CONTENT_LENGTH=str(len(body)), REMOTE_ADDR="127.0.0.1")
        for h in ("git-protocol", "content-encoding"):
            if self.headers.get(h):
                env["HTTP_" + h.upper().replace("-", "_")] = self.headers[h]
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.split(b"\r\n"):
            k, _, v = line.decode().partition(":")
            if k.lower() == "status":
                status = int(v.strip().split()[0])
            elif k:
                headers.append((k, v.strip()))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._run(b"")

    def do_POST(self) -> None:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
            self._run(bytes(body))
        else:
            self._run(self.rfile.read(int(self.headers.get("content-length", 0))))


def serve_git_backend(root: Path) -> tuple[ThreadingHTTPServer, str]:
    handler = type("H", (CGIGit,), {"root": str(root)})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def pack_bytes(clone: Path) -> int:
    return sum(p.stat().st_size for p in (clone / ".git" / "objects" / "pack").glob("*.pack"))


def time_clone(env: dict[str, str], url: str, dest: Path, runs: int,
               extra: tuple[str, ...] = ()) -> tuple[float, int, float]:
    """(best wall time, pack bytes, first run's time).

    One ``git ls-remote`` first, untimed, on both servers: a running server
    has its code paths warm; the first clone of a head still builds its pack.
    """
    git(env, *extra, "ls-remote", url)
    best = float("inf")
    first = 0.0
    size = 0
    for i in range(runs):
        d = dest.with_name(f"{dest.name}-{i}")
        t = time.perf_counter()
        git(env, *extra, "clone", "-q", "--no-checkout", url, str(d))
        took = time.perf_counter() - t
        first = first or took
        best = min(best, took)
        size = pack_bytes(d)
        shutil.rmtree(d)
    return best, size, first


async def rest_load(url: str, seconds: float, clients: int, files: int, write: bool) -> float:
    rnd = random.Random(7)
    names = [f"d{i // 25:02d}/f{i % 25:02d}.txt" for i in range(files)]
    done = 0
    stop = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            n = 0
            while time.perf_counter() < stop:
                if write:
                    r = await c.put(f"/api/branches/main/tree/bench/w{k}/{n % 50}",
                                    content=f"{k} {n}".encode())
                else:
                    r = await c.get(f"/api/branches/main/tree/{rnd.choice(names)}")
                assert r.status_code == 200, r.text
                n += 1
                done += 1

    t = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(clients)))
    return done / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commits", type=int, default=2000)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    env = git_env(tmp / "home")
    try:
        uri = f"lmdb:{tmp / 'db'}"
        t = time.perf_counter()
        head = build_store(uri, args.commits, args.files)
        print(f"built {args.commits} commits x {args.files} files in {time.perf_counter() - t:.1f}s")
        server = Server(uri, tmp, "--anonymous", "write", "--log-level", "warning")
        try:
            ours_v2 = time_clone(env, server.url + "/git", tmp / "ours", args.runs)
            ours_v0 = time_clone(env, server.url + "/git", tmp / "ours0", args.runs,
                                 ("-c", "protocol.version=0"))
            # git's own copy of the same history, repacked by git
            bare = tmp / "peer" / "repo.git"
            git(env, "clone", "-q", "--bare", server.url + "/git", str(bare))
            assert git(env, "rev-parse", "main", cwd=bare).stdout.strip() == head
            git(env, "repack", "-adfq", cwd=bare)
            git(env, "config", "http.receivepack", "true", cwd=bare)
            httpd, peer = serve_git_backend(bare.parent)
            theirs = time_clone(env, peer + "/repo.git", tmp / "theirs", args.runs)
            httpd.shutdown()
            reads = asyncio.run(rest_load(server.url, args.seconds, args.clients, args.files, False))
            writes = asyncio.run(rest_load(server.url, args.seconds, args.clients, args.files, True))
        finally:
            server.stop()
        lines = [
            f"Store: {args.commits} commits over {args.files} files (LMDB), one file changed per commit.",
            "",
            "| clone (`git clone --no-checkout`) | first clone | best of %d | pack bytes |" % args.runs,
            "|---|---|---|---|",
            f"| irmin serve, protocol v2 (pack built) | {ours_v2[2]:.2f} s | {ours_v2[0]:.2f} s | {ours_v2[1]:,} |",
            f"| irmin serve, protocol v0 | {ours_v0[2]:.2f} s | {ours_v0[0]:.2f} s | {ours_v0[1]:,} |",
            f"| git http-backend (CGI), repacked by git | {theirs[2]:.2f} s | {theirs[0]:.2f} s | {theirs[1]:,} |",
            "",
            f"Ratio ours v2 / git: first clone {ours_v2[2] / theirs[2]:.2f}x, best {ours_v2[0] / theirs[0]:.2f}x"
            f" (goal <= 2x); bytes {ours_v2[1] / theirs[1]:.2f}x. The first clone of a head builds the pack"
            " (walk + deltas); later full clones of the same head stream it from the server's pack"
            " cache, as git streams its on-disk deltas.",
            "",
            f"REST with {args.clients} concurrent clients (httpx, asyncio, one machine): "
            f"{reads:,.0f} reads/s, {writes:,.0f} writes/s (each write a commit on one branch, "
            "compare-and-set with retry).",
        ]
        text = "\n".join(lines)
        print(text)
        if args.write_docs:
            write_docs(text, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_docs(text: str, args: argparse.Namespace) -> None:
    path = ROOT / "docs" / "benchmarks.md"
    path.parent.mkdir(exist_ok=True)
    body = path.read_text() if path.exists() else "# Benchmarks\n"
    cmd = (f"python bench/bench_http.py --commits {args.commits} --files {args.files} "
           f"--runs {args.runs} --seconds {args.seconds:g} --write-docs")
    section = (f"<!-- http:begin -->\n## HTTP server (`irmin serve`)\n\n"
               f"Reproduce: `{cmd}`\n\n{text}\n<!-- http:end -->")
    if "<!-- http:begin -->" in body:
        start = body.index("<!-- http:begin -->")
        end = body.index("<!-- http:end -->") + len("<!-- http:end -->")
        body = body[:start] + section + body[end:]
    else:
        body = body.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(body)


if __name__ == "__main__":
    main()
