"""Watches: registered per connection, matched against changed paths.

A change produces events ``(path, exact, perms)``: an ``exact`` event (a node
removed below the RM'd path) fires only watches on that very path; a normal
one fires watches on the path or any ancestor. Special names
(``@introduceDomain``, ``@releaseDomain``) fire exact watches of privileged
connections. An unprivileged watcher sees only nodes it may read. A watch
registered with a relative path gets relative event paths.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Watch:
    path: str          # absolute (or a special @name)
    token: bytes
    relative: bool
    prefix: str        # path + "/" (for descendant matching), "/" for the root

    @classmethod
    def make(cls, path: str, token: bytes, relative: bool) -> Watch:
        return cls(path, token, relative, "/" if path == "/" else path + "/")

    def matches(self, path: str, exact: bool) -> bool:
        if exact:
            return path == self.path
        return path == self.path or path.startswith(self.prefix)
