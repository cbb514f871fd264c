"""``memory:`` — objects and refs in dicts, for tests, caches and scratch stores.

``memory:`` opens a fresh private store; ``memory:NAME`` opens a store shared
by every handle opened with the same NAME in this process (handy for tests of
several handles, like Irmin's in-memory backend with a shared root).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from .base import Backend, RefUpdate, check_expectations, check_ref_name


_T = TypeVar("_T")


class _Shared:
    def __init__(self) -> None:
        self.objects: dict[bytes, bytes] = {}
        self.refs: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.handles: list[MemoryBackend] = []


_named: dict[str, _Shared] = {}
_named_lock = threading.Lock()


class MemoryBackend(Backend):
    """Dict-backed store; thread-safe, not persistent."""

    def __init__(self, uri: str = "memory:", name: str = "", durable: bool = True) -> None:
        super().__init__(uri, durable=durable)
        if name:
            with _named_lock:
                self._shared = _named.setdefault(name, _Shared())
        else:
            self._shared = _Shared()
        self._objects = self._shared.objects
        self._refs = self._shared.refs
        self._lock = self._shared.lock
        with self._lock:
            self._shared.handles.append(self)

    def get(self, oid: bytes) -> bytes | None:
        return self._objects.get(oid)

    def has(self, oid: bytes) -> bool:
        return oid in self._objects

    def put(self, oid: bytes, data: bytes) -> None:
        self._check_open()
        with self._lock:
            self._objects.setdefault(oid, data)

    def put_many(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        self._check_open()
        items = list(items)
        with self._lock:
            self._put_locked(items)

    def _put_locked(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        objects = self._objects
        for oid, data in items:
            objects.setdefault(oid, data)

    def exclusive(self, fn: Callable[[_LockedView], _T]) -> _T:
        """Run ``fn(view)`` holding the store's lock, which every write
        (objects and refs of an ``apply`` together) takes: nothing lands
        meanwhile. (``memory:`` lives in one process.)"""
        self._check_open()
        with self._lock:
            return fn(_LockedView(self))

    def iter_ids(self) -> Iterator[bytes]:
        return iter(list(self._objects))

    def remove_many(self, oids: Iterable[bytes]) -> int:
        n = 0
        with self._lock:
            for oid in oids:
                if self._objects.pop(oid, None) is not None:
                    n += 1
        return n

    def get_ref(self, name: str) -> bytes | None:
        return self._refs.get(name)

    def list_refs(self, prefix: str = "") -> dict[str, bytes]:
        with self._lock:
            return {k: v for k, v in self._refs.items() if k.startswith(prefix)}

    def apply(self, objects: Iterable[tuple[bytes, bytes]], refs: Iterable[RefUpdate] = ()) -> bool:
        self._check_open()
        items = objects if type(objects) is list else list(objects)
        updates = refs if type(refs) is tuple else list(refs)
        for u in updates:
            check_ref_name(u.name)
        with self._lock:  # objects and refs together: gc's sweep sees both or neither
            self._put_locked(items)
            if not updates:
                return True
            changes = check_expectations(self._refs, updates)
            if changes is None:
                return False
            for name, _old, new in changes:
                if new is None:
                    self._refs.pop(name, None)
                else:
                    self._refs[name] = new
            handles = list(self._shared.handles)
        for h in handles:
            h._notify(changes)
        return True

    def close(self) -> None:
        with self._lock:
            if self in self._shared.handles:
                self._shared.handles.remove(self)
        super().close()


class _LockedView:
    """:meth:`MemoryBackend.exclusive`'s view (the lock is already held)."""

    def __init__(self, b: MemoryBackend) -> None:
        self._objects, self._refs = b._objects, b._refs
        self.get = b._objects.get

    def get_many(self, oids: Iterable[bytes]) -> dict[bytes, bytes]:
        objs = self._objects
        return {o: objs[o] for o in oids if o in objs}

    def list_refs(self, prefix: str = "") -> dict[str, bytes]:
        return {k: v for k, v in self._refs.items() if k.startswith(prefix)}

    def remove_many(self, oids: Iterable[bytes]) -> int:
        pop = self._objects.pop
        return sum(1 for o in oids if pop(o, None) is not None)


def open_memory(path: str, params: dict[str, str]) -> MemoryBackend:
    return MemoryBackend(f"memory:{path}", name=path)
