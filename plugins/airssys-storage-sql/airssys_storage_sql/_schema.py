"""Tables of the SQL backend, declared once with SQLAlchemy and compiled per dialect.

Four tables, all named ``<table_prefix><name>``:

``data``
    ``(ns, k) -> (v, ver, exp)``, primary key ``(ns, k)``. ``ver`` is the row's
    version and ``exp`` its expiry in milliseconds since the Unix epoch (NULL:
    none). Versions are unsigned 64-bit in the contract and stored in a signed
    ``BIGINT`` (SQLite ``INTEGER``) as they are: they start at 1 and grow by one
    per write, so the signed range (2**63 - 1) is never reached in practice, and
    a write that would pass it is an ``internal-error`` (:data:`MAX_STORED_VERSION`).
    That keeps ``ver + 1`` and ``max(floor, ver)`` plain integer SQL on every
    engine (``NUMERIC`` would cost every write). ``ns`` is the component id
    (ASCII, compared bytewise: ``COLLATE "C"`` on PostgreSQL, ``VARBINARY`` on
    MariaDB so no collation can fold or pad it). ``k`` is the key's UTF-8
    bytes in a binary column (BLOB / BYTEA / VARBINARY(256)), so order and
    equality are bytewise everywhere. ``v`` holds up to 1 MiB on every engine
    (LONGBLOB on MariaDB, where SQLAlchemy's LargeBinary is a 64 KiB BLOB).
    On SQLite and PostgreSQL a column ``replaced_len`` receives the
    length of the value an upsert replaces (``SET replaced_len =
    length(old v)``), so the upsert itself returns the old size and no
    separate read is needed; its stored value means nothing afterwards.

    SQLite layout: a rowid table with a ``UNIQUE`` index ``<prefix>data_key``
    on ``(ns, k)``, ``ver`` and ``exp`` stored before ``v``. Schema 1 kept the
    rows in a ``WITHOUT ROWID`` primary-key B-tree; there every lookup of a
    key compares whole records, so a row of 64 KiB or 1 MiB is read from its
    overflow pages even by ``has`` (1.9 ms for 1 MiB), and large rows slow the
    small ones beside them. Measured side by side with 64 B, 64 KiB and
    1 MiB values in one table (``benchmarks/bench_sql.py --large`` and the
    README): ``has`` 89x (64 KiB) and 324x (1 MiB) faster, ``get`` 2.9-5.7x,
    a set 1.5-2x; in a table of small values only, reads cost 6-12% more
    (two B-tree descents instead of one).
``usage``
    ``ns -> (used_bytes, key_count, floor)``: the counter row the quota guard
    updates in the same transaction as the data; ``floor`` is the highest
    version of any row removed from the namespace (see the planner).
``ops``
    ``(ns, op_id) -> (result, recorded_at)``: results of writes that carried an
    operation id (``recorded_at`` in ms), kept for ``op_retention_ms``; older
    ones are pruned by the next write that records one.
``meta``
    ``name -> value``; holds the ``schema_version`` row.

Schema versions: 1 had no ``ver``, ``exp``, ``floor`` or ``ops``; opening such a
store migrates it in place (:func:`migration_steps`), in one transaction
on SQLite and PostgreSQL, and step by step (each step checked, the version row
last) on MariaDB, whose DDL commits on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import MetaData
    from sqlalchemy.engine import Dialect

#: Bumped whenever the layout changes; a store written by a newer version is refused.
SCHEMA_VERSION = 2
#: The highest version a row can hold (the signed 64-bit ``BIGINT`` column).
MAX_STORED_VERSION = 2**63 - 1
#: Longest operation id in bytes (the core's limit).
MAX_OP_ID_BYTES = 256
#: Widest key the MariaDB key column holds (the core's default max_key_bytes).
MARIADB_MAX_KEY_BYTES = 256


@dataclass(frozen=True)
class Tables:
    """The table names of one store, for hand-written hot-path SQL."""

    data: str
    usage: str
    meta: str
    ops: str


def table_names(prefix: str) -> Tables:
    return Tables(f"{prefix}data", f"{prefix}usage", f"{prefix}meta", f"{prefix}ops")


def build_metadata(prefix: str, engine: str) -> MetaData:
    """The three tables for *engine* (``"sqlite"``, ``"postgresql"`` or ``"mariadb"``)."""
    # Imported here: loading the plugin must not import SQLAlchemy, only opening a store.
    from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, MetaData, String, Table, text
    from sqlalchemy.dialects import mysql, postgresql

    names = table_names(prefix)
    metadata = MetaData()
    namespace = String(64).with_variant(postgresql.VARCHAR(64, collation="C"), "postgresql")
    namespace = namespace.with_variant(mysql.VARBINARY(64), "mysql", "mariadb")
    key = LargeBinary().with_variant(mysql.VARBINARY(MARIADB_MAX_KEY_BYTES), "mysql", "mariadb")
    value = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
    extra = [Column("replaced_len", Integer, nullable=True)] if engine in ("sqlite", "postgresql") else []
    innodb: dict[str, Any] = {"mysql_engine": "InnoDB", "mariadb_engine": "InnoDB"}
    clustered: dict[str, Any] = {"sqlite_with_rowid": False, **innodb}  # rows stored in primary-key order
    state = [
        Column("ver", BigInteger, nullable=False, server_default=text("1")),
        Column("exp", BigInteger, nullable=True),
    ]
    if engine == "sqlite":  # a rowid table, the key in a unique index, the value last (module docs)
        data = Table(
            names.data,
            metadata,
            Column("id", Integer, primary_key=True),
            Column("ns", namespace, nullable=False),
            Column("k", key, nullable=False),
            *state,
            *extra,
            Column("v", value, nullable=False),
        )
        Index(f"{names.data}_key", data.c.ns, data.c.k, unique=True)
    else:
        Table(
            names.data,
            metadata,
            Column("ns", namespace, primary_key=True),
            Column("k", key, primary_key=True),
            Column("v", value, nullable=False),
            *extra,
            *state,
            **clustered,
        )
    Table(
        names.usage,
        metadata,
        Column("ns", namespace, primary_key=True),
        Column("used_bytes", BigInteger, nullable=False),
        Column("key_count", BigInteger, nullable=False),
        Column("floor", BigInteger, nullable=False, server_default=text("0")),
        **clustered,
    )
    op_id = LargeBinary().with_variant(mysql.VARBINARY(MAX_OP_ID_BYTES), "mysql", "mariadb")
    ops = Table(
        names.ops,
        metadata,
        Column("ns", namespace, primary_key=True),
        Column("op_id", op_id, primary_key=True),
        Column("result", BigInteger, nullable=False),
        Column("recorded_at", BigInteger, nullable=False),
        **clustered,
    )
    Index(f"{names.ops}_age", ops.c.ns, ops.c.recorded_at)
    Table(
        names.meta,
        metadata,
        Column("name", String(64), primary_key=True),
        Column("value", String(255), nullable=False),
        **innodb,
        mysql_charset="utf8mb4",
        mariadb_charset="utf8mb4",
    )
    return metadata


def create_statements(prefix: str, engine: str, dialect: Dialect) -> tuple[str, list[str]]:
    """``CREATE TABLE IF NOT EXISTS`` compiled for *dialect*: the meta table's, and the others'.

    Schema creation runs the first, reads the version row, and runs the others
    only when there is none, so it never touches tables of another version.
    """
    names = table_names(prefix)
    metadata = build_metadata(prefix, engine)
    compiled = {table.name: _create(table, dialect) for table in metadata.sorted_tables}
    (create_meta,) = compiled.pop(names.meta)
    return create_meta, [statement for statements in compiled.values() for statement in statements]


def _create(table: Any, dialect: Dialect) -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` and ``CREATE INDEX IF NOT EXISTS`` of *table*."""
    from sqlalchemy.schema import CreateIndex, CreateTable

    statements = [str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)).strip()]
    statements += [str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect)) for index in table.indexes]
    return statements


def migration_steps(prefix: str, engine: str, dialect: Dialect) -> list[tuple[str, str, list[str]]]:
    """The steps from schema version 1 to 2: ``(table, column, statements)``.

    A step with a column is skipped when the table has that column already, so
    an interrupted MariaDB migration resumes; one with ``""`` creates a table
    or index ``IF NOT EXISTS``. Existing rows get version 1 and no expiry,
    counter rows floor 0. SQLite's data table is rebuilt in the new layout
    (module docs), the rows copied in key order; the servers add the columns.
    """
    names = table_names(prefix)
    metadata = build_metadata(prefix, engine)
    steps: list[tuple[str, str, list[str]]]
    if engine == "sqlite":
        rebuilt = f"{names.data}_v2"
        create_data, create_index = _create(metadata.tables[names.data], dialect)
        steps = [
            (
                names.data,
                "id",  # the rowid column only the new layout has
                [
                    create_data.replace(names.data, rebuilt, 1),
                    f"INSERT INTO {rebuilt} (ns, k, ver, exp, v) SELECT ns, k, 1, NULL, v FROM {names.data} "
                    "ORDER BY ns, k",
                    f"DROP TABLE {names.data}",
                    f"ALTER TABLE {rebuilt} RENAME TO {names.data}",
                    create_index,
                ],
            )
        ]
    else:
        steps = [
            (names.data, "ver", [f"ALTER TABLE {names.data} ADD COLUMN ver BIGINT NOT NULL DEFAULT 1"]),
            (names.data, "exp", [f"ALTER TABLE {names.data} ADD COLUMN exp BIGINT"]),
        ]
    big = "INTEGER" if engine == "sqlite" else "BIGINT"
    steps.append((names.usage, "floor", [f"ALTER TABLE {names.usage} ADD COLUMN floor {big} NOT NULL DEFAULT 0"]))
    steps.append((names.ops, "", _create(metadata.tables[names.ops], dialect)))
    return steps
