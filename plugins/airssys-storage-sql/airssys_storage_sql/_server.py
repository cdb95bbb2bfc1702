"""What the client/server engines (PostgreSQL, MariaDB) share.

The pooled item is a DBAPI cursor (its ``connection`` attribute is the
connection); both drivers use ``%s`` placeholders. A read is one autocommit
statement (``SQLBackend._use`` in its ``READ`` mode). When it fails because the connection
is dead (the server restarted, a proxy dropped it), every idle connection is
dropped and the read runs once more on a fresh connection: reads are safe to
repeat. If the server is still away, connecting fails with an
``internal-error`` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from sqlalchemy import create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from ._dialect import EngineDialect
from .backend import SQLBackend, SQLOptions


class ServerDialect(EngineDialect):
    """Cursor items, and disconnects as SQLAlchemy's dialect recognises them."""

    #: Names the server in messages ("PostgreSQL at host:port/db").
    label: ClassVar[str]
    default_port: ClassVar[int]
    #: The engine's own DBAPI ``connect()`` arguments (``backend_options.connect_args`` go on top).
    driver_args: ClassVar[Mapping[str, Any]] = {}

    @classmethod
    def create(cls, url: URL, options: SQLOptions) -> SQLBackend:
        """Build the SQLAlchemy engine for *url* and the backend around it (no I/O yet)."""
        connect_args: dict[str, Any] = {
            "connect_timeout": options.connect_timeout_s,
            **cls.driver_args,
            **options.connect_args,
        }
        engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
        where = f"{cls.label} at {url.host or 'localhost'}:{url.port or cls.default_port}/{url.database or ''}"
        return SQLBackend(engine, options, where, cls)

    @staticmethod
    def fetchall(item: Any, sql: str, params: Sequence[Any]) -> Sequence[tuple[Any, ...]]:
        item.execute(sql, params)
        return item.fetchall()  # type: ignore[no-any-return]

    @staticmethod
    def one(item: Any, sql: str, params: Sequence[Any]) -> Any:
        item.execute(sql, params)
        return item.fetchone()

    @staticmethod
    def execute(item: Any, sql: str, params: Sequence[Any] = ()) -> int:
        # No parameters: None, so the driver does not read a % in the text (DDL) as a marker.
        item.execute(sql, params or None)
        return item.rowcount  # type: ignore[no-any-return]

    def is_disconnect(self, item: Any, exc: Exception) -> bool:
        dialect = self.backend._sa_engine.dialect
        return bool(dialect.is_disconnect(exc, item.connection, item))  # type: ignore[arg-type]
