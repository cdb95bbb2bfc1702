"""The shipped conformance suite on lmdb://, a fresh store directory per test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airssys_storage_lmdb import LMDBBackend
from airssys_storage_lmdb.layout import COUNTER

from airssys_storage import StorageBackend
from airssys_storage.testing import BackendConformance


def tamper_lmdb_usage(backend: StorageBackend, namespace: str, used_bytes: int) -> None:
    """Overwrite the usage record behind the backend's back (keeping its row count and floor)."""
    assert isinstance(backend, LMDBBackend)
    shared = backend._shared
    with shared.env.begin(write=True) as txn:
        raw = txn.get(namespace.encode(), db=shared.usage)
        _, keys, floor = COUNTER.unpack(raw) if raw else (0, 0, 0)
        txn.put(namespace.encode(), COUNTER.pack(used_bytes, keys, floor), db=shared.usage)


class TestLMDBConformance(BackendConformance):
    @pytest.fixture
    def storage_url(self, tmp_path: Path) -> str:
        return f"lmdb://{tmp_path}/db"

    @pytest.fixture
    def backend_options(self) -> dict[str, Any]:
        return {"sync": False}  # tmp_path: the suite tests behaviour, not fsync

    def tamper_usage(self, backend: StorageBackend, namespace: str, used_bytes: int) -> None:
        tamper_lmdb_usage(backend, namespace, used_bytes)


class TestLMDBConformanceTinyMap(TestLMDBConformance):
    """Again with a map that starts at the minimum, so that commits keep growing it, and full durability."""

    # sync=True: each commit fsyncs, and LMDB runs one write transaction at a time, so the feed proofs' full sizes
    # take 35 s here (7 s without sync; the parent class runs them). Smaller ones still grow the map under racing
    # writer processes and commit the feed durably.
    feed_race_writes = 150
    feed_kill_writes = 200
    feed_kill_after = 50

    @pytest.fixture
    def backend_options(self) -> dict[str, Any]:
        return {"map_size": "64KiB", "sync": True, "metasync": False}
