"""A guest written in Python (componentize-py): calls every storage function and checks the results.

Built by the tests (``componentize-py -d wit -w python-guest componentize app``)
and run by ``test_wasmtime_python_guest.py``, which configures the host with
the limits below. Each check that fails raises ``Err("<what failed>")``;
success returns the number of checks made.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import wit_world
from componentize_py_types import Err
from wit_world.imports import extension_types as ext
from wit_world.imports import storage, storage_batch, storage_ranges

# The host's settings and the read-write manifest, as the test configures them.
MAX_KEYS_PER_QUERY = 10
MAX_BATCH_OPS = 5
MAX_VALUE_BYTES = 1024
QUOTA_BYTES = 4096


class Checks:
    def __init__(self) -> None:
        self.count = 0

    def equal(self, what: str, got: Any, expected: Any) -> None:
        self.count += 1
        if got != expected:
            raise Err(f"{what}: got {got!r}, expected {expected!r}")

    def error(self, what: str, call: Callable[[], Any], expected: type) -> Any:
        """Run *call*; it must fail with the error case *expected*. Returns the error value."""
        self.count += 1
        try:
            got = call()
        except Err as err:
            if type(err.value) is not expected:
                raise Err(f"{what}: failed with {err.value!r}, expected {expected.__name__}") from None
            return err.value
        raise Err(f"{what}: returned {got!r}, expected the error {expected.__name__}")


def read_write(c: Checks) -> None:
    s, b, r = storage, storage_batch, storage_ranges
    # the seven seed functions
    c.equal("get of a missing key", s.storage_get("missing"), None)
    c.equal("has of a missing key", s.storage_has("missing"), False)
    s.storage_set("a", b"1")
    c.equal("get after set", s.storage_get("a"), b"1")
    c.equal("has after set", s.storage_has("a"), True)
    s.storage_set("a", b"")
    c.equal("an empty value is not a missing one", s.storage_get("a"), b"")
    key = "ключ/😀"
    s.storage_set(key, bytes(range(256)))
    c.equal("unicode key, every byte value", s.storage_get(key), bytes(range(256)))
    c.equal("keys, bytewise order", s.storage_keys(None), ["a", key])
    c.equal("keys with a prefix", s.storage_keys("a"), ["a"])
    c.equal("keys with a prefix matching nothing", s.storage_keys("zzz"), [])
    c.equal("size is keys plus values in bytes", s.storage_size(), 1 + len(key.encode()) + 256)
    c.equal("delete of a present key", s.storage_delete("a"), True)
    c.equal("delete of a missing key", s.storage_delete("a"), False)
    s.storage_delete(key)
    c.equal("size after deleting everything", s.storage_size(), 0)

    # every storage-error case a real store can produce
    c.error("set with an empty key", lambda: s.storage_set("", b"x"), storage.StorageError_InvalidKey)
    c.error("get with a control character", lambda: s.storage_get("bad\nkey"), storage.StorageError_InvalidKey)
    c.error("has with a 257-byte key", lambda: s.storage_has("k" * 257), storage.StorageError_InvalidKey)
    c.error(
        "set of a value above the maximum",
        lambda: s.storage_set("big", bytes(MAX_VALUE_BYTES + 1)),
        storage.StorageError_ValueTooLarge,
    )
    for i in range(QUOTA_BYTES // 1000):
        s.storage_set(f"q{i}", bytes(1000))
    c.error("set beyond the quota", lambda: s.storage_set("q-last", bytes(1000)), storage.StorageError_QuotaExceeded)
    c.equal("the refused write changed nothing", s.storage_has("q-last"), False)
    for i in range(QUOTA_BYTES // 1000):
        s.storage_delete(f"q{i}")
    c.error("clear needs admin", s.storage_clear, storage.StorageError_PermissionDenied)
    for i in range(MAX_KEYS_PER_QUERY + 1):
        s.storage_set(f"n{i:02}", b"")
    error = c.error("keys beyond the query maximum", lambda: s.storage_keys(None), storage.StorageError_InternalError)
    c.equal("its message points to scan", "scan" in error.value, True)

    # batches
    for i in range(MAX_KEYS_PER_QUERY + 1):
        s.storage_delete(f"n{i:02}")
    b.storage_set_many([("b1", b"one"), ("b2", b"two"), ("b1", b"last wins")])
    c.equal("get-many", b.storage_get_many(["b1", "zz", "b2"]), [b"last wins", None, b"two"])
    c.equal("delete-many counts existing keys", b.storage_delete_many(["b1", "b2", "zz"]), 2)
    too_many = [f"t{i}" for i in range(MAX_BATCH_OPS + 1)]
    pairs = [(k, b"") for k in too_many]
    c.error("set-many too large", lambda: b.storage_set_many(pairs), ext.ExtendedError_TooManyKeys)
    c.error("get-many too large", lambda: b.storage_get_many(too_many), ext.ExtendedError_TooManyKeys)
    c.error("delete-many too large", lambda: b.storage_delete_many(too_many), ext.ExtendedError_TooManyKeys)
    c.error(
        "a batch with an invalid key",
        lambda: b.storage_set_many([("ok", b"1"), ("", b"2")]),
        ext.ExtendedError_InvalidKey,
    )
    c.equal("the refused batch wrote nothing", s.storage_has("ok"), False)
    over_quota = [(f"x{i}", bytes(1000)) for i in range(MAX_BATCH_OPS)]
    c.error("a batch beyond the quota", lambda: b.storage_set_many(over_quota), ext.ExtendedError_QuotaExceeded)
    c.equal("the refused batch wrote nothing", s.storage_size(), 0)

    # ranges and scans
    b.storage_set_many([("r1", b"1"), ("r2", b"2"), ("r3", b"3"), ("s1", b"s")])
    c.equal("range", r.storage_range("r1", "r3", None), [("r1", b"1"), ("r2", b"2")])
    c.equal("range with a limit", r.storage_range("r", "s", 1), [("r1", b"1")])
    c.equal("an empty range", r.storage_range("r3", "r1", None), [])
    c.error("range with limit 0", lambda: r.storage_range("a", "z", 0), ext.ExtendedError_InvalidArgument)
    pages, cursor = [], None
    while True:
        page, cursor = r.storage_scan("r", cursor, 2)
        pages.append(page)
        if cursor is None:
            break
    c.equal("scan pages", pages, [[("r1", b"1"), ("r2", b"2")], [("r3", b"3")]])
    everything = [("r1", b"1"), ("r2", b"2"), ("r3", b"3"), ("s1", b"s")]
    c.equal("scan without a prefix", r.storage_scan(None, None, 10), (everything, None))
    c.error("scan with a forged cursor", lambda: r.storage_scan("r", "garbage", 2), ext.ExtendedError_InvalidArgument)
    c.error("scan with limit 0", lambda: r.storage_scan(None, None, 0), ext.ExtendedError_InvalidArgument)
    for i in range(MAX_KEYS_PER_QUERY + 1):
        s.storage_set(f"w{i:02}", b"")
    c.error("range beyond the query maximum", lambda: r.storage_range("w", "x", None), ext.ExtendedError_TooManyKeys)


def read_only(c: Checks) -> None:
    s, b, r = storage, storage_batch, storage_ranges
    c.equal("a reader sees the data", s.storage_get("shared"), b"written by the host")
    c.equal("has", s.storage_has("shared"), True)
    c.equal("keys", s.storage_keys(None), ["shared"])
    c.equal("size", s.storage_size(), len("shared") + len("written by the host"))
    c.equal("get-many", b.storage_get_many(["shared"]), [b"written by the host"])
    c.equal("range", r.storage_range("a", "z", None), [("shared", b"written by the host")])
    denied = storage.StorageError_PermissionDenied
    c.error("set", lambda: s.storage_set("k", b"v"), denied)
    c.error("delete", lambda: s.storage_delete("shared"), denied)
    c.error("clear", s.storage_clear, denied)
    c.error("set-many", lambda: b.storage_set_many([("k", b"v")]), ext.ExtendedError_PermissionDenied)
    c.error("delete-many", lambda: b.storage_delete_many(["shared"]), ext.ExtendedError_PermissionDenied)


def admin(c: Checks) -> None:
    s = storage
    s.storage_set("a", b"1")
    s.storage_set("b", b"2")
    s.storage_clear()
    c.equal("clear removes every key", s.storage_keys(None), [])
    c.equal("clear resets the size", s.storage_size(), 0)


def no_access(c: Checks) -> None:
    denied = storage.StorageError_PermissionDenied
    c.error("get", lambda: storage.storage_get("k"), denied)
    c.error("has", lambda: storage.storage_has("k"), denied)
    c.error("keys", lambda: storage.storage_keys(None), denied)
    c.error("size", storage.storage_size, denied)
    c.error("scan", lambda: storage_ranges.storage_scan(None, None, 1), ext.ExtendedError_PermissionDenied)


SCENARIOS = {"read-write": read_write, "read-only": read_only, "admin": admin, "none": no_access}


class WitWorld(wit_world.WitWorld):
    def run_checks(self, scenario: str) -> int:
        checks = Checks()
        try:
            SCENARIOS[scenario](checks)
        except Err as err:
            if isinstance(err.value, str):
                raise
            raise Err(f"unexpected storage error {err.value!r} after {checks.count} checks") from None
        print(f"{scenario}: {checks.count} checks passed")
        return checks.count
