"""The shipped conformance suite on rocksdb://, a fresh database directory per test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airssys_storage_rocksdb import RocksDBBackend
from airssys_storage_rocksdb.layout import COUNTER

from airssys_storage import StorageBackend
from airssys_storage.testing import BackendConformance


def tamper_rocksdb_usage(backend: StorageBackend, namespace: str, used_bytes: int) -> None:
    """Overwrite the counter record behind the backend's back (and drop its cached copy)."""
    assert isinstance(backend, RocksDBBackend)
    keys = backend.usage(namespace).keys
    backend._engine._counters_cf.put(namespace.encode(), COUNTER.pack(used_bytes, keys, 0, 0))
    backend._spaces[namespace].counter = None


class TestRocksDBConformance(BackendConformance):
    @pytest.fixture
    def storage_url(self, tmp_path: Path) -> str:
        return f"rocksdb://{tmp_path}/db"

    @pytest.fixture
    def damage_store(self) -> Callable[[str, dict[str, Any]], None]:
        """The shared repair test runs on a database whose CURRENT file is gone (it cannot open)."""

        def damage(url: str, options: dict[str, Any]) -> None:
            (Path(url.removeprefix("rocksdb://")) / "CURRENT").unlink()

        return damage

    def tamper_usage(self, backend: StorageBackend, namespace: str, used_bytes: int) -> None:
        tamper_rocksdb_usage(backend, namespace, used_bytes)


class TestRocksDBConformanceOtherOptions(TestRocksDBConformance):
    """Again with a size cache cleared every few writes, fsync per commit and other engine options."""

    @pytest.fixture
    def backend_options(self) -> dict[str, Any]:
        return {
            "size_cache_keys": 3,
            "compression": "none",
            "bottommost_compression": "lz4",
            "bloom_filter_bits": 0,
            "block_cache_size": 0,
            "write_buffer_size": "64KiB",
            "sync": True,
        }
