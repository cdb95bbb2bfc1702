"""The host through WAT guests compiled by wasmtime: every function, every error variant, traps."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from airssys_storage_wasmtime import Guest, GuestError, GuestInstance, GuestTrap, Host, InvalidGuest
from airssys_storage_wasmtime._interfaces import BATCH, FUNCTIONS, RANGES, STORAGE, HostFunction
from wasmtime.component import Variant
from wasmtime_helpers import FIXTURES, err, ok, storage_of

from airssys_storage import (
    ComponentStorage,
    ConfigurationError,
    InternalError,
    InvalidArgument,
    InvalidKey,
    KeyNotFound,
    PermissionDenied,
    QuotaExceeded,
    StorageError,
    StorageManager,
    StorageSettings,
    TooManyKeys,
    ValueTooLarge,
)

SEED_CODES = [
    "permission-denied", "quota-exceeded", "key-not-found", "invalid-key", "value-too-large", "internal-error"
]  # fmt: skip
WITH_MESSAGE = ("internal-error", "too-many-keys", "invalid-argument")
EXTENDED_CODES = [*SEED_CODES, "too-many-keys", "invalid-argument"]


@pytest.fixture
def instance(host: Host, echo: Guest, storage: ComponentStorage) -> Any:
    with host.instantiate(echo, storage) as instance:
        yield instance


# -- every function, from a guest, against real storage ----------------------------


def test_the_seed_functions(instance: GuestInstance, storage: ComponentStorage) -> None:
    assert ok(instance, "get", "a") is None
    assert ok(instance, "has", "a") is False
    assert ok(instance, "set", "a", b"1") is None
    assert storage.get("a") == b"1"
    assert ok(instance, "get", "a") == b"1"
    assert ok(instance, "has", "a") is True
    ok(instance, "set", "a", b"")
    assert ok(instance, "get", "a") == b""
    ok(instance, "set", "ключ/😀", bytes(range(256)))
    assert ok(instance, "get", "ключ/😀") == bytes(range(256))
    assert ok(instance, "keys", None) == ["a", "ключ/😀"]
    assert ok(instance, "keys", "к") == ["ключ/😀"]
    assert ok(instance, "size") == storage.size() == 1 + len("ключ/😀".encode()) + 256
    assert ok(instance, "delete", "a") is True
    assert ok(instance, "delete", "a") is False
    assert storage.keys() == ["ключ/😀"]


def test_clear_with_admin_access(host: Host, echo: Guest, manager: StorageManager) -> None:
    storage = storage_of(manager, access="admin", max_size=None)
    storage.set_many({"a": b"1", "b": b"2"})
    with host.instantiate(echo, storage) as instance:
        assert ok(instance, "clear") is None
    assert storage.keys() == [] and storage.size() == 0


def test_the_batch_functions(instance: GuestInstance, storage: ComponentStorage) -> None:
    assert ok(instance, "set-many", [("a", b"1"), ("b", b"2"), ("a", b"last")]) is None
    assert storage.get_many(["a", "b"]) == [b"last", b"2"]
    assert ok(instance, "get-many", ["a", "missing", "b"]) == [b"last", None, b"2"]
    assert ok(instance, "get-many", []) == []
    assert ok(instance, "delete-many", ["a", "missing"]) == 1
    assert storage.keys() == ["b"]


def test_range_and_scan(instance: GuestInstance, storage: ComponentStorage) -> None:
    storage.set_many({"r1": b"1", "r2": b"2", "r3": b"3", "s": b"s"})
    assert ok(instance, "range", "r1", "r3", None) == [("r1", b"1"), ("r2", b"2")]
    assert ok(instance, "range", "r", "s", 2) == [("r1", b"1"), ("r2", b"2")]
    pairs, cursor = ok(instance, "scan", "r", None, 2)
    assert pairs == [("r1", b"1"), ("r2", b"2")] and cursor is not None
    assert ok(instance, "scan", "r", cursor, 2) == ([("r3", b"3")], None)
    assert ok(instance, "scan", None, None, 10) == (storage.range("a", "z"), None)


@pytest.mark.parametrize("size", [1, 2048, 2049, 65536, 1024 * 1024])
def test_large_values_cross_intact(host: Host, echo: Guest, size: int) -> None:
    value = bytes(i * 31 % 251 for i in range(size))
    settings = StorageSettings(url="memory://", max_value_bytes=1024 * 1024)
    with StorageManager.from_settings(settings) as manager:
        storage = storage_of(manager, max_size=None)
        with host.instantiate(echo, storage) as instance:
            ok(instance, "set", "big", value)
            assert storage.get("big") == value
            assert ok(instance, "get", "big") == value
            assert ok(instance, "get-many", ["big"]) == [value]


def test_a_guest_that_imports_some_functions(host: Host, storage: ComponentStorage) -> None:
    guest = host.load(FIXTURES / "bench.wat")
    assert guest.imports == tuple(f"{STORAGE}#storage-{name}" for name in ("get", "set", "has"))
    with host.instantiate(guest, storage) as instance:
        assert instance.call("bench-set", 3, "k", b"value") == 3
        assert instance.call("bench-get", 2, "k") == 2
        assert instance.call("bench-has", 4, "k") == 4
    assert storage.get("k") == b"value"


def test_the_bench_guest_never_rewrites_the_bytes_a_set_replaces(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of the bench guest's sets writes other bytes than the one before (issue 9, 8); the last, the given value."""
    from airssys_storage_memory import MemoryBackend

    written: list[bytes | None] = []
    put_one = MemoryBackend.put_one

    def recording(self: MemoryBackend, namespace: str, key: bytes, value: bytes, limit: int | None) -> int:
        written.append(value)
        return put_one(self, namespace, key, value, limit)

    monkeypatch.setattr(MemoryBackend, "put_one", recording)
    guest = host.load(FIXTURES / "bench.wat")
    with StorageManager.from_settings(StorageSettings(url="memory://")) as manager:
        storage = storage_of(manager)
        with host.instantiate(guest, storage) as instance:
            assert instance.call("bench-set", 5, "k", b"value") == 5
        assert storage.get("k") == b"value"
    assert len(written) == 5 and written[-1] == b"value"
    assert all(len(new or b"") == 5 and new != old for old, new in itertools.pairwise(written))


# -- every error a real store raises reaches the guest as its variant --------------


def test_real_storage_errors_reach_the_guest_as_variants(instance: GuestInstance, storage: ComponentStorage) -> None:
    assert err(instance, "set", "", b"x") == Variant("invalid-key")
    assert err(instance, "get", "bad\nkey") == Variant("invalid-key")
    assert err(instance, "has", "k" * 257) == Variant("invalid-key")
    assert err(instance, "set", "big", bytes(1025)) == Variant("value-too-large")
    for i in range(4):
        ok(instance, "set", f"q{i}", bytes(1000))
    assert err(instance, "set", "q4", bytes(1000)) == Variant("quota-exceeded")
    assert err(instance, "clear") == Variant("permission-denied")
    storage.delete_many([f"q{i}" for i in range(4)])
    for i in range(11):
        storage.set(f"n{i:02}", b"")
    too_many = err(instance, "keys", None)  # too-many-keys has no 0.1.0 case
    assert too_many.tag == "internal-error" and "scan" in too_many.payload
    assert err(instance, "range", "n", "o", None).tag == "too-many-keys"
    assert err(instance, "get-many", [f"k{i}" for i in range(6)]).tag == "too-many-keys"
    assert err(instance, "delete-many", [f"k{i}" for i in range(6)]).tag == "too-many-keys"
    assert err(instance, "set-many", [(f"k{i}", b"") for i in range(6)]).tag == "too-many-keys"
    assert err(instance, "scan", None, "not-a-cursor", 5).tag == "invalid-argument"
    assert err(instance, "scan", None, None, 0).tag == "invalid-argument"
    assert err(instance, "range", "a", "z", 0).tag == "invalid-argument"
    assert err(instance, "set-many", [("fine", b"1"), ("", b"2")]) == Variant("invalid-key")
    assert storage.get("fine") is None


def test_read_only_and_no_access(host: Host, echo: Guest, manager: StorageManager) -> None:
    with host.instantiate(echo, storage_of(manager, access="read-only", max_size=None)) as instance:
        assert ok(instance, "get", "k") is None
        assert err(instance, "set", "k", b"v") == Variant("permission-denied")
        assert err(instance, "delete-many", ["k"]) == Variant("permission-denied")
    with host.instantiate(echo, storage_of(manager, access="none", max_size=None, component="other")) as instance:
        assert err(instance, "get", "k") == Variant("permission-denied")
        assert err(instance, "scan", None, None, 1) == Variant("permission-denied")


# -- every error class, for every function, mapped to its variant ------------------


class RaisingStorage:
    """Stands in for ComponentStorage: every method raises *error*."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.calls: list[str] = []

    def __getattr__(self, method: str) -> Any:
        def fail(*args: Any) -> Any:
            self.calls.append(method)
            raise self.error

        return fail


ARGUMENTS: dict[str, tuple[Any, ...]] = {
    "storage-get": ("k",),
    "storage-set": ("k", b"v"),
    "storage-delete": ("k",),
    "storage-has": ("k",),
    "storage-keys": (None,),
    "storage-size": (),
    "storage-clear": (),
    "storage-get-many": (["k"],),
    "storage-set-many": ([("k", b"v")],),
    "storage-delete-many": (["k"],),
    "storage-range": ("a", "b", None),
    "storage-scan": (None, None, 1),
}
ERRORS = [PermissionDenied, QuotaExceeded, KeyNotFound, InvalidKey, ValueTooLarge, InternalError, TooManyKeys,
          InvalidArgument, ConfigurationError]  # fmt: skip


#: The functions the echo fixture forwards (the state interfaces' are exercised by the Python guest).
ECHOED = [function for function in FUNCTIONS if function.interface in (STORAGE, BATCH, RANGES)]


@pytest.mark.parametrize("function", ECHOED, ids=lambda f: f.name)
@pytest.mark.parametrize("error_class", ERRORS, ids=lambda e: e.code)
def test_every_storage_error_becomes_its_variant(
    host: Host, echo: Guest, function: HostFunction, error_class: type[StorageError]
) -> None:
    error = error_class(f"details of {error_class.code}")
    cases = SEED_CODES if function.interface == STORAGE else EXTENDED_CODES
    stub = RaisingStorage(error)
    with host.instantiate(echo, stub) as instance:
        export = function.name.removeprefix("storage-")
        for _ in range(2):  # a storage error never traps: the instance stays usable
            variant = err(instance, export, *ARGUMENTS[function.name])
            if error.code in cases:
                payload = error.message if error.code in WITH_MESSAGE else None
                assert variant == Variant(error.code, payload)
            else:
                assert variant == Variant("internal-error", error.message)
    assert stub.calls == [function.method, function.method]


def test_the_table_matches_the_interface_cases() -> None:
    for function in FUNCTIONS:
        if function.interface == STORAGE:
            cases = SEED_CODES
        elif function.interface in (BATCH, RANGES):
            cases = EXTENDED_CODES
        else:
            cases = [*EXTENDED_CODES, "precondition-failed"]
        assert list(function.result.error.cases) == cases, function.name


# -- traps and host failures -------------------------------------------------------


def test_a_guest_trap_names_the_guest_and_the_export(host: Host, storage: ComponentStorage) -> None:
    guest = host.load(FIXTURES / "trap.wat")
    instance = host.instantiate(guest, storage)
    with pytest.raises(GuestTrap) as caught:
        instance.call("set-then-trap", "k", b"value")
    message = str(caught.value)
    assert "'trap.wat'" in message and "'set-then-trap'" in message and "unreachable" in message
    assert "wasm backtrace" in caught.value.details
    with pytest.raises(GuestError, match="discarded"):
        instance.call("echo-set", "k2", b"v")
    # The completed set stays, the usage counter agrees, and a new instance works.
    assert storage.get("k") == b"value" and storage.size() == len("k") + len("value")
    with host.instantiate(guest, storage) as again:
        assert again.call("echo-set", "k2", b"v") is None
    assert storage.keys() == ["k", "k2"]


def test_a_trap_before_any_storage_call(host: Host, storage: ComponentStorage) -> None:
    with host.instantiate(host.load(FIXTURES / "trap.wat"), storage) as instance:
        with pytest.raises(GuestTrap, match=r"guest 'trap\.wat' trapped in export 'trap'"):
            instance.call("trap")
    assert storage.keys() == []


def test_a_host_failure_traps_the_guest_and_names_it(host: Host, echo: Guest) -> None:
    stub = RaisingStorage(RuntimeError("bug in a policy"))
    instance = host.instantiate(echo, stub)
    with pytest.raises(GuestTrap) as caught:
        instance.call("set", "k", b"v")
    message = str(caught.value)
    assert "'echo.wat'" in message and "'set'" in message
    assert "host failed while serving storage-set (RuntimeError: bug in a policy)" in message
    assert isinstance(caught.value.__cause__, RuntimeError)
    with pytest.raises(GuestError, match="discarded"):
        instance.call("get", "k")


def test_an_interrupt_in_a_host_function_propagates(host: Host, echo: Guest) -> None:
    with host.instantiate(echo, RaisingStorage(KeyboardInterrupt())) as instance, pytest.raises(KeyboardInterrupt):
        instance.call("has", "k")


def test_arguments_that_do_not_fit_the_export(instance: GuestInstance) -> None:
    with pytest.raises(InvalidArgument, match=r"export 'set' of guest 'echo\.wat' is func\(string, list<u8>\)"):
        instance.call("set", "k", "not bytes")
    assert ok(instance, "has", "k") is False  # nothing ran, nothing discarded


def test_a_missing_export(instance: GuestInstance) -> None:
    with pytest.raises(InvalidGuest, match=r"guest 'echo\.wat' has no export 'nope' \(its exports: clear, delete"):
        instance.call("nope")


def test_one_store_per_instance(host: Host, echo: Guest, storage: ComponentStorage) -> None:
    with host.instantiate(echo, storage) as first, host.instantiate(echo, storage) as second:
        assert first._store is not second._store
        ok(first, "set", "k", b"1")
        assert ok(second, "get", "k") == b"1"  # separate instances, one storage


# -- guests the host refuses ---------------------------------------------------------

WRONG_TYPE = """(component
  (import "airssys:wasm/storage@0.1.0" (instance
    (export "storage-has" (func (param "key" u32) (result bool))))))"""
UNKNOWN_FUNCTION = """(component
  (import "airssys:wasm/storage@0.1.0" (instance
    (export "storage-watch" (func (param "key" string))))))"""
UNKNOWN_INTERFACE = """(component
  (import "example:other/thing@1.0.0" (instance (export "f" (func)))))"""
#: What a ComponentizeJS guest built without `--disable http fetch-event` imports.
WASI_HTTP = """(component (import "wasi:http/outgoing-handler@0.2.10" (instance)))"""


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (b"\x00asm\x01\x00\x00\x00", "is a core WebAssembly module, not a component"),
        (b"(module)", "is not a valid WebAssembly component: attempted to parse a wasm module with a component parser"),
        (b"\x89PNG\r\n", "is neither a WebAssembly component nor component text"),
        (b"(component (oops))", "is not a valid WebAssembly component"),
        (WRONG_TYPE.encode(), "imports airssys:wasm/storage@0.1.0#storage-has with type func(u32) -> bool, but the "
                              "host provides func(string) -> result<bool, variant{"),
        (UNKNOWN_FUNCTION.encode(), "imports airssys:wasm/storage@0.1.0#storage-watch, which this host does not "
                                    "provide"),
        (UNKNOWN_INTERFACE.encode(), "imports 'example:other/thing@1.0.0', which this host does not provide"),
        (WASI_HTTP.encode(), "imports 'wasi:http/outgoing-handler@0.2.10', which this host does not provide (it "
                             "provides airssys:wasm/"),
        (WASI_HTTP.encode(), "guests get no network (a ComponentizeJS guest imports wasi:http unless built with "
                             "`componentize-js --disable http fetch-event`)"),
    ],
)  # fmt: skip
def test_guests_that_cannot_run_are_refused_with_a_reason(host: Host, source: bytes, message: str) -> None:
    with pytest.raises(InvalidGuest) as caught:
        host.load(source, name="bad.wasm")
    assert message in str(caught.value) and "'bad.wasm'" in str(caught.value)


def test_unreadable_guests(host: Host, tmp_path: Path) -> None:
    with pytest.raises(InvalidGuest, match=r"no such guest file: '.*missing\.wasm'"):
        host.load(tmp_path / "missing.wasm")
    with pytest.raises(InvalidGuest, match="cannot read guest"):
        host.load(tmp_path)
