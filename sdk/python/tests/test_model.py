"""Each collection against a Python model (hypothesis stateful tests) on memory://, SQLite and LevelDB."""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from airssys_storage import ComponentStorage
from airssys_storage.collections import StorageQueue, StorageSet, StorageTreeMap, StorageVector

KEYS = st.one_of(
    st.integers(-1000, 1000),
    st.sampled_from([-(2**70), 2**64, 0, 1, -1, 63, 64, -64]),
)
STR_KEYS = st.text(st.characters(exclude_categories=["Cs"]), max_size=6)
VALUES = (
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8) | st.lists(st.integers(), max_size=3)
)
RUN = settings(max_examples=15, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck))
_prefixes = itertools.count()


def _fresh(kind: str) -> str:
    return f"{kind}{next(_prefixes)}/"


def run_map_model(storage: ComponentStorage, keys: st.SearchStrategy[Any]) -> None:
    class MapModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.real: StorageTreeMap[Any, Any] = StorageTreeMap(storage, _fresh("map"), page_size=3)
            self.model: dict[Any, Any] = {}

        @rule(key=keys, value=VALUES)
        def set(self, key: Any, value: Any) -> None:
            self.real[key] = value
            self.model[key] = value

        @rule(key=keys)
        def delete(self, key: Any) -> None:
            assert self.real.pop(key, "absent") == self.model.pop(key, "absent")

        @rule(key=keys)
        def get(self, key: Any) -> None:
            assert self.real.get(key, "absent") == self.model.get(key, "absent")
            assert (key in self.real) == (key in self.model)

        @rule(key=keys)
        def neighbours(self, key: Any) -> None:
            ordered = sorted(self.model)
            below = [k for k in ordered if k <= key]
            above = [k for k in ordered if k >= key]
            assert self.real.floor(key) == ((below[-1], self.model[below[-1]]) if below else None)
            assert self.real.ceiling(key) == ((above[0], self.model[above[0]]) if above else None)
            strictly_below = [k for k in ordered if k < key]
            assert self.real.lower(key) == (
                (strictly_below[-1], self.model[strictly_below[-1]]) if strictly_below else None
            )

        @rule(low=keys, high=keys)
        def range(self, low: Any, high: Any) -> None:
            assert list(self.real.range(low, high)) == [
                (k, self.model[k]) for k in sorted(self.model) if low <= k < high
            ]

        @precondition(lambda self: len(self.model) > 0)
        @rule()
        def clear(self) -> None:
            self.real.clear()
            self.model.clear()

        @invariant()
        def same(self) -> None:
            ordered = sorted(self.model)
            assert len(self.real) == len(self.model)
            assert list(self.real.items()) == [(k, self.model[k]) for k in ordered]
            assert self.real.first() == ((ordered[0], self.model[ordered[0]]) if ordered else None)
            assert self.real.last() == ((ordered[-1], self.model[ordered[-1]]) if ordered else None)

    run_state_machine_as_test(MapModel, settings=RUN)


def test_tree_map_with_int_keys(storage: ComponentStorage) -> None:
    """A StorageTreeMap of int keys behaves as a sorted dict: get, set, pop, floor/ceiling/lower, range, len."""
    run_map_model(storage, KEYS)


def test_tree_map_with_str_keys(storage: ComponentStorage) -> None:
    """The same with str keys of any Unicode (control characters and escapes included)."""
    run_map_model(storage, STR_KEYS)


def test_set(storage: ComponentStorage) -> None:
    """A StorageSet behaves as a set: add, discard, in, len, ordered iteration."""

    class SetModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.real: StorageSet[Any] = StorageSet(storage, _fresh("set"), page_size=3)
            self.model: set[Any] = set()

        @rule(key=st.tuples(STR_KEYS, st.integers(-5, 5)) | st.tuples(st.binary(max_size=3), STR_KEYS))
        def add(self, key: Any) -> None:
            self.real.add(key)
            self.model.add(key)

        @rule(data=st.data())
        def discard(self, data: st.DataObject) -> None:
            key = data.draw(st.sampled_from(sorted(self.model, key=repr)) if self.model else st.just(("x", 0)))
            self.real.discard(key)
            self.model.discard(key)

        @invariant()
        def same(self) -> None:
            assert len(self.real) == len(self.model)
            assert set(self.real) == self.model
            for key in itertools.islice(self.model, 3):
                assert key in self.real

    run_state_machine_as_test(SetModel, settings=RUN)


def test_vector(storage: ComponentStorage) -> None:
    """A StorageVector behaves as a list: append, pop, indexing (negative too), assignment, len, iteration."""

    class VectorModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.real: StorageVector[Any] = StorageVector(storage, _fresh("vec"), page_size=3)
            self.model: list[Any] = []

        @rule(value=VALUES)
        def append(self, value: Any) -> None:
            self.real.append(value)
            self.model.append(value)

        @rule()
        def pop(self) -> None:
            if self.model:
                assert self.real.pop() == self.model.pop()
            else:
                try:
                    self.real.pop()
                except IndexError:
                    return
                raise AssertionError("pop of an empty vector did not raise IndexError")

        @rule(index=st.integers(-6, 6), value=VALUES)
        def assign(self, index: int, value: Any) -> None:
            if -len(self.model) <= index < len(self.model):
                self.real[index] = value
                self.model[index] = value
                assert self.real[index] == value

        @invariant()
        def same(self) -> None:
            assert len(self.real) == len(self.model)
            assert list(self.real) == self.model

    run_state_machine_as_test(VectorModel, settings=RUN)


def test_queue(storage: ComponentStorage) -> None:
    """A StorageQueue behaves as a FIFO: push, pop (None when empty), len."""

    class QueueModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.real: StorageQueue[Any] = StorageQueue(storage, _fresh("queue"))
            self.model: deque[Any] = deque()

        @rule(value=VALUES)
        def push(self, value: Any) -> None:
            self.real.push(value)
            self.model.append(value)

        @rule()
        def pop(self) -> None:
            assert self.real.pop() == (self.model.popleft() if self.model else None)

        @invariant()
        def same(self) -> None:
            assert len(self.real) == len(self.model)

    run_state_machine_as_test(QueueModel, settings=RUN)
