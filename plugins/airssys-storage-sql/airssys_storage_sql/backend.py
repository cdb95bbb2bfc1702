"""The ``sql`` backend: URL and option handling, connections, errors, reads, writes, schema.

:class:`SQLBackend` is the class the plugin registers. :meth:`SQLBackend.open`
picks the engine from the URL and returns a backend holding that engine's
dialect object (:class:`~._dialect.EngineDialect`: :mod:`._sqlite`,
:mod:`._postgresql`, :mod:`._mariadb`). What the engines share lives here:
the statements (written once with ``?`` markers, built once per instance),
the one connection checkout (:meth:`SQLBackend._use`, for reads and writes
alike), the reads, the one write path (:meth:`SQLBackend.apply`: a
transaction that locks the namespace's counter row, reads the old rows, asks
:func:`airssys_storage.planner.plan` and writes what it decided), error
handling and schema creation. The dialect supplies the transaction
primitives (begin/end, retryable, translate, is-disconnect) and, where a
benchmark shows it pays, a single-key hot path (``put_one``, ``delete_one``)
whose equality with the planner a differential test checks.

Connections: SQLAlchemy creates them (URL parsing, dialect, connect
arguments) through a ``NullPool``; the backend keeps the idle ones in a plain
list used as a stack. ``list.pop()`` / ``list.append()`` are atomic under the
GIL, so taking and returning a connection costs about 0.1 µs instead of a
pool checkout with its reset-on-return round trip, and any number of threads
may share one backend. At most ``pool_size`` connections exist; a thread that
finds none idle waits up to ``pool_timeout`` seconds.
"""

from __future__ import annotations

import enum
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

from airssys_storage import (
    Capabilities,
    ConfigurationError,
    InternalError,
    OutcomeUnknown,
    StorageBackend,
    StorageError,
    StoreDamaged,
    StoreUnreachable,
    Usage,
    VerifyReport,
)
from airssys_storage.backend import (
    BadKey,
    BadRow,
    expiry_problem,
    key_problems,
    operator_command,
    verify_report,
    version_problem,
)
from airssys_storage.changes import ChangeBatch, FeedConfig, clear_record, plan_records, range_records
from airssys_storage.forking import ForkAware, track
from airssys_storage.planner import KeyState, Plan, SpaceState, Write, WriteKind, plan

from ._feed import SQLChangeLog
from ._options import SQLOptions, connect_arg_error
from ._retry import MAX_ATTEMPTS, backoff
from ._schema import MAX_STORED_VERSION, SCHEMA_VERSION, migration_steps, table_names

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine
    from sqlalchemy.pool import PoolProxiedConnection

    from ._dialect import EngineDialect
    from ._mariadb import MariaDBDialect
    from ._postgresql import PostgreSQLDialect
    from ._sqlite import SQLiteDialect

__all__ = ["SQLBackend", "SQLOptions"]

#: URL scheme (before ``+driver``) -> engine family.
ENGINES = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mariadb",
    "mariadb": "mariadb",
}
#: The DBAPI driver each family's hot path is written for, and the extra that installs it.
DRIVERS = {"sqlite": ("pysqlite", None), "postgresql": ("psycopg", "postgresql"), "mariadb": ("pymysql", "mysql")}
#: Top-level module -> the requirement that installs it (what the extras of this distribution pull in).
REQUIRED_MODULES = {
    "psycopg": "psycopg[binary]>=3.1",
    "psycopg_binary": "psycopg[binary]>=3.1",
    "pymysql": "PyMySQL>=1.1",
    "sqlalchemy": "SQLAlchemy>=2.0,<3",
}


def missing_dependency(exc: ImportError, engine: str | None) -> ConfigurationError | None:
    """The ``invalid-config`` error for a driver or library of this backend that is not installed.

    ``None`` when *exc* is about another module (a real bug, left to propagate).
    """
    module = (exc.name or "").partition(".")[0]
    requirement = REQUIRED_MODULES.get(module)
    if requirement is None:
        return None
    extra = DRIVERS[engine][1] if engine in DRIVERS else None
    via = f" (the [{extra}] extra of airssys-storage-sql)" if extra and module != "sqlalchemy" else ""
    what = f"the {engine} driver" if engine and module != "sqlalchemy" else "a library of the sql backend"
    return ConfigurationError(
        f"{what}, Python module {module!r}, is not installed ({exc}); install it with: pip install '{requirement}'{via}"
    )


_first = itemgetter(0)
_EMPTY_SPACE = SpaceState()
_new = tuple.__new__  # KeyState/SpaceState from a row without NamedTuple.__new__'s argument handling
#: Keys or rows per statement of a commit (SQLite binds at most 32766 values per statement).
CHUNK = 5000

T = TypeVar("T")


class Mode(enum.Enum):
    """How :meth:`SQLBackend._use` runs its work on the connection it checked out."""

    #: A read: repeated once on a fresh connection when the first one was found dead.
    READ = "read"
    #: Anything run once as it is (schema, verify, administration).
    ONCE = "once"
    #: A write transaction (the dialect's begin … end), repeated after a conflict.
    TRANSACTION = "transaction"
    #: One autocommit write statement or procedure call, repeated after a conflict.
    SINGLE = "single"
    #: Inside _use only: a TRANSACTION whose commit has been sent.
    COMMITTING = "committing"


# Module-level aliases: _use compares them by identity on every operation.
READ, ONCE, TRANSACTION, SINGLE, _COMMITTING = Mode

#: Stands in a statement template for the list of markers that :class:`StatementsByCount` repeats.
MARKS = "{marks}"

# Inherited connections parked in a forked child: closing them would end the parent's
# PostgreSQL / MariaDB session (the socket is shared) and garbage collection would close them too.
_INHERITED: list[Any] = []


class _ForkGate(list[Any]):
    """Stands in for the idle list while a fork waits for the connections in use.

    It hands out nothing (``pop`` finds it empty, so a thread wanting a
    connection goes to ``_acquire`` and waits on the slow lock the fork
    holds) and keeps what threads give back. Without it, a thread that gives
    a connection back and takes it again at once could starve the fork for
    the whole ``pool_timeout`` (seen under load). After the fork, ``forward``
    sends late give-backs to the real idle list.
    """

    forward: list[Any] | None = None

    def pop(self, index: Any = -1) -> Any:
        raise IndexError("a fork is waiting for the connections")

    def append(self, item: Any) -> None:
        target = self.forward
        if target is None:
            super().append(item)
        else:
            target.append(item)


def parse_url(url: str) -> tuple[URL, str]:
    """The SQLAlchemy URL for *url* with this backend's driver filled in, and the engine family."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    scheme, sep, rest = url.partition("://")
    base, _, driver = scheme.lower().partition("+")
    engine = ENGINES.get(base)
    if not sep or engine is None:
        raise ConfigurationError(f"the sql backend serves {', '.join(ENGINES)} URLs, not {url.split('://')[0]!r}")
    wanted = DRIVERS[engine][0]
    if driver and driver != wanted:
        raise ConfigurationError(
            f"driver {driver!r} is not supported for {base} URLs: the sql backend's fast path is written for "
            f"{wanted}; write {('postgresql' if base == 'postgres' else base)}+{wanted}://…"
        )
    if engine == "postgresql":
        base = "postgresql"  # SQLAlchemy 2 no longer accepts the postgres:// alias
    name = base if engine == "sqlite" else f"{base}+{wanted}"
    try:
        return make_url(f"{name}://{rest}"), engine
    except (ArgumentError, ValueError) as exc:  # ValueError: e.g. a port that is not a number
        raise ConfigurationError(f"invalid database URL {redact(url)!r}: {exc}") from None


_PLAIN_SQLITE = re.compile(r"sqlite:///([^?#%\x00]+)", re.IGNORECASE)


def plain_sqlite_path(url: str) -> str | None:
    """The file of a plain ``sqlite:///PATH`` URL (no query, fragment or %-escape), as SQLAlchemy reads it.

    ``None`` for every other URL, which :func:`parse_url` then parses with SQLAlchemy.
    """
    match = _PLAIN_SQLITE.fullmatch(url)
    if match is None or match.group(1) == ":memory:":
        return None
    return match.group(1)


def redact(url: str) -> str:
    """*url* without its password (the core's rule, so every message masks the same)."""
    from airssys_storage.plugins import redact_url

    return redact_url(url)


def describe(exc: BaseException) -> str:
    """``Type: first line of the message`` for error messages."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _text(value: object) -> str:
    """A namespace column's value as text (MariaDB's VARBINARY gives bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


class StatementsByCount(dict[int, str]):
    """``statements[n]``: *template* with :data:`MARKS` replaced by *n* copies of *unit*, built once per *n*."""

    def __init__(self, template: str, unit: str) -> None:
        super().__init__()
        self._template = template
        self._unit = unit

    def __missing__(self, count: int) -> str:
        sql = self[count] = self._template.replace(MARKS, ", ".join([self._unit] * count))
        return sql

    def with_array(self, array: str) -> str:
        """The template with its ``IN (…)`` list as ``= ANY(array)``: one statement for any count."""
        return self._template.replace(f"IN ({MARKS})", f"= ANY({array})")


class CommitStatements:
    """The statements :meth:`SQLBackend.apply` runs, built once per backend in the engine's dialect."""

    def __init__(self, backend: SQLBackend) -> None:
        t = backend._tables
        q = backend._sql
        dialect = backend._d
        length = dialect.length_function
        upsert = dialect.upsert_clause
        #: The counter row, locked where the engine locks rows (servers: FOR UPDATE).
        self.space = q(f"SELECT used_bytes, key_count, floor FROM {t.usage} WHERE ns = ?{dialect.lock_rows}")
        self.set_space = q(f"UPDATE {t.usage} SET used_bytes = ?, key_count = ?, floor = ? WHERE ns = ?")
        self.insert_space = q(f"INSERT INTO {t.usage} (used_bytes, key_count, floor, ns) VALUES (?, ?, ?, ?)")
        # Each row is (k, *KeyState): size, version, expiry, value (NULL unless asked for).
        self.rows = backend._by_count(
            f"SELECT k, {length}(v), ver, exp, NULL FROM {t.data} WHERE ns = ? AND k IN ({MARKS})"
        )
        self.rows_values = backend._by_count(
            f"SELECT k, {length}(v), ver, exp, v FROM {t.data} WHERE ns = ? AND k IN ({MARKS})"
        )
        self.ops = backend._by_count(
            f"SELECT op_id, result FROM {t.ops} WHERE ns = ? AND recorded_at > ? AND op_id IN ({MARKS})"
        )
        self.upsert = q(
            f"INSERT INTO {t.data} (ns, k, v, ver, exp) VALUES (?, ?, ?, ?, ?) "
            + upsert(("ns", "k"), ("v", "ver", "exp"))
        )
        self.touch = q(f"UPDATE {t.data} SET ver = ?, exp = ? WHERE ns = ? AND k = ?")
        self.deletes = backend._by_count(f"DELETE FROM {t.data} WHERE ns = ? AND k IN ({MARKS})")
        self.prune_ops = q(f"DELETE FROM {t.ops} WHERE ns = ? AND recorded_at <= ?")
        self.record_op = q(
            f"INSERT INTO {t.ops} (ns, op_id, result, recorded_at) VALUES (?, ?, ?, ?) "
            + upsert(("ns", "op_id"), ("result", "recorded_at"))
        )
        self.top_version = q(f"SELECT max(ver) FROM {t.data} WHERE ns = ?")
        self.clear = q(f"DELETE FROM {t.data} WHERE ns = ?")
        #: Range reads of delete_range: (bounded above, expired only, limited) -> statement.
        self.range: dict[tuple[bool, bool, bool], str] = {}
        for bounded in (False, True):
            for expired in (False, True):
                for limited in (False, True):
                    self.range[bounded, expired, limited] = q(
                        f"SELECT k, {length}(v), ver, exp FROM {t.data} WHERE ns = ? AND k >= ?"
                        + (" AND k < ?" if bounded else "")
                        + (" AND exp <= ?" if expired else "")
                        + " ORDER BY k"
                        + (" LIMIT ?" if limited else "")
                    )


class SQLBackend(StorageBackend, ForkAware):
    """Key-value storage in SQLite, PostgreSQL or MariaDB tables (see the package docs).

    One class for every engine: what differs lives in the dialect object
    (:class:`~._dialect.EngineDialect`) it holds.
    """

    name = "sql"
    url_schemes = tuple(ENGINES)
    capabilities = Capabilities(persistent=True, multi_process=True, change_feed=True)
    Options = SQLOptions

    def __init__(self, sa_engine: Engine, options: SQLOptions, where: str, dialect: type[EngineDialect]) -> None:
        self._sa_engine = sa_engine
        self._options = options
        #: Names the store in messages: "SQLite database /path", "PostgreSQL at host:port/db".
        self.where = where
        # Statements used once per open or per clear() are built where they run, not stored
        # here: an instance with 30 or more attributes stops sharing its dict keys with its
        # class (CPython 3.11), and then every attribute load on the hot paths is slower.
        self._tables = t = table_names(options.table_prefix)
        #: The engine's dialect: transaction primitives, errors, schema queries, hot paths.
        self._d = d = dialect(self)
        #: Engine family: ``"sqlite"``, ``"postgresql"`` or ``"mariadb"``.
        self.engine = d.engine
        # What the store promises depends on the URL (in-memory SQLite is neither persistent nor
        # shared), so it is the dialect's; an instance attribute over the class's declaration.
        vars(self)["capabilities"] = d.capabilities
        q = self._sql
        # Reads: a row's expiry comes with it, and listings skip expired rows in SQL.
        live = "(exp IS NULL OR exp > ?)"
        self._q_get = q(f"SELECT v, exp FROM {t.data} WHERE ns = ? AND k = ?")
        self._q_entry = q(f"SELECT v, ver, exp FROM {t.data} WHERE ns = ? AND k = ?")
        self._q_has = q(f"SELECT exp FROM {t.data} WHERE ns = ? AND k = ?")
        self._q_many = self._by_count(f"SELECT k, v, exp FROM {t.data} WHERE ns = ? AND k IN ({MARKS})")
        self._q_items = q(f"SELECT k, v FROM {t.data} WHERE ns = ? AND k >= ? AND {live} ORDER BY k LIMIT ?")
        self._q_items_to = q(
            f"SELECT k, v FROM {t.data} WHERE ns = ? AND k >= ? AND k < ? AND {live} ORDER BY k LIMIT ?"
        )
        self._q_keys = q(f"SELECT k FROM {t.data} WHERE ns = ? AND k >= ? AND {live} ORDER BY k LIMIT ?")
        self._q_keys_to = q(f"SELECT k FROM {t.data} WHERE ns = ? AND k >= ? AND k < ? AND {live} ORDER BY k LIMIT ?")
        self._q_usage = q(f"SELECT used_bytes, key_count FROM {t.usage} WHERE ns = ?")
        self._q_new_usage = q(
            f"INSERT INTO {t.usage} (ns, used_bytes, key_count, floor) VALUES (?, 0, 0, 0) {d.keep_existing_usage}"
        )
        # The statements of apply(), in one object: see the note above on the number of attributes.
        self._w = CommitStatements(self)
        #: The URL it was opened with (see :meth:`command`); set by :meth:`open`.
        self.url = ""
        # Idle connections (engine-specific items: a connection or a cursor).
        self._idle: list[Any] = []
        self._fairies: dict[int, PoolProxiedConnection] = {}
        self._connections = 0  # open or being opened
        self._max_connections = options.pool_size
        self._slow_lock = threading.Lock()
        self._closed = False
        self._listener: Any = None  # PostgreSQL: the LISTEN thread of the change feed, once a watcher waits
        # Set in a forked child that must not use this backend (see after_fork_in_child).
        self._refused_in_child: str | None = None
        #: Operations repeated after a conflict or a dead connection, by cause (for stats()).
        self.retries: Counter[str] = Counter()
        track(self)  # a forked child drops the inherited connections (after_fork_in_child)

    # -- opening ---------------------------------------------------------------

    @classmethod
    def open(cls, url: str, options: SQLOptions | Mapping[str, Any]) -> SQLBackend:
        """Open the store at *url*; *options* as :meth:`parse_options` gives them (a plain mapping is parsed)."""
        engine: str | None = None
        impl: type[SQLiteDialect | PostgreSQLDialect | MariaDBDialect]
        opts: SQLOptions = cls.parse_options(options)
        plain = plain_sqlite_path(url)
        if plain is not None:  # the embedded default: no SQLAlchemy unless the tables must be created
            from ._sqlite import SQLiteDialect

            backend = SQLiteDialect.create_plain(plain, opts)
            return cls._with_schema(backend, url)
        try:
            sa_url, engine = parse_url(url)
            if engine != "sqlite" and opts.synchronous != SQLOptions.synchronous:
                raise ConfigurationError(
                    f"backend_options.synchronous={opts.synchronous!r} applies to SQLite only, not to {engine} "
                    "(the server's own settings decide durability); remove it"
                )
            if engine == "sqlite":
                from ._sqlite import SQLiteDialect as impl
            elif engine == "postgresql":
                from ._postgresql import PostgreSQLDialect as impl
            else:
                from ._mariadb import MariaDBDialect as impl
            # SQLAlchemy imports the DBAPI driver here (create_engine).
            backend = impl.create(sa_url, opts)
        except ImportError as exc:
            missing = missing_dependency(exc, engine)
            if missing is None:
                raise
            raise missing from None
        return cls._with_schema(backend, url)

    @staticmethod
    def _with_schema(backend: SQLBackend, url: str) -> SQLBackend:
        backend.url = url  # before any I/O: damage found at open names the command on this store
        try:
            backend._ensure_schema()
        except BaseException:
            backend.close()
            raise
        return backend

    @classmethod
    def exists(cls, url: str, options: Any) -> bool | None:
        """For a SQLite file: whether it exists and is not empty. ``None`` for in-memory SQLite and servers.

        An empty file is no store yet (SQLite would take it as an empty
        database, and opening it creates the tables).

        (On a server a read-only command creates missing tables: telling them
        apart would need a connection before the open.)
        """
        path = plain_sqlite_path(url)
        if path is None:
            sa_url, engine = parse_url(url)
            database = sa_url.database
            if engine != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
                return None
            path = database
        try:
            return os.path.getsize(path) > 0
        except OSError:
            return False

    @classmethod
    def selecting_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """``table_prefix`` (when given): it picks the tables, so it picks the store."""
        return {"table_prefix": options["table_prefix"]} if "table_prefix" in options else {}

    def command(self, command: str) -> str:
        """``airssys-storage COMMAND --url … [--backend-options '{"table_prefix":…}']`` on this store."""
        prefix = self._options.table_prefix
        selecting = {} if prefix == SQLOptions.table_prefix else {"table_prefix": prefix}
        return operator_command(command, self.url, selecting)

    # -- SQL text ----------------------------------------------------------------------

    def _sql(self, text: str) -> str:
        """*text* with its ``?`` markers in the driver's style (no table name or literal holds a ``?``)."""
        return text.replace("?", self._d.placeholder)

    def _by_count(self, template: str, unit: str = "?") -> StatementsByCount:
        """Statements for *n* keys or rows: :data:`MARKS` in *template* becomes *n* copies of *unit*."""
        return StatementsByCount(self._sql(template), self._sql(unit))

    # -- connections -------------------------------------------------------------

    def _take(self) -> Any:
        """An idle connection item, or a new one (:meth:`_use` writes this out instead of calling it)."""
        try:
            return self._idle.pop()
        except IndexError:
            return self._acquire()

    def _acquire(self) -> Any:
        """An idle connection item, or a new one; waits when ``pool_size`` are busy."""
        deadline = 0.0
        while True:
            with self._slow_lock:
                if self._closed:
                    raise InternalError(f"the sql backend for {self.where} is closed")
                if self._refused_in_child is not None:
                    raise InternalError(self._refused_in_child)
                if self._idle:
                    return self._idle.pop()
                if self._connections < self._max_connections:
                    self._connections += 1  # reserved; given back if connecting fails
                    break
            now = time.monotonic()
            if not deadline:
                deadline = now + self._options.pool_timeout
            elif now > deadline:
                raise InternalError(
                    f"all {self._max_connections} connections to {self.where} stayed busy for "
                    f"{self._options.pool_timeout:g} s; raise backend_options.pool_size"
                )
            time.sleep(0.001)
        try:
            fairy = self._sa_engine.raw_connection()
        except BaseException as exc:
            self._give_back_slot()
            refused = connect_arg_error(exc, self._options.connect_args)
            if refused is not None:
                raise refused from None  # the driver's text may echo the values
            raise StoreUnreachable(f"cannot connect to {self.where}: {describe(exc)}") from exc
        try:
            item = self._d.setup(fairy.dbapi_connection)
        except BaseException as exc:
            self._give_back_slot()
            fairy.invalidate()
            if isinstance(exc, StorageError):
                raise
            raise InternalError(f"cannot set up a connection to {self.where}: {describe(exc)}") from exc
        with self._slow_lock:
            self._fairies[id(item)] = fairy
        return item

    def _give_back_slot(self) -> None:
        with self._slow_lock:
            self._connections -= 1

    def _release(self, item: Any) -> None:
        self._idle.append(item)

    def _discard(self, item: Any) -> None:
        """Close *item*'s connection and forget it (it is broken or in an unknown state)."""
        if self._d.shared_connection:  # the single connection *is* the database: closing it would lose every key
            self._release(item)
            return
        with self._slow_lock:
            fairy = self._fairies.pop(id(item), None)
            if fairy is not None:
                self._connections -= 1
        if fairy is not None:
            try:
                fairy.invalidate()
            except Exception:  # closing a dead connection may fail; it is gone either way
                pass

    # -- fork ----------------------------------------------------------------------------
    #
    # The fork waits until no thread is inside a connection: a thread in the middle of a
    # SQLite call holds SQLite's own mutexes, and a child that inherits them locked hangs on
    # its first connection to the file (a copy of an in-memory database would also be taken
    # halfway through a transaction). Holding the slow lock keeps new connections from being
    # opened meanwhile; the wait is bounded by pool_timeout, then the fork goes ahead.

    def before_fork(self) -> None:
        self._slow_lock.acquire()
        idle, gate = self._idle, _ForkGate()
        self._fork_idle = idle
        self._idle = gate  # from now on given-back connections collect in the gate (see _ForkGate)
        held: list[Any] = []
        while True:  # pop, never copy: a thread may be popping the old list at this moment
            try:
                held.append(idle.pop())
            except IndexError:
                break
        deadline = time.monotonic() + self._options.pool_timeout
        # len(idle) too: a thread that read self._idle just before the swap gives back to the old list.
        while len(held) + len(gate) + len(idle) < self._connections and time.monotonic() < deadline:
            time.sleep(0.0005)
        while True:
            try:
                held.append(idle.pop())
            except IndexError:
                break
        held.extend(list.copy(gate))
        del gate[:]
        self._fork_held = held

    def _end_fork_gate(self) -> None:
        """Put the real idle list back, with the connections the fork held and any given back since."""
        gate, idle = self._idle, self._fork_idle
        if isinstance(gate, _ForkGate):
            gate.forward = idle
            idle.extend(list.copy(gate))
        idle.extend(self._fork_held)
        self._idle = idle
        self._fork_held = []

    def after_fork_in_parent(self) -> None:
        self._end_fork_gate()
        self._slow_lock.release()

    def after_fork_in_child(self) -> None:
        """In a forked child: stop using the parent's connections, without closing them.

        In-memory SQLite: the child keeps working on its own copy of the database
        (nothing is shared with the parent); the fork waited for the single
        connection, so the copy is between transactions.
        """
        held = self._fork_held
        self._end_fork_gate()
        if self._d.shared_connection:
            self._slow_lock = threading.Lock()
            if not held:  # before_fork gave up after pool_timeout: a parent thread was inside the connection
                self._refused_in_child = (
                    f"this process was forked while a thread of its parent was using {self.where}, so its copy "
                    "of the in-memory database may be halfway through a transaction and is not used; open the "
                    "store in the child instead (in-memory data is not shared between processes)"
                )
            return
        _INHERITED.extend(self._idle)
        _INHERITED.extend(self._fairies.values())
        self._idle.clear()
        self._fairies.clear()
        self._connections = 0
        self._slow_lock = threading.Lock()  # the inherited one is held (by before_fork)

    def _discard_idle(self) -> None:
        """Drop every idle connection: after a disconnect they most likely all died with the server."""
        if self._d.shared_connection:
            return  # see _discard
        while True:
            try:
                item = self._idle.pop()
            except IndexError:
                return
            self._discard(item)

    # -- errors ----------------------------------------------------------------------

    def _failed(self, item: Any, exc: Exception, action: str, committing: bool = False) -> StorageError:
        """Clean up *item* after *exc* and return the error to raise.

        *committing*: *exc* came while the server may have been committing the write (an
        autocommit write statement, or ``COMMIT``), so a lost connection leaves its outcome
        unknown: :class:`~airssys_storage.OutcomeUnknown`. A connection lost before that
        point rolled the transaction back: a plain ``internal-error``.
        """
        if isinstance(exc, StorageError):
            self._recover(item)
            return exc
        if isinstance(exc, ImportError) and (missing := missing_dependency(exc, self.engine)) is not None:
            self._recover(item)  # SQLAlchemy, imported only to create the tables of a new SQLite file
            return missing
        if self._d.is_disconnect(item, exc):
            self._discard(item)
            self._discard_idle()
            if committing:
                return OutcomeUnknown(
                    f"lost the connection to {self.where} while committing the {action}: {describe(exc)}; the "
                    f"{action} may have been applied: read back before retrying (the backend reconnects on the "
                    "next operation)"
                )
            return InternalError(
                f"lost the connection to {self.where} during {action}: {describe(exc)}; "
                "the backend reconnects on the next operation"
            )
        self._recover(item)
        return self._d.translate(exc, action)

    def _interrupted(self, item: Any) -> None:
        """A BaseException (KeyboardInterrupt …) left *item* in an unknown state."""
        self._discard(item)

    def _recover(self, item: Any) -> None:
        """Roll back any open transaction on *item* and return it to the idle stack."""
        try:
            self._d.rollback(item)
        except Exception:
            self._discard(item)
        else:
            self._release(item)

    # -- the one connection checkout ---------------------------------------------------------

    def _use(self, action: str, mode: Mode, work: Callable[..., T], *args: Any) -> T:
        """``work(item, *args)`` on a pooled connection item: every read and write goes through here.

        *mode* (:class:`Mode`) says how: :data:`READ` repeats the read once
        on a fresh connection when the first was found dead (reads are safe to
        repeat); :data:`ONCE` runs it as it is; :data:`TRANSACTION` wraps it in
        the dialect's write transaction (begin … end) and :data:`SINGLE` runs
        one autocommit write statement, both repeated after a conflict the
        dialect calls retryable. In a transaction, a connection lost before
        the ``COMMIT`` rolled it back (``internal-error``), one lost during it
        leaves the outcome unknown (:class:`~airssys_storage.OutcomeUnknown`);
        a :data:`SINGLE` write commits by itself, so a lost connection always
        leaves it unknown. Positional parameters and no further layers: it is
        the get and the set path.
        """
        attempt = 0
        while True:
            try:
                item = self._idle.pop()
            except IndexError:
                item = self._acquire()
            try:
                if mode is TRANSACTION:
                    self._d.begin(item)
                    result = work(item, *args)
                    mode = _COMMITTING  # from here a lost connection leaves the outcome unknown
                    self._d.end(item)
                    mode = TRANSACTION
                else:
                    result = work(item, *args)
            except Exception as exc:
                d = self._d
                committing = mode is SINGLE or mode is _COMMITTING
                if mode is _COMMITTING:
                    mode = TRANSACTION
                if mode is READ:
                    if attempt == 0 and d.is_disconnect(item, exc):
                        attempt = 1
                        self.retries["reconnect"] += 1
                        self._discard(item)
                        self._discard_idle()
                        continue
                elif mode is not ONCE and attempt + 1 < MAX_ATTEMPTS and d.retryable(exc):
                    self.retries["conflict"] += 1
                    self._recover(item)
                    backoff(attempt)
                    attempt += 1
                    continue
                raise self._failed(item, exc, action, committing) from exc
            except BaseException:
                self._interrupted(item)
                raise
            self._idle.append(item)
            return result

    def _run(self, action: str, work: Callable[..., T], *args: Any) -> T:
        """Run ``work(item, *args)`` once on a pooled connection with uniform error handling (not the hot path)."""
        return self._use(action, ONCE, work, *args)

    # -- reads -----------------------------------------------------------------------

    def _query(self, action: str, sql: str, params: Sequence[Any]) -> Sequence[Any]:
        """The rows of a read (a connection found dead is replaced once)."""
        return self._use(action, READ, self._d.fetchall, sql, params)

    def get(self, namespace: str, key: bytes) -> bytes | None:
        return self._d.get(namespace, key)

    def _get(self, namespace: str, key: bytes) -> bytes | None:
        """:meth:`get` through the one checkout (:meth:`_use`): the dialects' default."""
        row = self._use("get", READ, self._d.one, self._q_get, (namespace, key))
        if row is None or (row[1] is not None and row[1] <= self.clock()):
            return None
        return row[0]  # type: ignore[no-any-return]

    def has(self, namespace: str, key: bytes) -> bool:
        row = self._use("has", READ, self._d.one, self._q_has, (namespace, key))
        return row is not None and (row[0] is None or row[0] > self.clock())

    def get_entry(self, namespace: str, key: bytes) -> KeyState | None:
        rows = self._query("get_entry", self._q_entry, (namespace, key))
        if not rows:
            return None
        value, version, expires_at = rows[0]
        if expires_at is not None and expires_at <= self.clock():
            return None
        return KeyState(len(value), version, expires_at, value)

    def get_many(self, namespace: str, keys: Sequence[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        rows = self._query("get_many", *self._d.get_many_query(namespace, keys))
        if any(row[2] is not None for row in rows):  # one moment for the whole batch
            now = self.clock()
            found = {key: value for key, value, expires_at in rows if expires_at is None or expires_at > now}
        else:
            found = {key: value for key, value, _ in rows}
        return [found.get(key) for key in keys]

    def items(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        if end is None:
            rows = self._query("items", self._q_items, (namespace, start, self.clock(), limit))
        else:
            rows = self._query("items", self._q_items_to, (namespace, start, end, self.clock(), limit))
        return rows if isinstance(rows, list) else list(rows)  # PyMySQL returns a tuple

    def keys(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[bytes]:
        if end is None:
            rows = self._query("keys", self._q_keys, (namespace, start, self.clock(), limit))
        else:
            rows = self._query("keys", self._q_keys_to, (namespace, start, end, self.clock(), limit))
        return list(map(_first, rows))

    def usage(self, namespace: str) -> Usage:
        rows = self._query("usage", self._q_usage, (namespace,))
        return Usage(int(rows[0][0]), int(rows[0][1])) if rows else Usage()

    # -- engine primitives (the dialect's; here for the code and the tests that run statements) ----

    def _fetchall(self, item: Any, sql: str, params: Sequence[Any]) -> Sequence[tuple[Any, ...]]:
        """Run a statement; its rows (a list, or a tuple from PyMySQL)."""
        return self._d.fetchall(item, sql, params)

    def _execute(self, item: Any, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; its rowcount."""
        return self._d.execute(item, sql, params)

    # -- writes: one transaction, the planner, the plan applied ------------------------------

    def check_limits(self, max_key_bytes: int, max_value_bytes: int) -> None:
        self._d.check_limits(max_key_bytes, max_value_bytes)

    def put_one(self, namespace: str, key: bytes, value: bytes, limit: int | None) -> int:
        return self._d.put_one(namespace, key, value, limit)

    def delete_one(self, namespace: str, key: bytes) -> bool:
        return self._d.delete_one(namespace, key)

    def increment_one(self, namespace: str, key: bytes, delta: int, limit: int | None) -> int:
        return self._d.increment_one(namespace, key, delta, limit)

    def put_one_logged(self, namespace: str, key: bytes, value: bytes, limit: int | None) -> int:
        """:meth:`put_one` of a namespace with the change feed on (see ``StorageBackend.enable_changes``)."""
        return self._d.put_one_logged(namespace, key, value, limit)

    def apply(self, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        """One transaction: lock the counter row, read the old rows and op ids, plan, write the plan.

        The dialect may take a faster path for some commits (:meth:`EngineDialect.apply`); the plan is the same.
        A namespace with the change feed on always takes the general path, which appends its events.
        """
        if namespace in self.feeds:
            planned = self._use("write", TRANSACTION, self._apply_logged, namespace, writes, limit)
            self.notify_changes(namespace)
            return planned
        return self._d.apply(namespace, writes, limit)

    def _apply_logged(self, item: Any, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        planned = self._apply_in(item, namespace, writes, limit)
        feed = self.feeds[namespace]
        self._changes.append(item, namespace, plan_records(planned, feed), self.clock(), feed)
        return planned

    def _apply_planned(self, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        """:meth:`apply`'s general path, which every engine has (the differential tests compare with it)."""
        return self._use("write", TRANSACTION, self._apply_in, namespace, writes, limit)

    def _apply_in(self, item: Any, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        keys = [write.key for write in writes]
        d = self._d
        space, found = d.read_state(item, namespace, keys, any(write.needs_value for write in writes))
        now = self.clock()
        op_ids = [write.op_id for write in writes if write.op_id is not None]
        done = self._read_ops(item, namespace, op_ids, now) if op_ids else None
        planned = plan(namespace, writes, [found.get(key) for key in keys], space, limit, now, done)
        d.write_plan(item, namespace, planned, now)
        return planned

    def _lock_space(self, item: Any, namespace: str) -> SpaceState:
        """The namespace's counter row, read (and on servers locked) as the dialect opens a commit with it."""
        return self._d.lock_space(item, namespace)

    def _space_row(self, item: Any, namespace: str) -> SpaceState:
        """The namespace's counter row, read as the first statement of a commit (and locked on servers).

        On the servers this lock makes the commit the namespace's only writer
        (every write path takes it first); a missing row is created, since
        only an existing row can be locked. SQLite's ``BEGIN IMMEDIATE`` has
        locked the whole database already.
        """
        rows = self._fetchall(item, self._w.space, (namespace,))
        if not rows and self._d.lock_rows:
            self._execute(item, self._q_new_usage, (namespace,))
            rows = self._fetchall(item, self._w.space, (namespace,))
        if not rows:
            return _EMPTY_SPACE
        used, count, floor = rows[0]
        return SpaceState(int(used), int(count), int(floor))

    def _read_rows(self, item: Any, namespace: str, keys: Sequence[bytes], values: bool) -> dict[bytes, KeyState]:
        """The stored rows of *keys* (expired ones too), with their values when *values*."""
        statements = self._w.rows_values if values else self._w.rows
        found: dict[bytes, KeyState] = {}
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            for row in self._fetchall(item, *self._d.keyed(statements, (namespace,), chunk)):
                found[row[0]] = _new(KeyState, row[1:])  # the drivers give bytes and ints
        return found

    def _read_ops(self, item: Any, namespace: str, op_ids: Sequence[str], now: int) -> dict[str, int]:
        """The recorded results of *op_ids* younger than the retention window."""
        encoded = [op_id.encode() for op_id in op_ids]
        rows = self._fetchall(item, *self._d.keyed(self._w.ops, (namespace, now - self.op_retention_ms), encoded))
        return {bytes(op_id).decode(): int(result) for op_id, result in rows}

    def _write_plan(self, item: Any, namespace: str, planned: Plan, now: int) -> None:
        """Write what the planner decided: deletes, puts, touches, the counter row, the op records."""
        w, d = self._w, self._d
        deletes = planned.deletes
        for start in range(0, len(deletes), CHUNK):
            chunk = deletes[start : start + CHUNK]
            d.execute(item, *d.keyed(w.deletes, (namespace,), chunk))
        rows = []
        for key, value, version, expires_at in planned.puts:
            if version > MAX_STORED_VERSION:
                raise InternalError(f"a key's version reached {MAX_STORED_VERSION}; the key cannot be written again")
            if value is None:  # a TOUCH: the stored value stays
                d.execute(item, w.touch, (version, expires_at, namespace, key))
            else:
                rows.append((namespace, key, value, version, expires_at))
        if len(rows) == 1:
            d.execute(item, w.upsert, rows[0])
        elif rows:
            d.upsert_many(item, rows)
        if planned.space_changed:
            d.write_space(item, namespace, planned.space)
        if planned.op_records:
            self._execute(item, w.prune_ops, (namespace, now - self.op_retention_ms))
            for op_id, result in planned.op_records:
                self._execute(item, w.record_op, (namespace, op_id.encode(), result, now))

    def delete_range(
        self, namespace: str, start: bytes, end: bytes | None, *, expired_only: bool = False, limit: int | None = None
    ) -> Plan:
        """One transaction: lock the counter row, read the rows in the range, plan their removal, apply it."""
        planned = self._use(
            "range delete", TRANSACTION, self._delete_range_in, namespace, start, end, expired_only, limit
        )
        if planned.events and namespace in self.feeds:
            self.notify_changes(namespace)
        return planned

    def _delete_range_in(
        self, item: Any, namespace: str, start: bytes, end: bytes | None, expired_only: bool, limit: int | None
    ) -> Plan:
        space = self._lock_space(item, namespace)
        now = self.clock()
        params: list[Any] = [namespace, start]
        if end is not None:
            params.append(end)
        if expired_only:
            params.append(now)
        if limit is not None:
            params.append(limit)
        sql = self._w.range[end is not None, expired_only, limit is not None]
        rows = self._fetchall(item, sql, params)
        kind = WriteKind.SWEEP if expired_only else WriteKind.DELETE
        writes = [Write(bytes(row[0]), kind) for row in rows]
        old = [KeyState(int(row[1]), int(row[2]), row[3]) for row in rows]
        planned = plan(namespace, writes, old, space, None, now)
        self._d.write_plan(item, namespace, planned, now)
        if planned.events and namespace in self.feeds:
            records = range_records(planned, start, end, expired_only)
            self._changes.append(item, namespace, records, now, self.feeds[namespace])
        return planned

    def clear(self, namespace: str) -> None:
        if self._use("clear", TRANSACTION, self._clear_in, namespace) and namespace in self.feeds:
            self.notify_changes(namespace)

    def _clear_in(self, item: Any, namespace: str) -> bool:
        """Empty the namespace; returns whether it held rows."""
        space = self._lock_space(item, namespace)
        top = self._fetchall(item, self._w.top_version, (namespace,))[0][0]
        self._execute(item, self._w.clear, (namespace,))
        floor = max(space.floor, int(top or 0))
        if space != SpaceState(0, 0, floor):
            self._d.write_space(item, namespace, SpaceState(0, 0, floor))
        if top is not None and namespace in self.feeds:
            self._changes.append(item, namespace, clear_record(floor), self.clock(), self.feeds[namespace])
        return top is not None

    # -- change feed (airssys_storage.changes; the tables: _feed.py) --------------------------

    @property
    def _changes(self) -> SQLChangeLog:
        log = self.__dict__.get("_change_log")
        if log is None:
            log = self.__dict__["_change_log"] = SQLChangeLog(self)
        return log

    def enable_changes(self, namespace: str, feed: FeedConfig | None) -> None:
        """Create the change-log tables (``IF NOT EXISTS``) on the first feed, then record *namespace*'s."""
        if feed is not None and "_change_log" not in self.__dict__:
            for statement in self._changes.ddl:
                self._run("creating the change-log tables", self._execute, statement)
        super().enable_changes(namespace, feed)

    def read_changes(self, namespace: str, since: int, limit: int) -> ChangeBatch:
        return self._use("changes", READ, self._changes.read_in, namespace, since, limit)

    def change_bounds(self, namespace: str) -> tuple[int, int]:
        return self._use("changes", READ, self._changes.bounds_in, namespace)

    def wait_for_changes(self, namespace: str, after: int, timeout: float) -> bool:
        """As the base class; on PostgreSQL a listener thread turns ``NOTIFY`` into same-process wake-ups."""
        if self.engine == "postgresql" and self._listener is None:
            self._start_listener()
        return super().wait_for_changes(namespace, after, timeout)

    def _start_listener(self) -> None:
        from ._postgresql import ChangeListener

        with self._slow_lock:
            if self._listener is None and not self._closed:
                self._listener = ChangeListener(self, self._sa_engine.url, self._changes.channel)

    # -- schema -------------------------------------------------------------------------

    def _ensure_schema(self) -> None:
        """Create the tables on first open; refuse a store whose schema version is unknown."""
        version = self._run("opening", self._d.read_version)
        if version is None:
            version = self._run("creating the tables", self._d.create_schema)
        elif version == 1:
            version = self._run("upgrading the tables to schema version 2", self._d.create_schema)
        if version != SCHEMA_VERSION:
            raise ConfigurationError(
                f"the tables {self._tables.data}, {self._tables.usage} in {self.where} have schema version "
                f"{version!r}, but this airssys-storage-sql understands version {SCHEMA_VERSION} only: "
                + (
                    "upgrade airssys-storage-sql"
                    if isinstance(version, int) and version > SCHEMA_VERSION
                    else "the tables were not written by airssys-storage-sql; choose another table_prefix"
                )
            )

    def _stored_version(self, item: Any) -> int | str | None:
        rows = self._fetchall(item, f"SELECT value FROM {self._tables.meta} WHERE name = 'schema_version'", ())
        return self._parse_version(rows[0][0]) if rows else None

    def _create_tables(self, item: Any) -> int | str | None:
        """The body of the dialect's ``create_schema``, which runs it holding the engine's lock.

        Creates the meta table, reads the version row, and creates the rest only when there
        is none, so it never touches tables of another version. A version 1 store is
        migrated (:meth:`_migrate`).
        """
        create_meta, create_others = self._d.ddl()
        self._execute(item, create_meta)
        version = self._d.read_version(item)
        if version is None:
            for statement in create_others:
                self._execute(item, statement)
            insert = self._sql(f"INSERT INTO {self._tables.meta} (name, value) VALUES ('schema_version', ?)")
            self._execute(item, insert, (str(SCHEMA_VERSION),))
            version = SCHEMA_VERSION
        elif version == 1:
            version = self._d.migrate(item)
        return version

    def _migrate(self, item: Any) -> int:
        """Upgrade a version 1 store to :data:`SCHEMA_VERSION` in place, keeping every row and counter.

        Rows get version 1 and no expiry, counter rows floor 0, and the ``ops``
        table is created. Each step is skipped when already done and the
        version row is written last, so on MariaDB (whose DDL commits on its
        own) an interrupted migration resumes on the next open; on SQLite and
        PostgreSQL it runs in the one transaction of the dialect's ``create_schema``.
        """
        steps = migration_steps(self._options.table_prefix, self.engine, self._sa_engine.dialect)
        for table, column, statements in steps:
            if not column or not self._d.has_column(item, table, column):
                for statement in statements:
                    self._execute(item, statement)
        update = self._sql(f"UPDATE {self._tables.meta} SET value = ? WHERE name = 'schema_version'")
        self._execute(item, update, (str(SCHEMA_VERSION),))
        return SCHEMA_VERSION

    @staticmethod
    def _parse_version(value: object) -> int | str | None:
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else str(value)
        return int(text) if text.isdigit() else text

    # -- administration -------------------------------------------------------------------

    def namespaces(self) -> list[str]:
        sql = f"SELECT ns FROM {self._tables.usage} WHERE key_count > 0"
        rows = self._run("namespaces", self._fetchall, sql, ())
        return sorted(row[0].decode() if isinstance(row[0], bytes) else row[0] for row in rows)

    def stats(self) -> dict[str, Any]:
        sql = f"SELECT count(*), sum(key_count), sum(used_bytes) FROM {self._tables.usage} WHERE key_count > 0"
        row = self._run("stats", self._fetchall, sql, ())[0]
        return {
            "engine": self.engine,
            "database": self.where,
            "table_prefix": self._options.table_prefix,
            "schema_version": SCHEMA_VERSION,
            "namespaces": int(row[0] or 0),
            "keys": int(row[1] or 0),
            "bytes": int(row[2] or 0),
            "connections": len(self._fairies),
            "retries": dict(self.retries),
        }

    # -- verification -------------------------------------------------------------------

    def verify(self, repair: bool = False, progress: Callable[[int], None] | None = None) -> VerifyReport:
        """Recount every namespace with one ``GROUP BY`` over the data, compare with the usage rows.

        Without *repair* the recount and the counters are read in one
        snapshot (a commit changes both in one transaction, so they agree in
        any snapshot) and writers are not held up. With *repair* the engine's
        write lock is held from the recount to the commit of the corrected
        rows (SQLite ``BEGIN IMMEDIATE``; PostgreSQL ``LOCK TABLE … SHARE ROW
        EXCLUSIVE``; MariaDB ``LOCK TABLES … WRITE``), so the rewrite is exact
        while other processes keep writing: they wait for it. The engine's
        integrity check (the dialect's ``integrity_check``) runs first; when it finds
        damage, counters are not rewritten (a recount of damaged tables is
        not trustworthy) and the report's ``problems`` name the fix.
        """
        problems = self._run("verify", self._d.integrity_problems)
        recounted = True
        try:
            stored, actual, bad, rows = self._run("verify", self._recount, repair and not problems)
        except StorageError:
            if not problems:
                raise
            stored, actual, bad, rows = {}, {}, [], []  # the damage stops the recount too: report what the check found
            recounted = False
        if progress is not None:
            progress(sum(usage.keys for usage in actual.values()))
        check = self._d.integrity_check
        checks = ["usage counters"] + ([check] if check else [])
        repaired = repair and not problems
        return verify_report(
            self.where,
            stored,
            actual,
            problems=problems,
            bad_keys=bad,
            bad_rows=rows,
            repaired=repaired,
            checks=checks,
            recounted=recounted,
        )

    def _recount(
        self, item: Any, repair: bool
    ) -> tuple[dict[str, Usage], dict[str, Usage], list[BadKey], list[BadRow]]:
        t = self._tables
        length = self._d.length_function
        self._d.verify_begin(item, repair)
        try:
            stored = {
                _text(ns): Usage(int(used), int(count))
                for ns, used, count in self._fetchall(item, f"SELECT ns, used_bytes, key_count FROM {t.usage}", ())
            }
            sql = f"SELECT ns, count(*), sum({length}(k) + {length}(v)) FROM {t.data} GROUP BY ns"
            actual = {_text(ns): Usage(int(used or 0), int(count)) for ns, count, used in self._fetchall(item, sql, ())}
            # Keys that break the key rules (written around the core): checked in Python, the
            # one definition of the rules; a scan of the keys, not of the values.
            size = self._sql(f"SELECT {length}(k) + {length}(v) FROM {t.data} WHERE ns = ? AND k = ?")
            # Rows whose cells are not bytes at all (SQLite's dynamic typing lets a tool store TEXT or a
            # number): no API call can reach them; the cells as stored, to delete them with --repair.
            foreign_sql = self._d.foreign_cells_sql()
            foreign = [] if foreign_sql is None else self._fetchall(item, foreign_sql, ())
            cells: list[tuple[Any, Any]] = [(ns, k) for ns, k in foreign]
            bad = [
                BadKey(
                    _text(ns),
                    k if isinstance(k, bytes) else str(k).encode(),
                    int(self._fetchall(item, size, (ns, k))[0][0]),
                    "its key or value is stored as SQLite TEXT or a number, not as bytes (BLOB)",
                )
                for ns, k in cells
            ]
            skip = set(cells)
            rows = [row for row in self._fetchall(item, f"SELECT ns, k FROM {t.data}", ()) if tuple(row) not in skip]
            for index, problem in key_problems([bytes(row[1]) for row in rows]):
                ns, k = _text(rows[index][0]), bytes(rows[index][1])
                bad.append(BadKey(ns, k, int(self._fetchall(item, size, (ns, k))[0][0]), problem))
                cells.append((ns, k))
                skip.add(tuple(rows[index]))  # the raw cells as fetched, as _bad_rows compares them
            damaged = self._bad_rows(item, skip, repair)
            if repair:
                delete = self._sql(f"DELETE FROM {t.data} WHERE ns = ? AND k = ?")
                for cell in cells:
                    self._execute(item, delete, cell)
                update = self._sql(f"UPDATE {t.usage} SET used_bytes = ?, key_count = ? WHERE ns = ?")
                for mismatch in verify_report(self.where, stored, actual, bad_keys=bad, bad_rows=damaged).mismatches:
                    self._execute(item, self._q_new_usage, (mismatch.namespace,))
                    self._execute(item, update, (mismatch.actual.bytes, mismatch.actual.keys, mismatch.namespace))
        finally:
            self._d.verify_end(item, repair)
        return stored, actual, bad, damaged

    def _bad_rows(self, item: Any, skip: set[tuple[Any, Any]], repair: bool) -> list[BadRow]:
        """Rows whose version or expiry is out of range, and their fix (:class:`BadRow`); applied with *repair*.

        *skip* holds the raw ``(ns, k)`` cells removed as bad keys. Fresh
        versions are numbered per namespace from above its highest sound
        version and its floor, in key order, so the same damage always gets
        the same fix. Runs inside the verify transaction (under the write
        lock with *repair*).
        """
        t, d = self._tables, self._d
        length = d.length_function
        sql = (
            f"SELECT ns, k, ver, exp, {length}(k) + {length}(v) FROM {t.data} "
            f"WHERE ({d.bad_version_sql}) OR ({d.bad_expiry_sql}) ORDER BY ns, k"
        )
        found = [row for row in self._fetchall(item, sql, ()) if (row[0], row[1]) not in skip]
        if not found:
            return []
        top = self._sql(f"SELECT max(ver) FROM {t.data} WHERE ns = ? AND NOT ({d.bad_version_sql})")
        floor = self._sql(f"SELECT floor FROM {t.usage} WHERE ns = ?")
        renumber = self._sql(f"UPDATE {t.data} SET ver = ? WHERE ns = ? AND k = ?")
        delete = self._sql(f"DELETE FROM {t.data} WHERE ns = ? AND k = ?")
        raise_floor = self._sql(f"UPDATE {t.usage} SET floor = ? WHERE ns = ? AND floor < ?")
        latest: dict[Any, int] = {}  # namespace -> the last version handed out (or the highest sound one)
        rows: list[BadRow] = []
        for ns, k, ver, exp, size in found:
            bad_version = version_problem(ver, MAX_STORED_VERSION)
            bad_expiry = expiry_problem(exp)
            version = ver
            if bad_version is not None:
                if ns not in latest:
                    (highest,) = self._fetchall(item, top, (ns,))[0]
                    floors = self._fetchall(item, floor, (ns,))
                    latest[ns] = max(int(highest or 0), int(floors[0][0]) if floors else 0)
                if latest[ns] >= MAX_STORED_VERSION:
                    raise StoreDamaged(
                        f"{self.where}: component {_text(ns)!r} has no version left above {latest[ns]} to give the "
                        f"row with key {bytes(k)!r} ({bad_version}); restore a backup"
                    )
                latest[ns] += 1
                version = latest[ns]
            if bad_expiry is not None:
                # Taken as expired: data meant to expire never comes back. Its (fresh) version raises the
                # floor, as any removal does, so the key re-created later gets a higher one.
                fix = f"removed as expired (the version floor becomes at least {version})"
                if repair:
                    self._execute(item, delete, (ns, k))
                    self._execute(item, self._q_new_usage, (ns,))
                    self._execute(item, raise_floor, (version, ns, version))
            else:
                fix = f"given version {version}"
                if repair:
                    self._execute(item, renumber, (version, ns, k))
            problem = "; ".join(text for text in (bad_version, bad_expiry) if text is not None)
            rows.append(BadRow(_text(ns), bytes(k), int(size), problem, fix, bad_expiry is not None))
        return rows

    def close(self) -> None:
        with self._slow_lock:
            self._closed = True
            if self._listener is not None:
                self._listener.stop()
            fairies = list(self._fairies.values())
            self._fairies.clear()
            self._connections = 0
            self._idle.clear()
        for fairy in fairies:
            try:
                fairy.close()
            except Exception:  # a dead connection cannot be closed cleanly; nothing is lost
                pass
        self._sa_engine.dispose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.where} prefix={self._options.table_prefix!r}>"
