"""Conformance tests of atomic write batches with checks (:meth:`ComponentStorage.atomic`).

:class:`AtomicBatchConformance` is mixed into
:class:`~airssys_storage.testing.BackendConformance`, so every backend runs
it. A batch is one ordinary :meth:`StorageBackend.apply` (a check on a key
the batch does not change is the planner's :func:`~airssys_storage.planner.check`
write), so these tests check that each backend decides and applies such a
commit all or nothing. Each test's docstring names the rule it checks
(:mod:`airssys_storage.atomic`).
"""

from __future__ import annotations

import itertools

import pytest

from airssys_storage import (
    Access,
    ComponentStorage,
    InvalidArgument,
    Manifest,
    PermissionDenied,
    PreconditionFailed,
    QuotaExceeded,
    StorageManager,
    TooManyKeys,
    Usage,
)

from .clock import FakeClock

__all__ = ["AtomicBatchConformance"]

_components = itertools.count()


def _open(
    manager: StorageManager, prefix: str, access: str = "read-write", max_size: int | None = None
) -> ComponentStorage:
    """A component no other test of this run uses (tests may share one store)."""
    return manager.component(Manifest(f"{prefix}-batch-{next(_components)}", Access(access), max_size))


def _state(store: ComponentStorage, keys: list[str]) -> tuple[list[object], Usage]:
    """Every key's entry (value, version, expiry) and the usage: what a refused batch must leave as it was."""
    return [store.get_entry(key) for key in keys], store.usage()


class AtomicBatchConformance:
    """Mix-in: atomic write batches with checks (needs BackendConformance's fixtures and ``max_batch_ops``)."""

    max_batch_ops: int

    def test_atomic_batch_applies_every_change_and_returns_versions(self, store: ComponentStorage) -> None:
        """Batch: set, delete and increment of several keys in one commit; the versions returned are the stored ones."""
        store.set("old", b"x")
        counter = store.set("n", b"41")
        versions = store.atomic().set("a", b"1").set("b", b"22").delete("old").increment("n", 1).commit()
        assert list(versions) == ["a", "b", "old", "n"]
        assert versions["old"] == 0
        assert versions["n"] > counter
        for key in ("a", "b", "n"):
            entry = store.get_entry(key)
            assert entry is not None and entry.version == versions[key]
        assert store.get_many(["a", "b", "old", "n"]) == [b"1", b"22", None, b"42"]
        assert store.usage() == Usage(2 + 3 + 3, 3)

    def test_atomic_batch_a_failing_check_writes_nothing(self, store: ComponentStorage) -> None:
        """Batch, all or nothing: one failed check refuses the commit and names its key; nothing changes."""
        version = store.set("item", b"v1")
        store.set("count", b"1")
        before = _state(store, ["item", "count", "other"])
        batch = store.atomic().check("item", version + 1).set("other", b"new").increment("count", 1).delete("count2")
        with pytest.raises(PreconditionFailed, match="'item'"):
            batch.commit()
        assert _state(store, ["item", "count", "other"]) == before
        # The same batch with the right version commits.
        store.atomic().check("item", version).set("other", b"new").increment("count", 1).commit()
        assert store.get_many(["item", "other", "count"]) == [b"v1", b"new", b"2"]

    def test_atomic_batch_a_check_on_a_changed_key_is_its_condition(self, store: ComponentStorage) -> None:
        """Batch: a check on a key the batch writes is that write's compare-and-swap condition (0: absent)."""
        store.atomic().check("k", 0).set("k", b"first").commit()
        with pytest.raises(PreconditionFailed, match="'k'"):
            store.atomic().check("k", 0).set("k", b"second").set("x", b"1").commit()
        entry = store.get_entry("k")
        assert entry is not None and entry.value == b"first" and store.get("x") is None
        store.atomic().check("k", entry.version).delete("k").commit()
        assert store.get("k") is None
        with pytest.raises(PreconditionFailed):
            store.atomic().check("k", entry.version).set("k", b"stale").commit()  # deleted: absent now
        assert store.get("k") is None

    def test_atomic_batch_a_check_alone_changes_nothing(self, store: ComponentStorage) -> None:
        """Batch: a key that is only checked keeps its value, version and expiry; usage is unchanged by it."""
        version = store.set("checked", b"v", ttl=100)
        before = store.get_entry("checked")
        store.atomic().check("checked", version).check("absent", 0).set("w", b"1").commit()
        assert store.get_entry("checked") == before
        assert store.get("absent") is None
        assert store.atomic().check("checked", version).check("absent", 0).commit() == {}
        assert store.get_entry("checked") == before
        assert store.usage() == Usage(len("checked") + 1 + len("w") + 1, 2)

    def test_atomic_batch_check_for_absence_passes_on_expired_key(
        self, store: ComponentStorage, clock: FakeClock
    ) -> None:
        """Batch, expiry: an expired key is absent for a check (0 holds, its old version does not)."""
        version = store.set("session", b"s", ttl=1)
        clock.advance(2.0)
        with pytest.raises(PreconditionFailed):
            store.atomic().check("session", version).set("x", b"1").commit()
        store.atomic().check("session", 0).set("x", b"1").commit()
        assert store.get("session") is None and store.get("x") == b"1"

    def test_atomic_batch_quota_refusal_writes_nothing(self, manager: StorageManager) -> None:
        """Batch, guard rule: the quota is checked on the batch's net change; a refused batch writes nothing."""
        store = _open(manager, "quota", max_size=20)
        store.set("big", b"x" * 14)  # 17 bytes of 20
        before = _state(store, ["big", "a", "n"])
        with pytest.raises(QuotaExceeded):
            store.atomic().set("a", b"12345").increment("n", 1).commit()
        assert _state(store, ["big", "a", "n"]) == before
        # Deleting in the same batch makes room: the net change is what counts.
        store.atomic().delete("big").set("a", b"12345").increment("n", 1).commit()
        assert store.get_many(["big", "a", "n"]) == [None, b"12345", b"1"]
        assert store.usage() == Usage(6 + 2, 2)

    def test_atomic_batch_an_increment_of_a_non_counter_writes_nothing(self, store: ComponentStorage) -> None:
        """Batch, counter rule: an increment of a key that holds no counter refuses the whole batch."""
        store.set("text", b"hello")
        with pytest.raises(InvalidArgument):
            store.atomic().set("a", b"1").increment("text", 1).commit()
        assert store.get("a") is None and store.get("text") == b"hello"

    def test_atomic_batch_limits(self, store: ComponentStorage) -> None:
        """Batch, limits: at most max_batch_ops keys (checked ones included): too-many-keys and nothing written."""
        limit = self.max_batch_ops
        batch = store.atomic().check("checked", 0)
        for index in range(limit):
            batch.set(f"k{index:03}", b"")
        assert len(batch) == limit + 1
        with pytest.raises(TooManyKeys):
            batch.commit()
        assert store.keys("k") == []
        full = store.atomic()
        for index in range(limit):
            full.set(f"k{index:03}", b"")
        assert len(full.commit()) == limit

    def test_atomic_batch_arguments_are_validated(self, store: ComponentStorage) -> None:
        """Batch: bad keys, values, versions, deltas, ttls; a key changed twice, disagreeing checks, a second commit."""
        batch = store.atomic()
        with pytest.raises(InvalidArgument):
            batch.check("k", -1)
        with pytest.raises(InvalidArgument):
            batch.check("k", True)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            batch.increment("n", 2**63)
        with pytest.raises(InvalidArgument):
            batch.set("k", "text")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            batch.set("k", b"v", ttl=0)
        batch.check("k", 0).check("k", None).set("k", b"v")
        with pytest.raises(InvalidArgument):
            batch.check("k", 5)
        with pytest.raises(InvalidArgument):
            batch.delete("k")
        assert batch.commit() == {"k": store.get_entry("k").version}  # type: ignore[union-attr]
        with pytest.raises(InvalidArgument):
            batch.commit()
        assert store.usage() == Usage(2, 1)

    def test_atomic_batch_needs_read_write(self, manager: StorageManager) -> None:
        """Batch, permission: operation commit is read-write; a read-only component is denied before anything runs."""
        reader = _open(manager, "reader", access="read-only")
        with pytest.raises(PermissionDenied):
            reader.atomic()
        writer = _open(manager, "writer")
        writer.atomic().set("k", b"v").commit()
        assert writer.get("k") == b"v"

    def test_atomic_batches_keep_an_item_count_exact_under_races(self, store: ComponentStorage) -> None:
        """Batch under races: item and counter change together, so concurrent creators and removers count exactly."""
        import threading

        errors: list[BaseException] = []

        def worker(index: int) -> None:
            try:
                for round_ in range(20):
                    key = f"item{(index + round_) % 5}"
                    while True:
                        entry = store.get_entry(key)
                        batch = store.atomic().check(key, 0 if entry is None else entry.version)
                        if entry is None:
                            batch.set(key, b"").increment("count", 1)
                        else:
                            batch.delete(key).increment("count", -1)
                        try:
                            batch.commit()
                            break
                        except PreconditionFailed:
                            continue
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(index,)) for index in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        present = sum(store.has(f"item{index}") for index in range(5))
        assert int(store.get("count") or b"0") == present
