"""Simulated guest domains: what INTRODUCE, RELEASE, RESUME and SET_TARGET
manage. Without a hypervisor there are no rings; an introduced domain N gets
a Unix socket ``<domain-dir>/<N>`` on which every connection *is* domain N
(unprivileged, home ``/local/domain/N``). See docs/xenstored.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class Domain:
    domid: int
    gfn: int = 0
    evtchn: int = 0
    target: int | None = None
    server: object | None = None   # the asyncio server of its socket
    socket_path: str | None = None
    conns: set = field(default_factory=set)  # type: ignore[type-arg]
    outstanding: int = 0           # requests whose reply (or events) are not yet sent


_ATOI = re.compile(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)")


def atoi(arg: bytes) -> int:
    """C ``atoi``: the leading decimal number, 0 when there is none."""
    m = _ATOI.match(arg)
    return int(m.group(1)) if m else 0


def parse_domid(arg: bytes) -> int:
    """A domid as the C daemon reads it (``atoi``, as an unsigned int)."""
    return atoi(arg) & 0xFFFFFFFF
