"""The shipped conformance suite on leveldb://, a fresh database directory per test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airssys_storage.testing import BackendConformance


class TestLevelDBConformance(BackendConformance):
    @pytest.fixture
    def storage_url(self, tmp_path: Path) -> str:
        return f"leveldb://{tmp_path}/db"

    @pytest.fixture
    def damage_store(self) -> Callable[[str, dict[str, Any]], None]:
        """The shared repair test runs on a database whose CURRENT file is gone (it cannot open)."""

        def damage(url: str, options: dict[str, Any]) -> None:
            (Path(url.removeprefix("leveldb://")) / "CURRENT").unlink()

        return damage


class TestLevelDBConformanceTinySizeCache(TestLevelDBConformance):
    """Again with a size cache that is cleared every few writes and other engine options."""

    @pytest.fixture
    def backend_options(self) -> dict[str, Any]:
        return {"size_cache_keys": 3, "compression": None, "bloom_filter_bits": 0, "write_buffer_size": "64KiB"}
