"""The ``irmin`` command line.

Most tests use click's CliRunner (fast, same process); the ``proc`` tests run
the installed ``irmin`` entry point as a subprocess to prove the script works,
that errors never print tracebacks, and that watches see other processes.
Every test runs in its own directory with the default store (``lmdb:.irmin``
in the current directory) unless it says otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from irmin.server.cli import main

IRMIN = shutil.which("irmin")  # installed with the package (pip install -e .)


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IRMIN_STORE", raising=False)
    monkeypatch.setenv("IRMIN_AUTHOR", "Tester <tester@example.com>")
    return tmp_path


def run(*args: str, input: bytes | None = None, code: int = 0):  # noqa: A002
    result = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
    return result


def fail(*args: str, code: int = 1) -> str:
    """Run a command that must fail; return its one-line error message."""
    r = run(*args, code=code)
    assert "Traceback" not in r.stderr
    if code == 1:
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert lines[0].startswith("irmin: error: "), r.stderr
        return lines[0]
    return r.stderr


def proc(*args: str, cwd: Path, input: bytes | None = None, env: dict[str, str] | None = None,
         code: int = 0) -> subprocess.CompletedProcess[bytes]:
    assert IRMIN is not None
    p = subprocess.run([IRMIN, *args], cwd=cwd, input=input, capture_output=True,
                       env={**os.environ, "IRMIN_AUTHOR": "Tester <t@example.com>", **(env or {})},
                       timeout=60)
    assert p.returncode == code, (args, p.returncode, p.stdout, p.stderr)
    assert b"Traceback" not in p.stderr
    return p


# -- contents ---------------------------------------------------------------------------


def test_init_creates_default_store_in_cwd(cwd: Path) -> None:
    r = run("init")
    assert "created empty store lmdb:" in r.stdout
    assert (cwd / ".irmin").is_dir()
    run("set", "a", "1")
    assert "opened existing store" in run("init").stdout


def test_set_get_list_tree_remove(cwd: Path) -> None:
    run("set", "a/b", "hello", "-m", "first")
    run("set", "a/c", "world")
    run("set", "top", "x")
    assert run("get", "a/b").stdout_bytes == b"hello"          # no added newline
    assert run("list").stdout.splitlines() == ["a/", "top"]
    assert run("list", "a").stdout.splitlines() == ["b", "c"]
    assert json.loads(run("list", "--json").stdout) == [
        {"name": "a", "kind": "node"}, {"name": "top", "kind": "contents"}]
    assert run("tree").stdout.splitlines() == ["a/b = hello", "a/c = world", "top = x"]
    assert run("tree", "a").stdout.splitlines() == ["a/b = hello", "a/c = world"]
    assert json.loads(run("tree", "--json").stdout) == {"a/b": "hello", "a/c": "world", "top": "x"}
    run("remove", "a/b")
    assert json.loads(run("tree", "--json").stdout) == {"a/c": "world", "top": "x"}
    run("remove", "a")
    assert run("list").stdout.splitlines() == ["top"]


def test_fresh_store_reads_as_empty(cwd: Path) -> None:
    assert run("list").stdout == ""
    assert run("tree", "--json").stdout.strip() == "{}"
    assert run("log").stdout == ""


def test_set_from_stdin_and_binary_round_trip(cwd: Path) -> None:
    blob = bytes(range(256)) * 4 + b"\n\x00\r\n"
    run("set", "bin", "-", input=blob)
    assert run("get", "bin").stdout_bytes == blob
    assert json.loads(run("tree", "--json").stdout)["bin"]["b64"]
    # human tree listing stays on one line
    assert len(run("tree").stdout.splitlines()) == 1


def test_typed_contents(cwd: Path) -> None:
    run("--contents", "json", "set", "doc", '{"b": [1, 2], "a": "x"}')
    assert json.loads(run("--contents", "json", "get", "doc").stdout) == {"a": "x", "b": [1, 2]}
    assert run("get", "doc").stdout_bytes == b'{"a":"x","b":[1,2]}'     # canonical blob
    run("--contents", "counter", "set", "n", "41")
    assert run("--contents", "counter", "get", "n").stdout.strip() == "41"
    run("--contents", "set", "set", "s", '["b", "a"]')
    assert json.loads(run("--contents", "set", "get", "s").stdout) == ["a", "b"]
    run("--contents", "string", "set", "t", "héllo")
    assert json.loads(run("--contents", "string", "get", "t").stdout) == "héllo"
    assert "bad counter value" in fail("--contents", "counter", "set", "n", "1.5")
    assert "cannot decode as counter" in fail("--contents", "counter", "get", "doc")
    assert "unknown contents" in fail("--contents", "nope", "get", "n", code=2)


# -- history ----------------------------------------------------------------------------


def test_log_formats(cwd: Path) -> None:
    for i in range(3):
        run("set", "k", str(i), "-m", f"write {i}")
    lines = run("log").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["write 2", "write 1", "write 0"]
    assert all(len(line.split(" ", 1)[0]) == 12 for line in lines)
    assert len(run("log", "-n", "2").stdout.splitlines()) == 2
    long = run("log", "--long", "-n", "1").stdout
    assert long.startswith("commit ") and "Author: Tester <tester@example.com>" in long
    assert "Date:   " in long and "    write 2" in long
    data = json.loads(run("log", "--json").stdout)
    assert [c["message"] for c in data] == ["write 2", "write 1", "write 0"]
    assert data[0]["parents"] == [data[1]["id"]]
    assert data[0]["author"] == "Tester <tester@example.com>"
    run("set", "k", "x", "--author", "Other <o@example.com>")
    assert json.loads(run("log", "--json", "-n", "1").stdout)[0]["author"] == "Other <o@example.com>"
    fail("set", "k", "y", "--author", "bad <x", code=2)


def test_diff_and_revert(cwd: Path) -> None:
    run("set", "a", "1")
    run("set", "b", "2")
    first = json.loads(run("log", "--json").stdout)[-1]["id"]
    run("set", "a", "changed")
    run("remove", "b")
    run("set", "c", "3")
    assert run("diff", first).stdout.splitlines() == ["M\ta", "A\tc"]
    second = json.loads(run("log", "--json").stdout)[-2]["id"]
    changes = json.loads(run("diff", first[:8], second, "--json").stdout)
    assert changes == [{"path": "b", "change": "added", "old": None, "new": "2"}]
    run("revert", first)
    assert json.loads(run("tree", "--json").stdout) == {"a": "1"}
    assert json.loads(run("log", "--json", "-n", "1").stdout)[0]["message"].startswith("revert")
    assert len(json.loads(run("log", "--json").stdout)) == 6      # history kept
    assert "no branch or commit" in fail("diff", "nope")
    assert "no branch or commit" in fail("revert", "deadbeefdead")


def test_dot(cwd: Path) -> None:
    run("set", "a", "1")
    run("branch", "create", "feature")
    run("-b", "feature", "set", "b", "2", "-m", 'quote " me')
    run("set", "c", "3")
    out = run("dot").stdout
    assert out.startswith("digraph irmin {") and out.rstrip().endswith("}")
    assert out.count(" -> ") == 2 + 2            # two parent edges, two branch-head edges
    assert '"branch:main"' in out and '"branch:feature"' in out
    assert 'quote \\" me' in out
    assert out.count("[label=") == 3 + 2
    assert run("dot", "-n", "1").stdout.count(" -> ") == 2   # heads only: no parent edges
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg"], input=out.encode(), check=True, capture_output=True)


# -- branches ---------------------------------------------------------------------------


def test_branches_create_delete(cwd: Path) -> None:
    run("set", "a", "1")
    head = json.loads(run("log", "--json").stdout)[0]["id"]
    run("branch", "create", "dev")
    run("branch", "create", "old", "--from", head[:10])
    assert json.loads(run("branches", "--json").stdout) == [
        {"name": "dev", "head": head}, {"name": "main", "head": head}, {"name": "old", "head": head}]
    lines = run("-b", "dev", "branches").stdout.splitlines()
    assert lines[0].startswith("* dev ") and lines[1].startswith("  main ")
    assert "already exists" in fail("branch", "create", "dev")
    run("branch", "delete", "old")
    assert [b["name"] for b in json.loads(run("branches", "--json").stdout)] == ["dev", "main"]
    assert "no branch 'old'" in fail("branch", "delete", "old")
    assert "no branch 'old'" in fail("-b", "old", "get", "a")
    assert "no branch 'old'" in fail("-b", "old", "log")
    assert "no branch or commit 'nope'" in fail("branch", "create", "x", "--from", "nope")
    fail("branch", "create", "bad..name")


def test_merge_fast_forward_merge_and_conflict(cwd: Path) -> None:
    run("set", "a", "1")
    run("branch", "create", "dev")
    run("-b", "dev", "set", "b", "2")
    assert "fast-forward" in run("merge", "dev").stdout
    assert "already up to date" in run("merge", "dev").stdout
    run("-b", "dev", "set", "c", "3")
    run("set", "d", "4")
    assert "merged dev into main" in run("merge", "dev", "-m", "join").stdout
    assert json.loads(run("tree", "--json").stdout) == {"a": "1", "b": "2", "c": "3", "d": "4"}
    top = json.loads(run("log", "--json", "-n", "1").stdout)[0]
    assert top["message"] == "join" and len(top["parents"]) == 2
    # conflict: both change a and d differently
    run("-b", "dev", "set", "a", "dev")
    run("-b", "dev", "set", "d", "dev")
    run("set", "a", "main")
    run("set", "d", "main")
    before = json.loads(run("log", "--json", "-n", "1").stdout)[0]["id"]
    msg = fail("merge", "dev")
    assert "conflict" in msg and "a, d" in msg and "dev" in msg
    assert json.loads(run("log", "--json", "-n", "1").stdout)[0]["id"] == before   # nothing written
    assert "no branch or commit 'nope'" in fail("merge", "nope")


# -- errors -----------------------------------------------------------------------------


def test_errors_are_one_line(cwd: Path) -> None:
    run("set", "a/b", "1")
    assert fail("get", "nope") == "irmin: error: no contents at nope"
    assert "no contents at a" in fail("get", "a")
    assert "nothing at x" in fail("remove", "x")
    assert "no directory at a/b" in fail("list", "a/b")
    assert "has no scheme" in fail("--store", "nonsense", "get", "a")
    assert "unknown store scheme" in fail("--store", "foo:bar", "list")
    assert "invalid path step" in fail("get", "a/../b")
    fail("get", code=2)                                   # click usage error
    fail("frobnicate", code=2)


def test_store_option_and_env(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run("--store", "lmdb:other", "set", "k", "v")
    assert (cwd / "other").is_dir() and not (cwd / ".irmin").exists()
    monkeypatch.setenv("IRMIN_STORE", "lmdb:other")
    assert run("get", "k").stdout == "v"


def test_init_block_formats_and_refuses_reformat(cwd: Path) -> None:
    uri = f"block:{cwd / 'dev.img'}"
    assert "give --size" in fail("--store", uri, "init")
    assert "formatted" in run("--store", uri, "init", "--size", "8M").stdout
    run("--store", uri, "set", "k", "v")
    assert "--force" in fail("--store", uri, "init")
    assert run("--store", uri, "get", "k").stdout == "v"   # refused: data intact
    run("--store", uri, "init", "--force")
    assert run("--store", uri, "list").stdout == ""
    fail("init", "--force", code=2)                       # not a block store


# -- the real entry point -----------------------------------------------------------------


def test_proc_round_trip_and_errors(tmp_path: Path) -> None:
    proc("init", cwd=tmp_path)
    assert (tmp_path / ".irmin").is_dir()
    blob = os.urandom(4096) + b"\x00\n"
    proc("set", "bin/x", "-", "-m", "binary", cwd=tmp_path, input=blob)
    assert proc("get", "bin/x", cwd=tmp_path).stdout == blob
    p = proc("get", "missing", cwd=tmp_path, code=1)
    assert p.stderr == b"irmin: error: no contents at missing\n" and p.stdout == b""
    p = proc("-b", "ghost", "list", cwd=tmp_path, code=1)
    assert p.stderr == b"irmin: error: no branch 'ghost'\n"
    p = proc("--store", "bogus:x", "list", cwd=tmp_path, code=1)
    assert p.stderr.startswith(b"irmin: error: unknown store scheme")
    proc("no-such-command", cwd=tmp_path, code=2)
    log = json.loads(proc("log", "--json", cwd=tmp_path).stdout)
    assert log[0]["message"] == "binary" and log[0]["author"] == "Tester <t@example.com>"


def test_proc_merge_conflict_exit_code(tmp_path: Path) -> None:
    proc("set", "k", "base", cwd=tmp_path)
    proc("branch", "create", "other", cwd=tmp_path)
    proc("-b", "other", "set", "k", "theirs", cwd=tmp_path)
    proc("set", "k", "ours", cwd=tmp_path)
    p = proc("merge", "other", cwd=tmp_path, code=1)
    assert p.stderr.count(b"\n") == 1 and b"conflict" in p.stderr and b" k" in p.stderr


def test_proc_git_store_passes_git_fsck(tmp_path: Path) -> None:
    git = shutil.which("git")
    assert git is not None, "the git CLI is required (.ci/test.sh installs it)"
    uri = "git:repo.git"
    proc("--store", uri, "init", cwd=tmp_path)
    proc("--store", uri, "set", "a/b", "hello", cwd=tmp_path)
    proc("--store", uri, "set", "bin", "-", cwd=tmp_path, input=b"\x00\xff\n")
    proc("--store", uri, "branch", "create", "dev", cwd=tmp_path)
    proc("--store", uri, "-b", "dev", "set", "a/c", "dev", cwd=tmp_path)
    proc("--store", uri, "set", "d", "main", cwd=tmp_path)
    proc("--store", uri, "merge", "dev", cwd=tmp_path)
    proc("--store", uri, "remove", "a/b", cwd=tmp_path)
    genv = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    genv.update(HOME=str(tmp_path), GIT_CONFIG_NOSYSTEM="1")
    gitdir = str(tmp_path / "repo.git")
    subprocess.run([git, "--git-dir", gitdir, "fsck", "--strict", "--no-dangling"],
                   check=True, capture_output=True, env=genv)
    shown = subprocess.run([git, "--git-dir", gitdir, "show", "main:bin"],
                           check=True, capture_output=True, env=genv).stdout
    assert shown == b"\x00\xff\n"
    ids = subprocess.run([git, "--git-dir", gitdir, "rev-list", "main"], check=True,
                         capture_output=True, env=genv, text=True).stdout.split()
    assert ids == [c["id"] for c in json.loads(
        proc("--store", uri, "log", "--json", cwd=tmp_path).stdout)]


@pytest.mark.parametrize("as_json", [True, False])
def test_proc_watch_sees_other_process(tmp_path: Path, as_json: bool) -> None:
    proc("set", "seed", "0", cwd=tmp_path)
    args = [IRMIN, "watch", "w", "--count", "3"] + (["--json"] if as_json else [])
    watcher = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Write until the watcher has seen three changes below w/ (it may start
        # after the first writes); writes outside w/ must not count.
        deadline = time.monotonic() + 30
        i = 0
        while watcher.poll() is None and time.monotonic() < deadline:
            i += 1
            proc("set", f"w/k{i}", str(i), cwd=tmp_path)
            proc("set", "elsewhere", str(i), cwd=tmp_path)
            time.sleep(0.3)
        out, err = watcher.communicate(timeout=10)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, err
    lines = out.decode().splitlines()
    assert len(lines) == 3
    if as_json:
        events = [json.loads(line) for line in lines]
        for ev in events:
            assert ev["branch"] == "main" and len(ev["new"]) == 40
            assert ev["diff"] and all(d["path"].startswith("w/") for d in ev["diff"])
            assert all(d["change"] == "added" for d in ev["diff"])
    else:
        for line in lines:
            assert line.startswith("main ") and "A:w/k" in line and "elsewhere" not in line


def test_proc_watch_stops_on_ctrl_c(tmp_path: Path) -> None:
    import signal

    proc("set", "a", "1", cwd=tmp_path)
    watcher = subprocess.Popen([IRMIN, "watch"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    time.sleep(1.5)
    watcher.send_signal(signal.SIGINT)
    out, err = watcher.communicate(timeout=10)
    assert watcher.returncode == 0 and b"Traceback" not in err, err


def test_every_verb_is_registered() -> None:
    assert set(main.commands) >= {"init", "get", "set", "remove", "list", "tree", "log", "diff",
                                  "dot", "revert", "branches", "branch", "merge", "watch"}
    assert set(main.commands["branch"].commands) == {"create", "delete"}
