"""The backend contract: bytes by id, and refs moved by compare-and-set.

A backend knows nothing of trees or commits. It stores *opaque object bytes*
under an id the caller computed (the core uses git's canonical form
``b"<type> <size>\\0" + body`` and its SHA-1), and *refs*: names such as
``refs/heads/main`` that hold an object id. Everything above is built on the
few methods here, which is what lets memory, LMDB, a block device and a git
directory serve the same store (Irmin's content-addressable + atomic-write
pair, dulwich's ``set_if_equals``).

Rules every backend keeps (the conformance suite in tests/ checks them):

* ``put`` is idempotent; ids are raw bytes (20 for SHA-1), never hex.
* A ref moves only through ``cas_ref`` / ``apply``; a failed swap returns
  ``False`` and changes nothing.
* ``apply`` is the atomic batch: its objects are stored and then all its ref
  expectations are checked and all its ref updates applied together, or none
  of the ref updates is. A ref therefore never names an object the store
  does not hold.
* ``flush`` is the durability point. With ``durable=True`` (the default for
  persistent backends) every ``apply``/``cas_ref`` is durable on return.
* Thread-safe. Backends with ``multi_process`` set are also safe across
  processes, and report ref changes made by other processes to subscribers.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import NamedTuple, Protocol, TypeVar

from .errors import InvalidRefName, StoreClosed, StoreError

_T = TypeVar("_T")

#: (name, old id or None, new id or None)
RefChange = tuple[str, bytes | None, bytes | None]
RefListener = Callable[[RefChange], None]


class RefUpdate(NamedTuple):
    """One compare-and-set inside an atomic ``apply`` (a named tuple: one is
    made per commit).

    ``expected`` is the id the ref must hold (``None``: it must not exist);
    ``new`` is the id to store (``None``: delete the ref).
    """

    name: str
    expected: bytes | None
    new: bytes | None


class SweepView(Protocol):
    """What :meth:`Backend.exclusive` gives its function: reads that see the
    store as it is while writers are held off, and deletion."""

    def get(self, oid: bytes) -> bytes | None: ...

    def get_many(self, oids: Iterable[bytes]) -> dict[bytes, bytes]: ...

    def list_refs(self, prefix: str = "") -> dict[str, bytes]: ...

    def remove_many(self, oids: Iterable[bytes]) -> int: ...


class WriteGate:
    """Many writers or one exclusive holder (gc's sweep), in one process.

    Writers enter :meth:`shared`; :meth:`exclusive` waits until none is
    inside and lets no new one in meanwhile (so a busy writer pool cannot
    starve gc). Not re-entrant for the exclusive holder's own writes."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._writers = 0
        self._excl = False
        self._waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._excl or self._waiting:
                self._cond.wait()
            self._writers += 1
        try:
            yield
        finally:
            with self._cond:
                self._writers -= 1
                if not self._writers:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                while self._excl or self._writers:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._excl = True
        try:
            yield
        finally:
            with self._cond:
                self._excl = False
                self._cond.notify_all()


_good_names: set[str] = set()


def check_ref_name(name: str) -> str:
    """Refuse names git would refuse (``git check-ref-format`` rules)."""
    if name in _good_names:
        return name
    bad = (
        not name
        or name.startswith("/")
        or name.endswith("/")
        or name.endswith(".")
        or name.endswith(".lock")
        or "//" in name
        or ".." in name
        or "@{" in name
        or name == "@"
        or any(c in name for c in " ~^:?*[\\\x7f")
        or any(ord(c) < 32 for c in name)
        or any(part.startswith(".") for part in name.split("/"))
    )
    if bad:
        raise InvalidRefName(f"invalid ref name: {name!r}")
    if len(_good_names) < 4096:
        _good_names.add(name)
    return name


class Backend(ABC):
    """Bytes-level storage: objects by id and refs by compare-and-set."""

    #: True when several processes may open the same store at once.
    multi_process: bool = False
    #: True when the data outlives the process.
    persistent: bool = False

    def __init__(self, uri: str, *, durable: bool = True) -> None:
        self.uri = uri
        self.durable = durable
        self._closed = False
        self._listeners: list[RefListener] = []
        self._listeners_lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._poller_stop = threading.Event()
        self.poll_interval = 0.05

    # -- objects -----------------------------------------------------------

    @abstractmethod
    def get(self, oid: bytes) -> bytes | None:
        """The bytes stored under ``oid``, or ``None``."""

    @abstractmethod
    def has(self, oid: bytes) -> bool:
        """Whether ``oid`` is stored."""

    def put(self, oid: bytes, data: bytes) -> None:
        """Store ``data`` under ``oid`` (idempotent)."""
        self.put_many(((oid, data),))

    @abstractmethod
    def put_many(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Store many objects in one write (atomic where the backend can)."""

    def get_many(self, oids: Iterable[bytes]) -> dict[bytes, bytes]:
        """The stored objects among ``oids`` (missing ones are left out)."""
        out: dict[bytes, bytes] = {}
        for oid in oids:
            data = self.get(oid)
            if data is not None:
                out[oid] = data
        return out

    @abstractmethod
    def iter_ids(self) -> Iterator[bytes]:
        """Every stored object id, in no particular order."""

    @abstractmethod
    def remove_many(self, oids: Iterable[bytes]) -> int:
        """Delete objects (garbage collection only); returns how many went."""

    def exclusive(self, fn: Callable[[SweepView], _T]) -> _T:
        """Run ``fn(view)`` while no writer can commit (gc's sweep).

        While ``fn`` runs, no ``apply``/``put_many`` of this store lands
        (threads, and other processes where the backend can exclude them),
        so what ``fn`` reads through ``view`` (objects, refs) cannot change
        under it and the ids it deletes with ``view.remove_many`` cannot be
        re-created and referenced meanwhile. ``fn`` may be called again if
        the backend has to retry (e.g. LMDB growing its map): keep it
        re-runnable. Writers wait while it runs, so keep it short.

        Optional: a backend that cannot hold its writers off keeps this
        default, which refuses (gc then sweeps with
        ``remove_many_if_refs_unchanged`` instead).
        """
        raise StoreError(f"{type(self).__name__} cannot hold its writers off (no exclusive access)")

    # -- refs --------------------------------------------------------------

    @abstractmethod
    def get_ref(self, name: str) -> bytes | None:
        """The id a ref holds, or ``None``."""

    @abstractmethod
    def list_refs(self, prefix: str = "") -> dict[str, bytes]:
        """All refs whose name starts with ``prefix``."""

    def cas_ref(self, name: str, expected: bytes | None, new: bytes | None) -> bool:
        """Set ``name`` to ``new`` if it holds ``expected``; ``None`` is absent."""
        return self.apply((), (RefUpdate(name, expected, new),))

    def delete_ref(self, name: str) -> bool:
        """Delete a ref whatever it holds; ``False`` if it did not exist."""
        while True:
            current = self.get_ref(name)
            if current is None:
                return False
            if self.cas_ref(name, current, None):
                return True

    @abstractmethod
    def apply(
        self,
        objects: Iterable[tuple[bytes, bytes]],
        refs: Iterable[RefUpdate] = (),
    ) -> bool:
        """The atomic batch: store ``objects``, then apply every ref update if
        all expectations hold (else none, returning ``False``). After a
        ``False`` the objects may or may not be stored: a caller that retries
        passes them again."""

    # -- durability and lifetime --------------------------------------------

    def flush(self) -> None:
        """Make every write so far durable."""

    def close(self) -> None:
        """Release files and threads; idempotent."""
        self._poller_stop.set()
        poller = self._poller
        if poller is not None and poller is not threading.current_thread():
            poller.join(timeout=5)
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"store {self.uri} is closed")

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uri}>"

    # -- change notification ----------------------------------------------

    def subscribe(self, listener: RefListener) -> Callable[[], None]:
        """Call ``listener(change)`` after every ref change; returns an
        unsubscribe function.

        Changes made through this handle are reported right after they are
        applied, in the writer's thread. For ``multi_process`` backends a
        poller thread also reports changes made by other processes (and by
        other handles on the same files).
        """
        with self._listeners_lock:
            self._listeners.append(listener)
            if self.multi_process and self._poller is None:
                self._start_poller()

        def unsubscribe() -> None:
            with self._listeners_lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _notify(self, changes: Iterable[RefChange]) -> None:
        if not self._listeners:  # the common case, without the lock
            return
        with self._listeners_lock:
            listeners = list(self._listeners)
        if not listeners:
            return
        for change in changes:
            if change[1] == change[2]:
                continue
            if not self._seen_refs_update(change):
                continue  # the poller has already reported it
            for listener in listeners:
                listener(change)

    # Poller: compares a cheap change token, then the ref table, so that
    # changes from other processes reach subscribers.
    def refs_token(self) -> object:
        """A value that changes whenever any ref changes (default: the refs)."""
        return self.list_refs()

    def _start_poller(self) -> None:
        self._seen_refs = dict(self.list_refs())
        self._seen_lock = threading.Lock()
        self._seen_gen = 0  # bumped by every change made through this handle
        self._poller = threading.Thread(
            target=self._poll_loop, name=f"irmin-refs-poller {self.uri}", daemon=True
        )
        self._poller.start()

    def _seen_refs_update(self, change: RefChange) -> bool:
        """Record a change made through this handle; ``False`` when the
        poller already saw (and reported) the ref at its new value."""
        if self._poller is None:
            return True
        with self._seen_lock:
            name, _old, new = change
            self._seen_gen += 1
            if self._seen_refs.get(name) == new:
                return False
            if new is None:
                self._seen_refs.pop(name, None)
            else:
                self._seen_refs[name] = new
            return True

    def _poll_loop(self) -> None:
        token = None
        while not self._poller_stop.wait(self.poll_interval):
            try:
                new_token = self.refs_token()
                if new_token == token:
                    continue
                token = new_token
                with self._seen_lock:
                    gen = self._seen_gen
                current = self.list_refs()
            except Exception:  # the store may be closing; try again later
                continue
            with self._seen_lock:
                if self._seen_gen != gen:
                    # A write through this handle landed while we listed:
                    # ``current`` may predate it; look again next round
                    # rather than report it backwards.
                    token = None
                    continue
                seen = self._seen_refs
                changes: list[RefChange] = []
                for name in seen.keys() | current.keys():
                    old, new = seen.get(name), current.get(name)
                    if old != new:
                        changes.append((name, old, new))
                self._seen_refs = dict(current)
            if changes:
                with self._listeners_lock:
                    listeners = list(self._listeners)
                for change in sorted(changes):
                    for listener in listeners:
                        try:
                            listener(change)
                        except Exception:  # a listener's bug must not stop the poller
                            pass


def check_expectations(
    current: Mapping[str, bytes], updates: Iterable[RefUpdate]
) -> list[RefChange] | None:
    """Shared CAS logic: the changes to apply, or ``None`` if one fails."""
    changes: list[RefChange] = []
    for u in updates:
        have = current.get(u.name)
        if have != u.expected:
            return None
        changes.append((u.name, have, u.new))
    return changes
