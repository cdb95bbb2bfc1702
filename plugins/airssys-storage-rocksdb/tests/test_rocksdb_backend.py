"""RocksDB-specific behaviour: URLs, options, layout, one writer process, read-only mode, stats, compact, repair."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rocksdict
from airssys_storage_rocksdb import RocksDBBackend, RocksDBOptions, parse_url
from airssys_storage_rocksdb.layout import COLUMN_FAMILIES, COUNTER

from airssys_storage import (
    Access,
    ConfigurationError,
    InternalError,
    Manifest,
    StorageManager,
    StorageSettings,
    Usage,
)
from airssys_storage.planner import Write, WriteKind


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"rocksdb://{tmp_path}/db"


@pytest.fixture
def manager(url: str) -> Iterator[StorageManager]:
    with StorageManager.from_settings(StorageSettings(url=url)) as manager:
        yield manager


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "airssys_storage.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})


# -- URLs and options ---------------------------------------------------------------


def test_url_names_an_absolute_path_and_an_optional_mode() -> None:
    assert parse_url("rocksdb:///data/x") == ("/data/x", "read-write")
    assert parse_url("rocksdb:////data//x/") == ("/data/x", "read-write")
    assert parse_url("rocksdb:///data/x?mode=read-only") == ("/data/x", "read-only")
    for bad, words in [
        ("rocksdb://host/data", "names a host"),
        ("rocksdb://relative", "names a host"),
        ("rocksdb:///", "absolute directory path"),
        ("rocksdb:///x?mode=write", "mode=read-only"),
        ("rocksdb:///x?cache=1", "mode=read-only"),
        ("leveldb:///x", "not a rocksdb:// URL"),
    ]:
        with pytest.raises(ConfigurationError, match=words):
            parse_url(bad)


def test_options_defaults_and_validation() -> None:
    options = RocksDBBackend.parse_options({})
    assert options == RocksDBOptions()
    assert (options.compression, options.bottommost_compression) == ("lz4", "zstd")
    assert (options.block_cache_size, options.write_buffer_size) == (32 * 2**20, 64 * 2**20)
    assert (options.max_write_buffer_number, options.bloom_filter_bits, options.background_jobs) == (2, 10, 2)
    assert options.sync is False
    parsed = RocksDBBackend.parse_options({"compression": "ZSTD", "block_cache_size": "1MiB", "sync": True})
    assert (parsed.compression, parsed.block_cache_size, parsed.sync) == ("zstd", 2**20, True)
    for bad, name in [
        ({"compression": "snappy"}, "compression"),
        ({"bottommost_compression": None}, "bottommost_compression"),
        ({"write_buffer_size": 1024}, "write_buffer_size"),
        ({"block_cache_size": True}, "block_cache_size"),
        ({"background_jobs": 0}, "background_jobs"),
        ({"max_write_buffer_number": 1}, "max_write_buffer_number"),
        ({"no_such_option": 1}, "no_such_option"),
    ]:
        with pytest.raises(ConfigurationError, match=name):
            RocksDBBackend.parse_options(bad)


def test_sync_option_fsyncs_every_commit(url: str) -> None:
    backend = RocksDBBackend.open(url, {"sync": True})
    try:
        assert backend._engine.write_options.sync is True
        backend.put_one("app", b"k", b"v", None)
        assert backend.get("app", b"k") == b"v"
    finally:
        backend.close()
    backend = RocksDBBackend.open(url, {})
    try:
        assert backend._engine.write_options.sync is False
    finally:
        backend.close()


# -- layout --------------------------------------------------------------------------


def test_metadata_lives_in_column_families_no_component_key_reaches(url: str, tmp_path: Path) -> None:
    backend = RocksDBBackend.open(url, {})
    try:
        backend.apply("a", (Write(b"schema", WriteKind.PUT, b"1"),), None)
        backend.apply("ab", (Write(b"x", WriteKind.PUT, b"2"),), None)
        backend.apply("a", (Write(b"n", WriteKind.INCREMENT, delta=5, op_id="op-1"),), None)
        # Neighbouring namespaces stay apart (prefix-free), and a component key named like metadata is data.
        assert backend.items("a", b"", None, 10) == [(b"n", b"5"), (b"schema", b"1")]
        assert backend.items("ab", b"", None, 10) == [(b"x", b"2")]
        assert backend.usage("a") == Usage(len(b"schema1n5"), 2)
    finally:
        backend.close()
    path = str(tmp_path / "db")
    assert sorted(rocksdict.Rdict.list_cf(path, rocksdict.Options(raw_mode=True))) == sorted(
        ["default", *COLUMN_FAMILIES]
    )
    db = rocksdict.Rdict(
        path,
        rocksdict.Options(raw_mode=True),
        {name: rocksdict.Options(raw_mode=True) for name in COLUMN_FAMILIES},
        rocksdict.AccessType.read_only(False),
    )
    try:
        # The default column family holds rows only: len(ns) | ns | key.
        assert [key for key, _ in db.items()] == [b"\x01an", b"\x01aschema", b"\x02abx"]
        counters = dict(db.get_column_family("counters").items())
        assert set(counters) == {b"a", b"ab"} and COUNTER.unpack(counters[b"a"])[:2] == (9, 2)
        assert [key for key, _ in db.get_column_family("ops").items()] == [b"\x01aop-1"]
        assert dict(db.get_column_family("meta").items()) == {b"schema": b"1"}
    finally:
        db.close()


def test_a_foreign_rocksdb_database_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "foreign")
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    db = rocksdict.Rdict(path, options)
    db.put(b"k", b"v")
    db.close()
    with pytest.raises(ConfigurationError, match="not written by airssys-storage"):
        RocksDBBackend.open(f"rocksdb://{path}", {})


def test_a_missing_parent_or_a_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"parent directory .* does not exist"):
        RocksDBBackend.open(f"rocksdb://{tmp_path}/no/db", {})
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigurationError, match="is a file"):
        RocksDBBackend.open(f"rocksdb://{tmp_path}/file", {})


def test_use_after_close_names_the_path(url: str, tmp_path: Path) -> None:
    backend = RocksDBBackend.open(url, {})
    backend.close()
    with pytest.raises(InternalError, match=f"{tmp_path}/db is closed"):
        backend.get("app", b"k")


# -- one writer process ----------------------------------------------------------------


def test_a_second_handle_in_this_process_is_refused(manager: StorageManager, url: str, tmp_path: Path) -> None:
    with pytest.raises(InternalError, match=f"{tmp_path}/db is in use by another handle in this process"):
        RocksDBBackend.open(url, {})


def test_a_second_process_gets_an_error_naming_the_path(manager: StorageManager, url: str, tmp_path: Path) -> None:
    done = run_python(
        f"""
        from airssys_storage import InternalError, StorageManager, StorageSettings
        try:
            StorageManager.from_settings(StorageSettings(url={url!r}))
        except InternalError as exc:
            print(exc.code, exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert f"internal-error the RocksDB database at {tmp_path}/db is in use by another process" in done.stdout
    assert "mode=read-only" in done.stdout


def test_repair_refuses_a_database_in_use(manager: StorageManager, url: str) -> None:
    with pytest.raises(ConfigurationError, match="while this process has it open"):
        RocksDBBackend.repair_url(url)


# -- read-only mode ----------------------------------------------------------------------


def test_read_only_instance_reads_while_the_writer_runs_and_refuses_writes(
    manager: StorageManager, url: str, tmp_path: Path
) -> None:
    store = manager.component(Manifest("app", Access.ADMIN))
    store.set("greeting", b"hello")
    store.set("other", b"x", ttl=3600)
    feed = manager.component(Manifest("feed", Access.ADMIN, changes=True))
    feed.set("a", b"1")
    feed.delete("a")
    done = run_python(
        f"""
        from airssys_storage import InternalError, StorageManager, StorageSettings, Manifest, Access
        with StorageManager.from_settings(StorageSettings(url={url + "?mode=read-only"!r})) as manager:
            store = manager.component(Manifest("app", Access.ADMIN))
            print(store.keys(), store.get("greeting"), store.usage())
            feed = manager.component(Manifest("feed", Access.ADMIN, changes=True))
            print([(e.seq, e.op, e.key) for e in feed.changes()[0]], feed.snapshot_seq())
            for each in (store, feed):  # feed: its set takes the logged path
                for write in (lambda: each.set("x", b"y"), lambda: each.set_many([("x", b"y"), ("z", b"w")])):
                    try:
                        write()
                    except InternalError as exc:
                        print(exc.code, exc)
        """
    )
    assert done.returncode == 0, done.stderr
    first, events, second, *refused = done.stdout.splitlines()
    assert first == "['greeting', 'other'] b'hello' Usage(bytes=19, keys=2)"
    assert events == "[(1, 'set', 'a'), (2, 'delete', 'a')] 2"
    assert second.startswith(f"internal-error the RocksDB database at {tmp_path}/db is open read-only")
    assert refused == [second] * 3  # set_many (put_many), and both on the feed's logged paths
    store.set("greeting", b"still mine")  # the writer keeps working
    assert store.get("greeting") == b"still mine"


def test_read_only_never_creates_a_database(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="read-only: no database there"):
        RocksDBBackend.open(f"rocksdb://{tmp_path}/none?mode=read-only", {})
    assert not (tmp_path / "none").exists()


def test_operator_commands_read_only_while_the_host_runs(manager: StorageManager, url: str, tmp_path: Path) -> None:
    store = manager.component(Manifest("app", Access.ADMIN))
    store.set_many({"a": b"1", "b": b"22"})
    read_only = url + "?mode=read-only"
    keys = run_cli("keys", "-c", "app", "--url", read_only)
    assert (keys.returncode, keys.stdout) == (0, "a\nb\n"), keys.stderr
    got = run_cli("get", "-c", "app", "--url", read_only, "b")
    assert (got.returncode, got.stdout) == (0, "22"), got.stderr
    exported = run_cli("export", "-c", "app", "--url", read_only, "-o", str(tmp_path / "app.jsonl"))
    assert exported.returncode == 0, exported.stderr
    assert len((tmp_path / "app.jsonl").read_text().splitlines()) >= 2
    stats = run_cli("stats", "--url", read_only, "--json")
    assert stats.returncode == 0, stats.stderr
    assert '"mode": "read-only"' in stats.stdout
    # Without the mode, the same command is refused with the hint.
    refused = run_cli("keys", "-c", "app", "--url", url)
    assert refused.returncode != 0
    assert "in use by another process" in refused.stderr and "mode=read-only" in refused.stderr


# -- stats, compact, repair ------------------------------------------------------------


def test_stats_show_rocksdb_properties(manager: StorageManager) -> None:
    store = manager.component(Manifest("app", Access.ADMIN))
    store.set_many({f"k{i}": b"v" * 100 for i in range(100)})
    stats: dict[str, Any] = manager.backend.stats()
    assert (stats["keys"], stats["namespaces"], stats["mode"]) == (100, 1, "read-write")
    engine = stats["rocksdb"]
    assert set(engine) >= {"estimated_keys", "sst_files_bytes", "pending_compaction_bytes", "memtable_bytes"}
    assert engine["estimated_keys"] >= 100 and engine["memtable_bytes"] > 0
    assert stats["options"]["compression"] == "lz4"
    json.dumps(stats)


def test_compact_command_rewrites_the_tables(url: str) -> None:
    with StorageManager.from_settings(StorageSettings(url=url)) as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        for round_ in range(6):
            store.set_many({f"k{i}": bytes([round_]) * 500 for i in range(round_ % 2 * 100, round_ % 2 * 100 + 100)})
        store.delete_prefix("k1")
    done = run_cli("compact", "--url", url, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["sst_files_bytes"] > 0 and report["pending_compaction_bytes"] == 0
    text = run_cli("compact", "--url", url)
    assert text.returncode == 0 and "compacted the RocksDB store" in text.stderr + text.stdout
    with StorageManager.from_settings(StorageSettings(url=url)) as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        assert len(store.keys()) == 200 - 111 and manager.backend.verify().ok
    other = run_cli("compact", "--url", f"sqlite:///{url.removeprefix('rocksdb://')}.sqlite3")
    assert other.returncode != 0


def test_repair_command_recovers_a_database_without_current(url: str, tmp_path: Path) -> None:
    with StorageManager.from_settings(StorageSettings(url=url)) as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        store.set_many({"a": b"1", "b": b"2"})
    (tmp_path / "db" / "CURRENT").unlink()
    with pytest.raises(Exception, match="corrupted"):
        StorageManager.from_settings(StorageSettings(url=url))
    done = run_cli("repair", "--url", url)
    assert done.returncode == 0, done.stderr
    with StorageManager.from_settings(StorageSettings(url=url)) as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        assert store.scan()[0] == [("a", b"1"), ("b", b"2")] and store.usage() == Usage(4, 2)


def test_verify_repairs_a_tampered_expiry_count(manager: StorageManager) -> None:
    store = manager.component(Manifest("app", Access.ADMIN))
    store.set("k", b"v", ttl=60)
    backend = manager.backend
    assert isinstance(backend, RocksDBBackend)
    backend._engine._counters_cf.put(b"app", COUNTER.pack(2, 1, 0, 0))
    backend._spaces["app"].counter = None
    report = backend.verify()
    assert not report.ok and "rows have an expiry" in report.problems[0]
    backend.verify(repair=True)
    assert backend.verify().ok and store.keys() == ["k"]


def test_migrate_refuses_the_read_only_spelling_of_the_same_store(url: str) -> None:
    assert run_cli("set", "-c", "app", "--url", url, "k", "v").returncode == 0
    done = run_cli("migrate", "--from", url + "?mode=read-only", "--to", url)
    assert done.returncode != 0 and "name the same store" in done.stderr, done.stderr


def test_repair_rebuilds_the_schema_record_and_counters_when_the_metadata_table_is_lost(
    url: str, tmp_path: Path
) -> None:
    # The outside tester's reproducer: 100 bytes written at offset 100 of the metadata column
    # family's table; RepairDB moves that table to lost/ while every data row stays readable.
    with StorageManager.from_settings(StorageSettings(url=url)) as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        store.set_many({f"k{i}": b"v" * 10 for i in range(50)})
    backend = RocksDBBackend.open(url, {})
    backend.compact()  # flushes every column family into its own table file
    backend.close()
    tables = sorted((tmp_path / "db").glob("*.sst"))
    meta = [t for t in tables if b"schema" in t.read_bytes()]
    assert meta, [t.name for t in tables]
    with open(meta[0], "r+b") as file:
        file.seek(100)
        file.write(b"\xff" * 100)
    done = run_cli("verify", "--url", url)
    assert done.returncode == 6, done.stdout + done.stderr
    done = run_cli("repair", "--url", url)
    assert done.returncode == 0, done.stdout + done.stderr
    done = run_cli("verify", "--url", url)
    assert done.returncode == 0, done.stdout + done.stderr
    with StorageManager.from_settings(StorageSettings(url=url)) as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        assert len(store.scan()[0]) == 50 and store.usage() == Usage(10 * 2 + 40 * 3 + 50 * 10, 50)


@pytest.mark.parametrize(
    ("files", "found"),
    [(["CURRENT", "MANIFEST-000005", "LOG", "000009.ldb"], "leveldb"), (["data.mdb", "lock.mdb"], "lmdb")],
)
def test_a_store_of_another_engine_is_never_opened_or_repaired(tmp_path: Path, files: list[str], found: str) -> None:
    store = tmp_path / "db"
    store.mkdir()
    for name in files:
        (store / name).write_bytes(b"x" * 200)
    before = {p.name: p.read_bytes() for p in store.iterdir()}
    url = f"rocksdb://{store}"
    attempts = (
        lambda: RocksDBBackend.open(url, {}),
        lambda: RocksDBBackend.open(url + "?mode=read-only", {}),
        lambda: RocksDBBackend.repair_url(url),
        lambda: RocksDBBackend.exists(url, {}),
    )
    for attempt in attempts:
        with pytest.raises(ConfigurationError, match=f"use {found}://{store}"):
            attempt()
    assert {p.name: p.read_bytes() for p in store.iterdir()} == before
