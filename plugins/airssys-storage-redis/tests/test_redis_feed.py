"""The change feed on Redis beyond the shared suite: layout, no cost when off, age retention, pub/sub wake-ups.

The shared conformance suite (:mod:`airssys_storage.testing.changes`, and the
multi-process proofs of :mod:`airssys_storage.testing.feedproof`: 4 writer
processes x 2,500 writes, a SIGKILLed reader resuming from its cursor) runs on
Redis too (``test_redis_conformance.py``); the script's events are compared
with the planner's in ``test_redis_lua_planner.py``.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from airssys_storage_redis import RedisBackend
from redis.crc import key_slot

from airssys_storage import Access, ChangeGap, InvalidArgument, Manifest, StorageManager, StorageSettings
from airssys_storage.testing import FakeClock
from airssys_storage.testing.changes import pull_all


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    opened = redis.Redis.from_url(redis_url)
    yield opened
    opened.close()


def _settings(redis_url: str, key_prefix: str, **changes: Any) -> StorageSettings:
    return StorageSettings(
        url=redis_url, backend_options={"key_prefix": key_prefix}, changes_capture_values=True, **changes
    )


def test_the_log_shares_the_hash_tag_and_a_feed_off_component_has_none(
    redis_url: str, key_prefix: str, client: redis.Redis
) -> None:
    """Layout: the log is <prefix>{<component>}:c (the component's slot); without the feed there is no log."""
    with StorageManager.from_settings(_settings(redis_url, key_prefix), clock=FakeClock()) as manager:
        manager.component(Manifest("on", Access.ADMIN, changes=True)).set("k", b"v")
        manager.component(Manifest("off", Access.ADMIN)).set("k", b"v")
    names = {name.decode().removeprefix(key_prefix) for name in client.scan_iter(match=key_prefix + "*")}
    assert names == {"{on}:d", "{on}:i", "{on}:s", "{on}:c", "{off}:d", "{off}:i", "{off}:s"}
    assert key_slot(f"{key_prefix}{{on}}:c".encode()) == key_slot(b"{on}")
    assert client.type(f"{key_prefix}{{on}}:c") == b"stream"
    assert client.hgetall(f"{key_prefix}{{off}}:s").keys() == {b"b", b"k", b"f"}, "no seq fields without the feed"


def test_a_set_is_one_command_with_the_feed_on_or_off(redis_url: str, key_prefix: str) -> None:
    """Feed off costs nothing: one EVALSHA, six keys, an empty feed argument; on, still one EVALSHA (seven keys)."""
    with StorageManager.from_settings(_settings(redis_url, key_prefix), clock=FakeClock()) as manager:
        backend = manager.backend
        assert isinstance(backend, RedisBackend)
        on = manager.component(Manifest("on", Access.ADMIN, changes=True))
        off = manager.component(Manifest("off", Access.ADMIN))
        sent: list[tuple[Any, ...]] = []
        real = backend._call

        def spy(action: str, write: bool, *args: Any) -> Any:
            sent.append(args)
            return real(action, write, *args)

        backend._call = spy  # type: ignore[method-assign]
        off.set("a", b"1")
        off.set_many({"b": b"2", "c": b"3"})
        # EVALSHA sha numkeys keys... mode now limit cutoff feed ...: the feed argument is ARGV 5
        assert [(args[0], args[2], args[3 + args[2] + 4]) for args in sent] == [(b"EVALSHA", 6, b"")] * 2
        sent.clear()
        on.set("a", b"1")
        on.set_many({"b": b"2", "c": b"3"})
        assert [(args[0], args[2], args[3 + args[2] + 4][:7]) for args in sent] == [(b"EVALSHA", 7, b"100000,")] * 2
        assert [event.seq for event in pull_all(on)[0]] == [1, 2, 3]


def test_age_retention_trims_a_prefix_and_gives_a_gap(redis_url: str, key_prefix: str) -> None:
    """Retention by age: when the seq crosses a trim step, events older than changes_retain_seconds go."""
    clock = FakeClock()
    settings = _settings(redis_url, key_prefix, changes_retain_seconds=1)
    with StorageManager.from_settings(settings, clock=clock) as manager:
        store = manager.component(Manifest("aged", Access.ADMIN, changes=True))
        for i in range(10):
            store.set(f"k{i}", b"old")
        clock.advance(2)
        for i in range(60):  # seqs 11..70: crossing 64 trims the 10 old ones (the newer stay)
            store.set(f"n{i}", b"new")
        with pytest.raises(ChangeGap) as info:
            store.changes(5)
        assert info.value.oldest == 11
        events, _ = pull_all(store)
        assert [event.seq for event in events] == list(range(11, 71))
        state, seq = store.resync()
        assert seq == 70 and state == dict(store.scan(limit=1000)[0])


def test_a_watcher_is_woken_by_pubsub_from_another_process(redis_url: str, key_prefix: str) -> None:
    """Another process's commit PUBLISHes; this process's watcher wakes long before its poll interval (30 s)."""
    settings = _settings(redis_url, key_prefix, changes_poll_seconds=30)
    writer = (
        "import sys, time\n"
        "from airssys_storage import Access, Manifest, StorageManager, StorageSettings\n"
        "settings = StorageSettings.model_validate_json(sys.argv[1])\n"
        "with StorageManager.from_settings(settings) as manager:\n"
        "    store = manager.component(Manifest('woken', Access.ADMIN, changes=True))\n"
        "    sys.stdin.readline()\n"
        "    store.set('k', b'v')\n"
        "    print(time.time(), flush=True)\n"
    )
    with StorageManager.from_settings(settings) as manager:
        store = manager.component(Manifest("woken", Access.ADMIN, changes=True))
        start = store.snapshot_seq()
        woken: list[float] = []
        subscribed = threading.Event()

        def watch() -> None:
            subscribed.set()
            if manager.backend.wait_for_changes("woken", start, 20):
                woken.append(time.time())

        process = subprocess.Popen(
            [sys.executable, "-c", writer, settings.model_dump_json()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            thread = threading.Thread(target=watch)
            thread.start()
            subscribed.wait()
            time.sleep(0.3)  # the watcher subscribed (the listener starts before its first check) and waits
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write("go\n")
            process.stdin.flush()
            committed = float(process.stdout.readline())
            thread.join(25)
        finally:
            process.kill()
            process.wait()
        assert woken, "the watcher was not woken"
        assert woken[0] - committed < 2.0, "woken by pub/sub, not by the 30 s poll"
        assert [event.key for event in pull_all(store, start)[0]] == ["k"]


def test_seqs_continue_above_the_log_when_the_counter_row_was_rewritten(
    redis_url: str, key_prefix: str, client: redis.Redis
) -> None:
    """A counter row rewritten around the backend (its q lost) cannot make a commit fail half-way or reuse a seq."""
    with StorageManager.from_settings(_settings(redis_url, key_prefix), clock=FakeClock()) as manager:
        store = manager.component(Manifest("lost-q", Access.ADMIN, changes=True))
        store.set_many({"a": b"1", "b": b"2"})
        client.hdel(f"{key_prefix}{{lost-q}}:s", "q", "a")
        store.set("c", b"3")
        assert [(event.seq, event.key) for event in pull_all(store)[0]] == [(1, "a"), (2, "b"), (3, "c")]
        with pytest.raises(InvalidArgument):
            store.changes(10**30)
