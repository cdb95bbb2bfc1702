"""MariaDB (and MySQL) through PyMySQL.

Every connection sets a strict ``sql_mode`` (so an oversized or invalid value
is an error, never silently cut), ``READ COMMITTED`` (no gap locks: writers
of different namespaces do not block each other at namespace boundaries) and
the lock wait timeout. Reads are autocommit statements; a write is
:meth:`SQLBackend.apply`'s explicit transaction, which first locks the
namespace's usage row ``FOR UPDATE`` (creating it if needed), making it the
namespace's only writer on every host. Deadlocks roll the transaction back and
are retried.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from airssys_storage import ConfigurationError, InternalError, InvalidKey, StorageError

from ._schema import MARIADB_MAX_KEY_BYTES
from ._server import ServerBackend
from .backend import describe

_STRICT = "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
_SERVER_STATUS_IN_TRANS = 1
# Server error numbers.
_ER_LOCK_DEADLOCK = 1213
_ER_CHECKREAD = 1020  # "record has changed since last read" (MariaDB snapshot isolation)
_ER_LOCK_WAIT_TIMEOUT = 1205
_ER_DATA_TOO_LONG = 1406
_ER_NET_PACKET_TOO_LARGE = 1153
_ER_NO_SUCH_TABLE = 1146
#: The largest max_allowed_packet a MariaDB / MySQL server accepts.
_PACKET_MAXIMUM = 1024 * 1024 * 1024
#: The longest namespace (component id) written into a statement.
_MAX_NAMESPACE = 63


def _errno(exc: Exception) -> int:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else 0


class MariaDBBackend(ServerBackend):
    """Tables in a MariaDB/MySQL database, shared by any number of processes and hosts."""

    engine = "mariadb"
    keep_existing_usage = "ON DUPLICATE KEY UPDATE ns = ns"
    label = "MariaDB"
    default_port = 3306
    # binary_prefix: bytes are sent as _binary'…', so the server never checks them against the charset.
    driver_args: ClassVar[Mapping[str, Any]] = {"charset": "utf8mb4", "binary_prefix": True}

    @staticmethod
    def upsert_clause(conflict: Sequence[str], columns: Sequence[str]) -> str:
        return "ON DUPLICATE KEY UPDATE " + ", ".join(f"{column} = VALUES({column})" for column in columns)

    def _setup(self, dbapi_connection: Any) -> Any:
        conn = dbapi_connection
        conn.autocommit(True)
        cursor = conn.cursor()
        cursor.execute(f"SET SESSION sql_mode = '{_STRICT}'")
        cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {max(1, round(self._options.lock_timeout))}")
        return cursor

    # -- limits ------------------------------------------------------------------------

    def value_ceiling(self, packet: int, max_key_bytes: int) -> int:
        """The largest value one upsert can carry when the server's ``max_allowed_packet`` is *packet* bytes.

        PyMySQL writes bytes into the statement text as ``_binary X'…'``: two hex
        digits per byte. The packet is the command byte plus the statement: its
        text, the quoted namespace, the key and the value, each hex-encoded.
        """
        text = len(self._w.upsert) - 5 * len("%s") + 2 * len("9223372036854775807")
        quoted = (_MAX_NAMESPACE + 2) + 2 * len("_binary X''")
        return (packet - 1 - text - quoted - 2 * max_key_bytes) // 2

    def check_limits(self, max_key_bytes: int, max_value_bytes: int) -> None:
        if max_key_bytes > MARIADB_MAX_KEY_BYTES:
            raise ConfigurationError(
                f"max_key_bytes = {max_key_bytes} is above the {MARIADB_MAX_KEY_BYTES} bytes the MariaDB key column "
                f"of {self.where} holds: lower max_key_bytes to at most {MARIADB_MAX_KEY_BYTES}"
            )
        rows = self._run("reading max_allowed_packet", self._fetchall, "SELECT @@max_allowed_packet", ())
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

    # -- transactions --------------------------------------------------------------------

    def _begin(self, item: Any) -> None:
        item.execute("START TRANSACTION")

    def _end(self, item: Any) -> None:
        item.connection.commit()

    def _retryable(self, exc: Exception) -> bool:
        return _errno(exc) in (_ER_LOCK_DEADLOCK, _ER_CHECKREAD)

    def _rollback(self, item: Any) -> None:
        conn = item.connection
        if conn.server_status & _SERVER_STATUS_IN_TRANS:
            conn.rollback()

    def _translate(self, exc: Exception, action: str) -> StorageError:
        errno = _errno(exc)
        if errno == _ER_DATA_TOO_LONG and "'k'" in str(exc):
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
        return super()._translate(exc, action)

    # -- verification ---------------------------------------------------------------------

    integrity_check = "CHECK TABLE"

    def _verify_begin(self, item: Any, repair: bool) -> None:
        if repair:
            # The documented way to lock InnoDB tables: autocommit off, LOCK TABLES, COMMIT, UNLOCK.
            item.execute("SET autocommit = 0")
            item.execute(f"LOCK TABLES {self._tables.data} WRITE, {self._tables.usage} WRITE")
        else:
            item.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # this transaction only
            item.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")

    def _verify_end(self, item: Any, repair: bool) -> None:
        try:
            item.connection.commit()
        finally:
            if repair:
                item.execute("UNLOCK TABLES")
                item.execute("SET autocommit = 1")

    def _integrity_problems(self, item: Any) -> list[str]:
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
            f"export the components that still read (`{self.command('export')} -c COMPONENT`), recreate the "
            "tables and import them, or restore a backup"
        ]

    # -- schema ---------------------------------------------------------------------------

    def _meta_exists(self, item: Any) -> bool:
        sql = "SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = %s"
        return bool(self._fetchall(item, sql, (self._tables.meta,)))

    def _has_column(self, item: Any, table: str, column: str) -> bool:
        sql = (
            "SELECT 1 FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = %s AND column_name = %s"
        )
        return bool(self._fetchall(item, sql, (table, column)))

    def _read_version(self, item: Any) -> int | str | None:
        # No catalog query: a missing meta table shows as ER_NO_SUCH_TABLE.
        try:
            return self._stored_version(item)
        except Exception as exc:
            if _errno(exc) == _ER_NO_SUCH_TABLE:
                return None
            raise

    def _create_schema(self, item: Any) -> int | str | None:
        # DDL commits implicitly in MariaDB, so a named lock (not a transaction) makes
        # concurrent first opens take turns.
        lock = f"airssys-storage:{self._options.table_prefix}"
        item.execute("SELECT GET_LOCK(%s, %s)", (lock, max(1, round(self._options.lock_timeout))))
        if item.fetchone()[0] != 1:
            raise InternalError(f"{self.where}: another process is creating the tables; try again")
        try:
            return self._create_tables(item)
        finally:
            item.execute("SELECT RELEASE_LOCK(%s)", (lock,))
            item.fetchall()
