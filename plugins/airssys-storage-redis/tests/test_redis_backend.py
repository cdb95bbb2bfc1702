"""What the Redis backend promises beyond the shared suite: layout, expiry without Redis TTLs, options, errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from airssys_storage_redis import RedisBackend, RedisOptions
from redis.crc import key_slot

from airssys_storage import (
    Access,
    ConfigurationError,
    InternalError,
    Manifest,
    StorageManager,
    StorageSettings,
    Usage,
)
from airssys_storage.testing import FakeClock


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    opened = redis.Redis.from_url(redis_url)
    yield opened
    opened.close()


@pytest.fixture
def manager(redis_url: str, key_prefix: str) -> Iterator[StorageManager]:
    settings = StorageSettings(url=redis_url, backend_options={"key_prefix": key_prefix})
    opened = StorageManager.from_settings(settings, clock=FakeClock())
    yield opened
    opened.close()


def _names(client: redis.Redis, prefix: str) -> list[bytes]:
    return sorted(client.scan_iter(match=prefix + "*", count=1000))


def test_every_key_of_a_component_shares_its_hash_tag(
    manager: StorageManager, client: redis.Redis, key_prefix: str
) -> None:
    """Layout: <prefix>{<component>}:<part>, one Cluster slot per component (what lets one script touch them all)."""
    for component in ("app", "app-b"):
        storage = manager.component(Manifest(component, Access.ADMIN, None))
        storage.set("k", b"v", ttl=60)
        storage.increment("n", 1, op_id="op-1")
    names = _names(client, key_prefix)
    parts = {name.decode().removeprefix(key_prefix) for name in names}
    assert parts == {f"{{{c}}}:{part}" for c in ("app", "app-b") for part in "dieost"}
    for component in ("app", "app-b"):
        slots = {key_slot(name) for name in names if f"{{{component}}}".encode() in name}
        assert slots == {key_slot(f"{{{component}}}".encode())}


def test_expiry_uses_no_redis_ttl_and_stays_charged_until_swept(
    manager: StorageManager, client: redis.Redis, key_prefix: str
) -> None:
    """Expiry: exact for readers, no Redis TTL on any key, bytes leave the counter only when swept."""
    clock = manager.clock
    assert isinstance(clock, FakeClock)
    storage = manager.component(Manifest("app", Access.ADMIN, None))
    storage.set("short", b"12345", ttl=10)
    storage.set("long", b"1", ttl=1000)
    storage.set("plain", b"22")
    assert all(client.ttl(name) == -1 for name in _names(client, key_prefix)), "no key carries a Redis TTL"
    clock.advance(10)
    assert storage.get("short") is None and storage.keys() == ["long", "plain"]
    assert storage.usage() == Usage(len("short") + 5 + len("long") + 1 + len("plain") + 2, 3)
    assert storage.purge_expired() == 1
    assert storage.usage() == Usage(len("long") + 1 + len("plain") + 2, 2)
    assert manager.backend.verify().ok


def test_listing_is_bytewise_ordered_from_the_index(manager: StorageManager) -> None:
    """Ordered listing: keys come in bytewise (UTF-8) order, whatever the server's locale."""
    storage = manager.component(Manifest("app", Access.ADMIN, None))
    keys = ["b", "a", "é", "Z", "a\u0308", "😀", "aa", "a b"]
    storage.set_many([(key, b"v") for key in keys])
    assert storage.keys() == sorted(keys, key=str.encode)
    assert [key for key, _ in storage.range("a", "b")] == sorted(["a", "aa", "a b", "a\u0308"], key=str.encode)


def test_two_backends_on_one_server_share_one_exact_quota(redis_url: str, key_prefix: str) -> None:
    """multi_process: two hosts (backends) writing one component see one counter and one quota."""
    options = {"key_prefix": key_prefix}
    first = StorageManager.from_settings(StorageSettings(url=redis_url, backend_options=options))
    second = StorageManager.from_settings(StorageSettings(url=redis_url, backend_options=options))
    try:
        a = first.component(Manifest("app", Access.ADMIN, 20))
        b = second.component(Manifest("app", Access.ADMIN, 20))
        a.set("k1", b"1234567")  # 9 bytes
        b.set("k2", b"1234567")  # 18 bytes
        with pytest.raises(Exception, match="quota"):
            a.set("k3", b"1")
        assert a.usage() == b.usage() == Usage(18, 2)
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize(
    "options, problem",
    [
        ({"key_prefix": "a{b"}, "key_prefix"),
        ({"key_prefix": "a b"}, "key_prefix"),
        ({"pool_size": 0}, "pool_size"),
        ({"socket_timeout": 0}, "socket_timeout"),
        ({"read_retries": 9}, "read_retries"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_options_are_validated_naming_the_option(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        RedisBackend.parse_options(options)


def test_default_options_need_no_pydantic() -> None:
    assert RedisBackend.parse_options({}) == RedisOptions()


def test_tls_options_on_a_plain_url_are_refused(redis_url: str) -> None:
    with pytest.raises(ConfigurationError, match="rediss://"):
        RedisBackend.open(redis_url, {"tls_verify": False})


def test_a_wrong_password_is_named_without_showing_it(redis_url: str) -> None:
    """A refused login: a configuration error naming the server and the URL setting, the password redacted."""
    url = redis_url.replace("redis://", "redis://nobody:hunter2@", 1)
    with pytest.raises((ConfigurationError, InternalError)) as caught:
        RedisBackend.open(url, {})
    message = str(caught.value)
    assert "hunter2" not in message and "Redis at" in message


def test_bad_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="redis://"):
        RedisBackend.open("redis://:pw@127.0.0.1:6379/notanumber", {})


def test_stats_name_the_server_and_its_persistence(manager: StorageManager) -> None:
    stats = manager.backend.stats()
    assert stats["server"].startswith("Redis at ") and "aof_enabled" in stats["persistence"]


def test_a_forked_child_gets_fresh_connections(manager: StorageManager) -> None:
    """Fork: the child starts with no inherited connection (the shared suite checks the data)."""
    import os

    backend = manager.backend
    assert isinstance(backend, RedisBackend)
    manager.component(Manifest("app", Access.ADMIN, None)).set("k", b"v")
    assert backend._created >= 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        ok = backend._created == 0 and backend._idle == [] and backend.get("app", b"k") == b"v"
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.close(read)
    os.waitpid(pid, 0)


def test_verify_repair_fixes_rows_with_a_bad_version_or_expiry(manager: StorageManager) -> None:
    """verify: a row whose version or expiry cannot be read (written around the backend) is reported and fixed."""
    backend = manager.backend
    assert isinstance(backend, RedisBackend)
    storage = manager.component(Manifest("app", Access.ADMIN, None))
    storage.set_many([("a", b"1"), ("b", b"22"), ("c", b"333")])
    rows = backend._names("app")[0]
    backend._call("tamper", True, b"HSET", rows, b"b", b"x9:22")
    backend._call("tamper", True, b"HSET", rows, b"c", b"1,abc:333")
    report = backend.verify()
    assert not report.ok
    assert {(row.key, row.removed) for row in report.bad_rows} == {(b"b", False), (b"c", True)}
    assert "version 'x9'" in report.bad_rows[0].problem or "version 'x9'" in report.bad_rows[1].problem
    assert backend.verify(repair=True).repaired
    after = backend.verify()
    assert after.ok and after.bad_rows == ()
    entry = storage.get_entry("b")
    assert entry is not None and entry.version > 1
    assert storage.get("c") is None and storage.usage() == Usage(len("a") + 1 + len("b") + 2, 2)
