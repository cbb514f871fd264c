"""One contract suite, run unchanged against every backend.

Adding a backend is one line in ``BACKENDS`` below: a name and a function
from a fresh temporary directory to the backend's URI. Tests that need a
capability (``persistent``, ``multi_process``) read the flag from the opened
backend and skip otherwise. Everything is real: real LMDB files, real git
directories checked with the git CLI, real second processes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from irmin.backends import Backend, RefUpdate, open_backend
from irmin.backends.errors import InvalidRefName, MalformedObject, StoreClosed

_loop_devices: list[str] = []


def loop_device(tmp: Path) -> str:
    """A real loop device over a fresh 64 MiB image, formatted as a store
    (detached after the test by the ``uri`` fixture)."""
    from irmin.backends.block import format_block

    image = tmp / "loop.img"
    image.write_bytes(b"")
    os.truncate(image, 64 << 20)
    dev = subprocess.run(["losetup", "-f", "--show", str(image)], check=True,
                         capture_output=True, text=True).stdout.strip()
    _loop_devices.append(dev)
    format_block(dev)
    return f"block:{dev}"


# ---------------------------------------------------------------------------
# The backends under test: name -> (tmp_path -> URI). Add one line per backend.
# ---------------------------------------------------------------------------
BACKENDS: dict[str, Callable[[Path], str]] = {
    "memory": lambda tmp: f"memory:conformance-{tmp}",
    "lmdb": lambda tmp: f"lmdb:{tmp / 'store.lmdb'}",
    "git": lambda tmp: f"git:{tmp / 'repo.git'}",
    "block": lambda tmp: f"block:{tmp / 'store.img'}?create=1&size=64M",
    "block-loop": loop_device,
}


@pytest.fixture(params=sorted(BACKENDS))
def uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield BACKENDS[request.param](tmp_path)
    while _loop_devices:
        subprocess.run(["losetup", "-d", _loop_devices.pop()], check=False)


@pytest.fixture
def store(uri: str) -> Iterator[Backend]:
    b = open_backend(uri)
    yield b
    b.close()


def obj(body: bytes, kind: bytes = b"blob") -> tuple[bytes, bytes]:
    """A git object in canonical form and its id (valid for every backend)."""
    data = kind + b" %d\0" % len(body) + body
    return hashlib.sha1(data).digest(), data


def counter_obj(n: int) -> tuple[bytes, bytes]:
    return obj(b"counter %d" % n)


def wait_for(pred: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


A, B, C = obj(b"a"), obj(b"b"), obj(b"c")
MAIN = "refs/heads/main"

# ---------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------


def test_missing_object(store: Backend) -> None:
    assert store.get(A[0]) is None
    assert not store.has(A[0])
    assert store.get_many([A[0], B[0]]) == {}


def test_put_get_has_idempotent(store: Backend) -> None:
    oid, data = A
    store.put(oid, data)
    store.put(oid, data)
    assert store.get(oid) == data
    assert isinstance(store.get(oid), bytes)
    assert store.has(oid)
    assert not store.has(B[0])
    assert list(store.iter_ids()).count(oid) == 1


def test_put_many_get_many_iter_ids(store: Backend) -> None:
    items = [obj(b"item %d" % i) for i in range(200)]
    store.put_many(items)
    store.put_many(iter(items[:50]))  # generators too, and again: idempotent
    assert set(store.iter_ids()) == {oid for oid, _ in items}
    wanted = [items[3][0], items[150][0], C[0]]
    assert store.get_many(wanted) == {items[3][0]: items[3][1], items[150][0]: items[150][1]}
    for oid, data in items:
        assert store.get(oid) == data


def test_large_object(store: Backend) -> None:
    oid, data = obj(os.urandom(3 << 20))
    store.put(oid, data)
    assert store.get(oid) == data


def test_remove_many(store: Backend) -> None:
    store.put_many([A, B, C])
    assert store.remove_many([A[0], B[0], obj(b"never stored")[0]]) == 2
    assert store.get(A[0]) is None and not store.has(B[0])
    assert store.get(C[0]) == C[1]
    assert set(store.iter_ids()) == {C[0]}
    assert store.remove_many([A[0]]) == 0


# ---------------------------------------------------------------------------
# Refs
# ---------------------------------------------------------------------------


def test_missing_ref(store: Backend) -> None:
    assert store.get_ref(MAIN) is None
    assert store.list_refs() == {}


def test_cas_create_if_absent(store: Backend) -> None:
    store.put_many([A, B])
    assert store.cas_ref(MAIN, None, A[0])
    assert store.get_ref(MAIN) == A[0]
    assert not store.cas_ref(MAIN, None, B[0])  # exists now: create fails
    assert store.get_ref(MAIN) == A[0]


def test_cas_success_and_failure(store: Backend) -> None:
    store.put_many([A, B, C])
    assert store.cas_ref(MAIN, None, A[0])
    assert store.cas_ref(MAIN, A[0], B[0])
    assert not store.cas_ref(MAIN, A[0], C[0])  # stale expectation
    assert store.get_ref(MAIN) == B[0]
    assert not store.cas_ref("refs/heads/other", A[0], C[0])  # absent, expected A
    assert store.get_ref("refs/heads/other") is None


def test_delete_via_cas_and_delete_ref(store: Backend) -> None:
    store.put_many([A, B])
    assert store.cas_ref(MAIN, None, A[0])
    assert not store.cas_ref(MAIN, B[0], None)
    assert store.get_ref(MAIN) == A[0]
    assert store.cas_ref(MAIN, A[0], None)
    assert store.get_ref(MAIN) is None
    assert MAIN not in store.list_refs()
    assert store.cas_ref(MAIN, None, B[0])  # can be recreated
    assert store.delete_ref(MAIN)
    assert store.get_ref(MAIN) is None
    assert not store.delete_ref(MAIN)


def test_list_refs_by_prefix(store: Backend) -> None:
    store.put_many([A, B, C])
    refs = {"refs/heads/a": A[0], "refs/heads/ab": B[0], "refs/heads/x/y": C[0],
            "refs/tags/v1": A[0]}
    for name, oid in refs.items():
        assert store.cas_ref(name, None, oid)
    assert store.list_refs() == refs
    assert store.list_refs("refs/heads/") == {k: v for k, v in refs.items() if "heads" in k}
    assert store.list_refs("refs/heads/a") == {"refs/heads/a": A[0], "refs/heads/ab": B[0]}
    assert store.list_refs("refs/tags/") == {"refs/tags/v1": A[0]}
    assert store.list_refs("refs/nothing/") == {}


@pytest.mark.parametrize("bad", [
    "", "/refs/heads/a", "refs/heads/", "refs/heads/a..b", "refs/heads/a.lock",
    "refs/heads/a b", "refs/heads/.hidden", "refs/heads/a~1", "refs/heads/x:y",
    "refs/heads/a\x01", "refs/heads//a", "refs/heads/a@{1}", "refs/heads/a.",
])
def test_invalid_ref_names(store: Backend, bad: str) -> None:
    store.put(*A)
    with pytest.raises(InvalidRefName):
        store.cas_ref(bad, None, A[0])
    with pytest.raises(InvalidRefName):
        store.apply([], [RefUpdate(MAIN, None, A[0]), RefUpdate(bad, None, A[0])])
    assert store.get_ref(MAIN) is None  # refused before anything was applied


def test_apply_success_stores_objects_and_moves_refs(store: Backend) -> None:
    assert store.apply([A, B], [RefUpdate(MAIN, None, A[0]), RefUpdate("refs/heads/b", None, B[0])])
    assert store.get(A[0]) == A[1] and store.get(B[0]) == B[1]
    assert store.list_refs() == {MAIN: A[0], "refs/heads/b": B[0]}
    assert store.apply([C], [RefUpdate(MAIN, A[0], C[0]), RefUpdate("refs/heads/b", B[0], None)])
    assert store.list_refs() == {MAIN: C[0]}
    assert store.apply([], [])  # empty batch


def test_apply_is_atomic(store: Backend) -> None:
    store.put_many([A, B])
    assert store.apply([], [RefUpdate("refs/heads/a", None, A[0]), RefUpdate("refs/heads/b", None, A[0])])
    before = store.list_refs()
    ok = store.apply([C], [
        RefUpdate("refs/heads/a", A[0], C[0]),      # would succeed
        RefUpdate("refs/heads/b", B[0], C[0]),      # fails: b holds A
        RefUpdate("refs/heads/new", None, C[0]),    # would succeed
        RefUpdate("refs/heads/a", A[0], None),
    ])
    assert not ok
    assert store.list_refs() == before
    assert store.get_ref("refs/heads/new") is None


# ---------------------------------------------------------------------------
# Lifetime and persistence
# ---------------------------------------------------------------------------


def test_closed_store_refuses_writes(uri: str) -> None:
    b = open_backend(uri)
    b.put(*A)
    b.close()
    b.close()  # idempotent
    with pytest.raises(StoreClosed):
        b.put(*B)
    with pytest.raises(StoreClosed):
        b.put_many([B])
    with pytest.raises(StoreClosed):
        b.cas_ref(MAIN, None, A[0])
    with pytest.raises(StoreClosed):
        b.apply([B], [])
    if b.persistent:  # reads too (memory's plain dict reads skip the check)
        for read in (lambda: b.get(A[0]), lambda: b.has(A[0]), lambda: b.get_ref(MAIN),
                     lambda: b.list_refs(), lambda: list(b.iter_ids())):
            with pytest.raises(StoreClosed):
                read()


def test_reopen_persistence(uri: str) -> None:
    b = open_backend(uri)
    if not b.persistent:
        b.close()
        pytest.skip("not persistent")
    items = [obj(b"persist %d" % i) for i in range(100)]
    assert b.apply(items, [RefUpdate(MAIN, None, items[0][0])])
    assert b.cas_ref("refs/tags/t", None, items[1][0])
    b.flush()
    b.close()
    with open_backend(uri) as b2:
        assert b2.get_ref(MAIN) == items[0][0]
        assert b2.list_refs() == {MAIN: items[0][0], "refs/tags/t": items[1][0]}
        assert b2.get_many([oid for oid, _ in items]) == dict(items)
        assert b2.cas_ref(MAIN, items[0][0], items[2][0])
    with open_backend(uri) as b3:
        assert b3.get_ref(MAIN) == items[2][0]


# ---------------------------------------------------------------------------
# Notification
# ---------------------------------------------------------------------------


def test_subscribe_and_unsubscribe(store: Backend) -> None:
    store.put_many([A, B])
    seen: list[tuple[str, bytes | None, bytes | None]] = []
    unsubscribe = store.subscribe(seen.append)
    assert store.cas_ref(MAIN, None, A[0])
    assert store.cas_ref(MAIN, A[0], B[0])
    assert not store.cas_ref(MAIN, A[0], A[0])  # failed swap: no event
    assert store.delete_ref(MAIN)
    expected = [(MAIN, None, A[0]), (MAIN, A[0], B[0]), (MAIN, B[0], None)]
    assert wait_for(lambda: len(seen) >= 3)
    time.sleep(0.2)  # a poller (multi-process backends) must not report them twice
    assert seen == expected
    unsubscribe()
    assert store.cas_ref(MAIN, None, A[0])
    time.sleep(0.2)
    assert seen == expected


# ---------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------


def increment(b: Backend, name: str) -> int:
    """One lost-update-proof increment: the ref names an object holding n."""
    while True:
        cur = b.get_ref(name)
        n = 0
        if cur is not None:
            data = b.get(cur)
            assert data is not None, "ref names a missing object"
            n = int(data.split(b"\0", 1)[1].split()[1])
        new = counter_obj(n + 1)
        if b.apply([new], [RefUpdate(name, cur, new[0])]):
            return n + 1


def read_counter(b: Backend, name: str) -> int:
    cur = b.get_ref(name)
    assert cur is not None
    data = b.get(cur)
    assert data is not None
    return int(data.split(b"\0", 1)[1].split()[1])


def test_threads_racing_cas_lose_no_update(store: Backend) -> None:
    threads, per_thread = 8, 40
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(per_thread):
                increment(store, MAIN)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    assert read_counter(store, MAIN) == threads * per_thread


# ---------------------------------------------------------------------------
# Several processes (backends with multi_process)
# ---------------------------------------------------------------------------

CHILD_PRELUDE = textwrap.dedent("""
    import hashlib, sys
    from irmin.backends import open_backend, RefUpdate
    def obj(body, kind=b"blob"):
        data = kind + b" %d\\0" % len(body) + body
        return hashlib.sha1(data).digest(), data
""")


def run_child(code: str, *args: str, timeout: float = 120) -> str:
    proc = subprocess.run([sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def skip_unless_multi_process(uri: str) -> None:
    with open_backend(uri) as b:
        if not b.multi_process:
            pytest.skip("single-process backend")


def test_other_process_changes_are_seen_and_notified(store: Backend, uri: str) -> None:
    if not store.multi_process:
        pytest.skip("single-process backend")
    seen: list[tuple[str, bytes | None, bytes | None]] = []
    store.subscribe(seen.append)
    out = run_child("""
        b = open_backend(sys.argv[1])
        oid, data = obj(b"from the child")
        assert b.apply([(oid, data)], [RefUpdate("refs/heads/child", None, oid)])
        b.put(*obj(b"loose child object"))
        b.close()
        print(oid.hex())
    """, uri)
    oid = bytes.fromhex(out.strip())
    assert store.get(oid) == obj(b"from the child")[1]
    assert store.has(obj(b"loose child object")[0])
    assert store.get_ref("refs/heads/child") == oid
    assert wait_for(lambda: ("refs/heads/child", None, oid) in seen, timeout=2.0), seen
    # and the other way round: a change here is visible to a new process
    store.put(*A)
    assert store.cas_ref("refs/heads/child", oid, A[0])
    out = run_child("""
        b = open_backend(sys.argv[1])
        print(b.get_ref("refs/heads/child").hex())
        b.close()
    """, uri)
    assert out.strip() == A[0].hex()


def test_two_processes_racing_cas_lose_no_update(uri: str) -> None:
    skip_unless_multi_process(uri)
    n = 60
    code = """
        import time
        b = open_backend(sys.argv[1])
        name, n = sys.argv[2], int(sys.argv[3])
        def counter(n): return obj(b"counter %d" % n)
        for _ in range(n):
            while True:
                cur = b.get_ref(name)
                k = 0 if cur is None else int(b.get(cur).split(b"\\0", 1)[1].split()[1])
                new = counter(k + 1)
                if b.apply([new], [RefUpdate(name, cur, new[0])]):
                    break
        b.close()
    """
    procs = [subprocess.Popen([sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(code),
                               uri, MAIN, str(n)], stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    with open_backend(uri) as b:
        for _ in range(n // 2):  # this process races too
            increment(b, MAIN)
        for p in procs:
            _, err = p.communicate(timeout=180)
            assert p.returncode == 0, err
        assert read_counter(b, MAIN) == 2 * n + n // 2


# ---------------------------------------------------------------------------
# LMDB specifics
# ---------------------------------------------------------------------------


def test_lmdb_map_grows_and_other_process_reads_after_growth(tmp_path: Path) -> None:
    uri = f"lmdb:{tmp_path / 'small'}?map_size={1 << 20}"
    with open_backend(uri):
        pass  # create it at 1 MiB
    # A reader process maps the store at 1 MiB before it grows.
    reader = subprocess.Popen(
        [sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent("""
            b = open_backend(sys.argv[1])
            assert b.get(b"x" * 20) is None  # map the env now, at its small size
            print("ready", flush=True)
            ids = [bytes.fromhex(h) for h in sys.stdin.readline().split()]
            n = 0
            for oid in ids:
                data = b.get(oid)
                assert data is not None and hashlib.sha1(data).digest() == oid
                n += len(data)
            print(n, b.get_ref("refs/heads/main").hex(), flush=True)
            b.close()
        """), uri],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert reader.stdout is not None and reader.stdin is not None
    assert reader.stdout.readline().strip() == "ready"
    items = [obj(os.urandom(256 << 10)) for _ in range(20)]  # 5 MiB
    with open_backend(uri) as b:
        assert b.apply(items[:10], [RefUpdate(MAIN, None, items[0][0])])
        for item in items[10:]:
            b.put(*item)
        assert b.stats()["map_size"] > 5 << 20  # type: ignore[attr-defined]
        assert b.get_many([oid for oid, _ in items]) == dict(items)
        reader.stdin.write(" ".join(oid.hex() for oid, _ in items) + "\n")
        reader.stdin.flush()
        out, err = reader.communicate(timeout=60)
        assert reader.returncode == 0, err
        total, head = out.split()
        assert int(total) == sum(len(d) for _, d in items)
        assert head == items[0][0].hex()
    with open_backend(uri) as b:  # reopen with the small initial size
        assert b.get(items[-1][0]) == items[-1][1]


def test_lmdb_sync_false_then_flush(tmp_path: Path) -> None:
    uri = f"lmdb:{tmp_path / 'nosync'}?sync=false"
    with open_backend(uri) as b:
        assert not b.durable
        assert b.apply([A], [RefUpdate(MAIN, None, A[0])])
        b.flush()
    with open_backend(uri) as b:
        assert b.get_ref(MAIN) == A[0]


def test_lmdb_readonly(tmp_path: Path) -> None:
    from irmin.backends.errors import NotFormatted, StoreError

    with pytest.raises(NotFormatted):
        open_backend(f"lmdb:{tmp_path / 'absent'}?readonly=true")
    with open_backend(f"lmdb:{tmp_path / 'ro'}") as b:
        b.put(*A)
    run_child("""
        b = open_backend(sys.argv[1])
        assert b.get(obj(b"a")[0]) == obj(b"a")[1]
        try:
            b.put(*obj(b"b"))
        except Exception as e:
            assert type(e).__name__ == "StoreError", e
        else:
            raise SystemExit("readonly put succeeded")
    """, f"lmdb:{tmp_path / 'ro'}?readonly=true")
    assert StoreError


# ---------------------------------------------------------------------------
# git specifics: checked with the real git CLI
# ---------------------------------------------------------------------------


def git(*args: str, cwd: Path) -> str:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "LC_ALL": "C"}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def commit_objects() -> tuple[list[tuple[bytes, bytes]], bytes]:
    blob = obj(b"hello")
    tree_body = b"100644 hello.txt\0" + blob[0]
    tree = obj(tree_body, b"tree")
    commit = obj(b"tree " + tree[0].hex().encode()
                 + b"\nauthor A <a@example.com> 1700000000 +0000"
                 + b"\ncommitter A <a@example.com> 1700000000 +0000\n\nfirst\n", b"commit")
    return [blob, tree, commit], commit[0]


def test_git_cli_reads_what_the_backend_wrote(tmp_path: Path) -> None:
    repo = tmp_path / "repo.git"
    objects, head = commit_objects()
    with open_backend(f"git:{repo}") as b:
        assert b.apply(objects, [RefUpdate(MAIN, None, head), RefUpdate("refs/tags/v1", None, head)])
    assert git("cat-file", "-p", obj(b"hello")[0].hex(), cwd=repo) == "hello"
    assert obj(b"hello")[0].hex() == "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"  # git hash-object
    git("fsck", "--strict", "--no-dangling", cwd=repo)
    assert git("show-ref", cwd=repo).split("\n")[:2] == [
        f"{head.hex()} refs/heads/main", f"{head.hex()} refs/tags/v1"]
    assert git("rev-parse", "HEAD", cwd=repo).strip() == head.hex()  # HEAD -> refs/heads/main
    assert git("log", "--format=%s", cwd=repo).strip() == "first"


def test_git_gc_then_backend_reads_packs(tmp_path: Path) -> None:
    repo = tmp_path / "repo.git"
    objects, head = commit_objects()
    uri = f"git:{repo}"
    with open_backend(uri) as b:
        assert b.apply(objects, [RefUpdate(MAIN, None, head)])
        assert b.cas_ref("refs/heads/gone", None, head)
        git("gc", "-q", "--prune=now", cwd=repo)  # packs objects and refs under our handle
        assert not list((repo / "objects").glob("??/*"))
        for oid, data in objects:
            assert b.get(oid) == data and b.has(oid)
        assert set(b.iter_ids()) == {oid for oid, _ in objects}
        assert b.list_refs() == {MAIN: head, "refs/heads/gone": head}
        # CAS and delete of packed refs
        extra = obj(b"tree " + objects[1][0].hex().encode() + b"\nparent " + head.hex().encode()
                    + b"\nauthor A <a@example.com> 1700000001 +0000"
                    + b"\ncommitter A <a@example.com> 1700000001 +0000\n\nafter gc\n", b"commit")
        assert not b.cas_ref(MAIN, extra[0], extra[0])
        assert b.apply([extra], [RefUpdate(MAIN, head, extra[0])])
        assert b.delete_ref("refs/heads/gone")
        assert b.list_refs() == {MAIN: extra[0]}
    with open_backend(uri) as b:
        assert b.get(objects[0][0]) == objects[0][1]
        assert b.get_ref(MAIN) == extra[0]
    assert "refs/heads/gone" not in git("show-ref", cwd=repo)
    git("fsck", "--strict", cwd=repo)


def test_git_sees_real_git_ref_updates(tmp_path: Path) -> None:
    repo = tmp_path / "repo.git"
    objects, head = commit_objects()
    with open_backend(f"git:{repo}") as b:
        b.put_many(objects)
        seen: list[tuple[str, bytes | None, bytes | None]] = []
        b.subscribe(seen.append)
        git("update-ref", "refs/heads/cli", head.hex(), cwd=repo)
        assert b.get_ref("refs/heads/cli") == head
        assert wait_for(lambda: ("refs/heads/cli", None, head) in seen, timeout=2.0), seen
        assert not b.cas_ref("refs/heads/cli", None, head)
        # a lock held by git (or anyone) is respected: our CAS waits for it
        lock = repo / "refs" / "heads" / "cli.lock"
        lock.write_text("")
        done: list[bool] = []
        t = threading.Thread(target=lambda: done.append(b.cas_ref("refs/heads/cli", head, None)))
        t.start()
        time.sleep(0.3)
        assert not done and b.get_ref("refs/heads/cli") == head
        lock.unlink()
        t.join(10)
        assert done == [True]
    assert "refs/heads/cli" not in git("for-each-ref", cwd=repo)


def test_git_work_tree_and_malformed_objects(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", cwd=work)
    objects, head = commit_objects()
    with open_backend(f"git:{work}") as b:
        assert b.apply(objects, [RefUpdate("refs/heads/imported", None, head)])
        with pytest.raises(MalformedObject):
            b.put(hashlib.sha1(b"nonsense").digest(), b"nonsense")
        with pytest.raises(MalformedObject):
            b.put(A[0], B[1])  # id does not match the bytes
        with pytest.raises(MalformedObject):
            b.put(*obj(b"x", b"blub"))
    assert git("cat-file", "-t", head.hex(), cwd=work).strip() == "commit"
    assert git("rev-parse", "refs/heads/imported", cwd=work).strip() == head.hex()
    git("fsck", "--strict", "--no-dangling", cwd=work)


def test_git_non_bare_creation(tmp_path: Path) -> None:
    with open_backend(f"git:{tmp_path / 'wt'}?bare=false") as b:
        b.put(*A)
    assert (tmp_path / "wt" / ".git" / "HEAD").read_text().strip() == "ref: refs/heads/main"
    assert git("cat-file", "-p", A[0].hex(), cwd=tmp_path / "wt") == "a"
