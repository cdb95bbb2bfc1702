"""Side-by-side timing: interleaved rounds, median per-op time, printed as ratios.

Benchmarks print ratios measured in one run; they never assert timings (the
machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from airssys_storage import Access, ComponentStorage, Manifest, StorageManager, StorageSettings

Workload = Callable[[], int]  # runs a batch of operations, returns how many


@dataclass
class Side:
    """What one contender (ours, or an engine's raw client) can do; each workload is built from these.

    Keys are ``str``, or ``bytes`` when *bytes_keys* is set (raw clients handed
    pre-encoded keys, as a caller of the raw library would hold them); the
    benchmark encodes them outside the timing.
    """

    get: Callable[[list[Any]], None]  # read every key
    set: Callable[[list[Any], bytes], None]  # one write (one commit) per key, all of the same value
    batch: Callable[[list[Any], list[bytes]], None] | None = None  # one atomic batch of these pairs
    keys: Callable[[Any], list[Any]] | None = None  # the keys under a prefix
    increment: Callable[[list[Any]], None] | None = None  # add one to every counter
    has: Callable[[list[Any]], None] | None = None  # ask for every key
    bytes_keys: bool = False


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with *prefix* (its last byte plus one; *prefix* not all 0xff)."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def measure(
    contenders: dict[str, Workload],
    rounds: int = 9,
    clock: Callable[[], float] = time.perf_counter,
    samples: dict[str, list[float]] | None = None,
) -> dict[str, float]:
    """Median seconds per operation for each contender, rounds interleaved.

    *clock*: elapsed time by default; ``time.process_time`` (this process's
    CPU time) is steadier on a loaded machine for single-threaded work.
    *samples*, when given, receives every round's seconds per operation of each
    contender (for per-round ratios, see :func:`median_round_ratio`).
    """
    if samples is None:
        samples = {}
    samples.update({name: [] for name in contenders})
    for run in contenders.values():  # warm-up
        run()
    for _ in range(rounds):
        for name, run in contenders.items():
            start = clock()
            ops = run()
            samples[name].append((clock() - start) / ops)
    return {name: statistics.median(values) for name, values in samples.items()}


def median_round_ratio(samples: dict[str, list[float]], ours: str, baseline: str) -> float:
    """Median over rounds of ours/baseline in operations per second, each round's two runs taken back to back.

    Steadier than the ratio of the medians on a loaded machine: a slow spell
    that hits both runs of a round cancels out.
    """
    return statistics.median(b / o for o, b in zip(samples[ours], samples[baseline], strict=True))


def print_table(title: str, rows: Sequence[tuple[str, dict[str, float]]], ours: str, baselines: Sequence[str]) -> None:
    """One row per workload: µs/op of each contender, then ours/baseline in ops/s (higher is better)."""
    names = [ours, *baselines]
    print(f"\n{title}")
    header = f"{'workload':<28}" + "".join(f"{name + ' µs/op':>22}" for name in names)
    header += "".join(f"{'ours/' + name:>16}" for name in baselines)
    print(header)
    print("-" * len(header))
    for workload, result in rows:
        line = f"{workload:<28}" + "".join(f"{result[name] * 1e6:>22.2f}" for name in names)
        line += "".join(f"{format_ratio(result[name] / result[ours]):>15}x" for name in baselines)
        print(line)


def format_ratio(value: float) -> str:
    """Two decimals, or two significant digits below 0.1 (so a 1000x slowdown does not print as 0.00)."""
    return f"{value:.2f}" if value >= 0.1 or value != value else f"{value:.2g}"


# -- ordered key-value engines (bench_leveldb.py, bench_rocksdb.py) ----------------------------


class RawEngine(Protocol):
    """The raw side of an ordered key-value engine's bench: the binding used directly, as fast as it goes."""

    #: The binding's name in the table ("plyvel").
    name: str
    #: The backend's URL scheme ("leveldb").
    scheme: str

    def open(self, path: str) -> Any:
        """A new database at *path* with the backend's default engine options (``get``, ``put``, ``close``)."""

    def writer(self, db: Any) -> tuple[Callable[[], Any], Callable[[Any], None]]:
        """``(new write batch, write it)`` for *db*, both engine calls (no Python frame in between)."""

    def list_keys(self, db: Any, start: bytes, stop: bytes) -> list[bytes]:
        """Every key with ``start <= key < stop``, without values."""


KEYS = 10_000
#: Keys of the listing and of the counters (whatever --keys says).
LISTED = 10_000
VALUE = b"v" * 100
BATCH = 100
TARGETS = {
    "get": 0.6,
    "set (value size changes)": 0.45,
    "set (same-size overwrite)": 0.45,
    "100-key batch": 0.4,
    "keys() of 10,000": 0.5,
    "increment": 0.5,
    "compare_and_swap": 0.225,  # 0.5 x our set's 0.45: the "CAS >= 0.5x a plain set"
}


Run = Callable[[], int]
#: One side of a workload: what reads its input just before the timing, and the timed run.
KVSide = tuple[Callable[[], object], Run]


def workloads(
    raw: RawEngine, db: Any, floor_db: Any, manager: StorageManager, ops: int, keys: int
) -> dict[str, dict[str, KVSide]]:
    """Workload name -> side ("raw", "ours", maybe "raw+counter") -> (input toucher, run returning its operations).

    "raw+counter" is the raw engine doing what an exact quota needs at the least,
    without a cache: read the old value, then write the data and a 16-byte
    usage counter in one WriteBatch. It shows how much of the gap is the
    contract itself rather than the layer. It writes to its own database
    *floor_db*, so that each database takes the same write traffic (and
    background compaction work) as ours.

    Each write workload overwrites its own prefilled keys, so one cannot
    change the value sizes another relies on. In the "size changes" workloads
    every write changes its key's value size (101 and 102 bytes alternate
    between runs, over a permutation of the keys), so each commit must write
    the usage counter; the same-size workload always writes the prefilled
    100-byte size, which leaves the counter alone, but with other bytes than
    the value it replaces (two 100-byte values alternate between runs). Every
    side writes the same values. Both sides get their input
    ready-made (raw: bytes keys; ours: str keys, and for batches the lists of
    pairs) so that no side builds arguments inside the timed region.
    """
    rng = random.Random(7)
    names = [f"key{rng.randrange(keys):07}" for _ in range(ops)]
    raws = [name.encode() for name in names]

    def shuffled(tag: str, count: int = keys) -> tuple[list[str], list[bytes]]:
        # At most *ops* of them per run, so that a run takes the same time whatever --keys says.
        names = [f"{tag}{i:07}" for i in range(count)]
        rng.shuffle(names)
        return names, [name.encode() for name in names]

    order, raw_order = shuffled("key")
    same_order, raw_same_order = shuffled("same")
    batch_keys, raw_batch_keys = shuffled("batch")
    count = max(1, ops // (BATCH * 10))
    batches = [batch_keys[i : i + BATCH] for i in range(0, len(batch_keys), BATCH)][:count]
    raw_batches = [raw_batch_keys[i : i + BATCH] for i in range(0, len(raw_batch_keys), BATCH)][:count]
    counters, raw_counters = shuffled("ctr", LISTED)
    cas_order, raw_cas_order = shuffled("cas", LISTED)
    listings = max(3, ops // 4000)
    # One value size per run, shared by raw and ours: 101, 102, 101, … bytes.
    sizes = {"raw": 0, "ours": 0, "raw+counter": 0}
    values = [b"w" * 101, b"w" * 102]
    pairs = {value: [[(key, value) for key in batch] for batch in batches] for value in values}

    def next_value(side: str) -> bytes:
        sizes[side] += 1
        return values[sizes[side] % 2]

    # Same size as the prefilled VALUE, never its bytes nor the last run's: 100 x "u", 100 x "w", … per side.
    # (Each workload and side alternates on its own: a shared turn would hand one the same value every run.)
    turns = {side: 0 for side in ("raw", "ours", "raw+counter", "cas raw", "cas ours")}
    same_size = [b"w" * len(VALUE), b"u" * len(VALUE)]

    def next_same(side: str) -> bytes:
        turns[side] += 1
        return same_size[turns[side] % 2]

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

    def raw_set(keys: list[bytes], value: bytes) -> int:
        put = db.put
        for key in keys:
            put(key, value)
        return len(keys)

    def our_set(keys: list[str], value: bytes) -> int:
        put = store.set
        for key in keys:
            put(key, value)
        return len(keys)

    counter_key = b"\x00counter"
    pack = struct.Struct("<QQ").pack

    def floor_set(keys: list[bytes], value: bytes) -> int:
        get, new_batch, write = floor_db.get, *raw.writer(floor_db)
        for used, key in enumerate(keys):
            get(key)
            batch = new_batch()
            batch.put(key, value)
            batch.put(counter_key, pack(used, used))
            write(batch)
        return len(keys)

    def floor_batch() -> int:
        value = next_value("raw+counter")
        get, new_batch, write = floor_db.get, *raw.writer(floor_db)
        for used, batch in enumerate(raw_batches):
            wb = new_batch()
            for key in batch:
                get(key)
                wb.put(key, value)
            wb.put(counter_key, pack(used, used))
            write(wb)
        return len(raw_batches)

    def raw_batch() -> int:
        value = next_value("raw")
        new_batch, write = raw.writer(db)
        for batch in raw_batches:
            wb = new_batch()
            for key in batch:
                wb.put(key, value)
            write(wb)
        return len(raw_batches)

    def our_batch() -> int:
        set_many = store.set_many
        for batch_pairs in pairs[next_value("ours")]:
            set_many(batch_pairs)
        return len(batches)

    list_keys = raw.list_keys

    def raw_keys() -> int:
        for _ in range(listings):
            found = list_keys(db, b"list/", b"list0")
        assert len(found) == LISTED
        return listings

    def our_keys() -> int:
        for _ in range(listings):
            found = listing.keys()
        assert len(found) == LISTED
        return listings

    lock = threading.Lock()

    def raw_increment() -> int:
        # The least an exact atomic increment takes on the raw engine: read, add, write, under a lock.
        get, put = db.get, db.put
        for key in raw_counters:
            with lock:
                put(key, b"%d" % (int(get(key)) + 1))
        return len(raw_counters)

    def our_increment() -> int:
        increment = store.increment
        for key in counters:
            increment(key)
        return len(counters)

    versions = dict.fromkeys(cas_order, 1)  # the first fill wrote version 1 of every key

    def our_cas() -> int:
        swap, value = store.compare_and_swap, next_same("cas ours")
        for key in cas_order:
            versions[key] = swap(key, value, version=versions[key])
        return len(cas_order)

    store = manager.component(Manifest("bench", Access.ADMIN, "500MB"))
    # A separate, write-once data set for listings, so that they do not walk
    # the memtable versions the write workloads pile up.
    listing = manager.component(Manifest("listing", Access.ADMIN, "500MB"))
    for names_ in (order, same_order, batch_keys, cas_order):
        fill(raw, (db, floor_db), store, names_, "", VALUE)
    fill(raw, (db,), store, counters, "", b"0")
    fill(raw, (db,), listing, [f"{i:05}" for i in range(LISTED)], "list/", VALUE)
    # The timed runs overwrite at most *ops* keys each (a sample of the --keys filled), like the reads.
    # Each timed run overwrites the next *ops* keys of the --keys filled (cycling), so that with
    # many keys an overwrite meets a row the cache has not seen, as in a large store.
    windows = {
        (name, side): Windows(names_, ops)
        for name, names_ in (("size", order), ("same", same_order))
        for side in ("ours", "raw", "raw+counter")
    }
    raw_windows = {
        (name, side): Windows(names_, ops)
        for name, names_ in (("size", raw_order), ("same", raw_same_order))
        for side in ("raw", "raw+counter")
    }

    # Joining reads every key's characters or bytes (and, for pairs, every tuple).
    def touch_raw(keys: list[bytes]) -> Callable[[], object]:
        return lambda: b"".join(keys)

    def touch_ours(keys: list[str]) -> Callable[[], object]:
        return lambda: "".join(keys)

    raw_batch_keys = [key for batch in raw_batches for key in batch]
    batch_pairs = [pair for value in values for batch in pairs[value] for pair in batch]

    def touch_pairs() -> object:
        return "".join(key for key, _ in batch_pairs)

    def nothing() -> None:
        pass

    return {
        "get": {"raw": (touch_raw(raws), raw_get), "ours": (touch_ours(names), our_get)},
        "set (value size changes)": {
            "raw": (
                raw_windows["size", "raw"].touch,
                lambda: raw_set(raw_windows["size", "raw"].next(), next_value("raw")),
            ),
            "ours": (
                windows["size", "ours"].touch,
                lambda: our_set(windows["size", "ours"].next(), next_value("ours")),
            ),
            "raw+counter": (
                raw_windows["size", "raw+counter"].touch,
                lambda: floor_set(raw_windows["size", "raw+counter"].next(), next_value("raw+counter")),
            ),
        },
        "set (same-size overwrite)": {
            "raw": (
                raw_windows["same", "raw"].touch,
                lambda: raw_set(raw_windows["same", "raw"].next(), next_same("raw")),
            ),
            "ours": (windows["same", "ours"].touch, lambda: our_set(windows["same", "ours"].next(), next_same("ours"))),
            "raw+counter": (
                raw_windows["same", "raw+counter"].touch,
                lambda: floor_set(raw_windows["same", "raw+counter"].next(), next_same("raw+counter")),
            ),
        },
        "100-key batch": {
            "raw": (touch_raw(raw_batch_keys), raw_batch),
            "ours": (touch_pairs, our_batch),
            "raw+counter": (touch_raw(raw_batch_keys), floor_batch),
        },
        "keys() of 10,000": {"raw": (nothing, raw_keys), "ours": (nothing, our_keys)},
        "increment": {"raw": (touch_raw(raw_counters), raw_increment), "ours": (touch_ours(counters), our_increment)},
        "compare_and_swap": {
            "raw": (touch_raw(raw_cas_order), lambda: raw_set(raw_cas_order, next_same("cas raw"))),
            "ours": (touch_ours(cas_order), our_cas),
        },
    }


class Windows:
    """Consecutive slices of *ops* names, handed out in turn (cycling): what one timed run overwrites."""

    def __init__(self, names: list[Any], ops: int) -> None:
        self.slices = [names[i : i + ops] for i in range(0, len(names), ops)]
        self.turn = 0

    def touch(self) -> object:
        """Read the next slice's names (outside the timing), as a caller holding its arguments would have them."""
        upcoming = self.slices[self.turn % len(self.slices)]
        return b"".join(upcoming) if upcoming and isinstance(upcoming[0], bytes) else "".join(upcoming)

    def next(self) -> list[Any]:
        upcoming: list[Any] = self.slices[self.turn % len(self.slices)]
        self.turn += 1
        return upcoming


def fill(
    raw: RawEngine, dbs: tuple[Any, ...], store: ComponentStorage, keys: list[str], raw_prefix: str, value: bytes
) -> None:
    """Write *keys* with *value* to *store* and the raw databases (under *raw_prefix*)."""
    for start in range(0, len(keys), BATCH):
        chunk = keys[start : start + BATCH]
        for db in dbs:
            new_batch, write = raw.writer(db)
            wb = new_batch()
            for key in chunk:
                wb.put((raw_prefix + key).encode(), value)
            write(wb)
        store.set_many(dict.fromkeys(chunk, value))


CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}


def timed(side: KVSide, clock: Callable[[], float]) -> float:
    """Operations per second of one run."""
    touch, run = side
    touch()
    start = clock()
    done = run()
    return done / (clock() - start)


def measure_kv(
    raw: RawEngine, rounds: int, ops: int, keys: int, options: dict[str, Any], clock: Callable[[], float]
) -> dict[str, dict[str, float]]:
    """Best ops/s of each side of every workload, and their ratios (rounds interleaved, sides rotated)."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{raw.scheme}-") as tmp:
        db, floor_db = (raw.open(str(Path(tmp) / name)) for name in ("raw", "floor"))
        url = f"{raw.scheme}://{tmp}/ours"
        manager = StorageManager.from_settings(StorageSettings(url=url, backend_options=options))
        try:
            cases = workloads(raw, db, floor_db, manager, ops, keys)
            samples = {name: {side: list[float]() for side in runs} for name, runs in cases.items()}
            for round_ in range(rounds + 1):
                for name, runs in cases.items():
                    sides = list(runs)
                    shift = round_ % len(sides)  # rotate who goes first
                    for side in sides[shift:] + sides[:shift]:
                        rate = timed(runs[side], clock)
                        if round_:  # round 0 warms caches and is not counted
                            samples[name][side].append(rate)
        finally:
            manager.close()
            db.close()
            floor_db.close()
    results: dict[str, dict[str, float]] = {}
    for name, rates in samples.items():
        # Interference from other processes only ever slows a run down, so the
        # best run of each side is the steadiest estimate of its speed; the
        # median of the per-round ratios is shown beside it as a cross-check.
        best = {side: max(values) for side, values in rates.items()}
        row = {
            "raw_ops_per_s": best["raw"],
            "ours_ops_per_s": best["ours"],
            "ratio": best["ours"] / best["raw"],
            "median_round_ratio": statistics.median(o / r for r, o in zip(rates["raw"], rates["ours"], strict=True)),
            "target": TARGETS[name],
        }
        if "raw+counter" in best:
            row["raw_with_counter_ratio"] = best["raw+counter"] / best["raw"]
        results[name] = row
    return results


def table(raw: RawEngine, results: dict[str, dict[str, float]]) -> str:
    """The results as a Markdown table."""
    lines = [
        f"| workload | raw {raw.name} ops/s | ComponentStorage ops/s | ratio (best runs) | median round ratio "
        f"| target | raw {raw.name} + counter (ratio) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in results.items():
        verdict = "met" if row["ratio"] >= row["target"] else "**below**"
        floor = f"{row['raw_with_counter_ratio']:.2f}x" if "raw_with_counter_ratio" in row else "-"
        lines.append(
            f"| {name} | {row['raw_ops_per_s']:,.0f} | {row['ours_ops_per_s']:,.0f} | {row['ratio']:.2f}x | "
            f"{row['median_round_ratio']:.2f}x | >= {row['target']}x ({verdict}) | {floor} |"
        )
    return "\n".join(lines)


def kv_main(raw: RawEngine, description: str) -> None:
    """The command line of an ordered key-value engine's bench (*description*: its module docs)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="measured rounds (default 15)")
    parser.add_argument("--ops", type=int, default=20_000, help="single-key operations per round (default 20000)")
    parser.add_argument("--keys", type=int, default=KEYS, help=f"keys per write workload (default {KEYS})")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="cpu: this process's CPU time, all threads (steadier on a shared machine); wall: elapsed time",
    )
    parser.add_argument("--options", default="{}", help="backend_options as JSON, e.g. '{\"size_cache_keys\": 0}'")
    args = parser.parse_args()
    results = measure_kv(raw, args.rounds, args.ops, args.keys, json.loads(args.options), CLOCKS[args.clock])
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{args.rounds} interleaved rounds, {args.keys:,} keys per write workload, {args.clock} clock")
        print(table(raw, results))
        cas = results["compare_and_swap"]["ours_ops_per_s"] / results["set (same-size overwrite)"]["ours_ops_per_s"]
        print(f"compare_and_swap / our same-size set: {cas:.2f}x (target >= 0.5x)")
