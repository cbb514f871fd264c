"""Lazy immutable trees: operations, sharing, diff, and laziness proven by
counting backend reads."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import irmin
from irmin.errors import InvalidPath, NotFoundError


@pytest.fixture()
def repo():
    with irmin.open("memory:") as r:
        yield r


def test_set_get_remove_are_persistent(repo):
    t0 = repo.empty_tree()
    t1 = t0.set("a/b/c", b"1")
    t2 = t1.set("a/b/d", b"2").set("x", b"3")
    assert t0.is_empty() and t0.find("a/b/c") is None
    assert t1.get("a/b/c") == b"1" and t1.find("a/b/d") is None
    assert t2.get(["a", "b", "d"]) == b"2" and t2.get("/x") == b"3"
    t3 = t2.remove("a/b/c").remove("a/b/d")
    assert t3.kind("a") is None  # emptied parents go
    assert t3.list() == [("x", "contents")]
    assert t2.get("a/b/c") == b"1"  # old versions untouched


def test_kinds_and_errors(repo):
    t = repo.empty_tree().set("a/b", b"v")
    assert t.kind("a") == "node" and t.kind("a/b") == "contents" and t.kind("nope") is None
    assert t.mem("a/b") and not t.mem("a") and t.mem_tree("a")
    with pytest.raises(NotFoundError):
        t.get("a")
    with pytest.raises(NotFoundError):
        t.get("a/b/c")
    for bad in ("a//b", "a/../b", "a/./b", ".git/x", "a/\0"):
        with pytest.raises(InvalidPath):
            t.set(bad, b"x")
    with pytest.raises(InvalidPath):
        t.set("", b"x")
    with pytest.raises(TypeError):
        t.set("a/c", "not bytes")  # type: ignore[arg-type]


def test_contents_replaced_by_node_and_back(repo):
    t = repo.empty_tree().set("a", b"leaf").set("a/b", b"deep")
    assert t.kind("a") == "node" and t.get("a/b") == b"deep"
    t = t.set("a", b"leaf again")
    assert t.get("a") == b"leaf again" and t.find("a/b") is None


def test_list_pagination_and_git_order(repo):
    t = repo.empty_tree()
    for n in ["b", "a.b", "c", "e"]:
        t = t.set(n, b"v")
    t = t.set("a/x", b"v")
    names = [n for n, _ in t.list()]
    assert names == ["a.b", "a", "b", "c", "e"]  # git order: a.b < a/
    assert t.list(offset=1, length=2) == [("a", "node"), ("b", "contents")]
    assert t.list("a") == [("x", "contents")]
    assert t.list("missing") == []


def test_find_and_set_subtrees_share_structure(repo):
    t = repo.empty_tree().set("src/a", b"1").set("src/b/c", b"2")
    sub = t.get_tree("src")
    t2 = t.set_tree("copy", sub)
    assert t2.get("copy/b/c") == b"2"
    assert t2.get_tree("copy").hash() == sub.hash()
    assert t2.set_tree("copy", repo.empty_tree()).kind("copy") is None
    # An unchanged subtree is the same object in the new version.
    t3 = t2.set("other", b"x")
    assert t3._entry("src") is t2._entry("src")
    assert type(t3._entry("src")).__name__ == "Tree"


def test_equal_contents_means_same_tree_object(repo):
    t = repo.empty_tree().set("a", b"1")
    assert t.set("a", b"1") is t
    assert t.remove("zzz") is t


def test_walk_fold_depth(repo):
    t = repo.empty_tree().set("a", b"1").set("d/b", b"2").set("d/e/c", b"3")
    assert list(t.walk()) == [(("a",), b"1"), (("d", "b"), b"2"), (("d", "e", "c"), b"3")]
    assert list(t.walk(max_depth=1)) == [(("a",), b"1")]
    assert list(t.walk(max_depth=2)) == [(("a",), b"1"), (("d", "b"), b"2")]
    total = t.fold(lambda p, v, acc: acc + int(v), 0)
    assert total == 6


def test_diff(repo):
    a = repo.empty_tree().set("k", b"1").set("d/x", b"2").set("d/y", b"3").set("gone/z", b"4")
    b = a.set("k", b"10").remove("d/y").set("d/new", b"5").remove("gone").set("fresh/q", b"6")
    changes = {(("/".join(p)), c, o, n) for p, c, o, n in a.diff(b)}
    assert changes == {
        ("k", "updated", b"1", b"10"),
        ("d/y", "removed", b"3", None),
        ("d/new", "added", None, b"5"),
        ("gone/z", "removed", b"4", None),
        ("fresh/q", "added", None, b"6"),
    }
    assert a.diff(a) == []


def test_hash_is_computed_lazily_and_stable(repo):
    t = repo.empty_tree().set("a/b", b"1")
    assert t._oid is None
    h = t.hash()
    assert t._oid == h and t.hash() is h
    assert repo.empty_tree().set("a/b", b"1").hash() == h


def _key(i: int) -> str:
    return f"d{i // 1000:03d}/e{(i // 10) % 100:02d}/k{i % 10}"


def test_reading_one_path_loads_only_that_path(tmp_path):
    """100,000 keys on LMDB; a fresh repo reads one path: the commit, the
    root and one node per level, and the blob: nothing else."""
    uri = f"lmdb:{tmp_path / 'db'}?sync=false"
    with irmin.open(uri) as repo:
        t = repo.empty_tree()
        for i in range(100_000):
            t = t.set(_key(i), b"%d" % i)
        repo.branch().update_tree(lambda _t: t)
    with irmin.open(uri) as repo:
        main = repo.branch()
        repo.reads = 0
        assert main.get(_key(54321)) == b"54321"
        # commit + root + d054 + e32 + blob
        assert repo.reads == 5
        assert repo._nodes.size < 400  # only the nodes on the path are loaded
        repo.reads = 0
        assert main.get(_key(54322)) == b"54322"
        assert repo.reads == 1  # same directory: only the blob is new


# -- random edits against a model and an independent git tree encoder ----------------

_NAMES = ["a", "a.b", "a-", "b", "bb", "c0", "z"]
_MODES = [b"100644", b"100755", b"120000"]


def _reference_id(model: dict[tuple[str, ...], tuple[bytes, bytes]]) -> bytes:
    """git's id of the tree holding ``model`` (path -> (data, mode)), built
    here with hashlib alone, as git would."""
    import hashlib

    def obj(kind: bytes, body: bytes) -> bytes:
        return hashlib.sha1(b"%s %d\0%s" % (kind, len(body), body)).digest()

    def build(paths: dict[tuple[str, ...], tuple[bytes, bytes]]) -> bytes:
        children: dict[str, dict] = {}
        entries = []
        for p, (data, mode) in paths.items():
            if len(p) == 1:
                entries.append((p[0].encode(), mode, obj(b"blob", data)))
            else:
                children.setdefault(p[0], {})[p[1:]] = (data, mode)
        for name, sub in children.items():
            entries.append((name.encode() + b"/", b"40000", build(sub)))
        entries.sort()
        body = b"".join(b"%s %s\0%s" % (m, n.rstrip(b"/"), i) for n, m, i in entries)
        return obj(b"tree", body)

    return build(model)


@given(st.lists(st.tuples(
    st.sampled_from(["set", "set", "set", "remove", "commit", "reload"]),
    st.lists(st.sampled_from(_NAMES), min_size=1, max_size=3),
    st.binary(max_size=8),
    st.sampled_from(_MODES),
), max_size=40))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_edits_match_a_model_and_git_ids(ops):
    """Sets (also over existing contents or nodes, changing modes), removes,
    commits and reloads from the backend in any order: the tree always reads
    as the model and has the id git would give it."""
    with irmin.open("memory:") as r:
        t = r.empty_tree()
        model: dict[tuple[str, ...], tuple[bytes, bytes]] = {}
        for op, path, data, mode in ops:
            p = tuple(path)
            if op == "set":
                t = t.set(p, data, mode)
                # contents on the way become nodes; a node at p goes
                model = {q: v for q, v in model.items()
                         if q[:len(p)] != p and q != p[:len(q)]}
                model[p] = (data, mode)
            elif op == "remove":
                t = t.remove(p)
                model = {q: v for q, v in model.items() if q[:len(p)] != p}
            elif op == "commit":
                r.write_commit(t, [])
            else:
                c = r.write_commit(t, [])
                r._nodes.clear()
                t = r.tree(c.tree_id)
            assert {q: (v, t.mode(q)) for q, v in t.walk()} == model
            assert t.hash() == _reference_id(model)
        for q, (data, mode) in model.items():
            assert t.get(q) == data and t.mode(q) == mode


@given(st.lists(st.tuples(
    st.sampled_from(["set", "set", "set", "remove", "exec", "reload"]),
    st.lists(st.sampled_from(_NAMES[:4]), min_size=1, max_size=3),
    st.binary(max_size=4),
), max_size=30))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_branch_writes_match_a_model_and_git_ids(ops):
    """``Store.set`` commits through its own export path (new nodes made clean
    as they are made): each commit's tree reads as the model, has git's id,
    and its objects are all in the backend, as a fresh reader finds them."""
    with irmin.open("memory:") as r:
        b = r.branch("main")
        model: dict[tuple[str, ...], tuple[bytes, bytes]] = {}
        for op, path, data in ops:
            p = tuple(path)
            if op in ("set", "exec"):
                mode = b"100644" if op == "set" else b"100755"
                if op == "set":
                    b.set(p, data)
                else:
                    b.update_tree(lambda t: t.set(p, data, mode))
                model = {q: v for q, v in model.items()
                         if q[:len(p)] != p and q != p[:len(q)]}
                model[p] = (data, mode)
            elif op == "remove":
                b.remove(p)
                model = {q: v for q, v in model.items() if q[:len(p)] != p}
            else:
                r._nodes.clear()
            head = b.head
            if head is None:  # nothing committed yet (removes of absent paths)
                assert not model
                continue
            tree_id = head.tree_id
            assert tree_id == _reference_id(model)
            fresh = irmin.Repo(r.backend)  # no caches: every object from the backend
            t = fresh.tree(tree_id)
            assert {q: (v, t.mode(q)) for q, v in t.walk()} == model
