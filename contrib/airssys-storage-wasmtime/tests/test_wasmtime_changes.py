"""The change feed for guests: storage-changes (pull) and change-subscriber (delivery to on-changes)."""

from __future__ import annotations

import logging
import struct
import threading
import time
from pathlib import Path

import pytest
from airssys_storage_wasmtime import DeliveryReport, Guest, Host
from airssys_storage_wasmtime.subscriptions import HANDLER_EXPORT, dead_letters, subscription_state
from wasmtime_helpers import FIXTURES, LIMITS

from airssys_storage import ComponentStorage, ConfigurationError, Manifest, StorageManager, StorageSettings
from airssys_storage.errors import ManifestError
from airssys_storage.hostmeta import HOST_NAMESPACE


@pytest.fixture(scope="module")
def puller(host: Host) -> Guest:
    return host.load(FIXTURES / "changes.wat")


@pytest.fixture(scope="module")
def subscriber(host: Host) -> Guest:
    return host.load(FIXTURES / "subscriber.wat")


def _feed(
    manager: StorageManager, access: str = "read-write", changes: bool | None = True, **kw: object
) -> ComponentStorage:
    return manager.component(Manifest(id="guest", access=access, max_size="64KB" if access != "read-only" else None,
                                      changes=changes, **kw))  # type: ignore[arg-type]  # fmt: skip


def _events(result: object) -> list[tuple[int, str, str, int, str | None]]:
    records, _ = result  # type: ignore[misc]
    return [(r.seq, r.key, r.op, r.version, r.end) for r in records]


def _last_batch(storage: ComponentStorage) -> tuple[int, int, int]:
    """(first seq, last seq, count) of the batch the subscriber fixture accepted last."""
    raw = storage.get("out/last")
    assert raw is not None, "the subscriber accepted no batch"
    return struct.unpack("<QQI", raw)


# -- pull ----------------------------------------------------------------------------


def test_a_guest_pulls_its_changes_in_order_with_prefix_and_cursor(
    host: Host, puller: Guest, manager: StorageManager
) -> None:
    storage = _feed(manager, access="admin")  # clear needs admin
    storage.set("a", b"1")
    storage.set("b/x", b"2")
    storage.delete("a")
    storage.delete_prefix("b/")
    storage.set("c", b"3")
    storage.clear()
    with host.instantiate(puller, storage) as instance:
        everything = instance.call("changes", 0, None, 10)
        assert _events(everything)[:4] == [
            (1, "a", "set", 1, None),
            (2, "b/x", "set", 1, None),
            (3, "a", "delete", 1, None),
            (4, "b/", "delete-range", 1, "b0"),
        ]
        assert [event[:3] for event in _events(everything)[4:]] == [(5, "c", "set"), (6, "", "clear")]
        assert everything[1] == 6
        # the cursor pages, a prefix filters (a clear concerns every prefix), limit bounds
        assert _events(instance.call("changes", 0, None, 2)) == _events(everything)[:2]
        assert instance.call("changes", 0, None, 2)[1] == 2
        assert [e[0] for e in _events(instance.call("changes", 1, "b/", 10))] == [2, 4, 6]
        assert instance.call("changes", 6, None, 10) == ([], 6)  # nothing new: the cursor stays
        assert instance.call("snapshot-seq") == 6


def test_a_pull_behind_retention_is_a_gap_with_the_oldest_seq(host: Host, puller: Guest) -> None:
    settings = StorageSettings(url="memory://", changes_retain_events=2, **LIMITS)
    with StorageManager.from_settings(settings) as manager:
        storage = _feed(manager)
        for i in range(70):  # trims once past retain_events plus its slack
            storage.set(f"k{i}", b"v")
        oldest = storage.changes(0, None, 1)[0][0].seq
        assert oldest > 2
        with host.instantiate(puller, storage) as instance:
            gap = instance.call("changes", 1, None, 10)
            assert (gap.tag, gap.payload) == ("gap", oldest)
            too_far = instance.call("changes", 999, None, 10)
            assert too_far.tag == "invalid-argument"
            assert instance.call("changes", 0, None, 0).tag == "invalid-argument"


def test_a_limit_above_the_query_maximum_is_lowered_to_it(host: Host, puller: Guest, manager: StorageManager) -> None:
    storage = _feed(manager)
    for i in range(15):
        storage.set(f"k{i}", b"v")
    with host.instantiate(puller, storage) as instance:
        records, after = instance.call("changes", 0, None, 1000)
        assert len(records) == LIMITS["max_keys_per_query"]
        assert after == LIMITS["max_keys_per_query"]


def test_read_only_may_pull_none_may_not_and_a_component_without_the_feed_is_told_how(
    host: Host, puller: Guest, manager: StorageManager
) -> None:
    writer = _feed(manager)
    writer.set("a", b"1")
    reader = _feed(manager, access="read-only")
    with host.instantiate(puller, reader) as instance:
        assert _events(instance.call("changes", 0, None, 10)) == [(1, "a", "set", 1, None)]
    nobody = manager.component(Manifest(id="guest", access="none", changes=True))
    with host.instantiate(puller, nobody) as instance:
        assert instance.call("changes", 0, None, 10).tag == "permission-denied"
        assert instance.call("snapshot-seq").tag == "permission-denied"
    off = manager.component(Manifest(id="other", access="read-write"))
    with host.instantiate(puller, off) as instance:
        refused = instance.call("changes", 0, None, 10)
        assert refused.tag == "changes-disabled"
        assert "permissions.storage.changes = true" in refused.payload


# -- subscriptions ----------------------------------------------------------------------


def test_subscribing_needs_read_access_and_the_feed() -> None:
    with pytest.raises(ManifestError, match="needs read access"):
        Manifest(id="guest", access="none", subscribe=("in/",))
    with pytest.raises(ManifestError, match="needs the change feed"):
        Manifest(id="guest", access="read-only", changes=False, subscribe=("in/",))
    parsed = Manifest.from_toml(
        '[component]\nid = "guest"\n[permissions]\n'
        'storage = { access = "read-only", changes = true, subscribe = ["in/"] }'
    )
    assert parsed.subscribe == ("in/",)


def test_a_subscriber_that_traps_on_the_first_delivery_gets_the_same_batch_again(
    host: Host, subscriber: Guest, manager: StorageManager, caplog: pytest.LogCaptureFixture
) -> None:
    storage = _feed(manager, subscribe=("in/",))
    storage.set("mode/trap-once", b"")  # seq 1, not subscribed
    storage.set("in/a", b"1")  # seq 2
    storage.set("in/b", b"2")  # seq 3
    with caplog.at_level(logging.WARNING, "airssys_storage_wasmtime.subscriptions"):
        report = host.deliver_changes(subscriber, storage, manager)
    assert storage.has("out/tripped")  # the first delivery ran, and trapped
    assert _last_batch(storage) == (2, 3, 2)  # the second got the same events
    assert (report.delivered, report.batches, report.failures, report.dead_letters) == (2, 1, 1, [])
    assert "attempt 1 of 5" in caplog.text and "trapped" in caplog.text
    # the handler's own writes (out/) advanced the cursor without a call; nothing is pending
    again = host.deliver_changes(subscriber, storage, manager)
    assert (again.delivered, again.failures) == (0, 0)
    assert again.cursors["in/"] == storage.snapshot_seq()
    storage.set("in/c", b"3")
    later = host.deliver_changes(subscriber, storage, manager)
    assert later.delivered == 1
    assert _last_batch(storage)[2] == 1


def test_batches_are_bounded_and_delivered_in_order(host: Host, subscriber: Guest, manager: StorageManager) -> None:
    storage = _feed(manager, subscribe=("in/",))
    for i in range(7):
        storage.set(f"in/{i}", b"v")
    report = host.deliver_changes(subscriber, storage, manager, batch_size=3, max_batches=2)
    assert (report.delivered, report.batches) == (6, 2)
    assert _last_batch(storage) == (4, 6, 3)
    rest = host.deliver_changes(subscriber, storage, manager, batch_size=3)
    assert rest.delivered == 1
    assert _last_batch(storage) == (7, 7, 1)


def test_the_cursor_survives_a_restart_of_the_host(tmp_path: Path, subscriber: Guest) -> None:
    settings = StorageSettings(url=f"sqlite:///{tmp_path / 'store.db'}", **LIMITS)
    manifest = Manifest(id="guest", access="read-write", changes=True, subscribe=("in/",))
    with StorageManager.from_settings(settings) as manager:
        storage = manager.component(manifest)
        storage.set("in/a", b"1")
        storage.set("in/b", b"2")
        first = Host(cache=False)
        assert first.deliver_changes(first.load(FIXTURES / "subscriber.wat"), storage, manager).delivered == 2
        cursor = subscription_state(manager.host_metadata("wasmtime"), "guest", "in/")["cursor"]
        assert cursor >= 2
    with StorageManager.from_settings(settings) as manager:  # a new process, in effect
        storage = manager.component(manifest)
        storage.set("in/c", b"3")
        second = Host(cache=False)
        report = second.deliver_changes(second.load(FIXTURES / "subscriber.wat"), storage, manager)
        assert report.delivered == 1  # only what came after the stored cursor
        first_seq, last_seq, count = _last_batch(storage)
        assert first_seq == last_seq and count == 1 and first_seq > cursor
        # the cursor is no key of the component and uses none of its quota
        assert storage.keys() == ["in/a", "in/b", "in/c", "out/last"]
        assert storage.usage().bytes == sum(len(k) + len(storage.get(k) or b"") for k in storage.keys())
        assert HOST_NAMESPACE not in manager.component_ids()


def test_a_batch_the_handler_keeps_refusing_is_dead_lettered_and_skipped(
    host: Host, subscriber: Guest, manager: StorageManager, caplog: pytest.LogCaptureFixture
) -> None:
    storage = _feed(manager, subscribe=("in/",))
    storage.set("mode/fail", b"")
    storage.set("in/a", b"1")
    storage.set("in/b", b"2")
    with caplog.at_level(logging.WARNING, "airssys_storage_wasmtime.subscriptions"):
        report = host.deliver_changes(subscriber, storage, manager, max_attempts=3)
    assert (report.delivered, report.failures) == (0, 3)
    (letter,) = report.dead_letters
    assert (letter.component, letter.prefix, letter.first_seq, letter.last_seq, letter.events, letter.attempts) == (
        "guest", "in/", 2, 3, 2, 3,
    )  # fmt: skip
    assert letter.error == "err: handler refused"
    assert dead_letters(manager.host_metadata("wasmtime"), "guest") == [letter]
    assert any(r.levelno == logging.ERROR and "gave up on seqs 2..3" in r.getMessage() for r in caplog.records)
    # skipped: the handler, healthy again, gets only what comes next
    storage.delete("mode/fail")
    storage.set("in/c", b"3")
    assert host.deliver_changes(subscriber, storage, manager).delivered == 1
    assert _last_batch(storage)[2] == 1


def test_attempts_count_across_passes(host: Host, subscriber: Guest, manager: StorageManager) -> None:
    storage = _feed(manager, subscribe=("in/",))
    storage.set("mode/fail", b"")
    storage.set("in/a", b"1")
    for _ in range(2):  # one attempt per pass (a host retrying from a loop, or restarted each time)
        report = host.deliver_changes(subscriber, storage, manager, max_attempts=3, max_batches=1)
        assert (report.failures, report.dead_letters) == (1, [])
    assert subscription_state(manager.host_metadata("wasmtime"), "guest", "in/")["attempts"] == 2
    last = host.deliver_changes(subscriber, storage, manager, max_attempts=3, max_batches=1)
    assert len(last.dead_letters) == 1


@pytest.mark.parametrize("delivered_before", [True, False], ids=["cursor-behind", "new-subscription"])
def test_a_subscription_behind_retention_records_the_lost_seqs(
    host: Host, subscriber: Guest, delivered_before: bool
) -> None:
    """A cursor behind retention, or a new subscription whose start was trimmed: a gap dead letter, never a skip."""
    with StorageManager.from_settings(StorageSettings(url="memory://", changes_retain_events=2, **LIMITS)) as manager:
        storage = _feed(manager, subscribe=("in/",))
        first = 1  # a new subscription starts at seq 1
        if delivered_before:
            storage.set("in/first", b"v")
            # cursor 1: the pass ends at the seq it started at, before the handler's own out/last write (seq 2)
            assert host.deliver_changes(subscriber, storage, manager).delivered == 1
            first = 2
        for i in range(70):
            storage.set(f"in/{i % 5}", b"v")
        oldest, last = storage.change_bounds()
        assert oldest > first + 1
        report = host.deliver_changes(subscriber, storage, manager)
        (gap,) = report.dead_letters
        assert (gap.first_seq, gap.last_seq, gap.events) == (first, oldest - 1, 0)
        assert gap.error.startswith("gap:")
        assert report.delivered == last - oldest + 1


def test_delivery_needs_a_handler_export_and_the_feed(
    host: Host, puller: Guest, subscriber: Guest, manager: StorageManager
) -> None:
    storage = _feed(manager, subscribe=("in/",))
    storage.set("in/a", b"1")
    with pytest.raises(ConfigurationError, match=HANDLER_EXPORT):
        host.deliver_changes(puller, storage, manager)
    off = manager.component(Manifest(id="other", access="read-write", subscribe=("in/",)))
    with pytest.raises(ConfigurationError, match="keeps no change feed"):
        host.deliver_changes(subscriber, off, manager)
    nothing = manager.component(Manifest(id="third", access="read-write", changes=True))
    assert host.deliver_changes(subscriber, nothing, manager).batches == 0  # no subscription: nothing to do


def test_serve_changes_delivers_commits_of_another_thread_as_they_come(
    host: Host, subscriber: Guest, manager: StorageManager
) -> None:
    storage = _feed(manager, subscribe=("in/",))
    stop = threading.Event()
    done: list[DeliveryReport] = []
    server = threading.Thread(target=lambda: done.append(host.serve_changes(subscriber, storage, manager, stop=stop)))
    server.start()
    try:
        for i in range(3):
            storage.set(f"in/{i}", b"v")
            deadline = time.monotonic() + 10
            while storage.get("out/last") is None or _last_batch(storage)[1] < storage.changes(0, "in/", 10)[0][-1].seq:
                assert time.monotonic() < deadline, "not delivered within 10 s"
                time.sleep(0.01)
    finally:
        stop.set()
        server.join(10)
    assert done and done[0].delivered == 3
    assert host.serve_changes(subscriber, storage, manager, idle_timeout=0.05).delivered == 0


class _Crash(BaseException):
    """The host process dying (SIGKILL) at a chosen point."""


def test_a_host_dying_after_the_handler_returned_delivers_that_batch_again(
    host: Host, subscriber: Guest, manager: StorageManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = _feed(manager, subscribe=("in/",))
    storage.set("in/a", b"1")
    storage.set("in/b", b"2")
    metadata = manager.host_metadata("wasmtime")

    def die_before_saving(key: str, value: bytes, version: int) -> int:
        raise _Crash

    monkeypatch.setattr(metadata, "set_if", die_before_saving)
    with pytest.raises(_Crash):
        host.deliver_changes(subscriber, storage, metadata)
    assert _last_batch(storage) == (1, 2, 2)  # the handler ran; its cursor was never written
    storage.delete("out/last")
    monkeypatch.undo()
    report = host.deliver_changes(subscriber, storage, manager)  # "restarted"
    assert report.delivered == 2
    assert _last_batch(storage) == (1, 2, 2)


def test_a_second_deliverer_of_the_same_subscription_stops_instead_of_moving_the_cursor_back(
    host: Host, subscriber: Guest, manager: StorageManager, caplog: pytest.LogCaptureFixture
) -> None:
    storage = _feed(manager, subscribe=("in/",))
    storage.set("in/a", b"1")
    metadata = manager.host_metadata("wasmtime")
    real = metadata.set_if
    raced: list[bool] = []

    def other_process_wins_first(key: str, value: bytes, version: int) -> int:
        if not raced:  # another process delivered the batch and saved its cursor just before us
            raced.append(True)
            real(key, b'{"attempts":0,"cursor":1,"prefix":"in/"}', version)
        return real(key, value, version)

    metadata.set_if = other_process_wins_first  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, "airssys_storage_wasmtime.subscriptions"):
        report = host.deliver_changes(subscriber, storage, metadata)
    assert report.delivered == 0 and report.cursors == {"in/": 1}
    assert "another deliverer moved its cursor" in caplog.text


# -- regressions from an outside trial ---------------------------------------------------


def test_a_handler_writing_under_its_own_subscription_ends_each_pass(
    host: Host, subscriber: Guest, manager: StorageManager
) -> None:
    """One pass delivers what was committed when it began (the handler's own writes come with the next pass)."""
    storage = _feed(manager, subscribe=("",))
    storage.set("in/1", b"v")
    first = host.deliver_changes(subscriber, storage, manager)
    assert (first.delivered, first.batches) == (1, 1)  # seq 1; the handler's out/last write is seq 2
    second = host.deliver_changes(subscriber, storage, manager)
    assert (second.delivered, second.batches) == (1, 1)
    assert _last_batch(storage)[:2] == (2, 2)


def test_a_pushed_batch_stays_within_max_call_bytes(host: Host, subscriber: Guest) -> None:
    """Push caps a batch by the sandbox's max_call_bytes, as pull does (at least one event per call)."""
    from airssys_storage_wasmtime import SandboxLimits

    settings = StorageSettings(url="memory://", changes_capture_values=True, **LIMITS)
    with StorageManager.from_settings(settings) as manager:
        storage = _feed(manager, subscribe=("in/",))
        for i in range(5):
            storage.set(f"in/{i}", bytes([i]) * 1000)
        limits = SandboxLimits(max_call_bytes=2500)  # two events of ~1 KB per call
        report = host.deliver_changes(subscriber, storage, manager, limits=limits)
        assert (report.delivered, report.batches) == (5, 3)
