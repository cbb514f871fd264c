"""``lmdb:PATH`` — an embedded store shared by threads and processes.

PATH is a directory holding LMDB's ``data.mdb`` and ``lock.mdb``. Three named
databases: ``objects`` (id → bytes), ``refs`` (name → id) and ``meta`` (a
format tag and a counter bumped by every ref change, so that the refs poller
of another process learns of a change from one 8-byte read).

Why LMDB fits the contract: one write transaction per ``apply`` gives the
atomic batch and a native cross-process compare-and-set (LMDB serialises
writers with a mutex in ``lock.mdb``); readers use MVCC snapshots and are never
blocked.

URI options: ``sync`` (default ``true``: every ``apply`` is fsynced before it
returns; ``false``: durable only at :meth:`LmdbBackend.flush`), ``map_size``
(initial map size in bytes, default 64 MiB; it doubles as needed),
``max_map_size`` (growth stops there with :class:`StoreFull`, default 1 TiB),
``readonly``.

The map can only be resized while no transaction of this process is active
(LMDB unmaps the file), so reads pass through a tiny shared/exclusive gate and
writers are serialised by a process-local lock. Handles opened on the same
directory in one process share one LMDB environment (LMDB forbids opening an
environment twice in a process).
"""

from __future__ import annotations

import errno
import os
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import lmdb

from .base import Backend, RefChange, RefUpdate, check_expectations, check_ref_name
from .errors import CorruptStore, InvalidURI, NotFormatted, StoreClosed, StoreError, StoreFull
from .registry import bool_param

__all__ = ["LmdbBackend", "open_lmdb"]

FORMAT = b"irmin-lmdb 1"
_COUNTER = b"refs-counter"
_FORMAT_KEY = b"format"
_U64 = struct.Struct(">Q")
_ITER_CHUNK = 10_000
DEFAULT_MAP_SIZE = 64 << 20
DEFAULT_MAX_MAP_SIZE = 1 << 40


def _convert(e: lmdb.Error, what: str) -> StoreError:
    """Map an lmdb error onto our tree (the caller chains it with ``from``)."""
    if isinstance(e, lmdb.MapFullError):
        return StoreFull(f"{what}: LMDB map is full: {e}")
    if isinstance(e, lmdb.DiskError) or "No space left" in str(e) or getattr(e, "errno", None) == errno.ENOSPC:
        return StoreFull(f"{what}: no space left on device: {e}")
    if isinstance(e, (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError,
                      lmdb.VersionMismatchError, lmdb.BadTxnError, lmdb.PanicError)):
        return CorruptStore(f"{what}: {e}")
    return StoreError(f"{what}: {e}")


_T = TypeVar("_T")


# Read operations, each run inside one read transaction by LmdbBackend._read.
def _txn_get(txn: lmdb.Transaction, key: bytes) -> bytes | None:
    return txn.get(key)  # type: ignore[no-any-return]


def _txn_has(txn: lmdb.Transaction, key: bytes) -> bool:
    return txn.get(key) is not None


def _txn_get_many(txn: lmdb.Transaction, keys: list[bytes]) -> dict[bytes, bytes]:
    get = txn.get
    out: dict[bytes, bytes] = {}
    for oid in keys:
        data = get(oid)
        if data is not None:
            out[oid] = data
    return out


def _txn_keys_after(txn: lmdb.Transaction, after: bytes | None) -> list[bytes]:
    keys: list[bytes] = []
    cur = txn.cursor()
    ok = cur.set_range(after) if after is not None else cur.first()
    if ok and after is not None and cur.key() == after:
        ok = cur.next()
    while ok and len(keys) < _ITER_CHUNK:
        keys.append(cur.key())
        ok = cur.next()
    return keys


def _txn_refs(txn: lmdb.Transaction, start: bytes, db: object = None) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    cur = txn.cursor(db=db) if db is not None else txn.cursor()
    ok = cur.set_range(start) if start else cur.first()
    while ok:
        key = cur.key()
        if not key.startswith(start):
            break
        out[key.decode()] = cur.value()
        ok = cur.next()
    return out


class _Env:
    """One LMDB environment per directory per process, shared by handles."""

    def __init__(self, path: str, *, sync: bool, map_size: int, max_map_size: int,
                 readonly: bool) -> None:
        self.path = path
        self.readonly = readonly
        self.max_map_size = max_map_size
        self.refcount = 0
        self.handles: list[LmdbBackend] = []
        # Writers of this process one at a time (LMDB would serialise them
        # anyway); held while resizing so no write txn is active.
        self.write_lock = threading.Lock()
        # Shared/exclusive gate for readers: ``readers`` counts active read
        # transactions; a resize waits on ``idle`` until it is zero.
        self.gate = threading.Lock()
        self.idle = threading.Condition(self.gate)
        self.readers = 0
        self.resizing = False
        try:
            self.env = lmdb.open(
                path, map_size=map_size, subdir=True, readonly=readonly, lock=True,
                sync=sync, metasync=sync, max_dbs=4, max_readers=1024,
                readahead=False, create=not readonly,
            )
        except lmdb.Error as e:
            if readonly and not os.path.exists(os.path.join(path, "data.mdb")):
                raise NotFormatted(f"no LMDB store at {path}") from e
            raise _convert(e, f"cannot open LMDB store at {path}") from e
        try:
            if readonly:
                self._open_dbs_readonly()
            else:
                self._open_dbs()
        except BaseException:
            self.env.close()
            raise

    def _open_dbs(self) -> None:
        env = self.env
        while True:
            try:
                with env.begin(write=True) as txn:
                    self.objects = env.open_db(b"objects", txn=txn)
                    self.refs = env.open_db(b"refs", txn=txn)
                    self.meta = env.open_db(b"meta", txn=txn)
                    fmt = txn.get(_FORMAT_KEY, db=self.meta)
                    if fmt is None:
                        txn.put(_FORMAT_KEY, FORMAT, db=self.meta)
                        txn.put(_COUNTER, _U64.pack(0), db=self.meta)
                    elif fmt != FORMAT:
                        raise NotFormatted(f"{self.path} holds {fmt!r}, not {FORMAT!r}")
                return
            except lmdb.MapResizedError:
                env.set_mapsize(0)
            except lmdb.Error as e:
                raise _convert(e, f"cannot open LMDB store at {self.path}") from e

    def _open_dbs_readonly(self) -> None:
        env = self.env
        try:
            # Without txn=: py-lmdb then commits the read txn, which keeps
            # the handles valid (ending it with abort would discard them).
            self.objects = env.open_db(b"objects", create=False)
            self.refs = env.open_db(b"refs", create=False)
            self.meta = env.open_db(b"meta", create=False)
        except lmdb.NotFoundError as e:
            raise NotFormatted(f"{self.path} is not an irmin LMDB store") from e
        except lmdb.Error as e:
            raise _convert(e, f"cannot open LMDB store at {self.path}") from e

    # -- resizing -------------------------------------------------------------

    def resize(self, new_size: int) -> None:
        """Set the map size (0: adopt the size another process set).

        The caller holds ``write_lock``; here we wait until no read
        transaction of this process is active, as LMDB requires.
        """
        with self.gate:
            self.resizing = True
            try:
                while self.readers:
                    self.idle.wait()
                self.env.set_mapsize(new_size)
            finally:
                self.resizing = False

    def adopt_size(self) -> None:
        """Another process grew the map beyond ours: remap at its size."""
        with self.write_lock:
            self.resize(0)

    def close(self) -> None:
        with self.write_lock, self.gate:
            while self.readers:
                self.idle.wait()
            self.env.close()


_envs: dict[str, _Env] = {}
_envs_lock = threading.Lock()


class LmdbBackend(Backend):
    """Objects and refs in one LMDB environment; thread- and process-safe."""

    multi_process = True
    persistent = True

    def __init__(self, uri: str, path: str, *, sync: bool = True,
                 map_size: int = DEFAULT_MAP_SIZE, max_map_size: int = DEFAULT_MAX_MAP_SIZE,
                 readonly: bool = False) -> None:
        super().__init__(uri, durable=sync)
        self.path = os.path.realpath(path)
        self.readonly = readonly
        if not readonly:
            try:
                os.makedirs(self.path, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create {self.path}: {e}") from e
        with _envs_lock:
            shared = _envs.get(self.path)
            if shared is None:
                shared = _Env(self.path, sync=sync, map_size=map_size,
                              max_map_size=max_map_size, readonly=readonly)
                _envs[self.path] = shared
            elif shared.readonly and not readonly:
                raise StoreError(f"{self.path} is already open read-only in this process")
            shared.refcount += 1
            shared.handles.append(self)
        self._s = shared
        self._env = shared.env
        self._odb = shared.objects
        self._rdb = shared.refs
        self._mdb = shared.meta
        self._gate = shared.gate

    # -- reading ----------------------------------------------------------------
    # Each read: enter the gate, one read txn with buffers=False (bytes copied
    # out before the txn ends), leave the gate. MapResizedError means another
    # process grew the file past our mapping: remap and retry.

    def _enter(self) -> None:
        gate = self._gate
        gate.acquire()
        self._s.readers += 1
        gate.release()

    def _leave(self) -> None:
        s = self._s
        gate = self._gate
        gate.acquire()
        s.readers -= 1
        if s.resizing and not s.readers:
            s.idle.notify_all()
        gate.release()

    def _read_failed(self, e: lmdb.Error, what: str) -> None:
        """Handle a failed read: remap after a resize (caller retries), else raise."""
        if self._closed:
            raise StoreClosed(f"store {self.uri} is closed") from e
        if isinstance(e, lmdb.MapResizedError):
            self._s.adopt_size()
            return
        raise _convert(e, what) from e

    def _read(self, db: object, op: Callable[..., _T], what: str, *args: object) -> _T:
        """Run ``op(txn, *args)`` in one read transaction on ``db``, inside
        the gate; remap and retry if another process grew the map."""
        while True:
            self._enter()
            try:
                with self._env.begin(db=db, buffers=False) as txn:
                    return op(txn, *args)
            except lmdb.Error as e:
                err = e
            finally:
                self._leave()
            self._read_failed(err, what)

    def get(self, oid: bytes) -> bytes | None:
        return self._read(self._odb, _txn_get, "get", oid)

    def has(self, oid: bytes) -> bool:
        return self._read(self._odb, _txn_has, "has", oid)

    def get_many(self, oids: Iterable[bytes]) -> dict[bytes, bytes]:
        return self._read(self._odb, _txn_get_many, "get_many", list(oids))

    def iter_ids(self) -> Iterator[bytes]:
        """Ids in key order, read in chunks so no transaction outlives a step
        (a long-lived reader would block map growth)."""
        after: bytes | None = None
        while True:
            chunk = self._read(self._odb, _txn_keys_after, "iter_ids", after)
            yield from chunk
            if len(chunk) < _ITER_CHUNK:
                return
            after = chunk[-1]

    def get_ref(self, name: str) -> bytes | None:
        return self._read(self._rdb, _txn_get, "get_ref", name.encode())

    def list_refs(self, prefix: str = "") -> dict[str, bytes]:
        return self._read(self._rdb, _txn_refs, "list_refs", prefix.encode())

    def refs_token(self) -> object:
        """The refs-change counter: one small read per poll."""
        return self._read(self._mdb, _txn_get, "refs_token", _COUNTER)

    # -- writing ----------------------------------------------------------------

    def _write(self, objects: list[tuple[bytes, bytes]],
               updates: list[RefUpdate]) -> list[RefChange] | None:
        """One write transaction; ``None`` if a ref expectation failed
        (the transaction is then aborted: nothing is written)."""
        s = self._s
        env = self._env
        with s.write_lock:
            self._check_open()
            while True:
                try:
                    txn = env.begin(write=True)
                except lmdb.MapResizedError:
                    s.resize(0)
                    continue
                except lmdb.Error as e:
                    raise _convert(e, "apply") from e
                try:
                    changes: list[RefChange] = []
                    if updates:
                        current: dict[str, bytes] = {}
                        for u in updates:
                            have = txn.get(u.name.encode(), db=self._rdb)
                            if have is not None:
                                current[u.name] = have
                        checked = check_expectations(current, updates)
                        if checked is None:
                            txn.abort()
                            return None
                        changes = checked
                    if objects:
                        cur = txn.cursor(db=self._odb)
                        cur.putmulti(objects, dupdata=False, overwrite=False)
                    if changes:
                        for name, _old, new in changes:
                            if new is None:
                                txn.delete(name.encode(), db=self._rdb)
                            else:
                                txn.put(name.encode(), new, db=self._rdb)
                        raw = txn.get(_COUNTER, db=self._mdb)
                        n = _U64.unpack(raw)[0] + 1 if raw is not None else 1
                        txn.put(_COUNTER, _U64.pack(n), db=self._mdb)
                    txn.commit()
                    return changes
                except lmdb.MapFullError as e:
                    txn.abort()
                    size = env.info()["map_size"]
                    if size >= s.max_map_size:
                        raise StoreFull(f"LMDB map reached max_map_size={s.max_map_size}") from e
                    s.resize(min(size * 2, s.max_map_size))
                except lmdb.Error as e:
                    txn.abort()
                    raise _convert(e, "apply") from e
                except BaseException:
                    txn.abort()
                    raise

    def put_many(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        objects = items if isinstance(items, list) else list(items)
        self._check_writable()
        self._write(objects, [])

    def apply(self, objects: Iterable[tuple[bytes, bytes]],
              refs: Iterable[RefUpdate] = ()) -> bool:
        self._check_writable()
        objs = objects if isinstance(objects, list) else list(objects)
        updates = list(refs)
        for u in updates:
            check_ref_name(u.name)
        changes = self._write(objs, updates)
        if changes is None:
            return False
        if changes:
            for h in list(self._s.handles):
                h._notify(changes)
        return True

    def _deleting(self, op: Callable[[lmdb.Transaction], _T], what: str) -> _T:
        """Run ``op(txn)`` in one write transaction (deletes copy pages too,
        so the map may have to grow), retrying after a remap or growth."""
        self._check_writable()
        s = self._s
        with s.write_lock:
            self._check_open()
            while True:
                try:
                    with self._env.begin(write=True) as txn:
                        return op(txn)
                except lmdb.MapResizedError:
                    s.resize(0)
                except lmdb.MapFullError as e:
                    size = self._env.info()["map_size"]
                    if size >= s.max_map_size:
                        raise StoreFull("LMDB map is full") from e
                    s.resize(min(size * 2, s.max_map_size))
                except lmdb.Error as e:
                    raise _convert(e, what) from e

    def remove_many(self, oids: Iterable[bytes]) -> int:
        keys = list(oids)
        odb = self._odb
        return self._deleting(lambda txn: sum(1 for k in keys if txn.delete(k, db=odb)),
                              "remove_many")

    def remove_many_if_refs_unchanged(self, oids: Iterable[bytes], token: object) -> int | None:
        """gc's sweep step: delete ``oids`` only if no ref changed since
        :meth:`refs_token` returned ``token``; ``None`` (nothing deleted) if
        one did. The check and the deletes are one write transaction, so no
        writer's commit can land in between (see irmin.gc)."""
        keys = list(oids)
        odb, mdb = self._odb, self._mdb

        def sweep(txn: lmdb.Transaction) -> int | None:
            if txn.get(_COUNTER, db=mdb) != token:
                return None
            return sum(1 for k in keys if txn.delete(k, db=odb))

        return self._deleting(sweep, "remove_many_if_refs_unchanged")

    def exclusive(self, fn: Callable[[_TxnView], _T]) -> _T:
        """Run ``fn(view)`` inside one write transaction, holding this
        process's write lock: LMDB admits one write transaction at a time
        across every process, so no writer anywhere commits while ``fn``
        runs. ``view`` reads and deletes inside that transaction; its
        deletes commit when ``fn`` returns (and are discarded, and ``fn``
        run again, if the map has to grow)."""
        return self._deleting(lambda txn: fn(_TxnView(self, txn)), "exclusive")

    def _check_writable(self) -> None:
        self._check_open()
        if self.readonly:
            raise StoreError(f"store {self.uri} is open read-only")

    # -- durability and lifetime --------------------------------------------

    def flush(self) -> None:
        """fsync everything committed so far (needed only with ``sync=false``)."""
        self._check_open()
        if self.readonly:
            return
        try:
            self._env.sync(True)
        except lmdb.Error as e:
            raise _convert(e, "flush") from e

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        s = self._s
        with _envs_lock:
            if self in s.handles:
                s.handles.remove(self)
            s.refcount -= 1
            last = s.refcount == 0
            if last:
                _envs.pop(self.path, None)
        if last:
            if not self.readonly:
                try:
                    self._env.sync(True)
                except lmdb.Error:
                    pass
            s.close()

    def stats(self) -> dict[str, int]:
        """Map size and entry counts (for tools and tests)."""
        self._check_open()
        self._enter()
        try:
            with self._env.begin() as txn:
                ost = txn.stat(self._odb)
                return {
                    "map_size": self._env.info()["map_size"],
                    "objects": ost["entries"],
                    "refs": txn.stat(self._rdb)["entries"],
                    # pages holding objects (what gc gives back to LMDB's free list)
                    "object_bytes": ost["psize"] * (ost["branch_pages"] + ost["leaf_pages"]
                                                    + ost["overflow_pages"]),
                }
        finally:
            self._leave()


class _TxnView:
    """Reads and deletes inside gc's exclusive write transaction."""

    def __init__(self, b: LmdbBackend, txn: lmdb.Transaction) -> None:
        self._txn, self._odb, self._rdb = txn, b._odb, b._rdb

    def get(self, oid: bytes) -> bytes | None:
        return self._txn.get(oid, db=self._odb)  # type: ignore[no-any-return]

    def get_many(self, oids: Iterable[bytes]) -> dict[bytes, bytes]:
        get, odb = self._txn.get, self._odb
        out = {}
        for oid in oids:
            v = get(oid, db=odb)
            if v is not None:
                out[oid] = v
        return out

    def list_refs(self, prefix: str = "") -> dict[str, bytes]:
        return _txn_refs(self._txn, prefix.encode(), self._rdb)

    def remove_many(self, oids: Iterable[bytes]) -> int:
        delete, odb = self._txn.delete, self._odb
        return sum(1 for k in oids if delete(k, db=odb))


def _int_param(params: dict[str, str], key: str, default: int) -> int:
    if key not in params:
        return default
    try:
        v = int(params[key])
    except ValueError as e:
        raise InvalidURI(f"option {key}={params[key]!r} is not an integer") from e
    if v <= 0:
        raise InvalidURI(f"option {key} must be positive")
    return v


def open_lmdb(path: str, params: dict[str, str]) -> LmdbBackend:
    """Open (creating if needed) the LMDB store in directory ``path``."""
    if not path:
        raise InvalidURI("lmdb: needs a directory path, e.g. lmdb:./store")
    known = {"sync", "map_size", "max_map_size", "readonly"}
    unknown = set(params) - known
    if unknown:
        raise InvalidURI(f"unknown lmdb: options {sorted(unknown)}; known: {sorted(known)}")
    query = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    uri = f"lmdb:{path}" + (f"?{query}" if query else "")
    return LmdbBackend(
        uri, path,
        sync=bool_param(params, "sync", True),
        map_size=_int_param(params, "map_size", DEFAULT_MAP_SIZE),
        max_map_size=_int_param(params, "max_map_size", DEFAULT_MAX_MAP_SIZE),
        readonly=bool_param(params, "readonly", False),
    )
