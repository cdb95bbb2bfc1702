"""Schema 2 on the selected engine: migration of version 1 stores, hot paths equal to the planner, op records."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airssys_storage_sql import SQLBackend
from sqlsupport import Server

from airssys_storage import QuotaExceeded
from airssys_storage.changes import FeedConfig
from airssys_storage.planner import SpaceState, Write, WriteKind
from airssys_storage.testing import FakeClock

OpenBackend = Callable[..., Any]

#: The tables airssys-storage-sql 0.1 (schema version 1) created, as SQLAlchemy compiled them.
V1_TABLES = {
    "sqlite": [
        "CREATE TABLE {p}meta (name VARCHAR(64) NOT NULL, value VARCHAR(255) NOT NULL, PRIMARY KEY (name))",
        "CREATE TABLE {p}data (ns VARCHAR(64) NOT NULL, k BLOB NOT NULL, v BLOB NOT NULL, replaced_len INTEGER, "
        "PRIMARY KEY (ns, k)) WITHOUT ROWID",
        "CREATE TABLE {p}usage (ns VARCHAR(64) NOT NULL, used_bytes BIGINT NOT NULL, key_count BIGINT NOT NULL, "
        "PRIMARY KEY (ns)) WITHOUT ROWID",
    ],
    "postgresql": [
        "CREATE TABLE {p}meta (name VARCHAR(64) NOT NULL, value VARCHAR(255) NOT NULL, PRIMARY KEY (name))",
        'CREATE TABLE {p}data (ns VARCHAR(64) COLLATE "C" NOT NULL, k BYTEA NOT NULL, v BYTEA NOT NULL, '
        "replaced_len INTEGER, PRIMARY KEY (ns, k))",
        'CREATE TABLE {p}usage (ns VARCHAR(64) COLLATE "C" NOT NULL, used_bytes BIGINT NOT NULL, '
        "key_count BIGINT NOT NULL, PRIMARY KEY (ns))",
    ],
    "mariadb": [
        "CREATE TABLE {p}meta (name VARCHAR(64) NOT NULL, value VARCHAR(255) NOT NULL, PRIMARY KEY (name)) "
        "ENGINE=InnoDB CHARSET=utf8mb4",
        "CREATE TABLE {p}data (ns VARBINARY(64) NOT NULL, k VARBINARY(256) NOT NULL, v LONGBLOB NOT NULL, "
        "PRIMARY KEY (ns, k)) ENGINE=InnoDB",
        "CREATE TABLE {p}usage (ns VARBINARY(64) NOT NULL, used_bytes BIGINT NOT NULL, key_count BIGINT NOT NULL, "
        "PRIMARY KEY (ns)) ENGINE=InnoDB",
    ],
}
V1_ROWS = {"app": {b"a": b"1", b"bb": b"22" * 50}, "other": {b"x": b""}}


def _write_v1_store(sql_engine: str, server: Server | None, url: str, prefix: str, *, half_done: bool) -> None:
    """A store as schema version 1 wrote it (tables, rows, counters); *half_done*: one migration step already ran."""
    statements = [sql.format(p=prefix) for sql in V1_TABLES[sql_engine]]
    statements.append(f"INSERT INTO {prefix}meta (name, value) VALUES ('schema_version', '1')")

    def blob(data: bytes) -> str:
        return f"'\\x{data.hex()}'::bytea" if sql_engine == "postgresql" else f"X'{data.hex()}'"

    for ns, rows in V1_ROWS.items():
        for key, value in rows.items():
            statements.append(f"INSERT INTO {prefix}data (ns, k, v) VALUES ('{ns}', {blob(key)}, {blob(value)})")
        used = sum(len(k) + len(v) for k, v in rows.items())
        statements.append(f"INSERT INTO {prefix}usage (ns, used_bytes, key_count) VALUES ('{ns}', {used}, {len(rows)})")
    if half_done:  # an interrupted MariaDB migration: the first column is there, the version row still says 1
        big = "INTEGER" if sql_engine == "sqlite" else "BIGINT"
        statements.append(f"ALTER TABLE {prefix}data ADD COLUMN ver {big} NOT NULL DEFAULT 1")
    if server is None:
        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        with connection:
            for sql in statements:
                connection.execute(sql)
        connection.close()
    else:
        for sql in statements:
            server.execute(sql)


@pytest.mark.parametrize("half_done", [False, True], ids=["version-1", "interrupted-migration"])
def test_a_version_1_store_is_migrated_on_open_keeping_data_and_counters(
    sql_engine: str, server: Server | None, store_url: str, fresh_prefix: str, tmp_path: Path, half_done: bool
) -> None:
    url = f"sqlite:///{tmp_path}/v1.sqlite3" if server is None else store_url
    _write_v1_store(sql_engine, server, url, fresh_prefix, half_done=half_done)
    for _ in range(2):  # the second open finds version 2 and changes nothing
        backend = SQLBackend.open(url, {"table_prefix": fresh_prefix})
        try:
            assert backend.stats()["schema_version"] == 2
            sql = f"SELECT value FROM {fresh_prefix}meta WHERE name = 'schema_version'"
            version = backend._run("test", backend._fetchall, sql, ())
            assert version[0][0] == "2"
            for ns, rows in V1_ROWS.items():
                assert dict(backend.items(ns, b"", None, 100)) == rows
                assert backend.usage(ns).bytes == sum(len(k) + len(v) for k, v in rows.items())
                assert backend.usage(ns).keys == len(rows)
                for key, value in rows.items():
                    entry = backend.get_entry(ns, key)
                    assert entry is not None and (entry.value, entry.version, entry.expires_at) == (value, 1, None)
            assert backend.verify().ok
        finally:
            backend.close()
    backend = SQLBackend.open(url, {"table_prefix": fresh_prefix})
    try:  # the migrated store works as a new one: versions grow, floors rise, op records are kept
        assert backend.put_one("app", b"a", b"one", None) == 2
        assert backend.delete_one("app", b"a") is True
        assert backend.put_one("app", b"a", b"again", None) == 3
        plan = backend.apply("app", [Write(b"n", WriteKind.INCREMENT, delta=2, op_id="op")], None)
        assert plan.results == [2]
        assert backend.apply("app", [Write(b"n", WriteKind.INCREMENT, delta=2, op_id="op")], None).results == [2]
        assert backend.verify().ok
    finally:
        backend.close()


def _space(backend: Any, namespace: str) -> SpaceState:
    def read(item: Any) -> SpaceState:
        try:
            return backend._lock_space(item, namespace)  # type: ignore[no-any-return]
        finally:
            backend._d.rollback(item)  # the lock's transaction (servers) must not stay open on the connection

    return backend._run("test", read)  # type: ignore[no-any-return]


#: Change feeds of the differential test: none; a tiny log (trimmed every commit) with values; a log
#: trimmed by count every TRIM_STEP seqs and by age (the clock moves 0.5 s a step).
FEEDS = {
    "no-feed": None,
    "feed-tiny": FeedConfig(retain_events=20, retain_ms=None, capture_values=True, max_value_bytes=8),
    "feed-aged": FeedConfig(retain_events=100, retain_ms=30_000),
}


@pytest.mark.parametrize("feed", FEEDS.values(), ids=FEEDS.keys())
def test_hot_paths_give_what_the_planner_gives(open_backend: OpenBackend, feed: FeedConfig | None) -> None:
    """put_one / delete_one against apply() on the same random history: equal versions, results, usage, floor.

    Both namespaces draw the same sizes, so whatever path put_one takes (PostgreSQL's CTE, MariaDB's
    procedure, SQLite's same-size UPDATE or its transaction) must give what the planner gives. With a
    change feed on, put_one is its logged variant (``put_one_logged``: SQLite's one transaction of the
    row and the event) and apply() the general path appending the plan's events: the two logs must
    hold the same events (seqs, times, versions, values) and trim alike.
    """
    backend = open_backend()
    clock = FakeClock(start_ms=1_000_000)
    backend.clock = clock
    if feed is not None:
        backend.enable_changes("hot", feed)
        backend.enable_changes("planned", feed)
    rng = random.Random(10)
    keys = [b"k%d" % i for i in range(6)]
    limit = 400
    for step in range(400):
        key = rng.choice(keys)
        action = rng.random()
        # Often the size already stored (SQLite's one-statement same-size overwrite, tried when
        # its size hint matches; the hint goes stale through apply()).
        size = rng.choice((5, 5, 12, step * 7 % 90))
        outcomes = []
        for ns, hot in (("hot", True), ("planned", False)):
            try:
                if action < 0.55:
                    value = bytes([step % 256]) * size
                    if hot:
                        outcomes.append(backend.put_one(ns, key, value, limit))
                    else:
                        outcomes.append(backend.apply(ns, [Write(key, WriteKind.PUT, value)], limit).results[0])
                elif action < 0.8:
                    if hot:
                        outcomes.append(backend.delete_one(ns, key))
                    else:
                        outcomes.append(backend.apply(ns, [Write(key, WriteKind.DELETE)], None).results[0] == 1)
                elif action < 0.9:  # rows with an expiry, written the same way on both sides
                    write = Write(key, WriteKind.PUT, b"t" * (step % 7), expires_at=clock() + 1500)
                    outcomes.append(backend.apply(ns, [write], limit).results[0])
                else:
                    outcomes.append(backend.delete_range(ns, b"k2", b"k4").results)
            except QuotaExceeded as exc:
                outcomes.append(str(exc).replace("'hot'", "'planned'"))
        assert outcomes[0] == outcomes[1], (step, action, key)
        assert backend.usage("hot") == backend.usage("planned"), step
        assert _space(backend, "hot") == _space(backend, "planned"), step
        assert backend.items("hot", b"", None, 100) == backend.items("planned", b"", None, 100)
        if feed is not None:
            assert backend.read_changes("hot", 0, 1000) == backend.read_changes("planned", 0, 1000), step
        clock.advance(0.5)
    entries = [(backend.get_entry("hot", key), backend.get_entry("planned", key)) for key in keys]
    assert all(hot == planned for hot, planned in entries)


def test_operation_ids_are_kept_for_the_retention_window_then_pruned(open_backend: OpenBackend) -> None:
    backend = open_backend()
    clock = FakeClock(start_ms=5_000_000)
    backend.clock = clock
    backend.op_retention_ms = 60_000
    increment = [Write(b"n", WriteKind.INCREMENT, delta=1, op_id="retry-me")]
    assert backend.apply("ops", increment, None).results == [1]
    clock.advance(59)
    assert backend.apply("ops", increment, None).results == [1]  # a replay: nothing applied
    clock.advance(2)
    assert backend.apply("ops", increment, None).results == [2]  # older than the window: applied again
    clock.advance(61)
    backend.apply("ops", [Write(b"n", WriteKind.INCREMENT, delta=1, op_id="other")], None)
    table = backend._tables.ops
    rows = backend._run("test", lambda item: backend._fetchall(item, f"SELECT op_id FROM {table}", ()))
    assert [bytes(row[0]) for row in rows] == [b"other"]  # the expired record was pruned by that write


def test_range_delete_clear_and_verify_count_expired_rows(open_backend: OpenBackend) -> None:
    backend = open_backend()
    clock = FakeClock(start_ms=1_000_000)
    backend.clock = clock
    writes = [Write(b"r%d" % i, WriteKind.PUT, b"v", expires_at=clock() + 1000 if i % 2 else None) for i in range(10)]
    backend.apply("r", writes, None)
    clock.advance(1)
    assert backend.keys("r", b"", None, 100) == [b"r%d" % i for i in range(0, 10, 2)]
    assert backend.usage("r").keys == 10 and backend.verify().ok  # expired rows stay counted until removed
    assert sum(backend.delete_range("r", b"", None, expired_only=True, limit=2).results) == 2
    assert backend.usage("r").keys == 8
    assert sum(backend.delete_range("r", b"r4", b"r8").results) == 2  # r4, r6 live; r5, r7 expired
    assert backend.usage("r").keys == 4 and backend.verify().ok
    top = max(entry.version for key in (b"r0", b"r2", b"r8") if (entry := backend.get_entry("r", key)) is not None)
    backend.clear("r")
    assert backend.usage("r").keys == 0 and _space(backend, "r").floor >= top
    assert backend.put_one("r", b"r0", b"new", None) > top


def test_batches_of_plain_puts_give_what_the_general_path_gives(open_backend: OpenBackend) -> None:
    """A dialect's faster commit of plain puts (SQLite: old rows returned by the upsert) plans as the general path.

    Random batches over a few keys, some rows with an expiry that passes, some
    refused by the quota: the plan (results, existed, events, counter row),
    the usage and every entry must be the same on both sides.
    """
    backend = open_backend()
    clock = FakeClock(start_ms=2_000_000)
    backend.clock = clock
    rng = random.Random(11)
    keys = [b"b%d" % i for i in range(8)]
    limit = 600
    for step in range(150):
        batch = rng.sample(keys, rng.randint(2, 6))
        writes = [
            Write(
                key,
                WriteKind.PUT,
                bytes([step % 256]) * rng.choice((3, 3, 20, step % 60)),
                expires_at=clock() + 700 if rng.random() < 0.3 else None,
            )
            for key in batch
        ]
        outcomes: list[Any] = []
        for ns, apply in (("fast", backend.apply), ("planned", backend._apply_planned)):
            try:
                planned = apply(ns, writes, limit)
                outcomes.append((planned.results, planned.existed, planned.events, planned.space))
            except QuotaExceeded as exc:
                outcomes.append(str(exc).replace("'fast'", "'planned'"))
        assert outcomes[0] == outcomes[1], step
        assert backend.usage("fast") == backend.usage("planned"), step
        if rng.random() < 0.2:
            backend.delete_one("fast", batch[0])
            backend.delete_one("planned", batch[0])
        clock.advance(0.4)
    for key in keys:
        assert backend.get_entry("fast", key) == backend.get_entry("planned", key)
    assert backend.verify().ok


def test_increments_give_what_the_general_path_gives(open_backend: OpenBackend) -> None:
    """A dialect's one-statement increment (PostgreSQL) gives what the planner's general path gives.

    Counters near the signed 64-bit ends, values that are no counter (the
    planner's decode rule), expired rows, quota refusals: the result or the
    error, the usage and every entry must be the same on both sides.
    """
    from airssys_storage import InvalidArgument

    backend = open_backend()
    clock = FakeClock(start_ms=3_000_000)
    backend.clock = clock
    rng = random.Random(12)
    keys = [b"c%d" % i for i in range(5)]
    odd_values = [b"abc", b"1.5", b"+1", b" 1", b"-", b"", b"007", b"-0", b"9" * 20, b"1" * 19, b"\xff1", b"12\\"]
    ends = [2**63 - 1, -(2**63), 2**63 - 2, -(2**63) + 1]
    limit = 200
    for step in range(300):
        key = rng.choice(keys)
        pick = rng.random()
        delta = rng.choice([1, -1, 5, 2**62, -(2**62), 2**63 - 1, -(2**63), 0])
        outcomes: list[Any] = []
        for ns, apply in (("native", backend.apply), ("planned", backend._apply_planned)):
            try:
                if pick < 0.15:  # a value that may or may not be a counter
                    chooser = random.Random(step)  # the same value on both sides
                    value = chooser.choice([*odd_values, b"%d" % chooser.choice(ends)])
                    write = Write(key, WriteKind.PUT, value, expires_at=clock() + 900 if step % 3 == 0 else None)
                    outcomes.append(apply(ns, [write], limit).results)
                else:
                    planned = apply(ns, [Write(key, WriteKind.INCREMENT, delta=delta)], limit)
                    outcomes.append((planned.results, planned.existed, planned.puts, planned.events))
            except (QuotaExceeded, InvalidArgument) as exc:
                outcomes.append((type(exc).__name__, str(exc).replace("'native'", "'planned'")))
        assert outcomes[0] == outcomes[1], (step, key, delta)
        assert backend.usage("native") == backend.usage("planned"), step
        assert _space(backend, "native") == _space(backend, "planned"), step
        clock.advance(0.3)
    for key in keys:
        assert backend.get_entry("native", key) == backend.get_entry("planned", key)
    assert backend.verify().ok


def test_logged_puts_of_two_handles_keep_the_log_dense(open_backend: OpenBackend) -> None:
    """Two handles (two connections, as two processes would be) writing one namespace with the feed on.

    SQLite's logged put knows its connection's newest event while no other connection has
    committed; each handle's turn here follows the other's commit (or a write of another
    namespace, or a commit of the general path on the same connection), so every remembered
    seq is stale: the log must still hold every write once, in order, with dense seqs.
    """
    first, second = open_backend(), open_backend()
    feed = FeedConfig(capture_values=True)
    for backend in (first, second):
        backend.enable_changes("app", feed)
        backend.enable_changes("other", feed)
    rng = random.Random(14)
    expected = []
    for step in range(300):
        backend = rng.choice((first, second))
        key = b"k%d" % rng.randrange(4)
        value = bytes([step % 256]) * rng.choice((3, 3, 3, 9))  # mostly same-size overwrites
        action = rng.random()
        if action < 0.1:
            backend.put_one("other", key, value, None)  # moves data_version, not app's log
        elif action < 0.2:  # the general path on this connection
            version = backend.apply("app", [Write(key, WriteKind.PUT, value)], None).results[0]
            expected.append((key, version, value))
        else:
            expected.append((key, backend.put_one("app", key, value, None), value))
    batch = first.read_changes("app", 0, 1000)
    assert [record.seq for record in batch.records] == list(range(1, len(expected) + 1))
    assert [(r.key, r.version, r.value) for r in batch.records] == expected
    assert all(r.op == "set" for r in batch.records)
    assert second.read_changes("app", 0, 1000) == batch
