"""The REST API, watch streams, auth and limits against a real server on
127.0.0.1, with httpx."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from http_server import Server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server("memory:", tmp_path, "--anonymous", "write", "--max-body", "1000000",
               "--watch-queue", "4")
    yield s
    s.stop()


@pytest.fixture
def c(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def put(c: httpx.Client, path: str, value: bytes, branch: str = "main", **headers: str) -> dict:
    r = c.put(f"/api/branches/{branch}/tree/{path}", content=value, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_paths_read_write_list(c: httpx.Client) -> None:
    r = put(c, "a/b", b"\x00\xffbytes", **{"X-Irmin-Author": "Ann <ann@x>", "X-Irmin-Message": "hi"})
    commit = c.get(f"/api/commits/{r['commit']}").json()
    assert commit["author"] == "Ann <ann@x>" and commit["message"] == "hi"
    got = c.get("/api/branches/main/tree/a/b")
    assert got.content == b"\x00\xffbytes"
    assert got.headers["content-type"] == "application/octet-stream"
    for i in range(5):
        put(c, f"a/n{i}", b"v")
    page = c.get("/api/branches/main/tree/a", params={"limit": 2}).json()
    assert [e["name"] for e in page["entries"]] == ["b", "n0"] and page["next_offset"] == 2
    page = c.get("/api/branches/main/tree/a", params={"offset": 4, "limit": 2}).json()
    assert [e["name"] for e in page["entries"]] == ["n3", "n4"] and page["next_offset"] is None
    root = c.get("/api/branches/main/tree").json()
    assert root["entries"] == [{"name": "a", "kind": "node"}]
    assert c.delete("/api/branches/main/tree/a/n0", params={"message": "rm"}).status_code == 200
    assert c.get("/api/branches/main/tree/a/n0").status_code == 404
    # typed contents as JSON
    r = c.put("/api/branches/main/tree/conf.json", params={"contents": "json"},
              content=json.dumps({"x": [1, 2]}))
    assert r.status_code == 200, r.text
    assert c.get("/api/branches/main/tree/conf.json", params={"contents": "json"}).json() == {"x": [1, 2]}
    c.put("/api/branches/main/tree/n", params={"contents": "counter"}, content="41")
    assert c.get("/api/branches/main/tree/n", params={"contents": "counter"}).json() == 41


def test_branches_head_cas_history_diff(c: httpx.Client) -> None:
    first = put(c, "x", b"1")["commit"]
    second = put(c, "x", b"2")["commit"]
    assert c.get("/api/branches").json()["branches"] == [{"name": "main", "head": second}]
    r = c.post("/api/branches", json={"name": "dev", "from": first})
    assert r.status_code == 201 and r.json()["head"] == first
    assert c.post("/api/branches", json={"name": "dev", "from": first}).status_code == 409
    # compare-and-set on the head
    r = c.put("/api/branches/dev/head", json={"expected": second, "new": second})
    assert r.status_code == 409 and r.json()["head"] == first
    r = c.put("/api/branches/dev/head", json={"expected": first, "new": second})
    assert r.status_code == 200 and r.json()["head"] == second
    # history with depth and pagination
    for i in range(5):
        put(c, f"h{i}", b"h")
    hist = c.get("/api/branches/main/history", params={"limit": 3}).json()
    assert len(hist["commits"]) == 3 and hist["next_offset"] == 3
    rest = c.get("/api/branches/main/history", params={"offset": 3, "limit": 10}).json()
    assert len(rest["commits"]) == 4 and rest["commits"][-1]["id"] == first
    assert len(c.get("/api/branches/main/history", params={"depth": 2}).json()["commits"]) == 2
    # diff and last_modified
    d = c.get("/api/diff", params={"from": first, "to": "main"}).json()
    changes = {ch["path"]: ch for ch in d["changes"]}
    assert changes["x"]["change"] == "updated" and changes["x"]["new"]["data"] == "2"
    assert changes["h0"]["change"] == "added"
    lm = c.get("/api/branches/main/last_modified/x").json()
    assert lm["commits"][0]["id"] == second
    # trees and objects by id
    tree_id = c.get(f"/api/commits/{second}").json()["tree"]
    entries = c.get(f"/api/trees/{tree_id}").json()["entries"]
    blob = next(e for e in entries if e["name"] == "x")
    obj = c.get(f"/api/objects/{blob['id']}")
    assert obj.content == b"2" and obj.headers["x-git-type"] == "blob"
    assert c.get(f"/api/objects/{blob['id']}", params={"canonical": True}).content == b"blob 1\x002"
    assert c.delete("/api/branches/dev").status_code == 204
    assert c.get("/api/branches/dev").status_code == 404


def test_merge_and_conflict(c: httpx.Client) -> None:
    base = put(c, "f", b"base")["commit"]
    c.post("/api/branches", json={"name": "dev", "from": base})
    put(c, "f", b"ours")
    put(c, "f", b"theirs", branch="dev")
    put(c, "g", b"g", branch="dev")
    r = c.post("/api/branches/main/merge", json={"from": "dev"})
    assert r.status_code == 409
    conflicts = r.json()["conflicts"]
    assert conflicts[0]["path"] == "f"
    assert (conflicts[0]["base"], conflicts[0]["ours"], conflicts[0]["theirs"]) == ("base", "ours", "theirs")
    c.post("/api/branches", json={"name": "clean", "from": base})
    put(c, "h", b"h", branch="clean")
    r = c.post("/api/branches/main/merge", json={"from": "clean", "message": "merge clean"})
    assert r.status_code == 200, r.text
    assert c.get(f"/api/commits/{r.json()['commit']}").json()["message"] == "merge clean"
    assert c.get("/api/branches/main/tree/h").content == b"h"


@pytest.mark.parametrize("method,url,kw,status", [
    ("get", "/api/branches/main/tree/a/%2E%2E/b", {}, 400),
    ("get", "/api/branches/main/tree/a//b", {}, 400),
    ("get", "/api/branches/nope/tree/a", {}, 404),
    ("get", "/api/commits/zz", {}, 400),
    ("get", "/api/commits/" + "ab" * 20, {}, 404),
    ("get", "/api/trees/" + "ab" * 19, {}, 400),
    ("get", "/api/objects/xyz", {}, 400),
    ("get", "/api/diff?from=nope&to=main", {}, 404),
    ("post", "/api/branches", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422),
    ("post", "/api/branches", {"json": {"name": "a..b", "from": "main"}}, 400),
    ("put", "/api/branches/main/tree/x", {"content": b"x" * 1_000_001}, 413),
    ("put", "/api/branches/main/tree/j?contents=json", {"content": b"{bad"}, 400),
    ("put", "/api/branches/main/tree/j?contents=nosuch", {"content": b"1"}, 400),
    ("put", "/api/branches/main/head", {"json": {"expected": None, "new": "00" * 20}}, 404),
    ("post", "/api/branches/main/merge", {"json": {"from": "nope"}}, 404),
    ("get", "/api/branches/main/history?limit=0", {}, 422),
])
def test_bad_input_is_4xx(c: httpx.Client, method: str, url: str, kw: dict, status: int) -> None:
    put(c, "a", b"1")
    r = getattr(c, method)(url, **kw)
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_chunked_oversize_body_is_413(c: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"y" * 100_000

    r = c.put("/api/branches/main/tree/big", content=chunks())
    assert r.status_code == 413


def test_openapi_and_docs(c: httpx.Client) -> None:
    spec = c.get("/openapi.json").json()
    assert "/api/branches/{branch}/tree/{path}" in spec["paths"]
    assert c.get("/docs").status_code == 200


def _events(resp: httpx.Response) -> Iterator[tuple[str, dict]]:
    event, data = None, None
    for line in resp.iter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and event is not None:
            yield event, data  # type: ignore[misc]
            event, data = None, None


def test_watch_stream(server: Server, c: httpx.Client) -> None:
    put(c, "start", b"0")
    got: list[tuple[str, dict]] = []
    ready = threading.Event()

    def listen() -> None:
        with server.client() as w, w.stream("GET", "/api/branches/main/watch",
                                            params={"prefix": "watched"}) as resp:
            for ev in _events(resp):
                got.append(ev)
                ready.set()
                if len(got) == 3:
                    return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert ready.wait(10)
    put(c, "other", b"ignored")  # outside the prefix
    one = put(c, "watched/a", b"1")["commit"]
    two = put(c, "watched/b", b"2")["commit"]
    t.join(10)
    assert [e for e, _ in got] == ["hello", "change", "change"]
    assert got[1][1]["new"] == one and got[1][1]["diff"][0]["path"] == "watched/a"
    assert got[2][1]["new"] == two and got[2][1]["old"] == one


def test_watch_overflow_is_an_event(server: Server, c: httpx.Client) -> None:
    """A client that does not read falls behind: it gets an overflow event
    with the head to resync from, not a silent gap."""
    put(c, "v", b"0")
    big = b"z" * 400_000
    with server.client() as w, w.stream("GET", "/api/branches/main/watch") as resp:
        lines = resp.iter_lines()
        assert next(lines) == "event: hello"
        for i in range(40):  # the client is not reading: socket buffers fill, then the queue
            put(c, "v", big + str(i).encode())
        head = c.get("/api/branches/main/head").json()["head"]
        kinds = ["hello"]
        for line in lines:
            if line.startswith("event: "):
                kinds.append(line[7:])
            if line.startswith("data: ") and kinds[-1] == "overflow":
                assert json.loads(line[6:])["head"] == head
                break
        assert "overflow" in kinds


def test_auth_scopes(tmp_path: Path) -> None:
    tokens = tmp_path / "t.json"
    tokens.write_text(json.dumps({"r": "read", "w": "write"}))
    s = Server("memory:", tmp_path, "--auth-file", str(tokens), "--anonymous", "none",
               env={"IRMIN_TOKENS": "envtok:write"})
    try:
        with s.client() as c:
            r = c.get("/api/branches")
            assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"]
            assert c.get("/api/branches", headers={"Authorization": "Bearer bad"}).status_code == 401
            assert c.get("/api/branches", headers={"Authorization": "Bearer r"}).status_code == 200
            r = c.put("/api/branches/main/tree/a", content=b"1", headers={"Authorization": "Bearer r"})
            assert r.status_code == 403 and "read" in r.json()["detail"]
            for tok in ("w", "envtok"):
                r = c.put("/api/branches/main/tree/a", content=b"1",
                          headers={"Authorization": f"Bearer {tok}"})
                assert r.status_code == 200
            assert c.get("/openapi.json").status_code == 200
    finally:
        s.stop()


def test_sigterm_is_graceful(tmp_path: Path) -> None:
    s = Server(f"lmdb:{tmp_path / 'db'}", tmp_path)
    with s.client() as c:
        assert c.get("/health").status_code == 200
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(15) == 0
    s.stop()
    log = s.log.read_text()
    assert "GET /health" in log  # one access-log line per request
    assert "Shutting down" in log or "Finished server process" in log


def _diverge(c: httpx.Client, name: str) -> None:
    """``name`` and main each gain a commit of their own (a real merge follows)."""
    put(c, "base", b"0")
    assert c.post("/api/branches", json={"name": name, "from": "main"}).status_code == 201
    put(c, f"{name.replace('/', '_')}/x", b"1", branch=name.replace("/", "%2F"))
    put(c, "main-only", b"2")


def test_merge_author_and_message_like_every_write(c: httpx.Client) -> None:
    """Merge commits take author and message from the body, else the query,
    else the X-Irmin-* headers, as path writes do."""
    _diverge(c, "t1")
    r = c.post("/api/branches/main/merge", json={"from": "t1"},
               headers={"X-Irmin-Author": "Hal <hal@x>", "X-Irmin-Message": "from headers"})
    assert r.status_code == 200, r.text
    commit = c.get(f"/api/commits/{r.json()['commit']}").json()
    assert (commit["author"], commit["message"]) == ("Hal <hal@x>", "from headers")
    assert len(commit["parents"]) == 2
    put(c, "t1/y", b"3", branch="t1")
    put(c, "main2", b"4")
    r = c.post("/api/branches/main/merge", params={"author": "Quin <q@x>", "message": "from query"},
               json={"from": "t1"}, headers={"X-Irmin-Author": "Hal <hal@x>"})
    commit = c.get(f"/api/commits/{r.json()['commit']}").json()
    assert (commit["author"], commit["message"]) == ("Quin <q@x>", "from query")
    put(c, "t1/z", b"5", branch="t1")
    put(c, "main3", b"6")
    r = c.post("/api/branches/main/merge", params={"author": "Quin <q@x>"},
               json={"from": "t1", "author": "Bo <bo@x>", "message": "from body"})
    commit = c.get(f"/api/commits/{r.json()['commit']}").json()
    assert (commit["author"], commit["message"]) == ("Bo <bo@x>", "from body")
    assert c.post("/api/branches/main/merge", json={"from": "t1"},
                  params={"author": " "}).status_code == 400


def test_branch_names_with_slashes(c: httpx.Client) -> None:
    """``feature/x`` is addressed as ``feature%2Fx`` in every branch route."""
    _diverge(c, "feature/x")
    assert "feature/x" in [b["name"] for b in c.get("/api/branches").json()["branches"]]
    b = "/api/branches/feature%2Fx"
    assert c.get(b).json()["name"] == "feature/x"
    assert c.get(b + "/head").json()["name"] == "feature/x"
    assert c.get(b + "/tree/feature_x/x").content == b"1"
    assert c.get(b + "/tree").json()["entries"]
    assert c.get(b.lower() + "/tree/feature_x/x").content == b"1"  # %2f works too
    r = c.put(b + "/tree/deep/er", content=b"v", headers={"X-Irmin-Author": "Di <d@x>"})
    assert r.status_code == 200, r.text
    hist = c.get(b + "/history").json()["commits"]
    assert hist[0]["author"] == "Di <d@x>"
    assert c.get(b + "/last_modified/deep/er").json()["commits"][0]["id"] == r.json()["commit"]
    assert c.post(b + "/merge", json={"from": "main"}).status_code == 200
    assert c.get(b + "/tree/main-only").content == b"2"
    assert c.post("/api/branches/main/merge", json={"from": "feature/x"}).status_code == 200
    assert c.get("/api/branches/main/tree/deep/er").content == b"v"
    head = c.get(b + "/head").json()["head"]
    assert c.put(b + "/head", json={"expected": head, "new": head}).status_code == 200
    # unescaped, the slash is a path separator: no such route/branch
    assert c.get("/api/branches/feature/x/head").status_code == 404
    assert c.get("/api/branches/a%00b/head").status_code == 400
    assert c.delete(b).status_code == 204
    assert c.get(b + "/head").status_code == 404
