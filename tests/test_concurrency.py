"""8 threads x 1,000 transactions on overlapping and disjoint paths: no lost
update, and conflicts only where two transactions really touched the same
value."""

from __future__ import annotations

import re
import sys
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


@pytest.mark.parametrize("backend", ["memory", "lmdb"])
def test_threads_branch_writes_are_all_kept(backend, tmp_path):
    """8 threads x 300 ``Store.set`` on one branch, in directories they share:
    every write lands as its own commit (a write that lost the race to move
    the head is redone on the new one, carrying what it had exported), the
    last value of each key is the last one written, and fsck finds every
    object of every commit."""
    from irmin.fsck import fsck

    uri = "memory:" if backend == "memory" else f"lmdb:{tmp_path / 'db'}?sync=false"
    writes = 300
    with irmin.open(uri) as repo:
        main = repo.branch("main")
        main.set("d0/seed", b"x")
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            try:
                for i in range(writes):
                    main.set(f"d{i % 3}/k{n}", b"%d %d" % (n, i), message=f"w{n}-{i}")
            except BaseException as e:  # surfaced below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads often: more writes race
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            sys.setswitchinterval(interval)
        assert not errors, errors
        for n in range(THREADS):
            for d in range(3):
                last = max(i for i in range(writes) if i % 3 == d)
                assert main.get(f"d{d}/k{n}") == b"%d %d" % (n, last)
        messages = [c.message for c in main.history()]
        ours = [m for m in messages if re.fullmatch(r"w\d+-\d+", m)]
        # A rewrite of an unchanged value makes no commit: the first three
        # writes of each thread to a new key all change something, and so
        # does every later one (the value holds the write's number).
        assert len(ours) == len(set(ours)) == THREADS * writes
        assert fsck(repo, progress=False).clean


@pytest.mark.parametrize("backend", ["memory", "lmdb"])
def test_retry_carries_what_a_lost_attempt_exported(backend, tmp_path):
    """A write whose first attempt lost the race exported its new trees
    (marking them stored); when the retry commits the same trees, their
    objects must still be written, carried over from the lost attempt."""
    from irmin.fsck import fsck

    uri = "memory:" if backend == "memory" else f"lmdb:{tmp_path / 'db'}?sync=false"
    with irmin.open(uri) as repo:
        main = repo.branch("main")
        main.set("a", b"1")
        other = repo.branch("main")  # a second writer on the same branch
        prebuilt = main.tree().set("new/deep/x", b"2")
        calls = []

        def f(_head: irmin.Tree) -> irmin.Tree:
            calls.append(1)
            if len(calls) == 1:
                other.set("b", b"3")  # gets in first: this attempt loses
            return prebuilt

        main.update_tree(f)
        assert len(calls) == 2
        fresh = irmin.Repo(repo.backend)  # no caches, nothing held in memory
        assert fresh.tree(main.head.tree_id).get("new/deep/x") == b"2"
        assert fsck(repo, progress=False).clean
