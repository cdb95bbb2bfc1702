"""MariaDB (and MySQL) through PyMySQL.

Every connection sets a strict ``sql_mode`` (so an oversized or invalid value
is an error, never silently cut), ``READ COMMITTED`` (no gap locks: writers
of different namespaces do not block each other at namespace boundaries) and
the lock wait timeout. Reads are autocommit statements; a write is
:meth:`SQLBackend.apply`'s explicit transaction, which first locks the
namespace's usage row ``FOR UPDATE`` (creating it if needed), making it the
namespace's only writer on every host. Deadlocks roll the transaction back and
are retried.

The single-key hot paths (``put_one``, ``delete_one``) are one ``CALL`` each
of a stored procedure (``<prefix>put``, ``<prefix>delete``) that runs the same
transaction on the server: about six round trips become one (a single call
was measured 1.78x faster). The procedures are the planner's PUT and DELETE
written in SQL; ``test_sql_v2.py`` checks that they give what the planner gives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from airssys_storage import ConfigurationError, InternalError, InvalidKey, StorageError, quota_exceeded
from airssys_storage.planner import Event, KeyState, Plan, Put, SpaceState, Write, WriteKind

from ._schema import MARIADB_MAX_KEY_BYTES, MAX_STORED_VERSION
from ._server import ServerDialect
from .backend import CHUNK, SINGLE, SQLBackend, describe

_STRICT = "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
_SERVER_STATUS_IN_TRANS = 1
# Server error numbers.
_ER_LOCK_DEADLOCK = 1213
_ER_CHECKREAD = 1020  # "record has changed since last read" (MariaDB snapshot isolation)
_ER_LOCK_WAIT_TIMEOUT = 1205
_ER_DATA_TOO_LONG = 1406
_ER_NET_PACKET_TOO_LARGE = 1153
_ER_NO_SUCH_TABLE = 1146
_ER_SP_DOES_NOT_EXIST = 1305
#: The largest max_allowed_packet a MariaDB / MySQL server accepts.
_PACKET_MAXIMUM = 1024 * 1024 * 1024
#: The longest namespace (component id) written into a statement.
_MAX_NAMESPACE = 63
#: PyMySQL's CLIENT.MULTI_STATEMENTS flag: several statements, separated by ``;``, in one round trip.
_CLIENT_MULTI_STATEMENTS = 1 << 16
#: Held-back write statements are sent once they reach this many characters (PyMySQL's own
#: ``max_stmt_length`` for a multi-row INSERT), so a batch of large values never builds a
#: statement near ``max_allowed_packet``.
_SEND_AT = 1_024_000
#: Sent before and after the statements of a commit that carry raw value bytes (see :class:`_Writes`).
_BINARY_CLIENT = b"SET character_set_client = binary"
_TEXT_CLIENT = "SET character_set_client = utf8mb4"
_new = tuple.__new__
_INCREMENT = WriteKind.INCREMENT


class _Writes:
    """The write statements of one commit, held back to travel with its ``COMMIT`` in one round trip.

    :meth:`MariaDBDialect.execute` and :meth:`MariaDBDialect.upsert_many`
    given this instead of a cursor add their statements (bound by PyMySQL's
    own escaping, or the batch's rows as bytes) here; :meth:`MariaDBDialect.end`
    sends them and ``COMMIT`` as one multi-statement. Past :data:`_SEND_AT`
    bytes the statements so far are sent at once (still inside the open
    transaction). Statements holding raw value bytes (:func:`_quoted`) are
    read by the server with ``character_set_client = binary``: the first
    piece that carries them switches the session to it, and the last piece
    switches it back before ``COMMIT`` (a failure in between leaves the
    switch to :meth:`MariaDBDialect.rollback`).
    """

    __slots__ = ("binary", "cursor", "parts", "size", "switched")

    def __init__(self, cursor: Any, switched: set[int]) -> None:
        self.cursor = cursor
        self.parts: list[str | bytes] = []
        self.size = 0
        #: Whether a part holds raw bytes, so the piece must be read as binary.
        self.binary = False
        #: The dialect's ids of connections left with a binary client character set.
        self.switched = switched

    def add(self, sql: str | bytes) -> None:
        if self.parts and self.size + len(sql) > _SEND_AT:
            self.send()
        self.parts.append(sql)
        self.size += len(sql) + 1
        if type(sql) is bytes:
            self.binary = True

    def send(self, last: str | None = None) -> None:
        """Run the statements held back (and *last*), reading every result so that errors surface."""
        parts = self.parts
        key = id(self.cursor)
        switched = key in self.switched
        if self.binary and not switched:
            parts.insert(0, _BINARY_CLIENT)
            self.switched.add(key)
            switched = True
        if last is not None:
            if switched:
                parts.append(_TEXT_CLIENT)
            parts.append(last)
        if parts:
            if switched:
                _run_all(
                    self.cursor, b";".join([part if type(part) is bytes else str(part).encode() for part in parts])
                )
            else:  # no bytes among them
                _run_all(self.cursor, ";".join(map(str, parts)))
        if last is not None and switched:
            self.switched.discard(key)
        self.parts = []
        self.size = 0
        self.binary = False


def _quoted(value: bytes) -> bytes:
    """*value* as a ``_binary'…'`` literal for a statement read with ``character_set_client = binary``.

    Backslash, quote and NUL are escaped (the session's ``sql_mode`` keeps
    backslash escapes on); every other byte goes as it is, so a random value
    grows by about 1.2% (at most twice its size, as PyMySQL's hex literal).
    """
    return b"_binary'" + value.replace(b"\\", b"\\\\").replace(b"'", b"\\'").replace(b"\0", b"\\0") + b"'"


def _run_all(cursor: Any, sql: str | bytes) -> None:
    """Run a multi-statement and read all its results (an error in any statement raises here)."""
    cursor.execute(sql)
    while cursor.nextset():
        pass


def _errno(exc: Exception) -> int:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else 0


class MariaDBDialect(ServerDialect):
    """Tables in a MariaDB/MySQL database, shared by any number of processes and hosts."""

    engine = "mariadb"
    keep_existing_usage = "ON DUPLICATE KEY UPDATE ns = ns"
    integrity_check = "CHECK TABLE"
    label = "MariaDB"
    default_port = 3306
    # binary_prefix: bytes are sent as _binary'…', so the server never checks them against the charset.
    # client_flag: multi-statements, so that a commit's first reads and its writes + COMMIT are two
    # round trips (six or more one by one); only statements bound by PyMySQL are ever joined.
    driver_args: ClassVar[Mapping[str, Any]] = {
        "charset": "utf8mb4",
        "binary_prefix": True,
        "client_flag": _CLIENT_MULTI_STATEMENTS,
    }

    def __init__(self, backend: SQLBackend) -> None:
        super().__init__(backend)
        self._options = backend._options
        self._tables = backend._tables
        prefix = self._options.table_prefix
        self._q_put_one = f"CALL {prefix}put(%s, %s, %s, %s)"
        self._q_delete_one = f"CALL {prefix}delete(%s, %s)"
        self._q_increment = f"CALL {prefix}incr(%s, %s, %s, %s, %s)"
        self._upsert_head = f"INSERT INTO {self._tables.data} (ns, k, v, ver, exp) VALUES ".encode()
        self._upsert_tail = b" " + self.upsert_clause(("ns", "k"), ("v", "ver", "exp")).encode()
        #: id(cursor) -> the write statements its open commit holds back (see :class:`_Writes`).
        self._pending: dict[int, _Writes] = {}
        #: ids of the cursors whose session reads binary now: a commit between its pieces, or one that failed there.
        self._binary: set[int] = set()

    @staticmethod
    def upsert_clause(conflict: Sequence[str], columns: Sequence[str]) -> str:
        return "ON DUPLICATE KEY UPDATE " + ", ".join(f"{column} = VALUES({column})" for column in columns)

    def setup(self, dbapi_connection: Any) -> Any:
        conn = dbapi_connection
        conn.autocommit(True)
        cursor = conn.cursor()
        cursor.execute(f"SET SESSION sql_mode = '{_STRICT}'")
        cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {self._options.lock_timeout_s}")
        return cursor

    # -- limits ------------------------------------------------------------------------

    def value_ceiling(self, packet: int, max_key_bytes: int) -> int:
        """The largest value one upsert can carry when the server's ``max_allowed_packet`` is *packet* bytes.

        PyMySQL writes bytes into the statement text as ``_binary X'…'``: two hex
        digits per byte. The packet is the command byte plus the statement: its
        text, the quoted namespace, the key and the value, each hex-encoded. A
        batch's rows (:meth:`upsert_many`) are no longer: a value's escaped bytes
        are at most twice as many, and the switch to a binary client character
        set that may precede the statement is counted here.
        """
        text = len(self.backend._w.upsert) - 5 * len("%s") + 2 * len("9223372036854775807")
        text += len(_BINARY_CLIENT) + 1
        quoted = (_MAX_NAMESPACE + 2) + 2 * len("_binary X''")
        return (packet - 1 - text - quoted - 2 * max_key_bytes) // 2

    def check_limits(self, max_key_bytes: int, max_value_bytes: int) -> None:
        if max_key_bytes > MARIADB_MAX_KEY_BYTES:
            raise ConfigurationError(
                f"max_key_bytes = {max_key_bytes} is above the {MARIADB_MAX_KEY_BYTES} bytes the MariaDB key column "
                f"of {self.where} holds: lower max_key_bytes to at most {MARIADB_MAX_KEY_BYTES}"
            )
        rows = self.backend._run("reading max_allowed_packet", self.fetchall, "SELECT @@max_allowed_packet", ())
        packet = int(rows[0][0])
        ceiling = self.value_ceiling(packet, max_key_bytes)
        if max_value_bytes <= ceiling:
            return
        needed = packet + 2 * (max_value_bytes - ceiling)
        fix = (
            f"lower max_value_bytes to at most {ceiling}, or raise max_allowed_packet on the server to at least "
            f"{needed} (SET GLOBAL max_allowed_packet = {needed}, and max_allowed_packet = {needed} under [mysqld] "
            "in its configuration so that it survives a restart)"
            if needed <= _PACKET_MAXIMUM
            else f"lower max_value_bytes to at most {self.value_ceiling(_PACKET_MAXIMUM, max_key_bytes)} (the most "
            f"any MariaDB server accepts) and raise max_allowed_packet on the server accordingly, or at most {ceiling} "
            "with its current setting"
        )
        raise ConfigurationError(
            f"max_value_bytes = {max_value_bytes} is more than {self.where} can store: its max_allowed_packet is "
            f"{packet} bytes, and a value travels hex-encoded (two bytes per byte) in one statement, so the largest "
            f"value is {ceiling} bytes; {fix}"
        )

    # -- single-key hot paths ----------------------------------------------------------------

    def _call(self, cursor: Any, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
        """``CALL`` a hot-path procedure (through ``SQLBackend._use``); its one result row."""
        try:
            cursor.execute(sql, params)
        except Exception as exc:
            if _errno(exc) != _ER_SP_DOES_NOT_EXIST:
                raise
            self._create_procedures(cursor)  # dropped by hand: create them again
            cursor.execute(sql, params)
        row = cursor.fetchone()
        while cursor.nextset():  # the CALL's own status result
            pass
        return row  # type: ignore[no-any-return]

    def put_one(self, namespace: str, key: bytes, value: bytes, limit: int | None) -> int:
        version, used, delta = self.backend._use(
            "set", SINGLE, self._call, self._q_put_one, (namespace, key, value, limit)
        )
        if version < 0:  # the guard refused; the procedure rolled back
            assert limit is not None
            raise quota_exceeded(namespace, int(used), int(delta), limit)
        return int(version)

    def delete_one(self, namespace: str, key: bytes) -> bool:
        found, expires_at = self.backend._use("delete", SINGLE, self._call, self._q_delete_one, (namespace, key))
        return bool(found) and (expires_at is None or expires_at > self.backend.clock())

    def apply(self, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        if len(writes) == 1:
            write = writes[0]
            if write[1] is _INCREMENT and write[4] is None and write[6] is None:
                planned = self._increment(namespace, write, limit)
                if planned is not None:
                    return planned
        return super().apply(namespace, writes, limit)

    def _increment(self, namespace: str, write: Write, limit: int | None) -> Plan | None:
        """A plain increment in one ``CALL`` of ``<prefix>incr``; ``None`` when the planner must decide.

        Returns the plan the planner would give (the counter row as locked, plus the change).
        """
        key, delta = write[0], write[5]
        now = self.backend.clock()
        params = (namespace, key, delta, limit, now)
        row = self.backend._use("increment", SINGLE, self._call, self._q_increment, params)
        status, value, version, expires_at, existed, size_delta, count, used, keys, floor = row
        if status == 2:  # no counter, an overflow or the last version: the planner raises the error
            return None
        if status == 1:  # the guard refused; the procedure rolled back
            assert limit is not None
            raise quota_exceeded(namespace, int(used), int(size_delta), limit)
        value = bytes(value)
        space = SpaceState(int(used), int(keys), int(floor))
        changed = bool(size_delta or count)
        after = SpaceState(space.bytes + int(size_delta), space.keys + int(count), space.floor) if changed else space
        return Plan(
            [Put(key, value, int(version), expires_at)],
            [],
            after,
            changed,
            [int(value)],
            [bool(existed)],
            [Event(key, "set", int(version))],
            [],
        )

    def ddl(self) -> tuple[str, list[str]]:
        create_meta, create_others = super().ddl()
        return create_meta, [*create_others, *self._procedures()]

    def migrate(self, item: Any) -> int:
        version = super().migrate(item)
        self._create_procedures(item)
        return version

    def _create_procedures(self, item: Any) -> None:
        for statement in self._procedures():
            self.execute(item, statement)

    def _procedures(self) -> list[str]:
        """``DROP`` / ``CREATE`` of the hot-path procedures: the planner's one-key PUT and DELETE, in one call.

        Each locks the counter row first (creating it if needed), like every commit.
        ``put`` returns ``(version, used, delta)``, version ``-1`` when the guard
        refused (rolled back); ``delete`` returns ``(removed, expiry of the removed row)``.
        """
        prefix, t = self._options.table_prefix, self._tables
        lock = f"""
            SELECT used_bytes, floor INTO v_used, v_floor FROM {t.usage} WHERE ns = p_ns FOR UPDATE;
            IF v_used IS NULL THEN
                INSERT INTO {t.usage} (ns, used_bytes, key_count, floor) VALUES (p_ns, 0, 0, 0)
                    ON DUPLICATE KEY UPDATE ns = ns;
                SELECT used_bytes, floor INTO v_used, v_floor FROM {t.usage} WHERE ns = p_ns FOR UPDATE;
            END IF;"""
        declare = """
            DECLARE v_used, v_floor, v_size, v_ver, v_exp BIGINT DEFAULT NULL;
            DECLARE v_missing INT DEFAULT 0;
            DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_missing = 1;
            DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;"""
        put = f"""
            CREATE PROCEDURE {prefix}put(p_ns VARBINARY(64), p_k VARBINARY({MARIADB_MAX_KEY_BYTES}),
                                         p_v LONGBLOB, p_limit BIGINT)
            BEGIN
                DECLARE v_delta, v_count BIGINT;{declare}
                START TRANSACTION;{lock}
                SELECT LENGTH(v), ver INTO v_size, v_ver FROM {t.data} WHERE ns = p_ns AND k = p_k;
                IF v_size IS NULL THEN
                    SET v_delta = LENGTH(p_k) + LENGTH(p_v), v_count = 1, v_ver = v_floor + 1;
                ELSE
                    SET v_delta = LENGTH(p_v) - v_size, v_count = 0, v_ver = v_ver + 1;
                END IF;
                IF p_limit IS NOT NULL AND v_delta > 0 AND v_used + v_delta > p_limit THEN
                    ROLLBACK;
                    SELECT -1, v_used, v_delta;
                ELSE
                    INSERT INTO {t.data} (ns, k, v, ver, exp) VALUES (p_ns, p_k, p_v, v_ver, NULL)
                        ON DUPLICATE KEY UPDATE v = VALUES(v), ver = VALUES(ver), exp = NULL;
                    IF v_delta <> 0 OR v_count <> 0 THEN
                        UPDATE {t.usage} SET used_bytes = used_bytes + v_delta, key_count = key_count + v_count
                            WHERE ns = p_ns;
                    END IF;
                    COMMIT;
                    SELECT v_ver, v_used, v_delta;
                END IF;
            END"""
        delete = f"""
            CREATE PROCEDURE {prefix}delete(p_ns VARBINARY(64), p_k VARBINARY({MARIADB_MAX_KEY_BYTES}))
            BEGIN{declare}
                START TRANSACTION;{lock}
                SELECT LENGTH(k) + LENGTH(v), ver, exp INTO v_size, v_ver, v_exp
                    FROM {t.data} WHERE ns = p_ns AND k = p_k;
                IF v_size IS NOT NULL THEN
                    DELETE FROM {t.data} WHERE ns = p_ns AND k = p_k;
                    UPDATE {t.usage} SET used_bytes = used_bytes - v_size, key_count = key_count - 1,
                        floor = GREATEST(floor, v_ver) WHERE ns = p_ns;
                END IF;
                COMMIT;
                SELECT v_size IS NOT NULL, v_exp;
            END"""
        # The planner's INCREMENT (no condition, no op id): status 0 with the new row, 1 when the
        # guard refused, 2 (nothing written) for what only the planner's error can answer: a live
        # value that is no decimal ASCII of a signed 64-bit integer (decode_counter: -?[0-9]+, at
        # most 20 bytes), a result out of range, or a row at the last storable version. An
        # expired row counts as 0 and loses its expiry; a live one keeps it.
        increment = f"""
            CREATE PROCEDURE {prefix}incr(p_ns VARBINARY(64), p_k VARBINARY({MARIADB_MAX_KEY_BYTES}),
                                          p_delta BIGINT, p_limit BIGINT, p_now BIGINT)
            BEGIN
                DECLARE v_keys, v_delta, v_count BIGINT DEFAULT 0;
                DECLARE v_old LONGBLOB DEFAULT NULL;
                DECLARE v_num DECIMAL(22, 0);
                DECLARE v_new VARBINARY(21);
                DECLARE v_live INT DEFAULT 0;{declare}
                START TRANSACTION;{lock}
                SELECT key_count INTO v_keys FROM {t.usage} WHERE ns = p_ns;
                SELECT v, ver, exp INTO v_old, v_ver, v_exp FROM {t.data} WHERE ns = p_ns AND k = p_k;
                SET v_live = v_ver IS NOT NULL AND (v_exp IS NULL OR v_exp > p_now);
                IF v_ver IS NOT NULL AND v_ver >= {MAX_STORED_VERSION} THEN
                    SET v_num = NULL;
                ELSEIF NOT v_live THEN
                    SET v_num = p_delta, v_exp = NULL;
                ELSEIF LENGTH(v_old) <= 20 AND v_old REGEXP BINARY '^-?[0-9]+$' THEN
                    SET v_num = CAST(v_old AS DECIMAL(22, 0));
                    IF v_num BETWEEN -9223372036854775808 AND 9223372036854775807 THEN
                        SET v_num = v_num + p_delta;
                    ELSE
                        SET v_num = NULL;
                    END IF;
                ELSE
                    SET v_num = NULL;
                END IF;
                IF v_num IS NULL OR v_num NOT BETWEEN -9223372036854775808 AND 9223372036854775807 THEN
                    ROLLBACK;
                    SELECT 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL;
                ELSE
                    SET v_new = CAST(CAST(v_num AS CHAR) AS BINARY);
                    IF v_ver IS NULL THEN
                        SET v_delta = LENGTH(p_k) + LENGTH(v_new), v_count = 1, v_ver = v_floor + 1;
                    ELSE
                        SET v_delta = LENGTH(v_new) - LENGTH(v_old), v_count = 0, v_ver = v_ver + 1;
                    END IF;
                    IF p_limit IS NOT NULL AND v_delta > 0 AND v_used + v_delta > p_limit THEN
                        ROLLBACK;
                        SELECT 1, NULL, NULL, NULL, NULL, v_delta, v_count, v_used, v_keys, v_floor;
                    ELSE
                        INSERT INTO {t.data} (ns, k, v, ver, exp) VALUES (p_ns, p_k, v_new, v_ver, v_exp)
                            ON DUPLICATE KEY UPDATE v = VALUES(v), ver = VALUES(ver), exp = VALUES(exp);
                        IF v_delta <> 0 OR v_count <> 0 THEN
                            UPDATE {t.usage} SET used_bytes = used_bytes + v_delta, key_count = key_count + v_count
                                WHERE ns = p_ns;
                        END IF;
                        COMMIT;
                        SELECT 0, v_new, v_ver, v_exp, v_live, v_delta, v_count, v_used, v_keys, v_floor;
                    END IF;
                END IF;
            END"""
        return [
            f"DROP PROCEDURE IF EXISTS {prefix}put",
            put,
            f"DROP PROCEDURE IF EXISTS {prefix}delete",
            delete,
            f"DROP PROCEDURE IF EXISTS {prefix}incr",
            increment,
        ]

    # -- transactions --------------------------------------------------------------------

    # A commit is two round trips: START TRANSACTION, the counter row's lock and the read of the
    # old rows in one multi-statement (:meth:`read_state`), then the writes the planner decided
    # and COMMIT in another (:meth:`write_plan` holds them back, :meth:`end` sends them). The
    # server runs them in order, so the rows are read after the lock is held.

    def begin(self, item: Any) -> None:
        """Nothing sent yet: ``START TRANSACTION`` goes with the commit's first reads (:meth:`lock_space`)."""
        self._pending.pop(id(item), None)  # left by a commit that failed before its end

    @staticmethod
    def execute(item: Any, sql: str, params: Sequence[Any] = ()) -> int:
        if type(item) is _Writes:
            item.add(item.cursor.mogrify(sql, params or None))
            return 0
        return ServerDialect.execute(item, sql, params)

    def upsert_many(self, item: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        """The rows of one commit's write batch as multi-row upserts, values sent as their own bytes.

        PyMySQL writes bytes as a hex literal (two characters a byte, which the
        server's parser reads one by one); ``FROM_BASE64('…')`` (4/3) made the
        server decode every value, which cost more server time than hex saved
        (100 x 4 KiB: 5.9 ms of the server thread's CPU against hex's 3.8). A
        ``_binary'…'`` literal (:func:`_quoted`) read with ``character_set_client
        = binary`` carries each byte as itself: the server copies it, and the
        client escapes three bytes with ``bytes.replace``. The rows all belong
        to one namespace; statements go as bytes (see :class:`_Writes`).
        """
        if type(item) is not _Writes:
            super().upsert_many(item, rows)
            return
        namespace = item.cursor.connection.escape(rows[0][0]).encode()
        head, tail = self._upsert_head, self._upsert_tail
        values: list[bytes] = []
        size = 0
        for _, key, value, version, expires_at in rows:
            row = b"(%b,X'%b',%b,%d,%b)" % (
                namespace,
                key.hex().encode(),
                _quoted(value),
                version,
                b"NULL" if expires_at is None else b"%d" % expires_at,
            )
            if values and size + len(row) > _SEND_AT:
                item.add(head + b",".join(values) + tail)
                values, size = [], 0
            values.append(row)
            size += len(row) + 1
        item.add(head + b",".join(values) + tail)

    def lock_space(self, item: Any, namespace: str) -> SpaceState:
        item.execute("START TRANSACTION;" + item.mogrify(self.backend._w.space, (namespace,)))
        item.nextset()
        return self._locked_space(item, namespace, item.fetchall())

    def _locked_space(self, item: Any, namespace: str, rows: Sequence[Any]) -> SpaceState:
        """The counter row the multi-statement read (*rows*); a missing one is created and locked (a first write)."""
        if not rows:
            item.execute(self.backend._q_new_usage, (namespace,))
            rows = self.fetchall(item, self.backend._w.space, (namespace,))
        return _new(SpaceState, rows[0])

    def read_state(
        self, item: Any, namespace: str, keys: Sequence[bytes], values: bool
    ) -> tuple[SpaceState, dict[bytes, KeyState]]:
        b = self.backend
        if len(keys) > CHUNK:
            return self.lock_space(item, namespace), b._read_rows(item, namespace, keys, values)
        read = item.mogrify(*self.keyed(b._w.rows_values if values else b._w.rows, (namespace,), keys))
        item.execute("START TRANSACTION;" + item.mogrify(b._w.space, (namespace,)) + ";" + read)
        item.nextset()
        space_rows = item.fetchall()
        if not space_rows:  # no counter row was locked: the rows must be read again under the new one
            item.nextset()
            return self._locked_space(item, namespace, space_rows), b._read_rows(item, namespace, keys, values)
        space = _new(SpaceState, space_rows[0])
        item.nextset()
        return space, {row[0]: _new(KeyState, row[1:]) for row in item.fetchall()}

    def write_plan(self, item: Any, namespace: str, planned: Plan, now: int) -> None:
        writes = self._pending[id(item)] = _Writes(item, self._binary)
        self.backend._write_plan(writes, namespace, planned, now)

    def write_space(self, item: Any, namespace: str, space: SpaceState) -> None:
        # The row exists (the commit locked it); held-back statements have no rowcount yet.
        self.execute(item, self.backend._w.set_space, (space.bytes, space.keys, space.floor, namespace))

    def end(self, item: Any) -> None:
        writes = self._pending.pop(id(item), None)
        if writes is None:
            item.execute("COMMIT")
        else:
            writes.send("COMMIT")

    def retryable(self, exc: Exception) -> bool:
        return _errno(exc) in (_ER_LOCK_DEADLOCK, _ER_CHECKREAD)

    def rollback(self, item: Any) -> None:
        self._pending.pop(id(item), None)
        conn = item.connection
        if conn.server_status & _SERVER_STATUS_IN_TRANS:
            conn.rollback()
        if id(item) in self._binary:  # a commit failed between its binary statements and their end
            item.execute(_TEXT_CLIENT)
            self._binary.discard(id(item))

    def translate(self, exc: Exception, action: str) -> StorageError:
        errno = _errno(exc)
        if errno == _ER_DATA_TOO_LONG and ("'k'" in str(exc) or "'p_k'" in str(exc)):  # the column, the procedure
            return InvalidKey(f"the key is longer than the {MARIADB_MAX_KEY_BYTES} bytes the MariaDB key column holds")
        if errno == _ER_LOCK_WAIT_TIMEOUT:
            return InternalError(
                f"{self.where}: a lock stayed held by another writer for more than "
                f"{self._options.lock_timeout:g} s during {action}; retry, or raise backend_options.lock_timeout"
            )
        if errno == _ER_NET_PACKET_TOO_LARGE:
            return InternalError(
                f"{self.where} refused the {action}: it is larger than the server's max_allowed_packet "
                f"({describe(exc)}); raise max_allowed_packet on the server"
            )
        return super().translate(exc, action)

    # -- verification ---------------------------------------------------------------------

    def verify_begin(self, item: Any, repair: bool) -> None:
        if repair:
            # The documented way to lock InnoDB tables: autocommit off, LOCK TABLES, COMMIT, UNLOCK.
            item.execute("SET autocommit = 0")
            item.execute(f"LOCK TABLES {self._tables.data} WRITE, {self._tables.usage} WRITE")
        else:
            item.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # this transaction only
            item.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")

    def verify_end(self, item: Any, repair: bool) -> None:
        try:
            item.connection.commit()
        finally:
            if repair:
                item.execute("UNLOCK TABLES")
                item.execute("SET autocommit = 1")

    def integrity_problems(self, item: Any) -> list[str]:
        t = self._tables
        item.execute(f"CHECK TABLE {t.data}, {t.usage}, {t.meta}")
        found = [
            f"{table}: {text}"
            for table, _op, kind, text in item.fetchall()
            if str(kind).lower() in ("error", "warning") or (str(kind).lower() == "status" and str(text) != "OK")
        ]
        if not found:
            return []
        return [
            f"{self.where} is damaged: CHECK TABLE reports {'; '.join(found[:5])}; stop every process using it, "
            f"export the components that still read (`{self.backend.command('export')} -c COMPONENT`), recreate the "
            "tables and import them, or restore a backup"
        ]

    # -- schema ---------------------------------------------------------------------------

    def meta_exists(self, item: Any) -> bool:
        sql = "SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = %s"
        return bool(self.fetchall(item, sql, (self._tables.meta,)))

    def has_column(self, item: Any, table: str, column: str) -> bool:
        sql = (
            "SELECT 1 FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = %s AND column_name = %s"
        )
        return bool(self.fetchall(item, sql, (table, column)))

    def read_version(self, item: Any) -> int | str | None:
        # No catalog query: a missing meta table shows as ER_NO_SUCH_TABLE.
        try:
            return self.backend._stored_version(item)
        except Exception as exc:
            if _errno(exc) == _ER_NO_SUCH_TABLE:
                return None
            raise

    def create_schema(self, item: Any) -> int | str | None:
        # DDL commits implicitly in MariaDB, so a named lock (not a transaction) makes
        # concurrent first opens take turns.
        lock = f"airssys-storage:{self._options.table_prefix}"
        item.execute("SELECT GET_LOCK(%s, %s)", (lock, self._options.lock_timeout_s))
        if item.fetchone()[0] != 1:
            raise InternalError(f"{self.where}: another process is creating the tables; try again")
        try:
            return self.backend._create_tables(item)
        finally:
            item.execute("SELECT RELEASE_LOCK(%s)", (lock,))
            item.fetchall()
