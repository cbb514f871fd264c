"""xenstored and its store: history as commits, the node representation,
restart, durability, transactions merged without spurious EAGAIN, and
guest domains (perms, quotas, relative paths) through domain sockets."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import irmin
import pytest
from xsutil import Client, Daemon, start_ours


def guest(d: Daemon, dom0: Client, domid: int) -> Client:
    dom0.req(12, b"/local/domain/%d\0" % domid)
    assert dom0.req(14, b"/local/domain/%d\0n%d\0" % (domid, domid))[3] == b"OK\0"
    assert dom0.req(8, b"%d\0" b"1\0" b"1\0" % domid)[3] == b"OK\0"
    sock = d.socket + ".d/%d" % domid
    for _ in range(100):
        if Path(sock).exists():
            break
        time.sleep(0.02)
    return Client(sock)


def test_history_representation_restart(tmp_path: Path) -> None:
    store = f"lmdb:{tmp_path / 'db'}"
    d = start_ours(tmp_path, store)
    c = Client(d.socket)
    assert c.write("/vm/1/name", b"guest\0one\xff") == b"OK\0"
    assert c.write("/vm/1/b", b"") == b"OK\0"
    assert c.write("/vm/1/a", b"x") == b"OK\0"
    assert c.req(14, b"/vm/1/name\0b3\0r0\0")[3] == b"OK\0"
    # durable by default for lmdb: the change is in the branch once replied
    repo = irmin.open(store)
    t = repo.branch("xenstore").tree()
    assert t.get("vm/1/name/.value") == b"guest\0one\xff"
    assert t.get("vm/1/name/.perms") == b"b3\nr0\n"
    assert t.find("vm/1/b/.value") is None and t.get("vm/1/b/.perms") == b"n0\n"
    assert t.get("vm/1/.order") == b"name\nb\na\n"
    assert t.get("tool/xenstored/.perms") == b"n0\n"
    repo.close()
    c.close()
    assert d.stop() == 0
    repo = irmin.open(store)
    msgs = [cm.message for cm in repo.branch("xenstore").history()]
    repo.close()
    assert msgs[-1].startswith("xenstored: initial tree")
    assert any("SET_PERMS /vm/1/name" in m for m in msgs)
    assert len(msgs) >= 3
    # restart: same tree, children order and perms kept
    d = start_ours(tmp_path, store, name="again")
    c = Client(d.socket)
    assert c.read("/vm/1/name") == (2, b"guest\0one\xff")
    assert c.req(1, b"/vm/1\0")[3] == b"name\0b\0a\0"
    assert c.req(3, b"/vm/1/name\0")[3] == b"b3\0r0\0"
    assert c.req(1, b"/\0")[3] == b"tool\0vm\0"
    c.close()
    assert d.stop() == 0


def test_git_checkout_reads_naturally(tmp_path: Path) -> None:
    gitdir = tmp_path / "repo.git"
    d = start_ours(tmp_path, f"git:{gitdir}")
    c = Client(d.socket)
    c.write("/local/domain/3/name", b"web")
    c.write("/local/domain/3/device/vif/0/mac", b"00:16:3e:00:00:01")
    c.close()
    assert d.stop() == 0
    work = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", "-b", "xenstore", str(gitdir), str(work)], check=True)
    assert (work / "local/domain/3/name/.value").read_bytes() == b"web"
    assert (work / "local/domain/3/device/vif/0/mac/.value").read_bytes() == b"00:16:3e:00:00:01"
    assert (work / "local/domain/3/.perms").read_text() == "n0\n"
    fsck = subprocess.run(["git", "-C", str(gitdir), "fsck", "--strict"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr
    log = subprocess.run(["git", "-C", str(gitdir), "log", "--format=%s", "xenstore"],
                         capture_output=True, text=True, check=True).stdout
    assert "WRITE /local/domain/3/name" in log


def test_grouped_commits_memory(tmp_path: Path) -> None:
    d = start_ours(tmp_path, "memory:", "--commit-interval", "0.05")
    c = Client(d.socket)
    for i in range(50):
        c.write(f"/g/{i}", b"v")
    stats = c.req(0, b"stats\0")[3].decode()
    assert "changes: 50" in stats
    time.sleep(0.3)
    commits = int(c.req(0, b"stats\0")[3].decode().split("commits: ")[1].split()[0])
    assert 1 <= commits < 50
    c.close()
    assert d.stop() == 0


def test_disjoint_transactions_never_eagain(tmp_path: Path) -> None:
    d = start_ours(tmp_path)
    n = 30
    results: list[bytes] = []
    barrier = threading.Barrier(n)

    def worker(i: int) -> None:
        c = Client(d.socket)
        tx = c.start()
        barrier.wait()
        for k in range(10):
            c.write(f"/local/domain/{i}/k{k}", b"v", tx=tx)
        c.read(f"/local/domain/{i}/k0", tx=tx)
        c.req(1, b"/local/domain/%d\0" % i, tx=tx)
        barrier.wait()
        results.append(c.end(tx))
        c.close()

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert results == [b"OK\0"] * n
    c = Client(d.socket)
    assert len(c.req(1, b"/local/domain\0")[3].split(b"\0")) == n + 1
    c.close()
    assert d.stop() == 0


def test_real_conflicts_eagain(tmp_path: Path) -> None:
    d = start_ours(tmp_path)
    a, b = Client(d.socket), Client(d.socket)
    a.write("/r/x", b"0")
    # read-write conflict
    tx = a.start()
    a.read("/r/x", tx=tx)
    b.write("/r/x", b"1")
    a.write("/r/y", b"dep", tx=tx)
    assert a.end(tx) == b"EAGAIN\0"
    # write-write conflict
    tx = a.start()
    a.write("/r/x", b"2", tx=tx)
    b.write("/r/x", b"3")
    assert a.end(tx) == b"EAGAIN\0"
    # directory read vs a new child
    tx = a.start()
    a.req(1, b"/r\0", tx=tx)
    b.write("/r/z", b"")
    a.write("/r/count", b"2", tx=tx)
    assert a.end(tx) == b"EAGAIN\0"
    # rm of a subtree changed meanwhile
    tx = a.start()
    a.req(13, b"/r\0", tx=tx)
    b.write("/r/z/deep", b"")
    assert a.end(tx) == b"EAGAIN\0"
    # unrelated change: commits
    tx = a.start()
    a.read("/r/x", tx=tx)
    a.write("/r/x", b"4", tx=tx)
    b.write("/other", b"")
    assert a.end(tx) == b"OK\0"
    assert a.read("/r/x") == (2, b"4")
    a.close(), b.close()
    assert d.stop() == 0


def test_guest_domain_perms_quotas(tmp_path: Path) -> None:
    d = start_ours(tmp_path)
    dom0 = Client(d.socket)
    dom0.req(4, b"@introduceDomain\0i\0")
    g = guest(d, dom0, 5)
    dom0.req(10, b"0\0")
    assert (b"@introduceDomain", b"i") in dom0.events
    # relative paths resolve to the home, the guest owns what it creates
    assert g.req(11, b"data/x\0v")[3] == b"OK\0"
    assert dom0.read("/local/domain/5/data/x") == (2, b"v")
    assert g.req(3, b"data/x\0")[3] == b"n5\0"
    assert g.req(10, b"5\0")[3] == b"/local/domain/5\0"
    # dom0's nodes are closed to the guest
    assert g.req(2, b"/tool/xenstored\0")[3] == b"EACCES\0"
    assert g.req(11, b"/tool/xenstored\0x")[3] == b"EACCES\0"
    assert g.req(2, b"/tool/nope\0")[3] == b"EACCES\0"
    assert g.req(1, b"/\0")[3] == b"EACCES\0"
    # a guest may not give its node away, nor use privileged ops
    assert g.req(14, b"data/x\0n0\0")[3] == b"EPERM\0"
    assert g.req(14, b"data/x\0n5\0r0\0")[3] == b"OK\0"
    assert g.req(8, b"6\0" b"1\0" b"1\0")[3] == b"EACCES\0"
    assert g.req(0, b"help\0")[3] == b"EACCES\0"
    # relative watch: relative event paths
    assert g.req(4, b"data\0w\0")[3] == b"OK\0"
    dom0.write("/local/domain/5/data/y", b"1")
    g.req(10, b"5\0")
    assert (b"data", b"w") in g.events and (b"data/y", b"w") in g.events
    # quotas
    assert g.req(11, b"big\0" + b"x" * 2100)[3] == b"ENOSPC\0"
    assert dom0.req(0, b"quota\0set\0nodes\0" b"10\0")[3] == b"OK\0"
    replies = [g.req(11, b"n%d\0" % i)[3] for i in range(12)]
    assert b"ENOSPC\0" in replies
    assert dom0.req(0, b"quota\0set\0nodes\0" b"1000\0")[3] == b"OK\0"
    # as in C, E2BIG/ENOSPC once the domain holds more than the quota
    for i in range(128):
        assert g.req(4, b"w%d\0t\0" % i)[3] == b"OK\0"
    assert g.req(4, b"w999\0t\0")[3] == b"E2BIG\0"
    txs = [g.req(6, b"\0")[3] for _ in range(12)]
    assert txs[-1] == b"ENOSPC\0" and txs[10] == b"11\0"
    assert g.req(14, b"data/x\0n5\0r1\0r2\0r3\0r4\0r6\0")[3] == b"ENOSPC\0"
    # release: @releaseDomain for dom0, the guest's connection is closed
    dom0.req(4, b"@releaseDomain\0r\0")
    assert dom0.req(9, b"5\0")[3] == b"OK\0"
    dom0.req(10, b"0\0")
    assert (b"@releaseDomain", b"r") in dom0.events
    with pytest.raises((EOFError, ConnectionError)):
        g.req(2, b"data/x\0")
    assert dom0.req(17, b"5\0")[3] == b"F\0"
    dom0.close()
    assert d.stop() == 0


def test_dead_connections_dropped(tmp_path: Path) -> None:
    d = start_ours(tmp_path)
    a = Client(d.socket)
    a.req(4, b"/dead\0t\0")
    tx = a.start()
    a.write("/dead/x", b"1", tx=tx)
    a.close()
    b = Client(d.socket)
    for i in range(20):
        assert b.write(f"/dead/{i}", b"v") == b"OK\0"
    assert b.read("/dead/x")[0] == 16
    assert b"connections: 1" in b.req(0, b"stats\0")[3]
    b.close()
    assert d.stop() == 0


def test_outstanding_requests_quota(tmp_path: Path) -> None:
    """C ``quota_req_outstanding``: a guest that does not read its replies
    stops being read once 20 of them are unsent; nothing is lost, and dom0
    (no quota) is served meanwhile."""
    import struct as _struct

    d = start_ours(tmp_path)
    dom0 = Client(d.socket)
    g = guest(d, dom0, 5)
    assert g.req(11, b"big\0" + b"x" * 2000)[3] == b"OK\0"
    pkt = _struct.pack("<IIII", 2, 0, 0, 4) + b"big\0"
    g.s.setblocking(False)
    sent = 0
    blocked = False
    rest = b""
    for _ in range(400_000):
        try:
            n = g.s.send(pkt)
        except BlockingIOError:
            blocked = True
            break
        if n < len(pkt):  # the rest of this packet goes after the replies
            rest = pkt[n:]
            blocked = True
            break
        sent += 1
    assert blocked, "the daemon kept reading a guest that reads no replies"
    time.sleep(0.2)
    q = dom0.req(0, b"quota\0" b"5\0")[3]
    assert b"outstanding     :       20\n" in q, q
    assert dom0.write("/dom0/still", b"served") == b"OK\0"
    g.s.settimeout(10)
    for i in range(sent):
        t, _, _, p = g.packet()
        assert t == 2 and p == b"x" * 2000, i
    if rest:
        g.s.sendall(rest)
        assert g.packet()[3] == b"x" * 2000
    assert b"outstanding     :        0\n" in dom0.req(0, b"quota\0" b"5\0")[3]
    assert g.req(2, b"big\0")[3] == b"x" * 2000
    g.close(), dom0.close()
    assert d.stop() == 0
