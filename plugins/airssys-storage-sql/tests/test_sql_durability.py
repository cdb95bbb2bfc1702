"""Issue 9, sections 1 and 2 on the SQL engines: fork through the public API, racing first opens, verify."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from airssys_storage_sql import SQLBackend
from sqlsupport import Server

from airssys_storage import Access, Manifest, StorageError, StorageManager, StorageSettings, Usage


def manager_on(url: str, options: dict[str, Any]) -> StorageManager:
    return StorageManager.from_settings(StorageSettings(url=url, backend_options=options))


def _child_writes(store: Any, count: int, go: Any, acknowledged: Any) -> None:
    go.wait()
    done = 0
    for i in range(count):
        try:
            store.set(f"child-{i}", b"c" * (i % 13))
            done += 1
        except StorageError:
            pass
    acknowledged.value = done


def test_parent_and_forked_child_write_at_once_and_lose_nothing(store_url: str, store_options: dict[str, Any]) -> None:
    """The issue's fork inputs through StorageManager: "c" then "p", and 300 + 300 concurrent writes."""
    ctx = multiprocessing.get_context("fork")
    manager = manager_on(store_url, store_options)
    store = manager.component(Manifest("app", Access.ADMIN))
    store.set("before", b"x")  # the parent holds a connection at the fork
    go = ctx.Event()
    acknowledged = ctx.Value("i", -1)
    process = ctx.Process(target=_child_writes, args=(store, 300, go, acknowledged))
    process.start()
    go.set()
    for i in range(300):
        store.set(f"parent-{i}", b"p" * (i % 11))
    process.join(120)
    assert process.exitcode == 0
    assert acknowledged.value == 300
    store.set("p", b"p")
    manager.close()
    with manager_on(store_url, store_options) as again:
        store = again.component(Manifest("app", Access.ADMIN))
        keys = _all_keys(store)
        expected = {"before", "p"} | {f"parent-{i}" for i in range(300)} | {f"child-{i}" for i in range(300)}
        assert set(keys) == expected
        real = sum(len(k.encode()) + len(store.get(k) or b"") for k in keys)
        assert store.usage() == Usage(real, len(expected))
        assert again.backend.verify().ok


def _all_keys(store: Any) -> list[str]:
    found: list[str] = []
    cursor = None
    while True:
        items, cursor = store.scan(None, cursor, 500)
        found.extend(key for key, _ in items)
        if cursor is None:
            return found


def test_forked_child_of_an_in_memory_sqlite_store_works_on_its_own_copy() -> None:
    """sqlite:// in a forked child: a private copy, the parent's data unchanged."""
    ctx = multiprocessing.get_context("fork")
    with manager_on("sqlite://", {}) as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        store.set("before", b"x")
        process = ctx.Process(target=_set_and_check, args=(store,))
        process.start()
        process.join(60)
        assert process.exitcode == 0
        store.set("p", b"p")
        assert store.keys() == ["before", "p"]
        assert store.usage() == Usage(9, 2)


def _set_and_check(store: Any) -> None:
    store.set("c", b"c")
    assert store.keys() == ["before", "c"]


def _race_open(url: str, options: dict[str, Any], barrier: Any, results: Any, index: int) -> None:
    barrier.wait()
    try:
        backend = SQLBackend.open(url, options)
        try:
            backend.commit_one("race", b"k%d" % index, b"v", None)
        finally:
            backend.close()
    except StorageError as exc:
        results.put(f"{exc.code}: {exc}")
        return
    results.put("opened")


def test_processes_racing_to_create_the_schema_all_open(
    store_url: str, server: Server | None, fresh_prefix: str, tmp_path: Path
) -> None:
    """N processes opening one new store at once (schema creation racing): every one opens, none sees damage."""
    ctx = multiprocessing.get_context("fork")
    for round_ in range(3):
        url = f"sqlite:///{tmp_path}/race-{round_}.sqlite3" if server is None else store_url
        prefix = f"{fresh_prefix}{round_}"
        options = {} if server is None else {"table_prefix": prefix}
        barrier = ctx.Barrier(6)
        results = ctx.Queue()
        processes = [ctx.Process(target=_race_open, args=(url, options, barrier, results, i)) for i in range(6)]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(60)
        assert outcomes == ["opened"] * 6, outcomes
        backend = SQLBackend.open(url, options)
        try:
            assert backend.usage("race") == Usage(6 * 3, 6)
            assert backend.verify().ok
        finally:
            backend.close()
            if server is not None:
                server.drop(prefix)


@pytest.mark.engines("sqlite")
def test_sqlite_damage_is_reported_with_the_path_and_the_fix(tmp_path: Path) -> None:
    """A damaged SQLite file: verify (or any read that hits the damage) names the file and the rebuild command."""
    url = f"sqlite:///{tmp_path}/damaged.sqlite3"
    backend = SQLBackend.open(url, {})
    try:
        backend.commit("ns", [(b"k%05d" % i, b"v" * 200) for i in range(500)], None)
    finally:
        backend.close()  # the last connection checkpoints the log into the file
    path = tmp_path / "damaged.sqlite3"
    data = bytearray(path.read_bytes())
    data[4096 * 5 + 8 : 4096 * 5 + 60] = b"\xff" * 52  # scribble over a b-tree page's header and cells
    path.write_bytes(bytes(data))
    backend = SQLBackend.open(url, {})
    try:
        try:
            report = backend.verify()
        except StorageError as exc:
            problem = str(exc)
        else:
            assert not report.ok
            problem = report.problems[0]
        assert str(path) in problem and "is damaged" in problem
        assert ".recover" in problem and "airssys-storage verify --repair" in problem
    finally:
        backend.close()


def test_forked_child_of_a_busy_in_memory_sqlite_store_gets_a_consistent_copy() -> None:
    """sqlite:// forked while another thread commits: the child's copy holds whole batches and works."""
    import sys
    import threading

    ctx = multiprocessing.get_context("fork")
    with manager_on("sqlite://", {}) as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        stop = threading.Event()

        def churn() -> None:
            n = 0
            while not stop.is_set():
                value = b"x" * (n % 200)
                store.set_many([("a", value), ("b", value)])
                n += 1

        thread = threading.Thread(target=churn)
        switch = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        thread.start()
        try:
            for _ in range(20):
                process = ctx.Process(target=_check_copy, args=(store,))
                process.start()
                process.join(60)
                assert process.exitcode == 0
        finally:
            sys.setswitchinterval(switch)
            stop.set()
            thread.join(30)
        assert manager.backend.verify().ok


def _check_copy(store: Any) -> None:
    assert store.get("a") == store.get("b"), "the copy holds half of a batch"
    store.set("child", b"c")
    assert store.get("child") == b"c"


@pytest.mark.engines("sqlite")
def test_a_file_that_is_not_a_database_is_named_with_the_fix(tmp_path: Path) -> None:
    """Opening garbage as SQLite: an internal-error naming the file, not a raw DatabaseError."""
    path = tmp_path / "garbage.sqlite3"
    path.write_bytes(b"this is not a database" * 300)
    with pytest.raises(StorageError) as caught:
        SQLBackend.open(f"sqlite:///{path}", {})
    assert caught.value.code == "internal-error"
    assert f"SQLite database {path} is damaged or not a SQLite database" in str(caught.value)
