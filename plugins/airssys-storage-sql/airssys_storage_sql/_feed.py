"""The change log in SQL: two tables, appended in the commit's transaction (see :mod:`airssys_storage.changes`).

``{prefix}feed``: one row per namespace with a feed — ``last`` (the seq of its
last event), ``oldest`` (the lowest retained seq) and ``last_at`` (the time of
its last event, ms). ``{prefix}changes``: the events, keyed ``(ns, seq)``.

Seqs are dense and strictly increasing across processes because a commit
appends only while it holds the namespace's counter row (servers: ``SELECT …
FOR UPDATE``; SQLite: ``BEGIN IMMEDIATE``, the database's write lock), which
every write path of a namespace with the feed on takes first: the seq is read
from the feed row, the events written as ``last + 1 …`` and the row updated
in the same transaction as the data. An event's time never goes below its
predecessor's (``last_at``), so trimming by age, like trimming by count,
removes a prefix of the log and the retained seqs stay dense.

The tables are created (``IF NOT EXISTS``) when a component first enables its
feed, so stores without feeds never have them; they are outside the schema
version (adding them changes nothing the data tables hold).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airssys_storage.changes import TRIM_STEP, ChangeBatch, ChangeRecord, FeedConfig, Pending

if TYPE_CHECKING:
    from .backend import SQLBackend

_COLUMNS = {
    # engine: (namespace, key, value, table suffix)
    "sqlite": ("VARCHAR(64)", "BLOB", "BLOB", " WITHOUT ROWID"),
    "postgresql": ('VARCHAR(64) COLLATE "C"', "BYTEA", "BYTEA", ""),
    "mariadb": ("VARBINARY(64)", "VARBINARY(256)", "LONGBLOB", " ENGINE=InnoDB"),
}


class SQLChangeLog:
    """The statements and steps of one store's change log (held by :class:`~.backend.SQLBackend`)."""

    def __init__(self, backend: SQLBackend) -> None:
        self._d = backend._d
        prefix = backend._options.table_prefix
        q = backend._sql
        feed, changes = f"{prefix}feed", f"{prefix}changes"
        self.tables = (feed, changes)
        #: The PostgreSQL NOTIFY channel of this store (its table prefix names it).
        self.channel = f"{prefix}changes"
        ns, key, value, suffix = _COLUMNS[backend.engine]
        self.ddl = [
            f"CREATE TABLE IF NOT EXISTS {feed} (ns {ns} NOT NULL PRIMARY KEY, last BIGINT NOT NULL, "
            f"oldest BIGINT NOT NULL, last_at BIGINT NOT NULL){suffix}",
            f"CREATE TABLE IF NOT EXISTS {changes} (ns {ns} NOT NULL, seq BIGINT NOT NULL, k {key} NOT NULL, "
            f"op VARCHAR(16) NOT NULL, ver BIGINT NOT NULL, at BIGINT NOT NULL, v {value}, k_end {key}, "
            f"PRIMARY KEY (ns, seq)){suffix}",
        ]
        self.head = q(f"SELECT last, oldest, last_at FROM {feed} WHERE ns = ?")
        self.insert_head = q(f"INSERT INTO {feed} (last, oldest, last_at, ns) VALUES (?, ?, ?, ?)")
        self.update_head = q(f"UPDATE {feed} SET last = ?, oldest = ?, last_at = ? WHERE ns = ?")
        self.set_oldest = q(f"UPDATE {feed} SET oldest = ? WHERE ns = ?")
        #: Moves the head by n and returns it (engines with UPDATE … RETURNING: SQLite, PostgreSQL).
        self.advance = (
            None
            if backend.engine == "mariadb"
            else q(
                f"UPDATE {feed} SET last = last + ?, last_at = CASE WHEN last_at > ? THEN last_at ELSE ? END "
                "WHERE ns = ? RETURNING last, oldest, last_at"
            )
        )
        self.insert = q(f"INSERT INTO {changes} (ns, seq, k, op, ver, at, v, k_end) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        self.trim = q(f"DELETE FROM {changes} WHERE ns = ? AND seq < ?")
        self.trim_age = q(f"DELETE FROM {changes} WHERE ns = ? AND at < ?")
        self.first = q(f"SELECT min(seq) FROM {changes} WHERE ns = ?")
        self.read = q(
            f"SELECT seq, k, op, ver, at, v, k_end FROM {changes} WHERE ns = ? AND seq > ? ORDER BY seq LIMIT ?"
        )
        self.notify = q("SELECT pg_notify(?, ?)") if backend.engine == "postgresql" else None

    def append(self, item: Any, namespace: str, pending: Sequence[Pending], now: int, feed: FeedConfig) -> None:
        """Append *pending* to the namespace's log inside the commit's transaction (holding its counter row)."""
        if not pending:
            return
        d = self._d
        count = len(pending)
        if self.advance is not None:  # one statement moves the head and returns it
            rows = d.fetchall(item, self.advance, (count, now, now, namespace))
            if rows:
                new_last, oldest, at = (int(cell) for cell in rows[0])
            else:
                new_last, oldest, at = count, 1, now
                d.execute(item, self.insert_head, (new_last, oldest, at, namespace))
            head_written = True
        else:
            rows = d.fetchall(item, self.head, (namespace,))
            last, oldest, last_at = (int(cell) for cell in rows[0]) if rows else (0, 1, 0)
            new_last, at = last + count, max(now, last_at)
            head_written = False
        last = new_last - count
        cells = [
            (namespace, last + offset, key, op, version, at, value, end)
            for offset, (key, op, version, value, end) in enumerate(pending, 1)
        ]
        if count == 1:
            d.execute(item, self.insert, cells[0])
        else:
            d.executemany(item, self.insert, cells)
        keep = feed.keep_from(oldest, new_last)
        trimmed = keep > oldest
        if trimmed:
            d.execute(item, self.trim, (namespace, keep))
            oldest = keep
        cutoff = feed.age_cutoff(at)
        if cutoff is not None and new_last // TRIM_STEP != last // TRIM_STEP:
            if d.execute(item, self.trim_age, (namespace, cutoff)):
                first = d.fetchall(item, self.first, (namespace,))[0][0]
                oldest = new_last + 1 if first is None else int(first)
                trimmed = True
        if not head_written:
            d.execute(item, self.update_head if rows else self.insert_head, (new_last, oldest, at, namespace))
        elif trimmed:
            d.execute(item, self.set_oldest, (oldest, namespace))
        if self.notify is not None:
            d.fetchall(item, self.notify, (self.channel, namespace))

    def read_in(self, item: Any, namespace: str, since: int, limit: int) -> ChangeBatch:
        """The records after *since*, then the bounds (read after them: see ``ComponentStorage.changes``)."""
        d = self._d
        found = [
            ChangeRecord(
                int(seq),
                bytes(key),
                op if isinstance(op, str) else bytes(op).decode(),
                int(version),
                int(at),
                None if value is None else bytes(value),
                None if end is None else bytes(end),
            )
            for seq, key, op, version, at, value, end in d.fetchall(item, self.read, (namespace, since, limit))
        ]
        oldest, last = self.bounds_in(item, namespace)
        return ChangeBatch(found, oldest, last)

    def bounds_in(self, item: Any, namespace: str) -> tuple[int, int]:
        """``(oldest, last)`` from the feed row (``(1, 0)`` before the first event)."""
        rows = self._d.fetchall(item, self.head, (namespace,))
        if not rows:
            return 1, 0
        return int(rows[0][1]), int(rows[0][0])
