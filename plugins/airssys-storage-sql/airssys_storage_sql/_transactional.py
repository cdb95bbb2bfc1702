"""Writes as explicit transactions driven from Python: what SQLite and MariaDB share.

A write transaction first makes its connection the namespace's only writer
(SQLite: ``BEGIN IMMEDIATE`` takes the database's write lock; MariaDB: the
namespace's usage row is locked ``FOR UPDATE``), learns the old sizes of the
changed keys, applies the changes and charges the net delta with
:meth:`TransactionalBackend._charge`: the guarded ``UPDATE … WHERE used_bytes +
delta <= limit`` whose rowcount is checked. A refusal rolls everything back.
PostgreSQL does the same work in one statement instead (see :mod:`._postgresql`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from airssys_storage import Change, quota_exceeded

from .backend import SQLBackend

#: Attempts for a commit that failed on a deadlock / serialization conflict.
MAX_ATTEMPTS = 8

T = TypeVar("T")


def backoff(attempt: int) -> None:
    """Sleep a little before retrying a conflicting transaction (jittered, bounded)."""
    time.sleep(random.uniform(0, 0.002 * 2**attempt))


class TransactionalBackend(SQLBackend):
    """SQL backend whose writes are explicit transactions driven from Python."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        t = self._tables
        q = self._sql
        self._q_add = q(f"UPDATE {t.usage} SET used_bytes = used_bytes + ?, key_count = key_count + ? WHERE ns = ?")
        self._q_add_guarded = q(
            f"UPDATE {t.usage} SET used_bytes = used_bytes + ?, key_count = key_count + ? "
            "WHERE ns = ? AND used_bytes + ? <= ?"
        )

    # Engine primitives --------------------------------------------------------

    def _begin(self, item: Any, namespace: str) -> None:
        """Start the transaction and become the namespace's only writer."""
        raise NotImplementedError

    def _end(self, item: Any) -> None:
        """Commit."""
        raise NotImplementedError

    def _retryable(self, exc: Exception) -> bool:
        """Whether *exc* rolled the transaction back for a conflict, so running it again is safe."""
        return False

    def _write_changes(self, item: Any, namespace: str, changes: Sequence[Change], limit: int | None) -> int:
        """Inside the transaction: apply *changes* and charge them; the number of changed keys that existed."""
        raise NotImplementedError

    # Shared write path -------------------------------------------------------------

    def _transaction(self, action: str, namespace: str, work: Callable[..., T], *args: Any) -> T:
        """``work(item, *args)`` in a write transaction on *namespace*, repeated after a conflict.

        Written out rather than built on :meth:`_run` with a retry hook: it is the write
        path, and those layers of calls cost MariaDB's commit about 1 µs more.
        """
        for attempt in range(MAX_ATTEMPTS):
            try:
                item = self._idle.pop()
            except IndexError:
                item = self._acquire()
            committing = False
            try:
                self._begin(item, namespace)
                result = work(item, *args)
                committing = True  # from here a lost connection leaves the outcome unknown
                self._end(item)
            except Exception as exc:
                if attempt + 1 < MAX_ATTEMPTS and self._retryable(exc):
                    self.retries["conflict"] += 1
                    self._recover(item)
                    backoff(attempt)
                    continue
                raise self._failed(item, exc, action, committing) from exc
            except BaseException:
                self._interrupted(item)
                raise
            self._idle.append(item)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def commit(self, namespace: str, changes: Sequence[Change], limit: int | None) -> int:
        return self._transaction("commit", namespace, self._write_changes, namespace, changes, limit)

    def clear(self, namespace: str) -> None:
        self._transaction("clear", namespace, self._clear_rows, namespace)

    def _clear_rows(self, item: Any, namespace: str) -> None:
        t = self._tables
        self._execute(item, self._sql(f"DELETE FROM {t.data} WHERE ns = ?"), (namespace,))
        self._execute(item, self._sql(f"UPDATE {t.usage} SET used_bytes = 0, key_count = 0 WHERE ns = ?"), (namespace,))

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
