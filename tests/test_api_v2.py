"""The contract v2 Python API (issue 10) in the core: validation, permissions, quota sweeps, limits, the clock.

Backend behaviour (versions, expiry in every read path, races) is the conformance suite's; these
tests pin what the core decides before a backend is called, on memory:// with a FakeClock.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airssys_storage import (
    Access,
    ComponentStorage,
    ConfigurationError,
    Entry,
    InvalidArgument,
    InvalidKey,
    KeyNotFound,
    Limits,
    Manifest,
    PermissionDenied,
    PermissionPolicy,
    PluginRegistry,
    PreconditionFailed,
    QuotaExceeded,
    StorageManager,
    StorageSettings,
    hookimpl,
)
from airssys_storage.operations import Operation
from airssys_storage.testing import FakeClock

START_MS = 1_700_000_000_000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start_ms=START_MS)


@pytest.fixture
def manager(clock: FakeClock) -> Iterator[StorageManager]:
    with StorageManager.from_settings(StorageSettings(url="memory://"), clock=clock) as manager:
        yield manager


@pytest.fixture
def store(manager: StorageManager) -> ComponentStorage:
    return manager.component(Manifest("app", Access.READ_WRITE, None))


# -- the clock and the settings reach the backend ----------------------------------------


def test_the_manager_clock_is_the_backends(manager: StorageManager, clock: FakeClock) -> None:
    """from_settings(clock=...) is manager.clock and backend.clock; op retention comes from the settings."""
    assert manager.clock is clock and manager.backend.clock is clock
    assert manager.backend.op_retention_ms == 600_000
    settings = StorageSettings(url="memory://", op_id_retention_seconds=0.0015)
    with StorageManager.from_settings(settings) as other:
        assert other.backend.op_retention_ms == 2  # rounded up: never shorter than configured
        assert abs(other.clock() - time.time() * 1000) < 60_000  # the wall clock by default


def test_ttl_counts_from_the_clock_in_whole_milliseconds(store: ComponentStorage, clock: FakeClock) -> None:
    """set(ttl) expires at now + ceil(ttl * 1000) ms; get_entry reports it in seconds."""
    store.set("k", b"v", ttl=1.0001)
    entry = store.get_entry("k")
    assert entry is not None and entry.expires_at == (START_MS + 1001) / 1000
    assert store.ttl("k") == pytest.approx(1.001)
    clock.advance(1.0)
    assert store.get("k") == b"v" and store.ttl("k") == pytest.approx(0.001)
    clock.advance(0.001)
    assert store.get("k") is None and not store.has("k") and store.get_entry("k") is None


# -- return values and the Entry type ------------------------------------------------------


def test_set_returns_the_version_get_entry_reads(store: ComponentStorage) -> None:
    """set returns the new version; get_entry gives the same; a set without ttl clears an expiry."""
    first = store.set("k", b"1")
    second = store.set("k", b"22", ttl=5)
    assert second > first
    assert store.get_entry("k") == Entry(b"22", second, (START_MS + 5000) / 1000)
    third = store.set("k", b"3")
    assert store.get_entry("k") == Entry(b"3", third, None)
    assert store.ttl("k") is None


def test_ttl_of_a_missing_key_is_key_not_found(store: ComponentStorage, clock: FakeClock) -> None:
    """ttl(): None = no expiry; missing or expired key -> key-not-found (as WIT storage-get-ttl says)."""
    with pytest.raises(KeyNotFound) as info:
        store.ttl("nope")
    assert info.value.code == "key-not-found" and "nope" in str(info.value)
    store.set("k", b"v", ttl=1)
    clock.advance(2)
    with pytest.raises(KeyNotFound):
        store.ttl("k")


def test_compare_and_swap_set_if_absent_delete_if(store: ComponentStorage) -> None:
    """version=None means absent; a mismatch raises precondition-failed and writes nothing."""
    version = store.compare_and_swap("k", b"a", version=None)
    with pytest.raises(PreconditionFailed) as info:
        store.compare_and_swap("k", b"b", version=None)
    assert info.value.code == "precondition-failed"
    with pytest.raises(PreconditionFailed):
        store.compare_and_swap("k", b"b", version=version + 1)
    assert store.get("k") == b"a"
    newer = store.compare_and_swap("k", b"b", version=version)
    assert newer > version and store.get("k") == b"b"
    assert store.set_if_absent("k", b"c") is False and store.get("k") == b"b"
    assert store.set_if_absent("other", b"c") is True
    assert store.delete_if("k", version=version) is False and store.has("k")
    assert store.delete_if("k", version=newer) is True and not store.has("k")
    assert store.delete_if("k", version=newer) is False


def test_increment_and_op_id_replay(store: ComponentStorage) -> None:
    """increment counts from 0; a repeated op_id returns the first result and applies nothing."""
    assert store.increment("n") == 1
    assert store.increment("n", 10, op_id="req-1") == 11
    assert store.increment("n", 10, op_id="req-1") == 11
    assert store.increment("n", -20) == -9
    assert store.get("n") == b"-9"
    store.set("text", b"hello")
    with pytest.raises(InvalidArgument, match="counter"):
        store.increment("text")
    store.set("big", str(2**63 - 1).encode())
    with pytest.raises(InvalidArgument, match="64-bit"):
        store.increment("big")
    assert store.get("big") == str(2**63 - 1).encode()


def test_op_ids_are_forgotten_after_the_retention(clock: FakeClock) -> None:
    """An op_id replays within op_id_retention_seconds and counts again after it."""
    settings = StorageSettings(url="memory://", op_id_retention_seconds=60)
    with StorageManager.from_settings(settings, clock=clock) as manager:
        store = manager.component(Manifest("app", Access.READ_WRITE, None))
        assert store.increment("n", op_id="x") == 1
        clock.advance(59)
        assert store.increment("n", op_id="x") == 1
        clock.advance(2)
        assert store.increment("n", op_id="x") == 2
        assert store.limits().op_id_retention_seconds == 60


def test_expire_persist(store: ComponentStorage, clock: FakeClock) -> None:
    """expire/persist answer whether the key was live; persist removes the expiry."""
    assert store.expire("missing", 5) is False
    assert store.persist("missing") is False
    store.set("k", b"v")
    assert store.expire("k", 5) is True and store.ttl("k") == pytest.approx(5)
    assert store.persist("k") is True and store.ttl("k") is None
    clock.advance(10)
    assert store.get("k") == b"v"
    store.expire("k", 1)
    clock.advance(1)
    assert store.expire("k", 5) is False and store.persist("k") is False and store.get("k") is None


def test_purge_expired_releases_quota(store: ComponentStorage, clock: FakeClock) -> None:
    """Expired keys count in usage until swept; purge_expired(limit) sweeps at most limit of them."""
    for i in range(5):
        store.set(f"t{i}", b"12345", ttl=1)
    store.set("keep", b"v")
    clock.advance(1)
    assert store.usage().keys == 6  # O(1) usage counts expired keys until they are swept
    assert store.keys() == ["keep"]
    assert store.purge_expired(limit=2) == 2
    assert store.usage().keys == 4
    assert store.purge_expired() == 3
    assert store.usage().keys == 1 and store.size() == len("keep") + 1
    assert store.purge_expired() == 0


def test_delete_prefix_and_range(store: ComponentStorage, clock: FakeClock) -> None:
    """delete_prefix/delete_range count live keys removed, remove expired ones too, and release their bytes."""
    store.set_many({"a/1": b"x", "a/2": b"y", "ab": b"z", "b": b"w"})
    store.set("a/3", b"gone", ttl=1)
    clock.advance(1)
    assert store.delete_prefix("a/") == 2
    assert store.keys() == ["ab", "b"] and store.usage().keys == 2
    assert store.delete_range("ab", "b") == 1
    assert store.delete_range("z", "a") == 0  # start >= end deletes nothing
    assert store.keys() == ["b"] and store.size() == 2


def test_delete_prefix_refuses_the_empty_prefix(store: ComponentStorage) -> None:
    """delete_prefix('') is not clear(): invalid-argument naming clear(), nothing deleted."""
    store.set("k", b"v")
    with pytest.raises(InvalidArgument, match=r"clear\(\)") as info:
        store.delete_prefix("")
    assert info.value.code == "invalid-argument"
    assert store.get("k") == b"v"
    with pytest.raises(InvalidKey):
        store.delete_prefix("bad\x00prefix")


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ttl", "fix"),
    [
        (0, "above 0"),
        (-1, "above 0"),
        (math.inf, "finite"),
        (math.nan, "finite"),
        (True, "not bool"),
        ("5", "not str"),
        (1e300, "too long"),
        (1e306, "too long"),  # ttl * 1000 overflows to inf: was a raw OverflowError (outside trial)
        (2**70, "too long"),
    ],
)
def test_bad_ttl_is_invalid_argument(store: ComponentStorage, ttl: Any, fix: str) -> None:
    """Every API taking a ttl refuses a bad one with invalid-argument naming the fix, writing nothing."""
    store.set("k", b"v")
    calls: list[Callable[[], object]] = [
        lambda: store.set("k", b"new", ttl=ttl),
        lambda: store.set_many({"k": b"new"}, ttl=ttl),
        lambda: store.compare_and_swap("k", b"new", version=None, ttl=ttl),
        lambda: store.set_if_absent("fresh", b"new", ttl=ttl),
        lambda: store.expire("k", ttl),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument, match=fix) as info:
            call()
        assert info.value.code == "invalid-argument"
    assert store.get_entry("k") == Entry(b"v", 1, None) and not store.has("fresh")


def test_expire_without_ttl_names_persist(store: ComponentStorage) -> None:
    with pytest.raises(InvalidArgument, match=r"persist\(key\)"):
        store.expire("k", None)  # type: ignore[arg-type]


def test_ttl_is_keyword_only_for_type_checkers_and_accepts_ints(store: ComponentStorage) -> None:
    """set(key, value, ttl=...) takes an int or a float number of seconds."""
    store.set("i", b"v", ttl=2)
    store.set("f", b"v", ttl=0.5)
    assert store.ttl("i") == 2 and store.ttl("f") == 0.5


@pytest.mark.parametrize(
    ("version", "fix"),
    [(0, "from 1"), (-1, "from 1"), (2**64, "from 1"), (True, "not bool"), (1.0, "not float"), ("1", "not str")],
)
def test_bad_version_is_invalid_argument(store: ComponentStorage, version: Any, fix: str) -> None:
    """compare_and_swap and delete_if take versions 1..2**64-1 (None = absent for compare_and_swap)."""
    store.set("k", b"v")
    with pytest.raises(InvalidArgument, match=fix):
        store.compare_and_swap("k", b"x", version=version)
    with pytest.raises(InvalidArgument, match=fix):
        store.delete_if("k", version=version)
    assert store.get("k") == b"v"


@pytest.mark.parametrize(
    ("delta", "fix"), [(True, "not bool"), (1.0, "not float"), (2**63, "64-bit"), (-(2**63) - 1, "64-bit")]
)
def test_bad_delta_is_invalid_argument(store: ComponentStorage, delta: Any, fix: str) -> None:
    with pytest.raises(InvalidArgument, match=fix):
        store.increment("n", delta)
    assert not store.has("n")


def test_extreme_deltas_are_accepted(store: ComponentStorage) -> None:
    assert store.increment("n", 2**63 - 1) == 2**63 - 1
    assert store.increment("m", -(2**63)) == -(2**63)


@pytest.mark.parametrize(
    ("op_id", "fix"),
    [
        ("", "1 to 256 bytes"),
        ("x" * 257, "1 to 256 bytes"),
        ("é" * 129, "1 to 256 bytes"),  # 258 bytes of UTF-8
        ("a\nb", "non-printable"),
        ("\ud800", "lone surrogate"),
        (7, "not int"),
        (b"id", "not bytes"),
    ],
)
def test_bad_op_id_is_invalid_argument(store: ComponentStorage, op_id: Any, fix: str) -> None:
    with pytest.raises(InvalidArgument, match=fix):
        store.increment("n", op_id=op_id)
    assert not store.has("n")


def test_longest_op_id_is_accepted(store: ComponentStorage) -> None:
    assert store.increment("n", op_id="é" * 128) == 1  # 256 bytes
    assert store.increment("n", op_id="é" * 128) == 1


@pytest.mark.parametrize("limit", [0, -1, True, 1.5, "2", 2**63, 10**20])
def test_bad_purge_limit_is_invalid_argument(store: ComponentStorage, limit: Any) -> None:
    """10**20 reached SQL engines and failed there (internal-error): it is refused before any backend."""
    with pytest.raises(InvalidArgument, match="from 1 to 2"):
        store.purge_expired(limit)


def test_the_largest_purge_limit_is_accepted(store: ComponentStorage, clock: FakeClock) -> None:
    store.set("a", b"1", ttl=1)
    clock.advance(1)
    assert store.purge_expired(2**63 - 1) == 1


def test_one_op_id_serves_several_keys_once_each(store: ComponentStorage) -> None:
    """An op id is remembered per key: reusing a request id for two counters applies each once (outside trial:
    the second counter got the first one's result and was never written)."""
    assert store.increment("views", 7, op_id="req-1") == 7
    assert store.increment("clicks", 1, op_id="req-1") == 1
    assert store.get("clicks") == b"1"
    assert store.increment("views", 7, op_id="req-1") == 7  # replays, per key
    assert store.increment("clicks", 1, op_id="req-1") == 1
    assert (store.get("views"), store.get("clicks")) == (b"7", b"1")


def test_a_retry_after_delete_still_returns_the_first_result(store: ComponentStorage) -> None:
    assert store.increment("n", 2, op_id="a") == 2
    store.delete("n")
    assert store.increment("n", 2, op_id="a") == 2
    assert store.get("n") is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("op_id_retention_seconds", 1e17),  # overflowed SQLite's INTEGER (outside trial)
        ("op_id_retention_seconds", 0),
        ("expiry_sweep_interval", 1e30),  # overflowed the sweeper's timed wait, killing the thread
        ("expiry_sweep_interval", 1e-9),  # a busy loop
    ],
)
def test_out_of_range_expiry_settings_are_refused(field: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match=field) as info:
        StorageSettings(**{field: value})
    assert info.value.code == "invalid-config"


def test_checks_run_permission_first(manager: StorageManager) -> None:
    """A denied call is permission-denied even when its arguments are bad too."""
    reader = manager.component(Manifest("reader", Access.READ_ONLY))
    calls: list[Callable[[], object]] = [
        lambda: reader.set("k", b"v", ttl=-1),
        lambda: reader.compare_and_swap("", b"v", version=0),
        lambda: reader.increment("k", op_id=""),
        lambda: reader.delete_prefix(""),
        lambda: reader.purge_expired(0),
        lambda: reader.expire("k", math.nan),
    ]
    for call in calls:
        with pytest.raises(PermissionDenied):
            call()


# -- permissions of the new operations -------------------------------------------------------


def test_read_only_component_reads_state_and_writes_nothing(manager: StorageManager) -> None:
    """read-only: get_entry, ttl and limits work; every new write is permission-denied, naming its WIT name."""
    writer = manager.component(Manifest("shared", Access.READ_WRITE, None))
    version = writer.set("k", b"v", ttl=60)
    reader = manager.component(Manifest("shared", Access.READ_ONLY))
    assert reader.get_entry("k") == Entry(b"v", version, (START_MS + 60_000) / 1000)
    assert reader.ttl("k") == 60
    assert reader.limits().keys == 1
    writes: dict[Operation, Callable[[], object]] = {
        Operation.SET: lambda: reader.set("k", b"x", ttl=5),
        Operation.SET_MANY: lambda: reader.set_many({"k": b"x"}, ttl=5),
        Operation.COMPARE_AND_SWAP: lambda: reader.compare_and_swap("k", b"x", version=version),
        Operation.SET_IF_ABSENT: lambda: reader.set_if_absent("new", b"x"),
        Operation.DELETE_IF: lambda: reader.delete_if("k", version=version),
        Operation.INCREMENT: lambda: reader.increment("n", op_id="a"),
        Operation.EXPIRE: lambda: reader.expire("k", 5),
        Operation.PERSIST: lambda: reader.persist("k"),
        Operation.PURGE_EXPIRED: lambda: reader.purge_expired(),
        Operation.DELETE_PREFIX: lambda: reader.delete_prefix("k"),
        Operation.DELETE_RANGE: lambda: reader.delete_range("a", "z"),
        Operation.COMMIT: lambda: reader.atomic().set("k", b"x").commit(),
    }
    for operation, call in writes.items():
        with pytest.raises(PermissionDenied, match=operation.wit_name):
            call()
    assert writer.get_entry("k") == Entry(b"v", version, (START_MS + 60_000) / 1000)
    assert not writer.has("new") and not writer.has("n")


def test_clear_stays_admin_only(manager: StorageManager) -> None:
    with pytest.raises(PermissionDenied, match="storage-clear"):
        manager.component(Manifest("app", Access.READ_WRITE, None)).clear()


class _NoSecrets(PermissionPolicy):
    """Denies every operation on keys under "secret/" (a per-key policy)."""

    name = "no-secrets-v2"
    uses_key = True

    def check(self, manifest: Manifest, operation: Operation, key: str | None) -> bool | None:
        return False if key is not None and key.startswith("secret/") else None


class _Plugin:
    @staticmethod
    @hookimpl
    def register_permission_policies() -> list[type[PermissionPolicy]]:
        return [_NoSecrets]


def test_range_deletes_ask_a_per_key_policy_about_every_key(clock: FakeClock) -> None:
    """delete_prefix/delete_range under a per-key policy: one denied key refuses the call, nothing deleted."""
    registry = PluginRegistry.load(plugins={"no-secrets-v2": _Plugin})
    settings = StorageSettings(url="memory://", policies=["manifest", "no-secrets-v2"])
    with StorageManager.from_settings(settings, registry=registry, clock=clock) as manager:
        store = manager.component(Manifest("app", Access.READ_WRITE, None))
        store.set_many({"public/a": b"1", "public/b": b"2", "s": b"3"})
        manager.backend.put_one("app", b"secret/x", b"hidden", None)  # written behind the policy
        with pytest.raises(PermissionDenied, match="secret/x"):
            store.delete_range("a", "t")
        with pytest.raises(PermissionDenied):
            store.delete_prefix("secret/")
        assert manager.backend.get("app", b"secret/x") == b"hidden" and store.has("s")
        assert store.delete_prefix("public/") == 2
        assert store.delete_range("s", "s0") == 1  # "secret/x" lies above "s0"
        assert store.keys() == []


# -- the quota refusal path sweeps expired keys and retries once -----------------------------


def test_a_full_quota_of_expired_data_still_accepts_a_write(manager: StorageManager, clock: FakeClock) -> None:
    """A write refused for quota sweeps the component's expired keys and tries once more."""
    store = manager.component(Manifest("app", Access.READ_WRITE, 100))
    store.set("old", b"x" * 90, ttl=1)
    clock.advance(1)
    assert store.size() == 93
    paths: list[Callable[[], object]] = [
        lambda: store.set("new", b"y" * 90),
        lambda: store.set("new", b"y" * 90, ttl=5),
        lambda: store.set_many({"new": b"y" * 90}),
        lambda: store.compare_and_swap("new", b"y" * 90, version=None),
        lambda: store.set_if_absent("new", b"y" * 90),
    ]
    for write in paths:
        write()
        assert store.get("new") == b"y" * 90 and store.usage().keys == 1
        store.delete("new")
        store.set("old", b"x" * 90, ttl=1)
        clock.advance(1)


def test_the_sweep_retry_keeps_unexpired_data_and_names_the_quota(manager: StorageManager, clock: FakeClock) -> None:
    """With nothing expired the refusal stands (with its source); after a sweep that frees too little, too."""
    store = manager.component(Manifest("app", Access.READ_WRITE, 100))
    store.set("live", b"x" * 50)
    store.set("old", b"x" * 20, ttl=1)
    with pytest.raises(QuotaExceeded, match="max-size") as info:
        store.set("new", b"y" * 40)
    assert info.value.code == "quota-exceeded"
    assert store.has("old")  # nothing was expired, nothing swept
    clock.advance(1)
    with pytest.raises(QuotaExceeded, match="max-size"):
        store.set("new", b"y" * 60)
    assert not store.has("old") and store.usage().keys == 1  # swept, and still refused
    assert store.get("live") == b"x" * 50


def test_increment_sweeps_too(manager: StorageManager, clock: FakeClock) -> None:
    store = manager.component(Manifest("app", Access.READ_WRITE, 20))
    store.set("old", b"x" * 15, ttl=1)
    clock.advance(1)
    assert store.increment("n", 5) == 5


# -- limits() -----------------------------------------------------------------------------------


def test_limits_report_settings_quota_usage_and_capabilities(clock: FakeClock) -> None:
    settings = StorageSettings(
        url="memory://", max_key_bytes=64, max_value_bytes=1000, max_keys_per_query=50, max_batch_ops=7
    )
    with StorageManager.from_settings(settings, clock=clock) as manager:
        store = manager.component(Manifest("app", Access.READ_WRITE, 500))
        store.set("abc", b"12345")
        store.set("gone", b"1", ttl=1)
        clock.advance(1)
        assert store.limits() == Limits(
            max_key_bytes=64,
            max_value_bytes=1000,
            max_keys_per_query=50,
            max_batch_ops=7,
            quota=500,
            bytes_used=8 + 5,  # the expired key counts until swept
            keys=2,
            bytes_remaining=500 - 13,
            persistent=False,
            multi_process=False,
            native_atomics=False,
            op_id_retention_seconds=600,
        )
        over = manager.component(Manifest("app", Access.READ_WRITE, 10))  # quota lowered below usage
        assert over.limits().bytes_remaining == 0


def test_limits_of_an_unlimited_component() -> None:
    settings = StorageSettings(url="memory://", quota_strategy="fixed", fixed_quota_bytes=None)
    with StorageManager.from_settings(settings) as manager:
        limits = manager.component(Manifest("free", Access.READ_WRITE)).limits()
        assert limits.quota is None and limits.bytes_remaining is None


# -- the background sweeper ---------------------------------------------------------------------


def test_manager_purge_expired_sweeps_every_component_in_steps(manager: StorageManager, clock: FakeClock) -> None:
    a = manager.component(Manifest("a", Access.READ_WRITE, None))
    b = manager.component(Manifest("b", Access.READ_WRITE, None))
    a.set_many({f"k{i}": b"v" for i in range(25)}, ttl=1)
    b.set("k", b"v", ttl=1)
    b.set("live", b"v")
    clock.advance(1)
    assert manager.purge_expired(step=10) == 26
    assert a.usage().keys == 0 and b.usage().keys == 1


def test_background_sweeper_runs_and_stops_on_close(clock: FakeClock) -> None:
    """expiry_sweep_interval starts a daemon thread that purges every interval; close() stops it."""
    settings = StorageSettings(url="memory://", expiry_sweep_interval=0.01)
    manager = StorageManager.from_settings(settings, clock=clock)
    sweepers = [t for t in threading.enumerate() if t.name == "airssys-storage expiry sweeper"]
    assert len(sweepers) == 1 and sweepers[0].daemon
    store = manager.component(Manifest("app", Access.READ_WRITE, None))
    store.set("k", b"v", ttl=1)
    clock.advance(1)
    deadline = time.monotonic() + 10
    while store.usage().keys and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.usage().keys == 0
    manager.close()
    assert not sweepers[0].is_alive()


def test_no_sweeper_by_default(manager: StorageManager) -> None:
    assert not [t for t in threading.enumerate() if t.name == "airssys-storage expiry sweeper"]
