"""PostgreSQL through psycopg 3: one round trip per operation.

Every operation is a single statement in autocommit mode, sent with binary
parameters and (after psycopg's fifth use) as a server-side prepared
statement. A single ``bytes`` parameter is binary under ``%s`` already; the
byte arrays of a batch are built here in PostgreSQL's binary array format
(:class:`ByteaArray`) and bound with ``%b``. Under ``%s`` psycopg sends a
``list`` in text format, every byte escaped as hex and parsed back by the
server (a 100-key batch of 64 KiB values ran at 0.08-0.11x raw), and even its
binary list dumper copies each value in Python (8 ms for 6.4 MB).

A commit (:meth:`SQLBackend.apply`) is a transaction: ``BEGIN``, the
namespace's counter row locked ``FOR UPDATE`` (every writer of the namespace,
on any host, takes that lock first, so the old rows read next stay current),
the old rows, the planner, the writes, ``COMMIT``. A deadlock or serialization
failure rolls it back and it is retried.

The single-key hot paths (``put_one``, ``delete_one``) are one data-modifying
CTE each, one round trip in autocommit mode, that

1. locks the counter row ``FOR UPDATE`` first (the same order as a commit);
2. upserts or deletes the row; the upsert sets ``replaced_len`` to the length
   of the value it replaces, ``ver`` to the old version + 1 (a new row: the
   locked row's floor + 1) and returns both, so the old size and version come
   from the row the statement itself locked;
3. adds the net delta to the counter row with an upsert whose ``DO UPDATE …
   WHERE used_bytes + delta <= limit`` is the guard. An upsert, because a
   first write to a namespace finds no counter row to lock, and ``ON
   CONFLICT`` sees (and locks) a row committed by a concurrent first write
   after the statement's snapshot; a plain ``UPDATE`` would miss it;
4. calls ``<prefix>refuse()`` when there was something to charge but the
   upsert charged nothing; it raises and so rolls the whole statement back:
   SQLSTATE ``AS002`` with the used bytes of the row the guard refused (its
   lock is held, so a fresh read sees that row), ``AS001`` when a first write
   larger than the whole limit finds no usage row to report (the backend
   inserts it and runs the statement again, which then refuses with AS002).

``test_sql_v2.py`` checks that they give what the planner gives.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any, ClassVar

from airssys_storage import ConfigurationError, InternalError, StorageError, quota_exceeded
from airssys_storage.planner import Event, KeyState, Plan, Put, SpaceState, Write, WriteKind

from ._schema import MAX_STORED_VERSION
from ._server import ServerDialect
from .backend import SINGLE, SQLBackend, StatementsByCount, describe

_first = itemgetter(0)
_new = tuple.__new__
_QUOTA = "AS002"
_NO_USAGE_ROW = "AS001"
_RETRY = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
#: PostgreSQL's largest field (a bytea value) and message (a statement with its parameters): 1 GB - 1.
_FIELD_MAXIMUM = 2**30 - 1
_BYTEA_OID, _BYTEA_ARRAY_OID = 17, 1001
_ARRAY_HEADER = struct.Struct("!iiiii")  # dimensions, has-nulls flag, element type, length, lower bound
_EMPTY_ARRAY = struct.pack("!iii", 0, 0, _BYTEA_OID)
_LENGTH = struct.Struct("!i")
_INCREMENT = WriteKind.INCREMENT
_INT64 = "-9223372036854775808 AND 9223372036854775807"


class ByteaArray:
    """A ``bytea[]`` parameter already in PostgreSQL's binary array format (``array_recv``'s input).

    ``data`` is the header, then each element's length (int32) and bytes: one
    ``join`` of the values, which the dumper that :func:`_dumper` returns sends as it is.
    """

    __slots__ = ("data",)

    def __init__(self, items: Sequence[bytes]) -> None:
        if not items:
            self.data = _EMPTY_ARRAY
            return
        parts = [_ARRAY_HEADER.pack(1, 0, _BYTEA_OID, len(items), 1)]
        pack = _LENGTH.pack
        for item in items:
            parts.append(pack(len(item)))
            parts.append(item)
        self.data = b"".join(parts)


@functools.cache
def _dumper() -> type:
    """psycopg's dumper for :class:`ByteaArray` (psycopg is imported only when a store opens)."""
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    class ByteaArrayDumper(Dumper):
        format = Format.BINARY
        oid = _BYTEA_ARRAY_OID

        def dump(self, obj: ByteaArray) -> bytes:
            return obj.data

    return ByteaArrayDumper


class PostgreSQLDialect(ServerDialect):
    """Tables in a PostgreSQL database, shared by any number of processes and hosts."""

    engine = "postgresql"
    length_function = "octet_length"
    label = "PostgreSQL"
    default_port = 5432
    driver_args: ClassVar[Mapping[str, Any]] = {"application_name": "airssys-storage"}

    def __init__(self, backend: SQLBackend) -> None:
        super().__init__(backend)
        self._options = backend._options
        self._tables = t = backend._tables
        refuse = f"{backend._options.table_prefix}refuse"
        self._refuse_function = refuse
        self._array_dumper = _dumper()
        #: id(cursor) -> the plan its open commit holds back: (namespace, plan, now) (see :meth:`end`).
        self._pending: dict[int, tuple[str, Plan, int]] = {}
        #: id(cursor) -> statements its open commit sends with COMMIT (the change feed's: see :meth:`defer`).
        self._deferred: dict[int, list[tuple[str, Sequence[Any]]]] = {}
        self._q_any = f"SELECT k, v, exp FROM {t.data} WHERE ns = %s AND k = ANY(%b::bytea[])"
        # The charge shared by the write statements; s(delta, count) is the net change. An
        # upsert, not an UPDATE, so that it sees a usage row committed after the statement's
        # snapshot (module docstring). A first write larger than the whole limit inserts
        # nothing (used + delta >= delta > limit) and is refused.
        charge = f"""
            u AS (
                INSERT INTO {t.usage} AS u (ns, used_bytes, key_count)
                SELECT %(ns)s, s.delta, s.count FROM s
                WHERE (s.delta <> 0 OR s.count <> 0)
                  AND (s.delta <= 0 OR %(limit)s::bigint IS NULL OR s.delta <= %(limit)s::bigint)
                ON CONFLICT (ns) DO UPDATE
                SET used_bytes = u.used_bytes + EXCLUDED.used_bytes, key_count = u.key_count + EXCLUDED.key_count
                WHERE EXCLUDED.used_bytes <= 0 OR %(limit)s::bigint IS NULL
                   OR u.used_bytes + EXCLUDED.used_bytes <= %(limit)s::bigint
                RETURNING 1
            )"""
        # The final SELECT's second column: refuses (and so rolls back) when u charged nothing.
        refuse_uncharged = f"""CASE WHEN (s.delta <> 0 OR s.count <> 0) AND NOT EXISTS (SELECT FROM u)
                        THEN {refuse}(%(ns)s, s.delta, s.count) END"""
        self._q_put = f"""
            WITH l AS (
                SELECT floor FROM {t.usage} WHERE ns = %(ns)s FOR UPDATE
            ), w AS (
                INSERT INTO {t.data} AS d (ns, k, v, ver)
                VALUES (%(ns)s, %(k)s, %(v)s, COALESCE((SELECT floor FROM l), 0) + 1)
                ON CONFLICT (ns, k) DO UPDATE
                SET replaced_len = octet_length(d.v), v = EXCLUDED.v, ver = d.ver + 1, exp = NULL
                RETURNING d.replaced_len, d.ver
            ), s AS (
                SELECT CASE WHEN w.replaced_len IS NULL THEN %(size)s::bigint
                            ELSE %(vlen)s::bigint - w.replaced_len END AS delta,
                       CASE WHEN w.replaced_len IS NULL THEN 1 ELSE 0 END AS count
                FROM w
            ), {charge}
            SELECT w.ver, {refuse_uncharged} FROM s, w"""
        # The planner's INCREMENT (no condition, no op id) in one statement, as the put: the
        # counter row locked first, then the upsert, whose DO UPDATE computes the new number
        # from the row it locked (a missing key is %(v0)s = delta). Its WHERE admits only what
        # the planner would accept: a live value that is the decimal ASCII of a signed 64-bit
        # integer (the planner's decode_counter: -?[0-9]+, at most 20 bytes) with a result in
        # range, or an expired row (which counts as 0 and loses its expiry), below the last
        # storable version. Otherwise nothing is written and no row comes back, and the
        # general path runs, whose planner raises the error. replaced_len is the old size,
        # -1 - size when the old row had expired.
        expired = "(d.exp IS NOT NULL AND d.exp <= %(now)s)"
        text = "encode(d.v, 'escape')"
        self._q_increment = f"""
            WITH l AS (
                SELECT used_bytes, key_count, floor FROM {t.usage} WHERE ns = %(ns)s FOR UPDATE
            ), w AS (
                INSERT INTO {t.data} AS d (ns, k, v, ver)
                VALUES (%(ns)s, %(k)s, %(v0)s, COALESCE((SELECT floor FROM l), 0) + 1)
                ON CONFLICT (ns, k) DO UPDATE
                SET replaced_len = CASE WHEN {expired} THEN -1 - octet_length(d.v) ELSE octet_length(d.v) END,
                    v = CASE WHEN {expired} THEN EXCLUDED.v
                             ELSE convert_to(({text}::numeric + %(delta)s::numeric)::text, 'UTF8') END,
                    ver = d.ver + 1,
                    exp = CASE WHEN {expired} THEN NULL ELSE d.exp END
                WHERE d.ver < {MAX_STORED_VERSION} AND CASE
                    WHEN {expired} THEN true
                    WHEN octet_length(d.v) <= 20 AND {text} ~ '^-?[0-9]+$'
                        THEN {text}::numeric BETWEEN {_INT64}
                             AND {text}::numeric + %(delta)s::numeric BETWEEN {_INT64}
                    ELSE false END
                RETURNING d.replaced_len, d.ver, d.v, d.exp
            ), s AS (
                SELECT CASE WHEN w.replaced_len IS NULL THEN %(klen)s::bigint + octet_length(w.v)
                            WHEN w.replaced_len < 0 THEN octet_length(w.v) + 1 + w.replaced_len
                            ELSE octet_length(w.v) - w.replaced_len END AS delta,
                       CASE WHEN w.replaced_len IS NULL THEN 1 ELSE 0 END AS count
                FROM w
            ), {charge}
            SELECT w.v, w.ver, w.exp, w.replaced_len, s.delta, s.count,
                   (SELECT used_bytes FROM l), (SELECT key_count FROM l), (SELECT floor FROM l),
                   {refuse_uncharged} FROM s, w"""
        # Removing only shrinks, so a plain UPDATE charges it; the counter row exists (a
        # row of the namespace does) and is locked first, as by every writer.
        self._q_delete = f"""
            WITH l AS (
                SELECT 1 FROM {t.usage} WHERE ns = %(ns)s FOR UPDATE
            ), x AS (
                DELETE FROM {t.data} WHERE ns = %(ns)s AND k = %(k)s AND EXISTS (SELECT FROM l)
                RETURNING octet_length(k) + octet_length(v) AS size, ver, exp
            ), u AS (
                UPDATE {t.usage} AS u
                SET used_bytes = u.used_bytes - x.size, key_count = u.key_count - 1, floor = GREATEST(u.floor, x.ver)
                FROM x WHERE u.ns = %(ns)s
                RETURNING 1
            )
            SELECT count(*), max(x.exp) FROM x"""

    def check_limits(self, max_key_bytes: int, max_value_bytes: int) -> None:
        # The statement's message carries the namespace, the key, sizes and the value: keep 64 KiB for them.
        ceiling = _FIELD_MAXIMUM - max_key_bytes - 65536
        if max_value_bytes > ceiling:
            raise ConfigurationError(
                f"max_value_bytes = {max_value_bytes} is more than {self.where} can store: PostgreSQL's largest "
                f"field and message are 1 GB ({_FIELD_MAXIMUM + 1} bytes), so the largest value is {ceiling} bytes; "
                f"lower max_value_bytes to at most {ceiling}"
            )

    def setup(self, dbapi_connection: Any) -> Any:
        conn = dbapi_connection
        conn.autocommit = True
        conn.adapters.register_dumper(ByteaArray, self._array_dumper)
        cursor = conn.cursor(binary=True)
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED")
        cursor.execute(f"SET lock_timeout = {self._options.lock_timeout_ms}")
        return cursor

    def keyed(self, statements: StatementsByCount, head: tuple[Any, ...], keys: Sequence[bytes]) -> tuple[str, Any]:
        # One array parameter, not an IN list: a prepared statement's generic plan for a list of
        # 100 parameters scanned the whole table (a 100-key batch took 27 ms instead of 7 ms).
        return statements.with_array("%b::bytea[]"), (*head, ByteaArray(keys))

    def get_many_query(self, namespace: str, keys: Sequence[bytes]) -> tuple[str, tuple[Any, ...]]:
        # One array parameter: a single statement text for any number of keys.
        return self._q_any, (namespace, ByteaArray(keys))

    # -- writes -------------------------------------------------------------------------

    def statement(self, cursor: Any, sql: str, params: dict[str, Any], limit: int | None) -> Any:
        """Run a hot-path statement (autocommit, through ``SQLBackend._use``); its row.

        Refusals become quota-exceeded.
        """
        for attempt in (0, 1):
            try:
                cursor.execute(sql, params)
                return cursor.fetchone()
            except Exception as exc:
                state = getattr(exc, "sqlstate", None)
                if state == _QUOTA and limit is not None:
                    used, delta = map(int, exc.diag.message_detail.split())  # type: ignore[attr-defined]
                    raise quota_exceeded(params["ns"], used, delta, limit) from None
                if state != _NO_USAGE_ROW or attempt:
                    raise
            # A first write larger than the whole limit: create the row, so that the guard refuses against it.
            self.backend.retries["new namespace"] += 1
            cursor.execute(self.backend._q_new_usage, (params["ns"],))
        raise AssertionError("unreachable")  # pragma: no cover

    def put_one(self, namespace: str, key: bytes, value: bytes, limit: int | None) -> int:
        params = {
            "ns": namespace,
            "k": key,
            "v": value,
            "size": len(key) + len(value),
            "vlen": len(value),
            "limit": limit,
        }
        return int(self.backend._use("set", SINGLE, self.statement, self._q_put, params, limit)[0])

    def apply(self, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        if len(writes) == 1:
            write = writes[0]
            if write[1] is _INCREMENT and write[4] is None and write[6] is None:
                planned = self._increment(namespace, write, limit)
                if planned is not None:
                    return planned
        return super().apply(namespace, writes, limit)

    def _increment(self, namespace: str, write: Write, limit: int | None) -> Plan | None:
        """A plain increment in one statement (see ``_q_increment``); ``None`` when the planner must decide.

        Returns the plan the planner would give (the counter row as locked, plus the change).
        """
        key, delta = write[0], write[5]
        if not -(2**63) <= delta < 2**63:
            return None
        now = self.backend.clock()
        params = {
            "ns": namespace,
            "k": key,
            "v0": str(delta).encode(),
            "delta": delta,
            "klen": len(key),
            "now": now,
            "limit": limit,
        }
        row = self.backend._use("write", SINGLE, self.statement, self._q_increment, params, limit)
        if row is None:
            return None
        value, version, expires_at, replaced, size_delta, count, used, keys, floor, _ = row
        value = bytes(value)
        space = SpaceState(int(used or 0), int(keys or 0), int(floor or 0))
        after = SpaceState(space.bytes + size_delta, space.keys + count, space.floor)
        changed = bool(size_delta or count)
        return Plan(
            [Put(key, value, version, expires_at)],
            [],
            after if changed else space,
            changed,
            [int(value)],
            [replaced is not None and replaced >= 0],
            [Event(key, "set", version)],
            [],
        )

    def delete_one(self, namespace: str, key: bytes) -> bool:
        params = {"ns": namespace, "k": key}
        count, expires_at = self.backend._use("delete", SINGLE, self.statement, self._q_delete, params, None)
        return bool(count) and (expires_at is None or expires_at > self.backend.clock())

    # -- transactions -----------------------------------------------------------------------
    #
    # A commit's statements travel in psycopg pipelines: BEGIN, the counter-row lock and the
    # read of the old rows in one round trip, the writes and COMMIT in a second (six round
    # trips one by one; write_plan holds the plan back for end to send). The server still
    # runs them in order, so the rows are read after the lock is held.

    def begin(self, item: Any) -> None:
        """Nothing yet: ``BEGIN`` goes with the first reads of the commit (:meth:`lock_space`, :meth:`read_state`)."""
        self._pending.pop(id(item), None)  # left by a commit that failed before its end
        self._deferred.pop(id(item), None)

    def lock_space(self, item: Any, namespace: str) -> SpaceState:
        with item.connection.pipeline():
            item.execute("BEGIN")
            item.execute(self.backend._w.space, (namespace,))
        return self._locked_space(item, namespace)

    def _locked_space(self, item: Any, namespace: str) -> SpaceState:
        """The counter row the pipeline read; a missing one is created and locked (the namespace's first write)."""
        rows = item.fetchall()
        if not rows:
            item.execute(self.backend._q_new_usage, (namespace,))
            rows = self.fetchall(item, self.backend._w.space, (namespace,))
        return _new(SpaceState, rows[0])

    def read_state(
        self, item: Any, namespace: str, keys: Sequence[bytes], values: bool
    ) -> tuple[SpaceState, dict[bytes, KeyState]]:
        w = self.backend._w
        reader = item.connection.cursor(binary=True)
        with item.connection.pipeline():
            item.execute("BEGIN")
            item.execute(w.space, (namespace,))
            reader.execute(*self.keyed(w.rows_values if values else w.rows, (namespace,), keys))
        if not item.rowcount:  # no counter row was locked: the rows must be read again under the new one
            return self._locked_space(item, namespace), self.backend._read_rows(item, namespace, keys, values)
        return self._locked_space(item, namespace), {key: _new(KeyState, state) for key, *state in reader}

    def write_plan(self, item: Any, namespace: str, planned: Plan, now: int) -> None:
        """Hold the plan back: :meth:`end` sends its writes with ``COMMIT``, in one pipeline."""
        self._pending[id(item)] = (namespace, planned, now)

    def write_space(self, item: Any, namespace: str, space: SpaceState) -> None:
        # The row exists (the commit locked it); in a pipeline no rowcount is known yet.
        self.execute(item, self.backend._w.set_space, (space.bytes, space.keys, space.floor, namespace))

    def defer(self, item: Any, sql: str, params: Sequence[Any]) -> None:
        """Send *sql* with the commit's held-back writes and ``COMMIT``, in their pipeline (no own round trip)."""
        self._deferred.setdefault(id(item), []).append((sql, params))

    def end(self, item: Any) -> None:
        pending = self._pending.pop(id(item), None)
        deferred = self._deferred.pop(id(item), ())
        if pending is None and not deferred:
            item.execute("COMMIT")
            return
        with item.connection.pipeline():
            if pending is not None:
                super().write_plan(item, *pending)
            for sql, params in deferred:
                item.execute(sql, params)
            item.execute("COMMIT")

    def retryable(self, exc: Exception) -> bool:
        return getattr(exc, "sqlstate", None) in _RETRY

    # -- connection state ------------------------------------------------------------------

    def rollback(self, item: Any) -> None:
        self._pending.pop(id(item), None)
        self._deferred.pop(id(item), None)
        if item.connection.info.transaction_status != 0:  # not IDLE: a transaction is open or failed
            item.connection.rollback()

    def is_disconnect(self, item: Any, exc: Exception) -> bool:
        conn = item.connection
        return bool(conn.closed or conn.broken or super().is_disconnect(item, exc))

    def translate(self, exc: Exception, action: str) -> StorageError:
        state = getattr(exc, "sqlstate", None)
        if state in (_QUOTA, _NO_USAGE_ROW):
            # statement() turns a refusal under a limit into quota-exceeded; these are not refusals.
            return InternalError(
                f"{self.where}: the quota guard of the {action} statement failed unexpectedly "
                f"({'refused a write without a limit' if state == _QUOTA else 'the usage row stayed missing'}: "
                f"{describe(exc)}); the write was rolled back"
            )
        if state == "55P03":  # lock_not_available
            return InternalError(
                f"{self.where}: a lock stayed held by another writer for more than "
                f"{self._options.lock_timeout:g} s during {action}; retry, or raise backend_options.lock_timeout"
            )
        return super().translate(exc, action)

    # -- verification ---------------------------------------------------------------------

    def verify_begin(self, item: Any, repair: bool) -> None:
        if repair:
            item.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            # Blocks every writer (ROW EXCLUSIVE) but no reader, and another repair; taken
            # before the snapshot, which starts at the first query after it.
            item.execute(f"LOCK TABLE {self._tables.data}, {self._tables.usage} IN SHARE ROW EXCLUSIVE MODE")
        else:
            item.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def verify_end(self, item: Any, repair: bool) -> None:
        if item.connection.info.transaction_status != 0:
            item.execute("COMMIT")

    # -- schema ---------------------------------------------------------------------------

    def meta_exists(self, item: Any) -> bool:
        return self.fetchall(item, "SELECT to_regclass(%s)::text", (self._tables.meta,))[0][0] is not None

    def has_column(self, item: Any, table: str, column: str) -> bool:
        sql = "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s AND NOT attisdropped"
        return bool(self.fetchall(item, sql, (table, column)))

    def create_schema(self, item: Any) -> int | str | None:
        digest = hashlib.sha256(f"airssys-storage:{self._options.table_prefix}".encode()).digest()
        lock = int.from_bytes(digest[:8], "big", signed=True)
        with item.connection.transaction():
            # Concurrent first opens take turns (CREATE TABLE IF NOT EXISTS alone can race in the catalog).
            item.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            # An advisory lock does not refresh this session's catalog cache (a relation
            # lock does): creating the meta table first makes the version read current.
            return self.backend._create_tables(item)

    def migrate(self, item: Any) -> int:
        self.execute(item, self._refuse_ddl())  # CREATE OR REPLACE: the hot paths call it
        return super().migrate(item)

    def ddl(self) -> tuple[str, list[str]]:
        create_meta, create_others = super().ddl()
        return create_meta, [*create_others, self._refuse_ddl()]

    def _refuse_ddl(self) -> str:
        return f"""
            CREATE OR REPLACE FUNCTION {self._refuse_function}(p_ns text, p_delta bigint, p_count bigint)
            RETURNS integer LANGUAGE plpgsql AS $fn$
            DECLARE
                v_used bigint;
            BEGIN
                IF p_delta = 0 AND p_count = 0 THEN
                    RETURN 0;  -- nothing to charge, so nothing to refuse
                END IF;
                SELECT used_bytes INTO v_used FROM {self._tables.usage} WHERE ns = p_ns;
                IF NOT FOUND THEN
                    RAISE EXCEPTION 'airssys-storage: namespace % has no usage row yet', p_ns
                        USING ERRCODE = '{_NO_USAGE_ROW}';
                END IF;
                RAISE EXCEPTION 'airssys-storage: quota exceeded for %', p_ns
                    USING ERRCODE = '{_QUOTA}', DETAIL = v_used::text || ' ' || p_delta::text;
            END
            $fn$"""


class ChangeListener:
    """The change feed's push channel on PostgreSQL: ``LISTEN`` on one connection, in a daemon thread.

    Each ``NOTIFY`` (sent by a commit that appended events, with the
    namespace as payload, delivered when it commits) wakes this process's
    watchers (:meth:`StorageBackend.notify_changes`); they then pull, so a
    lost notification delays a watcher by at most the backend's poll
    interval (raised to :data:`SAFETY_POLL_SECONDS` while listening), never
    loses an event. A dropped connection is reopened after a second.
    """

    #: The poll interval while notifications arrive, in seconds (a safety net for a lost connection).
    SAFETY_POLL_SECONDS = 1.0

    def __init__(self, backend: SQLBackend, url: Any, channel: str) -> None:
        import threading

        self._backend = backend
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._channel = channel
        self._stopped = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="airssys-storage change listener", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        import psycopg
        from psycopg import sql

        backend = self._backend
        while not self._stopped.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    backend.change_poll_seconds = max(backend.change_poll_seconds or 0, self.SAFETY_POLL_SECONDS)
                    self._ready.set()
                    while not self._stopped.is_set():
                        for notice in conn.notifies(timeout=0.5):
                            backend.notify_changes(notice.payload)
            except Exception:  # the watchers fall back to polling; try again in a second
                backend.change_poll_seconds = min(backend.change_poll_seconds or 0.01, 0.01)
                self._ready.set()
                self._stopped.wait(1.0)

    def stop(self) -> None:
        """Stop listening (the thread ends within half a second)."""
        self._stopped.set()
