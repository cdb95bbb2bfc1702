"""A guest written against Spin's ``fermyon:spin/key-value@2.0.0`` WIT only (componentize-py).

Built by the tests (``componentize-py -d wit -w spin-guest componentize app``)
and run by ``test_wasmtime_keyvalue.py`` with the limits below and a manifest
allowing the store labels "default" and "cache". Each check that fails raises
``Err("<what failed>")``; success returns the number of checks made.
"""

from __future__ import annotations

import wit_world
from componentize_py_types import Err
from guest_checks import Checks, run_checks
from wit_world.imports import key_value as kv

# The host's settings and the read-write manifest, as the test configures them.
MAX_KEYS_PER_QUERY = 10
QUOTA_BYTES = 4096
MAX_HANDLES = 1024


def read_write(c: Checks) -> None:
    other = kv.Error_Other
    default = kv.Store.open("default")
    cache = kv.Store.open("cache")
    c.error("a label the manifest does not list", lambda: kv.Store.open("secret"), kv.Error_AccessDenied)
    c.error("a label that is no store", lambda: kv.Store.open("No Such/Store"), kv.Error_NoSuchStore)
    c.equal("get of a missing key", default.get("k"), None)
    c.equal("exists of a missing key", default.exists("k"), False)
    default.set("k", b"default value")
    cache.set("k", b"cache value")
    c.equal("get after set", default.get("k"), b"default value")
    c.equal("stores are separate", cache.get("k"), b"cache value")
    c.equal("exists after set", default.exists("k"), True)
    default.delete("k")
    c.equal("delete removes", default.exists("k"), False)
    default.delete("k")  # deleting a missing key does nothing
    c.error("an empty key", lambda: default.set("", b"x"), other, "invalid-key")
    names = [f"item-{i}" for i in range(MAX_KEYS_PER_QUERY - 1)]
    for name in names:
        cache.set(name, b"")
    c.equal("get-keys: every key, sorted", cache.get_keys(), sorted([*names, "k"]))
    c.equal("get-keys of the other store", default.get_keys(), [])
    cache.set("one-too-many", b"")
    c.error("get-keys beyond the query maximum", cache.get_keys, other, "too-many-keys")
    for name in [*names, "one-too-many", "k"]:
        cache.delete(name)
    for i in range(4):  # 4 x (1000 + 14 bytes of stored key) of the 4096
        default.set(f"q{i}", bytes(1000))
    c.error("a set beyond the quota", lambda: cache.set("q", bytes(1000)), other, "quota-exceeded")
    c.equal("the refused set wrote nothing", cache.exists("q"), False)
    for i in range(4):
        default.delete(f"q{i}")
    # A guest that keeps opening stores without closing them runs out of handles, not the host of memory.
    held = [default, cache]
    try:
        for _ in range(MAX_HANDLES):
            held.append(kv.Store.open("default"))
    except Err as err:
        c.equal("store-table-full", type(err.value), kv.Error_StoreTableFull)
    else:
        raise Err(f"{len(held)} stores opened")
    for store in held[2:]:
        store.__exit__(None, None, None)
    c.equal("a store opens again once others are closed", kv.Store.open("default").exists("k"), False)
    default.set("kept", b"for the host to see")


def read_only(c: Checks) -> None:
    denied = kv.Error_AccessDenied
    default = kv.Store.open("default")
    c.equal("a reader sees the data", default.get("shared"), b"written by the host")
    c.equal("exists", default.exists("shared"), True)
    c.equal("get-keys", default.get_keys(), ["shared"])
    c.error("set", lambda: default.set("k", b"v"), denied)
    c.error("delete", lambda: default.delete("shared"), denied)
    c.error("a label the manifest does not list", lambda: kv.Store.open("cache"), denied)


def no_access(c: Checks) -> None:
    denied = kv.Error_AccessDenied
    default = kv.Store.open("default")
    c.error("get", lambda: default.get("k"), denied)
    c.error("exists", lambda: default.exists("k"), denied)
    c.error("get-keys", default.get_keys, denied)


SCENARIOS = {"read-write": read_write, "read-only": read_only, "none": no_access}


class WitWorld(wit_world.WitWorld):
    def run_checks(self, scenario: str) -> int:
        return run_checks(SCENARIOS, scenario)
