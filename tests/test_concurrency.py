"""8 threads x 1,000 transactions on overlapping and disjoint paths: no lost
update, and conflicts only where two transactions really touched the same
value."""

from __future__ import annotations

import re
import threading

import pytest

import irmin
from irmin import contents
from irmin.errors import ConflictError

THREADS = 8
TXS = 1000


@pytest.mark.parametrize("backend", ["memory", "lmdb"])
def test_threads_transactions_no_lost_update(backend, tmp_path):
    uri = "memory:" if backend == "memory" else f"lmdb:{tmp_path / 'db'}?sync=false"
    codec = contents.ByPath({"counters": contents.COUNTER})
    with irmin.open(uri, contents=codec) as repo:
        main = repo.branch("main")
        main.set("counters/shared", 0)
        main.set("bytes/shared", b"0")
        successes = [0] * THREADS
        conflicts = [0] * THREADS
        bytes_ok = [0] * THREADS
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            try:
                for i in range(TXS):
                    # Disjoint path: never conflicts.
                    with main.transaction(f"t{n}-{i}") as tx:
                        tx.set(f"own/{n}", b"%d" % i)
                        # Overlapping counter: merges by summing deltas.
                        tx.set("counters/shared", tx.get("counters/shared") + 1)
                    successes[n] += 1
                    # Overlapping bytes read-modify-write: a real conflict when
                    # another thread committed meanwhile; retried by the caller.
                    if i % 10 == 0:
                        while True:
                            try:
                                with main.transaction() as tx:
                                    tx.set("bytes/shared", b"%d" % (int(tx.get("bytes/shared")) + 1))
                                bytes_ok[n] += 1
                                break
                            except ConflictError as e:
                                assert [c.path for c in e.conflicts] == [("bytes", "shared")]
                                conflicts[n] += 1
            except BaseException as e:  # surfaced below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert main.get("counters/shared") == THREADS * TXS  # no lost increment
        assert int(main.get("bytes/shared")) == sum(bytes_ok) == THREADS * TXS // 10
        for n in range(THREADS):
            assert main.get(f"own/{n}") == b"%d" % (TXS - 1)
        # Every successful transaction is in the history exactly once.
        messages = [c.message for c in main.history()]
        tx_msgs = [m for m in messages if re.fullmatch(r"t\d+-\d+", m)]
        assert len(tx_msgs) == len(set(tx_msgs)) == THREADS * TXS
