"""Collections on the host: typed values, errors with codes, the prefix registry, limits, paging."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pydantic
import pytest

from airssys_storage import ComponentStorage, Manifest, StorageManager, StorageSettings
from airssys_storage.collections import (
    PrefixConflict,
    StorageMap,
    StorageQueue,
    StorageSet,
    StorageTreeMap,
    StorageVector,
    ValueDecodeError,
)
from airssys_storage.errors import InvalidArgument, InvalidKey, PermissionDenied, StorageError


@dataclasses.dataclass
class Point:
    x: int
    y: int


class User(pydantic.BaseModel):
    name: str
    age: int


def test_nothing_is_imported_at_import_airssys_storage() -> None:
    """`import airssys_storage` loads neither the collections nor the SDK."""
    code = (
        "import sys, airssys_storage; print(sorted(m for m in sys.modules "
        "if m == 'airssys_storage.collections' or m.startswith('airssys_storage_sdk')))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_the_sdk_errors_are_the_core_errors_on_the_host() -> None:
    """One hierarchy: `except StorageError` catches the collection errors; the codes are stable."""
    import airssys_storage_sdk.errors as sdk

    assert sdk.InvalidKey is InvalidKey and sdk.StorageError is StorageError
    assert issubclass(ValueDecodeError, StorageError) and ValueDecodeError.code == "value-decode-error"
    assert issubclass(PrefixConflict, StorageError) and PrefixConflict.code == "prefix-conflict"


def test_dataclass_and_pydantic_values(memory_storage: ComponentStorage) -> None:
    """A value_type of a dataclass or a pydantic model stores its JSON object and rebuilds the instance."""
    points: StorageMap[str, Point] = StorageMap(memory_storage, "points/", value_type=Point)
    points["a"] = Point(1, 2)
    assert points["a"] == Point(1, 2)
    assert memory_storage.get("points/'a ") == b'{"x":1,"y":2}'
    users: StorageMap[int, User] = StorageMap(memory_storage, "users/", value_type=User)
    users[7] = User(name="Ada", age=36)
    assert users[7] == User(name="Ada", age=36)
    with pytest.raises(InvalidArgument, match="holds User, not Point"):
        users[8] = Point(1, 2)  # type: ignore[assignment]


@pytest.mark.parametrize(
    ("value_type", "stored", "message"),
    [
        (None, b"{not json", "is not JSON"),
        (None, b"\xff\xfe", "is not JSON"),
        (Point, b"[1, 2]", "is not a JSON object of Point fields"),
        (Point, b'{"x": 1}', "is not a Point"),
        (User, b'{"name": "Ada"}', "is not a User"),
    ],
)
def test_a_value_that_does_not_decode_is_a_typed_error(
    memory_storage: ComponentStorage, value_type: Any, stored: bytes, message: str
) -> None:
    """Never a raw JSONDecodeError / TypeError / ValidationError: ValueDecodeError naming the key."""
    values: StorageMap[str, Any] = StorageMap(memory_storage, "v/", value_type=value_type)
    memory_storage.set("v/'k ", stored)
    with pytest.raises(ValueDecodeError, match=message) as caught:
        values["k"]
    assert "v/'k " in str(caught.value) and caught.value.code == "value-decode-error"


@pytest.mark.parametrize("value", [{1, 2}, float("nan"), object()])
def test_a_value_json_cannot_hold_is_invalid_argument(memory_storage: ComponentStorage, value: Any) -> None:
    with pytest.raises(InvalidArgument, match="cannot be stored as JSON"):
        StorageMap(memory_storage, "m/")["k"] = value


def test_overlapping_prefixes_are_refused_at_creation(memory_storage: ComponentStorage) -> None:
    """A prefix that starts, or is the start of, a registered one is a PrefixConflict; reopening is fine."""
    StorageMap(memory_storage, "app/users/")
    StorageMap(memory_storage, "app/users/")  # the same collection again
    StorageSet(memory_storage, "app/tags/")
    for prefix in ("app/", "app/users/x", "a"):
        with pytest.raises(PrefixConflict, match="their keys would mix"):
            StorageVector(memory_storage, prefix)
    with pytest.raises(PrefixConflict, match="holds a map, not a queue"):
        StorageQueue(memory_storage, "app/users/")
    with pytest.raises(PrefixConflict, match="where the collections are registered"):
        StorageMap(memory_storage, "~airssys")
    assert memory_storage.keys("~airssys-collections/") == [
        "~airssys-collections/app/tags/",
        "~airssys-collections/app/users/",
    ]


def test_the_registry_holds_across_processes(open_storage: Callable[[], ComponentStorage]) -> None:
    """The registry is stored: another manager on the same store (another process) sees it."""
    StorageMap(open_storage(), "orders/")["o1"] = {"total": 3}
    again = open_storage()
    with pytest.raises(PrefixConflict):
        StorageSet(again, "orders/open/")
    assert StorageMap(again, "orders/")["o1"] == {"total": 3}


@pytest.mark.parametrize("prefix", ["", "a\nb", 3])
def test_a_bad_prefix_is_invalid_key(memory_storage: ComponentStorage, prefix: Any) -> None:
    with pytest.raises(InvalidKey, match="a collection prefix is a non-empty str"):
        StorageMap(memory_storage, prefix)


def test_a_key_past_the_limit_is_a_clear_invalid_key(memory_storage: ComponentStorage) -> None:
    """The encoded key (prefix included) must fit max_key_bytes: the error says how long it was."""
    names: StorageMap[str, int] = StorageMap(memory_storage, "n/")
    names["k" * 250] = 1  # 2 + 1 + 250 + 1 bytes
    with pytest.raises(InvalidKey, match=r"takes 257 bytes once encoded \(prefix included\); the maximum is 256"):
        names["k" * 253] = 1
    with pytest.raises(InvalidKey, match="bool keys are refused"):
        names[True] = 1  # type: ignore[index]


def test_a_read_only_component_reads_collections_it_did_not_create(memory_storage: ComponentStorage) -> None:
    """Opening a registered collection needs no write; creating one needs read-write."""
    StorageMap(memory_storage, "shared/")["k"] = 1
    manager: StorageManager = memory_storage._manager
    reader = manager.component(Manifest(id="app", access="read-only"))
    assert StorageMap(reader, "shared/")["k"] == 1
    with pytest.raises(PermissionDenied):
        StorageMap(reader, "other/")


def test_iteration_pages_through_scan(memory_storage: ComponentStorage) -> None:
    """Iterating asks for one page of page_size keys at a time (never the whole collection)."""
    values: StorageMap[int, int] = StorageMap(memory_storage, "p/", page_size=10)
    for index in range(35):
        values[index] = index
    calls: list[int] = []
    scan = memory_storage.scan

    class Spy:
        def __getattr__(self, name: str) -> Any:
            return getattr(memory_storage, name)

        def scan(self, prefix: str | None, cursor: str | None, limit: int) -> Any:
            calls.append(limit)
            return scan(prefix, cursor, limit)

    spied: StorageMap[int, int] = StorageMap(Spy(), "p/", page_size=10)  # type: ignore[arg-type]
    assert list(spied.items()) == [(index, index) for index in range(35)]
    assert calls == [10, 10, 10, 10]


def test_tree_map_queries(memory_storage: ComponentStorage) -> None:
    """first/last, floor/ceiling, lower/higher and range on str and tuple keys."""
    events: StorageTreeMap[tuple[str, int], str] = StorageTreeMap(memory_storage, "ev/")
    assert events.first() is None and events.last() is None and events.floor(("a", 0)) is None
    for day, hour in [("mon", 9), ("mon", 14), ("tue", 8), ("wed", 23), ("wed", -1)]:
        events[(day, hour)] = f"{day}@{hour}"
    assert events.first() == (("mon", 9), "mon@9")
    assert events.last() == (("wed", 23), "wed@23")
    assert events.floor(("tue", 0)) == (("mon", 14), "mon@14")
    assert events.ceiling(("tue", 0)) == (("tue", 8), "tue@8")
    assert events.lower(("tue", 8)) == (("mon", 14), "mon@14")
    assert events.higher(("tue", 8)) == (("wed", -1), "wed@-1")
    assert [key for key, _ in events.range(("mon", 10), ("wed", 0))] == [("mon", 14), ("tue", 8), ("wed", -1)]
    names: StorageTreeMap[str, int] = StorageTreeMap(memory_storage, "names/")
    for name in ["alice", "bob", "zoë", "émile", "a b", "~tilde", "z\x00"]:
        names[name] = len(name)
    assert names.last() == ("émile", 5)
    assert names.floor("c") == ("bob", 3)
    assert [key for key, _ in names.range("a", "b")] == ["a b", "alice"]


def test_set_operators_return_plain_sets(memory_storage: ComponentStorage) -> None:
    tags: StorageSet[str] = StorageSet(memory_storage, "tags/")
    tags |= {"a", "b"}
    assert tags & {"b", "c"} == {"b"}
    assert sorted(tags) == ["a", "b"] and len(tags) == 2


def test_map_sizes_stay_exact_under_concurrent_threads(memory_storage: ComponentStorage) -> None:
    """8 threads set and delete overlapping keys; the size counter equals the number of keys."""
    import threading

    shared: StorageMap[int, int] = StorageMap(memory_storage, "t/")

    def work(seed: int) -> None:
        for index in range(200):
            key = (index * 7 + seed) % 50
            if index % 3:
                shared[key] = seed
            else:
                shared.pop(key, None)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(shared) == len(list(shared))


def test_host_settings_limits_apply(tmp_path: Any) -> None:
    """A store whose max_batch_ops is small: pass page_size to match, and clear() batches within it."""
    settings = StorageSettings(url="memory://", max_batch_ops=5)
    with StorageManager.from_settings(settings) as manager:
        storage = manager.component(Manifest(id="x", access="read-write"))
        values: StorageSet[int] = StorageSet(storage, "s/", page_size=5)
        values |= set(range(23))
        values.clear()
        assert len(values) == 0 and list(values) == []


def test_vector_stays_exact_under_concurrent_appends_and_pops(open_storage: Callable[[], ComponentStorage]) -> None:
    """4 threads append 150 items each and pop every third time: nothing lost or duplicated, length exact."""
    import threading

    storage = open_storage()
    log: StorageVector[list[int]] = StorageVector(storage, "log/")
    popped: list[list[int]] = []

    def work(number: int) -> None:
        for index in range(150):
            log.append([number, index])
            if index % 3 == 0:
                try:
                    popped.append(log.pop())
                except IndexError:
                    pass

    threads = [threading.Thread(target=work, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    remaining = list(log)
    assert len(log) == len(remaining) == 600 - len(popped)
    every = sorted(tuple(item) for item in [*remaining, *popped])
    assert every == sorted((number, index) for number in range(4) for index in range(150))


def test_a_push_after_another_writers_change_reads_the_counter_again(memory_storage: ComponentStorage) -> None:
    """Two objects on one vector and one queue: each push skips the read only while its guess still holds."""
    first: StorageVector[int] = StorageVector(memory_storage, "v/")
    second: StorageVector[int] = StorageVector(memory_storage, "v/")
    model: list[int] = []
    for step in range(60):
        writer = first if step % 3 else second  # runs of two by one object, then one by the other
        if step % 7 == 6:
            assert writer.pop() == model.pop()
        else:
            writer.append(step)
            model.append(step)
        assert len(first) == len(second) == len(model)
    assert list(first) == list(second) == model
    stored = [key for key, _ in memory_storage.scan("v/", None, 1000)[0] if not key.startswith("v/!")]
    assert len(stored) == len(model)  # no slot beyond the length
    second.clear()
    first.append(-1)  # its guess is stale after the other's clear
    assert list(second) == [-1]
    jobs: StorageQueue[int] = StorageQueue(memory_storage, "q/")
    other: StorageQueue[int] = StorageQueue(memory_storage, "q/")
    for item in range(10):
        (jobs if item % 2 else other).push(item)
    assert [jobs.pop() for _ in range(10)] == list(range(10)) and jobs.pop() is None


def test_a_push_takes_one_atomic_batch_when_its_guess_holds(memory_storage: ComponentStorage) -> None:
    """The counter is read once (the first push); later pushes of the same object are one batch each."""
    calls: list[str] = []

    class Counting:
        def __getattr__(self, name: str) -> Any:
            calls.append(name)
            return getattr(memory_storage, name)

    log: StorageVector[int] = StorageVector(Counting(), "log/")  # type: ignore[arg-type]
    calls.clear()
    for item in range(5):
        log.append(item)
    assert calls == ["get_entry", "atomic"] + ["atomic"] * 4
    assert list(log) == [0, 1, 2, 3, 4]


def test_a_queue_emptied_under_an_old_object_pops_none_then_what_comes_next(storage: ComponentStorage) -> None:
    """Regression (outside trial): after delete_prefix (or clear, a range delete) emptied the queue, an object that
    still remembered the old tail raised ValueDecodeError ("slot missing") instead of returning None."""
    for empty in (lambda: storage.delete_prefix("jobs/"), lambda: storage.delete_range("jobs/", "jobs0")):
        jobs: StorageQueue[str] = StorageQueue(storage, "jobs/")
        for job in ("x", "y", "z"):
            jobs.push(job)
        assert jobs.pop() == "x"
        empty()
        assert jobs.pop() is None
        StorageQueue(storage, "jobs/").push("c")
        assert jobs.pop() == "c"
        assert jobs.pop() is None and len(jobs) == 0
