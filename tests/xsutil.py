"""Helpers for the xenstored tests: start our daemon and the reference
daemons as subprocesses, and a raw wire client."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

XSREF = Path(__file__).resolve().parents[2] / "shared/tools/xsref"
XEN_BIN = Path("/usr/lib/xen-4.17/bin")
TEST_XENSTORE = str(XEN_BIN / "test-xenstore")
H = struct.Struct("<IIII")
_started: list["Daemon"] = []


@atexit.register
def _stop_leftovers() -> None:
    """Daemons a failed test did not stop: stop them at exit."""
    for d in _started:
        if d.alive():
            d.stop()


class Daemon:
    def __init__(self, proc: subprocess.Popen | None, socket_path: str, pid: int | None = None,
                 log: Path | None = None) -> None:
        self.proc = proc
        self.socket = socket_path
        self.pid = pid if pid is not None else proc.pid  # type: ignore[union-attr]
        self.log = log

    @property
    def env(self) -> dict[str, str]:
        e = dict(os.environ)
        e["XENSTORED_PATH"] = self.socket
        return e

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        try:
            os.kill(self.pid, 0)
            return True
        except OSError:
            return False

    def stop(self) -> int | None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            return self.proc.returncode
        try:
            os.kill(self.pid, signal.SIGTERM)
        except OSError:
            pass
        for _ in range(100):
            if not self.alive():
                break
            time.sleep(0.05)
        return None


def start_ours(tmp: Path, store: str = "memory:", *args: str, name: str = "ours") -> Daemon:
    d = tmp / name
    d.mkdir(parents=True, exist_ok=True)
    sock = str(d / "socket")
    log = d / "daemon.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "irmin.server.xenstore", "--socket", sock, "--store", store, *args],
        stdout=subprocess.PIPE, stderr=open(log, "wb"), text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"xenstored did not start: {line!r} {log.read_text()}")
    d = Daemon(proc, sock, log=log)
    _started.append(d)
    return d


def start_reference(tmp: Path, ocaml: bool = False, *args: str,
                    daemon_args: tuple[str, ...] = ()) -> Daemon:
    d = tmp / ("oref" if ocaml else "ref")
    cmd = [str(XSREF / "start-reference-xenstored.sh")]
    if ocaml:
        cmd.append("--oxenstored")
    cmd += [*args, str(d)]
    if daemon_args:
        cmd += ["--", *daemon_args]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()
    daemon = Daemon(None, str(d / "socket"), pid=int(out[-1]), log=d / "daemon.log")
    _started.append(daemon)
    return daemon


def queued_events(conn: Any) -> list[tuple[int, int, int, bytes]]:
    """The watch events queued on ``conn`` (a :class:`Client` or a ring
    guest): the reply to a GET_DOMAIN_PATH comes after every event queued
    before it, so ask for one and keep what arrives first."""
    conn.send(10, b"0\0", 0, 0xFFFF)
    events = []
    while True:
        p = conn.packet()
        if p[0] != 15:
            return events
        events.append(p)


class Client:
    """A raw Xenstore connection: send packets, read replies and events."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(timeout)
        for _ in range(200):  # the reference daemons listen(..., 1)
            try:
                self.s.connect(path)
                break
            except BlockingIOError:
                time.sleep(0.005)
        else:
            raise ConnectionError(f"cannot connect to {path}")
        self.events: list[tuple[bytes, bytes]] = []

    def close(self) -> None:
        self.s.close()

    def send(self, t: int, payload: bytes, tx: int = 0, rid: int = 0) -> None:
        self.s.sendall(H.pack(t, rid, tx, len(payload)) + payload)

    def _exact(self, n: int) -> bytes:
        b = b""
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c:
                raise EOFError
            b += c
        return b

    def packet(self) -> tuple[int, int, int, bytes]:
        t, r, x, n = H.unpack(self._exact(16))
        return t, r, x, self._exact(n)

    def reply(self) -> tuple[int, int, int, bytes]:
        """The next reply; watch events met on the way go to ``events``."""
        while True:
            p = self.packet()
            if p[0] == 15:
                a, b, _ = p[3].split(b"\0")
                self.events.append((a, b))
                continue
            return p

    def req(self, t: int, payload: bytes, tx: int = 0, rid: int = 0) -> tuple[int, int, int, bytes]:
        self.send(t, payload, tx, rid)
        return self.reply()

    def all_packets(self, wait: float = 0.05) -> list[tuple[int, int, int, bytes]]:
        """Everything that arrives until the line is quiet for ``wait``."""
        out = []
        old = self.s.gettimeout()
        self.s.settimeout(wait)
        try:
            while True:
                out.append(self.packet())
        except (socket.timeout, EOFError):
            pass
        finally:
            self.s.settimeout(old)
        return out

    # conveniences
    def write(self, path: str, value: bytes, tx: int = 0) -> bytes:
        return self.req(11, path.encode() + b"\0" + value, tx)[3]

    def read(self, path: str, tx: int = 0) -> tuple[int, bytes]:
        t, _, _, p = self.req(2, path.encode() + b"\0", tx)
        return t, p

    def start(self) -> int:
        return int(self.req(6, b"\0")[3].rstrip(b"\0"))

    def end(self, tx: int, commit: bool = True) -> bytes:
        return self.req(7, b"T\0" if commit else b"F\0", tx)[3]
