"""Fuzz: random and mutated packets from many connections at once; the
server stays up, answers or drops each bad connection, and well-behaved
clients keep getting correct answers throughout."""

from __future__ import annotations

import random
import socket
import struct
import threading
from pathlib import Path

import pytest
from xsutil import Client, start_ours

H = struct.Struct("<IIII")

SEEDS = [
    (2, b"/fz/a\0"), (11, b"/fz/a\0value"), (1, b"/fz\0"), (12, b"/fz/b\0"), (13, b"/fz/b\0"),
    (3, b"/fz/a\0"), (14, b"/fz/a\0b0\0r1\0"), (4, b"/fz\0tok\0"), (5, b"/fz\0tok\0"),
    (6, b"\0"), (7, b"T\0"), (8, b"9\0" b"1\0" b"1\0"), (9, b"9\0"), (10, b"3\0"),
    (17, b"3\0"), (22, b"/fz\0" b"0\0"), (0, b"help\0"), (21, b""), (19, b"9\0" b"3\0"),
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        k = rng.randrange(5)
        if k == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif k == 1:
            b.insert(rng.randrange(len(b) + 1), rng.choice(b"\0/@.a"))
        elif k == 2 and b:
            del b[rng.randrange(len(b))]
        elif k == 3:
            b += bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
        else:
            b = b[: rng.randrange(len(b) + 1)]
    return bytes(b)


def packet(rng: random.Random) -> bytes:
    k = rng.randrange(10)
    t, p = rng.choice(SEEDS)
    if k < 5:
        p = mutate(rng, p)
        return H.pack(rng.choice([t, t, rng.randrange(30)]), rng.randrange(2**32),
                      rng.choice([0, 0, 1, 2, rng.randrange(2**32)]), len(p)) + p
    if k < 7:  # lying length, short header, oversize
        p = mutate(rng, p)
        n = rng.choice([len(p) + 5, 4097, 2**32 - 1, len(p)])
        return (H.pack(t, 0, 0, n) + p)[: rng.choice([3, 16, 100, 10000])]
    if k < 9:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    return H.pack(t, 1, 0, len(p)) + p


def abuser(path: str, seed: int, rounds: int) -> None:
    rng = random.Random(seed)
    for _ in range(rounds):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(0.2)
        try:
            s.connect(path)
            for _ in range(rng.randrange(1, 30)):
                s.sendall(packet(rng))
                if rng.random() < 0.3:
                    try:
                        s.recv(65536)
                    except (socket.timeout, OSError):
                        pass
        except OSError:
            pass
        finally:
            s.close()


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzz_many_connections(tmp_path: Path, seed: int) -> None:
    d = start_ours(tmp_path)
    good = Client(d.socket)
    good.req(4, b"/good\0w\0")
    threads = [threading.Thread(target=abuser, args=(d.socket, seed * 100 + i, 30)) for i in range(8)]
    for t in threads:
        t.start()
    i = 0
    while any(t.is_alive() for t in threads):
        assert good.write(f"/good/k{i % 50}", b"%d" % i) == b"OK\0"
        assert good.read(f"/good/k{i % 50}") == (2, b"%d" % i)
        tx = good.start()
        good.write("/good/tx", b"%d" % i, tx=tx)
        assert good.end(tx) == b"OK\0"
        i += 1
    for t in threads:
        t.join()
    assert i > 0
    assert d.alive()
    other = Client(d.socket)
    assert other.read("/good/tx") == (2, b"%d" % (i - 1))
    assert other.req(1, b"/good\0")[3].count(b"\0") == min(i, 50) + 1
    assert other.req(0, b"check\0")[3] == b"OK\0"
    other.close()
    good.close()
    assert d.stop() == 0
