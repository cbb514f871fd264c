"""Watches: registered per connection, matched against changed paths.

A change produces events ``(path, exact, perms)``: an ``exact`` event (a node
removed below the RM'd path) fires only watches on that very path; a normal
one fires watches on the path or any ancestor. Special names
(``@introduceDomain``, ``@releaseDomain``) fire exact watches of privileged
connections. An unprivileged watcher sees only nodes it may read. A watch
registered with a relative path gets relative event paths.

The server indexes watches by path (:func:`ancestors` gives the paths whose
watches an event can fire), so matching an event costs a few dict look-ups
however many connections watch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Watch:
    path: str          # absolute (or a special @name)
    token: bytes
    relative: bool
    prefix: str        # path + "/" (for descendant matching), "/" for the root
    seq: int = 0       # registration order (the server's index keeps it per path)

    @classmethod
    def make(cls, path: str, token: bytes, relative: bool, seq: int = 0) -> Watch:
        return cls(path, token, relative, "/" if path == "/" else path + "/", seq)

    def matches(self, path: str, exact: bool) -> bool:
        if exact:
            return path == self.path
        return path == self.path or path.startswith(self.prefix)


def ancestors(path: str) -> list[str]:
    """``path`` and its ancestors, deepest first, ``/`` last."""
    out = [path]
    while True:
        i = path.rfind("/")
        if i <= 0:
            break
        path = path[:i]
        out.append(path)
    if out[-1] != "/":
        out.append("/")
    return out
