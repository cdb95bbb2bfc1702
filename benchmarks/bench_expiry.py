"""What expiry costs: purge_expired against delete_prefix, and a read of an expiring key against a plain one.

Two of issue 10's speed points, on memory://, SQLite and LevelDB (and any
store given with ``--url``), each backend's ratios measured in one run:

* ``purge_expired()`` of ``--keys`` expired keys (default 10^5) against
  ``delete_prefix()`` of the same keys (same names, same values, no expiry)
  in another component: each round refills both components (untimed) and
  times one call of each, alternating which goes first. The ratio is
  purge's speed over delete_prefix's (target >= 0.5: a sweep at least half as
  fast as a range delete of the same rows).
* ``get`` of an unexpired key in a component whose every key has a ttl
  (an hour) against ``get`` in a component that never used expiry, same
  key names and values, in interleaved rounds timed by CPU time (steadier
  than elapsed time on a shared machine). The ratio is the expiring read's
  cost over the plain read's (target <= 1.1).

Medians of the rounds. Ratios only: the machine is shared and noisy.

    python benchmarks/bench_expiry.py [--keys 100000] [--reads 10000] [--rounds 5]
                                      [--only memory,sqlite,leveldb] [--url URL ...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

from airssys_storage import Access, ComponentStorage, Manifest, StorageManager, StorageSettings

VALUE = b"v" * 64
#: Keys per set_many while filling (the benchmark raises max_batch_ops to it).
FILL_BATCH = 1000
#: A ttl short enough to be past by the time a fill is done, in seconds.
SHORT_TTL = 0.05


def fill(store: ComponentStorage, names: list[str], ttl: float | None) -> None:
    """Write *names* with :data:`VALUE` (and *ttl*) in batches."""
    for start in range(0, len(names), FILL_BATCH):
        store.set_many([(name, VALUE) for name in names[start : start + FILL_BATCH]], ttl=ttl)


def timed(call: Callable[[], int], expected: int) -> float:
    """Seconds one call takes; it must report *expected* keys removed."""
    start = time.perf_counter()
    removed = call()
    elapsed = time.perf_counter() - start
    if removed != expected:
        raise SystemExit(f"removed {removed} keys, expected {expected}")
    return elapsed


def purge_vs_delete_prefix(manager: StorageManager, keys: int, rounds: int) -> float:
    """Median over rounds of delete_prefix time / purge_expired time (purge's speed relative to delete_prefix's)."""
    expiring = manager.component(Manifest("purge", Access.READ_WRITE, None))
    plain = manager.component(Manifest("prefix", Access.READ_WRITE, None))
    names = [f"k{i:07d}" for i in range(keys)]
    ratios = []
    for round_ in range(rounds):
        fill(plain, names, None)
        fill(expiring, names, SHORT_TTL)
        time.sleep(SHORT_TTL * 2)  # every key of the expiring component is past its deadline now
        sides = [
            ("purge", lambda: timed(expiring.purge_expired, keys)),
            ("prefix", lambda: timed(lambda: plain.delete_prefix("k"), keys)),
        ]
        if round_ % 2:
            sides.reverse()
        seconds = {name: run() for name, run in sides}
        ratios.append(seconds["prefix"] / seconds["purge"])
    return statistics.median(ratios)


def expiring_read_vs_plain(manager: StorageManager, reads: int, rounds: int) -> tuple[float, float, float]:
    """(µs per plain get, µs per expiring get, expiring cost / plain cost), interleaved rounds."""
    plain = manager.component(Manifest("plain-read", Access.READ_WRITE, None))
    expiring = manager.component(Manifest("ttl-read", Access.READ_WRITE, None))
    names = [f"r{i:07d}" for i in range(reads)]
    fill(plain, names, None)
    fill(expiring, names, 3600.0)

    def reader(store: ComponentStorage) -> Callable[[], int]:
        def run() -> int:
            get = store.get
            for name in names:
                get(name)
            return reads

        return run

    runs = {"plain": reader(plain), "expiring": reader(expiring)}
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(rounds * 3 + 1):  # reads are quick: more rounds; round 0 warms up
        order = list(runs) if round_ % 2 else list(runs)[::-1]
        for name in order:
            start = time.process_time()  # CPU time: steadier than elapsed time on a shared machine
            done = runs[name]()
            if round_:
                samples[name].append((time.process_time() - start) / done)
    plain_s, expiring_s = (statistics.median(samples[name]) for name in ("plain", "expiring"))
    return plain_s * 1e6, expiring_s * 1e6, expiring_s / plain_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=100_000, help="expired keys purged per round (default 10^5)")
    parser.add_argument("--reads", type=int, default=10_000, help="keys read per read round (default 10^4)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="memory,sqlite,leveldb", help="built-in stores to measure (comma-separated)")
    parser.add_argument("--url", action="append", default=[], help="another store to measure (repeatable)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-expiry-") as tmp:
        builtin = {
            "memory": "memory://",
            "sqlite": f"sqlite:///{tmp}/expiry.db",
            "leveldb": f"leveldb://{tmp}/expiry-leveldb",
        }
        urls = [builtin[name] for name in args.only.split(",") if name] + args.url
        print(f"{args.keys:,} keys purged, {args.reads:,} keys read, median of {args.rounds} rounds")
        header = f"{'store':<34}{'purge/delete_prefix':>21}{'plain get µs':>14}{'ttl get µs':>12}{'ttl/plain':>11}"
        print(header)
        print("-" * len(header))
        for url in urls:
            settings = StorageSettings(url=url, max_batch_ops=FILL_BATCH, max_keys_per_query=max(args.keys, 10_000))
            with StorageManager.from_settings(settings) as manager:
                purge = purge_vs_delete_prefix(manager, args.keys, args.rounds)
                plain, expiring, cost = expiring_read_vs_plain(manager, args.reads, args.rounds)
            name = url.split("://", 1)[0] if url in builtin.values() else url
            print(
                f"{name:<34}{purge:>20.2f}x{plain:>14.2f}{expiring:>12.2f}{cost:>10.2f}x"
                f"   (targets: purge >= 0.5x, ttl/plain <= 1.1x)"
            )


if __name__ == "__main__":
    main()
