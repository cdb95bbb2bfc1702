"""Issue 9, sections 1 and 2 on LevelDB: fork, racing opens, damage found at open, on read and by verify."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airssys_storage_leveldb import LevelDBBackend
from test_leveldb_backend import manager_on

from airssys_storage import (
    Access,
    ConfigurationError,
    InternalError,
    Manifest,
    StorageError,
    Usage,
)
from airssys_storage.cli import main


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"leveldb://{tmp_path}/ldb"


def recount(url: str) -> tuple[list[str], Usage, Usage]:
    """Keys, stored usage and recounted usage of component "app" after reopening *url*."""
    with manager_on(url) as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        keys = store.keys()
        real = Usage(sum(len(k.encode()) + len(store.get(k) or b"") for k in keys), len(keys))
        return keys, store.usage(), real


def run_forked(target: Any, *args: Any) -> multiprocessing.Process:
    process = multiprocessing.get_context("fork").Process(target=target, args=args)
    process.start()
    return process


# -- fork ----------------------------------------------------------------------------


def test_forked_child_is_refused_and_the_parent_keeps_exact_data(url: str, tmp_path: Path) -> None:
    """The issue's input: child sets "c", parent sets "p"; reopened, keys and usage agree."""
    report = tmp_path / "child.json"
    manager = manager_on(url)
    store = manager.component(Manifest("app", Access.ADMIN))
    store.set("before", b"x")

    def child() -> None:
        outcome: dict[str, Any] = {}
        try:
            store.set("c", b"c")
            outcome["set"] = "accepted"
        except StorageError as exc:
            outcome["set"] = f"{exc.code}: {exc}"
        try:
            store.get("before")
            outcome["get"] = "accepted"
        except StorageError as exc:
            outcome["get"] = f"{exc.code}: {exc}"
        try:
            manager_on(url).close()  # the path the parent holds cannot be reopened in the child
            outcome["reopen"] = "accepted"
        except StorageError as exc:
            outcome["reopen"] = f"{exc.code}: {exc}"
        report.write_text(json.dumps(outcome))

    process = run_forked(child)
    process.join(60)
    assert process.exitcode == 0
    store.set("p", b"p")
    assert store.get("before") == b"x"  # the parent keeps working
    manager.close()

    outcome = json.loads(report.read_text())
    for action in ("set", "get", "reopen"):
        message = outcome[action]
        assert message.startswith("internal-error: ") and str(tmp_path / "ldb") in message, message
        assert "forked" in message and "spawn" in message and "SQL backend" in message, message
        assert "corrupt" not in message
    keys, stored, real = recount(url)
    assert keys == ["before", "p"]
    assert stored == real == Usage(len("before") + 1 + 2, 2)


def test_a_store_opened_in_the_child_after_fork_works(url: str) -> None:
    """Opening in the child is fine when the parent had nothing open at the fork."""
    process = run_forked(_open_write_close, url)
    process.join(60)
    assert process.exitcode == 0
    keys, stored, real = recount(url)
    assert keys == ["from-child"] and stored == real


def _open_write_close(url: str) -> None:
    with manager_on(url) as manager:
        manager.component(Manifest("app", Access.ADMIN)).set("from-child", b"1")


# -- racing opens ----------------------------------------------------------------------


def _race_open(url: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        backend = LevelDBBackend.open(url, {})
    except StorageError as exc:
        results.put(f"{exc.code}: {exc}")
        return
    try:
        backend.put_one("app", b"k%d" % os.getpid(), b"v", None)
        time.sleep(0.05)
    finally:
        backend.close()
    results.put("opened")


def test_processes_racing_to_create_one_database_are_told_it_is_in_use(tmp_path: Path) -> None:
    """N processes opening one new path at once: each opens or hears "in use", never "damaged"."""
    ctx = multiprocessing.get_context("fork")
    seen: set[str] = set()
    for round_ in range(8):
        url = f"leveldb://{tmp_path}/race-{round_}"
        barrier = ctx.Barrier(6)
        results = ctx.Queue()
        processes = [ctx.Process(target=_race_open, args=(url, barrier, results)) for _ in range(6)]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(60)
        assert "opened" in outcomes
        for outcome in outcomes:
            assert outcome == "opened" or re.match(r"invalid-config: .* is in use by another process", outcome), outcome
            seen.add(outcome.split(":")[0])
        backend = LevelDBBackend.open(url, {})
        try:
            assert backend.verify().ok
            assert backend.usage("app").keys == outcomes.count("opened")
        finally:
            backend.close()


def test_in_use_damaged_and_missing_are_three_different_errors(tmp_path: Path) -> None:
    """Open errors: another process's lock, a damaged database and a missing parent are told apart."""
    url = f"leveldb://{tmp_path}/db"
    LevelDBBackend.open(url, {}).close()
    holder = multiprocessing.get_context("fork").Event()
    release = multiprocessing.get_context("fork").Event()
    process = run_forked(_hold_open, url, holder, release)
    assert holder.wait(30)
    try:
        with pytest.raises(ConfigurationError, match=r"in use by another process"):
            LevelDBBackend.open(url, {})
    finally:
        release.set()
        process.join(30)
    os.remove(tmp_path / "db" / "CURRENT")
    with pytest.raises(InternalError, match=r"is corrupted .*airssys-storage repair --url"):
        LevelDBBackend.open(url, {})
    with pytest.raises(ConfigurationError, match=r"parent directory .* does not exist"):
        LevelDBBackend.open(f"leveldb://{tmp_path}/missing/db", {})


def _hold_open(url: str, holder: Any, release: Any) -> None:
    backend = LevelDBBackend.open(url, {})
    holder.set()
    release.wait(30)
    backend.close()


# -- damage ----------------------------------------------------------------------------


def _fill(url: str, count: int = 2000) -> None:
    """*count* keys of 261-byte values in component "app", uncompressed so the bytes are findable on disk."""
    with manager_on(url, compression="none") as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        for start in range(0, count, 100):
            store.set_many([(f"key-{i:05d}", b"value-%05d-" % i + b"x" * 250) for i in range(start, start + 100)])


def _flip(path: Path, marker: bytes) -> None:
    """Flip one bit of the first occurrence of *marker* in the file at *path*."""
    data = bytearray(path.read_bytes())
    at = data.index(marker) + 3
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def damaged_table(url: str, tmp_path: Path) -> Iterator[str]:
    """A database whose only table file has one flipped byte inside key-01800's value."""
    _fill(url)
    manager_on(url, compression="none").close()  # reopening turns the write-ahead log into a table file
    tables = sorted((tmp_path / "ldb").glob("*.ldb"))
    assert tables
    for table in tables:
        if b"value-01800-" in table.read_bytes():
            _flip(table, b"value-01800-")
            break
    else:
        raise AssertionError("no table file holds the marker")
    yield url


def test_flipped_byte_in_a_table_is_an_error_with_verify_checksums(damaged_table: str, tmp_path: Path) -> None:
    """A damaged table block: verify_checksums=true makes the read an error naming the path and the repair."""
    with manager_on(damaged_table, verify_checksums=True) as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        assert store.get("key-00001") is not None  # other blocks still read
        for read in (lambda: store.get("key-01800"), lambda: store.get_many(["key-01800"]), lambda: store.keys()):
            with pytest.raises(InternalError) as caught:
                read()
            message = str(caught.value)
            assert str(tmp_path / "ldb") in message and "airssys-storage repair --url leveldb://" in message
            assert ": b'" not in message and "CorruptionError" not in message


def test_flipped_byte_in_a_table_is_found_by_verify_and_fixed_by_repair(damaged_table: str) -> None:
    """Without verify_checksums a read returns the damaged value (documented); verify finds it, repair drops it."""
    with manager_on(damaged_table) as manager:
        assert manager.component(Manifest("app", Access.ADMIN)).get("key-01800") != b"value-01800-" + b"x" * 250
        report = manager.backend.verify()
        assert not report.ok and "airssys-storage repair --url" in report.problems[0]
    result = LevelDBBackend.repair_url(damaged_table)
    assert 0 < result["records_dropped"] < 100
    keys, stored, real = recount(damaged_table)
    assert "key-01800" not in keys and len(keys) == 2000 - result["records_dropped"]
    assert stored == real
    with manager_on(damaged_table) as manager:
        assert manager.backend.verify().ok


def test_cli_verify_reports_damage_with_exit_6(damaged_table: str) -> None:
    """`airssys-storage verify` on a damaged table: exit 6, the path and the repair command."""
    from click.testing import CliRunner

    result = CliRunner().invoke(main, ["verify", "--url", damaged_table])
    assert result.exit_code == 6
    assert "is corrupted" in result.stderr and "airssys-storage repair --url" in result.stderr


def test_flipped_byte_in_the_write_ahead_log_refuses_the_open(url: str, tmp_path: Path) -> None:
    """A damaged log record is found at open (paranoid checks): no acknowledged key is dropped silently."""
    _fill(url)
    [log] = (tmp_path / "ldb").glob("*.log")
    _flip(log, b"value-01800-")
    with pytest.raises(InternalError) as caught:
        manager_on(url).close()
    message = str(caught.value)
    assert f"the LevelDB database at {tmp_path / 'ldb'} is corrupted" in message
    assert "airssys-storage repair --url leveldb://" in message and ": b'" not in message
    result = LevelDBBackend.repair_url(url)
    keys, stored, real = recount(url)
    assert stored == real == Usage(result["bytes"], result["keys"])
    assert len(keys) == result["keys"] >= 1800


def test_verify_repairs_a_tampered_counter_record(url: str) -> None:
    """The issue's tampered counter (1,000,012 bytes for 12) on LevelDB: verify finds it, --repair fixes it."""
    from airssys_storage_leveldb.layout import COUNTER, counter_key

    with manager_on(url) as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        store.set("hello", b"1234567")
        backend = manager.backend
        assert isinstance(backend, LevelDBBackend)
        backend._db.put(counter_key("app"), COUNTER.pack(1_000_012, 1, 0, 0))
    with manager_on(url) as manager:
        [mismatch] = manager.backend.verify().mismatches
        assert mismatch.stored == Usage(1_000_012, 1) and mismatch.actual == Usage(12, 1)
        assert manager.backend.verify(repair=True).ok
    _, stored, real = recount(url)
    assert stored == real == Usage(12, 1)


def test_unreadable_counter_record_is_rewritten_by_verify_repair(url: str) -> None:
    """A counter record of the wrong length shows as Usage(-1, -1) and verify --repair rewrites it."""
    from airssys_storage_leveldb.layout import counter_key

    with manager_on(url) as manager:
        manager.component(Manifest("app", Access.ADMIN)).set("hello", b"1234567")
        manager.backend._db.put(counter_key("app"), b"junk")  # type: ignore[attr-defined]
    with manager_on(url) as manager:
        [mismatch] = manager.backend.verify().mismatches
        assert mismatch.stored == Usage(-1, -1)
        assert manager.backend.verify(repair=True).ok
    assert recount(url)[1] == Usage(12, 1)


def test_damage_found_while_opening_names_the_path_not_the_engine_exception(url: str, tmp_path: Path) -> None:
    """The issue's "cannot open backend 'leveldb': CorruptionError: b'…'": now the path and the repair command."""
    _fill(url, 50)
    manager_on(url, compression="none").close()
    [table] = [t for t in (tmp_path / "ldb").glob("*.ldb") if b"schema" in t.read_bytes()]
    _flip(table, b"schema")
    with pytest.raises(InternalError) as caught:
        manager_on(url).close()
    message = str(caught.value)
    assert message.startswith(f"the LevelDB database at {tmp_path / 'ldb'} is corrupted")
    assert "airssys-storage repair --url" in message and "cannot open backend" not in message
    LevelDBBackend.repair_url(url)
    with manager_on(url) as manager:
        assert manager.backend.verify().ok


def test_repair_names_table_files_it_could_not_read_instead_of_reporting_nothing_dropped(
    url: str, tmp_path: Path
) -> None:
    """Outside trial: 5 keys, one byte XORed at a third of the only table; RepairDB moved the table to lost/
    and the report said records_dropped 0. Now the report names the lost file and warns."""
    with manager_on(url) as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        for index in range(5):
            store.set(f"k{index}", b"v" * 20)
    manager_on(url).close()  # reopening turns the log into a table file
    [table] = (tmp_path / "ldb").glob("*.ldb")
    data = bytearray(table.read_bytes())
    data[len(data) // 3] ^= 0xFF
    table.write_bytes(bytes(data))
    report = LevelDBBackend.repair_url(url)
    keys, stored, real = recount(url)
    assert stored == real
    if len(keys) < 5:  # something was lost: it must be accounted for
        assert report["records_dropped"] > 0 or report["files_lost"]
    if report["files_lost"]:
        assert "lost" in report["warning"] and "backup" in report["warning"]


def test_repair_of_a_healthy_store_reports_nothing_lost(url: str, tmp_path: Path) -> None:
    """Outside trial: repairing a sound store warned that 2 files were lost (an empty log and the old
    MANIFEST, which RepairDB sets aside on every run) and told the operator to restore a backup."""
    with manager_on(url) as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        for index in range(20):
            store.set(f"k{index}", b"v" * 20)
    for _ in range(2):  # the second run sees the first run's leftovers too
        report = LevelDBBackend.repair_url(url)
        assert report["files_lost"] == [] and "warning" not in report
        assert report["records_dropped"] == 0
    keys, stored, real = recount(url)
    assert len(keys) == 20 and stored == real


def test_verify_reports_and_repair_fixes_bad_row_headers(url: str) -> None:
    """Rows damaged around the core: an undecodable header is a bad key (removed); a version 0 or an expiry 0
    (decodable, out of range) is a bad row: --repair gives the version a fresh one above the component's, and
    removes a row whose expiry is 0 as expired, raising the floor; counters (usage, expiring) follow."""
    from airssys_storage_leveldb.layout import namespace_prefix

    prefix = namespace_prefix("app")
    with manager_on(url) as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        store.set_many([(k, b"v" + k.encode()) for k in "abcdef"])
        store.set("a", b"va")  # version 2: the component's highest
        db = manager.backend._db  # type: ignore[attr-defined]
        db.put(prefix + b"b", b"\x01\x00vb")  # version 0
        db.put(prefix + b"d", b"\x11\x01" + bytes(8) + b"vd")  # version 1, expiry 0
        db.put(prefix + b"e", b"\x09ve")  # header byte 0x09: undecodable
        db.put(prefix + b"f", b"\x11\x00" + bytes(8) + b"vf")  # both
    with manager_on(url) as manager:
        backend = manager.backend
        report = backend.verify()
        assert not report.ok
        assert [(b.key, b.problem) for b in report.bad_keys] == [(b"e", "a malformed row header: header byte 0x09")]
        rows = {row.key: row for row in report.bad_rows}
        assert sorted(rows) == [b"b", b"d", b"f"]
        assert rows[b"b"].problem == f"version 0 is not an integer in 1..{2**64 - 1}"
        assert rows[b"b"].fix == "given version 3" and not rows[b"b"].removed
        assert rows[b"d"].removed and rows[b"d"].fix == "removed as expired (the version floor becomes at least 1)"
        assert rows[b"f"].removed and rows[b"f"].fix == "removed as expired (the version floor becomes at least 4)"
        assert report.keys == 3  # a, b, c: the removed rows leave the totals
        repaired = backend.verify(repair=True)
        assert repaired.ok and repaired.repaired and repaired.bad_rows == report.bad_rows
        assert backend.verify().ok
    with manager_on(url) as manager:
        backend = manager.backend
        assert backend.verify().ok
        assert backend.keys("app", b"", None, 100) == [b"a", b"b", b"c"]
        assert backend.get_entry("app", b"b").version == 3  # type: ignore[union-attr]
        store = manager.component(Manifest("app", Access.ADMIN))
        store.set_many([("b", b"new"), ("f", b"back")])
        assert backend.get_entry("app", b"b").version == 4  # type: ignore[union-attr]
        assert backend.get_entry("app", b"f").version == 5  # type: ignore[union-attr]  # above the raised floor 4
        assert backend.usage("app") == Usage(3 + 4 + 3 + 5, 4)  # a, b, c, f
        assert backend.verify().ok
