"""A guest written against the standard ``wasi:keyvalue@0.2.0-draft2`` WIT only (componentize-py).

Built by the tests (``componentize-py -d wit -w keyvalue-guest componentize app``)
and run by ``test_wasmtime_keyvalue.py`` with the limits below and a manifest
allowing the buckets "default" and "cache". Each check that fails raises
``Err("<what failed>")``; success returns the number of checks made.
"""

from __future__ import annotations

import wit_world
from componentize_py_types import Err
from guest_checks import Checks, run_checks
from wit_world.imports import atomics, batch, store

# The host's settings and the read-write manifest, as the test configures them.
MAX_KEYS_PER_QUERY = 10
MAX_BATCH_OPS = 5
QUOTA_BYTES = 4096


def all_keys(bucket: store.Bucket, c: Checks) -> list[str]:
    keys: list[str] = []
    cursor = None
    pages = 0
    while True:
        response = bucket.list_keys(cursor)
        pages += 1
        if len(response.keys) > MAX_KEYS_PER_QUERY:
            raise Err(f"a page of {len(response.keys)} keys")
        keys.extend(response.keys)
        cursor = response.cursor
        if cursor is None:
            return keys
        if pages > 100:
            raise Err("list-keys never ends")


def read_write(c: Checks) -> None:
    other = store.Error_Other
    default = store.open("default")
    cache = store.open("cache")
    c.error("a bucket the manifest does not list", lambda: store.open("secret"), store.Error_AccessDenied)
    c.error("a name that is no bucket", lambda: store.open("No Such/Store"), store.Error_NoSuchStore)

    # store
    c.equal("get of a missing key", default.get("k"), None)
    c.equal("exists of a missing key", default.exists("k"), False)
    default.set("k", b"default value")
    cache.set("k", b"cache value")
    c.equal("get after set", default.get("k"), b"default value")
    c.equal("buckets are separate", cache.get("k"), b"cache value")
    c.equal("exists after set", default.exists("k"), True)
    default.set("k", b"")
    c.equal("an empty value is not a missing one", default.get("k"), b"")
    default.delete("k")
    c.equal("delete removes", default.exists("k"), False)
    default.delete("k")  # deleting a missing key does nothing
    c.equal("the other bucket keeps its key", cache.get("k"), b"cache value")
    key = "ключ/😀"
    default.set(key, bytes(range(256)))
    c.equal("unicode key, every byte value", default.get(key), bytes(range(256)))
    default.delete(key)
    c.error("an empty key", lambda: default.set("", b"x"), other, "invalid-key")
    c.error("a key with a control character", lambda: default.get("bad\nkey"), other, "invalid-key")
    c.error("a key too long", lambda: default.get("k" * 300), other, "invalid-key")

    # list-keys: every key exactly once, in pages of at most the query maximum
    names = [f"item-{i:02}" for i in range(MAX_KEYS_PER_QUERY + 3)]
    for name in names:
        cache.set(name, b"")
    c.equal("list-keys pages through every key once", all_keys(cache, c), sorted([*names, "k"]))
    c.equal("list-keys of the other bucket", all_keys(default, c), [])
    first = cache.list_keys(None)
    c.equal("a full first page has a cursor", len(first.keys) == MAX_KEYS_PER_QUERY and first.cursor is not None, True)
    cache.set("item-00a", b"")  # written behind the cursor: not in the next page, never twice
    rest = cache.list_keys(first.cursor)
    c.equal("the next page continues after the cursor", rest.keys[0] > first.keys[-1], True)
    c.error("a forged cursor", lambda: cache.list_keys("garbage"), other, "invalid-argument")
    batch.delete_many(cache, [*names[:5]])
    batch.delete_many(cache, [*names[5:10]])
    batch.delete_many(cache, [*names[10:], "item-00a", "k"])
    c.equal("delete-many emptied the bucket", cache.list_keys(None).keys, [])

    # atomics: counters
    c.equal("increment of a missing key", atomics.increment(default, "n", 5), 5)
    c.equal("increment by a negative delta", atomics.increment(default, "n", -7), -2)
    c.equal("the counter is decimal ASCII", default.get("n"), b"-2")
    default.set("text", b"not a number")
    c.error("increment of a non-integer", lambda: atomics.increment(default, "text", 1), other, "invalid-argument")
    default.set("max", str(2**63 - 1).encode())
    c.error("increment past s64", lambda: atomics.increment(default, "max", 1), other, "invalid-argument")

    # atomics: compare-and-swap
    with atomics.Cas.new(default, "x") as cas:
        c.equal("cas of a missing key: current", cas.current(), None)
    atomics.swap(atomics.Cas.new(default, "x"), b"1")
    c.equal("swap on a missing key writes", default.get("x"), b"1")
    early = atomics.Cas.new(default, "x")
    late = atomics.Cas.new(default, "x")
    c.equal("current", early.current(), b"1")
    atomics.swap(early, b"2")
    failed = c.error("a stale swap", lambda: atomics.swap(late, b"3"), atomics.CasError_CasFailed)
    retry = failed.value
    c.equal("the stale swap wrote nothing", default.get("x"), b"2")
    c.equal("cas-failed hands back a fresh handle", retry.current(), b"2")
    atomics.swap(retry, b"3")
    c.equal("the retried swap wrote", default.get("x"), b"3")
    stale = atomics.Cas.new(default, "gone")
    default.set("gone", b"created meanwhile")
    failed = c.error("swap expecting a missing key", lambda: atomics.swap(stale, b"x"), atomics.CasError_CasFailed)
    with failed.value as fresh:  # dropped at once: the host holds a handle until the guest drops it
        c.equal("the fresh handle sees the new value", fresh.current(), b"created meanwhile")
    big = atomics.Cas.new(default, "x")
    failed = c.error(
        "swap of a value too large", lambda: atomics.swap(big, bytes(QUOTA_BYTES)), atomics.CasError_StoreError
    )
    c.equal("its store error", failed.value.value.startswith("value-too-large:"), True)
    for name in ("n", "text", "max", "x", "gone"):
        default.delete(name)

    # batch: atomic, last value wins, limits
    batch.set_many(default, [("b1", b"one"), ("b2", b"two"), ("b1", b"last wins")])
    got = batch.get_many(default, ["b1", "zz", "b2"])
    c.equal("get-many", got, [("b1", b"last wins"), None, ("b2", b"two")])
    c.equal("get-many of the other bucket", batch.get_many(cache, ["b1"]), [None])
    batch.delete_many(default, ["b1", "b2", "zz"])
    c.equal("delete-many", batch.get_many(default, ["b1", "b2"]), [None, None])
    too_many = [f"t{i}" for i in range(MAX_BATCH_OPS + 1)]
    c.error("set-many too large", lambda: batch.set_many(default, [(k, b"") for k in too_many]), other, "too-many-keys")
    c.error("get-many too large", lambda: batch.get_many(default, too_many), other, "too-many-keys")
    c.error("delete-many too large", lambda: batch.delete_many(default, too_many), other, "too-many-keys")
    bad = [("ok", b"1"), ("", b"2")]
    c.error("a batch with an invalid key", lambda: batch.set_many(default, bad), other, "invalid-key")
    c.equal("the refused batch wrote nothing", default.exists("ok"), False)

    # the quota is the component's, shared by its buckets
    for i in range(4):  # 4 x (1000 + 14 bytes of stored key) of the 4096
        default.set(f"q{i}", bytes(1000))
    c.error("a set beyond the quota", lambda: cache.set("q", bytes(1000)), other, "quota-exceeded")
    c.equal("the refused set wrote nothing", cache.exists("q"), False)
    over = [(f"x{i}", bytes(400)) for i in range(3)]
    c.error("a batch beyond the quota", lambda: batch.set_many(cache, over), other, "quota-exceeded")
    c.equal("the refused batch wrote nothing", batch.get_many(cache, ["x0", "x1", "x2"]), [None, None, None])
    c.error("an increment beyond the quota", lambda: atomics.increment(cache, "c" * 60, 1), other, "quota-exceeded")
    batch.delete_many(default, ["q0", "q1", "q2", "q3"])
    default.set("kept", b"for the host to see")
    cache.set("kept", b"cached")


def read_only(c: Checks) -> None:
    denied = store.Error_AccessDenied
    default = store.open("default")
    c.equal("a reader sees the data", default.get("shared"), b"written by the host")
    c.equal("exists", default.exists("shared"), True)
    c.equal("list-keys", default.list_keys(None).keys, ["shared"])
    c.equal("get-many", batch.get_many(default, ["shared"]), [("shared", b"written by the host")])
    c.equal("cas.new and current", atomics.Cas.new(default, "shared").current(), b"written by the host")
    c.error("set", lambda: default.set("k", b"v"), denied)
    c.error("delete", lambda: default.delete("shared"), denied)
    c.error("increment", lambda: atomics.increment(default, "n", 1), denied)
    failed = c.error(
        "swap", lambda: atomics.swap(atomics.Cas.new(default, "shared"), b"v"), atomics.CasError_StoreError
    )
    c.equal("swap's store error", type(failed.value), denied)
    c.error("set-many", lambda: batch.set_many(default, [("k", b"v")]), denied)
    c.error("delete-many", lambda: batch.delete_many(default, ["shared"]), denied)
    c.error("a bucket the manifest does not list", lambda: store.open("cache"), denied)


def no_access(c: Checks) -> None:
    denied = store.Error_AccessDenied
    default = store.open("default")
    c.error("get", lambda: default.get("k"), denied)
    c.error("exists", lambda: default.exists("k"), denied)
    c.error("list-keys", lambda: default.list_keys(None), denied)
    c.error("get-many", lambda: batch.get_many(default, ["k"]), denied)


SCENARIOS = {"read-write": read_write, "read-only": read_only, "none": no_access}


class WitWorld(wit_world.WitWorld):
    def run_checks(self, scenario: str) -> int:
        return run_checks(SCENARIOS, scenario)
