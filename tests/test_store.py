"""The branch-level API, run against every backend."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest

import irmin
from irmin import contents
from irmin.commit import Info
from irmin.errors import BranchNotFound, ConflictError, InvalidRefName, NotFoundError, TestAndSetFailed

BACKENDS = ["memory", "lmdb", "git"]


@pytest.fixture(params=BACKENDS)
def uri(request, tmp_path):
    return {
        "memory": "memory:",
        "lmdb": f"lmdb:{tmp_path / 'db'}",
        "git": f"git:{tmp_path / 'repo.git'}",
    }[request.param]


@pytest.fixture()
def repo(uri):
    with irmin.open(uri) as r:
        yield r


def test_set_get_with_commit_info(repo):
    main = repo.branch("main")
    c = main.set("a/b", b"hello", "first write", author="Ann <ann@x.org>")
    assert main.get("a/b") == b"hello"
    assert c.message == "first write" and c.author == "Ann <ann@x.org>"
    assert abs(c.date - time.time()) < 60
    assert main.head == c and c.parents == []
    c2 = main.set("a/c", b"x", info=Info("Bob <b@x>", "second", 1_700_000_000))
    assert c2.parents == [c] and c2.date == 1_700_000_000
    assert main.list("a") == [("b", "contents"), ("c", "contents")]
    assert main.find("nope") is None
    with pytest.raises(NotFoundError):
        main.get("nope")
    c3 = main.remove("a/b", "bye")
    assert main.find("a/b") is None and c3.parents == [c2]
    assert main.remove("a/b") is None  # nothing to remove: no empty commit


def test_branches_create_list_delete(repo):
    main = repo.branch("main")
    c1 = main.set("k", b"1")
    feature = repo.create_branch("feature", "main")
    assert feature.head == c1
    main.set("k", b"2")
    assert feature.get("k") == b"1"
    from_commit = repo.create_branch("old", c1.id)
    assert from_commit.get("k") == b"1"
    assert repo.branches() == ["feature", "main", "old"]
    with pytest.raises(ValueError):
        repo.create_branch("feature", "main")
    repo.delete_branch("old")
    assert repo.branches() == ["feature", "main"]
    with pytest.raises(BranchNotFound):
        repo.delete_branch("old")
    with pytest.raises(NotFoundError):
        repo.resolve("no-such-branch")
    for bad in ("a..b", "x y", "-/..", "a~1", "end.lock"):
        with pytest.raises(InvalidRefName):
            repo.branch(bad)


def test_head_moves_only_by_compare_and_set(repo):
    main = repo.branch("main")
    c1 = main.set("k", b"1")
    c2 = main.set("k", b"2")
    assert not repo.set_head("main", c1, expected=c1)  # head is c2, not c1
    assert main.head == c2
    assert repo.set_head("main", c1, expected=c2)
    assert main.head == c1
    assert repo.set_head("fresh", c1, expected=None)
    assert not repo.set_head("fresh", c2, expected=None)


def test_detached_head(repo):
    main = repo.branch("main")
    c1 = main.set("k", b"1")
    main.set("k", b"2")
    d = repo.checkout(c1)
    assert d.get("k") == b"1" and d.branch is None
    c3 = d.set("k", b"3")
    assert d.head == c3 and c3.parents == [c1]
    assert main.get("k") == b"2"  # branch untouched
    keep = repo.create_branch("kept", d.head)
    assert keep.get("k") == b"3"


def test_test_and_set(repo):
    main = repo.branch("main")
    assert main.test_and_set("k", None, b"1") is not None
    with pytest.raises(TestAndSetFailed):
        main.test_and_set("k", b"wrong", b"2")
    assert main.get("k") == b"1"
    main.test_and_set("k", b"1", b"2")
    main.test_and_set("k", b"2", None)
    assert main.find("k") is None


def test_transaction_snapshot_and_read_your_writes(repo):
    main = repo.branch("main")
    main.set("a", b"1")
    with main.transaction("tx") as tx:
        tx.set("b", b"2")
        assert tx.get("b") == b"2"  # read your writes
        main.set("c", b"outside")  # a concurrent writer
        assert tx.find("c") is None  # snapshot isolation
    assert main.get("b") == b"2" and main.get("c") == b"outside"  # merged
    assert main.head.message == "tx"


def test_transaction_fast_forward_and_abort(repo):
    main = repo.branch("main")
    base = main.set("a", b"1")
    with main.transaction() as tx:
        tx.set("a", b"2")
    assert main.head.parents == [base]
    with pytest.raises(RuntimeError):
        with main.transaction() as tx:
            tx.set("a", b"3")
            raise RuntimeError("boom")
    assert main.get("a") == b"2"  # aborted: nothing written


def test_transaction_conflict_is_structured(repo):
    main = repo.branch("main")
    main.set("x/k", b"base")
    head_before = None
    with pytest.raises(ConflictError) as e:
        with main.transaction() as tx:
            tx.set("x/k", b"ours")
            main.set("x/k", b"theirs")
            head_before = main.head
    (c,) = e.value.conflicts
    assert c.path == ("x", "k") and (c.base, c.ours, c.theirs) == (b"base", b"ours", b"theirs")
    assert "x/k" in str(e.value)
    assert main.head == head_before and main.get("x/k") == b"theirs"  # nothing written


def test_strict_transaction_fails_on_stale_read(repo):
    main = repo.branch("main")
    main.set("a", b"1")
    with pytest.raises(ConflictError):
        with main.transaction(strict=True) as tx:
            v = tx.get("a")
            main.set("a", b"changed")
            tx.set("b", v)  # write skew: a merge alone would accept it
    assert main.find("b") is None
    with main.transaction() as tx:  # the default merges
        v = tx.get("a")
        main.set("c", b"other")
        tx.set("b", v)
    assert main.get("b") == b"changed"[:0] + b"changed"


def test_history_is_lazy_and_depth_limited(repo):
    main = repo.branch("main")
    commits = [main.set("k", b"%d" % i, f"c{i}") for i in range(10)]
    hist = main.history()
    assert next(hist) == commits[-1]
    assert [c.message for c in main.history(depth=3)] == ["c9", "c8", "c7"]
    assert [c for c in main.history()] == commits[::-1]


def _fork(repo):
    main = repo.branch("main")
    base = main.set("shared", b"0", "base")
    feat = repo.create_branch("feat", "main")
    main.set("m", b"main side", "on main")
    feat.set("f", b"feat side", "on feat")
    return main, feat, base


def test_merge_branches_has_both_parents(repo):
    main, feat, base = _fork(repo)
    assert main.lcas(feat) == [base]
    m = main.merge("feat")
    assert {p.id for p in m.parents} == {main.head.parents[0].id, feat.head.id}
    assert main.get("m") == b"main side" and main.get("f") == b"feat side"
    # merging again is a no-op; merging main into feat fast-forwards
    assert main.merge("feat") == m
    assert feat.merge("main") == m and feat.head == m


def test_merge_conflict_writes_nothing(repo):
    main, feat, _ = _fork(repo)
    main.set("shared", b"main")
    feat.set("shared", b"feat")
    before = main.head
    with pytest.raises(ConflictError) as e:
        main.merge(feat)
    assert [c.path for c in e.value.conflicts] == [("shared",)]
    assert main.head == before


def test_criss_cross_merge_uses_virtual_ancestor(repo):
    main = repo.branch("main")
    base = main.set("f", b"0", "base")
    a = main.set("a", b"1", "A")
    feat = repo.create_branch("feat", base)
    b = feat.set("b", b"1", "B")
    m = main.merge("feat", "M")      # parents A, B
    f = feat.merge(a, "F")           # parents B, A: a criss-cross
    assert set(m.parent_ids) == set(f.parent_ids) == {a.oid, b.oid}
    main.set("x", b"main")
    feat.set("y", b"feat")
    assert {c.oid for c in main.lcas(feat)} == {a.oid, b.oid}
    merged = main.merge("feat")
    assert len(merged.parents) == 2
    assert {p: main.get(p) for p in ("f", "a", "b", "x", "y")} == {
        "f": b"0", "a": b"1", "b": b"1", "x": b"main", "y": b"feat"}


def test_last_modified(repo):
    main = repo.branch("main")
    c1 = main.set("a", b"1")
    main.set("b", b"1")
    c3 = main.set("a", b"2")
    main.set("b", b"2")
    assert main.last_modified("a") == [c3]
    assert main.last_modified("a", n=2) == [c3, c1]


def test_revert_and_reset(repo):
    main = repo.branch("main")
    c1 = main.set("a", b"1")
    main.set("a", b"2")
    c3 = main.set("b", b"3")
    r = main.revert(c1)
    assert main.get("a") == b"1" and main.find("b") is None and r.parents == [c3]
    main.reset(c3)
    assert main.head == c3 and main.get("a") == b"2"


def test_diff_between_commits(repo):
    main = repo.branch("main")
    c1 = main.set("a", b"1")
    main.set("a", b"2")
    main.set("b", b"3")
    assert {("/".join(p), k) for p, k, _, _ in main.diff(c1)} == {("a", "updated"), ("b", "added")}


def test_typed_contents_merge_in_transactions(uri):
    with irmin.open(uri, contents=contents.ByPath({"counters": contents.COUNTER,
                                                  "cfg": contents.JSON_CONTENTS})) as repo:
        main = repo.branch("main")
        main.set("counters/hits", 10)
        main.set("cfg/app", {"a": 1, "b": {"x": 1}})
        with main.transaction() as tx:
            tx.set("counters/hits", tx.get("counters/hits") + 5)
            tx.set("cfg/app", {"a": 2, "b": {"x": 1}})
            with main.transaction() as other:
                other.set("counters/hits", other.get("counters/hits") + 1)
                other.set("cfg/app", {"a": 1, "b": {"x": 1, "y": 2}})
        assert main.get("counters/hits") == 16
        assert main.get("cfg/app") == {"a": 2, "b": {"x": 1, "y": 2}}


def test_watch_reports_diffs_and_filters_by_prefix(repo):
    main = repo.branch("main")
    events, sub_events = [], []
    done = threading.Event()

    def on_all(ev):
        events.append(ev)
        if len(events) == 3:
            done.set()

    w1 = main.watch(on_all)
    w2 = main.watch(sub_events.append, prefix="sub")
    main.set("a", b"1")
    threading.Thread(target=lambda: main.set("sub/x", b"2")).start()
    time.sleep(0.2)
    main.remove("a")
    assert done.wait(10)
    assert [(ev.diff[0][0], ev.diff[0][1]) for ev in events] == [
        (("a",), "added"), (("sub", "x"), "added"), (("a",), "removed")]
    assert events[1].new.parents == [events[0].new]
    time.sleep(0.2)
    assert [ev.diff for ev in sub_events] == [[(("sub", "x"), "added", None, b"2")]]
    w1.close()
    w2.close()
    main.set("after", b"close")
    time.sleep(0.3)
    assert len(events) == 3


def test_watch_sees_other_processes_on_lmdb(tmp_path):
    uri = f"lmdb:{tmp_path / 'db'}"
    with irmin.open(uri) as repo:
        main = repo.branch("main")
        main.set("init", b"0")
        got = []
        done = threading.Event()

        def cb(ev):
            got.append(ev)
            if len(got) == 2:
                done.set()

        with main.watch(cb):
            script = textwrap.dedent(f"""
                import irmin
                with irmin.open({uri!r}) as r:
                    m = r.branch("main")
                    m.set("from/child", b"1")
                    m.set("from/child2", b"2")
            """)
            subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
            assert done.wait(10), got
        assert [ev.diff[0][0] for ev in got] == [("from", "child"), ("from", "child2")]


def test_bad_input_changes_nothing(repo):
    main = repo.branch("main")
    head = main.set("ok", b"1")
    for bad in ("a//b", "../x", "x/.git/y", ""):
        with pytest.raises((irmin.InvalidPath, irmin.PathError)):
            main.set(bad, b"v")
    with pytest.raises(TypeError):
        main.set("k", "a str is not bytes")
    with pytest.raises(irmin.InvalidURI):
        irmin.open("nosuchscheme:/x")
    with pytest.raises(irmin.InvalidURI):
        irmin.open("no-scheme-at-all")
    assert main.head == head and main.list() == [("ok", "contents")]


def test_malformed_objects_in_the_store_raise_not_garbage():
    from irmin.objects import SHA1

    with irmin.open("memory:") as repo:
        main = repo.branch("main")
        main.set("d/k", b"v")
        tree_id = main.tree().find_tree("d").hash()
        # Replace the subtree's bytes with a truncated tree under the same id.
        good = repo.backend.get(tree_id)
        repo.backend._objects[tree_id] = good[:-5]
        repo._nodes.clear()
        with pytest.raises(irmin.MalformedObject):
            main.get("d/k")
        bad_commit = SHA1.canonical(b"commit", b"tree nothex\n\nmsg")
        repo.backend.put(*bad_commit)
        with pytest.raises(irmin.MalformedObject):
            repo.commit(bad_commit[0])


def test_set_raw_writes_bytes_past_the_codec():
    with irmin.open("memory:", contents=contents.JSON_CONTENTS) as repo:
        main = repo.branch("main")
        main.set("cfg/a", {"x": 1})
        c = main.set_raw("cfg/b", b"not json")
        assert c is not None and c.message == "set cfg/b"
        assert main.get_raw("cfg/b") == b"not json"
        assert main.get("cfg/a") == {"x": 1}
        assert main.set_raw("cfg/b", b"not json") is None  # unchanged: no commit
