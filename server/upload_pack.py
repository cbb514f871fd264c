"""git-upload-pack over smart HTTP (stateless RPC), protocol v0 and v2.

Pure request → response-chunks functions (no sockets): :mod:`git_http`
feeds them the request body and streams what they yield. Supports
``multi_ack_detailed`` negotiation, ``side-band-64k`` progress,
``ofs-delta`` and thin packs, shallow clones (``deepen``), partial clones
(``filter blob:none``, with later fetches of single blobs allowed: any
object the store holds may be wanted), and ``include-tag``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from irmin.repo import Repo

from . import git_objects
from .pack_writer import PackStats, write_pack
from .pktline import DELIM, DELIM_PKT, END_PKT, FLUSH, FLUSH_PKT, ProtocolError, parse, pkt, sideband

log = logging.getLogger("irmin.server.git")

AGENT = "agent=irmin/0.1"
ZERO = b"0" * 40
V0_CAPS = (
    "multi_ack_detailed side-band-64k thin-pack ofs-delta shallow deepen-since "
    "no-progress include-tag allow-tip-sha1-in-want allow-reachable-sha1-in-want filter "
    "object-format=sha1 " + AGENT
)
RECEIVE_CAPS = "report-status delete-refs side-band-64k quiet atomic ofs-delta object-format=sha1 " + AGENT


def refs_of(repo: Repo) -> tuple[list[tuple[str, bytes]], str | None]:
    """``[(name, id)]`` sorted, HEAD first when it resolves, and HEAD's target."""
    refs = sorted(repo.backend.list_refs("refs/").items())
    names = dict(refs)
    target = None
    for candidate in ("refs/heads/main", "refs/heads/master"):
        if candidate in names:
            target = candidate
            break
    if target is None:
        target = next((n for n, _ in refs if n.startswith("refs/heads/")), None)
    out: list[tuple[str, bytes]] = []
    if target is not None:
        out.append(("HEAD", names[target]))
    out.extend(refs)
    return out, target


def _peeled(repo: Repo, oid: bytes) -> bytes | None:
    raw = repo.backend.get(oid)
    if raw is None or not raw.startswith(b"tag "):
        return None
    target = git_objects.tag_target(repo, oid)
    for _ in range(16):
        raw = repo.backend.get(target)
        if raw is None or not raw.startswith(b"tag "):
            return target
        target = git_objects.tag_target(repo, target)
    return target


def advertise(repo: Repo, service: str, *, caps: str | None = None) -> bytes:
    """The v0 ref advertisement (``info/refs``) for upload- or receive-pack."""
    out = [pkt(f"# service={service}\n"), FLUSH]
    refs, head = refs_of(repo)
    if service == "git-receive-pack":
        refs = [(n, o) for n, o in refs if n != "HEAD"]
        capline = caps or RECEIVE_CAPS
    else:
        capline = caps or V0_CAPS
        if head:
            capline += f" symref=HEAD:{head}"
    if not refs:
        out.append(pkt(b"%s capabilities^{}\0%s\n" % (ZERO, capline.encode())))
    for i, (name, oid) in enumerate(refs):
        line = b"%s %s" % (oid.hex().encode(), name.encode())
        if i == 0:
            line += b"\0" + capline.encode()
        out.append(pkt(line + b"\n"))
        if service == "git-upload-pack" and name != "HEAD":
            peeled = _peeled(repo, oid)
            if peeled is not None:
                out.append(pkt(b"%s %s^{}\n" % (peeled.hex().encode(), name.encode())))
    out.append(FLUSH)
    return b"".join(out)


def advertise_v2() -> bytes:
    """The protocol v2 capability advertisement."""
    lines = ["version 2", AGENT.replace("agent=", "agent="), "ls-refs=unborn",
             "fetch=shallow filter", "server-option", "object-format=sha1"]
    return b"".join(pkt(line + "\n") for line in lines) + FLUSH


# -- request parsing ---------------------------------------------------------------------


@dataclass
class FetchRequest:
    wants: list[bytes] = field(default_factory=list)
    haves: list[bytes] = field(default_factory=list)
    shallow: list[bytes] = field(default_factory=list)
    depth: int | None = None
    filter: git_objects.Filter | None = None
    caps: set[str] = field(default_factory=set)
    done: bool = False
    thin: bool = False
    ofs: bool = False
    sideband: bool = False
    progress: bool = True
    include_tag: bool = False


def _oid(repo: Repo, text: bytes) -> bytes:
    try:
        return repo.fmt.parse_id(text.strip())
    except ValueError:
        raise ProtocolError(f"bad object id {text[:50]!r}") from None


def _arg(req: FetchRequest, repo: Repo, line: bytes) -> bool:
    """Apply one want/have/shallow/deepen/filter line; False if unknown."""
    line = line.rstrip(b"\n")
    key, _, value = line.partition(b" ")
    if key == b"want":
        req.wants.append(_oid(repo, value[:40]))
    elif key == b"have":
        req.haves.append(_oid(repo, value))
    elif key == b"shallow":
        req.shallow.append(_oid(repo, value))
    elif key == b"deepen":
        if not value.isdigit() or int(value) < 1:
            raise ProtocolError(f"bad deepen {value!r}")
        req.depth = int(value)
    elif key == b"filter":
        try:
            req.filter = git_objects.Filter.parse(value.decode())
        except ValueError as e:
            raise ProtocolError(str(e)) from None
    elif key == b"done":
        req.done = True
    else:
        return False
    return True


def _common(repo: Repo, haves: list[bytes]) -> list[bytes]:
    has = repo.backend.has
    return [h for h in haves if has(h)]


# -- protocol v0 -------------------------------------------------------------------------


def handle_v0(repo: Repo, body: bytes) -> Iterator[bytes]:
    """One stateless-RPC round of v0 upload-pack."""
    req = FetchRequest()
    it = parse(body)
    first = True
    for p in it:
        if p == FLUSH_PKT:
            break
        if not isinstance(p, bytes):
            raise ProtocolError("unexpected packet in wants")
        if first and b"\0" not in p and p.startswith(b"want "):
            parts = p.rstrip(b"\n").split(b" ")
            req.caps = {c.decode() for c in parts[2:]}
        elif first:
            raise ProtocolError("first line is not a want")
        first = False
        if not _arg(req, repo, p):
            raise ProtocolError(f"unexpected line {p[:40]!r}")
    caps = req.caps
    req.thin = "thin-pack" in caps
    req.sideband = "side-band-64k" in caps or "side-band" in caps
    req.progress = "no-progress" not in caps
    req.include_tag = "include-tag" in caps
    if not req.wants:
        return
    rest = list(it)
    for p in rest:
        if isinstance(p, bytes):
            if not _arg(req, repo, p):
                raise ProtocolError(f"unexpected line {p[:40]!r}")
    _check_wants(repo, req)
    plan = None
    if req.depth is not None or req.shallow:
        plan = _plan(repo, req, [])
        if req.depth is not None:
            yield b"".join(pkt(b"shallow %s\n" % c.hex().encode()) for c in plan.shallow)
            yield b"".join(pkt(b"unshallow %s\n" % c.hex().encode()) for c in plan.unshallow)
            yield FLUSH
    if not rest:  # the first request of a deepen: only the shallow list
        return
    common = _common(repo, req.haves)
    if not req.done:
        lines = [pkt(b"ACK %s common\n" % c.hex().encode()) for c in common]
        if common:
            lines.append(pkt(b"ACK %s ready\n" % common[-1].hex().encode()))
        lines.append(pkt(b"NAK\n"))
        yield b"".join(lines)
        return
    yield pkt(b"ACK %s\n" % common[-1].hex().encode()) if common else pkt(b"NAK\n")
    yield from _send_pack(repo, req, common)


def _check_wants(repo: Repo, req: FetchRequest) -> None:
    for w in req.wants:
        if not repo.backend.has(w):
            raise git_objects.WantError(f"upload-pack: not our ref {w.hex()}")


def _plan(repo: Repo, req: FetchRequest, common: list[bytes]) -> git_objects.Plan:
    return git_objects.plan(
        repo, req.wants, common, client_shallow=req.shallow, depth=req.depth,
        filter=req.filter, thin=req.thin,
    )


class PackCache:
    """Packs of recent full clones (no haves, not shallow), by what was asked.

    Ids are content addresses, so the same wants always make the same pack:
    a repeated clone of an unchanged store streams the stored bytes instead
    of walking and deltifying again (git gets the same effect by reusing
    the deltas of its on-disk packs). Bounded in total bytes."""

    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._packs: dict[tuple[object, ...], tuple[list[bytes], int, int, int]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...]) -> tuple[list[bytes], int, int, int] | None:
        with self._lock:
            return self._packs.get(key)

    def put(self, key: tuple[object, ...], chunks: list[bytes], n: int, deltas: int) -> None:
        size = sum(len(c) for c in chunks)
        if size > self.max_bytes // 2:
            return
        with self._lock:
            self._packs[key] = (chunks, n, deltas, size)
            while sum(v[3] for v in self._packs.values()) > self.max_bytes:
                self._packs.pop(next(iter(self._packs)))



def _cache_key(repo: Repo, req: FetchRequest, common: list[bytes]) -> tuple[object, ...] | None:
    if common or req.shallow or req.depth is not None:
        return None
    f = req.filter.blob_limit if req.filter is not None else None
    tags = tuple(sorted(repo.backend.list_refs("refs/tags/").items())) if req.include_tag else ()
    return (tuple(sorted(set(req.wants))), f, tags)


def _send_pack(repo: Repo, req: FetchRequest, common: list[bytes],
               plan: git_objects.Plan | None = None) -> Iterator[bytes]:
    t0 = time.monotonic()
    key = _cache_key(repo, req, common)
    cache = getattr(repo, "_irmin_pack_cache", None)
    if cache is None:
        cache = repo._irmin_pack_cache = PackCache()  # type: ignore[attr-defined]
    hit = cache.get(key) if key is not None else None
    if hit is not None:
        chunks, n, deltas, size = hit
        yield from _stream_chunks(req, iter(chunks), n, lambda: (deltas, size))
        log.info("upload-pack: %d objects (%d deltas), %d bytes from the pack cache in %.2fs",
                 n, deltas, size, time.monotonic() - t0)
        return
    if plan is None:
        plan = _plan(repo, req, common)
    t_plan = time.monotonic() - t0
    cpu0 = time.process_time()
    if req.include_tag:
        _add_tags(repo, plan)
    n = len(plan.entries)
    stats = PackStats()
    has = plan.client_has.__contains__
    kept: list[bytes] = []

    def pack() -> Iterator[bytes]:
        for chunk in write_pack(plan.entries, repo.read_object, has, stats=stats, raw=plan.raw,
                                read_many=repo.backend.get_many, read_raw=repo.read_raw):
            if key is not None:
                kept.append(chunk)
            yield chunk

    yield from _stream_chunks(req, pack(), n, lambda: (stats.deltas, stats.bytes))
    if key is not None:
        cache.put(key, kept, n, stats.deltas)
    log.info("upload-pack: %d objects (%d deltas), %d bytes in %.2fs (plan %.2fs; process CPU"
             " while writing %.2fs)", n, stats.deltas, stats.bytes, time.monotonic() - t0, t_plan,
             time.process_time() - cpu0)


def _stream_chunks(req: FetchRequest, chunks: Iterator[bytes], n: int,
                   totals: object) -> Iterator[bytes]:
    def progress(msg: str) -> bytes:
        return b"".join(sideband(2, msg.encode())) if req.sideband and req.progress else b""

    yield progress(f"Enumerating objects: {n}, done.\n")
    if req.sideband:
        for chunk in chunks:
            yield b"".join(sideband(1, chunk))
        deltas, size = totals()  # type: ignore[operator]
        yield progress(f"Total {n} (delta {deltas}), {size} bytes\n")
        yield FLUSH
    else:
        yield from chunks


def _add_tags(repo: Repo, plan: git_objects.Plan) -> None:
    """include-tag: annotated tags pointing at objects in the pack."""
    sending = {e[0] for e in plan.entries}
    for oid in repo.backend.list_refs("refs/tags/").values():
        if oid in sending:
            continue
        raw = repo.backend.get(oid)
        if raw is not None and raw.startswith(b"tag "):
            if git_objects.tag_target(repo, oid) in sending:
                plan.entries.append((oid, None))
                sending.add(oid)


# -- protocol v2 -------------------------------------------------------------------------


def handle_v2(repo: Repo, body: bytes) -> Iterator[bytes]:
    """One v2 command (``ls-refs`` or ``fetch``)."""
    packets = list(parse(body))
    if not packets or not isinstance(packets[0], bytes) or not packets[0].startswith(b"command="):
        raise ProtocolError("v2 request has no command")
    command = packets[0][len(b"command="):].strip().decode()
    i = 1
    while i < len(packets) and isinstance(packets[i], bytes):
        i += 1  # capability lines (agent, object-format, server-option)
    args: list[bytes] = []
    if i < len(packets) and packets[i] == DELIM_PKT:
        i += 1
        while i < len(packets) and isinstance(packets[i], bytes):
            args.append(packets[i].rstrip(b"\n"))  # type: ignore[union-attr]
            i += 1
    if i >= len(packets) or packets[i] not in (FLUSH_PKT, END_PKT):
        raise ProtocolError("v2 request not terminated by a flush")
    if command == "ls-refs":
        yield _ls_refs(repo, args)
    elif command == "fetch":
        yield from _fetch_v2(repo, args)
    else:
        raise ProtocolError(f"unknown command {command!r}")


def _ls_refs(repo: Repo, args: list[bytes]) -> bytes:
    peel = b"peel" in args
    symrefs = b"symrefs" in args
    unborn = b"unborn" in args
    prefixes = [a[len(b"ref-prefix "):].decode() for a in args if a.startswith(b"ref-prefix ")]
    refs, head = refs_of(repo)
    out: list[bytes] = []
    if not refs and unborn:
        if not prefixes or any("HEAD".startswith(p) for p in prefixes):
            out.append(pkt(b"unborn HEAD symref-target:refs/heads/main\n"))
    for name, oid in refs:
        if prefixes and not any(name.startswith(p) for p in prefixes):
            continue
        line = b"%s %s" % (oid.hex().encode(), name.encode())
        if name == "HEAD" and symrefs and head:
            line += b" symref-target:" + head.encode()
        if peel and name != "HEAD":
            peeled = _peeled(repo, oid)
            if peeled is not None:
                line += b" peeled:" + peeled.hex().encode()
        out.append(pkt(line + b"\n"))
    out.append(FLUSH)
    return b"".join(out)


def _fetch_v2(repo: Repo, args: list[bytes]) -> Iterator[bytes]:
    req = FetchRequest(sideband=True)
    for a in args:
        if a in (b"thin-pack",):
            req.thin = True
        elif a == b"ofs-delta":
            req.ofs = True
        elif a == b"no-progress":
            req.progress = False
        elif a == b"include-tag":
            req.include_tag = True
        elif a.startswith((b"deepen-since", b"deepen-not", b"deepen-relative", b"want-ref")):
            raise ProtocolError(f"{a.split(b' ')[0].decode()} is not supported")
        elif not _arg(req, repo, a):
            if a.startswith((b"server-option", b"agent", b"object-format", b"wait-for-done",
                             b"sideband-all", b"packfile-uris")):
                continue
            raise ProtocolError(f"unexpected fetch argument {a[:40]!r}")
    if not req.wants:
        raise ProtocolError("fetch without wants")
    _check_wants(repo, req)
    common = _common(repo, req.haves)
    if not req.done:
        lines = [pkt("acknowledgments\n")]
        lines += [pkt(b"ACK %s\n" % c.hex().encode()) for c in common]
        if not common:
            lines.append(pkt("NAK\n"))
            yield b"".join(lines) + FLUSH
            return
        lines.append(pkt("ready\n"))
        yield b"".join(lines) + DELIM
    plan = None
    if req.depth is not None or req.shallow:
        plan = _plan(repo, req, common)
        lines = [pkt("shallow-info\n")]
        lines += [pkt(b"shallow %s\n" % c.hex().encode()) for c in plan.shallow]
        lines += [pkt(b"unshallow %s\n" % c.hex().encode()) for c in plan.unshallow]
        yield b"".join(lines) + DELIM
    yield pkt("packfile\n")
    yield from _send_pack(repo, req, common, plan)
