"""The stateful model test: random operations against a dict with a byte budget, versions and a clock.

:func:`model_machine` builds the hypothesis state machine that
:meth:`BackendConformance.test_stateful_model_against_a_dict` runs. The model
keeps every row (value and deadline in milliseconds), expired ones included,
since usage counts them until they are removed, and per key the highest
version seen, since a key's versions must only grow (also across delete and
re-create). It follows the contract's rules, not any backend's code:

- a read sees only live rows (``deadline > now``);
- a write that grows usage past the quota is refused, but first the
  component's expired rows are swept and the write is tried once more;
- a repeated operation id returns its first result and applies nothing;
- conditions (compare-and-swap, ``delete_if``) and counter errors are
  checked before the quota, and a refused write changes nothing;
- with capability ``change_feed``, the component's change feed replayed onto
  an empty dict gives its rows (expired ones included until removed) after
  every step.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, NamedTuple

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from airssys_storage import (
    Access,
    InvalidArgument,
    KeyNotFound,
    Manifest,
    PreconditionFailed,
    QuotaExceeded,
    StorageManager,
    TooManyKeys,
)
from airssys_storage.changes import FeedConfig, replay
from airssys_storage.planner import decode_counter

from .clock import FakeClock

__all__ = ["model_component_ids", "model_machine"]

_model_counter = itertools.count()

# Small alphabets make collisions, shared prefixes and overwrites likely; half the keys come
# from a handful, so reads and writes meet the keys earlier steps wrote.
_keys = st.one_of(
    st.sampled_from(["a", "a:", "a:b", "b", "é"]),
    st.text(alphabet=["a", "b", ":", "_", "%", "\\", "é", "A", " "], min_size=1, max_size=4),
)
_values = st.binary(max_size=24)
# Seconds (rounded up to whole milliseconds, as the contract says: 0.0005 lives 1 ms). Deadlines
# and clock steps are a few milliseconds, so the clock often lands exactly on a deadline.
_ttls = st.one_of(st.none(), st.sampled_from([0.001, 0.002, 0.0005, 0.003, 0.05]))
_steps = st.sampled_from([0.001, 0.002, 0.003, 0.05])
_counters = st.one_of(st.integers(-100, 100), st.sampled_from([2**63 - 1, -(2**63), 2**63 - 2]))
_deltas = st.one_of(st.integers(-5, 5), st.sampled_from([2**63 - 1, -(2**63)]))


def model_component_ids() -> Iterator[str]:
    """Fresh component ids for model tests (each example gets an empty namespace)."""
    while True:
        yield f"model-{next(_model_counter)}"


def utf8_sorted(keys: Any) -> list[str]:
    """*keys* in the store's order: bytewise by UTF-8."""
    return sorted(keys, key=lambda k: k.encode())


class _Row(NamedTuple):
    value: bytes
    #: Milliseconds since the epoch, or None.
    expires_at: int | None


def _size(key: str, value: bytes) -> int:
    return len(key.encode()) + len(value)


def model_machine(manager: StorageManager, clock: FakeClock, max_query: int) -> type[RuleBasedStateMachine]:
    """The state machine class for *manager*, whose backend reads time from *clock*."""
    ids = model_component_ids()

    class StorageModel(RuleBasedStateMachine):
        """The backend must behave exactly like this model."""

        @initialize(quota=st.integers(min_value=0, max_value=200))
        def open_component(self, quota: int) -> None:
            self.rows: dict[str, _Row] = {}
            #: The key's current version when known (None: changed by a write that returns no version).
            self.version: dict[str, int | None] = {}
            #: The highest version each key ever had: the next one must be above it.
            self.high: dict[str, int] = {}
            self.quota = quota
            #: Results recorded for operation ids (the model's clock never passes the retention window).
            self.done_ops: dict[tuple[str, str], int] = {}  # (key, op_id) -> first result: ids are per key
            component_id = next(ids)
            feed = manager.backend.capabilities.change_feed
            self.store = manager.component(Manifest(component_id, Access.ADMIN, quota, changes=feed or None))
            #: The change feed replayed so far (None: the backend keeps none) and the reader's cursor.
            self.replayed: dict[str, bytes | None] | None = None
            self.cursor = 0
            if feed:  # values captured (the model's values are small), so the replay holds them
                manager.backend.enable_changes(component_id, FeedConfig(capture_values=True, max_value_bytes=1 << 20))
                self.replayed = {}

        # -- the model's rules ----------------------------------------------------

        def _live(self, key: str) -> _Row | None:
            row = self.rows.get(key)
            if row is None or (row.expires_at is not None and row.expires_at <= clock()):
                return None
            return row

        def _live_items(self) -> list[tuple[str, bytes]]:
            return [(key, row.value) for key in utf8_sorted(self.rows) if (row := self._live(key)) is not None]

        def _deadline(self, ttl: float | None) -> int | None:
            return None if ttl is None else clock() + math.ceil(ttl * 1000)

        def _fits(self, new: dict[str, bytes | None]) -> bool:
            used = sum(_size(key, row.value) for key, row in self.rows.items())
            old = {key: _size(key, row.value) for key, row in self.rows.items() if key in new}
            delta = sum((0 if value is None else _size(key, value)) - old.get(key, 0) for key, value in new.items())
            return delta <= 0 or used + delta <= self.quota

        def _accepts(self, new: dict[str, bytes | None]) -> bool:
            """The guard rule with the sweep-and-retry: expired rows go when they stand in the way."""
            if self._fits(new):
                return True
            expired = [key for key in self.rows if self._live(key) is None]
            for key in expired:
                self._remove(key)
            return bool(expired) and self._fits(new)

        def _remove(self, key: str) -> None:
            self.rows.pop(key, None)
            self.version.pop(key, None)

        def _wrote(self, key: str, row: _Row, version: int | None) -> None:
            """Record a write of *key*; *version* is what the call returned (None: it returns none)."""
            if version is not None:
                self._check_new_version(key, version)
            self.rows[key] = row
            self.version[key] = version

        def _check_new_version(self, key: str, version: int) -> None:
            previous = self.high.get(key, 0)
            assert version > previous, f"key {key!r} got version {version}, not above its earlier {previous}"
            self.high[key] = version

        def _current_version(self, key: str) -> int:
            """The live *key*'s version, read with get_entry when a write left it unknown."""
            known = self.version.get(key)
            if known is not None:
                return known
            entry = self.store.get_entry(key)
            assert entry is not None
            self._check_new_version(key, entry.version)
            self.version[key] = entry.version
            return entry.version

        def _guarded_write(self, new: dict[str, bytes | None], call: Callable[[], Any]) -> tuple[bool, Any]:
            """Run *call*, a write of *new*; ``(True, result)``, or ``(False, None)`` when it must be refused."""
            if self._accepts(new):
                return True, call()
            with pytest.raises(QuotaExceeded):
                call()
            return False, None

        # -- writes ---------------------------------------------------------------------

        @rule(key=_keys, value=_values, ttl=_ttls)
        def set(self, key: str, value: bytes, ttl: float | None) -> None:
            done, version = self._guarded_write({key: value}, lambda: self.store.set(key, value, ttl=ttl))
            if done:
                self._wrote(key, _Row(value, self._deadline(ttl)), version)

        @rule(key=_keys, number=_counters)
        def set_counter(self, key: str, number: int) -> None:
            self.set(key, b"%d" % number, None)

        @rule(pairs=st.lists(st.tuples(_keys, _values), max_size=6), ttl=_ttls)
        def set_many(self, pairs: list[tuple[str, bytes]], ttl: float | None) -> None:
            new: dict[str, bytes | None] = dict(pairs)
            done, _ = self._guarded_write(new, lambda: self.store.set_many(pairs, ttl=ttl))
            if done:
                for key, value in dict(pairs).items():
                    self._wrote(key, _Row(value, self._deadline(ttl)), None)

        @rule(key=_keys)
        def delete(self, key: str) -> None:
            assert self.store.delete(key) is (self._live(key) is not None)
            self._remove(key)

        @rule(keys=st.lists(_keys, max_size=6))
        def delete_many(self, keys: list[str]) -> None:
            live = {key for key in keys if self._live(key) is not None}
            assert self.store.delete_many(keys) == len(live)
            for key in keys:
                self._remove(key)

        @rule(key=_keys, value=_values, ttl=_ttls, which=st.sampled_from(["current", "stale", "absent"]))
        def compare_and_swap(self, key: str, value: bytes, ttl: float | None, which: str) -> None:
            live = self._live(key) is not None
            if which == "absent":
                version, holds = None, not live
            elif live:
                current = self._current_version(key)
                version, holds = (current, True) if which == "current" else (current + 1, False)
            else:
                version, holds = self.high.get(key, 0) + 1, False
            call: Callable[[], int] = partial(self.store.compare_and_swap, key, value, version=version, ttl=ttl)
            if not holds:
                with pytest.raises(PreconditionFailed):
                    call()
                return
            done, new_version = self._guarded_write({key: value}, call)
            if done:
                self._wrote(key, _Row(value, self._deadline(ttl)), new_version)

        @rule(key=_keys, value=_values, ttl=_ttls)
        def set_if_absent(self, key: str, value: bytes, ttl: float | None) -> None:
            if self._live(key) is not None:
                assert self.store.set_if_absent(key, value, ttl=ttl) is False
                return
            done, result = self._guarded_write({key: value}, lambda: self.store.set_if_absent(key, value, ttl=ttl))
            if done:
                assert result is True
                self._wrote(key, _Row(value, self._deadline(ttl)), None)

        @rule(key=_keys, stale=st.booleans())
        def delete_if(self, key: str, stale: bool) -> None:
            if self._live(key) is None:
                assert self.store.delete_if(key, version=self.high.get(key, 0) + 1) is False
                return
            current = self._current_version(key)
            assert self.store.delete_if(key, version=current + 1 if stale else current) is not stale
            if not stale:
                self._remove(key)

        @rule(key=_keys, delta=_deltas, op_id=st.one_of(st.none(), st.sampled_from(["op-a", "op-b", "op-c"])))
        def increment(self, key: str, delta: int, op_id: str | None) -> None:
            if op_id is not None and (key, op_id) in self.done_ops:  # a replay: the first result, nothing applied
                assert self.store.increment(key, delta, op_id=op_id) == self.done_ops[key, op_id]
                return
            row = self._live(key)
            try:
                number = (0 if row is None else decode_counter(row.value, key.encode())) + delta
            except InvalidArgument:
                number = None
            if number is None or not -(2**63) <= number < 2**63:
                with pytest.raises(InvalidArgument):
                    self.store.increment(key, delta, op_id=op_id)
                return
            value = b"%d" % number
            done, result = self._guarded_write({key: value}, lambda: self.store.increment(key, delta, op_id=op_id))
            if done:
                assert result == number
                if op_id is not None:
                    self.done_ops[key, op_id] = number
                self._wrote(key, _Row(value, None if row is None else row.expires_at), None)

        @precondition(lambda self: bool(self.done_ops))
        @rule(data=st.data(), delta=_deltas)
        def retry_increment(self, data: st.DataObject, delta: int) -> None:
            """A caller whose reply was lost retries with the same key and op id: the first result, nothing applied."""
            key, op_id = data.draw(st.sampled_from(sorted(self.done_ops)))
            assert self.store.increment(key, delta, op_id=op_id) == self.done_ops[key, op_id]

        @rule(key=_keys, ttl=st.sampled_from([0.001, 0.01, 1.0]))
        def expire(self, key: str, ttl: float) -> None:
            row = self._live(key)
            assert self.store.expire(key, ttl) is (row is not None)
            if row is not None:
                self._wrote(key, _Row(row.value, self._deadline(ttl)), None)

        @rule(key=_keys)
        def persist(self, key: str) -> None:
            row = self._live(key)
            assert self.store.persist(key) is (row is not None)
            if row is not None:  # a write of the expiry, like expire(): the version grows
                self._wrote(key, _Row(row.value, None), None)

        @rule(step=_steps)
        def advance_clock(self, step: float) -> None:
            clock.advance(step)

        @precondition(lambda self: any(row.expires_at is not None for row in self.rows.values()))
        @rule(data=st.data())
        def advance_to_a_deadline(self, data: st.DataObject) -> None:
            """Move the clock exactly onto a key's deadline and read it there: expiry is exact, not late."""
            deadlines = sorted({row.expires_at for row in self.rows.values() if row.expires_at is not None})
            target = data.draw(st.sampled_from(deadlines))
            clock.advance_to(target)
            for key in utf8_sorted(self.rows):
                assert self.store.get(key) == (None if (row := self._live(key)) is None else row.value), key

        @rule(limit=st.one_of(st.none(), st.integers(min_value=1, max_value=3)))
        def purge_expired(self, limit: int | None) -> None:
            expired = [key for key in utf8_sorted(self.rows) if self._live(key) is None][:limit]
            assert self.store.purge_expired(limit) == len(expired)
            for key in expired:
                self._remove(key)

        @rule(prefix=_keys)
        def delete_prefix(self, prefix: str) -> None:
            self._delete_rows([key for key in self.rows if key.encode().startswith(prefix.encode())], prefix)

        @rule(start=_keys, end=_keys)
        def delete_range(self, start: str, end: str) -> None:
            low, high = sorted((start.encode(), end.encode()))
            if low == high:
                return
            self._delete_rows([key for key in self.rows if low <= key.encode() < high], low.decode(), high.decode())

        def _delete_rows(self, keys: list[str], start: str, end: str | None = None) -> None:
            live = sum(self._live(key) is not None for key in keys)
            removed = self.store.delete_prefix(start) if end is None else self.store.delete_range(start, end)
            assert removed == live
            for key in keys:
                self._remove(key)

        @precondition(lambda self: len(self.rows) > 0)
        @rule()
        def clear(self) -> None:
            self.store.clear()
            self.rows.clear()
            self.version.clear()

        # -- reads ----------------------------------------------------------------------------

        @rule(key=_keys)
        def get(self, key: str) -> None:
            row = self._live(key)
            assert self.store.get(key) == (None if row is None else row.value)
            assert self.store.has(key) is (row is not None)

        @rule(key=_keys)
        def get_entry(self, key: str) -> None:
            row = self._live(key)
            entry = self.store.get_entry(key)
            if row is None:
                assert entry is None
                return
            assert entry is not None and entry.value == row.value
            if row.expires_at is None:
                assert entry.expires_at is None
            else:
                assert entry.expires_at == pytest.approx(row.expires_at / 1000, abs=1e-5)
            assert self._current_version(key) == entry.version

        @rule(key=_keys)
        def ttl(self, key: str) -> None:
            row = self._live(key)
            if row is None:
                with pytest.raises(KeyNotFound):
                    self.store.ttl(key)
            elif row.expires_at is None:
                assert self.store.ttl(key) is None
            else:
                assert self.store.ttl(key) == pytest.approx((row.expires_at - clock()) / 1000, abs=1e-5)

        @rule(keys=st.lists(_keys, max_size=6))
        def get_many(self, keys: list[str]) -> None:
            expected = [None if (row := self._live(key)) is None else row.value for key in keys]
            assert self.store.get_many(keys) == expected

        @rule(prefix=st.one_of(st.none(), _keys))
        def keys(self, prefix: str | None) -> None:
            raw = (prefix or "").encode()
            expected = [key for key, _ in self._live_items() if key.encode().startswith(raw)]
            if len(expected) > max_query:
                with pytest.raises(TooManyKeys):
                    self.store.keys(prefix)
            else:
                assert self.store.keys(prefix) == expected

        @rule(start=_keys, end=_keys)
        def range(self, start: str, end: str) -> None:
            low, high = start.encode(), end.encode()
            expected = [(key, value) for key, value in self._live_items() if low <= key.encode() < high]
            if len(expected) > max_query:
                with pytest.raises(TooManyKeys):
                    self.store.range(start, end)
            else:
                assert self.store.range(start, end) == expected

        @rule(limit=st.integers(min_value=1, max_value=5))
        def scan_all(self, limit: int) -> None:
            seen: list[tuple[str, bytes]] = []
            cursor = None
            while True:
                items, cursor = self.store.scan(None, cursor, limit)
                seen.extend(items)
                if cursor is None:
                    break
            assert seen == self._live_items()

        @invariant()
        def feed_replays_to_the_rows(self) -> None:
            if self.replayed is None:
                return
            while True:
                events, after = self.store.changes(self.cursor)
                assert [event.seq for event in events] == list(range(self.cursor + 1, after + 1))
                # Values are captured: a set without one changed only the expiry of a key the replay holds.
                touched = [event for event in events if event.op == "set" and event.value is None]
                assert all(event.key in self.replayed for event in touched)
                replay(self.replayed, [event for event in events if event not in touched])
                if after == self.cursor:
                    break
                self.cursor = after
            assert self.replayed == {key: row.value for key, row in self.rows.items()}

        @invariant()
        def usage_matches(self) -> None:
            usage = self.store.usage()
            assert usage.bytes == sum(_size(key, row.value) for key, row in self.rows.items())
            assert usage.keys == len(self.rows)

    return StorageModel
