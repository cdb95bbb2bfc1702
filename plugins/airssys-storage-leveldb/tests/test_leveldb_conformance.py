"""The shipped conformance suite on leveldb://, a fresh database directory per test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airssys_storage_leveldb import LevelDBBackend
from airssys_storage_leveldb.layout import COUNTER, counter_key

from airssys_storage import StorageBackend
from airssys_storage.testing import BackendConformance


def tamper_leveldb_usage(backend: StorageBackend, namespace: str, used_bytes: int) -> None:
    """Overwrite the counter record behind the backend's back (and drop its cached copy)."""
    assert isinstance(backend, LevelDBBackend)
    keys = backend.usage(namespace).keys
    backend._db.put(counter_key(namespace), COUNTER.pack(used_bytes, keys, 0, 0))
    backend._spaces[namespace].counter = None


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

    def tamper_usage(self, backend: StorageBackend, namespace: str, used_bytes: int) -> None:
        tamper_leveldb_usage(backend, namespace, used_bytes)


class TestLevelDBConformanceTinySizeCache(TestLevelDBConformance):
    """Again with a size cache that is cleared every few writes and other engine options."""

    @pytest.fixture
    def backend_options(self) -> dict[str, Any]:
        return {
            "size_cache_keys": 3,
            "compression": None,
            "bloom_filter_bits": 0,
            "write_buffer_size": "64KiB",
            "verify_checksums": True,
        }
