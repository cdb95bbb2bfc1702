"""Conformance tests of what a backend promises a process forked from one that has the store open.

:class:`ForkConformance` is mixed into
:class:`~airssys_storage.testing.BackendConformance`. The contract (see
:mod:`airssys_storage.forking`): a forked child never shares an engine handle
with its parent silently. Each call in the child either works correctly (on
fresh handles, or on a private copy for a store that is neither persistent
nor shared) or raises a :class:`~airssys_storage.StorageError` saying the
process was forked; a persistent backend without ``multi_process`` must
refuse. The parent keeps working, and its data and usage stay exact.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from airssys_storage import Access, ComponentStorage, Manifest, StorageError, StorageManager

__all__ = ["ForkConformance"]

_COMPONENT = "forked"


def _context() -> Any:
    if not hasattr(os, "fork"):
        pytest.skip("this platform has no os.fork()")
    return multiprocessing.get_context("fork")


def _open(manager: StorageManager) -> ComponentStorage:
    return manager.component(Manifest(_COMPONENT, Access.ADMIN))


def _refusal(exc: StorageError) -> str:
    message = str(exc)
    assert "fork" in message, f"a refusal in a forked child must say so: {message}"
    return "refused"


def _finished(process: Any, seconds: float = 120) -> int:
    """The exit code of *process* after at most *seconds*; a child still running is killed, and the test fails.

    A hung child must not outlive its test: multiprocessing joins every
    child at interpreter exit, so one left behind stops pytest from exiting.
    """
    process.join(seconds)
    if process.exitcode is None:
        process.kill()
        process.join(10)
        pytest.fail(f"the forked child did not finish within {seconds:g} s (hung, e.g. on a lock held at the fork)")
    return int(process.exitcode)


@contextmanager
def _busy_threads() -> Iterator[None]:
    """Switch threads very often, so that forks land inside other threads' commits."""
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(switch)


class ForkConformance:
    """Mix-in: the fork clauses of the backend contract (needs BackendConformance's fixtures)."""

    @staticmethod
    def _settle(manager: StorageManager, manager_factory: Callable[[], StorageManager], expected: set[str]) -> None:
        """After the children: the parent's view (reopened when persistent) holds *expected*, usage exact."""
        if manager.backend.capabilities.persistent:
            manager.close()
            manager = manager_factory()
        try:
            store = _open(manager)
            found: list[str] = []
            cursor: str | None = None
            while True:
                items, cursor = store.scan(None, cursor, manager.settings.max_keys_per_query)
                found.extend(key for key, _ in items)
                if cursor is None:
                    break
            assert set(found) == expected
            real = sum(len(key.encode()) + len(store.get(key) or b"") for key in found)
            assert (store.usage().bytes, store.usage().keys) == (real, len(found))
        finally:
            if manager.backend.capabilities.persistent:
                manager.close()

    def test_forked_child_works_or_refuses_and_the_parent_stays_exact(
        self, manager_factory: Callable[[], StorageManager]
    ) -> None:
        """fork: a child's set works or raises a StorageError naming the fork; the parent stays exact."""
        ctx = _context()
        manager = manager_factory()
        store = _open(manager)
        store.set("before", b"x")
        outcome = ctx.Queue()

        def child() -> None:
            try:
                store.set("c", b"c")
                outcome.put("accepted")
            except StorageError as exc:
                outcome.put(_refusal(exc))

        process = ctx.Process(target=child)
        process.start()
        assert _finished(process) == 0
        result = outcome.get(timeout=10)
        caps = manager.backend.capabilities
        if caps.persistent and not caps.multi_process:
            assert result == "refused", "a persistent single-process backend must refuse in a forked child"
        store.set("p", b"p")
        assert store.get("before") == b"x"
        shared = result == "accepted" and caps.multi_process
        self._settle(manager, manager_factory, {"before", "p"} | ({"c"} if shared else set()))

    def test_parent_and_forked_child_writing_at_once_lose_no_acknowledged_write(
        self, manager_factory: Callable[[], StorageManager]
    ) -> None:
        """fork: 300 + 300 concurrent writes; every acknowledged write survives and usage equals the recount."""
        ctx = _context()
        manager = manager_factory()
        store = _open(manager)
        store.set("before", b"x")  # the parent holds its engine handles at the fork
        go = ctx.Event()
        acknowledged = ctx.Value("i", -1)

        def child() -> None:
            go.wait()
            done = 0
            for i in range(300):
                try:
                    store.set(f"child-{i}", b"c" * (i % 13))
                    done += 1
                except StorageError as exc:
                    _refusal(exc)
            acknowledged.value = done

        process = ctx.Process(target=child)
        process.start()
        go.set()
        for i in range(300):
            store.set(f"parent-{i}", b"p" * (i % 11))
        assert _finished(process) == 0
        caps = manager.backend.capabilities
        if caps.persistent and not caps.multi_process:
            assert acknowledged.value == 0
        expected = {"before"} | {f"parent-{i}" for i in range(300)}
        if caps.multi_process:
            expected |= {f"child-{i}" for i in range(acknowledged.value)}
        self._settle(manager, manager_factory, expected)

    def test_forked_child_never_sees_half_a_commit(self, manager: StorageManager) -> None:
        """fork: a child forked while another thread commits sees whole batches (or is refused), and can write."""
        ctx = _context()
        store = _open(manager)
        stop = threading.Event()

        def churn() -> None:  # batches that keep "a" and "b" equal, of changing sizes
            n = 0
            while not stop.is_set():
                value = b"x" * (n % 200)
                store.set_many([("a", value), ("b", value)])
                n += 1

        def child() -> None:
            try:
                a, b = store.get_many(["a", "b"])  # one read: the parent may still be committing
                assert a == b, "the child sees half of a batch"
                store.set("child", b"c")
            except StorageError as exc:
                _refusal(exc)

        thread = threading.Thread(target=churn)
        with _busy_threads():
            thread.start()
            try:
                for _ in range(20):
                    process = ctx.Process(target=child)
                    process.start()
                    assert _finished(process) == 0
            finally:
                stop.set()
                thread.join(60)
        assert len(set(store.get_many(["a", "b"]))) == 1
        assert manager.backend.verify().mismatches == ()
