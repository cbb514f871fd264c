"""XS_CONTROL commands (privileged only): ``help``, ``print``, ``quota``,
``quota-soft``, ``check``, ``log``, ``logfile``, ``memreport``, plus
``commit`` (wait until every change is durable) and ``stats``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .wire import OK, XsError

if TYPE_CHECKING:
    from .daemon import Server

log = logging.getLogger("irmin.xenstored")

HELP = (
    "check\t\n"
    "log\ton|off\n"
    "logfile\t<file>\n"
    "memreport\t[<file>]\n"
    "print\t<string>\n"
    "quota\t[set <name> <val>|<domid>]\n"
    "quota-soft\t[set <name> <val>]\n"
    "stats\t\n"
    "help\t\n"
)


def run(server: Server, args: list[bytes]) -> bytes:
    if not args:
        raise XsError("EINVAL")
    cmd = args[0].decode("latin-1")
    rest = args[1:]
    if cmd == "help":
        return HELP.encode() + b"\0"
    if cmd == "print":
        if len(rest) != 1:
            raise XsError("EINVAL")
        log.info("control print: %s", rest[0].decode("latin-1"))
        return OK
    if cmd == "check":
        server.check()
        return OK
    if cmd in ("log", "logfile", "memreport"):
        return OK
    if cmd == "quota":
        if not rest:
            return server.quota.report().encode() + b"\0"
        if rest[0] == b"set":
            if len(rest) != 3 or not rest[2].isdigit():
                raise XsError("EINVAL")
            if not server.quota.set(rest[1].decode("latin-1"), int(rest[2])):
                raise XsError("EINVAL")
            return OK
        if len(rest) == 1 and rest[0].isdigit():
            d = int(rest[0])
            if d not in server.domains:
                raise XsError("ENOENT")
            vals = (("nodes", server.counts.get(d)), ("watches", server.domain_watches(d)),
                    ("transactions", server.domain_transactions(d)),
                    ("outstanding", server.domain_outstanding(d)), ("memory", 0))
            return (f"Domain {d}:\n" + "".join(f"{k:<16}: {v:8d}\n" for k, v in vals)).encode() + b"\0"
        raise XsError("EINVAL")
    if cmd == "quota-soft":
        return b"Quota settings:\n\0"
    if cmd == "stats":
        st = server.storage
        return (f"commits: {st.commits}\nchanges: {st.seq}\ndurable: {st.done}\n"
                f"connections: {len(server.conns)}\n").encode() + b"\0"
    raise XsError("EINVAL")
