"""SQLite: the embedded default.

Every connection runs in WAL mode with ``synchronous=NORMAL`` (a commit
survives a crash of the process; ``synchronous=FULL`` also survives power
loss) and a busy timeout (``lock_timeout``). The ``sqlite3`` module runs in
autocommit mode (``isolation_level=None``): a read is one statement, a write
is ``BEGIN IMMEDIATE … COMMIT``, issued explicitly, so the write lock is taken
before the old sizes are read.

The reads below are written out against ``sqlite3.Connection.execute`` with
no helper calls in between: a get is about 4 µs of SQLite work, and every
Python call on top of it shows in the ratio to raw ``sqlite3``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from operator import itemgetter
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool, StaticPool

from airssys_storage import Capabilities, Change, InternalError, StorageError

from ._schema import SCHEMA_VERSION, create_statements
from ._transactional import TransactionalBackend
from .backend import SQLBackend, SQLOptions, describe

_first = itemgetter(0)
# Rows per statement in a batch: two bound values each, far below SQLite's 32766.
_CHUNK = 5000
# sqlite3 error codes (sqlite3.Error.sqlite_errorcode & 0xff).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6


class SQLiteBackend(TransactionalBackend):
    """A SQLite database file shared by any number of threads and processes."""

    engine = "sqlite"

    @classmethod
    def create(cls, url: URL, options: SQLOptions) -> SQLBackend:
        database = url.database or ""
        memory = database in ("", ":memory:") or url.query.get("mode") == "memory"
        connect_args: dict[str, Any] = {
            # Connections move between threads (one thread at a time); sqlite3 must not object.
            "check_same_thread": False,
            "isolation_level": None,
            "timeout": options.lock_timeout,
            **options.connect_args,
        }
        if memory:
            # One connection is the whole database: every thread shares it, in turn.
            engine = create_engine(url, poolclass=StaticPool, connect_args=connect_args)
            return SQLiteMemoryBackend(engine, replace(options, pool_size=1), "in-memory SQLite database")
        engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
        return cls(engine, options, f"SQLite database {database}")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        t = self._tables
        self._prepare_statements()
        self._q_get = f"SELECT v FROM {t.data} WHERE ns = ? AND k = ?"
        self._q_has = f"SELECT 1 FROM {t.data} WHERE ns = ? AND k = ?"
        self._q_items = f"SELECT k, v FROM {t.data} WHERE ns = ? AND k >= ? ORDER BY k LIMIT ?"
        self._q_items_to = f"SELECT k, v FROM {t.data} WHERE ns = ? AND k >= ? AND k < ? ORDER BY k LIMIT ?"
        self._q_keys = f"SELECT k FROM {t.data} WHERE ns = ? AND k >= ? ORDER BY k LIMIT ?"
        self._q_keys_to = f"SELECT k FROM {t.data} WHERE ns = ? AND k >= ? AND k < ? ORDER BY k LIMIT ?"
        self._q_new_usage = (
            f"INSERT INTO {t.usage} (ns, used_bytes, key_count) VALUES (?, 0, 0) ON CONFLICT (ns) DO NOTHING"
        )
        # replaced_len is NULL for a new row, else the length of the value it replaced.
        self._q_put_returning = (
            f"INSERT INTO {t.data} (ns, k, v) VALUES (?, ?, ?) "
            f"ON CONFLICT (ns, k) DO UPDATE SET replaced_len = length({t.data}.v), v = excluded.v "
            "RETURNING replaced_len"
        )
        self._q_delete_returning = f"DELETE FROM {t.data} WHERE ns = ? AND k = ? RETURNING length(v)"
        self._q_many: dict[int, str] = {}
        self._q_put_rows: dict[int, str] = {}
        self._q_delete_rows: dict[int, str] = {}

    def _setup(self, dbapi_connection: Any) -> Any:
        conn: sqlite3.Connection = dbapi_connection
        conn.isolation_level = None
        conn.execute(f"PRAGMA busy_timeout = {int(self._options.lock_timeout * 1000)}")
        if self.capabilities.persistent:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise InternalError(
                    f"{self.where} cannot use write-ahead logging (journal_mode is {mode!r}); "
                    "put the file on a local file system"
                )
        conn.execute(f"PRAGMA synchronous = {self._options.synchronous}")
        return conn

    # -- reads ---------------------------------------------------------------------

    def get(self, namespace: str, key: bytes) -> bytes | None:
        idle = self._idle
        try:
            conn = idle.pop()
        except IndexError:
            conn = self._acquire()
        try:
            row = conn.execute(self._q_get, (namespace, key)).fetchone()
        except Exception as exc:
            raise self._failed(conn, exc, "get") from exc
        except BaseException:
            self._interrupted(conn)
            raise
        idle.append(conn)
        return None if row is None else row[0]  # type: ignore[no-any-return]

    def has(self, namespace: str, key: bytes) -> bool:
        idle = self._idle
        try:
            conn = idle.pop()
        except IndexError:
            conn = self._acquire()
        try:
            row = conn.execute(self._q_has, (namespace, key)).fetchone()
        except Exception as exc:
            raise self._failed(conn, exc, "has") from exc
        except BaseException:
            self._interrupted(conn)
            raise
        idle.append(conn)
        return row is not None

    def get_many(self, namespace: str, keys: Sequence[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        sql = self._q_many.get(len(keys))
        if sql is None:
            marks = ", ".join(["?"] * len(keys))
            sql = self._q_many[len(keys)] = f"SELECT k, v FROM {self._tables.data} WHERE ns = ? AND k IN ({marks})"
        found = dict(self._run("get_many", lambda conn: conn.execute(sql, (namespace, *keys)).fetchall()))
        return [found.get(key) for key in keys]

    def items(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        idle = self._idle
        try:
            conn = idle.pop()
        except IndexError:
            conn = self._acquire()
        try:
            if end is None:
                rows = conn.execute(self._q_items, (namespace, start, limit)).fetchall()
            else:
                rows = conn.execute(self._q_items_to, (namespace, start, end, limit)).fetchall()
        except Exception as exc:
            raise self._failed(conn, exc, "items") from exc
        except BaseException:
            self._interrupted(conn)
            raise
        idle.append(conn)
        return rows  # type: ignore[no-any-return]

    def keys(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[bytes]:
        idle = self._idle
        try:
            conn = idle.pop()
        except IndexError:
            conn = self._acquire()
        try:
            if end is None:
                rows = conn.execute(self._q_keys, (namespace, start, limit)).fetchall()
            else:
                rows = conn.execute(self._q_keys_to, (namespace, start, end, limit)).fetchall()
        except Exception as exc:
            raise self._failed(conn, exc, "keys") from exc
        except BaseException:
            self._interrupted(conn)
            raise
        idle.append(conn)
        return list(map(_first, rows))

    # -- writes ------------------------------------------------------------------------

    def commit_one(self, namespace: str, key: bytes, value: bytes | None, limit: int | None) -> bool:
        # Four statements: BEGIN IMMEDIATE, the write (which returns the old size),
        # the usage update (skipped when neither size nor count changes), COMMIT.
        idle = self._idle
        try:
            conn = idle.pop()
        except IndexError:
            conn = self._acquire()
        try:
            execute = conn.execute
            execute("BEGIN IMMEDIATE")
            if value is None:
                rows = execute(self._q_delete_returning, (namespace, key)).fetchall()
                existed = bool(rows)
                if existed:
                    self._charge(conn, namespace, -len(key) - rows[0][0], -1, None)
            else:
                old = execute(self._q_put_returning, (namespace, key, value)).fetchall()[0][0]
                existed = old is not None
                if existed:
                    delta, count = len(value) - old, 0
                else:
                    delta, count = len(key) + len(value), 1
                if limit is not None and delta > 0:
                    if execute(self._q_add_guarded, (delta, count, namespace, delta, limit)).rowcount != 1:
                        self._charge(conn, namespace, delta, count, limit)
                elif delta or count:
                    self._charge(conn, namespace, delta, count, limit)
            execute("COMMIT")
        except Exception as exc:
            raise self._failed(conn, exc, "set" if value is not None else "delete") from exc
        except BaseException:
            self._interrupted(conn)
            raise
        idle.append(conn)
        return existed

    def commit(self, namespace: str, changes: Sequence[Change], limit: int | None) -> int:
        # The batch's puts are one INSERT … SELECT FROM (VALUES …) upsert and its deletes one
        # DELETE … IN (…), both RETURNING the old sizes: no separate read of the keys (that read
        # cost more than the writes). Then the guarded usage update; a refusal rolls back.
        puts = [(key, value) for key, value in changes if value is not None]
        deletes = [key for key, value in changes if value is None]
        conn = self._acquire_fast()
        try:
            execute = conn.execute
            execute("BEGIN IMMEDIATE")
            delta = count = existed = 0
            for start in range(0, len(deletes), _CHUNK):
                gone = deletes[start : start + _CHUNK]
                for (size,) in execute(self._delete_rows_sql(len(gone)), (namespace, *gone)).fetchall():
                    delta -= size
                    count -= 1
                    existed += 1
            for start in range(0, len(puts), _CHUNK):
                rows = puts[start : start + _CHUNK]
                params: list[Any] = [namespace]
                for key, value in rows:
                    params += (key, value)
                    delta += len(key) + len(value)
                for (old,) in execute(self._put_rows_sql(len(rows)), params).fetchall():
                    if old is None:
                        count += 1
                    else:
                        delta -= old
                        existed += 1
            if delta or count:
                self._charge(conn, namespace, delta, count, limit)
            execute("COMMIT")
        except Exception as exc:
            raise self._failed(conn, exc, "commit") from exc
        except BaseException:
            self._interrupted(conn)
            raise
        self._idle.append(conn)
        return existed

    def _acquire_fast(self) -> Any:
        try:
            return self._idle.pop()
        except IndexError:
            return self._acquire()

    def _put_rows_sql(self, count: int) -> str:
        sql = self._q_put_rows.get(count)
        if sql is None:
            t = self._tables
            rows = ", ".join(["(?, ?)"] * count)
            # "WHERE true" keeps SQLite from reading ON CONFLICT as a join constraint.
            sql = self._q_put_rows[count] = (
                f"INSERT INTO {t.data} (ns, k, v) SELECT ?, column1, column2 FROM (VALUES {rows}) WHERE true "
                f"ON CONFLICT (ns, k) DO UPDATE SET replaced_len = length({t.data}.v), v = excluded.v "
                "RETURNING length(k) + replaced_len"
            )
        return sql

    def _delete_rows_sql(self, count: int) -> str:
        sql = self._q_delete_rows.get(count)
        if sql is None:
            marks = ", ".join(["?"] * count)
            sql = self._q_delete_rows[count] = (
                f"DELETE FROM {self._tables.data} WHERE ns = ? AND k IN ({marks}) RETURNING length(k) + length(v)"
            )
        return sql

    # -- transactional primitives ------------------------------------------------------

    def _begin(self, item: Any, namespace: str) -> None:
        item.execute("BEGIN IMMEDIATE")

    def _end(self, item: Any) -> None:
        item.execute("COMMIT")

    def _execute(self, item: Any, sql: str, params: Sequence[Any]) -> int:
        return item.execute(sql, params).rowcount  # type: ignore[no-any-return]

    def _fetchall(self, item: Any, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return item.execute(sql, params).fetchall()  # type: ignore[no-any-return]

    def _rollback(self, item: Any) -> None:
        if item.in_transaction:
            item.execute("ROLLBACK")

    def _is_disconnect(self, item: Any, exc: Exception) -> bool:
        return False  # there is no server to lose

    def _translate(self, exc: Exception, action: str) -> StorageError:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return InternalError(
                f"{self.where} is locked: another connection held the write lock for more than "
                f"{self._options.lock_timeout:g} s during {action} ({describe(exc)}); "
                "retry, or raise backend_options.lock_timeout"
            )
        return super()._translate(exc, action)

    # -- schema ---------------------------------------------------------------------------

    def _read_version(self, item: Any) -> int | str | None:
        conn: sqlite3.Connection = item
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (self._tables.meta,)
        ).fetchone()
        if exists is None:
            return None
        row = conn.execute(f"SELECT value FROM {self._tables.meta} WHERE name = 'schema_version'").fetchone()
        return None if row is None else self._parse_version(row[0])

    def _create_schema(self, item: Any) -> int | str | None:
        conn: sqlite3.Connection = item
        # BEGIN IMMEDIATE makes concurrent first opens take turns.
        conn.execute("BEGIN IMMEDIATE")
        create_meta, create_others = create_statements(self._options.table_prefix, self.engine, self._sa_engine.dialect)
        conn.execute(create_meta)
        version = self._read_version(conn)
        if version is None:
            for statement in create_others:
                conn.execute(statement)
            conn.execute(self._q_version_row.replace("%s", "?"), (str(SCHEMA_VERSION),))
            version = SCHEMA_VERSION
        conn.execute("COMMIT")
        return version


class SQLiteMemoryBackend(SQLiteBackend):
    """``sqlite://`` / ``sqlite:///:memory:``: one private in-memory database, gone on close."""

    capabilities = Capabilities()

    def _discard(self, item: Any) -> None:
        # The single connection *is* the database; closing it would lose every key.
        self._release(item)

    def _discard_idle(self) -> None:
        pass  # see _discard

    def _forget_connections(self) -> None:
        pass  # a forked child gets its own copy of the database: nothing is shared with the parent
