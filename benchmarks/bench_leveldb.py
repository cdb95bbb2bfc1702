"""ComponentStorage on leveldb:// against raw plyvel, measured side by side in one run.

Each round runs every workload on both, back to back, alternating which goes
first; the ratio of a round is ours / raw in operations per second, and the
table reports the median over rounds (robust to a noisy shared machine).
Both databases use the same engine options (snappy, 10 bloom bits, no sync),
so the ratio is the cost of the layer: permission check, key validation and
encoding, namespacing, the exact quota (read old value, counter in the same
write batch) and the locks.

    python benchmarks/bench_leveldb.py [--rounds 7] [--ops 20000] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import plyvel

from airssys_storage import Access, Manifest, StorageManager, StorageSettings

KEYS = 10_000
VALUE = b"v" * 100
BATCH = 100
TARGETS = {
    "get": 0.6,
    "set (value size changes)": 0.45,
    "set (same-size overwrite)": 0.45,
    "100-key batch": 0.4,
    "keys() of 10,000": 0.5,
}


def workloads(db: Any, manager: StorageManager, ops: int) -> dict[str, tuple[Callable[[], int], Callable[[], int]]]:
    """Workload name -> (raw, ours); each callable returns how many operations it did.

    Writes overwrite the prefilled keys. In the "size changes" workloads every
    write changes its key's value size (101 and 102 bytes alternate between
    runs, over a permutation of all keys), so each commit must write the
    usage counter; a same-size overwrite leaves the counter alone.
    """
    rng = random.Random(7)
    names = [f"key{rng.randrange(KEYS):05}" for _ in range(ops)]
    raws = [name.encode() for name in names]
    order = [f"key{i:05}" for i in range(KEYS)]
    rng.shuffle(order)
    raw_order = [key.encode() for key in order]
    batches = [order[i : i + BATCH] for i in range(0, KEYS, BATCH)][: max(1, ops // (BATCH * 10))]
    raw_batches = [[key.encode() for key in batch] for batch in batches]
    listings = max(3, ops // 4000)
    # One value size per run, shared by raw and ours: 101, 102, 101, … bytes.
    sizes = {"raw": 0, "ours": 0}

    def next_value(side: str) -> bytes:
        sizes[side] += 1
        return b"w" * (101 + sizes[side] % 2)

    def raw_get() -> int:
        get = db.get
        for key in raws:
            get(key)
        return len(raws)

    def our_get() -> int:
        get = store.get
        for key in names:
            get(key)
        return len(names)

    def raw_set(value: bytes | None = None) -> int:
        value = value or next_value("raw")
        put = db.put
        for key in raw_order:
            put(key, value)
        return len(raw_order)

    def our_set(value: bytes | None = None) -> int:
        value = value or next_value("ours")
        put = store.set
        for key in order:
            put(key, value)
        return len(order)

    def raw_batch() -> int:
        value = next_value("raw")
        for batch in raw_batches:
            wb = db.write_batch()
            for key in batch:
                wb.put(key, value)
            wb.write()
        return len(raw_batches)

    def our_batch() -> int:
        value = next_value("ours")
        for batch in batches:
            store.set_many([(key, value) for key in batch])
        return len(batches)

    def raw_keys() -> int:
        for _ in range(listings):
            found = list(db.iterator(prefix=b"list/", include_value=False))
        assert len(found) == KEYS
        return listings

    def our_keys() -> int:
        for _ in range(listings):
            found = listing.keys()
        assert len(found) == KEYS
        return listings

    # A separate, write-once data set for listings, so that they do not walk
    # the memtable versions the write workloads pile up.
    store = manager.component(Manifest("bench", Access.ADMIN, "500MB"))
    listing = manager.component(Manifest("listing", Access.ADMIN, "500MB"))
    wb = db.write_batch()
    for i in range(KEYS):
        wb.put(b"list/%05d" % i, VALUE)
    wb.write()
    for start in range(0, KEYS, BATCH):
        listing.set_many({f"{i:05}": VALUE for i in range(start, start + BATCH)})

    return {
        "get": (raw_get, our_get),
        "set (value size changes)": (raw_set, our_set),
        "set (same-size overwrite)": (lambda: raw_set(VALUE), lambda: our_set(VALUE)),
        "100-key batch": (raw_batch, our_batch),
        "keys() of 10,000": (raw_keys, our_keys),
    }


def timed(run: Callable[[], int]) -> float:
    """Operations per second of one run."""
    start = time.perf_counter()
    done = run()
    return done / (time.perf_counter() - start)


def measure(rounds: int, ops: int, options: dict[str, Any]) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="bench-leveldb-") as tmp:
        db = plyvel.DB(str(Path(tmp) / "raw"), create_if_missing=True, bloom_filter_bits=10, compression="snappy")
        manager = StorageManager.from_settings(StorageSettings(url=f"leveldb://{tmp}/ours", backend_options=options))
        try:
            store = manager.component(Manifest("bench", Access.ADMIN, "500MB"))
            wb = db.write_batch()
            for i in range(KEYS):
                wb.put(f"key{i:05}".encode(), VALUE)
            wb.write()
            for start in range(0, KEYS, BATCH):
                store.set_many({f"key{i:05}": VALUE for i in range(start, start + BATCH)})
            cases = workloads(db, manager, ops)
            samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
            for round_ in range(rounds + 1):
                for name, (raw, ours) in cases.items():
                    if round_ % 2:
                        ours_rate, raw_rate = timed(ours), timed(raw)
                    else:
                        raw_rate, ours_rate = timed(raw), timed(ours)
                    if round_:  # round 0 warms caches and is not counted
                        samples[name].append((raw_rate, ours_rate))
        finally:
            manager.close()
            db.close()
    results: dict[str, dict[str, float]] = {}
    for name, pairs in samples.items():
        raw_rate = statistics.median(raw for raw, _ in pairs)
        ours_rate = statistics.median(ours for _, ours in pairs)
        results[name] = {
            "raw_ops_per_s": raw_rate,
            "ours_ops_per_s": ours_rate,
            "ratio": statistics.median(ours / raw for raw, ours in pairs),
            "target": TARGETS[name],
        }
    return results


def table(results: dict[str, dict[str, float]]) -> str:
    lines = [
        "| workload | raw plyvel ops/s | ComponentStorage ops/s | ratio | target |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in results.items():
        verdict = "met" if row["ratio"] >= row["target"] else "**below**"
        lines.append(
            f"| {name} | {row['raw_ops_per_s']:,.0f} | {row['ours_ops_per_s']:,.0f} | "
            f"{row['ratio']:.2f}x | >= {row['target']}x ({verdict}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds (default 7)")
    parser.add_argument("--ops", type=int, default=20_000, help="single-key operations per round (default 20000)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--options", default="{}", help="backend_options as JSON, e.g. '{\"size_cache_keys\": 0}'")
    args = parser.parse_args()
    results = measure(args.rounds, args.ops, json.loads(args.options))
    print(json.dumps(results, indent=2) if args.json else table(results))


if __name__ == "__main__":
    main()
