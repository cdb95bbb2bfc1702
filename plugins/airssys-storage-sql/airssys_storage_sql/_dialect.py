"""What an engine supplies to :class:`~airssys_storage_sql.backend.SQLBackend`: its dialect object.

The backend is one class; it holds one :class:`EngineDialect` (SQLite,
PostgreSQL or MariaDB) and asks it for what differs between engines: how a
connection is set up, how a write transaction begins and ends, which errors
mean "run it again" (:meth:`~EngineDialect.retryable`), "the connection is
dead" (:meth:`~EngineDialect.is_disconnect`) or something to tell the caller
(:meth:`~EngineDialect.translate`), the schema catalogue queries, and the
single-key hot paths. The dialect keeps a reference to its backend for the
statements, options and names that the backend owns.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airssys_storage import Capabilities, InternalError, StorageBackend, StorageError
from airssys_storage.planner import KeyState, Plan, SpaceState, Write

if TYPE_CHECKING:
    from .backend import SQLBackend, StatementsByCount


class EngineDialect(abc.ABC):
    """One engine's primitives, used by the one :class:`~airssys_storage_sql.backend.SQLBackend` class."""

    #: Engine family: ``"sqlite"``, ``"postgresql"`` or ``"mariadb"``.
    engine: ClassVar[str]
    #: What the backend promises on this engine (see :class:`airssys_storage.Capabilities`).
    capabilities: ClassVar[Capabilities] = Capabilities(persistent=True, multi_process=True, change_feed=True)
    #: The driver's positional parameter marker; statements shared by the engines are written with ``?``.
    placeholder: ClassVar[str] = "%s"
    #: How the engine's ``INSERT`` of a usage row leaves an existing row alone.
    keep_existing_usage: ClassVar[str] = "ON CONFLICT (ns) DO NOTHING"
    #: Appended to the read of the counter row that opens a commit: locks it on the server engines.
    lock_rows: ClassVar[str] = " FOR UPDATE"
    #: The SQL function giving a binary column's length in bytes.
    length_function: ClassVar[str] = "length"
    #: SQL conditions on a data row whose version / expiry is out of range (see ``SQLBackend._bad_rows``);
    #: the server engines' BIGINT columns hold integers only, so a range test is enough there.
    bad_version_sql: ClassVar[str] = "ver < 1"
    bad_expiry_sql: ClassVar[str] = "exp < 1"
    #: What :meth:`integrity_problems` runs (shown in the verify report), if anything.
    integrity_check: ClassVar[str | None] = None
    #: One connection is the whole database (in-memory SQLite): it is never closed or replaced.
    shared_connection: ClassVar[bool] = False

    def __init__(self, backend: SQLBackend) -> None:
        self.backend = backend

    @property
    def where(self) -> str:
        """Names the store in messages (the backend's ``where``)."""
        return self.backend.where

    @staticmethod
    def upsert_clause(conflict: Sequence[str], columns: Sequence[str]) -> str:
        """The engine's clause making an ``INSERT`` overwrite *columns* of the row with the same *conflict* key."""
        sets = ", ".join(f"{column} = excluded.{column}" for column in columns)
        return f"ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {sets}"

    # -- connections and statements ------------------------------------------------------

    @abc.abstractmethod
    def setup(self, dbapi_connection: Any) -> Any:
        """Configure a new DBAPI connection; returns the item kept in the backend's idle stack."""

    @abc.abstractmethod
    def fetchall(self, item: Any, sql: str, params: Sequence[Any]) -> Sequence[tuple[Any, ...]]:
        """Run a statement; its rows (a list, or a tuple from PyMySQL)."""

    @abc.abstractmethod
    def one(self, item: Any, sql: str, params: Sequence[Any]) -> Any:
        """Run a statement; its first row, or ``None``."""

    @abc.abstractmethod
    def execute(self, item: Any, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; its rowcount."""

    def executemany(self, item: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run a statement once per parameter row (the drivers' batched ``executemany``)."""
        item.executemany(sql, rows)

    # -- transactions and errors -----------------------------------------------------------

    @abc.abstractmethod
    def begin(self, item: Any) -> None:
        """Start a write transaction (SQLite: ``BEGIN IMMEDIATE``, which takes the database's write lock)."""

    @abc.abstractmethod
    def end(self, item: Any) -> None:
        """Commit the write transaction."""

    @abc.abstractmethod
    def rollback(self, item: Any) -> None:
        """Roll back the transaction open on *item*, if any."""

    def retryable(self, exc: Exception) -> bool:
        """Whether *exc* rolled the transaction back for a conflict, so running it again is safe."""
        return False

    @abc.abstractmethod
    def is_disconnect(self, item: Any, exc: Exception) -> bool:
        """Whether *exc* means *item*'s connection is dead."""

    def translate(self, exc: Exception, action: str) -> StorageError:
        """The caller-visible error for *exc*, raised during *action* (no disconnect, no conflict)."""
        from .backend import describe

        return InternalError(f"{self.where} failed during {action}: {describe(exc)}")

    def check_limits(self, max_key_bytes: int, max_value_bytes: int) -> None:
        """Refuse limits the engine cannot store (see :meth:`airssys_storage.StorageBackend.check_limits`)."""
        return None  # the default: any limits the core accepts

    def get(self, namespace: str, key: bytes) -> bytes | None:
        """The single-key read (``SQLBackend.get``); by default through the backend's one checkout."""
        return self.backend._get(namespace, key)

    # -- the parts of a commit an engine may do its own way -----------------------------------

    def keyed(self, statements: StatementsByCount, head: tuple[Any, ...], keys: Sequence[bytes]) -> tuple[str, Any]:
        """The statement for *keys* (an ``IN`` list of their number) and its parameters: *head*, then the keys."""
        return statements[len(keys)], (*head, *keys)

    def get_many_query(self, namespace: str, keys: Sequence[bytes]) -> tuple[str, tuple[Any, ...]]:
        """The read of :meth:`~airssys_storage_sql.backend.SQLBackend.get_many` and its parameters."""
        return self.backend._q_many[len(keys)], (namespace, *keys)

    def upsert_many(self, item: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        """Write several ``(ns, k, v, ver, exp)`` rows of one commit (keys distinct): the driver's ``executemany``."""
        self.executemany(item, self.backend._w.upsert, rows)

    def lock_space(self, item: Any, namespace: str) -> SpaceState:
        """The namespace's counter row, read (and locked on servers) as the first statement of a commit."""
        return self.backend._space_row(item, namespace)

    def read_state(
        self, item: Any, namespace: str, keys: Sequence[bytes], values: bool
    ) -> tuple[SpaceState, dict[bytes, KeyState]]:
        """The first reads of a commit: the counter row (:meth:`lock_space`), then the rows of *keys*."""
        return self.lock_space(item, namespace), self.backend._read_rows(item, namespace, keys, values)

    def write_plan(self, item: Any, namespace: str, planned: Plan, now: int) -> None:
        """Write what the planner decided (see ``SQLBackend._write_plan``)."""
        self.backend._write_plan(item, namespace, planned, now)

    def write_space(self, item: Any, namespace: str, space: SpaceState) -> None:
        """Store the counter row (SQLite creates it with the first write; the servers locked it already)."""
        b = self.backend
        params = (space.bytes, space.keys, space.floor, namespace)
        if self.execute(item, b._w.set_space, params) == 0:
            self.execute(item, b._w.insert_space, params)

    def apply(self, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        """A commit (``SQLBackend.apply``); by default its general path: read the old rows, plan, write."""
        return self.backend._apply_planned(namespace, writes, limit)

    def put_one(self, namespace: str, key: bytes, value: bytes, limit: int | None) -> int:
        """The single-key set; by default one commit through the planner."""
        return StorageBackend.put_one(self.backend, namespace, key, value, limit)

    def put_one_logged(self, namespace: str, key: bytes, value: bytes, limit: int | None) -> int:
        """The single-key set of a namespace with the change feed on; by default one commit through the planner.

        (``SQLBackend.apply`` appends the events of a namespace with the feed on, and wakes its watchers.)
        """
        return StorageBackend.put_one(self.backend, namespace, key, value, limit)

    def increment_one(self, namespace: str, key: bytes, delta: int, limit: int | None) -> int:
        """The single-key increment; by default one commit through the planner."""
        return StorageBackend.increment_one(self.backend, namespace, key, delta, limit)

    def delete_one(self, namespace: str, key: bytes) -> bool:
        """The single-key delete; by default one commit through the planner."""
        return StorageBackend.delete_one(self.backend, namespace, key)

    # -- schema and verification ---------------------------------------------------------------

    @abc.abstractmethod
    def meta_exists(self, item: Any) -> bool:
        """Whether the meta table exists."""

    @abc.abstractmethod
    def has_column(self, item: Any, table: str, column: str) -> bool:
        """Whether *table* has *column* (schema migration)."""

    def read_version(self, item: Any) -> int | str | None:
        """The stored schema version, ``None`` when the tables do not exist yet."""
        return self.backend._stored_version(item) if self.meta_exists(item) else None

    @abc.abstractmethod
    def create_schema(self, item: Any) -> int | str | None:
        """Create or upgrade the tables (race-safe against other processes); return the version now stored.

        Runs ``SQLBackend._create_tables`` holding the engine's lock.
        """

    def ddl(self) -> tuple[str, list[str]]:
        """The meta table's ``CREATE``, and the other statements that create the schema."""
        from ._schema import create_statements

        b = self.backend
        return create_statements(b._options.table_prefix, self.engine, b._sa_engine.dialect)

    def migrate(self, item: Any) -> int:
        """Upgrade a version 1 store (``SQLBackend._migrate``, plus what the engine's hot paths need)."""
        return self.backend._migrate(item)

    @abc.abstractmethod
    def verify_begin(self, item: Any, repair: bool) -> None:
        """Start the verify transaction: a snapshot, or with *repair* the engine's write lock."""

    @abc.abstractmethod
    def verify_end(self, item: Any, repair: bool) -> None:
        """Commit the verify transaction and release what :meth:`verify_begin` took (also on error)."""

    def integrity_problems(self, item: Any) -> list[str]:
        """Damage the engine's own integrity check finds, one sentence each naming the fix."""
        return []

    def foreign_cells_sql(self) -> str | None:
        """A query listing ``(ns, k)`` of rows whose key or value cell does not hold bytes.

        For engines whose columns can hold other types (SQLite); ``None`` where
        the column types forbid it (the default).
        """
        return None
