"""A real guest written in Python (componentize-py, WASI): every storage function, every reachable error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from airssys_storage_wasmtime import Guest, Host
from airssys_storage_wasmtime._interfaces import FUNCTIONS
from wasmtime_helpers import LIMITS, storage_of

from airssys_storage import ComponentStorage, StorageManager, StorageSettings
from airssys_storage.testing import FakeClock

STATE_CHECKS = 53 + 8


@pytest.fixture
def manager() -> Iterator[StorageManager]:
    with StorageManager.from_settings(StorageSettings(url="memory://", **LIMITS)) as manager:
        yield manager


def test_it_imports_every_storage_function_and_wasi(python_guest: tuple[Host, Guest]) -> None:
    _, guest = python_guest
    assert set(guest.imports) == {function.qualified_name for function in FUNCTIONS}
    assert guest.needs_wasi
    assert guest.exports["run-checks"] == "func(string) -> result<u32, string>"


@pytest.mark.parametrize(
    ("scenario", "access", "max_size", "checks"),
    [("read-write", "read-write", "4KB", 40), ("read-only", "read-only", None, 11), ("admin", "admin", None, 2),
     ("none", "none", None, 5), ("state", "read-write", "4KB", STATE_CHECKS),
     ("state-read-only", "read-only", None, 12)],
)  # fmt: skip
def test_scenario(
    python_guest: tuple[Host, Guest],
    manager: StorageManager,
    capfd: pytest.CaptureFixture[str],
    scenario: str,
    access: str,
    max_size: str | None,
    checks: int,
) -> None:
    host, guest = python_guest
    if scenario in ("read-only", "state-read-only"):
        storage_of(manager, "read-write", None).set("shared", b"written by the host")
    storage = storage_of(manager, access, max_size)
    with host.instantiate(guest, storage, inherit_stdio=True) as instance:
        assert instance.call("run-checks", scenario) == checks
    assert f"{scenario}: {checks} checks passed" in capfd.readouterr().out
    # Whatever the guest did, the usage counter agrees with the data (read with admin rights).
    inspector = storage_of(manager, "admin", None)
    assert inspector.usage().bytes == sum(len(key.encode()) + len(value) for key, value in everything(inspector))


def test_expiry_is_exact_on_the_host_clock(python_guest: tuple[Host, Guest]) -> None:
    """The guest sets keys with a ttl; the host's clock moves 2 s on; the expired key is gone from every read."""
    host, guest = python_guest
    clock = FakeClock()
    with StorageManager.from_settings(StorageSettings(url="memory://", **LIMITS), clock=clock) as manager:
        with host.instantiate(guest, storage_of(manager)) as instance:
            assert instance.call("run-checks", "expiry-before") == 1
            clock.advance(2)
            assert instance.call("run-checks", "expiry-after") == 8


def everything(storage: ComponentStorage) -> Iterator[tuple[str, bytes]]:
    cursor = None
    while True:
        page, cursor = storage.scan(None, cursor, LIMITS["max_keys_per_query"])
        yield from page
        if cursor is None:
            return
