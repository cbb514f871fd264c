"""Simulated guest domains: what INTRODUCE, RELEASE, RESUME and SET_TARGET
manage. Without a hypervisor there are no rings; an introduced domain N gets
a Unix socket ``<domain-dir>/<N>`` on which every connection *is* domain N
(unprivileged, home ``/local/domain/N``). See docs/xenstored.md.
"""

from __future__ import annotations

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


def parse_domid(arg: bytes) -> int:
    """A domid as the C daemon reads it (decimal, < 65536); ValueError else."""
    if not arg.isdigit():
        raise ValueError(arg)
    d = int(arg)
    if d >= 0x10000:
        raise ValueError(arg)
    return d
