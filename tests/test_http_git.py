"""git smart HTTP against a real server on 127.0.0.1, driven by the git CLI.

Clone/fetch/pull/push on protocol v0 and v2 from memory, LMDB and git-dir
stores; racing pushes (a lost update must be rejected); pushes over 1 MiB
(chunked); shallow and partial clones; auth on push and branch deletion;
pack size (deltas).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import irmin

from http_server import Server, git, git_env

BACKENDS = ["memory", "lmdb", "git"]


def _uri(kind: str, tmp: Path) -> str:
    return {"memory": "memory:", "lmdb": f"lmdb:{tmp / 'db'}", "git": f"git:{tmp / 'store.git'}"}[kind]


def _fill(server: Server, uri: str, n: int = 12) -> str:
    """n commits on main (through the library when the store is on disk,
    else through REST); returns the head id."""
    if uri != "memory:":
        repo = irmin.open(uri)
        main = repo.branch("main")
        for i in range(n):
            main.set(f"d{i % 3}/f{i}", (f"value {i}\n" * 40).encode(), message=f"commit {i}")
            main.set("log", "".join(f"line {j}\n" for j in range(i * 50)).encode(), message=f"log {i}")
        head = main.head_id().hex()
        repo.close()
        return head
    with server.client() as c:
        for i in range(n):
            r = c.put(f"/api/branches/main/tree/d{i % 3}/f{i}", content=(f"value {i}\n" * 40).encode(),
                      headers={"X-Irmin-Message": f"commit {i}"})
            assert r.status_code == 200, r.text
        return str(c.get("/api/branches/main/head").json()["head"])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return git_env(tmp_path / "home")


def _serve(tmp_path: Path, kind: str, *args: str, fill: bool = True,
           extra_env: dict[str, str] | None = None) -> tuple[Server, str | None]:
    uri = _uri(kind, tmp_path)
    head = None
    if fill and kind != "memory":
        head = _fill(None, uri)  # type: ignore[arg-type]
    server = Server(uri, tmp_path, *args, env=extra_env)
    if fill and kind == "memory":
        head = _fill(server, uri)
    return server, head


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize("version", ["0", "2"])
def test_clone_fetch_push(tmp_path: Path, env: dict[str, str], kind: str, version: str) -> None:
    server, head = _serve(tmp_path, kind, "--anonymous", "write")
    try:
        url = server.url + "/git"
        v = ["-c", f"protocol.version={version}"]
        git(env, *v, "clone", url, str(tmp_path / "c"))
        c = tmp_path / "c"
        assert git(env, "rev-parse", "HEAD", cwd=c).stdout.strip() == head
        git(env, "fsck", "--strict", "--no-dangling", cwd=c)
        n = int(git(env, "rev-list", "--count", "HEAD", cwd=c).stdout)
        assert n >= 12
        # the store moves: fetch and pull see it
        with server.client() as h:
            r = h.put("/api/branches/main/tree/from/rest", content=b"rest\n")
            new_head = r.json()["head"]
        git(env, *v, "pull", "--ff-only", cwd=c)
        assert git(env, "rev-parse", "HEAD", cwd=c).stdout.strip() == new_head
        assert (c / "from" / "rest").read_bytes() == b"rest\n"
        # push a commit and a new branch
        (c / "pushed.txt").write_text("from git\n")
        git(env, "add", "pushed.txt", cwd=c)
        git(env, "commit", "-qm", "from git", cwd=c)
        git(env, *v, "push", "origin", "main", cwd=c)
        mine = git(env, "rev-parse", "HEAD", cwd=c).stdout.strip()
        git(env, *v, "push", "origin", "main:refs/heads/topic", cwd=c)
        with server.client() as h:
            assert h.get("/api/branches/main/head").json()["head"] == mine
            assert h.get("/api/branches/main/tree/pushed.txt").content == b"from git\n"
            assert h.get("/api/branches/topic/head").json()["head"] == mine
        # delete the branch by push
        git(env, *v, "push", "origin", ":topic", cwd=c)
        with server.client() as h:
            assert h.get("/api/branches/topic/head").status_code == 404
        # a second clone sees the pushed history, fsck-clean
        git(env, *v, "clone", "-q", url, str(tmp_path / "c2"))
        git(env, "fsck", "--strict", "--no-dangling", cwd=tmp_path / "c2")
        assert git(env, "rev-parse", "HEAD", cwd=tmp_path / "c2").stdout.strip() == mine
    finally:
        server.stop()


def test_push_loses_no_concurrent_update(tmp_path: Path, env: dict[str, str]) -> None:
    """The branch moves (through REST) after git read the refs and before it
    sends its pack: the push must be rejected, not overwrite the update."""
    server, _ = _serve(tmp_path, "lmdb", "--anonymous", "write")
    try:
        url = server.url + "/git"
        c = tmp_path / "c"
        git(env, "clone", "-q", url, str(c))
        hook = c / ".git" / "hooks" / "pre-push"
        hook.write_text(
            f"#!{sys.executable}\n"
            "import httpx\n"
            f"r = httpx.put({server.url + '/api/branches/main/tree/concurrent'!r}, content=b'x')\n"
            "assert r.status_code == 200, r.text\n")
        hook.chmod(0o755)
        (c / "mine").write_text("mine\n")
        git(env, "add", "mine", cwd=c)
        git(env, "commit", "-qm", "mine", cwd=c)
        p = git(env, "push", "origin", "main", cwd=c, check=False)
        assert p.returncode != 0
        assert "remote rejected" in p.stderr, p.stderr
        with server.client() as h:
            assert h.get("/api/branches/main/tree/concurrent").content == b"x"
            assert h.get("/api/branches/main/tree/mine").status_code == 404
        # after a pull, the push goes through and keeps both
        hook.unlink()
        git(env, "pull", "-q", "--no-rebase", "--no-edit", cwd=c)
        git(env, "push", "-q", "origin", "main", cwd=c)
        with server.client() as h:
            assert h.get("/api/branches/main/tree/concurrent").content == b"x"
            assert h.get("/api/branches/main/tree/mine").content == b"mine\n"
    finally:
        server.stop()


def test_racing_pushes(tmp_path: Path, env: dict[str, str]) -> None:
    """Several clones push sibling commits at once: every push reported as
    accepted is in the final history (no lost update)."""
    import concurrent.futures

    server, _ = _serve(tmp_path, "lmdb", "--anonymous", "write")
    try:
        url = server.url + "/git"
        clones = []
        for i in range(6):
            c = tmp_path / f"c{i}"
            git(env, "clone", "-q", url, str(c))
            (c / f"file{i}").write_text(f"{i}\n")
            git(env, "add", ".", cwd=c)
            git(env, "commit", "-qm", f"racer {i}", cwd=c)
            clones.append((c, git(env, "rev-parse", "HEAD", cwd=c).stdout.strip()))
        with concurrent.futures.ThreadPoolExecutor(6) as ex:
            results = list(ex.map(lambda cc: git(env, "push", "origin", "main", cwd=cc[0], check=False),
                                  clones))
        accepted = [oid for (c, oid), p in zip(clones, results) if p.returncode == 0]
        assert len(accepted) == 1, [p.stderr for p in results]
        with server.client() as h:
            assert h.get("/api/branches/main/head").json()["head"] == accepted[0]
    finally:
        server.stop()


def test_push_over_one_mib(tmp_path: Path, env: dict[str, str]) -> None:
    server, _ = _serve(tmp_path, "lmdb", "--anonymous", "write")
    try:
        c = tmp_path / "c"
        git(env, "clone", "-q", server.url + "/git", str(c))
        data = os.urandom(3 * 1024 * 1024)
        (c / "big.bin").write_bytes(data)
        git(env, "add", "big.bin", cwd=c)
        git(env, "commit", "-qm", "big", cwd=c)
        git(env, "-c", "http.postBuffer=65536", "push", "origin", "main", cwd=c)
        with server.client() as h:
            assert h.get("/api/branches/main/tree/big.bin").content == data
    finally:
        server.stop()


@pytest.mark.parametrize("version", ["0", "2"])
def test_shallow_clone_and_fetch(tmp_path: Path, env: dict[str, str], version: str) -> None:
    server, head = _serve(tmp_path, "lmdb", "--anonymous", "write")
    try:
        v = ["-c", f"protocol.version={version}"]
        c = tmp_path / "c"
        git(env, *v, "clone", "-q", "--depth", "2", server.url + "/git", str(c))
        assert git(env, "rev-list", "--count", "HEAD", cwd=c).stdout.strip() == "2"
        assert (c / ".git" / "shallow").exists()
        git(env, "fsck", cwd=c)
        with server.client() as h:
            new = h.put("/api/branches/main/tree/more", content=b"more").json()["head"]
        git(env, *v, "pull", "-q", "--ff-only", cwd=c)
        assert git(env, "rev-parse", "HEAD", cwd=c).stdout.strip() == new
        git(env, "fsck", cwd=c)
        # Deepening an existing shallow clone is refused with a clear error
        # (never a "success" that leaves the clone shallow): docs/http.md.
        p = git(env, *v, "fetch", "-q", "--unshallow", cwd=c, check=False)
        assert p.returncode != 0 and "--unshallow is not supported" in p.stderr, p.stderr
        p = git(env, *v, "fetch", "-q", "--deepen=1", cwd=c, check=False)
        assert p.returncode != 0
        assert git(env, "rev-list", "--count", "HEAD", cwd=c).stdout.strip() == "3"
        assert (c / ".git" / "shallow").exists()
        git(env, "fsck", cwd=c)
    finally:
        server.stop()


@pytest.mark.parametrize("version", ["0", "2"])
def test_partial_clone_fetches_blobs_on_demand(tmp_path: Path, env: dict[str, str], version: str) -> None:
    server, head = _serve(tmp_path, "lmdb", "--anonymous", "read")
    try:
        v = ["-c", f"protocol.version={version}"]
        c = tmp_path / "c"
        git(env, *v, "clone", "-q", "--no-checkout", "--filter=blob:none", server.url + "/git", str(c))
        missing = git(env, "rev-list", "--objects", "--missing=print", "HEAD", cwd=c).stdout
        assert sum(1 for line in missing.splitlines() if line.startswith("?")) > 5
        git(env, *v, "checkout", "-q", "main", cwd=c)  # fetches the blobs it needs
        assert (c / "d0" / "f0").read_bytes() == b"value 0\n" * 40
        git(env, *v, "log", "-p", "-3", cwd=c)  # older blobs, fetched on demand too
        git(env, "fsck", cwd=c)
    finally:
        server.stop()


def test_auth_on_push_and_delete(tmp_path: Path, env: dict[str, str]) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"rtok": "read", "wtok": "write"}))
    server, _ = _serve(tmp_path, "lmdb", "--auth-file", str(tokens), "--anonymous", "read")
    try:
        url = server.url + "/git"
        c = tmp_path / "c"
        git(env, "clone", "-q", url, str(c))  # anonymous read
        (c / "x").write_text("x\n")
        git(env, "add", "x", cwd=c)
        git(env, "commit", "-qm", "x", cwd=c)
        p = git(env, "push", "origin", "main", cwd=c, check=False)
        # 401: git asks for credentials (and cannot, prompts being off)
        assert p.returncode != 0 and ("Username" in p.stderr or "401" in p.stderr), p.stderr
        p = git(env, "-c", "http.extraHeader=Authorization: Bearer rtok", "push", "origin", "main",
                cwd=c, check=False)
        assert p.returncode != 0 and "403" in p.stderr, p.stderr
        git(env, "-c", "http.extraHeader=Authorization: Bearer wtok", "push", "origin",
            "main", "main:refs/heads/other", cwd=c)
        # deleting a branch needs write too (Basic auth with the token as password works)
        p = git(env, "push", url.replace("http://", "http://u:rtok@"), ":other", cwd=c, check=False)
        assert p.returncode != 0
        with server.client() as h:
            assert h.get("/api/branches/other/head").status_code == 200
        git(env, "push", url.replace("http://", "http://u:wtok@"), ":other", cwd=c)
        with server.client() as h:
            assert h.get("/api/branches/other/head").status_code == 404
    finally:
        server.stop()


def test_closed_server_refuses_clone(tmp_path: Path, env: dict[str, str]) -> None:
    server, _ = _serve(tmp_path, "lmdb", "--anonymous", "none",
                       extra_env={"IRMIN_TOKENS": "sekrit:read"})
    try:
        p = git(env, "clone", "-q", server.url + "/git", str(tmp_path / "c"), check=False)
        assert p.returncode != 0
        git(env, "-c", "http.extraHeader=Authorization: Bearer sekrit", "clone", "-q",
            server.url + "/git", str(tmp_path / "c2"))
    finally:
        server.stop()


def test_clone_uses_deltas(tmp_path: Path, env: dict[str, str]) -> None:
    """A file growing by a line per commit: the pack must hold deltas, not
    every version whole."""
    uri = f"lmdb:{tmp_path / 'db'}"
    repo = irmin.open(uri)
    main = repo.branch("main")
    text = ""
    for i in range(60):
        text += f"line {i} " + "x" * 200 + "\n"
        main.set("grow.txt", text.encode(), message=f"{i}")
    full = sum(len(f"line {i} " + "x" * 200 + "\n") * (60 - i) for i in range(60))
    repo.close()
    server = Server(uri, tmp_path)
    try:
        c = tmp_path / "c"
        git(env, "clone", "-q", server.url + "/git", str(c))
        packs = list((c / ".git" / "objects" / "pack").glob("*.pack"))
        size = sum(p.stat().st_size for p in packs)
        assert size < full / 10, (size, full)
        git(env, "fsck", "--strict", cwd=c)
    finally:
        server.stop()
