"""The test server and its clean-up, shared by the Redis plugin's tests.

``AIRSSYS_STORAGE_TEST_REDIS_URL`` names the server (default: database 13
of the development machine's ``redis://127.0.0.1:6379``; other people use
the same server, so every test writes under a key prefix of its own and
deletes only its own keys). An unreachable server skips the tests with the
reason, except under ``CI=true`` (or ``1``), where it fails them.
"""

from __future__ import annotations

import os
import secrets

import pytest

DEFAULT_URL = "redis://127.0.0.1:6379/13"


def server_url() -> str:
    return os.environ.get("AIRSSYS_STORAGE_TEST_REDIS_URL") or DEFAULT_URL


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip on a laptop; fail under CI, where a skipped service test would hide a broken setup."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def fresh_prefix() -> str:
    """A key prefix no other test uses."""
    return f"t{os.getpid() % 100000}_{secrets.token_hex(4)}:"


def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under *prefix* (SCAN + DEL: only this test's keys, never FLUSHDB)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        for name in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(name)
    finally:
        client.close()
