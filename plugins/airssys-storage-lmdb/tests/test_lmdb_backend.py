"""LMDB-specific behaviour: options, open errors, map growth (in one and across processes), stale readers, verify."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airssys_storage_lmdb import LMDBBackend, LMDBOptions, path_from_url
from airssys_storage_lmdb.layout import TIME, namespace_prefix

from airssys_storage import (
    Access,
    ConfigurationError,
    InternalError,
    Manifest,
    QuotaExceeded,
    StorageManager,
    StorageSettings,
    Usage,
)
from airssys_storage.planner import Write, WriteKind

KiB = 1024
MiB = 1024 * KiB


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"lmdb://{tmp_path}/db"


@pytest.fixture
def backend(url: str) -> Iterator[LMDBBackend]:
    backend = LMDBBackend.open(url, {"sync": False})
    try:
        yield backend
    finally:
        backend.close()


def manager_on(url: str, **options: Any) -> StorageManager:
    return StorageManager.from_settings(StorageSettings(url=url, backend_options=options))


def fill(backend: LMDBBackend, namespace: str, count: int, size: int, tag: bytes = b"v") -> None:
    """Write *count* keys of *size* bytes each, 16 keys per commit."""
    for first in range(0, count, 16):
        writes = [Write(f"k{i:06}".encode(), WriteKind.PUT, tag * size) for i in range(first, min(first + 16, count))]
        backend.apply(namespace, writes, None)


# -- URL and options ---------------------------------------------------------------


def test_url_names_an_absolute_directory() -> None:
    assert path_from_url("lmdb:///var/lib/x/") == "/var/lib/x"
    for bad in ["lmdb://host/x", "lmdb:///x?map_size=1", "lmdb://", "sqlite:///x"]:
        with pytest.raises(ConfigurationError):
            path_from_url(bad)


def test_options_are_validated_and_sizes_parsed() -> None:
    options = LMDBBackend.parse_options({"map_size": "1MiB", "max_map_size": "8MiB", "sync": False})
    assert isinstance(options, LMDBOptions)
    assert (options.map_size, options.max_map_size, options.sync, options.metasync) == (MiB, 8 * MiB, False, True)
    for bad in [
        {"map_size": "1KiB"},
        {"map_size": "8MiB", "max_map_size": "1MiB"},
        {"max_readers": 0},
        {"map_sise": 1},
        {"map_size": True},
    ]:
        with pytest.raises(ConfigurationError):
            LMDBBackend.parse_options(bad)


def test_open_refuses_a_foreign_directory_and_a_missing_parent(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    with pytest.raises(ConfigurationError, match="not empty"):
        LMDBBackend.open(f"lmdb://{tmp_path}/other", {})
    with pytest.raises(ConfigurationError, match="parent directory"):
        LMDBBackend.open(f"lmdb://{tmp_path}/missing/db", {})
    assert LMDBBackend.exists(f"lmdb://{tmp_path}/db", {}) is False


def test_two_opens_in_one_process_share_one_environment(url: str) -> None:
    first = LMDBBackend.open(url, {"sync": False})
    second = LMDBBackend.open(url, {"sync": False})
    try:
        first.apply("app", [Write(b"a", WriteKind.PUT, b"1")], None)
        assert second.get("app", b"a") == b"1"
        with pytest.raises(ConfigurationError, match="other backend_options"):
            LMDBBackend.open(url, {"sync": True})
        first.close()
        assert second.get("app", b"a") == b"1"  # the environment stays open for the other backend
    finally:
        second.close()
    with pytest.raises(InternalError, match="closed"):
        second.get("app", b"a")


def test_key_limit_is_checked_against_lmdb(url: str) -> None:
    with pytest.raises(ConfigurationError, match="max_key_bytes"):
        StorageManager.from_settings(StorageSettings(url=url, max_key_bytes=1000))
    with manager_on(url, sync=False) as manager:  # the default (256 bytes) fits
        store = manager.component(Manifest("app", Access.ADMIN))
        store.set("k" * 256, b"x", ttl=60)
        assert store.get("k" * 256) == b"x"


# -- map growth ----------------------------------------------------------------------


def test_a_full_map_grows_inside_the_commit(url: str) -> None:
    backend = LMDBBackend.open(url, {"map_size": "64KiB", "sync": False})
    try:
        fill(backend, "app", 400, 4 * KiB)  # 1.6 MB through a 64 KiB map
        assert backend.stats()["map_growths"] >= 4
        assert backend.stats()["map_size"] >= 1600 * KiB
        assert backend.usage("app") == Usage(400 * (7 + 4 * KiB), 400)
        assert backend.get("app", b"k000399") == b"v" * 4 * KiB
    finally:
        backend.close()


def test_the_ceiling_is_a_clear_error_and_writes_nothing(url: str) -> None:
    with manager_on(url, map_size="64KiB", max_map_size="256KiB", sync=False) as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        store.set("small", b"x")
        with pytest.raises(InternalError, match="max_map_size") as info:
            store.set_many({f"big{i}": b"y" * 100 * KiB for i in range(4)})
        assert not isinstance(info.value, QuotaExceeded)
        assert store.keys() == ["small"]
        assert store.usage() == Usage(6, 1)
        store.set("after", b"z")  # the store still works
        assert store.keys() == ["after", "small"]


def _grow_in_child(url: str, ready: Any) -> None:
    backend = LMDBBackend.open(url, {"map_size": "64KiB", "sync": False})
    fill(backend, "child", 600, 4 * KiB, b"c")  # ~2.5 MB: the map grows well past the parent's
    ready.put(backend.stats()["map_size"])
    backend.close()


def test_growth_in_one_process_is_adopted_by_another(url: str) -> None:
    """The parent's 64 KiB map is outgrown by a child; the parent then reads the child's data and writes."""
    parent = LMDBBackend.open(url, {"map_size": "64KiB", "sync": False})
    try:
        parent.apply("parent", [Write(b"p", WriteKind.PUT, b"1")], None)
        assert parent.get("parent", b"p") == b"1"  # the parent holds its map and a reader slot
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        child = ctx.Process(target=_grow_in_child, args=(url, queue))
        child.start()
        child_map = queue.get(timeout=120)
        child.join(60)
        assert child.exitcode == 0
        assert child_map >= 2 * MiB
        assert parent._shared.adopted == 0  # nothing read yet
        # Reading data beyond the parent's map: MDB_MAP_RESIZED, adopted, retried.
        assert parent.get("child", b"k000599") == b"c" * 4 * KiB
        assert parent.stats()["map_sizes_adopted"] >= 1
        assert parent.usage("child") == Usage(600 * (7 + 4 * KiB), 600)
        fill(parent, "parent", 100, 4 * KiB)
        assert parent.verify().ok
    finally:
        parent.close()


# -- stale readers -------------------------------------------------------------------


def _read_and_hang(url: str, max_readers: int, ready: Any) -> None:
    backend = LMDBBackend.open(url, {"max_readers": max_readers, "sync": False})
    txn = backend._shared.env.begin()  # a reader slot, held until the process dies
    txn.get(b"x")
    ready.put(os.getpid())
    signal.pause()


def _open_and_report(url: str, ready: Any) -> None:
    backend = LMDBBackend.open(url, {"sync": False})
    backend.apply("app", [Write(b"a", WriteKind.PUT, b"1")], None)
    ready.put((backend.stats()["stale_readers_cleared"], backend.get("app", b"a")))
    backend.close()


def _kill_readers(url: str, max_readers: int, count: int) -> None:
    """Start *count* processes that each hold a reader slot, and SIGKILL them mid-read."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    children = [ctx.Process(target=_read_and_hang, args=(url, max_readers, queue), daemon=True) for _ in range(count)]
    for child in children:
        child.start()
    for _ in children:
        queue.get(timeout=120)
    for child in children:
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)


def test_reader_slots_of_killed_processes_are_freed_at_open(url: str) -> None:
    """Readers SIGKILLed mid-read leave their slots; the next process to open the store frees them.

    This process keeps the store open throughout: LMDB resets the reader table when a process opens a
    store no other process has open, so stale slots matter (and are tested) only on a store in use.
    """
    holder = LMDBBackend.open(url, {"sync": False})
    try:
        holder.apply("app", [Write(b"h", WriteKind.PUT, b"h")], None)
        _kill_readers(url, 126, 3)
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        checker = ctx.Process(target=_open_and_report, args=(url, queue), daemon=True)
        checker.start()
        assert queue.get(timeout=120) == (3, b"1")
        checker.join(30)
        assert holder.get("app", b"a") == b"1"
    finally:
        holder.close()


def test_a_reader_table_full_of_dead_readers_is_freed_by_the_next_read(url: str) -> None:
    """Every slot but this process's own is held by a killed process: a read that needs one more frees them."""
    holder = LMDBBackend.open(url, {"max_readers": 4, "sync": False})
    try:
        holder.apply("app", [Write(b"h", WriteKind.PUT, b"h")], None)
        assert holder.get("app", b"h") == b"h"  # this process's slot (kept for its next read)
        _kill_readers(url, 4, 3)
        pinned = holder._shared.env.begin()  # takes this process's slot: the next read needs a fifth
        try:
            assert holder.get("app", b"h") == b"h"
            holder.apply("app", [Write(b"i", WriteKind.PUT, b"i")], None)
        finally:
            pinned.abort()
        assert holder.stats()["stale_readers_cleared"] == 3
    finally:
        holder.close()


# -- verify and repair -----------------------------------------------------------------


def test_verify_finds_and_repair_rebuilds_a_damaged_expiry_index(backend: LMDBBackend) -> None:
    backend.apply("app", [Write(b"a", WriteKind.PUT, b"1", expires_at=2**40), Write(b"b", WriteKind.PUT, b"2")], None)
    shared = backend._shared
    prefix = namespace_prefix("app")
    with shared.env.begin(write=True) as txn:  # lose one entry, invent another
        assert txn.delete(prefix + TIME.pack(2**40) + b"a", db=shared.expiry)
        txn.put(prefix + TIME.pack(5) + b"ghost", b"", db=shared.expiry)
    report = backend.verify()
    assert not report.ok and "expiry index" in report.problems[0]
    assert backend.verify(repair=True).ok
    assert backend.verify().ok
    backend.apply("app", [Write(b"a", WriteKind.DELETE)], None)
    with shared.env.begin() as txn:
        assert list(txn.cursor(db=shared.expiry).iternext(values=False)) == []


def test_repair_url_recounts(url: str) -> None:
    with manager_on(url, sync=False) as manager:
        manager.component(Manifest("app", Access.ADMIN)).set_many({"a": b"1", "bb": b"22"})
        backend = manager.backend
        assert isinstance(backend, LMDBBackend)
        shared = backend._shared
        with shared.env.begin(write=True) as txn:
            txn.put(b"app", bytes(24), db=shared.usage)
    report = LMDBBackend.repair_url(url, {"sync": False})
    assert report["counters_corrected"] == ["app"] and report["keys"] == 2
    with manager_on(url, sync=False) as manager:
        assert manager.component(Manifest("app", Access.ADMIN)).usage() == Usage(6, 2)


def test_a_long_read_never_blocks_a_commit(backend: LMDBBackend) -> None:
    """MVCC: a read transaction held open keeps its snapshot while commits go on, and delays none of them."""
    backend.apply("app", [Write(b"a", WriteKind.PUT, b"first")], None)
    shared = backend._shared
    snapshot = shared.env.begin()
    try:
        for i in range(50):
            backend.apply("app", [Write(b"a", WriteKind.PUT, b"v" * i)], None)
        assert backend.get("app", b"a") == b"v" * 49
        raw = snapshot.get(namespace_prefix("app") + b"a", db=shared.data)
        assert raw is not None and raw[16:] == b"first"
    finally:
        snapshot.abort()


def _write_until_killed(url: str, started: Any) -> None:
    backend = LMDBBackend.open(url, {"sync": False})
    round_ = 0
    while True:
        backend.apply(
            "child", [Write(f"k{i:03}".encode(), WriteKind.PUT, b"x" * (round_ % 300)) for i in range(200)], None
        )
        round_ += 1
        started.value = round_


def test_a_writer_killed_mid_commit_never_wedges_a_process_that_has_the_store_open(url: str) -> None:
    """SIGKILL a writer (mostly inside its write transaction) while this process keeps the store open.

    LMDB's write lock is a robust mutex: the next writer takes it over from the dead one, whose
    uncommitted pages are dropped. (A store that no process keeps open would get a fresh lock file
    at the next open; this test keeps it open, so the takeover itself is what is tested.)
    """
    holder = LMDBBackend.open(url, {"sync": False})
    ctx = multiprocessing.get_context("spawn")
    try:
        for kill in range(5):
            started = ctx.Value("i", 0)
            child = ctx.Process(target=_write_until_killed, args=(url, started), daemon=True)
            child.start()
            while started.value < 3 + kill:
                time.sleep(0.001)
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)
            child.join(30)
            holder.apply("holder", [Write(f"h{kill}".encode(), WriteKind.PUT, b"h")], None)  # takes the lock over
            rows = holder.items("child", b"", None, 1000)
            assert len(rows) == 200 and len({value for _, value in rows}) == 1, "a torn batch"
            assert holder.usage("child") == Usage(sum(len(k) + len(v) for k, v in rows), 200)
        assert holder.verify().ok
        assert holder.keys("holder", b"", None, 10) == [f"h{i}".encode() for i in range(5)]
    finally:
        holder.close()


@pytest.mark.parametrize(
    ("files", "found"),
    [
        (["CURRENT", "MANIFEST-000005", "LOG", "000009.ldb"], "leveldb"),
        (["CURRENT", "OPTIONS-000007", "IDENTITY"], "rocksdb"),
    ],
)
def test_a_store_of_another_engine_is_never_opened_or_repaired(tmp_path: Path, files: list[str], found: str) -> None:
    from airssys_storage import ConfigurationError

    store = tmp_path / "db"
    store.mkdir()
    for name in files:
        (store / name).write_bytes(b"x" * 200)
    before = {p.name: p.read_bytes() for p in store.iterdir()}
    url = f"lmdb://{store}"
    for attempt in (
        lambda: LMDBBackend.open(url, {}),
        lambda: LMDBBackend.repair_url(url),
        lambda: LMDBBackend.exists(url, {}),
    ):
        with pytest.raises(ConfigurationError, match=f"use {found}://{store}"):
            attempt()
    assert {p.name: p.read_bytes() for p in store.iterdir()} == before
