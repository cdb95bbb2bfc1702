"""The cost of LevelDB's ``verify_checksums`` option on reads, measured side by side.

Two databases with the same data, opened through ``ComponentStorage``: one
with ``verify_checksums = false`` (the default), one with ``true``. Workloads:
``get`` of random existing keys from a data set that fits LevelDB's block
cache and from one that does not, and ``keys()`` of 10,000 keys. Rounds are
interleaved (see ``_harness.py``); the printed ratio is the speed with
checksums relative to without (ops/s), so 0.50x means reads with checksums
take twice as long.

    python benchmarks/bench_leveldb_checksums.py
"""

from __future__ import annotations

import os
import random
import tempfile
from functools import partial

from _harness import measure, print_table

from airssys_storage import Access, ComponentStorage, Manifest, StorageManager, StorageSettings

GETS = 20_000


def _open(path: str, verify: bool, cache: int) -> tuple[StorageManager, ComponentStorage]:
    settings = StorageSettings(
        url=f"leveldb://{path}",
        backend_options={"verify_checksums": verify, "block_cache_size": cache},
    )
    manager = StorageManager.from_settings(settings)
    return manager, manager.component(Manifest("bench", Access.ADMIN, 500 << 20))


def _fill(path: str, keys: int, value_size: int) -> None:
    manager, store = _open(path, False, 8 << 20)
    with manager:
        for start in range(0, keys, 100):
            store.set_many([(f"k{i:08d}", os.urandom(value_size)) for i in range(start, min(keys, start + 100))])


def _reads(store: ComponentStorage, sample: list[str]) -> int:
    get = store.get
    for key in sample:
        get(key)
    return len(sample)


def _listing(store: ComponentStorage) -> int:
    store.keys()
    return 1


def _compare(tmp: str, keys: int, value_size: int, cache: int) -> dict[str, dict[str, float]]:
    """Per workload, seconds per op with and without checksums, on two identical databases."""
    path = os.path.join(tmp, f"db-{keys}-{value_size}")
    copy = path + "-copy"  # LevelDB allows one handle per database: the other side reads a copy
    _fill(path, keys, value_size)
    _fill(copy, keys, value_size)
    sample = [f"k{random.randrange(keys):08d}" for _ in range(GETS)]
    off_manager, off = _open(path, False, cache)
    on_manager, on = _open(copy, True, cache)
    with off_manager, on_manager:
        found = {"get": measure({"checksums": partial(_reads, on, sample), "plain": partial(_reads, off, sample)}, 7)}
        if keys <= 10_000:
            found["keys()"] = measure({"checksums": partial(_listing, on), "plain": partial(_listing, off)}, 7)
    return found


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, keys, value_size, cache in (
            ("10,000 x 100 B (cached)", 10_000, 100, 8 << 20),
            ("200,000 x 100 B, 1 MiB cache", 200_000, 100, 1 << 20),
            ("20,000 x 4 KiB, 1 MiB cache", 20_000, 4096, 1 << 20),
        ):
            for workload, result in _compare(tmp, keys, value_size, cache).items():
                rows.append((f"{workload}, {label}", result))
    title = "LevelDB verify_checksums: µs/op; ours/plain = speed with checksums relative to without"
    print_table(title, rows, ours="checksums", baselines=["plain"])


if __name__ == "__main__":
    main()
