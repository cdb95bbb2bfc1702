"""The shipped conformance suite on the engine selected by AIRSSYS_STORAGE_TEST_SQL."""

from __future__ import annotations

from typing import Any

import pytest
from airssys_storage_sql import SQLBackend
from sqlsupport import selected_engine

from airssys_storage import StorageBackend
from airssys_storage.testing import BackendConformance


def tamper_sql_usage(backend: StorageBackend, namespace: str, used_bytes: int) -> None:
    """Overwrite the namespace's usage row with plain SQL (what a stray UPDATE or a bad restore does)."""
    assert isinstance(backend, SQLBackend)
    sql = backend._sql(f"UPDATE {backend._tables.usage} SET used_bytes = ? WHERE ns = ?")
    backend._run("tamper", backend._execute, sql, (used_bytes, namespace))


class TestSQLConformance(BackendConformance):
    """SQLite file, PostgreSQL or MariaDB (see conftest.py)."""

    if selected_engine() != "sqlite":
        # The feed race keeps the full 4 x 2,500 writes on the servers too (40-80 s here: each commit
        # waits for the log's flush while it holds the component's seq, so the commits run one at a time). The
        # killed reader only needs a stream to cut into: 400 writes, killed after 100.
        feed_kill_writes = 400
        feed_kill_after = 100

    def tamper_usage(self, backend: StorageBackend, namespace: str, used_bytes: int) -> None:
        tamper_sql_usage(backend, namespace, used_bytes)

    @pytest.fixture
    def storage_url(self, store_url: str) -> str:
        return store_url

    @pytest.fixture
    def backend_options(self, store_options: dict[str, Any]) -> dict[str, Any]:
        return store_options


if selected_engine() == "sqlite":  # defined only where it runs, so server envs show no skips

    class TestSQLiteMemoryConformance(BackendConformance):
        """``sqlite://``: one private in-memory database per manager."""

        @pytest.fixture
        def storage_url(self) -> str:
            return "sqlite://"

        def tamper_usage(self, backend: StorageBackend, namespace: str, used_bytes: int) -> None:
            tamper_sql_usage(backend, namespace, used_bytes)
