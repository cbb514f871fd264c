"""git's pkt-line framing, without I/O (as dulwich's ``PktLineParser``).

A pkt-line is four hex digits of length (including themselves) and a
payload; ``0000`` is a flush, ``0001`` a delimiter and ``0002`` a response
end (protocol v2). Requests over smart HTTP arrive whole, so
:func:`parse` reads a buffer at once; replies are built with :func:`pkt`
and :func:`sideband`.
"""

from __future__ import annotations

from collections.abc import Iterator

FLUSH = b"0000"
DELIM = b"0001"
RESPONSE_END = b"0002"

#: Markers :func:`parse` yields for the special packets.
FLUSH_PKT = "flush"
DELIM_PKT = "delim"
END_PKT = "end"

#: Largest payload of one side-band-64k packet (65520 - 4 header - 1 band).
SIDEBAND_MAX = 65515


class ProtocolError(ValueError):
    """The client sent something that is not valid pkt-line framing."""


def pkt(data: bytes | str) -> bytes:
    if isinstance(data, str):
        data = data.encode()
    if len(data) > 65516:
        raise ValueError("pkt-line payload too long")
    return b"%04x%s" % (len(data) + 4, data)


def parse(buf: bytes) -> Iterator[bytes | str]:
    """Each packet of ``buf``: payload bytes, or one of the marker strings."""
    i, n = 0, len(buf)
    while i < n:
        head = buf[i : i + 4]
        if len(head) < 4:
            raise ProtocolError("truncated pkt-line length")
        try:
            size = int(head, 16)
        except ValueError:
            raise ProtocolError(f"bad pkt-line length {head!r}") from None
        if size == 0:
            yield FLUSH_PKT
            i += 4
        elif size == 1:
            yield DELIM_PKT
            i += 4
        elif size == 2:
            yield END_PKT
            i += 4
        elif size < 4 or i + size > n:
            raise ProtocolError("truncated or invalid pkt-line")
        else:
            yield buf[i + 4 : i + size]
            i += size


def split_at_flush(buf: bytes) -> tuple[list[bytes | str], int]:
    """Packets up to and including the first flush, and the offset after it
    (used by receive-pack, whose pack follows the commands' flush)."""
    out: list[bytes | str] = []
    i, n = 0, len(buf)
    while i < n:
        head = buf[i : i + 4]
        try:
            size = int(head, 16)
        except ValueError:
            raise ProtocolError(f"bad pkt-line length {head!r}") from None
        if size == 0:
            out.append(FLUSH_PKT)
            return out, i + 4
        if size < 4 or i + size > n:
            raise ProtocolError("truncated or invalid pkt-line")
        out.append(buf[i + 4 : i + size])
        i += size
    raise ProtocolError("commands not terminated by a flush")


def sideband(band: int, data: bytes) -> Iterator[bytes]:
    """``data`` as side-band-64k packets on ``band`` (1 pack, 2 progress, 3 error)."""
    b = bytes((band,))
    for i in range(0, len(data), SIDEBAND_MAX):
        chunk = data[i : i + SIDEBAND_MAX]
        yield b"%04x" % (len(chunk) + 5) + b + chunk
