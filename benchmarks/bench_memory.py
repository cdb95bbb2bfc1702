"""ComponentStorage on memory:// against minimalkv's DictStore, interleaved in one run.

ComponentStorage enforces permissions, validates keys and values, and keeps an
exact quota counter; DictStore checks its key pattern and stores. Ratios are
ours/peer in operations per second (>= 1.0 means at least as fast). Every
overwrite writes bytes that differ from the value it replaces, and both sides
write the same values.

A second table compares compare_and_swap (each call with the version the
previous write returned) with our plain set (issue 10: >= 0.5x).

A third table is a regression line for listings: ``keys(prefix)`` right after
a write that adds a key, against ``keys(prefix)`` with no write in between, in
a component of ``--big`` keys (default 10^6). Keys are kept ordered as they
are written, so the first listing after an insert must not re-sort the
component (ratio close to 1.0).

    python benchmarks/bench_memory.py [--ops N] [--rounds R] [--big N] [--clock wall|cpu]

``--clock cpu`` times this process's CPU time instead of elapsed time:
steadier when other jobs share the machine (everything here is one thread).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from _harness import Side, measure, print_table
from minimalkv.memory import DictStore

from airssys_storage import Access, ComponentStorage, Manifest, StorageManager, StorageSettings


def raw_dictstore(peer: DictStore) -> Side:
    """minimalkv's DictStore as the raw side: ``get``/``put`` per key, a batch as puts (no atomic batch to use)."""

    def get(keys: list[str]) -> None:
        read = peer.get
        for key in keys:
            read(key)

    def set_(keys: list[str], value: bytes) -> None:
        put = peer.put
        for key in keys:
            put(key, value)

    def batch(keys: list[str], values: list[bytes]) -> None:
        put = peer.put
        for key, value in zip(keys, values, strict=True):
            put(key, value)

    def keys_of(prefix: str) -> list[str]:
        return sorted(peer.keys(prefix))  # ordered, as ours returns them

    def has(keys: list[str]) -> None:
        for key in keys:
            key in peer  # noqa: B015 - the membership test is the work

    return Side(get, set_, batch, keys_of, has=has)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--big", type=int, default=1_000_000, help="keys of the component listed after inserts")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="elapsed (wall) or CPU time")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    ops = args.ops

    manager = StorageManager.from_settings(StorageSettings(url="memory://"))
    store = manager.component(Manifest("bench", Access.READ_WRITE, "100MB"))
    peer = DictStore()
    raw = raw_dictstore(peer)
    keys = [f"user_{i:06d}" for i in range(ops)]
    value = b"x" * 64
    for key in keys:
        store.set(key, value)
        peer.put(key, value)

    def ours_get() -> int:
        get = store.get
        for key in keys:
            get(key)
        return ops

    def peer_get() -> int:
        raw.get(keys)
        return ops

    # Same size, different bytes: a, b, a, … so each write replaces the other value.
    same_size = [b"a" * 64, b"b" * 64]
    turn = {"ours": 0, "DictStore": 0}

    def next_same(side: str) -> bytes:
        turn[side] += 1
        return same_size[turn[side] % 2]

    def ours_set() -> int:
        set_ = store.set
        new = next_same("ours")
        for key in keys:
            set_(key, new)
        return ops

    def peer_set() -> int:
        raw.set(keys, next_same("DictStore"))
        return ops

    values = [b"y" * 60, b"z" * 68]  # alternate sizes, so every write moves the quota counter
    flip = {"ours": 0, "DictStore": 0}

    def ours_set_resize() -> int:
        set_ = store.set
        flip["ours"] ^= 1
        new = values[flip["ours"]]
        for key in keys:
            set_(key, new)
        return ops

    def peer_set_resize() -> int:
        flip["DictStore"] ^= 1
        raw.set(keys, values[flip["DictStore"]])
        return ops

    # Keys never written before, one list per run (warm-up included), built outside the timing.
    fresh = [[f"new{r:03d}_{i:06d}" for i in range(ops)] for r in range(args.rounds + 1)]
    new_lists = {"ours": iter(fresh), "DictStore": iter(fresh)}

    def new_keys(side: str) -> list[str]:
        return next(new_lists[side])

    def ours_insert() -> int:
        set_ = store.set
        for key in new_keys("ours"):
            set_(key, value)
        return ops

    def peer_insert() -> int:
        raw.set(new_keys("DictStore"), value)
        return ops

    def ours_has() -> int:
        has = store.has
        for key in keys:
            has(key)
        return ops

    def peer_has() -> int:
        assert raw.has is not None
        raw.has(keys)
        return ops

    rows = [
        ("get (64 B)", measure({"ours": ours_get, "DictStore": peer_get}, args.rounds, clock)),
        ("set (64 B, same size)", measure({"ours": ours_set, "DictStore": peer_set}, args.rounds, clock)),
        ("set (size changes)", measure({"ours": ours_set_resize, "DictStore": peer_set_resize}, args.rounds, clock)),
        ("set (new key)", measure({"ours": ours_insert, "DictStore": peer_insert}, args.rounds, clock)),
        ("has", measure({"ours": ours_has, "DictStore": peer_has}, args.rounds, clock)),
    ]
    title = f"memory:// vs minimalkv DictStore, {ops} keys, median of {args.rounds} interleaved rounds"
    print_table(title, rows, "ours", ["DictStore"])
    print_table(
        f"compare_and_swap against our plain set (same keys, same-size values; target >= 0.5x), {ops} keys",
        [("compare_and_swap", compare_and_swap_vs_set(store, ops, args.rounds, clock))],
        "compare_and_swap",
        ["set"],
    )
    manager.close()
    listing_after_insert(args.big, args.rounds, clock)


def compare_and_swap_vs_set(
    store: ComponentStorage, ops: int, rounds: int, clock: Callable[[], float]
) -> dict[str, float]:
    """compare_and_swap with the version the previous write returned, against set, on keys of their own."""
    swapped = [f"cas_{i:06d}" for i in range(ops)]
    plain = [f"set_{i:06d}" for i in range(ops)]
    versions = {key: store.set(key, b"a" * 64) for key in swapped}
    for key in plain:
        store.set(key, b"a" * 64)
    same_size = [b"b" * 64, b"a" * 64]
    turn = {"compare_and_swap": 0, "set": 0}

    def swap() -> int:
        turn["compare_and_swap"] += 1
        cas, value = store.compare_and_swap, same_size[turn["compare_and_swap"] % 2]
        for key in swapped:
            versions[key] = cas(key, value, version=versions[key])
        return ops

    def put() -> int:
        turn["set"] += 1
        set_, value = store.set, same_size[turn["set"] % 2]
        for key in plain:
            set_(key, value)
        return ops

    return measure({"compare_and_swap": swap, "set": put}, rounds, clock)


def listing_after_insert(count: int, rounds: int, clock: Callable[[], float], calls: int = 20) -> None:
    """keys(prefix) of 100 keys right after an insert, against the same listing with no write between."""
    manager = StorageManager.from_settings(StorageSettings(url="memory://"))
    store = manager.component(Manifest("big", Access.ADMIN, "500MB"))
    value = b"v" * 16
    for start in range(0, count, 100):
        store.set_many([(f"user_{i:07d}", value) for i in range(start, min(count, start + 100))])
    prefix = "user_00000"  # user_0000000 … user_0000099
    assert len(store.keys(prefix)) == min(count, 100)
    inserted = iter(range(10**9))

    def after_insert() -> int:
        set_, keys = store.set, store.keys
        for _ in range(calls):
            set_(f"new_{next(inserted):09d}", value)  # adds a key every time
            keys(prefix)
        return calls

    def no_write() -> int:
        keys = store.keys
        for _ in range(calls):
            keys(prefix)
        return calls

    result = measure({"insert+keys()": after_insert, "keys()": no_write}, rounds, clock)
    title = f"keys(prefix) of 100 in a component of {count:,} keys: right after an insert vs no write between"
    print_table(title, [("insert, then keys(prefix)", result)], "insert+keys()", ["keys()"])
    manager.close()


if __name__ == "__main__":
    main()
