"""git-receive-pack over smart HTTP: push into any backend, safely.

Unlike dulwich's receive-pack (which ignores a failed ``set_if_equals`` and
reports success: a lost update), every ref update here goes through the
backend's compare-and-set with the old id the client sent as the
expectation; a failed swap is reported as ``ng <ref> failed to update`` so git
prints ``! [remote rejected]``. Every object of the pack is re-hashed and
parsed (thin-pack bases come from the store), and a ref is moved only when
its new commit, and everything the pack's objects point to, is present.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from dulwich._pack import apply_delta

from irmin.backends.base import RefUpdate, check_ref_name
from irmin.errors import IrminError, MalformedObject
from irmin.objects import MODE_GITLINK
from irmin.repo import Repo

from .pack_writer import OFS_DELTA, REF_DELTA
from .pktline import FLUSH, FLUSH_PKT, ProtocolError, pkt, sideband, split_at_flush

log = logging.getLogger("irmin.server.git")

TYPE_NAMES = {1: b"commit", 2: b"tree", 3: b"blob", 4: b"tag"}
ZERO_ID = b"\0" * 20


class PackError(ValueError):
    """The pack could not be read (truncated, corrupt, unresolvable)."""


@dataclass
class Command:
    old: bytes | None
    new: bytes | None
    ref: str
    error: str | None = None


# -- pack reading ------------------------------------------------------------------------


def _inflate(buf: memoryview, pos: int, size: int) -> tuple[bytes, int]:
    """Decompress one zlib stream at ``pos`` whose output is ``size`` bytes."""
    d = zlib.decompressobj()
    out: list[bytes] = []
    step = size + 64
    p = pos
    n = len(buf)
    while not d.eof:
        if p >= n:
            raise PackError("pack truncated inside an object")
        chunk = buf[p : p + step]
        out.append(d.decompress(chunk))
        p += len(chunk)
        step *= 2
    used = p - len(d.unused_data)
    data = b"".join(out)
    if len(data) != size:
        raise PackError("object size does not match its pack header")
    return data, used


def read_pack(repo: Repo, data: bytes) -> dict[bytes, bytes]:
    """The objects of a (possibly thin) pack: ``{id: canonical bytes}``, each
    re-hashed from its resolved contents."""
    import hashlib

    if len(data) < 32 or data[:4] != b"PACK":
        raise PackError("not a pack")
    version, count = int.from_bytes(data[4:8], "big"), int.from_bytes(data[8:12], "big")
    if version not in (2, 3):
        raise PackError(f"pack version {version} is not supported")
    if hashlib.sha1(data[:-20]).digest() != data[-20:]:
        raise PackError("pack checksum mismatch")
    buf = memoryview(data)[:-20]
    pos = 12
    # offset -> (type num, payload, base offset or base id)
    raw: dict[int, tuple[int, bytes, int | bytes | None]] = {}
    order: list[int] = []
    for _ in range(count):
        start = pos
        if pos >= len(buf):
            raise PackError("pack truncated")
        c = buf[pos]
        pos += 1
        type_num = (c >> 4) & 7
        size = c & 0x0F
        shift = 4
        while c & 0x80:
            if pos >= len(buf):
                raise PackError("pack truncated")
            c = buf[pos]
            pos += 1
            size |= (c & 0x7F) << shift
            shift += 7
        base: int | bytes | None = None
        if type_num == OFS_DELTA:
            c = buf[pos]
            pos += 1
            off = c & 0x7F
            while c & 0x80:
                c = buf[pos]
                pos += 1
                off = ((off + 1) << 7) | (c & 0x7F)
            base = start - off
            if base < 12 or base not in raw:
                raise PackError("delta base offset outside the pack")
        elif type_num == REF_DELTA:
            base = bytes(buf[pos : pos + 20])
            pos += 20
        elif type_num not in TYPE_NAMES:
            raise PackError(f"bad object type {type_num} in pack")
        payload, pos = _inflate(buf, pos, size)
        raw[start] = (type_num, payload, base)
        order.append(start)
    if pos != len(buf):
        raise PackError("trailing bytes after the pack's objects")

    fmt = repo.fmt
    resolved: dict[int, tuple[bytes, bytes]] = {}  # offset -> (kind, body)
    by_id: dict[bytes, bytes] = {}
    id_at: dict[bytes, int] = {}

    def finish(off: int, kind: bytes, body: bytes) -> None:
        resolved[off] = (kind, body)
        oid, canonical = fmt.canonical(kind, body)
        by_id[oid] = canonical
        id_at[oid] = off

    pending = list(order)
    while pending:
        progress = False
        left: list[int] = []
        for off in pending:
            chain = [off]
            base_kb: tuple[bytes, bytes] | None = None
            while True:
                t, payload, b = raw[chain[-1]]
                if t in TYPE_NAMES:
                    base_kb = (TYPE_NAMES[t], payload)
                    chain.pop()
                    break
                if isinstance(b, int):
                    if b in resolved:
                        base_kb = resolved[b]
                        break
                    chain.append(b)
                    continue
                assert isinstance(b, bytes)
                if b in id_at:
                    base_kb = resolved[id_at[b]]
                    break
                stored = repo.backend.get(b)
                if stored is not None:
                    base_kb = fmt.split(stored)
                    break
                base_kb = None
                break
            if base_kb is None:
                left.append(off)
                continue
            kind, body = base_kb
            if off not in resolved and not chain:
                finish(off, kind, body)
            for link in reversed(chain):
                if link in resolved:
                    kind, body = resolved[link]
                    continue
                try:
                    body = b"".join(apply_delta(body, raw[link][1]))
                except Exception as e:
                    raise PackError(f"bad delta in pack: {e}") from e
                finish(link, kind, body)
            progress = True
        if not progress:
            raise PackError(f"{len(left)} deltas in the pack have no base")
        pending = left
    return by_id


# -- the push ------------------------------------------------------------------------------


def _parse_commands(repo: Repo, body: bytes) -> tuple[list[Command], set[str], bytes]:
    packets, end = split_at_flush(body)
    commands: list[Command] = []
    caps: set[str] = set()
    for i, p in enumerate(packets):
        if p == FLUSH_PKT:
            break
        assert isinstance(p, bytes)
        if i == 0 and b"\0" in p:
            p, _, capline = p.partition(b"\0")
            caps = set(capline.decode("ascii", "replace").split())
        parts = p.rstrip(b"\n").split(b" ")
        if len(parts) != 3:
            raise ProtocolError(f"bad push command {p[:80]!r}")
        try:
            old, new = (repo.fmt.parse_id(x) for x in parts[:2])
        except ValueError:
            raise ProtocolError(f"bad object id in push command {p[:80]!r}") from None
        ref = parts[2].decode("utf-8", "replace")
        cmd = Command(None if old == ZERO_ID else old, None if new == ZERO_ID else new, ref)
        try:
            check_ref_name(ref)
            if not ref.startswith(("refs/heads/", "refs/tags/")):
                raise ValueError("only refs/heads/ and refs/tags/ may be pushed")
        except ValueError as e:
            cmd.error = f"funny refname ({e})"
        commands.append(cmd)
    return commands, caps, body[end:]


def _check_connected(repo: Repo, objects: dict[bytes, bytes], commands: list[Command]) -> str | None:
    """Everything the new objects and refs point at exists; else why not."""
    fmt = repo.fmt
    has = repo.backend.has
    known: set[bytes] = set()

    def present(oid: bytes) -> bool:
        if oid in objects or oid in known:
            return True
        if has(oid):
            known.add(oid)
            return True
        return False

    for oid, raw in objects.items():
        kind, body = fmt.split(raw)
        if kind == b"commit":
            c = fmt.parse_commit(body)
            for ref in (c.tree, *c.parents):
                if not present(ref):
                    return f"missing necessary objects ({ref.hex()} for commit {oid.hex()})"
        elif kind == b"tree":
            for mode, _name, ref in fmt.parse_tree(body):
                if mode != MODE_GITLINK and not present(ref):
                    return f"missing necessary objects ({ref.hex()} in tree {oid.hex()})"
    for cmd in commands:
        if cmd.new is not None and cmd.error is None:
            if not present(cmd.new):
                cmd.error = "missing necessary objects"
            elif cmd.ref.startswith("refs/heads/"):
                raw = objects.get(cmd.new) or repo.backend.get(cmd.new) or b""
                if not raw.startswith(b"commit "):
                    cmd.error = "not a commit"
    return None


def handle(repo: Repo, body: bytes) -> Iterator[bytes]:
    """Apply one push; yields the report-status response."""
    commands, caps, pack = _parse_commands(repo, body)
    use_sideband = "side-band-64k" in caps
    atomic = "atomic" in caps
    unpack_status = "ok"
    objects: dict[bytes, bytes] = {}
    try:
        if pack:
            objects = read_pack(repo, pack)
            for oid, raw in objects.items():  # parse what git fsck would
                repo.fmt.check(oid, raw)
        problem = _check_connected(repo, objects, commands)
        if problem is not None:
            unpack_status = problem
    except (PackError, MalformedObject) as e:
        unpack_status = f"error {e}"
    if unpack_status != "ok":
        for cmd in commands:
            cmd.error = cmd.error or "unpacker error"
    else:
        _apply(repo, objects, commands, atomic)
    lines = [pkt(f"unpack {unpack_status}\n")]
    for cmd in commands:
        if cmd.error is None:
            lines.append(pkt(f"ok {cmd.ref}\n"))
        else:
            lines.append(pkt(f"ng {cmd.ref} {cmd.error}\n"))
    lines.append(FLUSH)
    report = b"".join(lines)
    log.info("receive-pack: %d objects; %s", len(objects),
             ", ".join(f"{c.ref} {'ok' if c.error is None else c.error}" for c in commands))
    if use_sideband:
        yield b"".join(sideband(1, report)) + FLUSH
    else:
        yield report


def _apply(repo: Repo, objects: dict[bytes, bytes], commands: list[Command], atomic: bool) -> None:
    items = list(objects.items())
    good = [c for c in commands if c.error is None]
    if atomic:
        if len(good) != len(commands):
            for c in commands:
                c.error = c.error or "atomic push failure"
            return
        updates = [RefUpdate(c.ref, c.old, c.new) for c in good]
        try:
            ok = repo.backend.apply(items, updates)
        except IrminError as e:
            ok = False
            log.warning("push failed: %s", e)
        if not ok:
            for c in good:
                c.error = "failed to update (atomic push: a ref moved meanwhile)"
        return
    repo.backend.apply(items)
    for c in good:
        try:
            ok = repo.backend.apply((), (RefUpdate(c.ref, c.old, c.new),))
        except IrminError as e:
            log.warning("push of %s failed: %s", c.ref, e)
            ok = False
        if not ok:
            c.error = "failed to update (the ref moved meanwhile; fetch and try again)"
