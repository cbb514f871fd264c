"""The real Xenstore clients against our xenstored: xenstore-utils, pyxs and
Xen's test-xenstore (as dom0 and as an unprivileged guest domain)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from xsutil import TEST_XENSTORE, Client, Daemon, start_ours


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    d = start_ours(tmp_path_factory.mktemp("xs"))
    yield d
    assert d.stop() == 0


def run(d: Daemon, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=d.env, capture_output=True, text=True, timeout=60, check=check)


def test_xenstore_utils(daemon: Daemon) -> None:
    run(daemon, "xenstore-write", "/cli/a", "hello", "/cli/b/c", "x y")
    assert run(daemon, "xenstore-read", "/cli/a").stdout == "hello\n"
    assert run(daemon, "xenstore-read", "/cli/a", "/cli/b/c").stdout == "hello\nx y\n"
    assert run(daemon, "xenstore-list", "/cli").stdout.split() == ["a", "b"]
    ls = run(daemon, "xenstore-ls", "/cli").stdout
    assert 'a = "hello"' in ls and ' c = "x y"' in ls
    assert run(daemon, "xenstore-exists", "/cli/a").returncode == 0
    assert run(daemon, "xenstore-exists", "/cli/nope", check=False).returncode != 0
    run(daemon, "xenstore-chmod", "/cli/a", "r0", "w3")
    assert "(r0,w3)" in run(daemon, "xenstore-ls", "-p", "/cli").stdout
    run(daemon, "xenstore-rm", "/cli/b")
    assert run(daemon, "xenstore-list", "/cli").stdout.split() == ["a"]
    r = run(daemon, "xenstore-read", "/cli/b/c", check=False)
    assert r.returncode != 0


def test_xenstore_watch(daemon: Daemon) -> None:
    p = subprocess.Popen(["xenstore-watch", "-n", "3", "/wt"], env=daemon.env,
                         stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    run(daemon, "xenstore-write", "/wt/x", "1")
    run(daemon, "xenstore-write", "/wt/y", "2")
    out, _ = p.communicate(timeout=10)
    assert out.split() == ["/wt", "/wt/x", "/wt/y"]


def test_pyxs(daemon: Daemon) -> None:
    from pyxs import Client as PyxsClient
    from pyxs import PyXSError

    with PyxsClient(unix_socket_path=daemon.socket) as c:
        c[b"/pyxs/a"] = b"v\x00with nul"
        assert c[b"/pyxs/a"] == b"v\x00with nul"
        assert c.list(b"/pyxs") == [b"a"]
        assert c.exists(b"/pyxs/a")
        c.set_perms(b"/pyxs/a", [b"b0", b"r5"])
        assert c.get_perms(b"/pyxs/a") == [b"b0", b"r5"]
        assert c.get_domain_path(3) == b"/local/domain/3"
        assert c.is_domain_introduced(0) is True
        with pytest.raises(PyXSError):
            c[b"/pyxs/missing"]
        # transactions
        c.transaction()
        c[b"/pyxs/t"] = b"in tx"
        assert c.commit() is True
        assert c[b"/pyxs/t"] == b"in tx"
        c.transaction()
        c[b"/pyxs/t2"] = b"aborted"
        c.rollback()
        assert not c.exists(b"/pyxs/t2")
        c.delete(b"/pyxs/t")
    # watches
    with PyxsClient(unix_socket_path=daemon.socket) as w, \
            PyxsClient(unix_socket_path=daemon.socket) as c:
        m = w.monitor()
        m.watch(b"/pyxsw", b"tok")
        it = m.wait()
        assert next(it) == (b"/pyxsw", b"tok")
        c[b"/pyxsw/k"] = b"1"
        assert next(it) == (b"/pyxsw/k", b"tok")
        m.unwatch(b"/pyxsw", b"tok")


def test_pyxs_transaction_conflict(daemon: Daemon) -> None:
    from pyxs import Client as PyxsClient

    with PyxsClient(unix_socket_path=daemon.socket) as a, \
            PyxsClient(unix_socket_path=daemon.socket) as b:
        a[b"/conf/x"] = b"0"
        a.transaction()
        assert a[b"/conf/x"] == b"0"
        b[b"/conf/x"] = b"1"
        a[b"/conf/x"] = b"2"
        assert a.commit() is False  # EAGAIN
        assert a[b"/conf/x"] == b"1"


def test_test_xenstore_all(daemon: Daemon) -> None:
    r = run(daemon, TEST_XENSTORE, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_test_xenstore_iterations(daemon: Daemon) -> None:
    r = run(daemon, TEST_XENSTORE, "-i", "200", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ta err" in r.stdout


def test_test_xenstore_random(daemon: Daemon) -> None:
    r = run(daemon, TEST_XENSTORE, "-r", "3", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_test_xenstore_parallel(daemon: Daemon) -> None:
    procs = [subprocess.Popen([TEST_XENSTORE, "-i", "20"], env=daemon.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(10)]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out


def test_test_xenstore_as_guest(daemon: Daemon) -> None:
    """test-xenstore as unprivileged domain 7 through its domain socket:
    relative paths land in /local/domain/7, which the toolstack prepares."""
    c = Client(daemon.socket)
    c.req(12, b"/local/domain/7\0")
    assert c.req(14, b"/local/domain/7\0n7\0")[3] == b"OK\0"
    assert c.req(8, b"7\0" b"0\0" b"0\0")[3] == b"OK\0"
    sock = daemon.socket + ".d/7"
    for _ in range(50):
        if Path(sock).exists():
            break
        time.sleep(0.02)
    env = dict(daemon.env, XENSTORED_PATH=sock)
    r = subprocess.run([TEST_XENSTORE], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert c.req(9, b"7\0")[3] == b"OK\0"
    c.close()
