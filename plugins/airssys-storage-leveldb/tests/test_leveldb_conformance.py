"""The shipped conformance suite on leveldb://, a fresh database directory per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from airssys_storage.testing import BackendConformance


class TestLevelDBConformance(BackendConformance):
    @pytest.fixture
    def storage_url(self, tmp_path: Path) -> str:
        return f"leveldb://{tmp_path}/db"
