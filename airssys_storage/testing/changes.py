"""Conformance tests of the change feed (capability ``change_feed``; see :mod:`airssys_storage.changes`).

Run on every backend that declares the capability; skipped (naming it) on the others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airssys_storage import (
    Access,
    ChangeEvent,
    ChangeGap,
    ComponentStorage,
    ConfigurationError,
    InvalidArgument,
    Manifest,
    PermissionDenied,
    StorageManager,
    StorageSettings,
)
from airssys_storage.changes import CHANGE_OPS, replay

from .clock import FakeClock

__all__ = ["ChangeFeedConformance", "pull_all"]


def pull_all(store: ComponentStorage, since: int = 0, prefix: str | None = None) -> tuple[list[ChangeEvent], int]:
    """Every event after *since* (paging with the returned cursor) and the final cursor."""
    events: list[ChangeEvent] = []
    while True:
        page, after = store.changes(since, prefix)
        events.extend(page)
        if after == since:
            return events, since
        since = after


def replayed(events: list[ChangeEvent], state: dict[str, bytes | None] | None = None) -> dict[str, bytes | None]:
    """*events* replayed onto *state* (a new dict by default)."""
    state = {} if state is None else state
    replay(state, events)
    return state


def _feed_settings(settings: StorageSettings, **changes: Any) -> StorageSettings:
    return settings.model_copy(update={"changes_capture_values": True, **changes})


class ChangeFeedConformance:
    """Mix-in of :class:`~airssys_storage.testing.BackendConformance`: the change feed's contract."""

    @pytest.fixture
    def feed_manager(
        self, storage_settings: StorageSettings, clock: FakeClock, manager: StorageManager
    ) -> Iterator[StorageManager]:
        """A manager whose settings capture values (the suite's store, the suite's clock)."""
        if not manager.backend.capabilities.change_feed:
            pytest.skip(f"backend {manager.backend.name!r} keeps no change feed (capabilities.change_feed=False)")
        if not manager.backend.capabilities.multi_process:
            manager.close()  # the single-process engines (LevelDB, RocksDB) allow one open handle per store
        with StorageManager.from_settings(_feed_settings(storage_settings), clock=clock) as feed_manager:
            yield feed_manager

    @staticmethod
    def feed_store(manager: StorageManager, component_id: str, access: str = "admin") -> ComponentStorage:
        return manager.component(Manifest(component_id, Access(access), changes=True))

    def test_feed_replay_reproduces_the_state(self, feed_manager: StorageManager, clock: FakeClock) -> None:
        """Change feed: every kind of write appends its events; replaying them onto an empty dict gives the state."""
        store = self.feed_store(feed_manager, "feed-replay")
        store.set("a", b"1")
        store.set("a", b"22")
        store.set_many({"b": b"x", "c": b"y", "d": b"z"})
        store.delete("b")
        store.delete_many(["c", "nope"])
        store.increment("n", 5)
        store.increment("n", -2, op_id="once")
        store.compare_and_swap("a", b"333", version=store.get_entry("a").version)  # type: ignore[union-attr]
        store.set_if_absent("e", b"e")
        store.delete_if("e", version=store.get_entry("e").version)  # type: ignore[union-attr]
        store.set_many({"p/1": b"1", "p/2": b"2", "q": b"q"})
        assert store.delete_prefix("p/") == 2
        store.set("t", b"short", ttl=1)
        clock.advance(2)
        assert store.purge_expired() == 1
        events, cursor = pull_all(store)
        assert [event.seq for event in events] == list(range(1, cursor + 1))
        assert {event.op for event in events} <= CHANGE_OPS
        assert [event.op for event in events if event.op not in ("set", "delete")] == ["delete-range", "expire"]
        state = dict(store.scan()[0])
        assert replayed(events) == state
        store.clear()
        after, last = pull_all(store, cursor)
        assert [(event.op, event.key) for event in after] == [("clear", "")]
        assert replayed(events + after) == {} and last == cursor + 1

    def test_feed_versions_and_values(self, feed_manager: StorageManager) -> None:
        """Change feed: a set event carries the key's new version and (captured) value; a delete the removed one."""
        store = self.feed_store(feed_manager, "feed-versions")
        version = store.set("k", b"v1")
        store.delete("k")
        events, _ = pull_all(store)
        assert [(e.key, e.op, e.version, e.value) for e in events] == [
            ("k", "set", version, b"v1"),
            ("k", "delete", version, None),
        ]

    def test_feed_refuses_impossible_cursors_and_timeouts(self, feed_manager: StorageManager) -> None:
        """Change feed: a since past any seq (2**63 and up) and a bad watch timeout are invalid-argument."""
        store = self.feed_store(feed_manager, "feed-arguments")
        store.set("k", b"v")
        assert store.change_bounds() == (1, 1)
        for since in (2, 2**63 - 1, 2**63, 2**64, 2**200):
            with pytest.raises(InvalidArgument):
                store.changes(since)
            with pytest.raises(InvalidArgument):
                next(store.watch(since, timeout=0))
        for timeout in (-1, float("nan"), float("inf"), "1", True):
            with pytest.raises(InvalidArgument):
                next(store.watch(0, timeout=timeout))  # type: ignore[arg-type]
        assert [event.key for event in store.watch(0, timeout=0)] == ["k"]

    def test_feed_cursor_prefix_and_limit(self, feed_manager: StorageManager) -> None:
        """Change feed: pages follow the cursor exactly once; a prefix reader sees its keys, clears, range deletes."""
        store = self.feed_store(feed_manager, "feed-prefix")
        for i in range(7):
            store.set(f"{'ab'[i % 2]}{i}", b"v")
        store.delete_range("b", "c")
        seen: list[int] = []
        since = 0
        while True:
            page, after = store.changes(since, limit=3)
            assert len(page) <= 3
            seen += [event.seq for event in page]
            if after == since:
                break
            since = after
        assert seen == list(range(1, 9))
        only_a, cursor = pull_all(store, 0, "a")
        assert [event.key for event in only_a] == ["a0", "a2", "a4", "a6"] and cursor == 8
        only_b, _ = pull_all(store, 0, "b")
        assert [event.op for event in only_b] == ["set"] * 3 + ["delete-range"]
        with pytest.raises(InvalidArgument):
            store.changes(-1)
        with pytest.raises(InvalidArgument):
            store.changes(99)  # beyond the last seq: a cursor of another store

    def test_feed_gap_behind_a_tiny_retention(
        self, storage_settings: StorageSettings, clock: FakeClock, feed_manager: StorageManager
    ) -> None:
        """Change feed: a reader behind the retention window gets a typed gap error and resynchronises exactly."""
        settings = _feed_settings(storage_settings, changes_retain_events=3)
        if not feed_manager.backend.capabilities.multi_process:
            feed_manager.close()  # one open handle per store (LevelDB, RocksDB)
        with StorageManager.from_settings(settings, clock=clock) as manager:
            store = self.feed_store(manager, "feed-gap")
            for i in range(10):
                store.set(f"k{i % 4}", str(i).encode())
            with pytest.raises(ChangeGap) as info:
                store.changes(2)
            oldest = info.value.oldest
            assert info.value.code == "gap" and 3 < oldest <= 8  # the newest 3 kept, at most 3 more between trims
            events, _ = store.changes(0)  # since=0: from the oldest retained
            assert [event.seq for event in events] == list(range(oldest, 11))
            assert store.changes(oldest - 1)[0] == events  # right at the window's edge: no gap
            state, seq = store.resync()
            assert seq == 10 and state == dict(store.scan()[0])
            store.set("k9", b"new")
            more, _ = store.changes(seq)
            assert replayed(more, dict(state)) == dict(store.scan()[0])

    def test_feed_off_and_permissions(self, feed_manager: StorageManager) -> None:
        """Change feed: a component without it gets invalid-config; reading needs the changes permission."""
        plain = feed_manager.component(Manifest("feed-off", Access.ADMIN))
        with pytest.raises(ConfigurationError, match=r"permissions\.storage\.changes"):
            plain.changes()
        reader = feed_manager.component(Manifest("feed-reader", Access.READ_ONLY, changes=True))
        assert reader.changes() == ([], 0)
        none = feed_manager.component(Manifest("feed-none", Access.NONE, changes=True))
        with pytest.raises(PermissionDenied):
            none.changes()

    def test_feed_watch_wakes_on_a_commit(self, feed_manager: StorageManager) -> None:
        """Change feed: a blocking watch yields a commit of another thread, then ends after its timeout."""
        store = self.feed_store(feed_manager, "feed-watch")
        store.set("before", b"0")
        start = store.snapshot_seq()
        ready = threading.Event()

        def writer() -> None:
            ready.wait()
            store.set("w", b"1")

        thread = threading.Thread(target=writer)
        thread.start()
        watch = store.watch(start, timeout=30)
        ready.set()
        event = next(watch)
        thread.join()
        assert (event.seq, event.key, event.op) == (start + 1, "w", "set")
        assert list(store.watch(event.seq, timeout=0.05)) == []

    def test_feed_async_watch(self, feed_manager: StorageManager) -> None:
        """Change feed: the async iterator yields the same events as the pull."""
        import asyncio

        store = self.feed_store(feed_manager, "feed-async")
        store.set_many({"x": b"1", "y": b"2"})

        async def collect() -> list[ChangeEvent]:
            return [event async for event in store.awatch(0, timeout=0.05)]

        assert asyncio.run(collect()) == pull_all(store)[0]

    def test_feed_survives_reopen(self, manager_factory: Callable[[], StorageManager], storage_settings: Any) -> None:
        """Change feed, capability persistent: the log and its seq continue after closing and reopening."""
        with manager_factory() as first:
            if not (first.backend.capabilities.change_feed and first.backend.capabilities.persistent):
                pytest.skip(f"backend {first.backend.name!r} keeps no persistent change feed")
            store = self.feed_store(first, "feed-reopen")
            store.set("a", b"1")
        with manager_factory() as second:
            store = self.feed_store(second, "feed-reopen")
            store.set("b", b"2")
            assert [(event.seq, event.key) for event in pull_all(store)[0]] == [(1, "a"), (2, "b")]
