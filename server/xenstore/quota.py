"""Quotas for unprivileged domains, with the C xenstored's defaults."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class Quota:
    nodes: int = 1000              # nodes owned per domain (ENOSPC)
    watches: int = 128             # watches per domain (E2BIG)
    transactions: int = 10         # open transactions per domain (ENOSPC)
    outstanding: int = 20          # outstanding requests per domain
    transaction_nodes: int = 1024  # nodes accessed per transaction (ENOSPC)
    memory: int = 2621440          # reported only (not enforced)
    node_size: int = 2048          # bytes per node: value + 8 per perm + child names (ENOSPC)
    path_max: int = 2048           # path length below the domain's home (EINVAL)
    permissions: int = 5           # perms per node (ENOSPC)

    _HELP = {
        "nodes": "Nodes per domain",
        "watches": "Watches per domain",
        "transactions": "Transactions per domain",
        "outstanding": "Outstanding requests per domain",
        "transaction_nodes": "Max. number of accessed nodes per transaction",
        "memory": "Total Xenstore memory per domain (error level)",
        "node_size": "Max. size of a node",
        "path_max": "Max. length of a node path",
        "permissions": "Max. number of permissions per node",
    }

    def names(self) -> list[str]:
        return [f.name for f in fields(self)]

    def report(self) -> str:
        """The C daemon's ``xenstore-control quota`` text."""
        lines = ["Quota settings:"]
        for f in fields(self):
            name = f.name.replace("_", "-")
            lines.append(f"{name:<17}: {getattr(self, f.name):8d} {self._HELP[f.name]}")
        return "\n".join(lines) + "\n"

    def set(self, name: str, value: int) -> bool:
        key = name.replace("-", "_")
        if key not in self.names():
            return False
        setattr(self, key, value)
        return True
