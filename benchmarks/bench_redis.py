"""ComponentStorage on redis:// against raw redis-py, measured side by side in one run.

Raw is a ``redis.Redis`` client doing a plain ``SET`` / ``GET`` per operation
(no quota, no versions, no index), the issue's baseline; ours is one Lua
commit (EVALSHA) per set and one ``HGET`` per get, with the layer's checks.
Each round runs every workload on both, back to back, alternating which goes
first; the table reports each side's best run (ops/s) and the median of the
per-round ratio ours / raw. Every overwrite writes other bytes than the value
it replaces (two values of 100 and 101 bytes alternate between runs).

The server is ``AIRSSYS_STORAGE_TEST_REDIS_URL`` (default database 13 of
``redis://127.0.0.1:6379``); both sides write under key prefixes of their own,
deleted at the end. Run it from outside the repository (``cd /tmp``) so the
installed packages are measured.

    python benchmarks/bench_redis.py [--rounds 7] [--ops 5000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import time
from collections.abc import Callable
from typing import Any

import redis
from _harness import Side

from airssys_storage import Access, Manifest, StorageManager, StorageSettings

#: The server when AIRSSYS_STORAGE_TEST_REDIS_URL is not set: database 13 of the local Redis.
DEFAULT_URL = "redis://127.0.0.1:6379/13"
TARGETS = {"get": 0.6, "set": 0.6, "100-key batch": None, "keys() of 1,000": None}
BATCH = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ops", type=int, default=5000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    url = os.environ.get("AIRSSYS_STORAGE_TEST_REDIS_URL") or DEFAULT_URL
    tag = secrets.token_hex(3)
    ours_prefix, raw_prefix = f"bench{tag}:", f"benchraw{tag}:"
    client = redis.Redis.from_url(url)
    manager = StorageManager.from_settings(StorageSettings(url=url, backend_options={"key_prefix": ours_prefix}))
    storage = manager.component(Manifest("bench", Access.ADMIN, None))
    try:
        table = run(client, storage, raw_prefix, args.rounds, args.ops)
    finally:
        manager.close()
        for prefix in (ours_prefix, raw_prefix):
            for name in client.scan_iter(match=prefix + "*", count=1000):
                client.delete(name)
        client.close()
    if args.json:
        print(json.dumps(table, indent=2))
        return
    print(f"{'workload':<18}{'raw ops/s':>12}{'ours ops/s':>12}{'ratio':>8}{'target':>8}")
    for name, row in table.items():
        target = "" if row["target"] is None else f"{row['target']:.2f}"
        print(f"{name:<18}{row['raw']:>12,.0f}{row['ours']:>12,.0f}{row['ratio']:>8.2f}{target:>8}")


def raw_redis(client: Any) -> Side:
    """Raw redis-py (bytes keys, prefixed by the caller): a plain ``GET`` / ``SET`` per key, a batch as one
    ``MSET``, keys() a ``SCAN`` of the prefix (unordered, and not exactly-once under concurrent writes)."""

    def get(keys: list[bytes]) -> None:
        read = client.get
        for key in keys:
            read(key)

    def set_(keys: list[bytes], value: bytes) -> None:
        put = client.set
        for key in keys:
            put(key, value)

    def batch(keys: list[bytes], values: list[bytes]) -> None:
        client.mset(dict(zip(keys, values, strict=True)))

    def keys_of(prefix: bytes) -> list[bytes]:
        return list(client.scan_iter(match=prefix + b"*", count=1000))

    return Side(get, set_, batch, keys_of, bytes_keys=True)


def run(client: Any, storage: Any, raw_prefix: str, rounds: int, ops: int) -> dict[str, dict[str, Any]]:
    raw_side = raw_redis(client)
    assert raw_side.batch is not None and raw_side.keys is not None
    raw_read, raw_write = raw_side.get, raw_side.set
    raw_write_batch, raw_keys_of = raw_side.batch, raw_side.keys
    keys = [f"key{i:05}" for i in range(1000)]
    raw_keys = [(raw_prefix + key).encode() for key in keys]
    values = [b"v" * 100, b"w" * 101]
    for key, raw_key in zip(keys, raw_keys, strict=True):
        storage.set(key, values[0])
        client.set(raw_key, values[0])
    names = [keys[i % len(keys)] for i in range(ops)]
    raw_names = [raw_keys[i % len(keys)] for i in range(ops)]
    turn = {"ours": 0, "raw": 0}

    def value(side: str) -> bytes:
        turn[side] += 1
        return values[turn[side] % 2]

    def ours_set() -> int:
        data = value("ours")
        put = storage.set
        for name in names:
            put(name, data)
        return len(names)

    def raw_set() -> int:
        raw_write(raw_names, value("raw"))
        return len(raw_names)

    def ours_get() -> int:
        get = storage.get
        for name in names:
            get(name)
        return len(names)

    def raw_get() -> int:
        raw_read(raw_names)
        return len(raw_names)

    batches = [keys[i : i + BATCH] for i in range(0, len(keys), BATCH)]
    raw_batches = [raw_keys[i : i + BATCH] for i in range(0, len(raw_keys), BATCH)]

    def ours_batch() -> int:
        data = value("ours")
        for batch in batches:
            storage.set_many([(key, data) for key in batch])
        return len(batches)

    def raw_batch() -> int:
        batch, values = raw_write_batch, [value("raw")] * BATCH
        for keys_ in raw_batches:
            batch(keys_, values)
        return len(raw_batches)

    def ours_keys() -> int:
        for _ in range(5):
            storage.keys()
        return 5

    def raw_keys_listing() -> int:
        for _ in range(5):
            raw_keys_of(raw_prefix.encode())
        return 5

    work: dict[str, tuple[Callable[[], int], Callable[[], int]]] = {
        "get": (ours_get, raw_get),
        "set": (ours_set, raw_set),
        "100-key batch": (ours_batch, raw_batch),
        "keys() of 1,000": (ours_keys, raw_keys_listing),
    }
    best: dict[str, dict[str, float]] = {name: {"ours": 0.0, "raw": 0.0} for name in work}
    ratios: dict[str, list[float]] = {name: [] for name in work}
    for index in range(rounds):
        for name, (ours, raw) in work.items():
            speeds = {}
            order = [("ours", ours), ("raw", raw)] if index % 2 == 0 else [("raw", raw), ("ours", ours)]
            for side, function in order:
                started = time.perf_counter()
                count = function()
                speeds[side] = count / (time.perf_counter() - started)
                best[name][side] = max(best[name][side], speeds[side])
            ratios[name].append(speeds["ours"] / speeds["raw"])
    return {
        name: {
            "raw": best[name]["raw"],
            "ours": best[name]["ours"],
            "ratio": statistics.median(ratios[name]),
            "target": TARGETS[name],
        }
        for name in work
    }


if __name__ == "__main__":
    main()
