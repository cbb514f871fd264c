"""xenstored: a Xenstore server whose tree is a branch of an irmin store.

Modules, one concept each:

* :mod:`.wire`: the sans-I/O codec (header, message types, error names, framing);
* :mod:`.paths`: path validation, relative to absolute;
* :mod:`.perms`: permission lists and checks;
* :mod:`.nodes`: the in-memory copy-on-write Xenstore tree and its operations;
* :mod:`.storage`: the node representation in irmin trees and the committer;
* :mod:`.watches`, :mod:`.transactions`, :mod:`.domains`, :mod:`.quota`,
  :mod:`.control`: what their names say;
* :mod:`.daemon`: the asyncio server (connections, dispatch).

See docs/xenstored.md for usage, the node representation and the commit
policy.
"""

from __future__ import annotations

from .daemon import Server, serve

__all__ = ["Server", "serve"]
