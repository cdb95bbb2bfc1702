"""memory://'s put_one, delete_one and small batches of puts (written out for speed) give what the planner gives."""

from __future__ import annotations

import random
from typing import Any

import airssys_storage_memory
import pytest
from airssys_storage_memory import MemoryBackend

from airssys_storage import QuotaExceeded, StorageError
from airssys_storage.planner import Write, WriteKind
from airssys_storage.testing import FakeClock

NS = "app"


def _rows(backend: MemoryBackend) -> dict[bytes, tuple[bytes, int, int | None]]:
    """Every stored row, expired ones included: (value, version, expires_at)."""
    space = backend._spaces.get(NS)
    if space is None:
        return {}
    rows = {}
    for key in list(space.rows):
        state = space.state(key)
        assert state is not None and state.value is not None
        rows[key] = (state.value, state.version, state.expires_at)
    return rows


def _rows_live(backend: MemoryBackend, now: int) -> dict[bytes, tuple[bytes, int, int | None]]:
    return {key: row for key, row in sorted(_rows(backend).items()) if row[2] is None or row[2] > now}


def _reads(backend: MemoryBackend, keys: list[bytes]) -> tuple[dict[bytes, tuple[bytes, int, int | None]], list[bytes]]:
    """What get, get_entry, get_many, has, items and keys say, as live rows by key and the listed keys."""
    found = {}
    for key, value in zip(keys, backend.get_many(NS, keys), strict=True):
        entry = backend.get_entry(NS, key)
        assert backend.get(NS, key) == value == (None if entry is None else entry.value)
        assert backend.has(NS, key) is (value is not None)
        if entry is not None:
            found[key] = (value, entry.version, entry.expires_at)
    listed = backend.keys(NS, b"", None, 100)
    assert [key for key, _ in backend.items(NS, b"", None, 100)] == listed
    assert dict(backend.items(NS, b"", None, 100)) == {key: row[0] for key, row in found.items()}
    return dict(sorted(found.items())), listed


def _floor(backend: MemoryBackend) -> int:
    space = backend._spaces.get(NS)
    return 0 if space is None else space.floor


def _twins() -> tuple[FakeClock, MemoryBackend, MemoryBackend]:
    """A clock and two backends on it: one taking the written-out paths, one to plan the same through apply."""
    clock = FakeClock(start_ms=1_000_000)
    fast, planned = MemoryBackend(), MemoryBackend()
    for backend in (fast, planned):
        backend.clock = clock
    return clock, fast, planned


@pytest.mark.parametrize("seed", range(6))
def test_hot_paths_equal_the_planner(seed: int) -> None:
    """The same random sequence through put_one/delete_one and through apply: equal results, rows, usage, floor."""
    rng = random.Random(seed)
    clock, fast, planned = _twins()
    keys = [b"a", b"b", b"c", b"dd", b"eee"]
    for step in range(3000):
        key = rng.choice(keys)
        limit = rng.choice([None, None, 40, 60, 200])
        action = rng.random()
        if action < 0.45:  # a plain put: the hot path against the planner
            value = bytes(rng.randint(0, 12))
            try:
                fast_outcome: int | str = fast.put_one(NS, key, value, limit)
            except QuotaExceeded as exc:
                fast_outcome = str(exc)
            try:
                planned_outcome: int | str = planned.apply(NS, (Write(key, WriteKind.PUT, value),), limit).results[0]
            except QuotaExceeded as exc:
                planned_outcome = str(exc)
            assert fast_outcome == planned_outcome
        elif action < 0.65:
            removed = fast.delete_one(NS, key)
            assert removed == (planned.apply(NS, (Write(key, WriteKind.DELETE),), None).results[0] == 1)
        elif action < 0.8:  # rows with an expiry, written the same way on both
            write = Write(key, WriteKind.PUT, bytes(rng.randint(0, 5)), clock() + rng.randint(1, 3000))
            for backend in (fast, planned):
                backend.apply(NS, (write,), None)
        elif action < 0.9:
            clock.advance(rng.random() * 2)
        elif action < 0.95:
            step_limit = rng.choice([None, 1])
            for backend in (fast, planned):
                backend.delete_range(NS, b"", None, expired_only=True, limit=step_limit)
        else:
            for backend in (fast, planned):
                backend.clear(NS)
        assert _rows(fast) == _rows(planned), step
        for read in (_reads(fast, keys), _reads(planned, keys)):  # every reader, whatever form a row has
            assert read == (_rows_live(planned, clock()), list(_rows_live(planned, clock()))), step
        assert fast.usage(NS) == planned.usage(NS)
        assert _floor(fast) == _floor(planned)
    assert fast.verify().ok and planned.verify().ok


def test_an_overwrite_of_a_row_with_an_expiry_clears_it() -> None:
    """put_one on a row with an expiry (handed to apply) removes the expiry and bumps the version."""
    backend = MemoryBackend()
    backend.clock = FakeClock(start_ms=0)
    backend.apply(NS, (Write(b"k", WriteKind.PUT, b"v", 10),), None)
    assert backend.put_one(NS, b"k", b"w", None) == 2
    assert _rows(backend) == {b"k": (b"w", 2, None)}
    assert not backend._spaces[NS].expiring


def test_a_new_key_stored_as_its_value_alone_reads_as_version_1() -> None:
    """put_one stores a new key of a floor-0 namespace as bytes (version 1, no expiry); everything reads it so."""
    backend = MemoryBackend()
    backend.clock = FakeClock(start_ms=0)
    assert backend.put_one(NS, b"n", b"7", None) == 1
    assert type(backend._spaces[NS].rows[b"n"]) is bytes
    assert _rows(backend) == {b"n": (b"7", 1, None)}
    assert _reads(backend, [b"n"]) == ({b"n": (b"7", 1, None)}, [b"n"])
    assert backend.verify().ok
    assert backend.apply(NS, (Write(b"n", WriteKind.INCREMENT, delta=2),), None).results == [9]
    assert backend.put_one(NS, b"m", b"x", None) == 1
    assert backend.apply(NS, (Write(b"m", WriteKind.TOUCH, expires_at=5),), None).results == [2]
    assert backend.put_one(NS, b"o", b"y", None) == 1
    assert backend.put_one(NS, b"o", b"yy", None) == 2  # overwritten: a list from now on
    assert backend.put_one(NS, b"p", b"z", None) == 1
    assert backend.delete_one(NS, b"p") and _floor(backend) == 1
    assert backend.put_one(NS, b"q", b"w", None) == 2  # floor 1: a tuple row above it
    assert _rows(backend) == {b"n": (b"9", 2, None), b"m": (b"x", 2, 5), b"o": (b"yy", 2, None), b"q": (b"w", 2, None)}
    backend.clear(NS)
    assert _floor(backend) == 2


@pytest.mark.parametrize("seed", range(4))
def test_small_batches_of_puts_equal_the_planner(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """apply()'s written-out small batches of (conditional) puts give the planner's plan, rows, usage and errors."""
    rng = random.Random(seed)
    clock, fast, planned = _twins()
    keys = [b"a", b"b", b"c", b"dd", b"eee"]

    written_out = []
    put_few = airssys_storage_memory._put_few

    def counted(*args: Any) -> Any:
        plan = put_few(*args)
        written_out.append(plan is not None)
        return plan

    monkeypatch.setattr(airssys_storage_memory, "_put_few", counted)

    def planner_only(writes: list[Write], limit: int | None) -> object:
        fast_puts = airssys_storage_memory._FAST_PUTS
        airssys_storage_memory._FAST_PUTS = 0
        try:
            return _outcome(planned, writes, limit)
        finally:
            airssys_storage_memory._FAST_PUTS = fast_puts

    for step in range(2000):
        action = rng.random()
        if action < 0.6:
            writes = []
            for key in rng.sample(keys, rng.randint(1, 4)):
                entry = fast.get_entry(NS, key)
                condition = rng.choice([None, 0, 1, 2, None if entry is None else entry.version])
                writes.append(Write(key, WriteKind.PUT, bytes(rng.randint(0, 12)), None, condition))
            if rng.random() < 0.05:
                writes.append(writes[0])  # a repeated key: the planner's internal error on both
            limit = rng.choice([None, None, 40, 60, 200])
            assert _outcome(fast, writes, limit) == planner_only(writes, limit), step
        elif action < 0.7:
            key = rng.choice(keys)
            for backend in (fast, planned):
                backend.delete_one(NS, key)
        elif action < 0.8:  # rows with an expiry (the written-out path hands them to the planner)
            write = Write(rng.choice(keys), WriteKind.PUT, bytes(rng.randint(0, 5)), clock() + rng.randint(1, 3000))
            for backend in (fast, planned):
                backend.apply(NS, (write,), None)
        elif action < 0.9:
            clock.advance(rng.random() * 2)
        elif action < 0.95:
            key, value = rng.choice(keys), bytes(rng.randint(0, 5))
            for backend in (fast, planned):
                backend.put_one(NS, key, value, None)  # list rows
        else:
            for backend in (fast, planned):
                backend.clear(NS)
        assert _rows(fast) == _rows(planned), step
        assert _reads(fast, keys) == _reads(planned, keys), step
        assert fast.usage(NS) == planned.usage(NS)
        assert _floor(fast) == _floor(planned)
    assert fast.verify().ok and planned.verify().ok
    assert written_out.count(True) > 100 and written_out.count(False) > 100  # both ways were taken


def _outcome(backend: MemoryBackend, writes: list[Write], limit: int | None) -> object:
    """The plan as plain lists (events read), or the error's type and message."""
    try:
        plan = backend.apply(NS, writes, limit)
    except StorageError as exc:
        return type(exc), str(exc)
    return (plan.puts, plan.deletes, plan.space, plan.space_changed, plan.results, plan.existed, list(plan.events))
