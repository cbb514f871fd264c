"""Permission lists: ``<r|w|b|n><domid>`` entries, the first is the owner.

A permission list is a tuple of ``(letter, domid)``; :func:`encode` gives its
wire form (``n0\\0r5\\0``), :func:`parse` the reverse (EINVAL on a bad entry).
"""

from __future__ import annotations

from .wire import XsError

READ = 1
WRITE = 2
OWNER = 4
ALL = READ | WRITE | OWNER
_BITS = {"r": READ, "w": WRITE, "b": READ | WRITE, "n": 0}

Perms = tuple[tuple[str, int], ...]

DEFAULT: Perms = (("n", 0),)


def encode(perms: Perms) -> bytes:
    return b"".join(b"%s%d\0" % (c.encode(), d) for c, d in perms)


def text(perms: Perms) -> str:
    return "".join(f"{c}{d}\n" for c, d in perms)


def parse_text(s: str) -> Perms:
    return tuple((line[0], int(line[1:])) for line in s.split("\n") if line)


def parse(items: list[bytes]) -> Perms:
    out = []
    for it in items:
        if len(it) < 2 or chr(it[0]) not in _BITS:
            raise XsError("EINVAL")
        num = it[1:]
        if not num.isdigit():
            raise XsError("EINVAL")
        d = int(num)
        if d > 0xFFFF:
            raise XsError("EINVAL")
        out.append((chr(it[0]), d))
    if not out:
        raise XsError("EINVAL")
    return tuple(out)


def for_conn(perms: Perms, domid: int, privileged: bool, target: int | None = None) -> int:
    """The access a connection has to a node (C ``perm_for_conn``)."""
    owner = perms[0][1]
    if privileged or owner == domid or (target is not None and owner == target):
        return ALL
    for c, d in perms[1:]:
        if d == domid or (target is not None and d == target):
            return _BITS[c]
    return _BITS[perms[0][0]]
