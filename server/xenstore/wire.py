"""The Xenstore wire format, without I/O (see shared/xenstore.md).

A packet is a 16-byte header ``(type, req_id, tx_id, len)`` in host byte
order followed by ``len`` payload bytes. :class:`Parser` turns a byte stream
into complete packets and reports an oversized one (the daemons drop such a
connection); the ``encode_*`` helpers build replies in one ``bytes``.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct("<IIII")
HEADER_LEN = HEADER.size
PAYLOAD_MAX = 4096

CONTROL = 0
DIRECTORY = 1
READ = 2
GET_PERMS = 3
WATCH = 4
UNWATCH = 5
TRANSACTION_START = 6
TRANSACTION_END = 7
INTRODUCE = 8
RELEASE = 9
GET_DOMAIN_PATH = 10
WRITE = 11
MKDIR = 12
RM = 13
SET_PERMS = 14
WATCH_EVENT = 15
ERROR = 16
IS_DOMAIN_INTRODUCED = 17
RESUME = 18
SET_TARGET = 19
RESTRICT = 20
RESET_WATCHES = 21
DIRECTORY_PART = 22

NAMES = {
    CONTROL: "CONTROL", DIRECTORY: "DIRECTORY", READ: "READ", GET_PERMS: "GET_PERMS",
    WATCH: "WATCH", UNWATCH: "UNWATCH", TRANSACTION_START: "TRANSACTION_START",
    TRANSACTION_END: "TRANSACTION_END", INTRODUCE: "INTRODUCE", RELEASE: "RELEASE",
    GET_DOMAIN_PATH: "GET_DOMAIN_PATH", WRITE: "WRITE", MKDIR: "MKDIR", RM: "RM",
    SET_PERMS: "SET_PERMS", WATCH_EVENT: "WATCH_EVENT", ERROR: "ERROR",
    IS_DOMAIN_INTRODUCED: "IS_DOMAIN_INTRODUCED", RESUME: "RESUME",
    SET_TARGET: "SET_TARGET", RESTRICT: "RESTRICT", RESET_WATCHES: "RESET_WATCHES",
    DIRECTORY_PART: "DIRECTORY_PART",
}

#: The errno names a reply may carry (xs_wire.h's xsd_errors).
ERRORS = (
    "EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO",
    "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM",
)

OK = b"OK\0"


class XsError(Exception):
    """A request failed with a Xenstore errno name (``ENOENT``...)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class Oversize(Exception):
    """A packet announced more than PAYLOAD_MAX bytes."""


_pack = HEADER.pack
_ERROR_PAYLOAD = {n: n.encode() + b"\0" for n in ERRORS}


def encode(type_: int, req_id: int, tx_id: int, payload: bytes) -> bytes:
    """One packet; a payload over the limit becomes ``ERROR E2BIG``."""
    if len(payload) > PAYLOAD_MAX:
        return _pack(ERROR, req_id, tx_id, 6) + b"E2BIG\0"
    return _pack(type_, req_id, tx_id, len(payload)) + payload


def encode_error(req_id: int, tx_id: int, name: str) -> bytes:
    p = _ERROR_PAYLOAD[name]
    return _pack(ERROR, req_id, tx_id, len(p)) + p


def encode_event(path: bytes, token: bytes) -> bytes | None:
    """A watch event (None when it would exceed the payload limit)."""
    payload = path + b"\0" + token + b"\0"
    if len(payload) > PAYLOAD_MAX:
        return None
    return _pack(WATCH_EVENT, 0, 0, len(payload)) + payload


class Parser:
    """Incremental framing: ``feed(data)`` returns the complete packets as
    ``(type, req_id, tx_id, payload)``; raises :class:`Oversize`."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[tuple[int, int, int, bytes]]:
        buf = self._buf + data if self._buf else data
        out = []
        pos = 0
        n = len(buf)
        unpack = HEADER.unpack_from
        while n - pos >= HEADER_LEN:
            t, r, x, ln = unpack(buf, pos)
            if ln > PAYLOAD_MAX:
                self._buf = b""
                raise Oversize(ln)
            end = pos + HEADER_LEN + ln
            if end > n:
                break
            out.append((t, r, x, buf[pos + HEADER_LEN:end]))
            pos = end
        self._buf = buf[pos:] if pos < n else b""
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


def strings(payload: bytes) -> list[bytes]:
    """The NUL-terminated strings of a payload, as the C daemon counts them
    (an unterminated tail is ignored)."""
    parts = payload.split(b"\0")
    parts.pop()  # the tail after the last NUL (empty if terminated)
    return parts


def onearg(payload: bytes) -> bytes:
    """The single NUL-terminated argument; EINVAL otherwise."""
    if not payload or payload.find(b"\0") != len(payload) - 1:
        raise XsError("EINVAL")
    return payload[:-1]
