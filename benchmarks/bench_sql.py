"""ComponentStorage on the SQL backend against the raw engines, interleaved in one run.

SQLite (``sqlite:///``) is measured against raw ``sqlite3`` with the same
pragmas (WAL, synchronous=NORMAL) and the same ``(ns, k) WITHOUT ROWID``
table, and against diskcache. PostgreSQL is measured against raw psycopg 3
(binary parameters) and MariaDB against raw PyMySQL, both in autocommit mode.
Ratios are ours/peer in operations per second (>= 1.0 means at least as fast).

Every write workload has keys of its own, and every run writes random values
that differ from the ones the previous run wrote (identical bytes make an
overwrite nearly free in SQLite and InnoDB). Both sides of a comparison write
the same bytes: each builds its values from the same seed.

What each side does per operation:

* ours: permission check, key/value validation, and a guarded commit that
  updates the namespace's usage counter in the same transaction (quota);
  with ``--level backend``, the backend's primitives alone (``get``,
  ``put_one``, ``apply``) without the core on top;
* raw: one statement (``INSERT OR REPLACE`` / ``INSERT … ON CONFLICT`` /
  ``INSERT … ON DUPLICATE KEY UPDATE``) or one ``SELECT``, no quota, no
  validation; batches are one transaction with ``executemany``. Raw key
  listings decode the keys to ``str`` like ours. ``increment`` is the engine's
  native atomic increment written by hand: an upsert of an integer column
  with ``n = n + 1`` and ``RETURNING n``, one statement;
* raw+counter (SQLite): a set as ``BEGIN``, the row, an ``UPDATE`` of a
  counter row, ``COMMIT`` — the two writes a size-changing set must make.

Batches are 100 keys: of 64/80-byte values (sizes alternate, so every batch
moves the usage counter), of 4 KiB and of 64 KiB values.

    python benchmarks/bench_sql.py [--ops N] [--rounds R] [--postgresql URL | --no-postgresql]
                                   [--mariadb URL | --no-mariadb] [--only sqlite,postgresql,mariadb]
                                   [--level api|backend] [--large]

``--large`` adds get, has and set of 64 KiB and 1 MiB values (SQLite against raw and diskcache).
At the API level each engine also prints ``compare_and_swap`` against a plain ``set`` of the same
values (issue 10's target: at least 0.5x).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import diskcache
from _harness import Side, measure, prefix_end, print_table

from airssys_storage import Access, ComponentStorage, Manifest, StorageBackend, StorageManager, StorageSettings
from airssys_storage.planner import Write, WriteKind

if TYPE_CHECKING:
    import psycopg
    import pymysql

NS = "bench"
SCAN_KEYS = 10_000
BATCH = 100
KiB = 1024
#: Large-value batch workloads: value size -> keys written per run (in batches of BATCH).
LARGE = {4 * KiB: 1000, 64 * KiB: 200}
#: Point workloads on large values (--large): value size -> keys per run.
LARGE_POINT = {64 * KiB: 200, 1024 * KiB: 20}
#: Counters the increment workload adds one to, one after the other.
COUNTERS = 50


def keyset(count: int, prefix: str = "user_") -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(count)]


class Values:
    """Random values for one side of one workload; each run writes other bytes than the run before.

    With one size the pool holds three random values of that size, with several sizes one
    value of each (so sizes alternate between runs). Run r writes ``pool[(r + i) % len(pool)]``
    to the i-th key of a batch, or ``pool[r % len(pool)]`` to every key of a point workload.
    Two instances with the same arguments produce the same values.
    """

    def __init__(self, sizes: Sequence[int], seed: int) -> None:
        rng = random.Random(seed)
        self.pool = [rng.randbytes(size) for size in (sizes if len(sizes) > 1 else list(sizes) * 3)]
        self.run = 0

    def next(self) -> bytes:
        """The value of the next run, the same for every key."""
        self.run += 1
        return self.pool[self.run % len(self.pool)]

    def next_many(self, count: int) -> list[bytes]:
        """The values of the next run, one per key."""
        self.run += 1
        pool, run = self.pool, self.run
        return [pool[(run + i) % len(pool)] for i in range(count)]


def ours(store: ComponentStorage) -> Side:
    def get(keys: list[str]) -> None:
        read = store.get
        for key in keys:
            read(key)

    def set_(keys: list[str], value: bytes) -> None:
        write = store.set
        for key in keys:
            write(key, value)

    def batch(keys: list[str], values: list[bytes]) -> None:
        store.set_many(list(zip(keys, values, strict=True)))

    def increment(keys: list[str]) -> None:
        add = store.increment  # type: ignore[attr-defined]  # the v2 API (core)
        for key in keys:
            add(key)

    def has(keys: list[str]) -> None:
        ask = store.has
        for key in keys:
            ask(key)

    return Side(get, set_, batch, store.keys, increment, has)


def ours_backend(backend: StorageBackend) -> Side:
    """The backend's primitives alone, as the core calls them (keys pre-encoded like the core's)."""

    def get(keys: list[str]) -> None:
        read = backend.get
        for key in keys:
            read(NS, key.encode())

    def set_(keys: list[str], value: bytes) -> None:
        write = backend.put_one
        for key in keys:
            write(NS, key.encode(), value, 500_000_000)

    def batch(keys: list[str], values: list[bytes]) -> None:
        writes = [Write(k.encode(), WriteKind.PUT, v) for k, v in zip(keys, values, strict=True)]
        backend.apply(NS, writes, 500_000_000)

    def keys_of(prefix: str) -> list[str]:
        start = prefix.encode()
        return [k.decode() for k in backend.keys(NS, start, prefix_end(start), 1_000_000)]

    def increment(keys: list[str]) -> None:
        apply = backend.apply
        for key in keys:
            apply(NS, (Write(key.encode(), WriteKind.INCREMENT, delta=1),), 500_000_000)

    def has(keys: list[str]) -> None:
        ask = backend.has
        for key in keys:
            ask(NS, key.encode())

    return Side(get, set_, batch, keys_of, increment, has)


def side_of(store: ComponentStorage, level: str) -> Side:
    return ours_backend(store._backend) if level == "backend" else ours(store)


def open_ours(url: str, options: dict[str, Any]) -> tuple[StorageManager, ComponentStorage]:
    manager = StorageManager.from_settings(StorageSettings(url=url, backend_options=options))
    return manager, manager.component(Manifest(NS, Access.ADMIN, "500MB"))


def connect_postgresql(url: str) -> psycopg.Connection[Any]:
    """A raw autocommit psycopg connection to the database that the sql backend URL *url* names."""
    import psycopg
    from airssys_storage_sql.backend import parse_url

    sa_url, _ = parse_url(url)
    return psycopg.connect(
        host=sa_url.host,
        port=sa_url.port or 5432,
        user=sa_url.username,
        password=sa_url.password,
        dbname=sa_url.database,
        autocommit=True,
    )


def drop_store(raw: psycopg.Connection[Any], prefix: str) -> None:
    """Drop what the sql backend created in PostgreSQL for *prefix*."""
    raw.execute(f"DROP TABLE IF EXISTS {prefix}data, {prefix}usage, {prefix}meta, {prefix}ops")
    raw.execute(f"DROP FUNCTION IF EXISTS {prefix}refuse(text, bigint, bigint)")


def connect_mariadb(url: str) -> pymysql.connections.Connection[Any]:
    """A raw autocommit PyMySQL connection set up like the sql backend's (charset, _binary prefix, isolation)."""
    import pymysql
    from airssys_storage_sql.backend import parse_url

    sa_url, _ = parse_url(url)
    conn = pymysql.connect(
        host=sa_url.host or "localhost",
        port=sa_url.port or 3306,
        user=sa_url.username or "root",
        password=sa_url.password or "",
        database=sa_url.database,
        charset="utf8mb4",
        binary_prefix=True,
        autocommit=True,
    )
    conn.cursor().execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    return conn


def prefill(side: Side, keys: list[str], value: bytes) -> None:
    assert side.batch is not None
    for start in range(0, len(keys), BATCH):
        chunk = keys[start : start + BATCH]
        side.batch(chunk, [value] * len(chunk))


def workloads(side: Side, ops: int, large: bool = False) -> dict[str, Callable[[], int]]:
    """Workload name -> run (returns its operations) for *side*; the same keys and values for every side."""
    reads, scan_prefix = keyset(ops, "user_"), "scan_"
    runs: dict[str, Callable[[], int]] = {}

    def point(keys: list[str], values: Values) -> Callable[[], int]:
        def run() -> int:
            side.set(keys, values.next())
            return len(keys)

        return run

    def batches(keys: list[str], values: Values) -> Callable[[], int]:
        batch = side.batch
        assert batch is not None

        def run() -> int:
            new = values.next_many(len(keys))
            for start in range(0, len(keys), BATCH):
                batch(keys[start : start + BATCH], new[start : start + BATCH])
            return len(keys)

        return run

    def run_get() -> int:
        side.get(reads)
        return ops

    runs["get"] = run_get
    runs["set (size changes)"] = point(keyset(ops, "size_"), Values((64, 80), 1))
    runs["set (same size)"] = point(keyset(ops, "same_"), Values((64,), 2))
    # Before the large batches: a commit right after them pays for the checkpoint they left behind.
    add = side.increment
    if add is not None:
        counters = keyset(COUNTERS, "counter_")

        def run_increment() -> int:
            add(counters)
            return len(counters)

        runs["increment"] = run_increment
    if side.batch is not None:
        runs[f"set_many {BATCH} (per key)"] = batches(keyset(ops, "batch_"), Values((64, 80), 3))
        for size, count in LARGE.items():
            runs[f"set_many {BATCH} x {size // KiB} KiB"] = batches(
                keyset(count, f"large{size}_"), Values((size,), size)
            )
    keys_of = side.keys
    if keys_of is not None:

        def run_keys() -> int:
            assert len(keys_of(scan_prefix)) == SCAN_KEYS
            return 1

        runs[f"keys() of {SCAN_KEYS:,}"] = run_keys
    if large:
        for size, count in LARGE_POINT.items():
            keys, label = keyset(count, f"point{size}_"), f"{size // KiB} KiB" if size < 1024 * KiB else "1 MiB"
            runs[f"set {label}"] = point(keys, Values((size,), size + 1))
            runs[f"get {label}"] = _reads(side.get, keys)
            if side.has is not None:
                runs[f"has {label}"] = _reads(side.has, keys)
    return runs


def _reads(read: Callable[[list[str]], None], keys: list[str]) -> Callable[[], int]:
    def run() -> int:
        read(keys)
        return len(keys)

    return run


def compare(sides: dict[str, Side], ops: int, rounds: int, large: bool = False) -> list[tuple[str, dict[str, float]]]:
    """Measure each workload on every side that has it, rounds interleaved (large: the --large workloads too)."""
    runs = {name: workloads(side, ops, large) for name, side in sides.items()}
    rows = []
    for workload in runs["ours"]:
        contenders = {name: side_runs[workload] for name, side_runs in runs.items() if workload in side_runs}
        result = measure(contenders, rounds)
        for name in sides:
            result.setdefault(name, float("nan"))
        rows.append((workload, result))
    return rows


def bench_cas(store: ComponentStorage, ops: int, rounds: int, title: str) -> None:
    """compare_and_swap against a plain set of the same keys and values (target: >= 0.5x), interleaved."""
    cas_keys, set_keys = keyset(ops, "cas_"), keyset(ops, "plain_")
    versions = {key: store.set(key, b"0" * 64) for key in cas_keys}
    for key in set_keys:
        store.set(key, b"0" * 64)
    cas_values, set_values = Values((64,), 7), Values((64,), 7)

    def cas() -> int:
        value, swap = cas_values.next(), store.compare_and_swap
        for key in cas_keys:
            versions[key] = swap(key, value, version=versions[key])
        return ops

    def plain() -> int:
        value, write = set_values.next(), store.set
        for key in set_keys:
            write(key, value)
        return ops

    result = measure({"compare_and_swap": cas, "set": plain}, rounds)
    print_table(
        f"{title}: compare_and_swap vs set of the same 64-byte values", [("64 B", result)], "compare_and_swap", ["set"]
    )


def fill_reads(side: Side, ops: int, set_one: Callable[[str, bytes], object] | None = None) -> None:
    """The keys that get and keys() read, with 64-byte values."""
    value = b"r" * 64
    if set_one is not None:  # a side without batches
        for key in keyset(ops, "user_") + keyset(SCAN_KEYS, "scan_"):
            set_one(key, value)
        return
    prefill(side, keyset(ops, "user_"), value)
    prefill(side, keyset(SCAN_KEYS, "scan_"), value)


SQLITE_INCREMENT = (
    "INSERT INTO counters (ns, k, n) VALUES (?, ?, 1) ON CONFLICT (ns, k) DO UPDATE SET n = n + 1 RETURNING n"
)


def open_raw_sqlite(path: Path) -> tuple[sqlite3.Connection, Side]:
    """Raw sqlite3 on a new database at *path*, set up like the sql backend (WAL, synchronous=NORMAL, WITHOUT ROWID).

    The side runs one statement per operation in autocommit mode and a batch as one
    transaction with ``executemany``; no quota, no validation.
    """
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode = WAL")
    raw.execute("PRAGMA synchronous = NORMAL")
    raw.execute(
        "CREATE TABLE kv (ns TEXT NOT NULL, k BLOB NOT NULL, v BLOB NOT NULL, PRIMARY KEY (ns, k)) WITHOUT ROWID"
    )
    raw.execute("CREATE TABLE counters (ns TEXT NOT NULL, k BLOB NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (ns, k))")
    raw.execute("CREATE TABLE used (ns TEXT PRIMARY KEY, bytes INTEGER NOT NULL) WITHOUT ROWID")
    raw.execute("INSERT INTO used VALUES (?, 0)", (NS,))
    execute = raw.execute

    def raw_get(keys: list[str]) -> None:
        for key in keys:
            execute("SELECT v FROM kv WHERE ns = ? AND k = ?", (NS, key.encode())).fetchone()

    def raw_has(keys: list[str]) -> None:
        for key in keys:
            execute("SELECT 1 FROM kv WHERE ns = ? AND k = ?", (NS, key.encode())).fetchone()

    def raw_set(keys: list[str], value: bytes) -> None:
        for key in keys:
            execute("INSERT OR REPLACE INTO kv (ns, k, v) VALUES (?, ?, ?)", (NS, key.encode(), value))

    def raw_increment(keys: list[str]) -> None:
        for key in keys:
            execute(SQLITE_INCREMENT, (NS, key.encode())).fetchall()

    def raw_batch(keys: list[str], values: list[bytes]) -> None:
        execute("BEGIN")
        raw.executemany(
            "INSERT OR REPLACE INTO kv (ns, k, v) VALUES (?, ?, ?)",
            [(NS, k.encode(), v) for k, v in zip(keys, values, strict=True)],
        )
        execute("COMMIT")

    def raw_keys(prefix: str) -> list[str]:
        start = prefix.encode()
        rows = execute(
            "SELECT k FROM kv WHERE ns = ? AND k >= ? AND k < ? ORDER BY k", (NS, start, prefix_end(start))
        ).fetchall()
        return [k.decode() for (k,) in rows]

    return raw, Side(raw_get, raw_set, raw_batch, raw_keys, raw_increment, raw_has)


def bench_sqlite(ops: int, rounds: int, directory: Path, level: str = "api", large: bool = False) -> None:
    manager, store = open_ours(f"sqlite:///{directory}/ours.sqlite3", {})
    cache = diskcache.Cache(str(directory / "diskcache"))
    raw, raw_side_ = open_raw_sqlite(directory / "raw.sqlite3")
    execute = raw.execute

    def raw_set_counted(keys: list[str], value: bytes) -> None:
        for key in keys:
            execute("BEGIN")
            execute("INSERT OR REPLACE INTO kv (ns, k, v) VALUES (?, ?, ?)", (NS, key.encode(), value))
            execute("UPDATE used SET bytes = bytes + ? WHERE ns = ?", (len(value), NS))
            execute("COMMIT")

    def dc_get(keys: list[str]) -> None:
        for key in keys:
            cache.get(key)

    def dc_set(keys: list[str], value: bytes) -> None:
        for key in keys:
            cache.set(key, value)

    def dc_keys(prefix: str) -> list[str]:  # no ordered prefix query: a filtered scan
        return [k for k in cache.iterkeys() if k.startswith(prefix)]

    def dc_increment(keys: list[str]) -> None:
        for key in keys:
            cache.incr(key)

    def dc_has(keys: list[str]) -> None:
        for key in keys:
            _ = key in cache

    sides = {
        "ours": side_of(store, level),
        "raw": raw_side_,
        "raw+counter": Side(raw_side_.get, raw_set_counted),
        "diskcache": Side(dc_get, dc_set, None, dc_keys, dc_increment, dc_has),
    }
    fill_reads(sides["ours"], ops)
    fill_reads(sides["raw"], ops)
    fill_reads(sides["diskcache"], ops, cache.set)
    rows = compare(sides, ops, rounds, large)
    print_table(
        f"SQLite (WAL, synchronous=NORMAL): {level} level vs raw sqlite3 and diskcache, {ops} ops/round",
        rows,
        "ours",
        ["raw", "raw+counter", "diskcache"],
    )
    if level == "api":
        bench_cas(store, ops // 3, rounds, "SQLite")
    manager.close()
    raw.close()
    cache.close()


def raw_side(
    cursor: Any,
    table: str,
    upsert: str,
    marker: str,
    transaction: Callable[[], AbstractContextManager[object]],
    increment_sql: str,
) -> Side:
    """Raw DBAPI statements on *table* (ns, k, v): *upsert* writes a row, *marker* is the placeholder for bytes.

    *increment_sql* adds one to the integer counter ``(ns, k)`` and returns it, in one statement.
    """

    def get(keys: list[str]) -> None:
        for key in keys:
            cursor.execute(f"SELECT v FROM {table} WHERE ns = %s AND k = {marker}", (NS, key.encode()))
            cursor.fetchone()

    def set_(keys: list[str], value: bytes) -> None:
        for key in keys:
            cursor.execute(upsert, (NS, key.encode(), value))

    def batch(keys: list[str], values: list[bytes]) -> None:
        with transaction():
            cursor.executemany(upsert, [(NS, k.encode(), v) for k, v in zip(keys, values, strict=True)])

    def keys_of(prefix: str) -> list[str]:
        start = prefix.encode()
        sql = f"SELECT k FROM {table} WHERE ns = %s AND k >= {marker} AND k < {marker} ORDER BY k"
        cursor.execute(sql, (NS, start, prefix_end(start)))
        return [k.decode() for (k,) in cursor.fetchall()]

    def increment(keys: list[str]) -> None:
        for key in keys:
            cursor.execute(increment_sql, (NS, key.encode()))
            cursor.fetchone()

    return Side(get, set_, batch, keys_of, increment)


def open_raw_postgresql(url: str, prefix: str) -> tuple[psycopg.Connection[Any], Side, Callable[[], None]]:
    """Raw psycopg 3 (autocommit, binary parameters) on tables of its own named *prefix*``raw_kv``.

    Returns the connection, the side, and what drops the raw tables.
    """
    raw = connect_postgresql(url)
    table = f"{prefix}raw_kv"
    raw.execute(f'CREATE TABLE {table} (ns TEXT COLLATE "C", k BYTEA, v BYTEA NOT NULL, PRIMARY KEY (ns, k))')
    raw.execute(f'CREATE TABLE {table}_n (ns TEXT COLLATE "C", k BYTEA, n BIGINT NOT NULL, PRIMARY KEY (ns, k))')
    cursor = raw.cursor(binary=True)
    # %b: binary parameters, as psycopg sends bytes by default (and as the backend sends them).
    upsert = f"INSERT INTO {table} (ns, k, v) VALUES (%s, %b, %b) ON CONFLICT (ns, k) DO UPDATE SET v = EXCLUDED.v"
    increment = (
        f"INSERT INTO {table}_n AS c (ns, k, n) VALUES (%s, %b, 1) "
        "ON CONFLICT (ns, k) DO UPDATE SET n = c.n + 1 RETURNING n"
    )

    def drop() -> None:
        raw.execute(f"DROP TABLE IF EXISTS {table}, {table}_n")

    return raw, raw_side(cursor, table, upsert, "%b", raw.transaction, increment), drop


def analyze_postgresql(raw: psycopg.Connection[Any], prefix: str) -> None:
    """ANALYZE the raw and the backend's data tables under *prefix* once they are filled.

    Autovacuum would, a minute later: without statistics the planner scanned our
    10,000-row table for each batch's read of the old rows.
    """
    raw.execute(f"ANALYZE {prefix}raw_kv")
    raw.execute(f"ANALYZE {prefix}data")


def bench_postgresql(url: str, ops: int, rounds: int, level: str = "api") -> None:
    prefix = f"bench{os.getpid()}_"
    manager, store = open_ours(url, {"table_prefix": prefix})
    raw, side, drop = open_raw_postgresql(url, prefix)

    try:
        sides = {"ours": side_of(store, level), "raw": side}
        for each in sides.values():
            fill_reads(each, ops)
        analyze_postgresql(raw, prefix)
        rows = compare(sides, ops, rounds)
        print_table(f"PostgreSQL: {level} level vs raw psycopg 3 (autocommit), {ops} ops/round", rows, "ours", ["raw"])
        if level == "api":
            bench_cas(store, ops // 3, rounds, "PostgreSQL")
    finally:
        manager.close()
        drop()
        drop_store(raw, prefix)
        raw.close()


def open_raw_mariadb(url: str, prefix: str) -> tuple[pymysql.connections.Connection[Any], Side, Callable[[], None]]:
    """Raw PyMySQL (autocommit) on InnoDB tables of its own named *prefix*``raw_kv``.

    Returns the connection, the side, and what drops the raw tables and the sql backend's under *prefix*.
    """
    raw = connect_mariadb(url)
    cursor = raw.cursor()
    table = f"{prefix}raw_kv"
    cursor.execute(
        f"CREATE TABLE {table} (ns VARBINARY(64) NOT NULL, k VARBINARY(256) NOT NULL, v LONGBLOB NOT NULL, "
        "PRIMARY KEY (ns, k)) ENGINE=InnoDB"
    )
    cursor.execute(
        f"CREATE TABLE {table}_n (ns VARBINARY(64) NOT NULL, k VARBINARY(256) NOT NULL, n BIGINT NOT NULL, "
        "PRIMARY KEY (ns, k)) ENGINE=InnoDB"
    )
    upsert = f"INSERT INTO {table} (ns, k, v) VALUES (%s, %s, %s) ON DUPLICATE KEY UPDATE v = VALUES(v)"
    increment = f"INSERT INTO {table}_n (ns, k, n) VALUES (%s, %s, 1) ON DUPLICATE KEY UPDATE n = n + 1 RETURNING n"

    @contextlib.contextmanager
    def transaction() -> Iterator[None]:
        raw.begin()
        yield
        raw.commit()

    def drop() -> None:
        cursor.execute(
            f"DROP TABLE IF EXISTS {table}, {table}_n, {prefix}data, {prefix}usage, {prefix}meta, {prefix}ops"
        )

    return raw, raw_side(cursor, table, upsert, "%s", transaction, increment), drop


def bench_mariadb(url: str, ops: int, rounds: int, level: str = "api") -> None:
    prefix = f"bench{os.getpid()}_"
    manager, store = open_ours(url, {"table_prefix": prefix})
    raw, side, drop = open_raw_mariadb(url, prefix)

    try:
        sides = {"ours": side_of(store, level), "raw": side}
        for each in sides.values():
            fill_reads(each, ops)
        rows = compare(sides, ops, rounds)
        print_table(f"MariaDB: {level} level vs raw PyMySQL (autocommit), {ops} ops/round", rows, "ours", ["raw"])
        if level == "api":
            bench_cas(store, ops // 3, rounds, "MariaDB")
    finally:
        manager.close()
        drop()
        raw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=3000, help="operations per round for SQLite")
    parser.add_argument("--server-ops", type=int, default=1000, help="operations per round for PostgreSQL, MariaDB")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--postgresql", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-postgresql", action="store_true")
    parser.add_argument("--mariadb", default="mysql+pymysql://root@127.0.0.1:3306/test")
    parser.add_argument("--no-mariadb", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated engines to run (default: all not excluded)")
    parser.add_argument(
        "--level", choices=("api", "backend"), default="api", help="ours: ComponentStorage or the backend"
    )
    parser.add_argument("--large", action="store_true", help="SQLite: get, has, set of 64 KiB and 1 MiB values too")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(","))) or {"sqlite", "postgresql", "mariadb"}
    if "sqlite" in only:
        with tempfile.TemporaryDirectory() as directory:
            bench_sqlite(args.ops, args.rounds, Path(directory), args.level, args.large)
    if "postgresql" in only and not args.no_postgresql:
        bench_postgresql(args.postgresql, args.server_ops, args.rounds, args.level)
    if "mariadb" in only and not args.no_mariadb:
        bench_mariadb(args.mariadb, args.server_ops, args.rounds, args.level)


if __name__ == "__main__":
    main()
