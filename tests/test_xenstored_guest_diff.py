"""Guest differential tests: the same scripted sessions, with unprivileged
guest domains, against our xenstored (guests on ``SOCKET.d/N``) and the
real C xenstored (guests over the shared ring, xsref ``--rings`` and
``RingGuest``). Every packet every connection receives is compared byte for
byte, in order. Both daemons run with the same (small) quotas.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

import pytest
from xsutil import XSREF, H, Client, Daemon, queued_events, start_ours, start_reference

sys.path.insert(0, str(XSREF))
from xsref_guest import RingGuest  # noqa: E402

# the same quota values for both daemons
QUOTAS = {"nodes": 30, "node-size": 300, "watches": 4, "transactions": 3,
          "permissions": 3, "transaction-nodes": 12}
C_ARGS = ["-E", "30", "-S", "300", "-W", "4", "-t", "3", "-A", "3",
          "-Q", "transaction-nodes=12"]

READ, DIR, GET_PERMS, WATCH, UNWATCH, TX_START, TX_END = 2, 1, 3, 4, 5, 6, 7
INTRODUCE, RELEASE, GET_DOMAIN_PATH, WRITE, MKDIR, RM, SET_PERMS = 8, 9, 10, 11, 12, 13, 14
IS_INTRODUCED = 17


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("xsguest")
    ours = start_ours(tmp, "memory:", *itertools.chain.from_iterable(
        ("--quota", f"{k}={v}") for k, v in QUOTAS.items()))
    ref = start_reference(tmp, False, "--rings", daemon_args=tuple(C_ARGS))
    yield ours, ref
    ref.stop()
    assert ours.stop() == 0


class RingEndpoint:
    """A RingGuest with the raw packet interface of xsutil.Client."""

    def __init__(self, ring_dir: str, domid: int) -> None:
        path = os.path.join(ring_dir, f"ring-{domid}")
        for _ in range(100):
            if os.path.exists(path):
                break
            time.sleep(0.02)
        self.g = RingGuest(ring_dir, domid)

    def send(self, t: int, payload: bytes, tx: int = 0, rid: int = 0) -> None:
        self.g._send(H.pack(t, rid, tx, len(payload)) + payload)

    def packet(self) -> tuple[int, int, int, bytes]:
        t, r, x, n = H.unpack(self.g._recv(16, timeout=3.0))
        return t, r, x, (self.g._recv(n, timeout=3.0) if n else b"")

    def close(self) -> None:
        self.g.close()


def socket_guest(d: Daemon, domid: int) -> Client:
    sock = d.socket + f".d/{domid}"
    for _ in range(100):
        if Path(sock).exists():
            break
        time.sleep(0.02)
    return Client(sock)


class Session:
    """Connections 0..n-1 are dom0 sockets; ``guest(i, domid)`` opens a
    guest connection as index ``i``. Every packet is recorded."""

    def __init__(self, d: Daemon, n: int, ring: bool) -> None:
        self.daemon = d
        self.ring = ring
        self.conns: dict[int, object] = {i: Client(d.socket) for i in range(n)}
        self.log: list[object] = []

    def guest(self, i: int, domid: int) -> None:
        if self.ring:
            self.conns[i] = RingEndpoint(os.path.join(os.path.dirname(self.daemon.socket), "rings"),
                                         domid)
        else:
            self.conns[i] = socket_guest(self.daemon, domid)

    def drop(self, i: int) -> None:
        """Stop using connection i (a released guest)."""
        c = self.conns.pop(i)
        try:
            c.close()  # type: ignore[attr-defined]
        except OSError:
            pass

    def close(self) -> None:
        for i in list(self.conns):
            self.drop(i)

    def step(self, i: int, t: int, payload: bytes, tx: int = 0, rid: int = 0):  # type: ignore[no-untyped-def]
        c = self.conns[i]
        c.send(t, payload, tx, rid)  # type: ignore[attr-defined]
        got: list[object] = []
        while True:
            p = c.packet()  # type: ignore[attr-defined]
            got.append(p)
            if p[0] != 15:
                break
        self.log.append((i, (t, payload[:40]), got))
        for j, o in self.conns.items():  # the events queued for the others
            if j != i and (evs := queued_events(o)):
                self.log.append((j, evs))
        return got[-1]


def run_both(pair: tuple[Daemon, Daemon], n: int, script) -> None:  # type: ignore[no-untyped-def]
    logs = []
    for d, ring in zip(pair, (False, True)):
        s = Session(d, n, ring)
        try:
            script(s)
        finally:
            s.close()
        logs.append(s.log)
    ours, ref = logs
    for k, (a, b) in enumerate(itertools.zip_longest(ours, ref)):
        assert a == b, f"step {k}: ours {a!r} != reference {b!r}"


def setup_domain(s: Session, domid: int, conn: int = 0) -> None:
    home = b"/local/domain/%d" % domid
    s.step(conn, WRITE, home + b"\0")
    s.step(conn, SET_PERMS, home + b"\0n%d\0" % domid)
    s.step(conn, INTRODUCE, b"%d\0" b"1\0" b"%d\0" % (domid, 10 + domid))


def test_guest_paths_perms(pair) -> None:  # type: ignore[no-untyped-def]
    def script(s: Session) -> None:
        s.step(1, WATCH, b"/local\0loc\0")
        s.step(0, WRITE, b"/local/domain/6/secret\0s")
        s.step(0, SET_PERMS, b"/local/domain/6/secret\0n6\0")
        s.step(0, WRITE, b"/pub\0public")
        s.step(0, SET_PERMS, b"/pub\0n0\0r5\0")
        s.step(0, WRITE, b"/wo\0")
        s.step(0, SET_PERMS, b"/wo\0n0\0w5\0")
        s.step(0, WRITE, b"/rw\0")
        s.step(0, SET_PERMS, b"/rw\0r0\0b5\0")
        setup_domain(s, 5)
        s.step(0, IS_INTRODUCED, b"5\0")
        s.guest(2, 5)
        g = 2
        s.step(g, GET_DOMAIN_PATH, b"5\0")
        s.step(g, READ, b"data/x\0")
        s.step(g, WRITE, b"data/x\0hi")
        s.step(g, READ, b"data/x\0")
        s.step(g, READ, b"/local/domain/5/data/x\0")
        s.step(g, DIR, b"data\0")
        s.step(g, DIR, b"/local/domain/5\0")
        s.step(g, GET_PERMS, b"data/x\0")
        s.step(g, GET_PERMS, b"/local/domain/5\0")
        s.step(g, MKDIR, b"data/d\0")
        s.step(g, MKDIR, b"data/d\0")
        s.step(g, RM, b"data/d\0")
        s.step(g, RM, b"data/d\0")
        s.step(g, RM, b"data/nope/deeper\0")
        # others' nodes
        s.step(g, READ, b"/local/domain/6/secret\0")
        s.step(g, WRITE, b"/local/domain/6/secret\0x")
        s.step(g, DIR, b"/local/domain/6\0")
        s.step(g, READ, b"/local/domain/6/none\0")
        s.step(g, READ, b"/local/domain/6/secret/none\0")
        s.step(g, READ, b"/nonexistent\0")
        s.step(g, READ, b"/\0")
        s.step(g, DIR, b"/\0")
        s.step(g, DIR, b"/local\0")
        s.step(g, RM, b"/local/domain/6/secret\0")
        s.step(g, RM, b"/local/domain/6/secret/none\0")
        s.step(g, GET_PERMS, b"/local/domain/6/secret\0")
        s.step(g, MKDIR, b"/local/domain/6/secret\0")
        # readable parent, no write: reading works, creating below it?
        s.step(g, READ, b"/pub\0")
        s.step(g, WRITE, b"/pub\0no")
        s.step(g, WRITE, b"/pub/child\0v")
        s.step(g, MKDIR, b"/pub/dir\0")
        s.step(g, READ, b"/pub/child\0")
        s.step(g, GET_PERMS, b"/pub/child\0")
        s.step(g, DIR, b"/pub\0")
        s.step(g, READ, b"/pub/none\0")
        s.step(g, RM, b"/pub/none\0")
        # write-only and read-write nodes
        s.step(g, WRITE, b"/wo\0w")
        s.step(g, READ, b"/wo\0")
        s.step(g, WRITE, b"/wo/kid\0k")
        s.step(g, GET_PERMS, b"/wo/kid\0")
        s.step(g, READ, b"/wo/kid\0")
        s.step(g, WRITE, b"/rw/kid\0k")
        s.step(g, GET_PERMS, b"/rw/kid\0")
        s.step(g, DIR, b"/rw\0")
        s.step(0, GET_PERMS, b"/wo/kid\0")
        # SET_PERMS as owner, non-owner; changing the owner
        s.step(g, SET_PERMS, b"data/x\0n5\0r6\0")
        s.step(g, GET_PERMS, b"data/x\0")
        s.step(g, SET_PERMS, b"data/x\0b5\0")
        s.step(g, SET_PERMS, b"data/x\0n6\0")
        s.step(g, SET_PERMS, b"data/x\0n6\0r5\0")
        s.step(g, SET_PERMS, b"/pub\0n0\0r5\0")
        s.step(g, SET_PERMS, b"/rw\0r0\0b5\0")
        s.step(g, SET_PERMS, b"/local/domain/6/secret\0n6\0")
        s.step(g, SET_PERMS, b"data/x\0n5\0r1\0r2\0")
        s.step(g, SET_PERMS, b"data/x\0n5\0r1\0r2\0r3\0")
        s.step(g, SET_PERMS, b"data/x\0x5\0")
        s.step(g, SET_PERMS, b"data/x\0")
        s.step(g, GET_PERMS, b"@releaseDomain\0")
        # privileged operations
        s.step(g, INTRODUCE, b"9\0" b"1\0" b"1\0")
        s.step(g, RELEASE, b"6\0")
        s.step(g, IS_INTRODUCED, b"5\0")
        s.step(g, GET_DOMAIN_PATH, b"7\0")
        s.step(g, 0, b"quota\0")
        s.step(g, 18, b"5\0")
        # paths
        s.step(g, READ, b"data//x\0")
        s.step(g, READ, b"data/x/\0")
        s.step(g, READ, b"@x\0")
        s.step(g, WRITE, b"a" * 2040 + b"\0v")
        s.step(g, WRITE, b"a" * 2050 + b"\0v")
        s.step(g, RM, b"a" * 2040 + b"\0")
        s.step(0, RM, b"/pub\0")
        s.step(0, RM, b"/wo\0")
        s.step(0, RM, b"/rw\0")
        s.drop(g)
        s.step(0, RELEASE, b"5\0")
        s.step(0, DIR, b"/local/domain\0")
        s.step(0, RM, b"/local\0")

    run_both(pair, 2, script)


def test_guest_watches_transactions(pair) -> None:  # type: ignore[no-untyped-def]
    def script(s: Session) -> None:
        s.step(0, WRITE, b"/secret/a\0s")
        setup_domain(s, 5)
        s.guest(2, 5)
        g = 2
        s.step(g, WATCH, b"data\0rel\0")
        s.step(g, WATCH, b"/local/domain/5/data\0abs\0")
        s.step(g, WATCH, b"/secret\0sec\0")
        s.step(g, WATCH, b"data\0rel\0")
        s.step(g, WATCH, b"/\0root\0")
        s.step(g, WATCH, b"other\0too-many\0")
        s.step(g, UNWATCH, b"/\0root\0")
        s.step(g, WATCH, b"@releaseDomain\0rel-dom\0")
        s.step(g, WATCH, b"other\0too-many\0")
        s.step(g, WRITE, b"data/a\0x")
        s.step(0, WRITE, b"/local/domain/5/data/b\0y")
        s.step(0, WRITE, b"/secret/a\0t")
        s.step(0, WRITE, b"/secret/b\0t")
        s.step(0, RM, b"/secret\0")
        s.step(g, UNWATCH, b"nope\0t\0")
        # transactions
        s.step(g, TX_START, b"\0")
        s.step(g, TX_START, b"\0")
        s.step(g, TX_START, b"\0")
        s.step(g, TX_START, b"\0")
        s.step(g, WRITE, b"data/t\0in-tx", tx=1)
        s.step(g, READ, b"data/t\0", tx=1)
        s.step(g, READ, b"data/t\0")
        s.step(g, TX_END, b"T\0", tx=1)
        s.step(g, READ, b"data/t\0")
        s.step(g, TX_END, b"F\0", tx=2)
        s.step(g, TX_START, b"\0")
        s.step(g, TX_END, b"F\0", tx=3)
        s.step(g, TX_END, b"F\0", tx=4)
        s.step(g, TX_START, b"\0")
        for k in range(14):
            r = s.step(g, WRITE, b"data/tn%d\0v" % k, tx=5)
        s.step(g, TX_END, b"T\0", tx=5)
        s.step(g, DIR, b"data\0")
        s.step(g, TX_START, b"\0")
        for k in range(14):
            r = s.step(g, READ, b"data/a\0" if k % 2 else b"data/b\0", tx=6)
        for k in range(14):
            r = s.step(g, READ, b"data/r%d\0" % k, tx=6)
        s.step(g, TX_END, b"T\0", tx=6)
        del r
        s.step(g, RESET_WATCHES, b"")
        s.step(g, WATCH, b"data\0again\0")
        s.step(g, WRITE, b"data/z\0")
        s.drop(g)
        s.step(0, RELEASE, b"5\0")
        s.step(0, RM, b"/local\0")

    run_both(pair, 2, script)


RESET_WATCHES = 21


def test_guest_quotas(pair) -> None:  # type: ignore[no-untyped-def]
    def script(s: Session) -> None:
        setup_domain(s, 5)
        s.guest(2, 5)
        g = 2
        # node size: value + perms + child names around the limit
        for n in range(260, 305):
            s.step(g, WRITE, b"big\0" + b"v" * n)
        s.step(g, SET_PERMS, b"big\0n5\0r1\0r2\0")
        for n in range(250, 290):
            s.step(g, WRITE, b"big\0" + b"v" * n)
        s.step(g, WRITE, b"big\0")
        for k in range(40):
            s.step(g, WRITE, b"big/child-with-a-longish-name-%02d\0" % k)
        s.step(g, RM, b"big\0")
        # nodes per domain
        for k in range(35):
            s.step(g, WRITE, b"n%d\0v" % k)
        s.step(g, WRITE, b"deep/a/b/c\0")
        s.step(g, MKDIR, b"n0\0")
        s.step(g, RM, b"n3\0")
        s.step(g, WRITE, b"deep/a/b/c\0")
        s.step(g, WRITE, b"deep/a\0")
        s.step(g, WRITE, b"deep2\0")
        # dom0 writing into the guest's home: dom0's node, not counted
        s.step(0, WRITE, b"/local/domain/5/by-dom0\0")
        s.step(g, GET_PERMS, b"by-dom0\0")
        s.step(0, SET_PERMS, b"/local/domain/5/by-dom0\0n5\0")
        s.step(g, WRITE, b"after-chown\0")
        s.step(g, RM, b"n4\0")
        s.step(g, RM, b"n5\0")
        s.step(g, TX_START, b"\0")
        s.step(g, WRITE, b"tx1\0", tx=1)
        s.step(g, WRITE, b"tx2\0", tx=1)
        s.step(g, WRITE, b"tx3\0", tx=1)
        s.step(g, TX_END, b"T\0", tx=1)
        s.step(g, DIR, b"/local/domain/5\0")
        s.drop(g)
        s.step(0, RELEASE, b"5\0")
        s.step(0, DIR, b"/local/domain\0")
        s.step(0, RM, b"/local\0")

    run_both(pair, 2, script)


def test_release_domain_watchers(pair) -> None:  # type: ignore[no-untyped-def]
    """Who receives @releaseDomain / @introduceDomain, and with what payload."""
    def script(s: Session) -> None:
        s.step(1, WATCH, b"@releaseDomain\0rd\0")
        s.step(1, WATCH, b"@introduceDomain\0id\0")
        s.step(1, WATCH, b"/local/domain\0ld\0")
        setup_domain(s, 5)
        setup_domain(s, 6)
        s.guest(2, 5)
        s.guest(3, 6)
        s.step(2, WATCH, b"@releaseDomain\0g-rd\0")
        s.step(2, WATCH, b"@introduceDomain\0g-id\0")
        s.step(3, WRITE, b"mine/x\0v")
        s.step(0, INTRODUCE, b"7\0" b"1\0" b"17\0")
        s.drop(3)
        s.step(0, RELEASE, b"6\0")
        s.step(0, DIR, b"/local/domain\0")
        s.step(0, SET_PERMS, b"@releaseDomain\0n0\0r5\0")
        s.step(0, SET_PERMS, b"@introduceDomain\0n0\0r5\0")
        s.step(0, GET_PERMS, b"@releaseDomain\0")
        s.step(0, INTRODUCE, b"8\0" b"1\0" b"18\0")
        s.step(0, RELEASE, b"7\0")
        s.step(0, RELEASE, b"8\0")
        s.step(0, SET_PERMS, b"@releaseDomain\0n0\0")
        s.step(0, SET_PERMS, b"@introduceDomain\0n0\0")
        s.drop(2)
        s.step(0, RELEASE, b"5\0")
        s.step(0, RELEASE, b"5\0")
        s.step(0, DIR, b"/local/domain\0")
        s.step(0, RM, b"/local\0")

    run_both(pair, 2, script)
