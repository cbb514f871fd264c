"""The writer process of tests/test_crash_kill9.py (run as a script).

Opens the store named by argv[1] and commits in a loop on branch ``main``,
printing ``<commit id>`` to stdout, flushed, only after the library call
returned: a printed id is an *acknowledged* commit. Prints ``ready`` once
the store is open. Runs until killed (or argv[2] commits).
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    uri = sys.argv[1]
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else None
    import irmin

    repo = irmin.open(uri)
    store = repo.main()
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    i = 0
    pid = os.getpid()
    while limit is None or i < limit:
        # A mix of shapes: new files, overwrites, a deeper path, a removal.
        n = i % 7
        if n == 6:
            c = store.remove(f"d{i % 3}/k{(i - 3) % 11}", message=f"rm {pid} {i}")
            if c is None:
                c = store.set(f"log/{pid}/{i}", b"x", message=f"set {pid} {i}")
        else:
            c = store.set(f"d{i % 3}/k{i % 11}", b"%d %d " % (pid, i) + b"v" * (i % 200),
                          message=f"set {pid} {i}")
        assert c is not None
        out.write(c.id + "\n")
        out.flush()
        i += 1
    repo.close()


if __name__ == "__main__":
    main()
