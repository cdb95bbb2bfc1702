"""Reads shared by the client/server engines (PostgreSQL, MariaDB).

The pooled item is a DBAPI cursor (its ``connection`` attribute is the
connection); both drivers use ``%s`` placeholders. A read is one autocommit
statement. When it fails because the connection is dead (the server
restarted, a proxy dropped it), every idle connection is dropped and the read
runs once more on a fresh connection: reads are safe to repeat. If the server
is still away, connecting fails with an ``internal-error`` naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from airssys_storage import Usage

from .backend import SQLBackend

_first = itemgetter(0)


class ServerBackend(SQLBackend):
    """Cursor-based reads with one reconnect for a stale connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        t = self._tables
        self._q_get = f"SELECT v FROM {t.data} WHERE ns = %s AND k = %s"
        self._q_has = f"SELECT 1 FROM {t.data} WHERE ns = %s AND k = %s"
        self._q_items = f"SELECT k, v FROM {t.data} WHERE ns = %s AND k >= %s ORDER BY k LIMIT %s"
        self._q_items_to = f"SELECT k, v FROM {t.data} WHERE ns = %s AND k >= %s AND k < %s ORDER BY k LIMIT %s"
        self._q_keys = f"SELECT k FROM {t.data} WHERE ns = %s AND k >= %s ORDER BY k LIMIT %s"
        self._q_keys_to = f"SELECT k FROM {t.data} WHERE ns = %s AND k >= %s AND k < %s ORDER BY k LIMIT %s"
        self._q_usage_row = f"SELECT used_bytes, key_count FROM {t.usage} WHERE ns = %s"

    def _query(self, action: str, sql: str, params: Any) -> list[Any]:
        """The rows of a read; a connection found dead is replaced once."""
        for attempt in (0, 1):
            try:
                cursor = self._idle.pop()
            except IndexError:
                cursor = self._acquire()
            try:
                cursor.execute(sql, params)
                rows: list[Any] = cursor.fetchall()
            except Exception as exc:
                if attempt == 0 and self._is_disconnect(cursor, exc):
                    self.retries["reconnect"] += 1
                    self._discard(cursor)
                    self._discard_idle()
                    continue
                raise self._failed(cursor, exc, action) from exc
            except BaseException:
                self._interrupted(cursor)
                raise
            self._idle.append(cursor)
            return rows
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, namespace: str, key: bytes) -> bytes | None:
        rows = self._query("get", self._q_get, (namespace, key))
        return rows[0][0] if rows else None

    def has(self, namespace: str, key: bytes) -> bool:
        return bool(self._query("has", self._q_has, (namespace, key)))

    def get_many(self, namespace: str, keys: Sequence[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        found = dict(self._query("get_many", *self._get_many_query(namespace, keys)))
        return [found.get(key) for key in keys]

    def _get_many_query(self, namespace: str, keys: Sequence[bytes]) -> tuple[str, tuple[Any, ...]]:
        raise NotImplementedError

    def items(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        if end is None:
            rows = self._query("items", self._q_items, (namespace, start, limit))
        else:
            rows = self._query("items", self._q_items_to, (namespace, start, end, limit))
        return rows if isinstance(rows, list) else list(rows)

    def keys(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[bytes]:
        if end is None:
            rows = self._query("keys", self._q_keys, (namespace, start, limit))
        else:
            rows = self._query("keys", self._q_keys_to, (namespace, start, end, limit))
        return list(map(_first, rows))

    def usage(self, namespace: str) -> Usage:
        rows = self._query("usage", self._q_usage_row, (namespace,))
        return Usage(int(rows[0][0]), int(rows[0][1])) if rows else Usage()

    def _fetchall(self, item: Any, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        item.execute(sql, params)
        return list(item.fetchall())

    def _is_disconnect(self, item: Any, exc: Exception) -> bool:
        return bool(self._sa_engine.dialect.is_disconnect(exc, item.connection, item))  # type: ignore[arg-type]
