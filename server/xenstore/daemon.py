"""The asyncio Xenstore server: connections, dispatch, the current tree.

One :class:`Server` owns the current root (a copy-on-write :class:`~.nodes.Node`
tree), the watches, the domains and the :class:`~.storage.Storage` that
commits the tree to the store branch. Each connection is an
``asyncio.Protocol`` that parses packets in ``data_received`` and answers
each with one ``transport.write``. Requests run one at a time on the event
loop, so every request sees every earlier change.

Durability (``durable=True``): a reply to a request that changed the tree is
held until the commit holding the change is written; replies queued behind
it on the same connection wait too, so a connection always sees its replies
in order.

Garbage collection: the tree is thousands of long-lived objects that a full
collection would scan again and again (tens of ms, felt as request latency).
Everything alive after each commit is frozen (``gc.freeze``: young
collections only look at what is new); a full collection runs when the
server has been idle for a while, or every 10 minutes at least.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable

import irmin

from . import control, nodes, paths, wire
from . import perms as P
from .domains import Domain, parse_domid
from .nodes import Caller, Counts, Node
from .quota import Quota
from .storage import Storage
from .transactions import C, S, V, Transaction
from .watches import Watch, ancestors
from .wire import OK, XsError, encode, encode_error, onearg, strings

log = logging.getLogger("irmin.xenstored")

GC_TICK = 5.0             # seconds between idle checks of the collector
GC_MAX_INTERVAL = 600.0   # a full collection at least this often

SPECIAL = ("@introduceDomain", "@releaseDomain")
_encode_event = wire.encode_event
_unpack_header = wire.HEADER.unpack_from


class Connection(asyncio.Protocol):
    """One client: dom0 on the main socket, domain N on ``<domain-dir>/N``."""

    def __init__(self, server: Server, domid: int = 0, privileged: bool = True) -> None:
        self.server = server
        self.domid = domid
        self.privileged = privileged
        self.home_b = paths.home(domid)
        self.home = self.home_b.decode()
        self.paths = server.path_cache(self.home_b)
        self.parser = wire.Parser()
        self.transport: asyncio.Transport | None = None
        self.watches: list[Watch] = []
        self.txs: dict[int, Transaction] = {}
        self.next_tx = 1
        self.held: list[tuple[int, bytes, bool]] = []
        self.closed = False
        # outstanding-requests quota (unprivileged): replies not yet handed
        # to the kernel, and requests waiting until there are fewer
        self.dom: Domain | None = None
        self.backlog: list[tuple[int, int, int, bytes]] = []
        self.write_paused = False
        self.read_paused = False
        self.buffered = 0
        q = server.quota
        self.caller = Caller(domid, privileged, None, q.nodes, q.node_size, q.permissions,
                             server.counts)

    # -- asyncio ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.conns[self] = None
        if not self.privileged:
            self.dom = self.server.domains.get(self.domid)
            # pause_writing as soon as a reply cannot go to the kernel at once
            transport.set_write_buffer_limits(high=0)  # type: ignore[attr-defined]

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        n, self.buffered = self.buffered, 0
        if n:
            self._sent(n)  # may queue new replies (buffered again)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.drop(self)

    def data_received(self, data: bytes) -> None:
        # the usual case: exactly one whole request, nothing buffered
        if self.dom is None and len(data) >= 16 and not self.parser.pending:
            t, rid, txid, n = _unpack_header(data)
            if len(data) == 16 + n and n <= wire.PAYLOAD_MAX:
                if not self.closed:
                    self.server.handle(self, t, rid, txid, data[16:])
                return
        try:
            packets = self.parser.feed(data)
        except wire.Oversize:
            self.abort()
            return
        if self.dom is not None:
            self.backlog.extend(packets)
            self.process()
            return
        handle = self.server.handle
        for t, rid, txid, payload in packets:
            if self.closed:
                return
            handle(self, t, rid, txid, payload)

    def process(self) -> None:
        """C ``domain_can_read``: an unprivileged domain's requests are
        read only while fewer than the ``outstanding`` quota of its replies
        are unsent; the rest wait (and the socket is no longer read)."""
        dom = self.dom
        assert dom is not None
        handle = self.server.handle
        quota = self.server.quota
        backlog = self.backlog
        i = 0
        while i < len(backlog) and not self.closed and dom.outstanding < quota.outstanding:
            t, rid, txid, payload = backlog[i]
            i += 1
            handle(self, t, rid, txid, payload)
        del backlog[:i]
        if self.transport is None or self.closed:
            return
        if backlog and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()
            self.server.loop.call_later(0.002, self._poll)  # type: ignore[union-attr]
        elif not backlog and self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def _poll(self) -> None:
        """While requests wait, look at the transport too: a safety net in
        case it drained without a ``resume_writing`` call."""
        if self.closed or not self.backlog or self.transport is None:
            return
        if self.buffered and self.transport.get_write_buffer_size() == 0:
            self.resume_writing()
        if self.backlog and self.read_paused and not self.closed:
            self.server.loop.call_later(0.002, self._poll)  # type: ignore[union-attr]

    def _sent(self, n: int) -> None:
        dom = self.dom
        if dom is None:
            return
        was = dom.outstanding
        dom.outstanding -= n
        if was >= self.server.quota.outstanding > dom.outstanding:
            for c in list(dom.conns):
                if c.backlog and not c.closed:
                    c.process()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
            self.server.drop(self)

    # -- output -------------------------------------------------------------------

    def send(self, data: bytes, seq: int = 0, reply: bool = False) -> None:
        if self.held or seq > self.server.storage.done:
            self.held.append((seq, data, reply))
            self.server.holding[self] = None
            if reply and self.dom is not None:
                self.dom.outstanding += 1
        elif self.transport is not None:
            self.transport.write(data)
            if reply and self.write_paused and self.dom is not None:
                self.dom.outstanding += 1
                self.buffered += 1

    def release(self, done: int) -> None:
        held = self.held
        i = 0
        out = []
        replies = 0
        while i < len(held) and held[i][0] <= done:
            out.append(held[i][1])
            replies += held[i][2]
            i += 1
        del held[:i]
        if out and self.transport is not None and not self.closed:
            self.transport.write(b"".join(out))
            if self.write_paused:  # still unsent: now in the transport
                self.buffered += replies
                replies = 0
        if replies:
            self._sent(replies)


Handler = Callable[["Server", Connection, "Transaction | None", bytes], bytes]


class Server:
    """The xenstored state and request handlers."""

    def __init__(self, storage: Storage, *, quota: Quota | None = None,
                 domain_dir: str | None = None) -> None:
        self.storage = storage
        self.quota = quota or Quota()
        self.domain_dir = domain_dir
        self.counts = Counts()
        self.root: Node = storage.load()
        #: owner token of the nodes that requests may change in place; a
        #: new one whenever a root is snapshotted (see nodes.py)
        self.epoch: object = object()
        self._recount()
        self.conns: dict[Connection, None] = {}
        self.holding: dict[Connection, None] = {}
        self.domains: dict[int, Domain] = {0: Domain(0)}
        self.special_perms: dict[str, P.Perms] = {s: P.DEFAULT for s in SPECIAL}
        self._paths: dict[bytes, dict[bytes, tuple[str, list[str]]]] = {}
        self._seq = 0
        self._after: bytes | None = None
        self.nwatches = 0
        #: path -> [(connection, watch)], in registration order
        self.widx: dict[str, list[tuple[Connection, Watch]]] = {}
        self._wseq = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.servers: list[asyncio.AbstractServer] = []
        self.nreq = 0  # requests handled (the idle check of the collector)
        self._gc_seen = -1
        self._gc_full = 0.0
        self._gc_frozen = 0
        self._gc_timer: asyncio.TimerHandle | None = None

    def _recount(self) -> None:
        c: dict[int, int] = {}

        def walk(n: Node) -> None:
            o = n.perms[0][1]
            c[o] = c.get(o, 0) + 1
            for ch in n.children.values():
                walk(ch)

        walk(self.root)
        self.counts.delta = c

    def snapshot(self) -> Node:
        """The current root, from now on never changed in place."""
        self.epoch = object()
        return self.root

    def path_cache(self, home: bytes) -> dict[bytes, tuple[str, list[str]]]:
        d = self._paths.get(home)
        if d is None:
            d = self._paths[home] = {}
        return d

    # -- lifecycle ------------------------------------------------------------------

    async def start(self, socket_path: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.storage.start(self.loop, self.snapshot, self._durable)
        d = os.path.dirname(socket_path)
        if d:
            os.makedirs(d, exist_ok=True)
        if os.path.exists(socket_path):
            os.unlink(socket_path)
        srv = await self.loop.create_unix_server(lambda: Connection(self), socket_path, backlog=512)
        os.chmod(socket_path, 0o600)
        self.servers.append(srv)
        if self.domain_dir:
            os.makedirs(self.domain_dir, exist_ok=True)
        self._full_collect()
        self._gc_timer = self.loop.call_later(GC_TICK, self._gc_tick)

    def _full_collect(self) -> None:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._gc_full = time.monotonic()
        self._gc_frozen = gc.get_freeze_count()

    def _gc_tick(self) -> None:
        """Every GC_TICK seconds: a full collection if no request came since
        the last tick (or none for GC_MAX_INTERVAL) and anything was frozen
        since the last one."""
        idle = self.nreq == self._gc_seen
        self._gc_seen = self.nreq
        if gc.get_freeze_count() > self._gc_frozen and (
                idle or time.monotonic() - self._gc_full > GC_MAX_INTERVAL):
            self._full_collect()
        assert self.loop is not None
        self._gc_timer = self.loop.call_later(GC_TICK, self._gc_tick)

    async def stop(self) -> None:
        for s in self.servers:
            s.close()
        for dom in self.domains.values():
            if dom.server is not None:
                dom.server.close()  # type: ignore[attr-defined]
                if dom.socket_path and os.path.exists(dom.socket_path):
                    os.unlink(dom.socket_path)
        for c in list(self.conns):
            c.abort()
        if self._gc_timer is not None:
            self._gc_timer.cancel()
        await self.storage.flush()
        self.storage.close()

    def drop(self, conn: Connection) -> None:
        """A dead connection: its watches and transactions go."""
        if conn in self.conns:
            del self.conns[conn]
            self.unwatch_all(conn)
            conn.txs.clear()
            self.holding.pop(conn, None)
            dom = self.domains.get(conn.domid)
            if dom is not None:
                dom.conns.discard(conn)
            if conn.dom is not None:  # its unsent replies are gone
                conn.dom.outstanding -= conn.buffered + sum(h[2] for h in conn.held)
                conn.buffered = 0
                conn.held.clear()
                conn.backlog.clear()

    def _durable(self, done: int) -> None:
        """After each commit: release the replies it made durable, and
        freeze what is alive (see the module doc)."""
        if self.holding:
            for c in list(self.holding):
                c.release(done)
                if not c.held:
                    del self.holding[c]
        gc.freeze()

    # -- dispatch -------------------------------------------------------------------

    def handle(self, conn: Connection, t: int, rid: int, txid: int, payload: bytes) -> None:
        self.nreq += 1
        h = HANDLERS.get(t)
        tx = None
        try:
            if txid:
                tx = conn.txs.get(txid)
                if tx is None:
                    raise XsError("ENOENT")
            if h is None:
                raise XsError("ENOSYS")
            self._seq = 0
            out = h(self, conn, tx, payload)
        except XsError as e:
            conn.send(encode_error(rid, txid, e.name), 0, True)
            return
        seq = self._seq
        if seq and self.storage.durable:
            conn.send(encode(t, rid, txid, out), seq, True)
        else:
            conn.send(encode(t, rid, txid, out), 0, True)
        if self._after is not None:
            conn.send(self._after)
            self._after = None

    def path(self, conn: Connection, raw: bytes) -> tuple[str, list[str]]:
        cache = conn.paths
        hit = cache.get(raw)
        if hit is not None:
            return hit
        p = paths.canonical(raw, conn.home_b, self.quota.path_max)
        hit = (p, paths.split(p))
        if len(cache) > 100_000:
            cache.clear()
        cache[raw] = hit
        return hit

    def changed(self, what: str, events: list[nodes.Event], detail: str = "") -> None:
        self._seq = self.storage.changed(what, detail)
        if self.nwatches and events:
            self.fire(events)

    def add_watch(self, conn: Connection, path: str, token: bytes, relative: bool) -> None:
        self._wseq += 1
        w = Watch.make(path, token, relative, self._wseq)
        conn.watches.append(w)
        self.widx.setdefault(path, []).append((conn, w))
        self.nwatches += 1

    def remove_watch(self, conn: Connection, w: Watch) -> None:
        conn.watches.remove(w)
        lst = self.widx.get(w.path)
        if lst is not None:
            for i, (c, x) in enumerate(lst):
                if x is w:
                    del lst[i]
                    break
            if not lst:
                del self.widx[w.path]
        self.nwatches -= 1

    def unwatch_all(self, conn: Connection) -> None:
        for w in list(conn.watches):
            self.remove_watch(conn, w)

    def fire(self, events: list[nodes.Event]) -> None:
        """Send the events to the watches they match: the watches on the
        event's path and its ancestors (an exact event: the path only),
        looked up in the index; per connection in the order of its watches."""
        widx = self.widx
        # C drops an event identical to one still pending for the
        # connection: within one request, each (path, token) once
        seen: dict[Connection, set[bytes]] = {}
        for path, exact, perms in events:
            if exact:
                matched = widx.get(path)
                if not matched:
                    continue
            else:
                matched = None
                many = False
                for a in ancestors(path):
                    lst = widx.get(a)
                    if lst:
                        if matched is None:
                            matched = lst
                        else:
                            if not many:
                                matched = list(matched)
                                many = True
                            matched.extend(lst)
                if matched is None:
                    continue
                if many:
                    matched.sort(key=lambda cw: cw[1].seq)
            allowed: dict[Connection, bool] = {}
            for c, w in matched:
                if not c.privileged:
                    ok = allowed.get(c)
                    if ok is None:
                        ok = allowed[c] = bool(c.caller.access(perms) & P.READ)
                    if not ok:
                        continue
                shown = paths.relative_to(path, c.home) if w.relative else path
                ev = _encode_event(shown.encode(), w.token)
                if ev is None:
                    continue
                cs = seen.get(c)
                if cs is None:
                    seen[c] = {ev}
                elif ev in cs:
                    continue
                else:
                    cs.add(ev)
                c.send(ev)

    def fire_special(self, name: str) -> None:
        perms = self.special_perms[name]
        for c, w in list(self.widx.get(name, ())):
            if not c.privileged and not c.caller.access(perms) & P.READ:
                continue
            ev = _encode_event(name.encode(), w.token)
            if ev is not None:
                c.send(ev)

    # -- domains --------------------------------------------------------------------

    def open_domain_socket(self, dom: Domain) -> None:
        """Serve ``<domain_dir>/<domid>``: its clients are domain ``domid``."""
        if not self.domain_dir or self.loop is None:
            return
        path = os.path.join(self.domain_dir, str(dom.domid))
        if os.path.exists(path):
            os.unlink(path)
        dom.socket_path = path

        def factory() -> Connection:
            c = Connection(self, dom.domid, privileged=False)
            dom.conns.add(c)
            return c

        async def open_() -> None:
            dom.server = await self.loop.create_unix_server(factory, path, backlog=512)  # type: ignore[union-attr]
            os.chmod(path, 0o600)

        # Created synchronously enough: the socket exists once the loop runs
        # the task, before the next request of this connection is handled.
        self._pending_open = self.loop.create_task(open_())

    def remove_orphans(self, domid: int) -> None:
        """C ``domain_tree_remove``: a released domain's nodes are deleted
        (each node it owns with its subtree, in tree order), with the watch
        events of an RM."""
        if not self.counts.get(domid):
            return
        found: list[str] = []

        def walk(n: Node, path: str) -> None:
            for name, c in n.children.items():
                p = path + "/" + name if path != "/" else "/" + name
                if c.perms[0][1] == domid:
                    found.append(p)
                else:
                    walk(c, p)

        walk(self.root, "/")
        if not found:
            return
        who = Caller(0, True, None, counts=self.counts)
        events: list[nodes.Event] = []
        root = self.root
        for p in found:
            root = nodes.rm(root, paths.split(p), p, who, events)
        self.root = root
        self.changed(f"RELEASE dom{domid}: {len(found)} orphaned nodes removed", events)

    def close_domain(self, dom: Domain) -> None:
        if dom.server is not None:
            dom.server.close()  # type: ignore[attr-defined]
        if dom.socket_path and os.path.exists(dom.socket_path):
            os.unlink(dom.socket_path)
        for c in list(dom.conns):
            c.abort()

    # -- helpers --------------------------------------------------------------------

    def domain_outstanding(self, domid: int) -> int:
        dom = self.domains.get(domid)
        return dom.outstanding if dom is not None else 0

    def domain_transactions(self, domid: int) -> int:
        dom = self.domains.get(domid)
        conns = dom.conns if dom is not None else [c for c in self.conns if c.domid == domid]
        return sum(len(c.txs) for c in conns)

    def domain_watches(self, domid: int) -> int:
        dom = self.domains.get(domid)
        if dom is not None:
            return sum(len(c.watches) for c in dom.conns)
        return sum(len(c.watches) for c in self.conns if c.domid == domid)

    def check(self) -> None:
        self._recount()

    def _caller(self, conn: Connection) -> Caller:
        c = conn.caller
        c.owner = self.epoch
        if conn.privileged:  # no quota, no target
            return c
        q = self.quota
        c.max_nodes, c.max_node_size, c.max_perms = q.nodes, q.node_size, q.permissions
        dom = self.domains.get(conn.domid)
        c.target = dom.target if dom is not None else None
        return c


# -- request handlers ----------------------------------------------------------------

def _read(s: Server, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
    path, parts = s.path(conn, onearg(payload))
    if tx is not None:
        tx.access(parts)
        tx.touch(V, parts)
        root = tx.root
    else:
        root = s.root
    n = root
    for p in parts:
        n = n.children.get(p)  # type: ignore[assignment]
        if n is None:
            break
    if n is None or (not conn.privileged and not conn.caller.access(n.perms) & P.READ):
        nodes.get(root, parts, s._caller(conn), P.READ)
    return n.value


def _directory(s: Server, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
    path, parts = s.path(conn, onearg(payload))
    if tx is not None:
        tx.access(parts)
        tx.touch(C, parts)
    n = nodes.get(tx.root if tx else s.root, parts, s._caller(conn), P.READ)
    if not n.children:
        return b""
    return "\0".join(n.children).encode() + b"\0"


def _directory_part(s: Server, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
    args = strings(payload)
    if len(args) != 2:
        raise XsError("EINVAL")
    path, parts = s.path(conn, args[0])
    if tx is not None:
        tx.access(parts)
        tx.touch(C, parts)
    n = nodes.get(tx.root if tx else s.root, parts, s._caller(conn), P.READ)
    try:
        off = int(args[1]) if args[1] else 0
    except ValueError:
        off = 0
    gen = b"%d\0" % max(n.gen, n.cgen)
    data = b"".join(name.encode() + b"\0" for name in n.children)
    if off >= len(data):
        return gen + b"\0"
    rest = data[off:]
    maxlen = wire.PAYLOAD_MAX - len(gen) - 1
    if len(rest) <= maxlen:
        return gen + rest + b"\0"
    cut = rest.rfind(b"\0", 0, maxlen) + 1
    return gen + rest[:cut]


def _get_perms(s: Server, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
    path, parts = s.path(conn, onearg(payload))
    if tx is not None:
        tx.access(parts)
        tx.touch(V, parts)
    n = nodes.get(tx.root if tx else s.root, parts, s._caller(conn), P.READ)
    return P.encode(n.perms)


def _write(s: Server, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
    i = payload.find(b"\0")
    if i < 0:
        raise XsError("EINVAL")
    path, parts = s.path(conn, payload[:i])
    return _change(s, conn, tx, "WRITE", nodes.write, parts, path, payload[i + 1:])


def _change(s: Server, conn: Connection, tx: Transaction | None, kind: str,
            op: Callable[..., nodes.Node], parts: list[str], path: str, *args: object) -> bytes:
    """One mutation (``nodes.write``, ``mkdir``, ``rm``, ``set_perms``):
    recorded in the transaction (with what it read and wrote), or applied to
    the live tree and its watch events fired."""
    if tx is not None:
        tx.access(parts, _TX_ACCESS[kind])
        _TX_TOUCH[kind](tx, parts)
        tx.apply(op, parts, path, *args)
        return OK
    events: list[nodes.Event] = []
    new = op(s.root, parts, path, *args, s._caller(conn), events)
    if events:  # (the root may be the same object: changed in place)
        s.root = new
        s.changed(kind, events, path)
    return OK


#: How each mutation counts in a transaction: the access checked, the parts touched.
_TX_ACCESS = {"WRITE": "w", "MKDIR": "w", "RM": "rm", "SET_PERMS": "r"}
_TX_TOUCH: dict[str, Callable[[Transaction, list[str]], None]] = {
    "WRITE": lambda tx, parts: tx.touch_path(parts),
    "MKDIR": lambda tx, parts: tx.touch_path(parts),
    "RM": lambda tx, parts: tx.touch(S, parts),
    "SET_PERMS": lambda tx, parts: tx.touch(V, parts),
}


def _mkdir(s: Server, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
    path, parts = s.path(conn, onearg(payload))
    return _change(s, conn, tx, "MKDIR", nodes.mkdir, parts, path)


def _rm(s: Server, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
    path, parts = s.path(conn, onearg(payload))
    return _change(s, conn, tx, "RM", nodes.rm, parts, path)


def _set_perms(s: Server, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
    args = strings(payload)
    if len(args) < 2:
        raise XsError("EINVAL")
    new_perms = P.parse(args[1:])
    if args[0].startswith(b"@"):
        name = args[0].decode("latin-1")
        if name not in s.special_perms:
            raise XsError("ENOENT")
        if not conn.privileged:
            raise XsError("EACCES")
        s.special_perms[name] = new_perms
        return OK
    path, parts = s.path(conn, args[0])
    return _change(s, conn, tx, "SET_PERMS", nodes.set_perms, parts, path, new_perms)


def _watch(s: Server, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
    args = strings(payload)
    if len(args) != 2:
        raise XsError("EINVAL")
    raw, token = args
    if raw.startswith(b"@"):
        if len(raw) > paths.PATH_MAX:
            raise XsError("EINVAL")
        path, relative = raw.decode("latin-1"), False
    else:
        path, _ = s.path(conn, raw)
        relative = not raw.startswith(b"/")
    for w in conn.watches:
        if w.path == path and w.token == token:
            raise XsError("EEXIST")
    # C: E2BIG once the domain holds *more* than the quota (quota + 1 fit)
    if not conn.privileged and s.domain_watches(conn.domid) > s.quota.watches:
        raise XsError("E2BIG")
    s.add_watch(conn, path, token, relative)
    s._after = _encode_event(raw, token)
    return OK


def _unwatch(s: Server, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
    args = strings(payload)
    if len(args) != 2:
        raise XsError("EINVAL")
    raw, token = args
    if raw.startswith(b"@"):
        path = raw.decode("latin-1")
    else:
        path, _ = s.path(conn, raw)
    for w in conn.watches:
        if w.path == path and w.token == token:
            s.remove_watch(conn, w)
            return OK
    raise XsError("ENOENT")


def _tx_start(s: Server, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
    if tx is not None:
        raise XsError("EBUSY")
    # C: ENOSPC once the domain holds *more* than the quota (quota + 1 fit)
    if not conn.privileged and s.domain_transactions(conn.domid) > s.quota.transactions:
        raise XsError("ENOSPC")
    tid = conn.next_tx
    while tid == 0 or tid in conn.txs:
        tid = (tid + 1) & 0xFFFFFFFF
    conn.next_tx = (tid + 1) & 0xFFFFFFFF
    conn.txs[tid] = Transaction(tid, s.snapshot(), s._caller(conn),
                                None if conn.privileged else s.quota.transaction_nodes)
    return b"%d\0" % tid


def _tx_end(s: Server, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
    arg = onearg(payload)
    if tx is None:
        raise XsError("ENOENT")
    if arg == b"F":
        del conn.txs[tx.id]
        return OK
    if arg != b"T":
        raise XsError("EINVAL")
    del conn.txs[tx.id]
    if tx.failed:
        raise XsError("ENOMEM")
    root, events = tx.merge(s.root, s.counts, s._caller(conn))
    if len(events) > 1:  # C: one event per node the transaction changed
        seen: set[tuple[str, bool]] = set()
        uniq = []
        for ev in events:
            k = (ev[0], ev[1])
            if k not in seen:
                seen.add(k)
                uniq.append(ev)
        events = uniq
    if root is not s.root:
        s.root = root
        s.changed(f"TRANSACTION dom{conn.domid} ({len(tx.ops)} ops)", events)
    return OK


def _domid_arg(payload: bytes) -> int:
    """The one domain id argument of a request (EINVAL if it is not one)."""
    try:
        return parse_domid(onearg(payload))
    except ValueError:
        raise XsError("EINVAL") from None


def _dom0_args(conn: Connection, payload: bytes, n: int) -> list[bytes]:
    """The ``n`` arguments of a request only dom0 may make (EACCES first,
    then EINVAL, in the C daemon's order)."""
    if not conn.privileged:
        raise XsError("EACCES")
    args = strings(payload)
    if len(args) != n:
        raise XsError("EINVAL")
    return args


def _introduce(s: Server, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
    args = _dom0_args(conn, payload, 3)
    try:
        domid = parse_domid(args[0])
        gfn, port = int(args[1]), int(args[2])
    except ValueError:
        raise XsError("EINVAL") from None
    dom = s.domains.get(domid)
    if dom is None:
        dom = s.domains[domid] = Domain(domid, gfn, port)
        s.open_domain_socket(dom)
        s.fire_special("@introduceDomain")
    return OK


def _release(s: Server, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
    if not conn.privileged:
        raise XsError("EACCES")
    domid = _domid_arg(payload)
    if domid == 0:
        raise XsError("EINVAL")
    dom = s.domains.pop(domid, None)
    if dom is None:
        raise XsError("ENOENT")
    s.close_domain(dom)
    s.remove_orphans(domid)
    s.fire_special("@releaseDomain")
    return OK


def _get_domain_path(s: Server, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
    domid = _domid_arg(payload)
    return paths.home(domid) + b"\0"


def _is_introduced(s: Server, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
    if not conn.privileged:
        raise XsError("EACCES")
    domid = _domid_arg(payload)
    return b"T\0" if domid in s.domains else b"F\0"


def _resume(s: Server, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
    if not conn.privileged:
        raise XsError("EACCES")
    domid = _domid_arg(payload)
    if domid not in s.domains:
        raise XsError("ENOENT")
    return OK


def _set_target(s: Server, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
    args = _dom0_args(conn, payload, 2)
    try:
        domid, target = parse_domid(args[0]), parse_domid(args[1])
    except ValueError:
        raise XsError("EINVAL") from None
    dom = s.domains.get(domid)
    if dom is None or target not in s.domains:
        raise XsError("ENOENT")
    dom.target = target
    return OK


def _reset_watches(s: Server, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
    s.unwatch_all(conn)
    conn.txs.clear()
    return OK


def _control(s: Server, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
    if not conn.privileged:
        raise XsError("EACCES")
    return control.run(s, strings(payload))


HANDLERS: dict[int, Handler] = {
    wire.READ: _read,
    wire.DIRECTORY: _directory,
    wire.DIRECTORY_PART: _directory_part,
    wire.GET_PERMS: _get_perms,
    wire.WRITE: _write,
    wire.MKDIR: _mkdir,
    wire.RM: _rm,
    wire.SET_PERMS: _set_perms,
    wire.WATCH: _watch,
    wire.UNWATCH: _unwatch,
    wire.TRANSACTION_START: _tx_start,
    wire.TRANSACTION_END: _tx_end,
    wire.INTRODUCE: _introduce,
    wire.RELEASE: _release,
    wire.GET_DOMAIN_PATH: _get_domain_path,
    wire.IS_DOMAIN_INTRODUCED: _is_introduced,
    wire.RESUME: _resume,
    wire.SET_TARGET: _set_target,
    wire.RESET_WATCHES: _reset_watches,
    wire.CONTROL: _control,
}


async def serve(socket_path: str, store: str, branch: str = "xenstore", *, durable: bool | None = None,
                commit_interval: float | None = None, domain_dir: str | None = None,
                quota: Quota | None = None, ready: Callable[[Server], None] | None = None) -> None:
    """Run a xenstored until SIGTERM/SIGINT."""
    repo = irmin.open(store)
    if durable is None:
        durable = not store.startswith("memory:")
    if commit_interval is None:
        commit_interval = 0.0 if durable else 0.02
    storage = Storage(repo, branch, durable=durable, interval=commit_interval)
    # the committer thread hands the GIL back within 0.2 ms (default 5 ms)
    # when a request arrives while it exports a commit (bootstorm p99, same
    # session, medians of 5: ~24 ms at 1 ms, ~18 ms at 0.2 ms)
    sys.setswitchinterval(0.0002)
    server = Server(storage, quota=quota, domain_dir=domain_dir if domain_dir is not None else socket_path + ".d")
    await server.start(socket_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready(server)
    await stop.wait()
    await server.stop()
    repo.close()
