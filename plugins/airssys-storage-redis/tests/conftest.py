"""A reachable Redis server (or a skip with the reason; a failure under CI) and a fresh key prefix per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redissupport import delete_prefix, fresh_prefix, server_url, skip_or_fail

from airssys_storage.testing import isolated_environment  # noqa: F401 - autouse: no developer settings leak in


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test server's URL, checked once with a PING."""
    url = server_url()
    from airssys_storage_redis.backend import redact

    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=3)
        client.ping()
        client.close()
    except Exception as exc:
        skip_or_fail(
            f"Redis not reachable at {redact(url)} ({type(exc).__name__}: {str(exc).splitlines()[0]}): "
            "start redis-server or set AIRSSYS_STORAGE_TEST_REDIS_URL"
        )
    return url


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix nobody else uses; its keys are deleted when the test ends."""
    prefix = fresh_prefix()
    yield prefix
    delete_prefix(redis_url, prefix)
