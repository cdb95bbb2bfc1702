"""What the SQL backend promises beyond the conformance suite, on the selected engine."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airssys_storage_sql import SQLBackend, SQLOptions
from airssys_storage_sql.backend import SINGLE, parse_url, redact
from sqlsupport import Server, commit, run_threads

from airssys_storage import (
    Access,
    ConfigurationError,
    InternalError,
    InvalidKey,
    Manifest,
    PluginRegistry,
    QuotaExceeded,
    StorageManager,
    StorageSettings,
)
from airssys_storage.planner import Write, WriteKind

MiB = 1024 * 1024
OpenBackend = Callable[..., Any]


# -- URLs, options, registration ---------------------------------------------------


def test_entry_point_registers_the_backend_for_every_scheme() -> None:
    registry = PluginRegistry.load()
    for url in (
        "sqlite:///x.db",
        "sqlite://",
        "postgresql://u@h/db",
        "postgresql+psycopg://u@h/db",
        "postgres://u@h/db",
        "mysql+pymysql://u@h/db",
        "mariadb://u@h/db",
    ):
        assert registry.backend_for_url(url) is SQLBackend


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("mysql://u@h/db", "mysql+pymysql://u@h/db"),
        ("mariadb://u@h/db", "mariadb+pymysql://u@h/db"),
        ("sqlite:///rel.db", "sqlite:///rel.db"),
        ("sqlite+pysqlite:////abs.db", "sqlite:////abs.db"),
    ],
)
def test_urls_get_the_driver_the_fast_path_is_written_for(url: str, expected: str) -> None:
    assert parse_url(url)[0].render_as_string(hide_password=False) == expected


def test_other_drivers_are_refused_with_the_supported_spelling() -> None:
    with pytest.raises(ConfigurationError, match=r"postgresql\+psycopg://"):
        SQLBackend.open("postgresql+psycopg2://u@h/db", {})
    with pytest.raises(ConfigurationError, match=r"mysql\+pymysql://"):
        SQLBackend.open("mysql+mysqldb://u@h/db", {})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tablE_prefix": "x"}, r"has no option 'tablE_prefix' \(did you mean 'table_prefix'\?\)"),
        ({"table_prefix": "Bad-Prefix"}, "table_prefix"),
        ({"table_prefix": "x" * 41}, "table_prefix"),
        ({"pool_size": 0}, "pool_size"),
        ({"pool_size": True}, "pool_size"),
        ({"lock_timeout": -1}, "lock_timeout"),
        # below 1 ms rounded to 0, which PostgreSQL reads as "no timeout" and SQLite as "do not wait"
        ({"lock_timeout": 1e-4}, r"lock_timeout=0\.0001: input should be greater than or equal to 0\.001"),
        # past PostgreSQL's lock_timeout (2**31-1 ms) and MariaDB's innodb_lock_wait_timeout
        ({"lock_timeout": 1e12}, r"lock_timeout=1000000000000\.0: input should be less than or equal to 2147483\.647"),
        (
            {"connect_timeout": 1e12},
            r"connect_timeout=1000000000000\.0: input should be less than or equal to 31536000",
        ),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"synchronous": "OFF"}, "synchronous"),
        ({"connect_args": "sslmode=require"}, "connect_args"),
    ],
)
def test_invalid_options_are_configuration_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SQLBackend.open("sqlite://", options)


@pytest.mark.parametrize(
    ("seconds", "ms", "whole_seconds"), [(0.001, 1, 1), (0.0011, 2, 1), (0.007, 7, 1), (1.0, 1000, 1), (1.2, 1200, 2)]
)
def test_time_options_round_up_never_to_zero(seconds: float, ms: int, whole_seconds: int) -> None:
    """Whole units for the engines are rounded up: a timeout never becomes 0 ("no timeout") nor shorter."""
    options = SQLOptions(lock_timeout=seconds, connect_timeout=seconds)
    assert (options.lock_timeout_ms, options.lock_timeout_s, options.connect_timeout_s) == (
        ms,
        whole_seconds,
        whole_seconds,
    )


@pytest.mark.parametrize("connect_args", [{"bogus": "hunter2"}, {"bogus": 1, "another": ["hunter2"]}])
def test_connect_args_the_driver_refuses_are_configuration_errors(
    store_url: str, store_options: dict[str, Any], connect_args: dict[str, Any]
) -> None:
    """A misspelt connect() argument names connect_args and the name, never a value (it may be a password)."""
    with pytest.raises(ConfigurationError, match=r"backend_options\.connect_args\.(bogus|another): ") as info:
        SQLBackend.open(store_url, {**store_options, "connect_args": connect_args})
    assert "hunter2" not in info.value.message and info.value.code == "invalid-config"


@pytest.mark.parametrize("connect_args", ["password=hunter2", ["hunter2"], 5])
def test_connect_args_that_are_no_table_are_not_echoed(connect_args: object) -> None:
    with pytest.raises(ConfigurationError, match=r"backend_options\.connect_args \(a \w+\): ") as info:
        SQLBackend.open("sqlite://", {"connect_args": connect_args})
    assert "hunter2" not in info.value.message


@pytest.mark.parametrize("query", ["timeout=5", "mode=ro", "mode=memory", "journal_mode=WAL&uri=false"])
def test_sqlite_url_parameters_nothing_reads_are_refused(tmp_path: Path, query: str) -> None:
    """A query parameter SQLAlchemy would drop with only a warning is a configuration error naming it."""
    with pytest.raises(ConfigurationError, match="nothing reads") as info:
        SQLBackend.open(f"sqlite:///{tmp_path}/x.db?{query}", {})
    assert repr(query.split("=", 1)[0].replace("%zz", "%zz")) in info.value.message
    assert not (tmp_path / "x.db").exists()  # refused before anything was created


def test_sqlite_uri_parameters_and_memory_mode_are_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """uri=true passes SQLite URI parameters through; mode=memory&uri=true is an in-memory database."""
    SQLBackend.open(f"sqlite:///file:{tmp_path}/x.db?cache=private&uri=true", {}).close()
    assert [path.name for path in tmp_path.iterdir()] == ["x.db"]
    monkeypatch.chdir(tmp_path)
    SQLBackend.open("sqlite:///file:shared?mode=memory&uri=true", {}).close()
    assert not (tmp_path / "shared").exists()


def test_sqlite_uri_parameters_without_a_file_uri_are_refused(tmp_path: Path) -> None:
    """uri=true on a plain path would make the parameters part of the file name: refused."""
    with pytest.raises(ConfigurationError, match="needs a file: URI"):
        SQLBackend.open(f"sqlite:///{tmp_path}/x.db?cache=private&uri=true", {})
    assert list(tmp_path.iterdir()) == []


def test_sqlite_shared_cache_is_refused_with_the_reason(tmp_path: Path) -> None:
    """cache=shared made every contended call fail at once with a message claiming a 10 s wait: refused at open."""
    with pytest.raises(ConfigurationError, match="cache=shared"):
        SQLBackend.open(f"sqlite:///file:{tmp_path}/x.db?cache=shared&uri=true", {})
    assert list(tmp_path.iterdir()) == []


def test_synchronous_is_a_sqlite_option() -> None:
    with pytest.raises(ConfigurationError, match="SQLite only"):
        SQLBackend.open("postgresql://u@127.0.0.1:1/db", {"synchronous": "FULL"})


def test_passwords_are_redacted() -> None:
    assert redact("postgresql://user:s3cret@host/db") == "postgresql://user:***@host/db"


def test_unreachable_server_is_an_internal_error_naming_it() -> None:
    with pytest.raises(InternalError, match=r"cannot connect to PostgreSQL at 127\.0\.0\.1:1/db"):
        SQLBackend.open("postgresql://u@127.0.0.1:1/db", {"connect_timeout": 2})


# -- schema ---------------------------------------------------------------------------


def _scheme_url(store_url: str, server: Server | None, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/fresh.sqlite3" if server is None else store_url


def test_first_open_creates_tables_and_version_row(
    store_url: str, server: Server | None, fresh_prefix: str, tmp_path: Path
) -> None:
    url = _scheme_url(store_url, server, tmp_path)
    backend = SQLBackend.open(url, {"table_prefix": fresh_prefix})
    try:
        rows = backend._run(
            "test", lambda item: backend._fetchall(item, f"SELECT name, value FROM {fresh_prefix}meta", ())
        )
        assert [tuple(row) for row in rows] == [("schema_version", "2")]
        backend.put_one("a", b"k", b"v", None)
    finally:
        backend.close()
    again = SQLBackend.open(url, {"table_prefix": fresh_prefix})  # reopening keeps the data
    try:
        assert again.get("a", b"k") == b"v"
    finally:
        again.close()


def test_concurrent_first_opens_take_turns(
    store_url: str, server: Server | None, fresh_prefix: str, tmp_path: Path
) -> None:
    url = _scheme_url(store_url, server, tmp_path)
    barrier = threading.Barrier(6)

    def open_and_write(index: int) -> None:
        barrier.wait()
        backend = SQLBackend.open(url, {"table_prefix": fresh_prefix})
        try:
            backend.put_one("ns", b"k%d" % index, b"v", None)
        finally:
            backend.close()

    assert run_threads(open_and_write, 6, timeout=60) == []
    backend = SQLBackend.open(url, {"table_prefix": fresh_prefix})
    try:
        assert backend.usage("ns").keys == 6
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("stored", "advice"), [("3", "upgrade airssys-storage-sql"), ("banana", "another table_prefix")]
)
def test_unknown_schema_version_is_refused(
    store_url: str, server: Server | None, fresh_prefix: str, tmp_path: Path, stored: str, advice: str
) -> None:
    url = _scheme_url(store_url, server, tmp_path)
    SQLBackend.open(url, {"table_prefix": fresh_prefix}).close()
    backend = SQLBackend.open(url, {"table_prefix": fresh_prefix})
    sql = f"UPDATE {fresh_prefix}meta SET value = '{stored}' WHERE name = 'schema_version'"
    backend._run("test", lambda item: backend._fetchall(item, sql, ()) if server is None else item.execute(sql))
    backend.close()
    with pytest.raises(ConfigurationError, match=advice) as caught:
        SQLBackend.open(url, {"table_prefix": fresh_prefix})
    assert f"schema version {stored!r}" in str(caught.value) or f"schema version {int(stored)!r}" in str(caught.value)


def test_column_types_are_bytewise_and_hold_a_mebibyte(sql_engine: str, open_backend: OpenBackend) -> None:
    from sqlalchemy import create_engine, inspect

    backend = open_backend()
    sa_engine = backend._sa_engine
    if sql_engine == "sqlite" and not hasattr(sa_engine, "connect"):  # a file opened without SQLAlchemy
        sa_engine = create_engine(f"sqlite:///{sa_engine.database}")
    columns = {c["name"]: c for c in inspect(sa_engine).get_columns(backend._tables.data)}
    types = {name: str(column["type"]).upper() for name, column in columns.items()}
    if sql_engine == "sqlite":
        assert types["k"] == "BLOB"
        assert types["v"] == "BLOB"
    elif sql_engine == "postgresql":
        assert types["k"] == "BYTEA"
        assert types["v"] == "BYTEA"
        assert columns["ns"]["type"].collation == "C"
    else:
        assert types["k"] == "VARBINARY(256)"
        assert types["v"] == "LONGBLOB"
        assert types["ns"].startswith("VARBINARY")
    if sql_engine == "sqlite":  # a rowid table; the key in a unique index (see _schema)
        indexes = inspect(sa_engine).get_indexes(backend._tables.data)
        assert [(i["column_names"], bool(i["unique"])) for i in indexes] == [(["ns", "k"], True)]
    else:
        pk = inspect(sa_engine).get_pk_constraint(backend._tables.data)
        assert pk["constrained_columns"] == ["ns", "k"]


def test_mebibyte_values_in_a_batch(open_backend: OpenBackend) -> None:
    backend = open_backend()
    values = [bytes([i]) * MiB for i in range(8)]
    commit(backend, "big", [(b"k%d" % i, value) for i, value in enumerate(values)], 100 * MiB)
    assert backend.get_many("big", [b"k%d" % i for i in range(8)]) == values
    assert backend.usage("big").bytes == 8 * (MiB + 2)


def test_a_batch_of_large_random_values_round_trips_and_is_charged_exactly(
    sql_engine: str, open_backend: OpenBackend
) -> None:
    """100 values of 64 KiB with every byte value, overwritten by other bytes of the same size (issue 9, 8)."""
    import random

    backend = open_backend()
    rng = random.Random(8)
    keys = [b"large-%03d" % i for i in range(100)]
    for _ in range(2):  # the second batch overwrites every value with different bytes of the same size
        values = [rng.randbytes(64 * 1024) for _ in keys]
        commit(backend, "large", list(zip(keys, values, strict=True)), 100 * MiB)
        assert backend.get_many("large", keys) == values
        assert backend.usage("large").bytes == sum(len(k) + 64 * 1024 for k in keys)


def test_a_batch_carries_empty_values_every_byte_and_deletes_of_missing_keys(open_backend: OpenBackend) -> None:
    """Batch arrays hold empty elements and any byte; an all-delete batch sends empty put arrays."""
    backend = open_backend()
    changes = [(b"e", b""), (b"f", bytes(range(256))), (b"\x00\xff", b"\\'\""), (b"missing", None)]
    assert commit(backend, "arrays", changes, None) == 0
    assert backend.get_many("arrays", [b"e", b"f", b"\x00\xff", b"missing"]) == [b"", bytes(range(256)), b"\\'\"", None]
    assert commit(backend, "arrays", [(b"e", None), (b"f", None)], None) == 2
    assert backend.get_many("arrays", [b"e", b"f", b"\x00\xff"]) == [None, None, b"\\'\""]
    assert backend.usage("arrays").keys == 1


def test_no_sql_statement_uses_like(open_backend: OpenBackend) -> None:
    backend = open_backend()
    texts = [*vars(backend).values(), *vars(backend._w).values(), *backend._w.range.values()]
    statements = [value for value in texts if isinstance(value, str) and "SELECT" in value.upper()]
    assert len(statements) >= 5
    assert not [sql for sql in statements if " LIKE " in sql.upper()]


# -- query plans ----------------------------------------------------------------------


def _plans(backend: Any, sql_engine: str, server: Server | None) -> dict[str, str]:
    """The plan text of get, prefix keys and range items, as the backend sends them."""
    queries = {
        "get": (backend._q_get, ("plan", b"key-0150")),
        "keys": (backend._q_keys_to, ("plan", b"key-01", b"key-02", 0, 100)),
        "items": (backend._q_items, ("plan", b"key-0290", 0, 100)),
    }
    plans = {}
    for name, (sql, params) in queries.items():
        if sql_engine == "sqlite":
            rows = backend._run(
                "plan", lambda c, sql=sql, params=params: c.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            )
            plans[name] = " | ".join(row[-1] for row in rows)
        elif sql_engine == "postgresql":

            def explain(cursor: Any, sql: str = sql, params: Any = params) -> str:
                cursor.execute("EXPLAIN " + sql, params)
                return "\n".join(row[0] for row in cursor.fetchall())

            plans[name] = backend._run("plan", explain)
        else:

            def explain_mariadb(cursor: Any, sql: str = sql, params: Any = params) -> str:
                cursor.execute("EXPLAIN " + sql, params)
                names = [d[0] for d in cursor.description]
                return json.dumps([dict(zip(names, row, strict=True)) for row in cursor.fetchall()], default=str)

            plans[name] = backend._run("plan", explain_mariadb)
    return plans


def test_reads_and_prefix_scans_use_the_primary_key(
    sql_engine: str, server: Server | None, open_backend: OpenBackend
) -> None:
    backend = open_backend()
    for namespace in ("pla", "plan", "plan-b", "planz"):  # neighbours on both sides
        for start in range(0, 300, 100):
            commit(backend, namespace, [(b"key-%04d" % i, b"v" * 20) for i in range(start, start + 100)], None)
    if server is not None:
        server.execute(f"ANALYZE {'TABLE ' if sql_engine == 'mariadb' else ''}{backend._tables.data}")
    plans = _plans(backend, sql_engine, server)
    for name, plan in plans.items():
        if sql_engine == "sqlite":
            assert f"USING INDEX {backend._tables.data}_key (ns=? AND k" in plan and "SCAN" not in plan, (name, plan)
        elif sql_engine == "postgresql":
            # An index scan, or on small ranges a bitmap scan of the same index plus a sort.
            assert f"Index Scan using {backend._tables.data}_pkey" in plan or (
                f"Bitmap Index Scan on {backend._tables.data}_pkey" in plan
            ), (name, plan)
            assert "Index Cond: (((ns)::text = 'plan'::text) AND (k" in plan, (name, plan)
            assert "Seq Scan" not in plan, (name, plan)
        else:
            rows = json.loads(plan)
            assert rows[0]["key"] == "PRIMARY" and rows[0]["type"] in ("const", "ref", "range", "eq_ref"), (name, plan)
            assert "filesort" not in (rows[0].get("Extra") or ""), (name, plan)


def test_backend_instances_keep_sharing_their_attribute_keys(open_backend: OpenBackend) -> None:
    # CPython 3.11 stops sharing an instance's dict keys with its class at 30
    # attributes; every attribute load on the hot paths then gets slower.
    backend = open_backend()
    commit(backend, "ns", [(b"a", b"1"), (b"b", None)], None)
    backend.put_one("ns", b"c", b"2", 10)
    assert backend.get_many("ns", [b"a", b"c"]) == [b"1", b"2"]
    backend.clear("ns")
    assert len(vars(backend)) < 30


# -- connections ------------------------------------------------------------------------


def test_threads_share_one_backend_with_exact_counters(open_backend: OpenBackend) -> None:
    backend = open_backend(pool_size=4)

    def work(index: int) -> None:
        for i in range(60):
            backend.put_one(f"t{index % 3}", b"%d-%d" % (index, i), b"x" * (i % 7), None)
            backend.get(f"t{index % 3}", b"%d-%d" % (index, i))

    assert run_threads(work, 8, timeout=120) == []
    for namespace in ("t0", "t1", "t2"):
        pairs = backend.items(namespace, b"", None, 10_000)
        assert backend.usage(namespace).bytes == sum(len(k) + len(v) for k, v in pairs)
        assert backend.usage(namespace).keys == len(pairs)
    assert backend.stats()["connections"] <= 4


FIRST_WRITERS = 6
FIRST_WRITE_ROUNDS = 25


def _assert_counter_is_the_sum(backend: Any, namespace: str) -> None:
    pairs = backend.items(namespace, b"", None, 10_000)
    usage = backend.usage(namespace)
    assert (usage.bytes, usage.keys) == (sum(len(k) + len(v) for k, v in pairs), len(pairs))


def _first_writes(backend: Any, namespace: str, limit: int | None, batch: bool) -> list[BaseException]:
    """FIRST_WRITERS threads write to *namespace* at the same moment; what they raised."""
    barrier = threading.Barrier(FIRST_WRITERS, timeout=60)

    def write(index: int) -> None:
        barrier.wait()
        if batch:
            changes = [(b"a%d" % index, b"v"), (b"b%d" % index, None), (b"c%d" % index, b"vv")]
            assert commit(backend, namespace, changes, limit) == 0
        else:
            assert backend.put_one(namespace, b"k%d" % index, b"v", limit) == 1  # a new key's first version

    return run_threads(write, FIRST_WRITERS, timeout=60)


@pytest.mark.parametrize("batch", [False, True], ids=["put_one", "apply"])
@pytest.mark.parametrize("limit", [None, MiB], ids=["unlimited", "generous-limit"])
def test_simultaneous_first_writes_to_a_namespace_are_all_accepted(
    open_backend: OpenBackend, limit: int | None, batch: bool
) -> None:
    # Each round, several connections make the first write to a fresh namespace at once:
    # none may be refused (the namespace has no usage row yet when they start).
    backend = open_backend(pool_size=FIRST_WRITERS)
    for round_ in range(FIRST_WRITE_ROUNDS):
        namespace = f"first{round_}"
        assert _first_writes(backend, namespace, limit, batch) == [], f"round {round_}"
        _assert_counter_is_the_sum(backend, namespace)
        assert backend.usage(namespace).keys == FIRST_WRITERS * (2 if batch else 1)


@pytest.mark.engines("postgresql")
@pytest.mark.parametrize("limit", [None, MiB], ids=["unlimited", "generous-limit"])
def test_postgresql_write_older_than_the_usage_row_is_charged(
    server: Server, open_backend: OpenBackend, store_options: dict[str, Any], limit: int | None
) -> None:
    # Deterministic form of the race above: a write's statement takes its snapshot, waits
    # for a row lock, and meanwhile another writer creates the namespace's usage row. The
    # usage row is not in the waiting statement's snapshot; the write must still be charged.
    from sqlalchemy import text

    data = f"{store_options['table_prefix']}data"
    backend, other = open_backend(), open_backend()
    with server.admin.connect().execution_options(isolation_level="READ COMMITTED") as blocker:
        blocker.begin()
        blocker_pid = blocker.execute(text("SELECT pg_backend_pid()")).scalar()
        blocker.execute(text(f"INSERT INTO {data} (ns, k, v) VALUES ('late', :k, '')"), {"k": b"k"})
        errors: list[BaseException] = []

        def write() -> None:
            try:
                backend.put_one("late", b"k", b"v", limit)
            except BaseException as exc:  # asserted below
                errors.append(exc)

        waiting = threading.Thread(target=write)
        waiting.start()
        blocked = "SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"
        deadline = time.monotonic() + 30
        while not server.execute(blocked, {"pid": blocker_pid})[0][0]:
            assert time.monotonic() < deadline, "the write never waited for the blocker's row"
            time.sleep(0.01)
        other.put_one("late", b"j", b"w", limit)  # creates the usage row after the write's snapshot
        blocker.rollback()
    waiting.join(60)
    assert errors == []
    assert backend.items("late", b"", None, 10) == [(b"j", b"w"), (b"k", b"v")]
    _assert_counter_is_the_sum(backend, "late")


@pytest.mark.parametrize("batch", [False, True], ids=["put_one", "apply"])
def test_first_write_larger_than_the_limit_is_refused_exactly(open_backend: OpenBackend, batch: bool) -> None:
    # PostgreSQL: no usage row to charge and none to report; the backend creates it and
    # the statement then refuses against it.
    backend = open_backend()
    with pytest.raises(QuotaExceeded, match="needs 11 more bytes, 0 of 10") as caught:
        if batch:
            commit(backend, "big", [(b"k", b"x" * 5), (b"j", b"x" * 4)], 10)
        else:
            backend.put_one("big", b"k", b"x" * 10, 10)
    assert caught.value.code == "quota-exceeded"
    assert backend.items("big", b"", None, 10) == []
    assert backend.usage("big").bytes == 0
    backend.put_one("big", b"k", b"x" * 9, 10)  # exactly the limit
    _assert_counter_is_the_sum(backend, "big")


@pytest.mark.engines("postgresql")
def test_postgresql_refusal_without_a_limit_names_its_cause(open_backend: OpenBackend) -> None:
    # Cannot happen through the write statements (without a limit the guard always passes);
    # should it ever, it is an internal error that says so, not a quota error.
    backend = open_backend()
    backend.put_one("ns", b"k", b"v", None)
    refuse = f"SELECT {backend._d._refuse_function}(%(ns)s, 5, 1)"
    with pytest.raises(InternalError, match=r"quota guard of the set statement failed unexpectedly \(refused a write"):
        backend._use("set", SINGLE, backend._d.statement, refuse, {"ns": "ns"}, None)
    assert backend.get("ns", b"k") == b"v"  # the connection is still usable


def test_busy_pool_times_out_with_a_typed_error(open_backend: OpenBackend) -> None:
    backend = open_backend(pool_size=1, pool_timeout=0.2)
    backend.get("ns", b"k")
    held = backend._idle.pop()  # another thread's operation, frozen
    try:
        with pytest.raises(InternalError, match="stayed busy"):
            backend.get("ns", b"k")
    finally:
        backend._release(held)
    assert backend.get("ns", b"k") is None


def test_closed_backend_raises_internal_error(open_backend: OpenBackend) -> None:
    backend = open_backend()
    backend.close()
    with pytest.raises(InternalError, match="closed"):
        backend.get("ns", b"k")


def test_forked_child_uses_its_own_connections(open_backend: OpenBackend) -> None:
    import multiprocessing

    backend = open_backend()
    backend.put_one("fork", b"parent-0", b"p", None)
    parents_connections = list(backend._idle)

    def child() -> None:
        # Runs in the forked child, at the same time as the parent's writes below.
        for i in range(150):
            backend.put_one("fork", b"child-%d" % i, b"c", None)
            assert backend.get("fork", b"child-%d" % i) == b"c"
        assert not any(item in parents_connections for item in backend._idle)

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    for i in range(1, 151):
        backend.put_one("fork", b"parent-%d" % i, b"p", None)
        assert backend.get("fork", b"parent-%d" % i) == b"p"
    process.join(120)
    assert process.exitcode == 0
    assert backend._idle[: len(parents_connections)] == parents_connections  # the parent kept its sessions
    usage = backend.usage("fork")
    assert (usage.keys, usage.bytes) == (301, sum(len(k) + 1 for k, _ in backend.items("fork", b"", None, 1000)))


@pytest.mark.engines("sqlite")
def test_a_child_forked_while_the_in_memory_database_is_in_use_is_refused_with_a_fork_message() -> None:
    """CI trial: a thread kept the one in-memory connection past pool_timeout while the parent forked; the child
    inherited it busy and failed after 30 s with "raise pool_size". It is refused at once, saying why."""
    import multiprocessing

    backend = SQLBackend.open("sqlite://", {"pool_timeout": 0.2})
    backend.put_one("fork", b"k", b"v", None)
    inside, release = threading.Event(), threading.Event()

    def hold(item: Any) -> None:  # a parent thread inside the connection for the whole fork
        inside.set()
        release.wait(10)

    holder = threading.Thread(target=backend._use, args=("hold", SINGLE, hold))
    holder.start()
    assert inside.wait(10)

    def child() -> None:
        started = time.monotonic()
        try:
            backend.get("fork", b"k")
        except InternalError as exc:
            assert "forked" in str(exc) and "open the store in the child" in str(exc), str(exc)
            assert time.monotonic() - started < 5
        else:
            raise AssertionError("the child used a copy taken while a parent thread was inside the connection")

    try:
        process = multiprocessing.get_context("fork").Process(target=child)
        process.start()
        process.join(60)
        assert process.exitcode == 0
    finally:
        release.set()
        holder.join(10)
    assert backend.get("fork", b"k") == b"v"  # the parent goes on
    backend.close()


def _kill_connections(server: Server, backend: Any) -> int:
    """Terminate every connection of *backend* from the server side; returns how many."""
    killed = 0
    for cursor in list(backend._idle):
        if server.engine == "postgresql":
            server.execute("SELECT pg_terminate_backend(:pid)", {"pid": cursor.connection.info.backend_pid})
        else:
            server.execute(f"KILL CONNECTION {int(cursor.connection.thread_id())}")
        killed += 1
    return killed


@pytest.mark.engines("postgresql", "mariadb")
def test_lost_connection_is_reported_then_replaced(server: Server, open_backend: OpenBackend) -> None:
    backend = open_backend()
    backend.put_one("ns", b"k", b"v1", None)
    assert _kill_connections(server, backend) == 1
    # A read finds the dead connection and repeats itself on a new one.
    assert backend.get("ns", b"k") == b"v1"
    _kill_connections(server, backend)
    # A write may not be repeated blindly: it fails, naming the cause ...
    with pytest.raises(InternalError, match=f"lost the connection to {server.label}"):
        backend.put_one("ns", b"k", b"v2", None)
    # ... and the next one runs on a fresh connection.
    backend.put_one("ns", b"k", b"v3", None)
    assert backend.get("ns", b"k") == b"v3"
    assert backend.usage("ns").bytes == 3


def test_dropped_table_surfaces_as_internal_error(open_backend: OpenBackend, fresh_prefix: str) -> None:
    backend = open_backend(table_prefix=fresh_prefix)
    other = open_backend(table_prefix=fresh_prefix)
    other._run("drop", lambda item: item.execute(f"DROP TABLE {other._tables.data}"))
    with pytest.raises(InternalError, match=backend.where.split(" at ")[0].split(" database")[0]):
        backend.get("ns", b"k")
    with pytest.raises(InternalError):
        backend.put_one("ns", b"k", b"v", None)


@pytest.mark.engines("mariadb")
def test_mariadb_sessions_are_strict_and_read_committed(open_backend: OpenBackend) -> None:
    backend = open_backend()
    backend.get("ns", b"k")

    def session(cursor: Any) -> tuple[str, str]:
        cursor.execute("SELECT @@SESSION.sql_mode, @@SESSION.tx_isolation")
        return cursor.fetchone()  # type: ignore[no-any-return]

    sql_mode, isolation = backend._run("test", session)
    assert "STRICT_ALL_TABLES" in sql_mode
    assert isolation == "READ-COMMITTED"


@pytest.mark.engines("mariadb")
def test_mariadb_deadlock_is_rolled_back_and_retried(
    open_backend: OpenBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pymysql

    backend = open_backend()
    apply_in = backend._apply_in
    attempts: list[int] = []

    def deadlock_once(item: Any, namespace: str, writes: Any, limit: int | None) -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            apply_in(item, namespace, [Write(b"partial", WriteKind.PUT, b"x")], limit)  # work the rollback must undo
            raise pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock")
        return apply_in(item, namespace, writes, limit)

    monkeypatch.setattr(backend, "_apply_in", deadlock_once)
    assert commit(backend, "ns", [(b"k", b"v")], None) == 0
    assert len(attempts) == 2
    assert backend.items("ns", b"", None, 10) == [(b"k", b"v")]
    assert (backend.usage("ns").bytes, backend.usage("ns").keys) == (2, 1)
    assert backend.stats()["retries"] == {"conflict": 1}


def _client_charset(cursor: Any) -> str:
    cursor.execute("SELECT @@SESSION.character_set_client")
    return str(cursor.fetchone()[0])


@pytest.mark.engines("mariadb")
def test_mariadb_batch_values_sent_as_bytes_round_trip_and_leave_the_session_as_text(open_backend: OpenBackend) -> None:
    """Batch values travel as escaped bytes read with a binary client character set (issue 9, 8).

    Lead bytes of UTF-8 sequences before a quote or backslash must not swallow
    it, and escapes must not be undone twice; the session is back to utf8mb4
    after the commit.
    """
    backend = open_backend()
    values = [
        b"\xe3'",
        b"\xf0\x9f\x98'",
        b"\xc3\\",
        b"\\'",
        b"'\\",
        b'\\0\x00\\n\n\r\x1a"',
        b"\xbf\\'--",
        bytes(range(256)),
        bytes(range(255, -1, -1)) * 3,
        b"",
        "café 文字".encode(),
    ]
    keys = [b"k%02d" % i for i in range(len(values))]
    commit(backend, "bytes", list(zip(keys, values, strict=True)), None)
    assert backend.get_many("bytes", keys) == values
    assert backend.usage("bytes").bytes == sum(len(k) + len(v) for k, v in zip(keys, values, strict=True))
    assert backend._run("test", _client_charset) == "utf8mb4"
    assert not backend._d._binary


@pytest.mark.engines("mariadb")
def test_mariadb_failed_binary_batch_gives_back_a_text_session(open_backend: OpenBackend) -> None:
    """A commit that fails after its binary statements went out leaves the connection reading text again."""
    from airssys_storage_sql._mariadb import _Writes

    backend = open_backend()
    dialect = backend._d

    def fail_midway(cursor: Any) -> None:
        writes = _Writes(cursor, dialect._binary)
        writes.add(b"DO LENGTH(_binary'\\'x')")
        writes.send()  # switched to binary, not yet back
        assert _client_charset(cursor) == "binary"
        writes.add("SELECT * FROM no_such_table_of_this_test")
        try:
            writes.send("COMMIT")
        finally:
            dialect.rollback(cursor)

    with pytest.raises(Exception, match="no_such_table_of_this_test"):
        backend._run("test", lambda cursor: (dialect.begin(cursor), fail_midway(cursor)))
    assert backend._run("test", _client_charset) == "utf8mb4"
    assert not dialect._binary


@pytest.mark.engines("mariadb")
def test_mariadb_key_longer_than_its_column_is_an_invalid_key(open_backend: OpenBackend) -> None:
    backend = open_backend()
    with pytest.raises(InvalidKey, match="256 bytes"):
        backend.put_one("ns", b"k" * 257, b"v", None)
    assert backend.usage("ns").keys == 0


# -- SQLite specifics ---------------------------------------------------------------------


@pytest.mark.engines("sqlite")
def test_sqlite_uses_wal_and_the_configured_synchronous(tmp_path: Path) -> None:
    for option, expected in (({}, 1), ({"synchronous": "full"}, 2)):
        backend = SQLBackend.open(f"sqlite:///{tmp_path}/s.db", option)
        try:
            modes = backend._run(
                "t",
                lambda c: (
                    c.execute("PRAGMA journal_mode").fetchone()[0],
                    c.execute("PRAGMA synchronous").fetchone()[0],
                ),
            )
        finally:
            backend.close()
        assert modes == ("wal", expected)


@pytest.mark.engines("sqlite")
def test_sqlite_writer_blocked_past_lock_timeout_gets_a_typed_error(tmp_path: Path) -> None:
    import sqlite3

    backend = SQLBackend.open(f"sqlite:///{tmp_path}/s.db", {"lock_timeout": 0.2})
    blocker = sqlite3.connect(f"{tmp_path}/s.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(InternalError, match="is locked"):
            backend.put_one("ns", b"k", b"v", None)
        assert backend.get("ns", b"k") is None  # WAL: readers are not blocked
        blocker.execute("ROLLBACK")
        backend.put_one("ns", b"k", b"v", None)
        assert backend.usage("ns").keys == 1
    finally:
        blocker.close()
        backend.close()


@pytest.mark.engines("sqlite")
def test_sqlite_memory_databases_are_private() -> None:
    first, second = SQLBackend.open("sqlite://", {}), SQLBackend.open("sqlite:///:memory:", {})
    try:
        first.put_one("ns", b"k", b"v", None)
        assert second.get("ns", b"k") is None
        assert first.capabilities.persistent is False
    finally:
        first.close()
        second.close()


_DEFAULT_URL_SCRIPT = """
import sys
from airssys_storage import Access, Manifest, StorageManager
with StorageManager.from_settings() as manager:
    store = manager.component(Manifest("app", Access.READ_WRITE))
    if sys.argv[1] == "write":
        store.set("greeting", b"hello from the last process")
    else:
        print(manager.settings.resolved_url)
        print(store.get("greeting").decode())
"""


@pytest.mark.engines("sqlite")
def test_default_url_is_a_sqlite_file_a_new_process_sees() -> None:
    # isolated_environment points XDG_DATA_HOME at a fresh directory.
    subprocess.run([sys.executable, "-c", _DEFAULT_URL_SCRIPT, "write"], check=True, timeout=60)
    out = subprocess.run(
        [sys.executable, "-c", _DEFAULT_URL_SCRIPT, "read"], check=True, timeout=60, capture_output=True, text=True
    ).stdout.splitlines()
    assert out[0].startswith("sqlite:///") and out[0].endswith("/airssys-storage/storage.sqlite3")
    assert out[1] == "hello from the last process"


def test_quota_error_through_the_manager(store_url: str, store_options: dict[str, Any]) -> None:
    settings = StorageSettings(url=store_url, backend_options=store_options)
    with StorageManager.from_settings(settings) as manager:
        store = manager.component(Manifest("q", Access.READ_WRITE, 100))
        store.set("a", b"x" * 90)
        with pytest.raises(QuotaExceeded, match="needs 10 more bytes, 91 of 100"):
            store.set("b", b"x" * 9)
        store.set("a", b"x" * 95)  # grows within the limit: 96 + 0
        assert store.size() == 96
