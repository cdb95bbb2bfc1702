"""The shipped conformance suite on redis://, a fresh key prefix per test (database 13 by default)."""

from __future__ import annotations

from typing import Any

import pytest
from airssys_storage_redis import RedisBackend

from airssys_storage import StorageBackend
from airssys_storage.testing import BackendConformance


def tamper_redis_usage(backend: StorageBackend, namespace: str, used_bytes: int) -> None:
    """Overwrite the namespace's counter row with a plain HSET (what a stray client or a bad restore does)."""
    assert isinstance(backend, RedisBackend)
    backend._call("tamper", True, b"HSET", backend._names(namespace)[3], b"b", used_bytes)


class TestRedisConformance(BackendConformance):
    def tamper_usage(self, backend: StorageBackend, namespace: str, used_bytes: int) -> None:
        tamper_redis_usage(backend, namespace, used_bytes)

    @pytest.fixture
    def storage_url(self, redis_url: str) -> str:
        return redis_url

    @pytest.fixture
    def backend_options(self, key_prefix: str) -> dict[str, Any]:
        return {"key_prefix": key_prefix}
