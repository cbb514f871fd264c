"""Crash tests: a writer process killed with SIGKILL at random instants.

For each kill a real writer process (``tests/crash_writer.py``) opens the
store and commits in a loop, printing each commit id only after the library
call returned (= acknowledged). The test kills it with SIGKILL after a random
delay (sometimes before it even finished opening the store), then, in this
process: the store opens, ``fsck`` is clean, every commit acknowledged so far
is stored, and the branch head is the last acknowledged commit or at most one
newer (committed, killed before it could print).

Default: ``KILLS`` kills per backend (LMDB and block, both durable), 240 in
all. Soak: ``IRMIN_SOAK_KILLS=5000 pytest -m slow tests/test_crash_kill9.py``
(see docs/crash-safety.md). The store is re-created every ``CYCLE`` kills so
that the per-kill fsck stays cheap while histories still reach thousands of
commits.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import irmin
from irmin.fsck import fsck
from irmin.gc import gc

WRITER = str(Path(__file__).with_name("crash_writer.py"))
KILLS = 120  # per backend in the default suite
CYCLE = 20  # kills per store before starting a fresh one
MAX_DELAY = 0.25  # seconds of writing before the kill

URIS = {
    "lmdb": lambda d: f"lmdb:{d / 'store.lmdb'}",
    "block": lambda d: f"block:{d / 'store.img'}",
}


def _prepare(backend: str, d: Path) -> str:
    uri = URIS[backend](d)
    if backend == "block":
        irmin.open(uri + "?create=1&size=256M").close()
    return uri


def _kill_round(uri: str, rng: random.Random) -> list[str]:
    """Start a writer, kill it at a random instant; the ids it acknowledged."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, WRITER, uri], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    try:
        if rng.random() < 0.1:
            time.sleep(rng.uniform(0.0, 0.25))  # may land while it opens the store
        else:
            line = p.stdout.readline()  # type: ignore[union-attr]
            assert line == b"ready\n", (line, p.stderr.read())  # type: ignore[union-attr]
            time.sleep(rng.uniform(0.0, MAX_DELAY))
        p.send_signal(signal.SIGKILL)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == -signal.SIGKILL, (p.returncode, err.decode()[-2000:])
    # A line reaches the pipe in one write() (< PIPE_BUF): whole or absent.
    return [ln for ln in out.decode().split("\n")[:-1] if ln and ln != "ready"]


def _open_for_check(uri: str) -> irmin.Repo:
    if uri.startswith("block:"):
        # Buffered reads: fsck reads every object, one pread each, and with
        # O_DIRECT each is a device round trip (~10x slower here). The bytes
        # are the same: SIGKILL does not drop the page cache, and O_DIRECT
        # writes invalidate it.
        from irmin.backends.block import BlockBackend
        from irmin.backends.block_device import FileDevice

        path = uri[len("block:"):]
        return irmin.Repo(BlockBackend(FileDevice(path, direct=False), uri))
    return irmin.open(uri)


def _check(uri: str, acked: list[str]) -> int:
    """Open the store after a kill and check it; objects checked."""
    repo = _open_for_check(uri)
    try:
        report = fsck(repo, dangling=False, progress=False)
        assert report.clean, report.summary() + "\n" + "\n".join(
            map(str, (report.missing + report.corrupt)[:20]))
        backend = repo.backend
        missing = [c for c in acked if not backend.has(bytes.fromhex(c))]
        assert not missing, f"{len(missing)} acknowledged commits lost, e.g. {missing[:3]}"
        head = repo.head_id("main")
        if not acked:
            return 0
        last = bytes.fromhex(acked[-1])
        assert head is not None, "branch main lost"
        # Each kill may leave one commit that landed after its last print, so
        # the head is the last acknowledged commit or a descendant of it by
        # unacknowledged commits only (at most one per kill since then).
        c, steps = head, 0
        while c != last:
            assert c.hex() not in acked, (
                f"head {head.hex()} went back to an older acknowledged commit {c.hex()}")
            parents = repo.commit(c).parent_ids
            assert parents and steps < CYCLE, (
                f"head {head.hex()} does not descend from the last acknowledged "
                f"commit {acked[-1]}")
            c, steps = parents[0], steps + 1
        return report.checked
    finally:
        repo.close()


def _crash_loop(backend: str, tmp_path: Path, kills: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    t0 = time.monotonic()
    commits = 0
    uri = ""
    acked: list[str] = []
    for k in range(kills):
        if k % CYCLE == 0:
            d = tmp_path / f"cycle{k // CYCLE}"
            d.mkdir()
            uri = _prepare(backend, d)
            acked = []
        new = _kill_round(uri, rng)
        acked += new
        commits += len(new)
        _check(uri, acked)
    return {"kills": kills, "commits": commits, "seconds": time.monotonic() - t0}


@pytest.mark.parametrize("backend", sorted(URIS))
def test_sigkill_writer(backend: str, tmp_path: Path) -> None:
    result = _crash_loop(backend, tmp_path, KILLS, seed={"lmdb": 1, "block": 2}[backend])
    print(f"\n{backend}: {result}")
    assert result["commits"] > KILLS  # the kills did land while it was writing


@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(URIS))
def test_sigkill_writer_soak(backend: str, tmp_path: Path) -> None:
    kills = int(os.environ.get("IRMIN_SOAK_KILLS", "2000"))
    result = _crash_loop(backend, tmp_path, kills, seed=int(time.time()))
    print(f"\n{backend} soak: {result}")


@pytest.mark.parametrize("backend", sorted(URIS))
def test_sigkill_during_gc(backend: str, tmp_path: Path) -> None:
    """A gc process killed at random instants never damages the store."""
    uri = _prepare(backend, tmp_path)
    repo = irmin.open(uri)
    main = repo.main()
    for i in range(300):
        main.set(f"k{i % 40}", b"v%d" % i)
    keep = [c.id for c in main.history()]
    repo.close()
    rng = random.Random(7)
    script = ("import sys, irmin; from irmin.gc import gc; r = irmin.open(sys.argv[1]); "
              "print('ready', flush=True); gc(r, keep_last=int(sys.argv[2]))")
    window = 300
    for _ in range(10):
        window -= 20
        p = subprocess.Popen([sys.executable, "-c", script, uri, str(window)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.stdout.readline() == b"ready\n"  # type: ignore[union-attr]
        time.sleep(rng.uniform(0.0, 0.05))
        p.kill()
        p.communicate()
        repo = irmin.open(uri)
        try:
            report = fsck(repo, dangling=False, progress=False)
            assert report.clean, report.summary()
            assert repo.head_id("main") == bytes.fromhex(keep[0])
        finally:
            repo.close()
    repo = irmin.open(uri)
    try:
        stats = gc(repo, keep_last=10, progress=False)
        assert stats.kept_commits == 10
        report = fsck(repo, progress=False)
        assert report.clean and not report.dangling, report.summary()
        assert [c.id for c in repo.main().history(depth=10)] == keep[:10]
    finally:
        repo.close()
