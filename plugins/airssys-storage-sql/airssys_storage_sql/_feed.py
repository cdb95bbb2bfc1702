"""The change log in SQL: one table, appended in the commit's transaction (see :mod:`airssys_storage.changes`).

``{prefix}changes`` holds the events, keyed ``(ns, seq)``; the last seq is its
highest key, the oldest retained its lowest (two index lookups), so a commit
appends with one statement (``INSERT … SELECT`` the next seq from the newest
row) and keeps no head row to update.

Seqs are dense and strictly increasing across processes because a commit
appends only while it holds the namespace's counter row (servers: ``SELECT …
FOR UPDATE``; SQLite: ``BEGIN IMMEDIATE``, the database's write lock), which
every write path of a namespace with the feed on takes first. Trimming never
removes the newest event, so the next seq never restarts; an event's time is
never below its predecessor's, so trimming by age, like trimming by count,
removes a prefix of the log and the retained seqs stay dense.

The table is created (``IF NOT EXISTS``) when a component first enables its
feed, so stores without feeds never have it; it is outside the schema
version (adding it changes nothing the data tables hold).
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
        changes = f"{prefix}changes"
        #: The PostgreSQL NOTIFY channel of this store (its table prefix names it).
        self.channel = changes
        ns, key, value, suffix = _COLUMNS[backend.engine]
        self.ddl = [
            f"CREATE TABLE IF NOT EXISTS {changes} (ns {ns} NOT NULL, seq BIGINT NOT NULL, k {key} NOT NULL, "
            f"op VARCHAR(16) NOT NULL, ver BIGINT NOT NULL, at BIGINT NOT NULL, v {value}, k_end {key}, "
            f"PRIMARY KEY (ns, seq)){suffix}",
        ]
        newest = f"SELECT seq, at FROM {changes} WHERE ns = ? ORDER BY seq DESC LIMIT 1"
        self.newest = q(newest)
        #: One event appended with its seq (the newest + 1) and time (never below the newest's) in one
        #: statement, which returns them (SQLite; PostgreSQL defers its appends, MariaDB has no RETURNING).
        #: Scalar subqueries, each one index lookup: a fifth cheaper than joining the newest row (measured).
        #: Parameters: ns, ns, key, op, version, now, ns, value, end.
        self.append_one = (
            q(
                f"INSERT INTO {changes} (ns, seq, k, op, ver, at, v, k_end) VALUES (?, "
                f"COALESCE((SELECT max(seq) FROM {changes} WHERE ns = ?), 0) + 1, ?, ?, ?, "
                f"max(?, COALESCE(({newest.replace('seq, at', 'at', 1)}), 0)), ?, ?) RETURNING seq, at"
            )
            if backend.engine == "sqlite"
            else None
        )
        self.insert = q(f"INSERT INTO {changes} (ns, seq, k, op, ver, at, v, k_end) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        self.trim = q(f"DELETE FROM {changes} WHERE ns = ? AND seq < ?")
        #: The oldest event (its seq and time): one index lookup.
        self.oldest = q(f"SELECT seq, at FROM {changes} WHERE ns = ? ORDER BY seq LIMIT 1")
        #: The first event young enough to keep (times rise with seqs: every older one may go); looks at
        #: the events it passes over, i.e. those an age trim removes, and one more.
        self.first_young = q(f"SELECT seq FROM {changes} WHERE ns = ? AND at >= ? ORDER BY seq LIMIT 1")
        # Two scalar subqueries, not min(seq), max(seq) of one SELECT: SQLite answers a lone min() or
        # max() from the index, but both at once by reading every event of the namespace (measured:
        # each trim of a 100,000-event log took milliseconds).
        self.bounds = q(
            f"SELECT (SELECT min(seq) FROM {changes} WHERE ns = ?), (SELECT max(seq) FROM {changes} WHERE ns = ?)"
        )
        self.read = q(
            f"SELECT seq, k, op, ver, at, v, k_end FROM {changes} WHERE ns = ? AND seq > ? ORDER BY seq LIMIT ?"
        )
        self.notify = q("SELECT pg_notify(?, ?)") if backend.engine == "postgresql" else None
        #: PostgreSQL: the commit's feed statements travel in the pipeline of its writes and COMMIT
        #: (no round trip of their own), so they return nothing: each event takes the newest seq + 1
        #: (a statement sees the ones before it), and the count trim runs every commit.
        self.defer = getattr(self._d, "defer", None)
        self.append_next = q(
            f"INSERT INTO {changes} (ns, seq, k, op, ver, at, v, k_end) "
            "SELECT ?, COALESCE(n.seq, 0) + 1, ?, ?, ?, CASE WHEN n.at > ? THEN n.at ELSE ? END, ?, ? "
            f"FROM (SELECT 1 AS one) AS w LEFT JOIN ({newest}) AS n ON 1 = 1"
        )
        newest_seq = f"(SELECT max(seq) FROM {changes} WHERE ns = ?)"
        self.trim_to = q(f"DELETE FROM {changes} WHERE ns = ? AND seq <= {newest_seq} - ?")
        # At most the TRIM_STEP oldest rows are looked at (at rises with seq: the prefix that is too old).
        self.trim_age_to = q(
            f"DELETE FROM {changes} WHERE ns = ? AND at < ? AND seq < {newest_seq} "
            f"AND seq < (SELECT min(seq) + {TRIM_STEP} FROM {changes} WHERE ns = ?)"
        )

    def append(self, item: Any, namespace: str, pending: Sequence[Pending], now: int, feed: FeedConfig) -> None:
        """Append *pending* to the namespace's log inside the commit's transaction (holding its counter row)."""
        if not pending:
            return
        d = self._d
        if self.defer is not None:
            self._append_deferred(item, namespace, pending, now, feed)
            return
        if len(pending) == 1 and self.append_one is not None:
            key, op, version, value, end = pending[0]
            new_last, at = d.fetchall(
                item, self.append_one, (namespace, namespace, key, op, version, now, namespace, value, end)
            )[0]
        else:
            rows = d.fetchall(item, self.newest, (namespace,))
            last, last_at = (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
            at = max(now, last_at)
            cells = [
                (namespace, last + offset, key, op, version, at, value, end)
                for offset, (key, op, version, value, end) in enumerate(pending, 1)
            ]
            if len(cells) == 1:
                d.execute(item, self.insert, cells[0])
            else:
                d.executemany(item, self.insert, cells)
            new_last = last + len(cells)
        if new_last // TRIM_STEP != (new_last - len(pending)) // TRIM_STEP or feed.retain_events < TRIM_STEP:
            self.trim_in(item, namespace, new_last, int(at), feed)
        if self.notify is not None:
            d.fetchall(item, self.notify, (self.channel, namespace))

    def _append_deferred(
        self, item: Any, namespace: str, pending: Sequence[Pending], now: int, feed: FeedConfig
    ) -> None:
        defer = self.defer
        assert defer is not None and self.notify is not None
        for key, op, version, value, end in pending:
            defer(item, self.append_next, (namespace, key, op, version, now, now, value, end, namespace))
        defer(item, self.trim_to, (namespace, namespace, feed.retain_events))
        cutoff = feed.age_cutoff(now)
        if cutoff is not None:
            defer(item, self.trim_age_to, (namespace, cutoff, namespace, namespace))
        defer(item, self.notify, (self.channel, namespace))

    def trim_in(self, item: Any, namespace: str, last: int, at: int, feed: FeedConfig) -> None:
        """Trim by count and age (a prefix, never the newest event); every TRIM_STEP seqs, each commit for tiny logs."""
        d = self._d
        oldest, oldest_at = d.fetchall(item, self.oldest, (namespace,))[0]  # the log holds at least *last*
        oldest = int(oldest)
        keep = feed.keep_from(oldest, last)
        cutoff = feed.age_cutoff(at)
        if cutoff is not None and int(oldest_at) < cutoff:  # a prefix too old: up to the first young event
            young = d.fetchall(item, self.first_young, (namespace, cutoff))
            keep = max(keep, min(int(young[0][0]), last) if young else last)
        if keep > oldest:
            d.execute(item, self.trim, (namespace, keep))

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
        """``(oldest, last)``: the lowest and highest seq (``(1, 0)`` before the first event)."""
        oldest, last = self._d.fetchall(item, self.bounds, (namespace, namespace))[0]
        return (1, 0) if last is None else (int(oldest), int(last))
