"""ComponentStorage on the SQL backend against the raw engines, interleaved in one run.

SQLite (``sqlite:///``) is measured against raw ``sqlite3`` with the same
pragmas (WAL, synchronous=NORMAL) and the same ``(ns, k) WITHOUT ROWID``
table, and against diskcache. PostgreSQL is measured against raw psycopg 3 in
autocommit mode. Ratios are ours/peer in operations per second (>= 1.0 means
at least as fast).

What each side does per operation:

* ours: permission check, key/value validation, and a guarded commit that
  updates the namespace's usage counter in the same transaction (quota);
* raw: one statement (``INSERT OR REPLACE`` / ``INSERT … ON CONFLICT``) or
  one ``SELECT``, no quota, no validation; batches are one transaction with
  ``executemany``. Raw key listings decode the keys to ``str`` like ours.

    python benchmarks/bench_sql.py [--ops N] [--rounds R] [--postgresql URL | --no-postgresql]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import diskcache
from _harness import measure, print_table

from airssys_storage import Access, ComponentStorage, Manifest, StorageManager, StorageSettings

if TYPE_CHECKING:
    import psycopg

NS = "bench"
SCAN_KEYS = 10_000
BATCH = 100


def keyset(count: int, prefix: str = "user_") -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(count)]


class Sizes:
    """Values that alternate between 64 and 80 bytes per round, so every overwrite changes usage."""

    def __init__(self) -> None:
        self.round = 0

    def next(self) -> bytes:
        self.round += 1
        return b"x" * (64 if self.round % 2 else 80)


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
    raw.execute(f"DROP TABLE IF EXISTS {prefix}data, {prefix}usage, {prefix}meta")
    raw.execute(f"DROP FUNCTION IF EXISTS {prefix}refuse(text, bigint, bigint)")


def point_workloads(
    get: Callable[[str], object], set_: Callable[[str, bytes], object], keys: list[str], value: bytes, sizes: Sizes
) -> dict[str, Callable[[], int]]:
    """One call per key of *keys*: get; set with a value of the next of *sizes*; set *value*."""

    def run_get() -> int:
        for key in keys:
            get(key)
        return len(keys)

    def run_set() -> int:
        v = sizes.next()
        for key in keys:
            set_(key, v)
        return len(keys)

    def run_set_same() -> int:
        for key in keys:
            set_(key, value)
        return len(keys)

    return {"get": run_get, "set (size changes)": run_set, "set (same size)": run_set_same}


def common_workloads(
    store: ComponentStorage,
    ops: int,
    raw_get: Callable[[list[str]], None],
    raw_set: Callable[[list[str], bytes], None],
    raw_batch: Callable[[list[str], bytes], None],
    raw_keys: Callable[[str], list[str]],
) -> list[tuple[str, dict[str, Callable[[], int]]]]:
    """Workloads shared by SQLite and PostgreSQL: name -> {contender: run}."""
    keys = keyset(ops)
    scan = keyset(SCAN_KEYS, "scan_")
    value = b"x" * 64
    store.set_many([])  # warm the code path
    for start in range(0, ops, BATCH):
        store.set_many([(key, value) for key in keys[start : start + BATCH]])
    for start in range(0, SCAN_KEYS, BATCH):
        store.set_many([(key, value) for key in scan[start : start + BATCH]])
    sizes_ours, sizes_raw = Sizes(), Sizes()

    def ours_batch() -> int:
        v = sizes_ours.next()
        for start in range(0, ops, BATCH):
            store.set_many([(key, v) for key in keys[start : start + BATCH]])
        return ops

    def ours_keys() -> int:
        assert len(store.keys("scan_")) == SCAN_KEYS
        return 1

    def raw_get_run() -> int:
        raw_get(keys)
        return ops

    def raw_set_run() -> int:
        raw_set(keys, sizes_raw.next())
        return ops

    def raw_set_same_run() -> int:
        raw_set(keys, value)
        return ops

    def raw_batch_run() -> int:
        v = sizes_raw.next()
        for start in range(0, ops, BATCH):
            raw_batch(keys[start : start + BATCH], v)
        return ops

    def raw_keys_run() -> int:
        assert len(raw_keys("scan_")) == SCAN_KEYS
        return 1

    point = point_workloads(store.get, store.set, keys, value, sizes_ours)
    return [
        ("get", {"ours": point["get"], "raw": raw_get_run}),
        ("set (size changes)", {"ours": point["set (size changes)"], "raw": raw_set_run}),
        ("set (same size)", {"ours": point["set (same size)"], "raw": raw_set_same_run}),
        (f"set_many {BATCH} (per key)", {"ours": ours_batch, "raw": raw_batch_run}),
        (f"keys() of {SCAN_KEYS:,}", {"ours": ours_keys, "raw": raw_keys_run}),
    ]


def bench_sqlite(ops: int, rounds: int, directory: Path) -> None:
    manager, store = open_ours(f"sqlite:///{directory}/ours.sqlite3", {})
    raw = sqlite3.connect(directory / "raw.sqlite3", isolation_level=None)
    raw.execute("PRAGMA journal_mode = WAL")
    raw.execute("PRAGMA synchronous = NORMAL")
    raw.execute(
        "CREATE TABLE kv (ns TEXT NOT NULL, k BLOB NOT NULL, v BLOB NOT NULL, PRIMARY KEY (ns, k)) WITHOUT ROWID"
    )
    cache = diskcache.Cache(str(directory / "diskcache"))
    execute = raw.execute

    def raw_get(keys: list[str]) -> None:
        for key in keys:
            execute("SELECT v FROM kv WHERE ns = ? AND k = ?", (NS, key.encode())).fetchone()

    def raw_set(keys: list[str], value: bytes) -> None:
        for key in keys:
            execute("INSERT OR REPLACE INTO kv (ns, k, v) VALUES (?, ?, ?)", (NS, key.encode(), value))

    def raw_batch(keys: list[str], value: bytes) -> None:
        execute("BEGIN")
        raw.executemany(
            "INSERT OR REPLACE INTO kv (ns, k, v) VALUES (?, ?, ?)", [(NS, k.encode(), value) for k in keys]
        )
        execute("COMMIT")

    def raw_keys(prefix: str) -> list[str]:
        start = prefix.encode()
        end = start[:-1] + bytes([start[-1] + 1])
        rows = execute("SELECT k FROM kv WHERE ns = ? AND k >= ? AND k < ? ORDER BY k", (NS, start, end)).fetchall()
        return [k.decode() for (k,) in rows]

    for start in range(0, SCAN_KEYS, BATCH):
        raw_batch(keyset(SCAN_KEYS, "scan_")[start : start + BATCH], b"x" * 64)
    raw_batch(keyset(ops), b"x" * 64)
    workloads = common_workloads(store, ops, raw_get, raw_set, raw_batch, raw_keys)

    # diskcache on the same workloads where it has an equivalent (no batch, no ordered prefix query).
    keys, value = keyset(ops), b"x" * 64
    for key in keys + keyset(SCAN_KEYS, "scan_"):
        cache.set(key, value)

    def dc_keys() -> int:
        assert len([k for k in cache.iterkeys() if k.startswith("scan_")]) == SCAN_KEYS
        return 1

    extra = point_workloads(cache.get, cache.set, keys, value, Sizes()) | {f"keys() of {SCAN_KEYS:,}": dc_keys}
    rows = []
    for name, contenders in workloads:
        if name in extra:
            contenders = {**contenders, "diskcache": extra[name]}
        result = measure(contenders, rounds)
        result.setdefault("diskcache", float("nan"))
        rows.append((name, result))
    print_table(
        f"SQLite (WAL, synchronous=NORMAL): ComponentStorage vs raw sqlite3 and diskcache, {ops} ops/round",
        rows,
        "ours",
        ["raw", "diskcache"],
    )
    manager.close()
    raw.close()
    cache.close()


def bench_postgresql(url: str, ops: int, rounds: int) -> None:
    prefix = f"bench{os.getpid()}_"
    manager, store = open_ours(url, {"table_prefix": prefix})
    raw = connect_postgresql(url)
    table = f"{prefix}raw_kv"
    raw.execute(f'CREATE TABLE {table} (ns TEXT COLLATE "C", k BYTEA, v BYTEA NOT NULL, PRIMARY KEY (ns, k))')
    cursor = raw.cursor(binary=True)
    upsert = f"INSERT INTO {table} (ns, k, v) VALUES (%s, %s, %s) ON CONFLICT (ns, k) DO UPDATE SET v = EXCLUDED.v"

    def raw_get(keys: list[str]) -> None:
        for key in keys:
            cursor.execute(f"SELECT v FROM {table} WHERE ns = %s AND k = %s", (NS, key.encode()))
            cursor.fetchone()

    def raw_set(keys: list[str], value: bytes) -> None:
        for key in keys:
            cursor.execute(upsert, (NS, key.encode(), value))

    def raw_batch(keys: list[str], value: bytes) -> None:
        with raw.transaction():
            cursor.executemany(upsert, [(NS, k.encode(), value) for k in keys])

    def raw_keys(prefix_: str) -> list[str]:
        start = prefix_.encode()
        end = start[:-1] + bytes([start[-1] + 1])
        cursor.execute(f"SELECT k FROM {table} WHERE ns = %s AND k >= %s AND k < %s ORDER BY k", (NS, start, end))
        return [k.decode() for (k,) in cursor.fetchall()]

    try:
        for start in range(0, SCAN_KEYS, BATCH):
            raw_batch(keyset(SCAN_KEYS, "scan_")[start : start + BATCH], b"x" * 64)
        for start in range(0, ops, BATCH):
            raw_batch(keyset(ops)[start : start + BATCH], b"x" * 64)
        raw.execute(f"ANALYZE {table}")
        workloads = common_workloads(store, ops, raw_get, raw_set, raw_batch, raw_keys)
        rows = [(name, measure(contenders, rounds)) for name, contenders in workloads]
        print_table(
            f"PostgreSQL: ComponentStorage vs raw psycopg 3 (autocommit), {ops} ops/round", rows, "ours", ["raw"]
        )
    finally:
        manager.close()
        raw.execute(f"DROP TABLE IF EXISTS {table}")
        drop_store(raw, prefix)
        raw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=3000, help="operations per round for SQLite")
    parser.add_argument("--pg-ops", type=int, default=1000, help="operations per round for PostgreSQL")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--postgresql", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-postgresql", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        bench_sqlite(args.ops, args.rounds, Path(directory))
    if not args.no_postgresql:
        bench_postgresql(args.postgresql, args.pg_ops, args.rounds)


if __name__ == "__main__":
    main()
