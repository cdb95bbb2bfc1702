"""ComponentStorage on memory:// against minimalkv's DictStore, interleaved in one run.

ComponentStorage enforces permissions, validates keys and values, and keeps an
exact quota counter; DictStore checks its key pattern and stores. Ratios are
ours/peer in operations per second (>= 1.0 means at least as fast).

    python benchmarks/bench_memory.py [--ops N] [--rounds R]
"""

from __future__ import annotations

import argparse

from _harness import measure, print_table
from minimalkv.memory import DictStore

from airssys_storage import Access, Manifest, StorageManager, StorageSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    ops = args.ops

    manager = StorageManager.from_settings(StorageSettings(url="memory://"))
    store = manager.component(Manifest("bench", Access.READ_WRITE, "100MB"))
    peer = DictStore()
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
        get = peer.get
        for key in keys:
            get(key)
        return ops

    def ours_set() -> int:
        set_ = store.set
        for key in keys:
            set_(key, value)
        return ops

    def peer_set() -> int:
        put = peer.put
        for key in keys:
            put(key, value)
        return ops

    values = [b"y" * 60, b"z" * 68]  # alternate sizes, so every write moves the quota counter
    flip = [0]

    def ours_set_resize() -> int:
        set_ = store.set
        flip[0] ^= 1
        new = values[flip[0]]
        for key in keys:
            set_(key, new)
        return ops

    def peer_set_resize() -> int:
        put = peer.put
        new = values[flip[0]]
        for key in keys:
            put(key, new)
        return ops

    def ours_has() -> int:
        has = store.has
        for key in keys:
            has(key)
        return ops

    def peer_has() -> int:
        for key in keys:
            key in peer  # noqa: B015 - the membership test is the work
        return ops

    rows = [
        ("get (64 B)", measure({"ours": ours_get, "DictStore": peer_get}, args.rounds)),
        ("set (64 B, same size)", measure({"ours": ours_set, "DictStore": peer_set}, args.rounds)),
        ("set (size changes)", measure({"ours": ours_set_resize, "DictStore": peer_set_resize}, args.rounds)),
        ("has", measure({"ours": ours_has, "DictStore": peer_has}, args.rounds)),
    ]
    title = f"memory:// vs minimalkv DictStore, {ops} keys, median of {args.rounds} interleaved rounds"
    print_table(title, rows, "ours", ["DictStore"])
    manager.close()


if __name__ == "__main__":
    main()
