"""Soft quota thresholds (issue 15): one warning per upward crossing, re-armed below, nothing evicted."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airssys_storage import (
    Access,
    ComponentStorage,
    ConfigurationError,
    Manifest,
    ManifestError,
    QuotaExceeded,
    StorageManager,
    StorageSettings,
    quota_warnings,
)
from airssys_storage.quota_warnings import QuotaWarning
from airssys_storage.storage import _ComponentState


@pytest.fixture(autouse=True)
def recheck_every_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-arm checks before each write while above a threshold (production: every RECHECK_WRITES writes)."""
    monkeypatch.setattr(quota_warnings, "RECHECK_WRITES", 1)


@pytest.fixture(params=["memory://", "sqlite"])
def manager(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[StorageManager]:
    url = request.param if request.param == "memory://" else f"sqlite:///{tmp_path}/store.sqlite3"
    with StorageManager.from_settings(StorageSettings(url=url)) as manager:
        yield manager


class Seen:
    """The host callback's and the log's view of the warnings."""

    def __init__(self, manager: StorageManager, caplog: pytest.LogCaptureFixture) -> None:
        self.calls: list[QuotaWarning] = []
        manager.on_quota_warning = self.calls.append
        self.caplog = caplog
        caplog.set_level(logging.WARNING, logger="airssys_storage.quota")

    @property
    def percents(self) -> list[float]:
        return [warning.threshold_percent for warning in self.calls]

    def records(self) -> list[logging.LogRecord]:
        return [record for record in self.caplog.records if record.name == "airssys_storage.quota"]


def crossings(manager: StorageManager, component: str = "app") -> dict[str, int]:
    found: dict[str, int] = manager.metrics()["components"][component]["quota_warnings"]
    return found


def test_each_crossing_warns_once_and_rearms_below(manager: StorageManager, caplog: pytest.LogCaptureFixture) -> None:
    seen = Seen(manager, caplog)
    store = manager.component(Manifest("app", Access.READ_WRITE, 1000))  # thresholds at 800 and 950 bytes
    store.set("a", b"x" * 700)  # 701 bytes
    assert seen.calls == []
    store.set("b", b"x" * 99)  # 801: crosses 80 %
    assert seen.calls == [QuotaWarning("app", 80.0, 800, 801, 1000)]
    for index in range(10):  # more writes above 80 %: no more warnings
        store.set(f"k{index}", b"x" * 4)
    assert seen.percents == [80.0]
    store.delete("b")  # back below 80 %: re-armed ...
    store.set("b", b"x" * 99)  # ... so crossing again warns again
    assert seen.percents == [80.0, 80.0]
    with pytest.raises(QuotaExceeded):
        store.set("c", b"x" * 200)  # refused by the quota: no crossing, nothing evicted
    assert store.get("a") == b"x" * 700
    store.set("c", b"x" * 100)  # 80 % -> above 95 % in one write
    assert seen.percents == [80.0, 80.0, 95.0]
    assert crossings(manager) == {"80": 2, "95": 1}
    records = seen.records()
    assert len(records) == 3 and all(record.levelname == "WARNING" for record in records)
    assert records[0].quota_warning == {  # type: ignore[attr-defined]
        "component": "app",
        "threshold_percent": 80.0,
        "threshold_bytes": 800,
        "used_bytes": 801,
        "quota_bytes": 1000,
    }
    assert "crossed 80% of its quota" in records[0].getMessage()


def test_one_write_crossing_both_thresholds_warns_for_each(
    manager: StorageManager, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Seen(manager, caplog)
    store = manager.component(Manifest("app", Access.READ_WRITE, 1000))
    store.set_many({"a": b"x" * 500, "b": b"x" * 470})  # 972 bytes
    assert seen.percents == [80.0, 95.0]


def test_the_hard_quota_still_refuses(manager: StorageManager, caplog: pytest.LogCaptureFixture) -> None:
    seen = Seen(manager, caplog)
    store = manager.component(Manifest("app", Access.READ_WRITE, 100))
    with pytest.raises(QuotaExceeded, match="quota exceeded"):
        store.set("big", b"x" * 200)
    assert seen.calls == []
    assert store.usage().bytes == 0


def test_writes_of_every_kind_cross(manager: StorageManager, caplog: pytest.LogCaptureFixture) -> None:
    seen = Seen(manager, caplog)
    store = manager.component(Manifest("app", Access.READ_WRITE, 100, quota_warnings=(10, 20, 30, 40, 50)))
    store.set("a", b"x" * 10, ttl=60)  # 11 bytes: the apply path
    store.compare_and_swap("b", b"x" * 9, version=None)  # 21
    store.increment("counter", 1000000)  # 21 + 14 = 35
    with store.transaction() as tx:
        tx.set("t", b"x" * 9)  # buffered: no warning yet
        assert seen.percents == [10.0, 20.0, 30.0]
    assert seen.percents == [10.0, 20.0, 30.0, 40.0]  # the commit crossed 40 %


def test_manifest_and_settings_choose_the_thresholds(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    with StorageManager.from_settings(StorageSettings(url="memory://", quota_warnings=[50])) as manager:
        seen = Seen(manager, caplog)
        manager.component(Manifest("app", Access.READ_WRITE, 100)).set("a", b"x" * 59)
        manager.component(Manifest("own", Access.READ_WRITE, 100, quota_warnings=(70,))).set("a", b"x" * 59)
        manager.component(Manifest("none", Access.READ_WRITE, 100, quota_warnings=())).set("a", b"x" * 98)
        assert [(w.component, w.threshold_percent) for w in seen.calls] == [("app", 50.0)]
    manifest = Manifest.from_toml(
        '[component]\nid = "app"\n[permissions.storage]\naccess = "read-write"\nquota-warnings = [90, 75]\n'
    )
    assert manifest.quota_warnings == (75.0, 90.0)
    with pytest.raises(ManifestError, match="quota-warnings"):
        Manifest("app", Access.READ_WRITE, quota_warnings=(100,))
    with pytest.raises(ConfigurationError, match="quota_warnings"):
        StorageSettings(quota_warnings=[0])
    with pytest.raises(ConfigurationError, match="quota_warnings"):
        StorageSettings(quota_warnings=[True])


def test_usage_found_above_a_threshold_warns_at_the_first_growing_write(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    with StorageManager.from_settings(StorageSettings(url=url, quota_warnings=[])) as manager:
        manager.component(Manifest("app", Access.READ_WRITE, 1000)).set("a", b"x" * 900)
    with StorageManager.from_settings(StorageSettings(url=url)) as manager:
        seen = Seen(manager, caplog)
        store = manager.component(Manifest("app", Access.READ_WRITE, 1000))
        assert store.get("a") is not None and seen.calls == []
        store.set("b", b"x")
        store.set("c", b"x")
        assert seen.percents == [80.0]


def test_a_failing_callback_does_not_fail_the_write(manager: StorageManager, caplog: pytest.LogCaptureFixture) -> None:
    def broken(warning: QuotaWarning) -> None:
        raise RuntimeError("host bug")

    manager.on_quota_warning = broken
    caplog.set_level(logging.WARNING, logger="airssys_storage.quota")
    store = manager.component(Manifest("app", Access.READ_WRITE, 100))
    store.set("a", b"x" * 90)
    assert store.get("a") == b"x" * 90
    assert any("on_quota_warning callback failed" in record.getMessage() for record in caplog.records)


def test_reloading_the_manifest_keeps_passed_thresholds(
    manager: StorageManager, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Seen(manager, caplog)
    store = manager.component(Manifest("app", Access.READ_WRITE, 100))
    store.set("a", b"x" * 85)
    manager.component(Manifest("app", Access.READ_WRITE, 100, name="renamed"))
    store.set("b", b"x")
    assert seen.percents == [80.0]
    assert store.quota == 100 and store.limits().quota == 100


def test_components_below_every_threshold_keep_the_plain_state(manager: StorageManager) -> None:
    store = manager.component(Manifest("app", Access.READ_WRITE, 1000))
    store.set("a", b"x" * 10)
    assert type(store._state) is _ComponentState and store._state.limit == 800
    store.set("b", b"x" * 850)
    assert type(store._state) is not _ComponentState  # watching for usage to fall back
    store.delete("b")
    store.set("c", b"x")  # the next write re-arms
    assert type(store._state) is _ComponentState


@pytest.mark.parametrize(
    "lower",
    [
        lambda store: store.delete("big"),
        lambda store: store.delete_many(["big"]),
        lambda store: store.delete_if("big", version=store.get_entry("big").version),
        lambda store: store.delete_prefix("bi"),
        lambda store: store.delete_range("b", "c"),
        lambda store: store.set_many({"big": b"x"}),  # an overwrite with a smaller value, in a batch
        lambda store: store.clear(),
    ],
    ids=["delete", "delete_many", "delete_if", "delete_prefix", "delete_range", "set_many-smaller", "clear"],
)
def test_operations_that_lower_usage_rearm_at_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, lower: Callable[[ComponentStorage], object]
) -> None:
    """quota 1000 B: set 850 B, lower usage, set 850 B again -> two 80 % warnings (not one until ~32 writes later)."""
    monkeypatch.setattr(quota_warnings, "RECHECK_WRITES", 32)  # production: no polling helps here
    with StorageManager.from_settings(StorageSettings(url="memory://")) as manager:
        seen = Seen(manager, caplog)
        store = manager.component(Manifest("app", Access.ADMIN, 1000))
        store.set("big", b"x" * 847)  # 850 bytes: crosses 80 %
        lower(store)
        assert type(store._state) is _ComponentState  # re-armed: back on the plain path
        store.set("big", b"x" * 847)
        assert seen.percents == [80.0, 80.0]


def test_purging_expired_keys_rearms_at_once(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(quota_warnings, "RECHECK_WRITES", 32)
    with StorageManager.from_settings(StorageSettings(url="memory://")) as manager:
        seen = Seen(manager, caplog)
        store = manager.component(Manifest("app", Access.READ_WRITE, 1000))
        store.set("big", b"x" * 847, ttl=0.001)
        time.sleep(0.01)  # the key expires (not a timed assertion)
        assert store.purge_expired() == 1
        store.set("big", b"x" * 847)
        assert seen.percents == [80.0, 80.0]


def test_a_smaller_overwrite_by_set_rearms_within_recheck_writes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The one documented inexact path: set()/compare_and_swap() overwriting with a smaller value (put_one)."""
    monkeypatch.setattr(quota_warnings, "RECHECK_WRITES", 4)
    with StorageManager.from_settings(StorageSettings(url="memory://")) as manager:
        seen = Seen(manager, caplog)
        store = manager.component(Manifest("app", Access.READ_WRITE, 1000))
        store.set("big", b"x" * 800)  # crosses 80 %
        store.set("big", b"x")  # smaller overwrite: usage is below 80 %, not yet seen
        for index in range(4):  # within RECHECK_WRITES writes the check sees usage below 80 % ...
            store.set(f"k{index}", b"x")
        store.set("big", b"x" * 800)  # ... so the next crossing warns
        assert seen.percents == [80.0, 80.0]
