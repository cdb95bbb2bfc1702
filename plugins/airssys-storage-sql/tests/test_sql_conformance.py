"""The shipped conformance suite on the engine selected by AIRSSYS_STORAGE_TEST_SQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlsupport import selected_engine

from airssys_storage.testing import BackendConformance


class TestSQLConformance(BackendConformance):
    """SQLite file, PostgreSQL or MariaDB (see conftest.py)."""

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
