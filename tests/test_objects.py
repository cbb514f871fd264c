"""The git codec: ids equal git's, and malformed objects raise one clear error."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitutil import git
from irmin.errors import MalformedObject
from irmin.objects import SHA1, MODE_FILE, MODE_TREE, CommitData, Person


@pytest.fixture()
def repo_dir(tmp_path):
    git("init", "-q", "--bare", str(tmp_path / "r.git"), cwd=tmp_path)
    return tmp_path / "r.git"


def test_blob_ids_match_git_hash_object(tmp_path):
    for data in (b"", b"hello\n", bytes(range(256)) * 10, b"\0\0nul"):
        p = tmp_path / "f"
        p.write_bytes(data)
        expected = git("hash-object", str(p), cwd=tmp_path).strip().decode()
        assert SHA1.hash_object(b"blob", data).hex() == expected


def test_tree_and_commit_ids_match_git(repo_dir):
    blob = git("hash-object", "-w", "--stdin", cwd=repo_dir, input=b"v\n").strip().decode()
    mktree_in = f"100644 blob {blob}\tb.txt\n100644 blob {blob}\ta\n".encode()
    tree = git("mktree", cwd=repo_dir, input=mktree_in).strip().decode()
    body = SHA1.tree_entry(MODE_FILE, b"a", bytes.fromhex(blob)) + SHA1.tree_entry(
        MODE_FILE, b"b.txt", bytes.fromhex(blob)
    )
    assert SHA1.hash_object(b"tree", body).hex() == tree
    raw = git("cat-file", "commit",
              git("commit-tree", tree, "-m", "msg", cwd=repo_dir).strip().decode(), cwd=repo_dir)
    data = SHA1.parse_commit(raw)
    assert data.tree.hex() == tree
    assert SHA1.encode_commit(data) == raw  # re-encodes byte for byte


def test_git_sort_order_dir_vs_file():
    # git sorts "a.b" before a directory "a" (which sorts as "a/").
    sub = b"\x01" * 20
    body = SHA1.tree_entry(MODE_FILE, b"a.b", sub) + SHA1.tree_entry(MODE_TREE, b"a", sub)
    assert [e[1] for e in SHA1.parse_tree(body)] == [b"a.b", b"a"]
    with pytest.raises(MalformedObject):
        SHA1.parse_tree(SHA1.tree_entry(MODE_TREE, b"a", sub) + SHA1.tree_entry(MODE_FILE, b"a.b", sub))


E = b"\x02" * 20


def obj(kind: bytes, body: bytes) -> bytes:
    return b"%s %d\0%s" % (kind, len(body), body)


@pytest.mark.parametrize(
    "raw, what",
    [
        (b"blob 5\0hell", "says 5 bytes"),
        (b"blob 3\0hello", "says 3 bytes"),
        (b"blob\0x", "bad object size"),
        (b"blob 05\0hello", "bad object size"),
        (b"blub 1\0x", "unknown object type"),
        (b"no header at all", "no header"),
        (obj(b"tree", b"100644 a\0" + E[:18]), "truncated"),
        (obj(b"tree", b"100645 a\0" + E), "bad mode"),
        (obj(b"tree", b"040000 a\0" + E), "bad mode"),
        (obj(b"tree", b"100644 \0" + E), "bad name"),
        (obj(b"tree", b"100644 ..\0" + E), "bad name"),
        (obj(b"tree", b"100644 a/b\0" + E), "bad name"),
        (obj(b"tree", b"100644 b\0" + E + b"100644 a\0" + E), "not sorted"),
        (obj(b"tree", b"100644 a\0" + E + b"100644 a\0" + E), "not sorted"),
        (obj(b"commit", b"tree " + b"0" * 40 + b"\nauthor x\n\nmsg"), "person"),
        (b"commit 5\0tree ", "commit"),
        (b"commit 52\0tree " + b"0" * 40 + b"\n\nmsg", "commit lacks"),
    ],
)
def test_malformed_objects_raise_one_error(raw, what):
    def decode():
        kind, body = SHA1.split(raw)
        if kind == b"tree":
            SHA1.parse_tree(body)
        elif kind == b"commit":
            SHA1.parse_commit(body)

    with pytest.raises(MalformedObject) as e:
        decode()
    assert what.split()[0] in str(e.value) or what in str(e.value)


def test_check_rehashes():
    oid, raw = SHA1.canonical(b"blob", b"x")
    assert SHA1.check(oid, raw) == b"blob"
    with pytest.raises(MalformedObject, match="does not hash"):
        SHA1.check(oid, raw[:-1] + b"y")


def test_bad_person_lines():
    for bad in (b"no email 1 +0000", b"a <b> notatime +0000", b"a <b> 1 0000"):
        with pytest.raises(MalformedObject):
            Person.parse(bad)
    p = Person.parse(b"Ann Lee <ann@x.org> 1700000000 -0130")
    assert (p.name, p.email, p.time, p.tz_minutes) == ("Ann Lee", "ann@x.org", 1700000000, -90)
    assert p.encode() == b"Ann Lee <ann@x.org> 1700000000 -0130"


def test_hash_seam_is_the_only_hash():
    assert SHA1.id_len == 20
    assert SHA1.hash_raw(b"blob 0\0") == hashlib.sha1(b"blob 0\0").digest()
    assert SHA1.empty_tree_id.hex() == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_decodes_to_garbage(data):
    # Either it decodes into a well-formed object, or MalformedObject: nothing else.
    try:
        kind, body = SHA1.split(data)
        if kind == b"tree":
            for mode, name, oid in SHA1.parse_tree(body):
                assert len(oid) == 20 and name and b"/" not in name
        elif kind == b"commit":
            SHA1.parse_commit(body)
    except MalformedObject:
        pass


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=0, max_size=200))
def test_commit_message_round_trip(msg):
    who = Person("A", "a@b", 1, 60)
    data = CommitData(b"\x01" * 20, (b"\x03" * 20,), who, who, msg)
    back = SHA1.parse_commit(SHA1.encode_commit(data))
    assert back.message == msg and back.parents == data.parents and back.author == who
