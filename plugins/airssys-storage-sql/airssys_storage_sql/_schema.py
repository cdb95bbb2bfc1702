"""Tables of the SQL backend, declared once with SQLAlchemy and compiled per dialect.

Three tables, all named ``<table_prefix><name>``:

``data``
    ``(ns, k) -> v``, primary key ``(ns, k)``. ``ns`` is the component id
    (ASCII, compared bytewise: ``COLLATE "C"`` on PostgreSQL, ``VARBINARY`` on
    MariaDB so no collation can fold or pad it). ``k`` is the key's UTF-8
    bytes in a binary column (BLOB / BYTEA / VARBINARY(256)), so order and
    equality are bytewise everywhere. ``v`` holds up to 1 MiB on every engine
    (LONGBLOB on MariaDB, where SQLAlchemy's LargeBinary is a 64 KiB BLOB).
    On SQLite and PostgreSQL a fourth column, ``replaced_len``, receives the
    length of the value an upsert replaces (``SET replaced_len =
    length(old v)``), so the upsert itself returns the old size and no
    separate read is needed; its stored value means nothing afterwards.
``usage``
    ``ns -> (used_bytes, key_count)``: the counter the quota guard updates in
    the same transaction as the data.
``meta``
    ``name -> value``; holds the ``schema_version`` row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import MetaData
    from sqlalchemy.engine import Dialect

#: Bumped whenever the layout changes; a store written by a newer version is refused.
SCHEMA_VERSION = 1
#: Widest key the MariaDB key column holds (the core's default max_key_bytes).
MARIADB_MAX_KEY_BYTES = 256


@dataclass(frozen=True)
class Tables:
    """The table names of one store, for hand-written hot-path SQL."""

    data: str
    usage: str
    meta: str


def table_names(prefix: str) -> Tables:
    return Tables(f"{prefix}data", f"{prefix}usage", f"{prefix}meta")


def build_metadata(prefix: str, engine: str) -> MetaData:
    """The three tables for *engine* (``"sqlite"``, ``"postgresql"`` or ``"mariadb"``)."""
    # Imported here: loading the plugin must not import SQLAlchemy, only opening a store.
    from sqlalchemy import BigInteger, Column, Integer, LargeBinary, MetaData, String, Table
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
    Table(
        names.data,
        metadata,
        Column("ns", namespace, primary_key=True),
        Column("k", key, primary_key=True),
        Column("v", value, nullable=False),
        *extra,
        **clustered,
    )
    Table(
        names.usage,
        metadata,
        Column("ns", namespace, primary_key=True),
        Column("used_bytes", BigInteger, nullable=False),
        Column("key_count", BigInteger, nullable=False),
        **clustered,
    )
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
    from sqlalchemy.schema import CreateTable

    names = table_names(prefix)
    compiled = {
        table.name: str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)).strip()
        for table in build_metadata(prefix, engine).sorted_tables
    }
    return compiled.pop(names.meta), list(compiled.values())
