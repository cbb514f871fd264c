"""``git:PATH`` — a real git directory that any git tool can open.

Objects are git's canonical form ``b"<type> <size>\\0" + body`` under the
SHA-1 of those bytes, so they are written as ordinary loose objects (zlib of
exactly those bytes) and read back from loose files or, after ``git gc``, from
packs through dulwich's object store. Refs are ordinary git refs: loose files
``refs/...`` holding hex ids, plus ``packed-refs``.

Compare-and-set uses git's own protocol, so it is safe against other
processes *and* the real ``git``: a ref is locked by creating
``<ref>.lock`` with ``O_EXCL``, checked, written into the lock file and
renamed over the ref. ``apply`` takes every ref's lock (in sorted order, so
two of our writers cannot deadlock) before checking any expectation, which
dulwich's one-ref ``set_if_equals`` cannot do; that is why the ref code is
here rather than dulwich's. A failed expectation changes no ref.

Limits (the same as git's "files" ref backend): the renames of a multi-ref
``apply`` are not one atomic step, so a crash in the middle, or a reader
looking between two renames, can see some of the updates and not others. No
reflogs are written. ``remove_many`` deletes loose objects only; objects in
packs stay until ``git gc --prune=now`` (and are not counted).

URI options: ``bare`` (default true, used only when creating), ``sync``
(default true: fsync objects and refs before returning).
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from .base import Backend, RefChange, RefUpdate, WriteGate, check_expectations, check_ref_name
from .errors import InvalidURI, MalformedObject, NotFormatted, StoreError, StoreFull
from .registry import bool_param

__all__ = ["GitBackend", "open_git"]

_T = TypeVar("_T")
_TYPES = {b"blob": 3, b"tree": 2, b"commit": 1, b"tag": 4}
_TYPE_NAMES = {v: k for k, v in _TYPES.items()}
LOCK_TIMEOUT = 10.0


def _os_error(e: OSError, what: str) -> StoreError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFull(f"{what}: {e}")
    return StoreError(f"{what}: {e}")


def check_object(oid: bytes, data: bytes) -> None:
    """Refuse bytes that are not a git object with this id: a loose object's
    file name *is* its id, so a mismatch would corrupt the repository."""
    nul = data.find(b"\0", 0, 32)
    head = data[:nul] if nul > 0 else b""
    kind, _, size = head.partition(b" ")
    if kind not in _TYPES or not size.isdigit() or int(size) != len(data) - nul - 1:
        raise MalformedObject(f"not a git object (header {data[:32]!r})")
    if hashlib.sha1(data).digest() != oid:
        raise MalformedObject(f"object id {oid.hex()} is not the SHA-1 of its bytes")


class _RefLock:
    """git's ``<file>.lock`` protocol: create exclusively, write, rename."""

    def __init__(self, path: str, timeout: float = LOCK_TIMEOUT) -> None:
        self.path = path
        self.lock_path = path + ".lock"
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while True:
            try:
                self.fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                return
            except FileExistsError:
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"{self.lock_path} is held (another git process, or a stale lock "
                        "left by a crash: remove it if no git is running)") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.02)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(self.lock_path), exist_ok=True)
            except NotADirectoryError as e:
                raise StoreError(f"cannot lock {path}: a ref is in the way ({e})") from e

    def commit(self, content: bytes, durable: bool) -> None:
        os.write(self.fd, content)
        if durable:
            os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        os.replace(self.lock_path, self.path)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            try:
                os.unlink(self.lock_path)
            except FileNotFoundError:
                pass


class GitBackend(Backend):
    """A git directory (bare or the ``.git`` of a work tree)."""

    multi_process = True
    persistent = True

    def __init__(self, uri: str, gitdir: str, *, sync: bool = True) -> None:
        super().__init__(uri, durable=sync)
        from dulwich.repo import Repo

        self.gitdir = gitdir
        self._objdir = os.path.join(gitdir, "objects")
        try:
            self._repo = Repo(gitdir)
        except Exception as e:
            raise NotFormatted(f"{gitdir} is not a git directory: {e}") from e
        self._store = self._repo.object_store
        self._store_lock = threading.Lock()  # dulwich's pack cache is not thread-safe
        self._refs_lock = threading.Lock()  # our own threads queue here, not on lock files
        self._gate = WriteGate()  # writers shared, gc's sweep exclusive (this process)

    # -- objects -----------------------------------------------------------

    def _loose_path(self, hexid: str) -> str:
        return os.path.join(self._objdir, hexid[:2], hexid[2:])

    def get(self, oid: bytes) -> bytes | None:
        if self._closed:
            self._check_open()
        hexid = oid.hex()
        try:
            with open(self._loose_path(hexid), "rb") as f:
                return zlib.decompress(f.read())
        except FileNotFoundError:
            pass
        except zlib.error as e:
            from .errors import CorruptStore

            raise CorruptStore(f"loose object {hexid} is damaged: {e}") from e
        except OSError as e:
            raise _os_error(e, f"get {hexid}") from e
        self._check_open()
        try:
            with self._store_lock:
                type_num, body = self._store.get_raw(hexid.encode())
        except KeyError:
            return None
        return _TYPE_NAMES[type_num] + b" %d\0" % len(body) + body

    def has(self, oid: bytes) -> bool:
        self._check_open()
        hexid = oid.hex()
        if os.path.exists(self._loose_path(hexid)):
            return True
        with self._store_lock:
            return bool(self._store.contains_packed(hexid.encode()))

    def put_many(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        self._check_open()
        with self._gate.shared():
            self._put_many(items)

    def _put_many(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        dirs: set[str] = set()
        for oid, data in items:
            check_object(oid, data)
            hexid = oid.hex()
            path = self._loose_path(hexid)
            if os.path.exists(path):
                continue  # (a packed copy is not looked for: a loose duplicate is harmless)
            d = os.path.dirname(path)
            try:
                os.makedirs(d, exist_ok=True)
                tmp = os.path.join(d, f"tmp_obj_{os.getpid()}_{threading.get_ident()}")
                with open(tmp, "wb") as f:
                    f.write(zlib.compress(data, 1))
                    if self.durable:
                        f.flush()
                        os.fsync(f.fileno())
                os.chmod(tmp, 0o444)
                os.replace(tmp, path)
            except OSError as e:
                raise _os_error(e, f"put {hexid}") from e
            dirs.add(d)
        if self.durable:
            for d in dirs:
                _fsync_dir(d)

    def iter_ids(self) -> Iterator[bytes]:
        self._check_open()
        with self._store_lock:
            hexids = set(self._store)
        return (bytes.fromhex(h.decode()) for h in hexids)

    def remove_many(self, oids: Iterable[bytes]) -> int:
        """Delete loose objects; packed ones need ``git gc --prune=now``."""
        self._check_open()
        n = 0
        for oid in oids:
            try:
                os.unlink(self._loose_path(oid.hex()))
                n += 1
            except FileNotFoundError:
                pass
            except OSError as e:
                raise _os_error(e, "remove") from e
        return n

    def exclusive(self, fn: Callable[[GitBackend], _T]) -> _T:
        """Run ``fn(view)`` while no writer *of this process* stores objects
        or moves refs (``view`` is this handle). Other processes, and the
        git CLI, are not held off: a git directory has no lock that every
        writer of objects takes. gc therefore also re-checks the refs
        before deleting (see docs/maintenance.md)."""
        self._check_open()
        with self._gate.exclusive():
            return fn(self)

    # -- refs --------------------------------------------------------------

    def _ref_path(self, name: str) -> str:
        return os.path.join(self.gitdir, *name.split("/"))

    def _packed_refs(self) -> dict[str, bytes]:
        try:
            with open(os.path.join(self.gitdir, "packed-refs"), "rb") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return {}
        out: dict[str, bytes] = {}
        for line in lines:
            if not line or line[:1] in (b"#", b"^"):
                continue
            hexid, _, name = line.partition(b" ")
            out[name.decode()] = bytes.fromhex(hexid.decode())
        return out

    def _read_loose(self, name: str) -> bytes | None:
        """The raw content of a loose ref file (hex id or ``ref: ...``)."""
        try:
            with open(self._ref_path(name), "rb") as f:
                return f.read().strip()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def _resolve(self, name: str) -> str:
        """Follow symbolic refs (HEAD → refs/heads/main) to the ref they name."""
        for _ in range(5):
            raw = self._read_loose(name)
            if raw is None or not raw.startswith(b"ref: "):
                return name
            name = raw[5:].decode()
        raise StoreError(f"symbolic ref loop at {name}")

    def _read(self, name: str, packed: dict[str, bytes] | None = None) -> bytes | None:
        raw = self._read_loose(name)
        if raw is not None:
            if raw.startswith(b"ref: "):
                return self._read(self._resolve(name), packed)
            try:
                return bytes.fromhex(raw.decode())
            except ValueError:
                from .errors import CorruptStore

                raise CorruptStore(f"ref {name} holds {raw!r}") from None
        if packed is None:
            packed = self._packed_refs()
        return packed.get(name)

    def get_ref(self, name: str) -> bytes | None:
        self._check_open()
        return self._read(name)

    def list_refs(self, prefix: str = "") -> dict[str, bytes]:
        """Refs under ``refs/`` (HEAD and other symbolic refs are left out)."""
        self._check_open()
        packed = self._packed_refs()
        out = {k: v for k, v in packed.items() if k.startswith(prefix)}
        root = os.path.join(self.gitdir, "refs")
        for dirpath, _dirs, files in os.walk(root):
            rel = os.path.relpath(dirpath, self.gitdir).replace(os.sep, "/")
            for fn in files:
                if fn.endswith(".lock"):
                    continue
                name = f"{rel}/{fn}"
                if not name.startswith(prefix):
                    continue
                raw = self._read_loose(name)
                if raw is None:  # deleted meanwhile
                    continue
                if raw.startswith(b"ref: "):
                    continue
                try:
                    out[name] = bytes.fromhex(raw.decode())
                except ValueError:
                    continue  # a half-written foreign file; not a ref
        return out

    def apply(self, objects: Iterable[tuple[bytes, bytes]],
              refs: Iterable[RefUpdate] = ()) -> bool:
        self._check_open()
        updates = list(refs)
        for u in updates:
            check_ref_name(u.name)
        with self._gate.shared():  # objects and refs: gc's sweep sees both or neither
            self._put_many(objects)
            if not updates:
                return True
            with self._refs_lock:
                changes = self._apply_refs(updates)
        if changes is None:
            return False
        self._notify(changes)
        return True

    def _apply_refs(self, updates: list[RefUpdate]) -> list[RefChange] | None:
        """Lock every ref, check every expectation, then write: git's protocol."""
        targets = {u.name: self._resolve(u.name) for u in updates}
        locks: dict[str, _RefLock] = {}
        packed_lock: _RefLock | None = None
        try:
            for target in sorted(set(targets.values())):
                locks[target] = _RefLock(self._ref_path(target))
            packed = self._packed_refs()
            current: dict[str, bytes] = {}
            for name, target in targets.items():
                have = self._read(target, packed)
                if have is not None:
                    current[name] = have
            changes = check_expectations(current, updates)
            if changes is None:
                return None
            final: dict[str, bytes | None] = {}
            for name, _old, new in changes:
                final[targets[name]] = new
            deleted_packed = [t for t, new in final.items() if new is None and t in packed]
            if deleted_packed:
                packed_lock = _RefLock(os.path.join(self.gitdir, "packed-refs"))
                self._rewrite_packed(packed_lock, set(deleted_packed))
                packed_lock = None
            for target, new in final.items():
                lock = locks[target]
                if new is None:
                    try:
                        os.unlink(self._ref_path(target))
                    except FileNotFoundError:
                        pass
                    lock.release()
                else:
                    lock.commit(new.hex().encode() + b"\n", self.durable)
            if self.durable:
                for d in {os.path.dirname(self._ref_path(t)) for t in final}:
                    _fsync_dir(d)
            return changes
        except OSError as e:
            raise _os_error(e, "ref update") from e
        finally:
            if packed_lock is not None:
                packed_lock.release()
            for lock in locks.values():
                lock.release()

    def _rewrite_packed(self, lock: _RefLock, drop: set[str]) -> None:
        try:
            with open(os.path.join(self.gitdir, "packed-refs"), "rb") as f:
                lines = f.read().splitlines(keepends=True)
        except FileNotFoundError:
            lock.release()
            return
        out: list[bytes] = []
        skipping = False
        for line in lines:
            if line.startswith(b"^"):
                if not skipping:
                    out.append(line)
                continue
            name = line.rstrip(b"\n").partition(b" ")[2].decode() if not line.startswith(b"#") else ""
            skipping = name in drop
            if not skipping:
                out.append(line)
        lock.commit(b"".join(out), self.durable)

    # -- lifetime ------------------------------------------------------------

    def flush(self) -> None:
        """Writes are fsynced as they happen when ``sync`` is on; with it off,
        sync the file system (coarse, but git has no journal to flush)."""
        self._check_open()
        if not self.durable:
            os.sync()

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        with self._store_lock:
            self._repo.close()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _find_gitdir(path: str) -> str | None:
    """``path`` itself if it is a git directory, its ``.git`` if a work tree."""
    if os.path.isfile(os.path.join(path, "HEAD")) and os.path.isdir(os.path.join(path, "objects")):
        return path
    dotgit = os.path.join(path, ".git")
    if os.path.isdir(dotgit):
        return dotgit
    if os.path.isfile(dotgit):  # linked work trees and submodules: "gitdir: <path>"
        with open(dotgit, encoding="utf-8") as f:
            line = f.read().strip()
        if line.startswith("gitdir: "):
            gitdir = os.path.normpath(os.path.join(path, line[len("gitdir: "):]))
            common = os.path.join(gitdir, "commondir")  # a linked work tree shares
            if os.path.isfile(common):                  # objects and refs with its main
                with open(common, encoding="utf-8") as f:
                    gitdir = os.path.normpath(os.path.join(gitdir, f.read().strip()))
            return gitdir
    return None


def open_git(path: str, params: dict[str, str]) -> GitBackend:
    """Open the git directory at ``path``, creating a repository if it is
    missing or empty (bare unless ``bare=false``; HEAD → refs/heads/main)."""
    if not path:
        raise InvalidURI("git: needs a path, e.g. git:./repo.git")
    known = {"bare", "sync"}
    unknown = set(params) - known
    if unknown:
        raise InvalidURI(f"unknown git: options {sorted(unknown)}; known: {sorted(known)}")
    from dulwich.repo import Repo

    path = os.path.abspath(path)
    gitdir = _find_gitdir(path) if os.path.isdir(path) else None
    if gitdir is None:
        if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
            raise NotFormatted(f"{path} exists and is not a git repository")
        try:
            os.makedirs(path, exist_ok=True)
            if bool_param(params, "bare", True):
                repo = Repo.init_bare(path, default_branch=b"main")
                gitdir = path
            else:
                repo = Repo.init(path, default_branch=b"main")
                gitdir = os.path.join(path, ".git")
            repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")
            repo.close()
        except OSError as e:
            raise _os_error(e, f"cannot create git repository at {path}") from e
    query = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    uri = f"git:{path}" + (f"?{query}" if query else "")
    return GitBackend(uri, gitdir, sync=bool_param(params, "sync", True))
