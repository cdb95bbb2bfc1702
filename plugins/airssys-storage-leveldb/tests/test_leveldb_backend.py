"""LevelDB-specific behaviour: layout, options, open errors, single process, repair, atomicity."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import plyvel
import pytest
from airssys_storage_leveldb import LevelDBBackend, path_from_url
from airssys_storage_leveldb.layout import COUNTER, SCHEMA_KEY, counter_key, namespace_prefix
from airssys_storage_leveldb.options import LevelDBOptions
from hypothesis import given
from hypothesis import strategies as st

from airssys_storage import (
    Access,
    ConfigurationError,
    InternalError,
    InvalidArgument,
    Manifest,
    PluginRegistry,
    QuotaExceeded,
    StorageError,
    StorageManager,
    StorageSettings,
    Usage,
)
from airssys_storage.options import describe_options
from airssys_storage.planner import Write, WriteKind


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"leveldb://{tmp_path}/db"


@pytest.fixture
def backend(url: str) -> Iterator[LevelDBBackend]:
    backend = LevelDBBackend.open(url, {})
    try:
        yield backend
    finally:
        backend.close()


def manager_on(url: str, **options: Any) -> StorageManager:
    return StorageManager.from_settings(StorageSettings(url=url, backend_options=options))


def everything(backend: LevelDBBackend, namespace: str) -> dict[bytes, bytes]:
    return dict(backend.items(namespace, b"", None, 10**9))


def esc(path: Path) -> str:
    return re.escape(str(path))


def commit(
    backend: LevelDBBackend, namespace: str, changes: list[tuple[bytes, bytes | None]], limit: int | None
) -> int:
    """Puts and deletes (value ``None``) through apply(); how many of the keys existed."""
    writes = [
        Write(key, WriteKind.PUT, value) if value is not None else Write(key, WriteKind.DELETE)
        for key, value in changes
    ]
    return sum(backend.apply(namespace, writes, limit).existed)


def recomputed(data: dict[bytes, bytes]) -> Usage:
    return Usage(sum(len(k) + len(v) for k, v in data.items()), len(data))


# -- plugin and URL ----------------------------------------------------------------


def test_registered_through_the_entry_point() -> None:
    registry = PluginRegistry.load()
    assert registry.backend_for_url("leveldb:///tmp/x") is LevelDBBackend
    caps = LevelDBBackend.capabilities
    assert (caps.persistent, caps.multi_process, caps.repair) == (True, False, True)


def test_url_to_path() -> None:
    assert path_from_url("leveldb:///var/lib/x/db") == "/var/lib/x/db"
    assert path_from_url("leveldb:///var/lib/my%20db/") == "/var/lib/my db"
    assert path_from_url("leveldb:////var/lib/x/db") == "/var/lib/x/db"  # not "//var/…" in messages
    for bad in ("leveldb://host/db", "leveldb:///", "leveldb://", "leveldb:///db?sync=1", "sqlite:///db"):
        with pytest.raises(ConfigurationError):
            path_from_url(bad)


# -- layout ------------------------------------------------------------------------

_namespaces = st.text(alphabet="ab-_:\x00\xff"[:5], min_size=1, max_size=6)


@given(a=_namespaces, b=_namespaces)
def test_namespace_prefixes_are_prefix_free(a: str, b: str) -> None:
    if a != b:
        assert not namespace_prefix(a).startswith(namespace_prefix(b))
    # No data key of any namespace can be a metadata key.
    assert not SCHEMA_KEY.startswith(namespace_prefix(a)[:1])
    assert not counter_key(a).startswith(namespace_prefix(b)[:1])


def test_namespace_must_be_short_ascii(backend: LevelDBBackend) -> None:
    for bad in ("", "x" * 256, "é"):
        with pytest.raises(InvalidArgument):
            backend.get(bad, b"k")


def test_on_disk_layout(url: str, tmp_path: Path) -> None:
    backend = LevelDBBackend.open(url, {})
    commit(backend, "a", [(b"b:c", b"1")], None)
    commit(backend, "a:b", [(b"c", b"22")], None)
    backend.close()
    db = plyvel.DB(str(tmp_path / "db"))
    try:
        stored = dict(db.iterator())
    finally:
        db.close()
    # Rows: header (version width 1, version 1, no expiry) then the value; counters with floor and expiring.
    assert stored == {
        SCHEMA_KEY: b"2",
        b"\x01\x01ab:c": b"\x01\x01" + b"1",
        b"\x01\x03a:bc": b"\x01\x01" + b"22",
        b"\x00u\x01a": COUNTER.pack(4, 1, 0, 0),
        b"\x00u\x03a:b": COUNTER.pack(3, 1, 0, 0),
    }


def test_namespaces_are_sorted_by_name_not_by_encoding(backend: LevelDBBackend) -> None:
    for ns in ("b", "ab", "abc", "c"):
        backend.put_one(ns, b"k", b"v", None)
    backend.delete_one("c", b"k")
    assert backend.namespaces() == ["ab", "abc", "b"]


def test_stats(backend: LevelDBBackend) -> None:
    commit(backend, "a", [(b"x", b"12"), (b"y", b"3")], None)
    stats = backend.stats()
    assert stats["namespaces"] == 1 and stats["keys"] == 2 and stats["bytes"] == 5
    assert stats["options"]["sync"] is False
    json.dumps(stats)


# -- schema version ----------------------------------------------------------------


def test_newer_schema_is_refused(url: str, tmp_path: Path) -> None:
    LevelDBBackend.open(url, {}).close()
    db = plyvel.DB(str(tmp_path / "db"))
    db.put(SCHEMA_KEY, b"3")
    db.close()
    with pytest.raises(ConfigurationError, match=r"schema version 3, newer than version 2.*upgrade"):
        LevelDBBackend.open(url, {})


def test_foreign_leveldb_database_is_refused(url: str, tmp_path: Path) -> None:
    db = plyvel.DB(str(tmp_path / "db"), create_if_missing=True)
    db.put(b"someone", b"else")
    db.close()
    with pytest.raises(ConfigurationError, match="not written by airssys-storage"):
        LevelDBBackend.open(url, {})


# -- options -----------------------------------------------------------------------


def test_valid_options_are_applied(url: str) -> None:
    options = {
        "sync": True,
        "block_cache_size": "16MB",
        "write_buffer_size": 1 << 20,
        "compression": "none",
        "bloom_filter_bits": 0,
        "size_cache_keys": 0,
        "verify_checksums": True,
    }
    with manager_on(url, **options) as manager:
        store = manager.component(Manifest("app", Access.READ_WRITE))
        store.set("k", b"v")
        assert store.get("k") == b"v"
        assert manager.backend.stats()["options"] == {
            "sync": True,
            "block_cache_size": 16 << 20,
            "write_buffer_size": 1 << 20,
            "compression": None,
            "bloom_filter_bits": 0,
            "size_cache_keys": 0,
            "verify_checksums": True,
        }


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("sync", "yes"),
        ("sync", 1),
        ("block_cache_size", -1),
        ("block_cache_size", "lots"),
        ("block_cache_size", 1.5),
        ("block_cache_size", True),  # not 1 byte
        ("block_cache_size", 99999999999999999999),  # past C size_t: OverflowError in plyvel
        ("block_cache_size", "99999999999GiB"),
        ("write_buffer_size", False),  # not 0 bytes
        ("write_buffer_size", 1000),
        ("write_buffer_size", "2GB"),
        ("compression", "zlib"),
        ("compression", 1),
        ("bloom_filter_bits", -1),
        ("bloom_filter_bits", 65),
        ("bloom_filter_bits", True),
        ("size_cache_keys", -1),
        ("size_cache_keys", "many"),
        ("cache", 1),
    ],
)
def test_bad_options_name_the_option(url: str, option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=option) as info:
        manager_on(url, **{option: value})
    assert info.value.code == "invalid-config"


def test_every_bad_option_is_reported_at_once_and_counted() -> None:
    """Field checks and the size/compression checks of __post_init__ report together."""
    bad = {
        "sync": "yes",
        "bloom_filter_bits": 65,
        "block_cache_size": True,
        "write_buffer_size": 1000,
        "compression": "zlib",
        "size_cache_keys": -1,
    }
    with pytest.raises(ConfigurationError) as info:
        LevelDBBackend.parse_options(bad)
    assert info.value.count == len(bad)
    for name in bad:
        assert f"backend_options.{name}" in info.value.message


def test_size_options_are_described_with_their_bounds() -> None:
    described = {info.name: info.kind for info in describe_options(LevelDBOptions)}
    assert described["block_cache_size"] == f"integer >= 0 <= {sys.maxsize} or string or null"
    assert described["write_buffer_size"] == "integer >= 65536 <= 1073741824 or string or null"


# -- where the database lives ------------------------------------------------------


def test_missing_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "db"
    with pytest.raises(ConfigurationError, match=rf"{esc(path)}.*parent directory {esc(path.parent)} does not exist"):
        LevelDBBackend.open(f"leveldb://{path}", {})
    assert not path.parent.exists()


def test_path_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "db").write_text("x")
    with pytest.raises(ConfigurationError, match=f"{esc(tmp_path / 'db')}: it is a file"):
        LevelDBBackend.open(f"leveldb://{tmp_path}/db", {})
    with pytest.raises(ConfigurationError, match=f"{esc(tmp_path / 'db')} is not a directory"):
        LevelDBBackend.open(f"leveldb://{tmp_path}/db/inner", {})


def test_non_empty_directory_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigurationError, match=f"{esc(tmp_path)}: the directory is not empty"):
        LevelDBBackend.open(f"leveldb://{tmp_path}", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_empty_directory_becomes_a_database(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    LevelDBBackend.open(f"leveldb://{tmp_path}/db", {}).close()
    assert (tmp_path / "db" / "CURRENT").exists()


def _write_sample(url: str) -> None:
    with manager_on(url) as manager:
        store = manager.component(Manifest("app", Access.READ_WRITE))
        store.set_many({f"k{i:03}": b"v" * 50 for i in range(100)})


def _corrupt_manifest(db: Path) -> None:
    for manifest in db.glob("MANIFEST-*"):
        manifest.write_bytes(b"garbage" * 10)


def test_corrupted_database_names_the_path_and_repair(url: str, tmp_path: Path) -> None:
    _write_sample(url)
    _corrupt_manifest(tmp_path / "db")
    with pytest.raises(InternalError, match=rf"{esc(tmp_path / 'db')} is corrupted.*airssys-storage repair --url"):
        manager_on(url)


def test_missing_current_file_is_corruption(url: str, tmp_path: Path) -> None:
    _write_sample(url)
    (tmp_path / "db" / "CURRENT").unlink()
    with pytest.raises(InternalError, match=r"CURRENT file is missing.*airssys-storage repair"):
        manager_on(url)


# -- repair ------------------------------------------------------------------------


@pytest.mark.parametrize("damage", [_corrupt_manifest, lambda db: (db / "CURRENT").unlink()])
def test_repair_url_recovers_a_corrupted_database(url: str, tmp_path: Path, damage: Any) -> None:
    _write_sample(url)
    damage(tmp_path / "db")
    report = LevelDBBackend.repair_url(url)
    assert report["keys"] == 100 and report["counters_corrected"] == []
    with manager_on(url) as manager:
        store = manager.component(Manifest("app", Access.READ_WRITE))
        assert len(store.keys()) == 100
        assert store.usage() == Usage(100 * (4 + 50), 100)


def test_repair_recounts_wrong_counters(backend: LevelDBBackend) -> None:
    commit(backend, "app", [(b"a", b"1"), (b"b", b"22")], None)
    backend._db.put(counter_key("app"), COUNTER.pack(999, 9, 0, 0))  # a counter that lies
    backend._db.put(counter_key("ghost"), COUNTER.pack(5, 1, 0, 0))
    backend.repair()
    assert backend.usage("app") == Usage(5, 2)
    assert backend.usage("ghost") == Usage()
    assert backend.namespaces() == ["app"]
    assert backend.recount()["counters_corrected"] == []
    backend.put_one("app", b"c", b"333", None)
    assert backend.usage("app") == Usage(9, 3)


def test_repair_url_refuses_a_database_open_in_this_process(backend: LevelDBBackend, url: str) -> None:
    with pytest.raises(ConfigurationError, match="while this process has it open"):
        LevelDBBackend.repair_url(url)


def test_repair_url_of_a_missing_database(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=f"{esc(tmp_path / 'nope')}: no such directory"):
        LevelDBBackend.repair_url(f"leveldb://{tmp_path}/nope")


# -- one process per database ------------------------------------------------------

_OTHER_PROCESS = """
import json, sys
from airssys_storage import StorageError, StorageManager, StorageSettings
from airssys_storage_leveldb import LevelDBBackend
try:
    if sys.argv[2] == "open":
        StorageManager.from_settings(StorageSettings(url=sys.argv[1])).close()
    else:
        LevelDBBackend.repair_url(sys.argv[1])
    print(json.dumps(None))
except StorageError as exc:
    print(json.dumps([type(exc).__name__, exc.code, str(exc)]))
"""


def _in_other_process(url: str, action: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS, url, action], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout)


def test_second_process_gets_a_clear_error(url: str, tmp_path: Path) -> None:
    with manager_on(url):
        name, code, message = _in_other_process(url, "open")
        assert name == "ConfigurationError" and code == "invalid-config"
        assert f"the LevelDB database at {tmp_path / 'db'} is in use by another process" in message
        assert "multi-process hosts should use the SQL backend" in message
        assert "plyvel" not in message and "IO error" not in message
        name, _, message = _in_other_process(url, "repair")
        assert name == "ConfigurationError" and "in use by another process" in message
    assert _in_other_process(url, "open") is None


def test_second_handle_in_this_process_gets_a_clear_error(url: str) -> None:
    with manager_on(url):
        with pytest.raises(ConfigurationError, match="in use by another handle in this process"):
            manager_on(url)


# -- lifecycle ---------------------------------------------------------------------


def test_closed_backend_says_so(url: str, tmp_path: Path) -> None:
    backend = LevelDBBackend.open(url, {})
    backend.close()
    backend.close()
    for call in (
        lambda: backend.get("a", b"k"),
        lambda: backend.put_one("a", b"k", b"v", None),
        lambda: commit(backend, "a", [(b"k", b"v")], None),
        lambda: backend.keys("a", b"", None, 10),
        lambda: backend.usage("a"),
    ):
        with pytest.raises(InternalError, match=f"{esc(tmp_path / 'db')} is closed"):
            call()


# -- atomicity ---------------------------------------------------------------------


class _FailingBatch:
    """Wraps the real batch and fails after *after* changes: a crash in the middle of a batch."""

    def __init__(self, real: Any, after: int, error: Exception) -> None:
        self.real, self.after, self.error, self.added = real, after, error, 0

    def _add(self) -> None:
        if self.added == self.after:
            raise self.error
        self.added += 1

    def put(self, key: bytes, value: bytes) -> None:
        self._add()
        self.real.put(key, value)

    def delete(self, key: bytes) -> None:
        self._add()
        self.real.delete(key)

    def clear(self) -> None:
        self.added = 0
        self.real.clear()

    def write(self) -> None:
        self.real.write()


# A batch of N changes adds N + 1 records (the counter last): failing at each
# position, the counter's included, must leave no trace.
_MIDWAY = (
    [("set_many", after) for after in range(5)]
    + [("delete_many", after) for after in range(3)]
    + [("set", 0), ("set", 1)]
)


@pytest.mark.parametrize("error", [MemoryError(), plyvel.IOError(b"IO error: disk full")])
@pytest.mark.parametrize(("operation", "after"), _MIDWAY)
def test_failure_in_the_middle_of_a_batch_writes_nothing(
    url: str, error: Exception, operation: str, after: int
) -> None:
    calls = {
        "set_many": lambda store: store.set_many({"a": b"new", "c": b"new", "d": b"new", "e": b"new"}),
        "delete_many": lambda store: store.delete_many(["a", "b"]),
        "set": lambda store: store.set("a", b"newer"),
    }
    with manager_on(url) as manager:
        store = manager.component(Manifest("app", Access.READ_WRITE))
        store.set_many({"a": b"old", "b": b"old"})
        before = (store.scan()[0], store.usage())
        backend = manager.backend
        assert isinstance(backend, LevelDBBackend)
        real = backend._engine._batch
        backend._engine._batch = _FailingBatch(real, after, error)
        with pytest.raises(StorageError) as info:
            calls[operation](store)
        assert info.value.code == "internal-error"
        assert (store.scan()[0], store.usage()) == before
        backend._engine._batch = real
        store.set("z", b"1")  # the reused batch carries nothing of the failed one
        for key in ("a", "c"):  # and the size cache learned nothing from it
            store.set(key, b"12345")
        expected = {"a": b"12345", "b": b"old", "c": b"12345", "z": b"1"}
        assert store.usage() == Usage(sum(len(k) + len(v) for k, v in expected.items()), 4)
    with manager_on(url) as manager:
        store = manager.component(Manifest("app", Access.READ_WRITE))
        assert dict(store.scan()[0]) == expected
        assert store.usage() == Usage(sum(len(k) + len(v) for k, v in expected.items()), 4)


def test_failed_write_call_changes_nothing(url: str) -> None:
    with manager_on(url) as manager:
        store = manager.component(Manifest("app", Access.READ_WRITE))
        store.set("a", b"1")
        backend = manager.backend
        assert isinstance(backend, LevelDBBackend)

        class NoWrite(_FailingBatch):
            def write(self) -> None:
                raise plyvel.IOError(b"IO error: No space left on device")

        def no_put(key: bytes, value: bytes) -> None:
            raise plyvel.IOError(b"IO error: No space left on device")

        real, real_put = backend._engine._batch, backend._put
        backend._engine._batch, backend._put = NoWrite(real, 10**9, MemoryError()), no_put
        calls = (
            lambda: store.set("b", b"2"),
            lambda: store.set("a", b"9"),  # same size: the single-record path
            lambda: store.delete("a"),
            lambda: store.set_many({"c": b"3"}),
            lambda: store.set_many({"a": b"9"}),
        )
        for call in calls:
            with pytest.raises(InternalError, match=r"cannot write to the LevelDB database at .*No space left"):
                call()
        assert store.usage() == Usage(2, 1) and store.scan()[0] == [("a", b"1")]
        backend._engine._batch, backend._put = real, real_put


def test_counter_unchanged_commits(backend: LevelDBBackend) -> None:
    # Same-size overwrites and delete+insert of equal size leave the counter as it is.
    commit(backend, "app", [(b"a", b"1"), (b"b", b"22")], None)
    assert backend.put_one("app", b"a", b"9", 5) == 2
    assert commit(backend, "app", [(b"b", None), (b"c", b"33")], 5) == 1
    assert commit(backend, "app", [(b"x", None)], 5) == 0
    assert everything(backend, "app") == {b"a": b"9", b"c": b"33"}
    assert backend.usage("app") == Usage(5, 2)
    assert backend.recount()["counters_corrected"] == []


def test_refused_batch_writes_nothing(backend: LevelDBBackend) -> None:
    commit(backend, "app", [(b"a", b"1")], 10)
    with pytest.raises(QuotaExceeded):
        commit(backend, "app", [(b"b", b"1"), (b"c", b"1" * 10)], 10)
    assert everything(backend, "app") == {b"a": b"1"} and backend.usage("app") == Usage(2, 1)
    # The refused batch taught the size cache nothing: later writes are charged right.
    assert commit(backend, "app", [(b"b", b"12"), (b"c", None)], 10) == 0
    assert backend.put_one("app", b"c", b"1", 10) == 1
    assert backend.usage("app") == recomputed(everything(backend, "app")) == Usage(7, 3)


def test_size_cache_stays_bounded_and_exact(url: str) -> None:
    # Hits update entries in place and only misses add one, so the cache must
    # still be emptied when a miss finds it full, on every write path.
    backend = LevelDBBackend.open(url, {"size_cache_keys": 3})
    try:
        for i in range(60):
            key = b"k%d" % (i % 7)
            if i % 5 == 4:
                backend.delete_one("app", key)
            elif i % 3 == 0:
                backend.put_one("app", key, b"v" * 5, None)  # often a same-size overwrite
            elif i % 11 == 0:
                commit(backend, "app", [(key, b"w" * (i % 4)), (b"b%d" % (i % 2), b"x" * i)], None)
            else:
                backend.put_one("app", key, b"v" * (i % 9), None)
            assert len(backend._rows) <= 3
            assert backend.usage("app") == recomputed(everything(backend, "app"))
    finally:
        backend.close()


@pytest.mark.parametrize("size_cache_keys", [0, 3, 100_000])
def test_concurrent_writers_on_a_shared_backend_keep_the_counter_exact(url: str, size_cache_keys: int) -> None:
    backend = LevelDBBackend.open(url, {"size_cache_keys": size_cache_keys})

    # Called directly from several threads: the core takes no lock, so the backend's own lock must hold.
    def writer(seed: int) -> None:
        for i in range(400):
            key = b"k%d" % ((i * seed) % 23)
            if i % 5 == 0:
                backend.delete_one("app", key)
            elif i % 7 == 0:
                commit(backend, "app", [(key, b"x" * (i % 13)), (b"b%d" % (i % 3), b"y" * seed)], None)
            else:
                backend.put_one("app", key, b"v" * (i % 17 + seed), None)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in (1, 2, 3, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert backend.usage("app") == recomputed(everything(backend, "app"))
    assert backend.recount()["counters_corrected"] == []
    backend.close()
