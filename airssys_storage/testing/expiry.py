"""Conformance tests of expiry and range deletes (contract v2), with the suite's injected clock.

:class:`ExpiryConformance` is mixed into
:class:`~airssys_storage.testing.BackendConformance`. Time moves only when a
test moves the :class:`~airssys_storage.testing.FakeClock` that the suite's
``manager_factory`` passes to :meth:`StorageManager.from_settings` (no
sleeps): an expiry is tested exactly at its deadline. Each test's docstring
names the contract clause it checks.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Callable

import pytest

from airssys_storage import (
    Access,
    ComponentStorage,
    InvalidArgument,
    KeyNotFound,
    Manifest,
    PermissionDenied,
    PreconditionFailed,
    QuotaExceeded,
    StorageManager,
    Usage,
)

from ..backend import wall_clock_ms
from ..planner import Write, WriteKind
from ..storage import MAX_EXPIRES_AT_MS
from .clock import FakeClock

__all__ = ["ExpiryConformance"]

_components = itertools.count()


def _open(
    manager: StorageManager, prefix: str, access: str = "read-write", max_size: int | None = None
) -> ComponentStorage:
    """A component with a fresh id (tests may share one store)."""
    return manager.component(Manifest(f"{prefix}-{next(_components)}", Access(access), max_size))


def _recount(store: ComponentStorage) -> Usage:
    """The usage a recount of the live keys gives (equal to usage() when nothing has expired)."""
    items: list[tuple[str, bytes]] = []
    cursor: str | None = None
    while True:
        page, cursor = store.scan(None, cursor, store.settings.max_keys_per_query)
        items.extend(page)
        if cursor is None:
            return Usage(sum(len(key.encode()) + len(value) for key, value in items), len(items))


class ExpiryConformance:
    """Mix-in: expiry and range deletes (needs BackendConformance's fixtures, ``clock`` among them)."""

    #: Rounds of the range-delete-under-a-writer tests.
    range_race_rounds = 300

    # -- expiry ---------------------------------------------------------------------

    def test_expired_key_is_invisible_in_every_read_path(self, store: ComponentStorage, clock: FakeClock) -> None:
        """Expiry: a key is visible until its deadline and, exactly at it and after, absent from every read."""
        version = store.set("k", b"gone", ttl=2)
        store.set("live", b"l")
        clock.advance(1.999)
        assert store.get("k") == b"gone" and store.has("k") and store.keys("k") == ["k"]
        assert store.ttl("k") == pytest.approx(0.001, abs=1e-6)
        clock.advance(0.001)  # exactly the deadline
        for _ in range(2):
            assert store.get("k") is None
            assert store.has("k") is False
            assert store.get_many(["k", "live"]) == [None, b"l"]
            assert store.keys() == ["live"] and store.keys("k") == []
            assert store.range("a", "z") == [("live", b"l")]
            assert store.scan() == ([("live", b"l")], None)
            assert store.get_entry("k") is None
            with pytest.raises(KeyNotFound):
                store.ttl("k")
            with pytest.raises(PreconditionFailed):
                store.compare_and_swap("k", b"new", version=version)
            assert store.delete_if("k", version=version) is False
            assert store.expire("k", 10) is False
            assert store.persist("k") is False
            clock.advance(3600)  # and long after
        assert store.usage() == Usage(len("kgone") + len("livel"), 2), "expired rows stay charged until removed"

    def test_reads_on_the_wall_clock(self, manager: StorageManager) -> None:
        """Expiry on the default wall clock (read inline by some backends): past deadlines hide, future ones not."""
        # The other tests inject a clock; this one gives the backend the default for a moment.
        backend, ns = manager.backend, f"wall-{next(_components)}"
        injected = backend.clock
        backend.clock = wall_clock_ms
        try:
            now = wall_clock_ms()
            writes = [
                Write(b"past", WriteKind.PUT, b"p", expires_at=now - 1),
                Write(b"future", WriteKind.PUT, b"f", expires_at=now + 3_600_000),
                Write(b"far", WriteKind.PUT, b"x", expires_at=MAX_EXPIRES_AT_MS),
                Write(b"plain", WriteKind.PUT, b"n"),
            ]
            backend.apply(ns, writes, None)
            keys = [b"past", b"future", b"far", b"plain"]
            assert [backend.get(ns, key) for key in keys] == [None, b"f", b"x", b"n"]
            assert [backend.has(ns, key) for key in keys] == [False, True, True, True]
            assert backend.get_many(ns, keys) == [None, b"f", b"x", b"n"]
        finally:
            backend.clock = injected

    def test_expired_key_is_absent_for_writes(self, store: ComponentStorage, clock: FakeClock) -> None:
        """Expiry: CAS(version=None), set_if_absent and increment treat an expired key as absent (a counter from 0)."""
        old = {key: store.set(key, b"41", ttl=1) for key in ("cas", "sia", "n", "del")}
        clock.advance(1)
        assert store.compare_and_swap("cas", b"x", version=None) > old["cas"]
        assert store.set_if_absent("sia", b"y") is True
        assert store.increment("n") == 1
        assert store.ttl("n") is None, "a counter re-created from an expired row has no expiry"
        assert store.delete("del") is False, "deleting an expired key removes its row but reports no live key"
        assert store.get_many(["cas", "sia", "n", "del"]) == [b"x", b"y", b"1", None]
        assert store.get_entry("n").version > old["n"]  # type: ignore[union-attr]
        assert store.usage() == Usage(4 + 4 + 2, 3)

    def test_listings_skip_expired_rows_without_counting_them(self, store: ComponentStorage, clock: FakeClock) -> None:
        """Expiry: range, scan and keys skip expired rows, which never count towards a page's limit."""
        store.set_many({"a": b"", "e": b""})
        store.set_many({"b": b"", "c": b"", "d": b""}, ttl=1)
        clock.advance(1)
        assert [key for key, _ in store.range("a", "z", limit=2)] == ["a", "e"]
        assert store.scan(limit=2) == ([("a", b""), ("e", b"")], None)
        page, cursor = store.scan(limit=1)
        assert page == [("a", b"")]
        assert store.scan(cursor=cursor, limit=1)[0] == [("e", b"")]
        assert store.keys() == ["a", "e"]

    def test_ttl_is_exact_in_milliseconds(self, store: ComponentStorage, clock: FakeClock) -> None:
        """Expiry: deadline = now_ms + ceil(ttl * 1000); ttl() gives the seconds left and get_entry the deadline."""
        start = clock()
        store.set("k", b"v", ttl=1.5)
        assert store.ttl("k") == pytest.approx(1.5, abs=1e-6)
        assert store.get_entry("k").expires_at == pytest.approx((start + 1500) / 1000, abs=1e-6)  # type: ignore[union-attr]
        clock.advance(0.5)
        assert store.ttl("k") == pytest.approx(1.0, abs=1e-6)
        store.set("tiny", b"v", ttl=0.0001)  # rounded up to one millisecond
        assert store.get("tiny") == b"v"
        clock.advance(0.001)
        assert store.get("tiny") is None
        assert store.ttl("k") == pytest.approx(0.999, abs=1e-6)
        with pytest.raises(KeyNotFound):
            store.ttl("missing")

    def test_set_without_ttl_clears_the_expiry(self, store: ComponentStorage, clock: FakeClock) -> None:
        """Expiry: set, set_many and compare_and_swap without ttl clear an old expiry; with ttl they set one."""
        store.set("a", b"1", ttl=1)
        store.set("a", b"2")
        store.set_many({"b": b"1", "c": b"1"}, ttl=1)
        store.set_many({"b": b"2"})
        version = store.compare_and_swap("c", b"2", version=store.get_entry("c").version)  # type: ignore[union-attr]
        store.compare_and_swap("d", b"1", version=None, ttl=1)
        assert store.set_if_absent("e", b"1", ttl=1) is True
        assert [store.ttl(key) for key in "abc"] == [None, None, None]
        assert store.ttl("d") == pytest.approx(1) and store.ttl("e") == pytest.approx(1)
        assert store.get_entry("c") == (b"2", version, None)
        clock.advance(5)
        assert store.get_many(list("abcde")) == [b"2", b"2", b"2", None, None]

    def test_expire_and_persist(self, store: ComponentStorage, clock: FakeClock) -> None:
        """Expiry: expire sets a live key's deadline (False when missing); persist removes it (True iff live)."""
        first = store.set("k", b"v")
        assert store.expire("k", 10) is True
        assert store.ttl("k") == pytest.approx(10)
        second = store.get_entry("k").version  # type: ignore[union-attr]
        assert second > first, "changing the expiry is a write: the version grows"
        assert store.expire("k", 20) is True and store.ttl("k") == pytest.approx(20)
        assert store.persist("k") is True and store.ttl("k") is None
        assert store.get_entry("k").version > second  # type: ignore[union-attr]
        assert store.persist("k") is True, "persist of a live key without expiry is True"
        assert store.expire("missing", 10) is False and store.persist("missing") is False
        assert store.get_entry("missing") is None
        assert store.get("k") == b"v" and store.usage() == Usage(2, 1)
        store.expire("k", 1)
        clock.advance(1)
        assert store.get("k") is None

    def test_increment_keeps_a_live_counters_expiry(self, store: ComponentStorage, clock: FakeClock) -> None:
        """Expiry: incrementing a live counter keeps its deadline."""
        store.set("n", b"1", ttl=10)
        clock.advance(4)
        assert store.increment("n") == 2
        assert store.ttl("n") == pytest.approx(6)
        clock.advance(6)
        assert store.get("n") is None and store.increment("n") == 1

    def test_purge_expired_releases_the_quota(self, manager: StorageManager, clock: FakeClock) -> None:
        """Expiry: usage counts expired rows until swept; purge_expired(limit) sweeps them and releases the quota."""
        store = _open(manager, "purge", max_size=1000)
        store.set_many({"e1": b"x" * 8, "e2": b"x" * 8, "e3": b"x" * 8}, ttl=1)
        store.set("later", b"y", ttl=100)
        store.set("live", b"z")
        clock.advance(1)
        assert store.usage() == Usage(3 * 10 + 6 + 5, 5)
        assert store.purge_expired(limit=1) == 1
        assert store.usage() == Usage(2 * 10 + 6 + 5, 4)
        assert store.purge_expired() == 2
        assert store.usage() == Usage(6 + 5, 2)
        assert store.purge_expired() == 0
        assert store.get_many(["later", "live"]) == [b"y", b"z"]

    @pytest.mark.parametrize("write", ["set", "set_many", "compare_and_swap", "set_if_absent", "increment"])
    def test_full_quota_with_expired_data_still_accepts_a_write(
        self, manager: StorageManager, clock: FakeClock, write: str
    ) -> None:
        """Expiry: a write refused for quota first sweeps the component's expired rows and tries again."""
        store = _open(manager, "sweep", max_size=100)
        store.set("old", b"o" * 47, ttl=1)
        store.set("kept", b"k" * 46)  # 50 + 50: exactly full
        clock.advance(1)
        writes: dict[str, Callable[[], object]] = {
            "set": lambda: store.set("new", b"n"),
            "set_many": lambda: store.set_many({"new": b"n"}),
            "compare_and_swap": lambda: store.compare_and_swap("new", b"n", version=None),
            "set_if_absent": lambda: store.set_if_absent("new", b"n"),
            "increment": lambda: store.increment("new", 5),
        }
        writes[write]()
        assert store.get("old") is None and store.get("kept") == b"k" * 46
        assert store.usage() == Usage(50 + 4, 2)

    def test_sweep_then_still_too_big_is_refused(self, manager: StorageManager, clock: FakeClock) -> None:
        """Expiry: when the swept rows do not make room the write is refused, and the sweep stays done."""
        store = _open(manager, "sweep-refused", max_size=100)
        store.set("old", b"o" * 7, ttl=1)  # 10 bytes
        store.set("kept", b"k" * 86)  # 90 bytes: full
        clock.advance(1)
        with pytest.raises(QuotaExceeded):
            store.set("new", b"n" * 20)
        assert store.usage() == Usage(90, 1)
        assert store.get("new") is None

    def test_ttl_survives_reopen(self, manager_factory: Callable[[], StorageManager], clock: FakeClock) -> None:
        """Expiry (capability persistent): deadlines survive closing and reopening the store."""
        with manager_factory() as first:
            if not first.backend.capabilities.persistent:
                pytest.skip(f"backend {first.backend.name!r} is not persistent (capabilities.persistent=False)")
            store = _open(first, "ttl-reopen")
            component = store.component_id
            store.set("k", b"v", ttl=10)
            store.set("gone", b"v", ttl=1)
        clock.advance(1)
        with manager_factory() as second:
            store = second.component(Manifest(component, Access.READ_WRITE))
            assert store.ttl("k") == pytest.approx(9)
            assert store.get("gone") is None
            assert store.usage() == Usage(2 + 5, 2)
            clock.advance(9)
            assert store.get("k") is None and store.purge_expired() == 2
            assert store.usage() == Usage()

    # -- range deletes -----------------------------------------------------------------------

    def test_delete_prefix_and_range_return_counts_and_release_quota(
        self, manager: StorageManager, clock: FakeClock
    ) -> None:
        """delete_prefix/delete_range: remove exactly the prefix / [start, end) keys, count live ones, exact usage."""
        store = _open(manager, "ranges", max_size=100)
        store.set_many({"a": b"1", "a:1": b"1", "a:2": b"22", "a;": b"1", "b": b"1", "b:1": b"1"})
        store.set("a:9", b"x", ttl=1)
        clock.advance(1)
        assert store.delete_prefix("a:") == 2, "the expired a:9 is removed but not counted"
        assert store.keys() == ["a", "a;", "b", "b:1"]
        assert store.usage() == Usage(2 + 3 + 2 + 4, 4)
        assert store.delete_prefix("zz") == 0
        assert store.delete_range("a;", "b:") == 2
        assert store.keys() == ["a", "b:1"]
        assert store.delete_range("b", "a") == 0 and store.delete_range("a", "a") == 0
        assert store.usage() == Usage(2 + 4, 2) == _recount(store)
        store.set("big", b"x" * 91)  # the released bytes are usable: exactly full
        assert store.usage().bytes == 100

    def test_range_deletes_keep_neighbours(self, manager: StorageManager) -> None:
        """delete_prefix/delete_range: other components (ids sharing a prefix) keep their keys."""
        one, two = _open(manager, "nb"), _open(manager, "nb")
        for store in (one, two):
            store.set_many({"p:1": b"1", "p:2": b"2", "q": b"3"})
        assert one.delete_prefix("p") == 2 and one.delete_range("a", "z") == 1
        assert two.keys() == ["p:1", "p:2", "q"] and two.usage() == Usage(10, 3)
        assert one.usage() == Usage()

    def test_delete_prefix_refuses_the_empty_prefix(self, store: ComponentStorage) -> None:
        """delete_prefix(""): invalid-argument naming clear() (admin-only); nothing deleted."""
        store.set_many({"a": b"1", "b": b"2"})
        with pytest.raises(InvalidArgument, match="clear"):
            store.delete_prefix("")
        assert store.keys() == ["a", "b"]

    def test_range_deletes_need_read_write(self, manager: StorageManager) -> None:
        """delete_prefix/delete_range: a read-only component is permission-denied and nothing is deleted."""
        writer = _open(manager, "ro-range")
        writer.set("k", b"v")
        reader = manager.component(Manifest(writer.component_id, Access.READ_ONLY))
        removals: list[Callable[[], int]] = [lambda: reader.delete_prefix("k"), lambda: reader.delete_range("a", "z")]
        for remove in removals:
            with pytest.raises(PermissionDenied):
                remove()
        assert reader.get("k") == b"v"

    @pytest.mark.parametrize("how", ["delete_prefix", "delete_range"])
    def test_range_delete_is_atomic_under_a_concurrent_writer(self, store: ComponentStorage, how: str) -> None:
        """delete_prefix/delete_range under a concurrent writer: all or none of a batch goes, readers never see half."""
        keys = [f"p:{i:02}" for i in range(10)]
        remove: Callable[[], int] = (
            (lambda: store.delete_prefix("p:")) if how == "delete_prefix" else (lambda: store.delete_range("p:", "p;"))
        )
        stop = threading.Event()
        errors: list[BaseException] = []
        torn: list[list[bytes | None]] = []

        def writer() -> None:
            turn = 0
            while not stop.is_set():
                turn += 1
                store.set_many(dict.fromkeys(keys, b"%d" % turn))

        def reader() -> None:
            while not stop.is_set():
                values = store.get_many(keys)
                if len(set(values)) != 1:
                    torn.append(values)

        def guarded(target: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                try:
                    target()
                except BaseException as exc:  # reported below
                    errors.append(exc)

            return run

        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads often, so a non-atomic delete gets caught
        threads = [threading.Thread(target=guarded(target)) for target in (writer, reader)]
        for thread in threads:
            thread.start()
        counts: set[int] = set()
        try:
            for _ in range(self.range_race_rounds):
                counts.add(remove())
                values = store.get_many(keys)
                if len(set(values)) != 1:
                    torn.append(values)
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
            sys.setswitchinterval(interval)
        assert errors == []
        assert counts <= {0, len(keys)}, f"a range delete removed part of a batch: {sorted(counts)}"
        assert torn == [], f"a reader saw half a range delete: {torn[0]}"
        assert store.usage() == _recount(store)
        assert remove() in (0, len(keys))
        assert store.usage() == Usage()
