"""fsck, gc, copy and snapshot on every backend (real files, real processes)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import irmin
from irmin.copy import copy, snapshot
from irmin.fsck import fsck
from irmin.gc import gc, store_usage

BACKENDS: dict[str, Callable[[Path, str], str]] = {
    "memory": lambda d, tag: f"memory:maint-{d}-{tag}",
    "lmdb": lambda d, tag: f"lmdb:{d / (tag + '.lmdb')}",
    "git": lambda d, tag: f"git:{d / (tag + '.git')}",
    "block": lambda d, tag: f"block:{d / (tag + '.img')}?create=1&size=256M",
}


@pytest.fixture(params=sorted(BACKENDS))
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def repo(backend_name: str, tmp_path: Path) -> Iterator[irmin.Repo]:
    r = irmin.open(BACKENDS[backend_name](tmp_path, "store"))
    yield r
    r.close()


def fill(repo: irmin.Repo, n: int = 40, branch: str = "main") -> irmin.Store:
    s = repo.branch(branch)
    for i in range(n):
        s.set(f"dir{i % 3}/sub{i % 2}/k{i % 7}", b"value %d %s" % (i, branch.encode()))
    return s


def all_values(tree: irmin.Tree, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], bytes]:
    out: dict[tuple[str, ...], bytes] = {}
    for name, kind in tree.list(prefix):
        p = prefix + (name,)
        if kind == "node":
            out.update(all_values(tree, p))
        else:
            out[p] = tree.get(p)
    return out


def corrupt_object(repo: irmin.Repo, oid: bytes, raw: bytes) -> None:
    """Store ``raw`` (not hashing to ``oid``) under ``oid``, below the checks
    a backend makes on ``put``."""
    b = repo.backend
    b.remove_many([oid])
    gitdir = getattr(b, "gitdir", None)
    if gitdir is not None:  # git refuses bad objects on put: write the file
        h = oid.hex()
        os.makedirs(os.path.join(gitdir, "objects", h[:2]), exist_ok=True)
        with open(os.path.join(gitdir, "objects", h[:2], h[2:]), "wb") as f:
            f.write(zlib.compress(raw))
    else:
        b.put_many([(oid, raw)])


# -- fsck ---------------------------------------------------------------------


def test_fsck_clean_then_missing_then_corrupt(repo: irmin.Repo) -> None:
    main = fill(repo)
    report = fsck(repo, progress=False)
    assert report.clean and report.checked > 40 and not report.dangling, report.summary()

    tree = main.tree()
    blob_id = tree.find_tree("dir1/sub0")._walk(("k3",))[1]  # type: ignore[index,union-attr]
    sub_id = tree.find_tree("dir2").hash()  # type: ignore[union-attr]
    raw_sub = repo.backend.get(sub_id)
    assert raw_sub is not None
    repo.backend.remove_many([blob_id])
    report = fsck(repo, progress=False)
    assert not report.clean
    assert [p.oid for p in report.missing] == [blob_id.hex()]
    assert report.missing[0].where.endswith("dir1/sub0/k3"), report.missing[0].where
    assert report.missing[0].kind == "blob"

    corrupt_object(repo, sub_id, raw_sub.replace(b"sub0", b"sub9"))
    report = fsck(repo, progress=False)
    assert [p.oid for p in report.corrupt] == [sub_id.hex()]
    assert "hash" in report.corrupt[0].reason
    assert report.corrupt[0].where.endswith(":dir2")

    # a well-formed object of the wrong kind where a tree is expected
    corrupt_object(repo, sub_id, b"blob 3\0abc")
    report = fsck(repo, progress=False)
    assert report.corrupt and report.corrupt[0].oid == sub_id.hex()


def test_fsck_reports_dangling(repo: irmin.Repo) -> None:
    fill(repo, 5)
    oid, raw = repo.fmt.canonical(b"blob", b"nobody points here")
    repo.backend.put(oid, raw)
    report = fsck(repo, progress=False)
    assert report.clean and report.dangling == [oid.hex()]


def test_fsck_cli_exit_codes(tmp_path: Path) -> None:
    from irmin.server.cli import main as cli

    uri = f"lmdb:{tmp_path / 's'}"
    runner = CliRunner()
    assert runner.invoke(cli, ["--store", uri, "set", "a/b", "1"]).exit_code == 0
    r = runner.invoke(cli, ["--store", uri, "fsck", "-q"])
    assert r.exit_code == 0 and "clean" in r.output, r.output
    with irmin.open(uri) as repo:
        blob = repo.main().tree().find_tree("a")._walk(("b",))[1]  # type: ignore[index,union-attr]
        repo.backend.remove_many([blob])
    r = runner.invoke(cli, ["--store", uri, "fsck", "-q"])
    assert r.exit_code == 1 and "missing blob" in r.output and "NOT CLEAN" in r.output, r.output
    r = runner.invoke(cli, ["--store", uri, "fsck", "--json"])
    assert r.exit_code == 1 and '"clean": false' in r.output


# -- gc -----------------------------------------------------------------------


def test_gc_removes_garbage_keeps_live(repo: irmin.Repo, backend_name: str) -> None:
    main = fill(repo, 60)
    fill(repo, 60, "scratch")
    repo.delete_branch("scratch")
    for i in range(200):  # garbage: objects of no commit at all
        oid, raw = repo.fmt.canonical(b"blob", b"junk %d " % i + b"x" * 2000)
        repo.backend.put(oid, raw)
    expected = all_values(main.tree())
    history = [c.id for c in main.history()]
    before = store_usage(repo.backend)
    dry = gc(repo, dry_run=True, progress=False)
    assert dry.removed > 200 and store_usage(repo.backend) == before
    stats = gc(repo, progress=False)
    assert stats.removed == dry.removed and stats.kept_commits == 60
    after = store_usage(repo.backend)
    assert after["objects"] == before["objects"] - stats.removed
    assert after["bytes"] < before["bytes"], (before, after)
    if backend_name == "block":
        assert stats.compacted and stats.bytes_after < stats.bytes_before / 2
    report = fsck(repo, progress=False)
    assert report.clean and not report.dangling, report.summary()
    assert all_values(repo.main().tree()) == expected
    assert [c.id for c in repo.main().history()] == history
    # nothing left to do
    assert gc(repo, progress=False).removed == 0


def test_gc_keep_last_window(repo: irmin.Repo) -> None:
    main = fill(repo, 50)
    dev = fill(repo, 8, "dev")
    ids = [c.id for c in main.history()]
    stats = gc(repo, keep_last=10, progress=False)
    assert stats.kept_commits == 10 + 8 and stats.boundary == 1
    report = fsck(repo, progress=False)
    assert report.clean and report.boundary == 1 and not report.dangling, report.summary()
    assert [c.id for c in main.history(depth=10)] == ids[:10]
    assert len(list(dev.history())) == 8  # dev's whole history fits its window
    # the cut is real: the 11th newest commit is gone
    assert not repo.backend.has(bytes.fromhex(ids[10]))
    # more commits and a full gc later: the boundary still holds
    main.set("new", b"1")
    stats = gc(repo, progress=False)
    assert stats.boundary == 1
    assert fsck(repo, progress=False).clean
    # a narrower window moves the boundary
    stats = gc(repo, keep_last=3, progress=False)
    report = fsck(repo, progress=False)
    assert report.clean and report.boundary == 2, report.summary()  # main's and dev's


@pytest.mark.parametrize("sweep", ["exclusive", "retrying"])
def test_gc_keeps_objects_a_writer_recreates_during_the_sweep(
        repo: irmin.Repo, monkeypatch: pytest.MonkeyPatch, sweep: str) -> None:
    """The subtle race: an object is garbage when marked, then a commit
    stores the same content again (same id: ``put`` is a no-op) and points
    at it, before the sweep reaches it. gc must notice and keep it, both in
    the locked sweep (``backend.exclusive``) and in the fallback for
    backends without it (conditional deletes, re-mark, retry)."""
    import irmin.gc as gcmod

    main = repo.main()
    main.set("b", b"x")
    repo.branch("tmp").set("a", b"resurrect me")
    repo.delete_branch("tmp")  # its commit, tree and blob are garbage now
    blob = repo.fmt.hash_object(b"blob", b"resurrect me")
    assert gc(repo, dry_run=True, progress=False).removed == 3
    real_remove = gcmod._remove
    calls = {"n": 0}

    def racing_remove(backend, oids, token):  # type: ignore[no-untyped-def]
        if calls["n"] == 0:
            main.set("c", b"resurrect me")  # same blob id as the garbage one
        calls["n"] += 1
        return real_remove(backend, oids, token)

    real_exclusive = repo.backend.exclusive

    def racing_exclusive(fn):  # type: ignore[no-untyped-def]
        if calls["n"] == 0:  # the commit lands between the mark and the lock
            main.set("c", b"resurrect me")
        calls["n"] += 1
        return real_exclusive(fn)

    if sweep == "exclusive":
        monkeypatch.setattr(repo.backend, "exclusive", racing_exclusive)
    else:
        monkeypatch.setattr(gcmod, "_has_exclusive", lambda backend: False)
        monkeypatch.setattr(gcmod, "_remove", racing_remove)
    stats = gc(repo, progress=False)
    assert stats.remarks >= 1
    report = fsck(repo, progress=False)
    assert report.clean, report.summary()
    assert main.get("c") == b"resurrect me" and repo.backend.has(blob)
    assert stats.removed == 2  # the old commit and tree went


_WRITER = """
import sys, irmin
repo = irmin.open(sys.argv[1])
s = repo.branch(sys.argv[2])
print("ready", flush=True)
for i in range(int(sys.argv[3])):
    c = s.set(f"p/{i % 13}", b"proc %d" % i)
    print(c.id, flush=True)
repo.close()
"""


PROC_COMMITS = 1500


@pytest.mark.parametrize("name", ["lmdb", "block"])
def test_gc_with_concurrent_readers_and_writers(name: str, tmp_path: Path) -> None:
    """Writers (two threads and another process) commit without pause while
    readers read and gc runs three times: gc finishes (its sweep holds the
    writers off only for the locked re-mark and delete), every commit any
    writer made is intact, and space comes back (block: by compaction,
    which must not starve under the writers either)."""
    uri = BACKENDS[name](tmp_path, "conc")
    repo = irmin.open(uri)
    base = fill(repo, 80)
    fill(repo, 80, "garbage")
    repo.delete_branch("garbage")
    junk = []
    for i in range(300):
        oid, raw = repo.fmt.canonical(b"blob", b"junk %d " % i + b"y" * 3000)
        repo.backend.put(oid, raw)
        junk.append(oid)
    frozen = base.head
    assert frozen is not None
    frozen_values = all_values(frozen.tree)

    stop = threading.Event()
    errors: list[BaseException] = []
    acked: dict[str, list[str]] = {"t0": [], "t1": [], "proc": []}  # ids each writer was told of

    def writer(branch: str) -> None:
        s = repo.branch(branch)
        i = 0
        try:
            while not stop.is_set():
                c = s.set(f"w/{i % 17}", b"%s %d" % (branch.encode(), i))
                acked[branch].append(c.id)  # type: ignore[union-attr]
                i += 1
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def reader() -> None:
        try:
            while not stop.is_set():
                assert all_values(frozen.tree) == frozen_values
                head = repo.head("t0")
                if head is not None:
                    all_values(head.tree)
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    # and a writer in another process, whose acknowledged commits are read
    # as they come: the test waits for every writer's progress, not a sleep.
    # It stops after PROC_COMMITS: gc's mark, starved of the GIL by this
    # process's four busy threads, would otherwise chase it for minutes.
    proc_err = tmp_path / "proc.err"  # a file, not a pipe nobody drains while it runs
    with proc_err.open("wb") as err_file:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, uri.split("?")[0], "proc", str(PROC_COMMITS)],
                                stdout=subprocess.PIPE, stderr=err_file)
    assert proc.stdout.readline() == b"ready\n"  # type: ignore[union-attr]

    def proc_acks() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            acked["proc"].append(line.decode().strip())

    threads = [threading.Thread(target=proc_acks)]
    threads += [threading.Thread(target=writer, args=(b,)) for b in ("t0", "t1")]
    threads += [threading.Thread(target=reader) for _ in range(2)]

    def progress(n: int, when: str) -> None:
        """Wait until every writer has acknowledged ``n`` more commits."""
        want = {k: len(v) + n for k, v in acked.items()}
        deadline = time.monotonic() + 60
        while any(len(acked[k]) < w for k, w in want.items()):
            if proc.poll() is not None:
                if proc.returncode != 0:
                    raise AssertionError("the writer process died: " + proc_err.read_text()[-2000:])
                if not threads[0].is_alive():  # it did all its work, and all was read
                    assert len(acked["proc"]) == PROC_COMMITS, len(acked["proc"])
                    want.pop("proc", None)
            assert time.monotonic() < deadline and not errors, (
                f"a writer stalled {when}", {k: len(v) for k, v in acked.items()}, errors)
            time.sleep(0.01)

    for t in threads:
        t.start()
    try:
        progress(5, "before gc")
        runs = []
        for _ in range(3):
            runs.append(gc(repo, progress=False))
            progress(5, "after a gc")  # nobody starved by it
    finally:
        stop.set()
        proc.terminate()
        proc.wait()
        for t in threads:
            t.join()
        proc.stdout.close()  # type: ignore[union-attr]
    assert not errors, errors
    assert sum(r.removed for r in runs) > 300
    assert not any(repo.backend.has(o) for o in junk)
    if name == "block":  # the space came back (writers keep adding more meanwhile)
        assert runs[0].compacted and runs[0].bytes_after < runs[0].bytes_before, runs
        assert all(r.compacted for r in runs if r.removed), runs
    report = fsck(repo, progress=False)
    assert report.clean, report.summary() + str(report.missing[:5])
    for ids in acked.values():
        for cid in ids:  # every commit any writer made is intact
            assert repo.backend.has(bytes.fromhex(cid)), cid
    assert all_values(repo.main().tree()) == frozen_values
    repo.close()


# -- copy and snapshot ------------------------------------------------------------


@pytest.mark.parametrize("src_name,dst_name", list(itertools.product(sorted(BACKENDS), repeat=2)))
def test_copy_between_every_pair(src_name: str, dst_name: str, tmp_path: Path) -> None:
    src = irmin.open(BACKENDS[src_name](tmp_path, "src"))
    fill(src, 30)
    fill(src, 5, "dev")
    dst_uri = BACKENDS[dst_name](tmp_path, "dst")
    stats = copy(src, dst_uri, progress=False)
    assert stats.complete and stats.copied == stats.objects and stats.refs == 2
    with irmin.open(dst_uri.split("?")[0] if dst_name == "block" else dst_uri) as dst:
        assert dst.backend.list_refs() == src.backend.list_refs()
        assert sorted(dst.backend.iter_ids()) == sorted(src.backend.iter_ids())
        report = fsck(dst, progress=False)
        assert report.clean and not report.dangling
        assert all_values(dst.main().tree()) == all_values(src.main().tree())
    src.close()


@pytest.mark.parametrize("src_name,dst_name", [("lmdb", "git"), ("git", "block"), ("block", "lmdb")])
def test_copy_resumes_after_interruption(src_name: str, dst_name: str, tmp_path: Path) -> None:
    src = irmin.open(BACKENDS[src_name](tmp_path, "src"))
    fill(src, 40)
    dst_uri = BACKENDS[dst_name](tmp_path, "dst")
    part = copy(src, dst_uri, progress=False, limit=37, batch=10)
    assert not part.complete and part.copied == 37
    with irmin.open(dst_uri) as dst:
        assert dst.backend.list_refs() == {}  # refs only once every object is in
    rest = copy(src, dst_uri, progress=False, batch=10)
    assert rest.complete and rest.skipped == 37 and rest.copied == rest.objects - 37
    with irmin.open(dst_uri) as dst:
        assert dst.backend.list_refs() == src.backend.list_refs()
        assert fsck(dst, progress=False).clean
    src.close()


def test_copy_killed_midway_then_resumed(tmp_path: Path) -> None:
    """A real ``irmin copy`` process SIGKILLed mid-copy, then re-run."""
    src_uri = f"lmdb:{tmp_path / 'src'}"
    dst_uri = f"lmdb:{tmp_path / 'dst'}"
    with irmin.open(src_uri) as src:
        s = src.main()
        with s.transaction() as tx:
            for i in range(3000):
                tx.set(f"d{i % 50}/k{i}", b"v%d" % i)
        fill(src, 20)
        n = len(list(src.backend.iter_ids()))
    script = ("import sys; from irmin.copy import copy; "
              "copy(sys.argv[1], sys.argv[2], batch=50, progress=False)")
    p = subprocess.Popen([sys.executable, "-c", script, src_uri, dst_uri])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # kill once some objects are in
        time.sleep(0.02)
        if os.path.exists(tmp_path / "dst" / "data.mdb"):
            with irmin.open(dst_uri) as d:
                if len(list(d.backend.iter_ids())) > 200:
                    break
    p.kill()
    p.wait()
    with irmin.open(dst_uri) as d:
        got = len(list(d.backend.iter_ids()))
        assert d.backend.list_refs() == {} and 0 < got < n
    r = CliRunner().invoke(__import__("irmin.server.cli", fromlist=["main"]).main,
                           ["copy", "-q", src_uri, dst_uri])
    assert r.exit_code == 0, r.output
    assert f"({got} already there)" in r.output or "already there" in r.output
    with irmin.open(dst_uri) as d, irmin.open(src_uri) as s:
        assert d.backend.list_refs() == s.backend.list_refs()
        assert fsck(d, progress=False).clean


@pytest.mark.parametrize("dst_name", sorted(BACKENDS))
def test_snapshot_single_commit(dst_name: str, tmp_path: Path) -> None:
    src = irmin.open(f"lmdb:{tmp_path / 'src'}")
    main = fill(src, 30)
    fill(src, 4, "dev")
    dst_uri = BACKENDS[dst_name](tmp_path, "snap")
    stats = snapshot(src, "dev", dst_uri, progress=False)
    head = src.head("dev")
    assert head is not None
    with irmin.open(dst_uri) as dst:
        assert dst.branches() == ["dev"]
        c = dst.head("dev")
        assert c is not None and c.id == stats.commit
        assert c.parent_ids == () and c.tree_id == head.tree_id and c.message == head.message
        assert all_values(c.tree) == all_values(head.tree)
        report = fsck(dst, progress=False)
        assert report.clean and not report.dangling  # nothing but that one version
        assert len(list(dst.backend.iter_ids())) == report.checked
    # a commit id (not a branch) lands on main; same input, same commit id
    again = snapshot(src, head.id, BACKENDS[dst_name](tmp_path, "snap2"), progress=False)
    assert again.commit == stats.commit
    assert main.head is not None
    src.close()


def test_cli_gc_and_snapshot(tmp_path: Path) -> None:
    from irmin.server.cli import main as cli

    uri = f"lmdb:{tmp_path / 's'}"
    runner = CliRunner()
    for i in range(5):
        assert runner.invoke(cli, ["--store", uri, "set", "k", str(i)]).exit_code == 0
    r = runner.invoke(cli, ["--store", uri, "gc", "--keep-last", "2", "-q"])
    assert r.exit_code == 0 and "removed 9 of 15" in r.output, r.output
    r = runner.invoke(cli, ["--store", uri, "fsck", "-q"])
    assert r.exit_code == 0 and "2 boundary" not in r.output and "1 boundary" in r.output, r.output
    snap = f"git:{tmp_path / 'snap.git'}"
    r = runner.invoke(cli, ["--store", uri, "snapshot", "-q", snap])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["--store", snap, "log"])
    assert r.exit_code == 0 and len(r.output.strip().splitlines()) == 1, r.output


# -- history past a windowed gc ---------------------------------------------------


def test_history_stops_at_the_gc_boundary(repo: irmin.Repo) -> None:
    """After ``gc --keep-last N`` history walks (Store.history, lcas, merge)
    end at the recorded boundary instead of raising MissingObject."""
    main = fill(repo, 25)
    fork = main.head
    assert fork is not None
    dev = repo.branch("dev")
    dev.reset(fork)
    for i in range(5):
        main.set(f"m{i}", b"%d" % i)
    for i in range(3):
        dev.set(f"d{i}", b"%d" % i)
    ids = [c.id for c in main.history()]
    gc(repo, keep_last=10, progress=False)
    # dev's window reaches 2 commits further down the shared history than
    # main's: they are kept, and main's history shows every kept commit
    assert [c.id for c in main.history()] == ids[:12]
    assert not repo.backend.has(bytes.fromhex(ids[12]))
    assert [c.id for c in main.history(depth=4)] == ids[:4]
    assert len(list(dev.history())) == 10
    assert [c.id for c in main.lcas(dev)] == [fork.id]  # the fork point is kept
    gc(repo, keep_last=3, progress=False)  # now the fork point is cut on both sides
    assert [c.id for c in main.history()] == ids[:3]
    assert main.lcas(dev) == []  # no common ancestor left: not an error
    reads = {"n": 0}
    real_get_ref = repo.backend.get_ref

    def counting_get_ref(name: str) -> bytes | None:
        reads["n"] += 1
        return real_get_ref(name)

    repo.backend.get_ref = counting_get_ref  # type: ignore[method-assign]
    assert len(list(main.history())) == 3
    assert reads["n"] <= 2  # the head, and the boundary once per walk


def test_cli_log_on_a_windowed_store(tmp_path: Path) -> None:
    from irmin.server.cli import main as cli

    uri = f"lmdb:{tmp_path / 's'}"
    runner = CliRunner()
    for i in range(6):
        assert runner.invoke(cli, ["--store", uri, "set", "k", str(i)]).exit_code == 0
    with irmin.open(uri) as repo:
        kept = [c.id for c in repo.main().history()][:3]
    r = runner.invoke(cli, ["--store", uri, "gc", "--keep-last", "3", "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["--store", uri, "log"])
    assert r.exit_code == 0, r.output + repr(r.exception)
    lines = r.output.strip().splitlines()
    assert len(lines) == 3, r.output
    assert all(k.startswith(ln.split()[0]) for k, ln in zip(kept, lines, strict=True)), r.output
    r = runner.invoke(cli, ["--store", uri, "log", "--json"])
    assert r.exit_code == 0 and all(k in r.output for k in kept), r.output
