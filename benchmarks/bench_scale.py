"""How get and set cost grows with the keys of a component, and with 1,000 components in one store.

Per embedded engine (memory, SQLite, LevelDB, LMDB, RocksDB), through
ComponentStorage: a component of 10^3, 10^4 and 10^5 keys (and 10^6 with
``--million``), 64-byte values; at each size the median over rounds of
µs per ``get`` of a random existing key and per ``set`` overwriting one (one
commit each, no fsync per commit, as in bench_backends.py). Then one store
holding 1,000 components of 100 keys each: the same ``get`` and ``set`` on a
random (component, key). The random keys are drawn once, outside the timing.

Every size is a store of its own, all open at once, measured in the same
interleaved rounds (so a load spike does not land on one point only). Only
our side is measured (bench_backends.py has ours against each raw
engine); what matters here is the slope. Numbers from a shared machine are
noisy: compare engines within one run.

    cd /tmp && python /path/to/benchmarks/bench_scale.py [--only memory,sqlite,...] [--rounds 7] [--ops 2000]
        [--million] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from _harness import Workload, measure

from airssys_storage import Access, ComponentStorage, Manifest, StorageManager, StorageSettings

SIZES = (1_000, 10_000, 100_000)
MILLION = 1_000_000
COMPONENTS = 1_000
KEYS_PER_COMPONENT = 100
BATCH = 100
VALUE = b"v" * 64


#: Each engine's store under a directory ``{d}``, and its options: those of bench_backends.py (no fsync per commit).
URLS = {
    "memory": "memory://",
    "sqlite": "sqlite:///{d}/scale.sqlite3",
    "leveldb": "leveldb://{d}/leveldb",
    "lmdb": "lmdb://{d}/lmdb",
    "rocksdb": "rocksdb://{d}/rocksdb",
}
OPTIONS: dict[str, dict[str, Any]] = {"lmdb": {"sync": False, "map_size": "4GiB"}}
ENGINES = tuple(URLS)


def settings_for(name: str, directory: Path) -> StorageSettings:
    """The store of engine *name* under *directory*."""
    return StorageSettings(url=URLS[name].format(d=directory), backend_options=OPTIONS.get(name, {}))


@contextmanager
def opened(name: str) -> Iterator[StorageManager]:
    with tempfile.TemporaryDirectory(prefix=f"bench-scale-{name}-") as tmp:
        manager = StorageManager.from_settings(settings_for(name, Path(tmp)))
        try:
            yield manager
        finally:
            manager.close()


def key(i: int) -> str:
    return f"k{i:08d}"


def grow(store: ComponentStorage, have: int, want: int) -> None:
    """Add keys ``have … want - 1`` to *store*, in batches."""
    for start in range(have, want, BATCH):
        store.set_many([(key(i), VALUE) for i in range(start, min(want, start + BATCH))])


def point_runs(pairs: list[tuple[ComponentStorage, str]]) -> tuple[Workload, Workload]:
    """A get and a set workload over *pairs* (a handle and one of its keys); each returns how many it did."""

    def gets() -> int:
        for store, k in pairs:
            store.get(k)
        return len(pairs)

    values = [os.urandom(64) for _ in range(3)]
    turn = [0]

    def sets() -> int:
        turn[0] += 1
        value = values[turn[0] % 3]  # never the bytes already stored
        for store, k in pairs:
            store.set(k, value)
        return len(pairs)

    return gets, sets


def run_engine(name: str, sizes: tuple[int, ...], ops: int, rounds: int, rng: random.Random) -> dict[str, Any]:
    """One engine's curve (keys -> µs per get/set) and its 1,000-component point.

    Every size is a store of its own, all open at once, and all sizes (and the 1,000-component store) run
    in the same interleaved rounds (``_harness.measure``), so a load spike does not land on one point.
    """
    gets: dict[str, Workload] = {}
    sets: dict[str, Workload] = {}
    with ExitStack() as stack:
        for size in sizes:
            store = stack.enter_context(opened(name)).component(Manifest("scale", Access.ADMIN, "500MB"))
            grow(store, 0, size)  # 10^6 keys: ~80 MB, within the 500 MB a manifest may ask for
            gets[str(size)], sets[str(size)] = point_runs([(store, key(rng.randrange(size))) for _ in range(ops)])
        manager = stack.enter_context(opened(name))
        stores = []
        for c in range(COMPONENTS):
            each = manager.component(Manifest(f"c{c:04d}", Access.ADMIN, None))
            grow(each, 0, KEYS_PER_COMPONENT)
            stores.append(each)
        pairs = [(rng.choice(stores), key(rng.randrange(KEYS_PER_COMPONENT))) for _ in range(ops)]
        gets["components"], sets["components"] = point_runs(pairs)
        gc.collect()
        gc.freeze()  # the filled data out of the collector's way
        try:
            get_s, set_s = measure(gets, rounds), measure(sets, rounds)
        finally:
            gc.unfreeze()
    curve = [{"keys": size, "get_us": get_s[str(size)] * 1e6, "set_us": set_s[str(size)] * 1e6} for size in sizes]
    many = {
        "components": COMPONENTS,
        "keys_per_component": KEYS_PER_COMPONENT,
        "get_us": get_s["components"] * 1e6,
        "set_us": set_s["components"] * 1e6,
    }
    for point in curve:
        print(f"  {name}: {point['keys']:>9,} keys  get {point['get_us']:8.1f} µs  set {point['set_us']:8.1f} µs")
    print(f"  {name}: {COMPONENTS:,} components  get {many['get_us']:8.1f} µs  set {many['set_us']:8.1f} µs")
    return {"curve": curve, "components": many}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(ENGINES), help="comma-separated engines (default: all)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per measurement (median kept)")
    parser.add_argument("--ops", type=int, default=2000, help="gets and sets per round")
    parser.add_argument("--million", action="store_true", help="also 10^6 keys (minutes per engine)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    for name in only:
        if name not in ENGINES:
            parser.error(f"unknown engine {name!r}: choose from {', '.join(ENGINES)}")
    sizes = (*SIZES, MILLION) if args.million else SIZES
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()[0]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"started {started}, {os.cpu_count()} cores, load {load}, Python {platform.python_version()}")
    rng = random.Random(15)
    engines: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in only:
        try:
            engines[name] = run_engine(name, sizes, args.ops, args.rounds, rng)
        except ImportError as error:
            skipped[name] = f"not installed ({error.name or error})"
            print(f"  {name}: skipped, {skipped[name]}")
        sys.stdout.flush()
    if args.json is not None:
        result = {
            "benchmark": "bench_scale",
            "started": started,
            "load": [load_before, os.getloadavg()[0]],
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "sizes": list(sizes),
            "engines": engines,
            "skipped": skipped,
        }
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
