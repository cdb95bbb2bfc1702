"""A guest written in Python (componentize-py): calls every storage function and checks the results.

Built by the tests (``componentize-py -d wit -w python-guest componentize app``)
and run by ``test_wasmtime_python_guest.py``, which configures the host with
the limits below. Each check that fails raises ``Err("<what failed>")``;
success returns the number of checks made.
"""

from __future__ import annotations

import wit_world
from guest_checks import Checks, run_checks
from wit_world.imports import extension_types as ext
from wit_world.imports import (
    state_types,
    storage,
    storage_atomics,
    storage_batch,
    storage_expiry,
    storage_limits,
    storage_range_delete,
    storage_ranges,
)

# The host's settings and the read-write manifest, as the test configures them.
MAX_KEYS_PER_QUERY = 10
MAX_BATCH_OPS = 5
MAX_VALUE_BYTES = 1024
QUOTA_BYTES = 4096


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


def state(c: Checks) -> None:
    """storage-atomics, storage-expiry, storage-range-delete and storage-limits, with their errors."""
    a, e, d, st = storage_atomics, storage_expiry, storage_range_delete, state_types
    s = storage
    # versions and compare-and-swap
    c.equal("get-entry of a missing key", a.storage_get_entry("c"), None)
    v1 = a.storage_compare_and_swap("c", b"1", None)
    entry = a.storage_get_entry("c")
    c.equal("get-entry", (entry.value, entry.version, entry.expires_at_ms), (b"1", v1, None))
    c.error(
        "cas expecting absence", lambda: a.storage_compare_and_swap("c", b"2", None), st.StateError_PreconditionFailed
    )
    v2 = a.storage_compare_and_swap("c", b"2", v1)
    c.equal("cas with the current version writes a newer version", (s.storage_get("c"), v2 > v1), (b"2", True))
    error = c.error("a stale cas", lambda: a.storage_compare_and_swap("c", b"3", v1), st.StateError_PreconditionFailed)
    c.equal("its message", bool(error.value), True)
    c.equal("the stale cas wrote nothing", s.storage_get("c"), b"2")
    c.equal("set-if-absent of a present key", a.storage_set_if_absent("c", b"x"), False)
    c.equal("set-if-absent of a missing key", a.storage_set_if_absent("d", b"x"), True)
    version = a.storage_get_entry("d").version
    c.equal("delete-if with another version", a.storage_delete_if("d", version + 1), False)
    c.equal("delete-if with the version", a.storage_delete_if("d", version), True)
    c.equal("delete-if deleted", s.storage_has("d"), False)
    v3 = a.storage_compare_and_swap("d", b"again", None)
    c.equal("a re-created key never reuses a version", v3 > version, True)
    c.error("cas of an invalid key", lambda: a.storage_compare_and_swap("", b"", None), st.StateError_InvalidKey)
    c.error(
        "cas of a value too large",
        lambda: a.storage_compare_and_swap("c", bytes(MAX_VALUE_BYTES + 1), v2),
        st.StateError_ValueTooLarge,
    )
    # counters
    c.equal("increment of a missing key", a.storage_increment("n", 5, None), 5)
    c.equal("increment by a negative delta", a.storage_increment("n", -7, None), -2)
    c.equal("the counter is decimal ASCII", s.storage_get("n"), b"-2")
    c.equal("increment with an op-id", a.storage_increment("n", 10, "op-1"), 8)
    c.equal("the same op-id again applies nothing", a.storage_increment("n", 10, "op-1"), 8)
    c.equal("the counter after the retry", s.storage_get("n"), b"8")
    c.error("increment of a non-integer", lambda: a.storage_increment("d", 1, None), st.StateError_InvalidArgument)
    s.storage_set("max", str(2**63 - 1).encode())
    c.error("increment past s64", lambda: a.storage_increment("max", 1, None), st.StateError_InvalidArgument)
    c.error("an empty op-id", lambda: a.storage_increment("n", 1, ""), st.StateError_InvalidArgument)
    # expiry
    v = e.storage_set_with_ttl("t", b"v", 60_000)
    entry = a.storage_get_entry("t")
    c.equal("set-with-ttl returns the version", entry.version, v)
    c.equal("get-entry shows the expiry", entry.expires_at_ms is not None, True)
    ttl = e.storage_get_ttl("t")
    c.equal("get-ttl in milliseconds", ttl is not None and 0 < ttl <= 60_000, True)
    c.equal("get-ttl of a key without expiry", e.storage_get_ttl("c"), None)
    c.error("get-ttl of a missing key", lambda: e.storage_get_ttl("missing"), st.StateError_KeyNotFound)
    c.equal("expire", e.storage_expire("c", 5_000), True)
    ttl = e.storage_get_ttl("c")
    c.equal("expire sets the ttl", ttl is not None and 0 < ttl <= 5_000, True)
    c.equal("persist", e.storage_persist("c"), True)
    c.equal("persist removes the expiry", e.storage_get_ttl("c"), None)
    c.equal("expire of a missing key", e.storage_expire("missing", 1_000), False)
    c.equal("persist of a missing key", e.storage_persist("missing"), False)
    c.error("a ttl of 0", lambda: e.storage_set_with_ttl("t", b"v", 0), st.StateError_InvalidArgument)
    s.storage_set("t", b"plain")
    c.equal("a set without ttl clears the expiry", e.storage_get_ttl("t"), None)
    # atomic write batches (storage-commit)
    vc = a.storage_get_entry("c").version
    set_, delete, increment = a.Mutation_Set, a.Mutation_Delete, a.Mutation_Increment
    mutations = [set_(("b/1", b"x", None)), increment(("b/n", 2)), set_(("b/t", b"t", 5_000)), delete("b/none")]
    versions = a.storage_commit([("c", vc)], mutations)
    c.equal(
        "commit returns each mutation's version",
        versions,
        [a.storage_get_entry("b/1").version, a.storage_get_entry("b/n").version, a.storage_get_entry("b/t").version, 0],
    )
    ttl = e.storage_get_ttl("b/t")
    c.equal("commit applied every mutation", (s.storage_get("b/n"), ttl is not None and 0 < ttl <= 5_000), (b"2", True))
    c.equal("a checked key is left as it was", a.storage_get_entry("c").version, vc)
    error = c.error(
        "commit with a stale check",
        lambda: a.storage_commit([("c", vc + 1)], [set_(("b/2", b"y", None)), increment(("b/n", 1))]),
        st.StateError_PreconditionFailed,
    )
    refused = ("'c'" in error.value, s.storage_has("b/2"))
    c.equal("a refused commit names the key and writes nothing", refused, (True, False))
    c.error(
        "commit of a key twice",
        lambda: a.storage_commit([], [delete("b/1"), delete("b/1")]),
        st.StateError_InvalidArgument,
    )
    too_many = [set_((f"b/{i}", b"", None)) for i in range(MAX_BATCH_OPS + 1)]
    c.error("commit past max-batch-ops", lambda: a.storage_commit([], too_many), st.StateError_TooManyKeys)
    c.equal("commit of deletes", a.storage_commit([], [delete("b/1"), delete("b/n"), delete("b/t")]), [0, 0, 0])
    # limits
    limits = storage_limits.storage_limits()
    c.equal(
        "limits",
        (limits.max_value_bytes, limits.max_keys_per_query, limits.max_batch_ops, limits.quota_bytes),
        (MAX_VALUE_BYTES, MAX_KEYS_PER_QUERY, MAX_BATCH_OPS, QUOTA_BYTES),
    )
    c.equal("limits: bytes used", limits.used_bytes, s.storage_size())
    c.equal("limits: keys", limits.keys, len(s.storage_keys(None)))
    # range deletes
    for key in ("c", "d", "n", "max", "t"):
        s.storage_delete(key)
    storage_batch.storage_set_many([("p/1", b"1"), ("p/2", b"2"), ("p/3", b"3"), ("q", b"q")])
    c.equal("delete-prefix counts", d.storage_delete_prefix("p/"), 3)
    c.equal("delete-prefix deleted", s.storage_keys(None), ["q"])
    c.error("an empty prefix", lambda: d.storage_delete_prefix(""), st.StateError_InvalidArgument)
    storage_batch.storage_set_many([("r1", b""), ("r2", b""), ("r3", b"")])
    c.equal("delete-range counts", d.storage_delete_range("r1", "r3"), 2)
    c.equal("delete-range deleted start <= key < end", s.storage_keys(None), ["q", "r3"])
    c.equal("a size after range deletes", s.storage_size(), len("q") + 1 + len("r3"))
    # the quota
    for i in range(QUOTA_BYTES // 1000):
        s.storage_set(f"f{i}", bytes(1000))
    c.error(
        "set-with-ttl beyond the quota",
        lambda: e.storage_set_with_ttl("x", bytes(1000), 1_000),
        st.StateError_QuotaExceeded,
    )
    c.error(
        "cas beyond the quota", lambda: a.storage_compare_and_swap("x", bytes(1000), None), st.StateError_QuotaExceeded
    )
    c.equal("limits: nothing remaining written", s.storage_has("x"), False)
    c.equal("delete-prefix releases the quota", d.storage_delete_prefix("f"), QUOTA_BYTES // 1000)
    c.equal("size after releasing", s.storage_size(), len("q") + 1 + len("r3"))
    # the bucket area of wasi:keyvalue is not reachable through these interfaces
    c.error("a key in the bucket area", lambda: a.storage_get_entry("\U0010ffffdefault/k"), st.StateError_InvalidKey)
    c.error("a prefix in the bucket area", lambda: d.storage_delete_prefix("\U0010ffff"), st.StateError_InvalidKey)


def expiry_before(c: Checks) -> None:
    storage_expiry.storage_set_with_ttl("short", b"soon gone", 1_000)
    storage_expiry.storage_set_with_ttl("long", b"stays", 3_600_000)
    c.equal("a key before its expiry", storage.storage_get("short"), b"soon gone")


def expiry_after(c: Checks) -> None:
    """Run after the host's clock moved 2 s on: "short" expired, "long" did not."""
    st = state_types
    c.equal("get of an expired key", storage.storage_get("short"), None)
    c.equal("has of an expired key", storage.storage_has("short"), False)
    c.equal("get-entry of an expired key", storage_atomics.storage_get_entry("short"), None)
    c.error("get-ttl of an expired key", lambda: storage_expiry.storage_get_ttl("short"), st.StateError_KeyNotFound)
    c.equal("keys skip an expired key", storage.storage_keys(None), ["long"])
    c.equal("expire of an expired key", storage_expiry.storage_expire("short", 1_000), False)
    ttl = storage_expiry.storage_get_ttl("long")
    c.equal("the other key's ttl went down by 2 s", ttl, 3_600_000 - 2_000)
    c.equal(
        "cas expecting absence succeeds on an expired key",
        storage_atomics.storage_compare_and_swap("short", b"new", None) > 0,
        True,
    )


def state_read_only(c: Checks) -> None:
    st, a, e, d = state_types, storage_atomics, storage_expiry, storage_range_delete
    c.equal("get-entry", a.storage_get_entry("shared").value, b"written by the host")
    c.equal("get-ttl", e.storage_get_ttl("shared"), None)
    c.equal("limits", storage_limits.storage_limits().keys, 1)
    denied = st.StateError_PermissionDenied
    version = a.storage_get_entry("shared").version
    c.error("compare-and-swap", lambda: a.storage_compare_and_swap("shared", b"v", version), denied)
    c.error("set-if-absent", lambda: a.storage_set_if_absent("k", b"v"), denied)
    c.error("delete-if", lambda: a.storage_delete_if("shared", version), denied)
    c.error("increment", lambda: a.storage_increment("n", 1, None), denied)
    c.error("set-with-ttl", lambda: e.storage_set_with_ttl("k", b"v", 1_000), denied)
    c.error("expire", lambda: e.storage_expire("shared", 1_000), denied)
    c.error("persist", lambda: e.storage_persist("shared"), denied)
    c.error("delete-prefix", lambda: d.storage_delete_prefix("s"), denied)
    c.error("delete-range", lambda: d.storage_delete_range("a", "z"), denied)


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


SCENARIOS = {
    "read-write": read_write,
    "read-only": read_only,
    "admin": admin,
    "none": no_access,
    "state": state,
    "state-read-only": state_read_only,
    "expiry-before": expiry_before,
    "expiry-after": expiry_after,
}


class WitWorld(wit_world.WitWorld):
    def run_checks(self, scenario: str) -> int:
        return run_checks(SCENARIOS, scenario)
