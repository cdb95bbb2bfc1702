"""Guarded commits as one explicit transaction: the write path of SQLite and MariaDB.

The transaction first makes this writer the only one in the namespace
(SQLite: ``BEGIN IMMEDIATE`` takes the database's write lock; MariaDB: the
namespace's usage row is locked ``FOR UPDATE``), then reads the old sizes of
the changed keys, charges the net delta to the usage row with a guarded
``UPDATE … WHERE used_bytes + delta <= limit`` whose rowcount it checks, applies
the changes and commits. A refusal rolls everything back. PostgreSQL does the
same work in one statement instead (see :mod:`._postgresql`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from airssys_storage import Change, Usage, quota_exceeded

from .backend import SQLBackend

#: Attempts for a commit that failed on a deadlock / serialization conflict.
MAX_ATTEMPTS = 8


@dataclass
class Plan:
    """What a commit does, decided from the old sizes of its keys."""

    delta: int  # change of used bytes
    count: int  # change of the number of keys
    existed: int  # changed keys that existed before
    puts: list[tuple[bytes, bytes]]
    deletes: list[bytes]  # only keys that exist


def plan_commit(changes: Sequence[Change], old_sizes: dict[bytes, int]) -> Plan:
    """The plan for *changes* given ``key -> len(old value)`` of the keys that exist."""
    delta = count = 0
    puts: list[tuple[bytes, bytes]] = []
    deletes: list[bytes] = []
    for key, value in changes:
        old = old_sizes.get(key)
        if old is not None:
            delta -= len(key) + old
        if value is None:
            if old is not None:
                deletes.append(key)
                count -= 1
        else:
            delta += len(key) + len(value)
            puts.append((key, value))
            if old is None:
                count += 1
    return Plan(delta, count, len(old_sizes), puts, deletes)


def backoff(attempt: int) -> None:
    """Sleep a little before retrying a conflicting transaction (jittered, bounded)."""
    time.sleep(random.uniform(0, 0.002 * 2**attempt))


class TransactionalBackend(SQLBackend):
    """SQL backend whose writes are explicit transactions driven from Python."""

    #: SQL function giving a BLOB's length in bytes.
    _length = "length"
    #: Engine-specific statements, set by the subclass's ``_prepare_statements``.
    _q_upsert: str
    _q_new_usage: str

    def _prepare_statements(self) -> None:
        """Build the SQL strings; ``?`` is replaced by the driver's placeholder."""
        t = self._tables
        self._q_usage = self._sql(f"SELECT used_bytes, key_count FROM {t.usage} WHERE ns = ?")
        self._q_add = self._sql(
            f"UPDATE {t.usage} SET used_bytes = used_bytes + ?, key_count = key_count + ? WHERE ns = ?"
        )
        self._q_add_guarded = self._sql(
            f"UPDATE {t.usage} SET used_bytes = used_bytes + ?, key_count = key_count + ? "
            "WHERE ns = ? AND used_bytes + ? <= ?"
        )
        self._q_delete_all = self._sql(f"DELETE FROM {t.data} WHERE ns = ?")
        self._q_reset = self._sql(f"UPDATE {t.usage} SET used_bytes = 0, key_count = 0 WHERE ns = ?")
        self._q_sizes: dict[int, str] = {}
        self._q_deletes: dict[int, str] = {}

    def _sql(self, text: str) -> str:
        return text

    def _sizes_sql(self, count: int) -> str:
        sql = self._q_sizes.get(count)
        if sql is None:
            marks = ", ".join(["?"] * count)
            sql = self._q_sizes[count] = self._sql(
                f"SELECT k, {self._length}(v) FROM {self._tables.data} WHERE ns = ? AND k IN ({marks})"
            )
        return sql

    def _deletes_sql(self, count: int) -> str:
        sql = self._q_deletes.get(count)
        if sql is None:
            marks = ", ".join(["?"] * count)
            sql = self._q_deletes[count] = self._sql(f"DELETE FROM {self._tables.data} WHERE ns = ? AND k IN ({marks})")
        return sql

    # Engine primitives --------------------------------------------------------

    def _begin(self, item: Any, namespace: str) -> None:
        """Start the transaction and become the namespace's only writer."""
        raise NotImplementedError

    def _end(self, item: Any) -> None:
        """Commit."""
        raise NotImplementedError

    def _execute(self, item: Any, sql: str, params: Sequence[Any]) -> int:
        """Run a statement; returns its rowcount."""
        raise NotImplementedError

    def _executemany(self, item: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def _retryable(self, exc: Exception) -> bool:
        """Whether *exc* rolled the transaction back for a conflict, so running it again is safe."""
        return False

    # The write path --------------------------------------------------------------

    def commit(self, namespace: str, changes: Sequence[Change], limit: int | None) -> int:
        keys = [key for key, _ in changes]
        for attempt in range(MAX_ATTEMPTS):
            try:
                item = self._idle.pop()
            except IndexError:
                item = self._acquire()
            try:
                self._begin(item, namespace)
                rows = self._fetchall(item, self._sizes_sql(len(keys)), (namespace, *keys))
                plan = plan_commit(changes, dict(rows))
                if plan.delta or plan.count:
                    self._charge(item, namespace, plan.delta, plan.count, limit)
                if plan.deletes:
                    self._execute(item, self._deletes_sql(len(plan.deletes)), (namespace, *plan.deletes))
                if plan.puts:
                    self._executemany(item, self._q_upsert, [(namespace, key, value) for key, value in plan.puts])
                self._end(item)
            except Exception as exc:
                if attempt + 1 < MAX_ATTEMPTS and self._retryable(exc):
                    self.retries["conflict"] += 1
                    self._recover(item)
                    backoff(attempt)
                    continue
                raise self._failed(item, exc, "commit") from exc
            except BaseException:
                self._interrupted(item)
                raise
            self._release(item)
            return plan.existed
        raise AssertionError("unreachable")  # pragma: no cover

    def commit_one(self, namespace: str, key: bytes, value: bytes | None, limit: int | None) -> bool:
        return self.commit(namespace, ((key, value),), limit) == 1

    def _charge(self, item: Any, namespace: str, delta: int, count: int, limit: int | None) -> None:
        """Add *delta* bytes and *count* keys to the usage row, refusing to pass *limit*."""
        params: tuple[Any, ...]
        if limit is not None and delta > 0:
            sql, params = self._q_add_guarded, (delta, count, namespace, delta, limit)
        else:
            sql, params = self._q_add, (delta, count, namespace)
        if self._execute(item, sql, params) == 1:
            return
        row = self._fetchall(item, self._q_usage, (namespace,))
        if not row:  # first write to this namespace
            self._execute(item, self._q_new_usage, (namespace,))
            if self._execute(item, sql, params) == 1:
                return
            row = self._fetchall(item, self._q_usage, (namespace,))
        assert limit is not None  # an unguarded update only misses a row that does not exist
        raise quota_exceeded(namespace, int(row[0][0]), delta, limit)

    def clear(self, namespace: str) -> None:
        for attempt in range(MAX_ATTEMPTS):
            try:
                item = self._idle.pop()
            except IndexError:
                item = self._acquire()
            try:
                self._begin(item, namespace)
                self._execute(item, self._q_delete_all, (namespace,))
                self._execute(item, self._q_reset, (namespace,))
                self._end(item)
            except Exception as exc:
                if attempt + 1 < MAX_ATTEMPTS and self._retryable(exc):
                    self.retries["conflict"] += 1
                    self._recover(item)
                    backoff(attempt)
                    continue
                raise self._failed(item, exc, "clear") from exc
            except BaseException:
                self._interrupted(item)
                raise
            self._release(item)
            return

    def usage(self, namespace: str) -> Usage:
        rows = self._run("usage", lambda item: self._fetchall(item, self._q_usage, (namespace,)))
        return Usage(int(rows[0][0]), int(rows[0][1])) if rows else Usage()
