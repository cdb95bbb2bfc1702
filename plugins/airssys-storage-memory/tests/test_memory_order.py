"""memory:// keeps each component's keys ordered as they are written (no re-sort on listing)."""

from __future__ import annotations

import builtins
import random

import pytest
from airssys_storage_memory import MemoryBackend

from airssys_storage.planner import Write, WriteKind

NS = "app"


def commit(backend: MemoryBackend, changes: list[tuple[bytes, bytes | None]], limit: int | None) -> None:
    """Apply puts (value) and deletes (None) in one commit; a key named twice keeps its last change."""
    last = dict(changes)
    writes = [
        Write(key, WriteKind.DELETE) if value is None else Write(key, WriteKind.PUT, value)
        for key, value in last.items()
    ]
    backend.apply(NS, writes, limit)


def listing(backend: MemoryBackend, start: bytes = b"", end: bytes | None = None, limit: int = 10**6) -> list[bytes]:
    return backend.keys(NS, start, end, limit)


def test_keys_stay_ordered_through_random_writes_deletes_and_batches() -> None:
    """Every listing equals the sorted key set of a model dict, after any mix of writes (issue 9, section 8)."""
    rng = random.Random(9)
    backend = MemoryBackend()
    model: dict[bytes, bytes] = {}
    alphabet = [b"a", b"b", b"\x00", b"\xff", "é".encode(), b"ab"]
    for step in range(3000):
        key = b"".join(rng.choices(alphabet, k=rng.randint(1, 3)))
        action = rng.random()
        if action < 0.45:
            value = bytes(rng.randint(0, 4))
            backend.put_one(NS, key, value, None)
            model[key] = value
        elif action < 0.7:
            backend.delete_one(NS, key)
            model.pop(key, None)
        else:
            # A batch, possibly naming a key twice or deleting a key that does not exist.
            changes: list[tuple[bytes, bytes | None]] = []
            for _ in range(rng.randint(1, 6)):
                other = b"".join(rng.choices(alphabet, k=rng.randint(1, 3)))
                changes.append((other, None if rng.random() < 0.4 else bytes(rng.randint(0, 4))))
            commit(backend, changes, None)
            for other, value in changes:
                if value is None:
                    model.pop(other, None)
                else:
                    model[other] = value
        if step % 5 == 0 or step > 2950:  # often: few notes, merged into the kept order
            ordered = sorted(model)
            assert listing(backend) == ordered
            assert listing(backend, b"a", b"b") == [k for k in ordered if b"a" <= k < b"b"]
            assert listing(backend, b"\x00", None, 3) == ordered[:3]
    assert backend.usage(NS).keys == len(model)


def test_a_listing_right_after_an_insert_does_not_sort_the_component() -> None:
    """The first keys() after a write that adds a key lists from the kept order: sorted() is never called."""
    backend = MemoryBackend()
    commit(backend, [(f"k{i:04d}".encode(), b"v") for i in range(1000)], None)
    assert len(listing(backend)) == 1000  # the first listing of a new component may build its order at once
    calls: list[int] = []
    real_sorted = builtins.sorted

    def counting_sorted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real_sorted(*args, **kwargs)  # type: ignore[call-overload]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(builtins, "sorted", counting_sorted)
        backend.put_one(NS, b"k0500x", b"v", None)
        assert listing(backend, b"k0500", b"k0501") == [b"k0500", b"k0500x"]
        commit(backend, [(b"k0000", None), (b"a", b"v")], None)
        assert listing(backend, b"", None, 2) == [b"a", b"k0001"]
    assert calls == []


def test_churn_without_listings_keeps_the_notes_bounded() -> None:
    """Adding and deleting keys with no listing in between holds O(keys) notes, and listings stay right."""
    backend = MemoryBackend()
    commit(backend, [(b"keep-%d" % i, b"v") for i in range(10)], None)
    assert listing(backend) == sorted(b"keep-%d" % i for i in range(10))
    for i in range(20_000):
        backend.put_one(NS, b"churn", b"v", None)
        backend.delete_one(NS, b"churn")
        if i % 1000 == 0:
            commit(backend, [(b"batch-%d" % i, b"v"), (b"keep-0", None)], None)
            commit(backend, [(b"keep-0", b"v")], None)
    space = backend._spaces[NS]
    assert len(space.changed) <= 1024 + 2 * len(space.rows) + 1
    expected = sorted([b"keep-%d" % i for i in range(10)] + [b"batch-%d" % i for i in range(0, 20_000, 1000)])
    assert listing(backend) == expected
    backend.put_one(NS, b"after", b"v", None)
    assert listing(backend, b"after", b"b") == [b"after"]
