"""SQLite: the embedded default.

Every connection runs in WAL mode with ``synchronous=NORMAL`` (a commit
survives a crash of the process; ``synchronous=FULL`` also survives power
loss) and a busy timeout (``lock_timeout``). The ``sqlite3`` module runs in
autocommit mode (``isolation_level=None``): a read is one statement, a write
is ``BEGIN IMMEDIATE … COMMIT``, issued explicitly, so the write lock is taken
before the old sizes are read.

``put_one``, ``increment_one`` and ``delete_one`` are the single-key hot paths the contract allows: four
statements (``BEGIN IMMEDIATE``, an upsert or delete that returns the old size and version, the
counter update, ``COMMIT``) instead of :meth:`SQLBackend.apply`'s five or six, and one guarded
``UPDATE`` when the handle's hint (what it last wrote for the key) says the row's size or counter
value stays; the conformance suite's differential test and ``test_sql_v2.py`` check that they give
exactly what the planner gives. ``get`` writes out ``SQLBackend._use``'s checkout for its common case.

With the change feed on, ``put_one_logged`` is one write transaction: ``BEGIN IMMEDIATE``, the same
row write (the guarded same-size ``UPDATE`` when the hint holds, else the upsert and counter update),
one ``INSERT`` of the event, ``COMMIT``; the event's seq and time come from the newest event, read in
that ``INSERT`` or, while no other connection has committed, remembered per connection (``_tails``).
``test_sql_v2.py`` checks it against the planner's general path and two handles' interleaved writes.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from airssys_storage import (
    Capabilities,
    ConfigurationError,
    InternalError,
    StorageBackend,
    StorageError,
    StoreDamaged,
    quota_exceeded,
)
from airssys_storage.changes import TRIM_STEP
from airssys_storage.files import create_private_file
from airssys_storage.planner import KeyState, Plan, SpaceState, Write, WriteKind, add_to_counter, plan

from ._dialect import EngineDialect
from ._retry import backoff
from ._schema import MAX_STORED_VERSION
from .backend import MARKS, SINGLE, TRANSACTION, SQLBackend, SQLOptions, StatementsByCount, describe

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Dialect

# sqlite3 error codes (sqlite3.Error.sqlite_errorcode & 0xff).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


_T = TypeVar("_T")
#: Rows per multi-row upsert: 5 parameters each, under SQLite's 32766 per statement.
_ROWS_PER_STATEMENT = 1000
#: Most entries of put_one's size hints (about 100 bytes each).
_HINTS = 65536
#: Most connections whose newest events _put_logged_in remembers (emptied when reached).
_TAILS = 64
_EMPTY_SPACE = SpaceState()
_new = tuple.__new__
_PUT = WriteKind.PUT


class SQLiteDialect(EngineDialect):
    """A SQLite database file shared by any number of threads and processes."""

    engine = "sqlite"
    placeholder = "?"
    lock_rows = ""  # BEGIN IMMEDIATE holds the database's write lock already
    integrity_check = "PRAGMA integrity_check"

    @staticmethod
    def connect_args(options: SQLOptions) -> dict[str, Any]:
        """Keyword arguments of ``sqlite3.connect`` for every connection."""
        return {
            # Connections move between threads (one thread at a time); sqlite3 must not object.
            "check_same_thread": False,
            "isolation_level": None,
            "timeout": options.lock_timeout,
            **options.connect_args,
        }

    @classmethod
    def create_plain(cls, database: str, options: SQLOptions) -> SQLBackend:
        """The backend of a plain ``sqlite:///PATH`` URL (no query): opened without importing SQLAlchemy.

        SQLAlchemy would only parse the URL and call ``sqlite3.connect``; it is
        imported when the tables must be created (see :class:`PlainSQLiteEngine`).
        """
        _create_private_database(database)
        engine = PlainSQLiteEngine(os.path.abspath(database), cls.connect_args(options))
        return SQLBackend(engine, options, f"SQLite database {database}", cls)  # type: ignore[arg-type]

    @classmethod
    def create(cls, url: URL, options: SQLOptions) -> SQLBackend:
        """Build the SQLAlchemy engine for *url* and the backend around it (no I/O yet)."""
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool, StaticPool

        _check_query(url)
        database = url.database or ""
        memory = database in ("", ":memory:") or url.query.get("mode") == "memory"
        connect_args = cls.connect_args(options)
        if memory:
            # One connection is the whole database: every thread shares it, in turn.
            engine = create_engine(url, poolclass=StaticPool, connect_args=connect_args)
            return SQLBackend(engine, replace(options, pool_size=1), "in-memory SQLite database", SQLiteMemoryDialect)
        if not url.query.get("uri"):  # a plain file name (not a file: URI)
            _create_private_database(database)
        engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
        return SQLBackend(engine, options, f"SQLite database {database}", cls)

    #: SQLite columns take any type: a tool can store TEXT, REAL (a number past 2**63 - 1) or a BLOB there.
    bad_version_sql = "typeof(ver) <> 'integer' OR ver < 1"
    bad_expiry_sql = "typeof(exp) NOT IN ('integer', 'null') OR exp < 1"

    def foreign_cells_sql(self) -> str:
        """SQLite columns take any type: rows a tool wrote as TEXT or numbers (see SQLBackend.verify)."""
        return f"SELECT ns, k FROM {self.backend._tables.data} WHERE typeof(k) <> 'blob' OR typeof(v) <> 'blob'"

    def __init__(self, backend: SQLBackend) -> None:
        super().__init__(backend)
        self._options = backend._options
        t = backend._tables
        # The planner's PUT in one statement: an overwrite gives the row version + 1, a new
        # row floor + 1; replaced_len is NULL for a new row, else the length of the value it
        # replaced (expired rows included: they are charged until removed).
        # A same-size overwrite changes neither usage nor key count, so the planner's PUT is
        # then this one statement, committed on its own: no counter row, no BEGIN/COMMIT.
        # The row's version and size are the ones this handle wrote last (see _sizes): no
        # RETURNING, which costs a third of the statement (measured).
        self._q_same_size = (
            f"UPDATE {t.data} SET v = ?, ver = ?, exp = NULL WHERE ns = ? AND k = ? AND ver = ? AND length(v) = ?"
        )
        #: (namespace, key) -> (value size, version) this handle last wrote: only a hint of
        #: which of put_one's two exact paths to try first (a failed same-size UPDATE costs as
        #: much as a small write, measured); stale after another writer, then one probe is
        #: wasted. Bounded: emptied when it reaches _HINTS entries.
        self._sizes: dict[tuple[str, bytes], tuple[int, int]] = {}
        self._q_put_one = (
            f"INSERT INTO {t.data} (ns, k, v, ver) "
            f"VALUES (?, ?, ?, COALESCE((SELECT floor FROM {t.usage} WHERE ns = ?), 0) + 1) "
            f"ON CONFLICT (ns, k) DO UPDATE SET replaced_len = length({t.data}.v), v = excluded.v, "
            f"ver = {t.data}.ver + 1, exp = NULL "
            "RETURNING replaced_len, ver"
        )
        # increment_one's shortcut: the counter's new bytes replace exactly the old bytes it
        # was computed from, in a live row not at the last version (the planner's INCREMENT of
        # a same-length result: version + 1, expiry kept, no counter row change).
        self._q_increment = (
            f"UPDATE {t.data} SET v = ?, ver = ver + 1 WHERE ns = ? AND k = ? AND v = ? "
            f"AND (exp IS NULL OR exp > ?) AND ver < {MAX_STORED_VERSION}"
        )
        #: (namespace, key) -> the counter bytes this handle last stored: only a guess that
        #: increment_one checks in its UPDATE (stale after another writer: one statement
        #: wasted, then the planner's path). Bounded like _sizes.
        self._counters: dict[tuple[str, bytes], bytes] = {}
        #: connection -> (its PRAGMA data_version and total_changes after its last commit
        #: through _put_logged_in, {namespace: (seq, time) of the newest event then}). While
        #: both numbers are unchanged at the next such commit, under the write lock, no
        #: connection of any process has committed since (data_version moves with every
        #: other connection's commit) and this one has changed no row since (total_changes
        #: counts every row it changes, committed or rolled back), so the newest events are
        #: still those: the event's seq and time are known, not read (a tenth of a feed-on
        #: set's CPU time, measured). Otherwise they are read, and the entry starts again.
        self._tails: dict[sqlite3.Connection, tuple[int, int, dict[str, tuple[int, int]]]] = {}
        self._q_delete_one = f"DELETE FROM {t.data} WHERE ns = ? AND k = ? RETURNING length(k) + length(v), ver, exp"
        self._q_add = f"UPDATE {t.usage} SET used_bytes = used_bytes + ?, key_count = key_count + ? WHERE ns = ?"
        self._q_add_guarded = (
            f"UPDATE {t.usage} SET used_bytes = used_bytes + ?, key_count = key_count + ? "
            "WHERE ns = ? AND used_bytes + ? <= ?"
        )
        # A one-key commit's first reads in one statement: the counter row and the key's row
        # (NULLs for what does not exist), with or without the value.
        joined = (
            "SELECT u.used_bytes, u.key_count, u.floor, length(d.v), d.ver, d.exp, {value} "
            f"FROM (SELECT ? AS ns, ? AS k) AS w LEFT JOIN {t.usage} AS u ON u.ns = w.ns "
            f"LEFT JOIN {t.data} AS d ON d.ns = w.ns AND d.k = w.k"
        )
        self._q_state = (joined.format(value="NULL"), joined.format(value="d.v"))
        # Several rows in one statement: 30% less per row than executemany of the one-row
        # upsert (measured with 100 rows of 64-80 bytes).
        unit = "(?, ?, ?, ?, ?)"
        self._q_upsert_rows = StatementsByCount(
            f"INSERT INTO {t.data} (ns, k, v, ver, exp) VALUES {MARKS} "
            + self.upsert_clause(("ns", "k"), ("v", "ver", "exp")),
            unit,
        )
        # A batch of plain puts without a separate read of the old rows (see put_many): the
        # upsert gives each row a version as the planner does and returns what the planner
        # needs of the row it replaced: replaced_len is its size, or -1 - size when it had
        # expired at the last parameter (now); NULL for a new row. A row at the last storable
        # version is left alone (and so missing from what the statement returns).
        self._q_put_rows = StatementsByCount(
            f"INSERT INTO {t.data} (ns, k, v, ver, exp) VALUES {MARKS} ON CONFLICT (ns, k) DO UPDATE SET "
            f"replaced_len = CASE WHEN {t.data}.exp IS NULL OR {t.data}.exp > ? THEN length({t.data}.v) "
            f"ELSE -1 - length({t.data}.v) END, v = excluded.v, ver = {t.data}.ver + 1, exp = excluded.exp "
            f"WHERE {t.data}.ver < {MAX_STORED_VERSION} RETURNING k, replaced_len, ver",
            unit,
        )
        self._q_remove = (
            f"UPDATE {t.usage} SET used_bytes = used_bytes - ?, key_count = key_count - 1, "
            "floor = max(floor, ?) WHERE ns = ?"
        )

    def check_limits(self, max_key_bytes: int, max_value_bytes: int) -> None:
        # SQLITE_MAX_LENGTH bounds every blob and every row record (namespace, key, value and header).
        length = self.backend._run("reading SQLITE_MAX_LENGTH", lambda conn: conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH))
        ceiling = int(length) - max_key_bytes - 128
        if max_value_bytes > ceiling:
            raise ConfigurationError(
                f"max_value_bytes = {max_value_bytes} is more than {self.where} can store: SQLite's maximum "
                f"length of a row (SQLITE_MAX_LENGTH) is {length} bytes, so the largest value is {ceiling} bytes; "
                f"lower max_value_bytes to at most {ceiling}"
            )

    def setup(self, dbapi_connection: Any) -> Any:
        try:
            return self._configure(dbapi_connection)
        except sqlite3.DatabaseError as exc:  # a damaged file or not a database: say which, and the fix
            damage = self._damage(exc, "opening")
            if damage is not None:
                raise damage from exc
            raise

    def _configure(self, dbapi_connection: Any) -> Any:
        conn: sqlite3.Connection = dbapi_connection
        conn.isolation_level = None
        conn.execute(f"PRAGMA busy_timeout = {self._options.lock_timeout_ms}")
        if self.capabilities.persistent:
            mode = _retry_while_locked(
                lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0], self._options.lock_timeout
            )
            if str(mode).lower() != "wal":
                raise InternalError(
                    f"{self.where} cannot use write-ahead logging (journal_mode is {mode!r}); "
                    "put the file on a local file system"
                )
        conn.execute(f"PRAGMA synchronous = {self._options.synchronous}")
        return conn

    # -- reads -------------------------------------------------------------------------

    def get(self, namespace: str, key: bytes) -> bytes | None:
        # The hottest read with SQLBackend._use's checkout written out for its one common case:
        # an idle connection and a statement that succeeds (half a microsecond of a ~5 µs get,
        # benchmarks/bench_backends.py). Anything else, a failure included, is that read again
        # through _use, which waits for a connection, reports errors and handles a fork (a read
        # is safe to repeat).
        b = self.backend
        idle = b._idle
        try:
            conn = idle.pop()
        except IndexError:
            return b._get(namespace, key)
        try:
            row = conn.execute(b._q_get, (namespace, key)).fetchone()
        except Exception:
            idle.append(conn)
            return b._get(namespace, key)
        except BaseException:
            b._interrupted(conn)
            raise
        idle.append(conn)
        if row is None or (row[1] is not None and row[1] <= b.clock()):
            return None
        return row[0]  # type: ignore[no-any-return]

    # -- writes ------------------------------------------------------------------------

    def put_one(self, namespace: str, key: bytes, value: bytes, limit: int | None) -> int:
        # When the hint says the row is at a version this handle wrote with a value of this
        # size: the same-size overwrite, one autocommit statement guarded by that version and
        # size (the planner's answer for that row: the version + 1 and no counter change, so
        # the guard has nothing to check), with _use's checkout written out for its common
        # case as in get(). A failed statement is run again through _use, which reports it
        # (the guard on the version makes a repeat harmless). Otherwise, or when the row is
        # not as hinted, the transaction of _put_in.
        b = self.backend
        sizes, size = self._sizes, len(value)
        known = sizes.get(hint := (namespace, key))
        if known is not None and known[0] == size and known[1] < MAX_STORED_VERSION:
            version = known[1] + 1
            params = (value, version, namespace, key, known[1], size)
            idle = b._idle
            try:
                conn = idle.pop()
            except IndexError:
                changed = b._use("set", SINGLE, self._same_size_in, params)
            else:
                try:
                    changed = conn.execute(self._q_same_size, params).rowcount
                except Exception:
                    idle.append(conn)
                    changed = b._use("set", SINGLE, self._same_size_in, params)
                except BaseException:
                    b._interrupted(conn)
                    raise
                else:
                    idle.append(conn)
            if changed == 1:
                sizes[hint] = (size, version)
                return version
        elif len(sizes) >= _HINTS:
            sizes.clear()
        return b._use("set", SINGLE, self._put_in, namespace, key, value, limit)

    def _same_size_in(self, conn: sqlite3.Connection, params: tuple[Any, ...]) -> int:
        return conn.execute(self._q_same_size, params).rowcount

    def _put_in(self, conn: sqlite3.Connection, namespace: str, key: bytes, value: bytes, limit: int | None) -> int:
        # The transaction: the upsert returns the old size and the new version, and the
        # counter update is skipped when neither size nor count changes. (SINGLE mode: SQLite
        # has no lost connection whose outcome could be unknown, and _use rolls back what fails.)
        conn.execute("BEGIN IMMEDIATE")
        version = self._upsert_counted(conn, namespace, key, value, limit)
        conn.execute("COMMIT")
        self._sizes[namespace, key] = (len(value), version)
        return version

    def _upsert_counted(
        self, conn: sqlite3.Connection, namespace: str, key: bytes, value: bytes, limit: int | None
    ) -> int:
        """The planner's PUT in the write transaction: the upsert, then the counter row if size or count moved."""
        execute = conn.execute
        old, version = execute(self._q_put_one, (namespace, key, value, namespace)).fetchone()
        if old is None:
            delta, count = len(key) + len(value), 1
        else:
            delta, count = len(value) - old, 0
        if limit is not None and delta > 0:
            if execute(self._q_add_guarded, (delta, count, namespace, delta, limit)).rowcount != 1:
                self._charge(conn, namespace, delta, count, limit)
        elif (delta or count) and execute(self._q_add, (delta, count, namespace)).rowcount != 1:
            self._charge(conn, namespace, delta, count, limit)
        return version  # type: ignore[no-any-return]

    def put_one_logged(self, namespace: str, key: bytes, value: bytes, limit: int | None) -> int:
        # put_one with the feed on: one write transaction holding the row and its event.
        b = self.backend
        version: int = b._use("set", SINGLE, self._put_logged_in, namespace, key, value, limit)
        b.notify_changes(namespace)
        return version

    def _put_logged_in(
        self, conn: sqlite3.Connection, namespace: str, key: bytes, value: bytes, limit: int | None
    ) -> int:
        # BEGIN IMMEDIATE, the row's write, the event's INSERT, COMMIT. The row's write is
        # put_one's same-size UPDATE when the hint says the row is at a version this handle
        # wrote with a value of this size (no RETURNING, no counter row: the planner's PUT of
        # that row is the version + 1 and no usage change); otherwise, or when the row is not
        # as hinted (the UPDATE changed nothing), _put_in's upsert and counter update. The
        # event's seq and time follow the newest event, read under the write lock (so dense
        # and increasing across processes), or known without a read (_tail). (SINGLE mode:
        # _use rolls back what fails, as for _put_in.)
        execute = conn.execute
        execute("BEGIN IMMEDIATE")
        changed = conn.total_changes
        data_version = execute("PRAGMA data_version").fetchone()[0]
        sizes, size = self._sizes, len(value)
        known = sizes.get(hint := (namespace, key))
        if (
            known is not None
            and known[0] == size
            and known[1] < MAX_STORED_VERSION
            and execute(self._q_same_size, (value, known[1] + 1, namespace, key, known[1], size)).rowcount == 1
        ):
            version = known[1] + 1
        else:
            version = self._upsert_counted(conn, namespace, key, value, limit)
        b = self.backend
        feed = b.feeds[namespace]
        log = b._changes
        captured = value if feed.capture_values and size <= feed.max_value_bytes else None
        now = b.clock()
        tails = self._tails.get(conn)
        if tails is not None and tails[0] == data_version and tails[1] == changed:
            newest = tails[2].get(namespace)
            namespaces = tails[2]
        else:
            newest, namespaces = None, {}
        if newest is not None:
            last, at = newest[0] + 1, max(now, newest[1])
            execute(log.insert, (namespace, last, key, "set", version, at, captured, None))
        else:
            append = log.append_one
            assert append is not None  # SQLite's (see SQLChangeLog)
            last, at = execute(
                append, (namespace, namespace, key, "set", version, now, namespace, captured, None)
            ).fetchone()
        if not last % TRIM_STEP or feed.retain_events < TRIM_STEP:  # as SQLChangeLog.append decides
            log.trim_in(conn, namespace, last, at, feed)
        execute("COMMIT")
        namespaces[namespace] = (last, at)
        if len(self._tails) >= _TAILS:
            self._tails.clear()
        self._tails[conn] = (data_version, conn.total_changes, namespaces)
        if len(sizes) >= _HINTS:
            sizes.clear()
        sizes[hint] = (size, version)
        return version  # type: ignore[no-any-return]

    def increment_one(self, namespace: str, key: bytes, delta: int, limit: int | None) -> int:
        # When this handle knows the counter's bytes (it stored them) and the sum keeps their
        # length: one autocommit UPDATE that applies only if the row still holds exactly those
        # bytes, live and below the last version, which is the planner's answer for that row
        # (add_to_counter's number, version + 1, expiry kept, usage unchanged). Anything else
        # (no guess, another length, a stale guess, an overflow) commits through the planner.
        counters = self._counters
        hint = (namespace, key)
        old = counters.get(hint)
        if old is not None:
            try:
                number, value = add_to_counter(key, old, delta)
            except StorageError:  # out of range for the guess: the stored value decides, below
                value = b""
            if len(value) == len(old):
                b = self.backend
                if b._use("increment", SINGLE, self._swap_in, value, namespace, key, old, b.clock()):
                    counters[hint] = value
                    return number
        elif len(counters) >= _HINTS:
            counters.clear()
        number = StorageBackend.increment_one(self.backend, namespace, key, delta, limit)
        counters[hint] = str(number).encode("ascii")  # what add_to_counter stored
        return number

    def _swap_in(self, conn: sqlite3.Connection, value: bytes, namespace: str, key: bytes, old: bytes, now: int) -> int:
        """Store *value* if the live row holds *old*: the rows changed, 1 or 0 (RETURNING would cost a third more)."""
        return conn.execute(self._q_increment, (value, namespace, key, old, now)).rowcount

    def apply(self, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        if len(writes) > 1:
            for write in writes:
                if write[1] is not _PUT or write[4] is not None or write[6] is not None:
                    break
            else:  # plain puts only (set_many): one statement fewer per chunk of rows
                return self.backend._use("write", TRANSACTION, self._put_many_in, namespace, writes, limit)
        return super().apply(namespace, writes, limit)

    def _put_many_in(
        self, conn: sqlite3.Connection, namespace: str, writes: Sequence[Write], limit: int | None
    ) -> Plan:
        """Plain puts (no condition, no op id) in the write transaction, the old rows read by the upsert itself.

        The upsert writes every row first and returns what the planner needs
        of the rows it replaced; the planner then decides from exactly what the
        general path would have read (so the plan is the same), and a refusal
        rolls the transaction back (``SQLBackend._use``). A row at the last
        storable version sends the commit to the general path, which refuses it.
        """
        b = self.backend
        now = b.clock()
        row = conn.execute(b._w.space, (namespace,)).fetchone()
        space = _EMPTY_SPACE if row is None else _new(SpaceState, row)
        fresh = space.floor + 1
        if fresh > MAX_STORED_VERSION:
            return b._apply_in(conn, namespace, writes, limit)
        old: dict[bytes, KeyState] = {}
        statements = self._q_put_rows
        for start in range(0, len(writes), _ROWS_PER_STATEMENT):
            chunk = writes[start : start + _ROWS_PER_STATEMENT]
            cells = [cell for write in chunk for cell in (namespace, write[0], write[2], fresh, write[3])]
            cells.append(now)
            returned = conn.execute(statements[len(chunk)], cells).fetchall()
            if len(returned) != len(chunk):  # a row at the last version: the general path refuses the commit
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                return b._apply_in(conn, namespace, writes, limit)
            for key, replaced, version in returned:
                if replaced is not None:  # the row it replaced: live, or expired (at now, as the planner sees it)
                    if replaced >= 0:
                        old[key] = _new(KeyState, (replaced, version - 1, None, None))
                    else:
                        old[key] = _new(KeyState, (-1 - replaced, version - 1, now, None))
        get = old.get
        planned = plan(namespace, writes, [get(write[0]) for write in writes], space, limit, now)
        if planned.space_changed:
            self.write_space(conn, namespace, planned.space)
        return planned

    def delete_one(self, namespace: str, key: bytes) -> bool:
        row = self.backend._use("delete", TRANSACTION, self._delete_in, namespace, key)
        return row is not None and (row[2] is None or row[2] > self.backend.clock())

    def _delete_in(self, conn: sqlite3.Connection, namespace: str, key: bytes) -> Any:
        row = conn.execute(self._q_delete_one, (namespace, key)).fetchone()
        if row is not None:
            conn.execute(self._q_remove, (row[0], row[1], namespace))
        return row

    def read_state(
        self, item: Any, namespace: str, keys: Sequence[bytes], values: bool
    ) -> tuple[SpaceState, dict[bytes, KeyState]]:
        if len(keys) != 1:
            return super().read_state(item, namespace, keys, values)
        used, count, floor, *row = item.execute(self._q_state[values], (namespace, keys[0])).fetchone()
        space = _EMPTY_SPACE if used is None else _new(SpaceState, (used, count, floor))
        return space, ({} if row[1] is None else {keys[0]: _new(KeyState, row)})

    def upsert_many(self, item: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        statements = self._q_upsert_rows
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start : start + _ROWS_PER_STATEMENT]
            item.execute(statements[len(chunk)], [cell for row in chunk for cell in row])

    def _charge(self, conn: sqlite3.Connection, namespace: str, delta: int, count: int, limit: int | None) -> None:
        """After the counter update of :meth:`put_one` changed no row: create the row, or refuse the write."""
        rows = conn.execute(self.backend._q_usage, (namespace,)).fetchall()
        if not rows:  # the namespace's first write
            conn.execute(self.backend._q_new_usage, (namespace,))
            if limit is not None and delta > 0:
                done = conn.execute(self._q_add_guarded, (delta, count, namespace, delta, limit)).rowcount
            else:
                done = conn.execute(self._q_add, (delta, count, namespace)).rowcount
            if done == 1:
                return
            rows = [(0,)]
        assert limit is not None  # an unguarded update only misses a row that does not exist
        raise quota_exceeded(namespace, int(rows[0][0]), delta, limit)

    # -- transactional primitives ------------------------------------------------------

    def begin(self, item: Any) -> None:
        item.execute("BEGIN IMMEDIATE")

    def end(self, item: Any) -> None:
        item.execute("COMMIT")

    @staticmethod
    def execute(item: Any, sql: str, params: Sequence[Any] = ()) -> int:
        return item.execute(sql, params).rowcount  # type: ignore[no-any-return]

    @staticmethod
    def fetchall(item: Any, sql: str, params: Sequence[Any]) -> Sequence[tuple[Any, ...]]:
        return item.execute(sql, params).fetchall()  # type: ignore[no-any-return]

    @staticmethod
    def one(item: Any, sql: str, params: Sequence[Any]) -> Any:
        return item.execute(sql, params).fetchone()

    def rollback(self, item: Any) -> None:
        if item.in_transaction:
            item.execute("ROLLBACK")

    def is_disconnect(self, item: Any, exc: Exception) -> bool:
        return False  # there is no server to lose

    def translate(self, exc: Exception, action: str) -> StorageError:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code == _SQLITE_LOCKED:  # not a busy wait that ran out: SQLite gives up at once on these
            return InternalError(
                f"{self.where} is locked by a statement of the same connection or cache ({describe(exc)}) "
                f"during {action}: SQLite does not wait on this lock; retry"
            )
        if code == _SQLITE_BUSY:
            return InternalError(
                f"{self.where} is locked: another connection held the write lock for more than "
                f"{self._options.lock_timeout:g} s during {action} ({describe(exc)}); "
                "retry, or raise backend_options.lock_timeout"
            )
        return self._damage(exc, action) or super().translate(exc, action)

    def _damage(self, exc: Exception, action: str) -> StorageError | None:
        """The error for a damaged file (or one that is no SQLite database), naming the fix; else ``None``."""
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code not in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return None
        what = "is damaged" if code == _SQLITE_CORRUPT else "is damaged or not a SQLite database"
        return StoreDamaged(f"{self.where} {what}: {describe(exc)} during {action}; {self._damage_fix()}")

    def _damage_fix(self) -> str:
        return (
            "stop every process using it, then rebuild it with `sqlite3 OLD .recover | sqlite3 NEW` "
            f"(and move NEW into its place) or restore a backup, and run `{self.backend.command('verify --repair')}`"
        )

    # -- verification ---------------------------------------------------------------------

    def verify_begin(self, item: Any, repair: bool) -> None:
        item.execute("BEGIN IMMEDIATE" if repair else "BEGIN")

    def verify_end(self, item: Any, repair: bool) -> None:
        if item.in_transaction:
            item.execute("COMMIT")

    def integrity_problems(self, item: Any) -> list[str]:
        rows = item.execute("PRAGMA integrity_check").fetchall()
        if [str(row[0]) for row in rows] == ["ok"]:
            return []
        # Findings may span lines under a "*** in database main ***" header.
        found = [line for row in rows for line in str(row[0]).splitlines() if line.strip() and "***" not in line]
        found = found or [str(row[0]) for row in rows]
        return [
            f"{self.where} is damaged: PRAGMA integrity_check reports {'; '.join(found[:5])}"
            + (f" (and {len(found) - 5} more)" if len(found) > 5 else "")
            + f"; {self._damage_fix()}"
        ]

    # -- schema ---------------------------------------------------------------------------

    def meta_exists(self, item: Any) -> bool:
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return bool(self.fetchall(item, sql, (self.backend._tables.meta,)))

    def has_column(self, item: Any, table: str, column: str) -> bool:
        return bool(self.fetchall(item, "SELECT 1 FROM pragma_table_info(?) WHERE name = ?", (table, column)))

    def create_schema(self, item: Any) -> int | str | None:
        # BEGIN IMMEDIATE makes concurrent first opens take turns.
        item.execute("BEGIN IMMEDIATE")
        version = self.backend._create_tables(item)
        item.execute("COMMIT")
        return version


def _retry_while_locked(call: Callable[[], _T], timeout: float) -> _T:
    """*call*, repeated while SQLite says the database is locked, for up to *timeout* seconds.

    Switching a new file to WAL can fail with "database is locked" without
    SQLite calling its busy handler (processes racing to create one store saw
    it about once in ten rounds), so busy_timeout alone does not cover it.
    """
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        try:
            return call()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        backoff(min(attempt, 5))  # the plugin's one jittered retry delay (at most ~64 ms)
        attempt += 1


def _check_query(url: URL) -> None:
    """Refuse URL query parameters the driver would drop with only a warning, or fold into a file name."""
    uri = url.query.get("uri") in ("true", "1")
    ignored = [] if uri else sorted(set(url.query) - {"uri"})
    if ignored:
        raise ConfigurationError(
            f"the SQLite URL has query parameter(s) {', '.join(map(repr, ignored))} that nothing reads: "
            "SQLite URI parameters need a file: URI and uri=true (e.g. sqlite:///file:app.db?mode=ro&uri=true), "
            "and backend settings (lock_timeout, pool_size, ...) go in backend_options"
        )
    if uri and url.query.get("cache") == "shared":
        raise ConfigurationError(
            "the SQLite URL asks for cache=shared: SQLite's shared-cache mode answers a lock held by another "
            "connection with an immediate 'database table is locked' instead of waiting (and SQLite's own docs "
            "discourage it); remove cache=shared — the store's connections already share the file through WAL"
        )
    if uri and not (url.database or "").startswith("file:"):
        raise ConfigurationError(
            f"uri=true needs a file: URI as the database (sqlite:///file:{url.database}?...&uri=true); "
            f"otherwise the parameters would become part of the file name {url.database!r}"
        )


def _create_private_database(path: str) -> None:
    """Create a new database file with mode 0600 before SQLite does (SQLite would use 0644).

    SQLite gives the ``-wal``, ``-shm`` and ``-journal`` files it creates later
    the main file's permissions, so they are private too. An existing file is
    left as it is. An empty file is a valid empty database. When the file
    cannot be created (e.g. a missing directory), SQLite's own open reports it.
    """
    with contextlib.suppress(OSError):
        create_private_file(path)


class _PlainConnection:
    """What the backend uses of a SQLAlchemy pooled connection."""

    __slots__ = ("dbapi_connection",)

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.dbapi_connection = connection

    def close(self) -> None:
        self.dbapi_connection.close()

    invalidate = close


class PlainSQLiteEngine:
    """What ``SQLBackend`` uses of a SQLAlchemy engine, for a file: ``sqlite3.connect`` per connection.

    Starting a command-line read with SQLAlchemy costs more than the rest of
    the read; this engine imports it only for :attr:`dialect`, which compiles
    the ``CREATE TABLE`` statements of a new store.
    """

    def __init__(self, database: str, connect_args: dict[str, Any]) -> None:
        self.database = database
        self.connect_args = connect_args

    def raw_connection(self) -> _PlainConnection:
        return _PlainConnection(sqlite3.connect(self.database, **self.connect_args))

    @property
    def dialect(self) -> Dialect:
        from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

        return SQLiteDialect_pysqlite()

    def dispose(self) -> None:
        """Nothing pooled: the backend closes its connections."""


class SQLiteMemoryDialect(SQLiteDialect):
    """``sqlite://`` / ``sqlite:///:memory:``: one private in-memory database, gone on close."""

    capabilities = Capabilities(change_feed=True)
    shared_connection = True
