"""Every backend side by side: ComponentStorage against each engine's raw client, in one table.

Per engine, four workloads, each as our median µs per operation and the
median over rounds of ours/raw in operations per second, each round's two
runs back to back (>= 1.0 means at least as fast as the raw client):

* ``get``: read a 64-byte value;
* ``set``: overwrite a 64-byte value with other bytes of the same size (the
  values rotate through three random ones, so no write stores the bytes it
  replaces; both sides write the same bytes);
* ``100-key batch``: ``set_many`` of 100 keys (raw: the engine's own batch —
  a WriteBatch, one write transaction, ``executemany`` in one transaction,
  ``MSET``; DictStore has none, so 100 puts); µs per batch;
* ``keys() of 10,000``: the 10,000 keys under one prefix, in order (raw: the
  engine's prefix walk; Redis: ``SCAN MATCH prefix*``, unordered); µs per listing.

The raw sides are the per-backend benchmarks' own (``bench_memory.raw_dictstore``,
``bench_sql.open_raw_sqlite`` / ``open_raw_postgresql`` / ``open_raw_mariadb``,
``bench_leveldb.Plyvel``, ``bench_rocksdb.Rocksdict``,
``bench_lmdb.raw_lmdb``, ``bench_redis.raw_redis``), with the same engine
settings: no fsync per commit on the embedded engines (SQLite WAL with
synchronous=NORMAL, LevelDB and RocksDB without sync, LMDB ``sync=False``),
the servers as configured. Ours adds permission checks, key and value
validation, the exact quota counter, versions and expiry in the same commit.

All engines are open at once, and for each workload the contenders of every
engine (ours, then raw) run in the same interleaved rounds
(``_harness.measure``), so every column shares one noise level; the data
filled in is frozen out of the garbage collector's way (``gc.freeze``) so that
its pauses do not land on whichever run allocates. A server that
does not answer, or an engine whose library is not installed, is skipped with
a note.

    cd /tmp && python /path/to/benchmarks/bench_backends.py [--rounds 9] [--ops 5000] [--server-ops 500]
        [--only memory,sqlite,...] [--markdown] [--postgresql URL] [--mariadb URL] [--redis URL] [--json PATH]

``--json PATH`` also writes the results for ``benchmarks/plot.py``: the machine, and per workload and
contender every round's seconds per operation (a batch counts as one operation, a listing as one).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _harness import RawEngine, Side, Workload, format_ratio, measure, median_round_ratio, prefix_end

from airssys_storage import StorageManager

ENGINES = ("memory", "sqlite", "leveldb", "rocksdb", "lmdb", "postgresql", "mariadb", "redis")
WORKLOADS = ("get", "set", "100-key batch", "keys() of 10,000")
SCAN_KEYS = 10_000
BATCH = 100
VALUE = b"r" * 64


@dataclass
class Engine:
    """One engine's two contenders, opened and filled."""

    name: str
    raw_client: str  # what the raw side is, for the table
    ours: Side
    raw: Side
    raw_key: Callable[[str], Any]  # a key as the raw side takes it
    ops: int  # point operations per run
    batches: int  # batches per run
    listings: int  # keys() calls per run
    prepare: list[Callable[[], object]] = field(default_factory=list)  # run once both sides are filled


def _raw_kv(engine: RawEngine, db: Any) -> Side:
    """An ordered key-value engine used directly (bytes keys): get/put per key, a batch as one write batch."""
    new_batch, write = engine.writer(db)

    def get(keys: list[bytes]) -> None:
        read = db.get
        for key in keys:
            read(key)

    def set_(keys: list[bytes], value: bytes) -> None:
        put = db.put
        for key in keys:
            put(key, value)

    def batch(keys: list[bytes], values: list[bytes]) -> None:
        wb = new_batch()
        for key, value in zip(keys, values, strict=True):
            wb.put(key, value)
        write(wb)

    def keys_of(prefix: bytes) -> list[bytes]:
        return engine.list_keys(db, prefix, prefix_end(prefix))

    return Side(get, set_, batch, keys_of, bytes_keys=True)


def _ours(manager: StorageManager) -> Side:
    from bench_sql import NS, ours  # the ComponentStorage side of bench_sql

    from airssys_storage import Access, Manifest

    return ours(manager.component(Manifest(NS, Access.ADMIN, "500MB")))


def _open(
    name: str, directory: Path, args: argparse.Namespace, stack: ExitStack, prepare: list[Callable[[], object]]
) -> tuple[Side, Side, str, Any]:
    """(ours, raw, raw client's name, raw key prefix) of engine *name*; what to close goes on *stack*,
    what to run once both sides are filled on *prepare*."""
    from airssys_storage import StorageSettings

    def manager(url: str, options: dict[str, Any] | None = None) -> StorageManager:
        opened = StorageManager.from_settings(StorageSettings(url=url, backend_options=options or {}))
        stack.callback(opened.close)
        return opened

    prefix = f"xbench{os.getpid()}_"
    if name == "memory":
        from bench_memory import raw_dictstore
        from minimalkv.memory import DictStore

        return _ours(manager("memory://")), raw_dictstore(DictStore()), "minimalkv DictStore", ""
    if name == "sqlite":
        from bench_sql import open_raw_sqlite

        sqlite, raw = open_raw_sqlite(directory / "raw.sqlite3")
        stack.callback(sqlite.close)
        return _ours(manager(f"sqlite:///{directory}/ours.sqlite3")), raw, "sqlite3", ""
    if name in ("leveldb", "rocksdb"):
        # The raw engines of bench_leveldb.py / bench_rocksdb.py, opened with the backend's default options.
        from bench_leveldb import Plyvel
        from bench_rocksdb import Rocksdict

        engine: RawEngine = Plyvel() if name == "leveldb" else Rocksdict()
        db = engine.open(str(directory / f"raw-{name}"))
        stack.callback(db.close)
        return _ours(manager(f"{name}://{directory}/{name}")), _raw_kv(engine, db), engine.name, ""
    if name == "lmdb":
        from bench_lmdb import open_ours, open_raw, raw_lmdb

        env = open_raw(str(directory / "raw-lmdb"), False)
        stack.callback(env.close)
        ours_manager = open_ours(str(directory / "lmdb"), False)
        stack.callback(ours_manager.close)
        return _ours(ours_manager), raw_lmdb(env), "py-lmdb", ""
    if name == "postgresql":
        from bench_sql import analyze_postgresql, drop_store, open_raw_postgresql

        ours = _ours(manager(args.postgresql, {"table_prefix": prefix}))
        psycopg, raw, drop = open_raw_postgresql(args.postgresql, prefix)
        stack.callback(psycopg.close)
        stack.callback(drop_store, psycopg, prefix)
        stack.callback(drop)
        prepare.append(lambda: analyze_postgresql(psycopg, prefix))
        return ours, raw, "psycopg 3", ""
    if name == "mariadb":
        from bench_sql import open_raw_mariadb

        ours = _ours(manager(args.mariadb, {"table_prefix": prefix}))
        pymysql, raw, drop = open_raw_mariadb(args.mariadb, prefix)
        stack.callback(pymysql.close)
        stack.callback(drop)
        return ours, raw, "PyMySQL", ""
    if name == "redis":
        import redis
        from bench_redis import raw_redis

        tag = secrets.token_hex(3)
        ours_prefix, raw_prefix = f"xbench{tag}:", f"xbenchraw{tag}:"
        client = redis.Redis.from_url(args.redis)
        client.ping()
        stack.callback(client.close)

        def drop() -> None:
            for each in (ours_prefix, raw_prefix):
                for key in client.scan_iter(match=each + "*", count=1000):
                    client.delete(key)

        stack.callback(drop)
        ours = _ours(manager(args.redis, {"key_prefix": ours_prefix}))
        return ours, raw_redis(client), "redis-py", raw_prefix
    raise ValueError(f"unknown engine {name!r}: one of {', '.join(ENGINES)}")


def _encoder(prefix: str) -> Callable[[str], bytes]:
    """A key as a raw client taking bytes gets it: *prefix* + key, UTF-8."""
    return lambda key: (prefix + key).encode()


def _fill(side: Side, keys: list[Any]) -> None:
    assert side.batch is not None
    for start in range(0, len(keys), BATCH):
        chunk = keys[start : start + BATCH]
        side.batch(chunk, [VALUE] * len(chunk))


def _workloads(engine: Engine) -> dict[str, dict[str, Workload]]:
    """Workload -> {"name ours": run, "name raw": run}; every run returns the operations it did."""
    from bench_sql import Values, keyset

    reads = keyset(engine.ops, "user_")
    same = keyset(engine.ops, "same_")
    batch_keys = keyset(engine.batches * BATCH, "batch_")
    runs: dict[str, dict[str, Workload]] = {name: {} for name in WORKLOADS}
    for label, side in (("ours", engine.ours), ("raw", engine.raw)):
        key = engine.raw_key if label == "raw" else str
        get_keys, set_keys = [key(k) for k in reads], [key(k) for k in same]
        chunks = [[key(k) for k in batch_keys[i : i + BATCH]] for i in range(0, len(batch_keys), BATCH)]
        listed = [key(k) for k in keyset(SCAN_KEYS, "scan_")]
        for keys in (get_keys, set_keys, [k for chunk in chunks for k in chunk], listed):
            _fill(side, keys)
        scan = key("scan_")
        runs["get"][f"{engine.name} {label}"] = _point(side.get, get_keys)
        runs["set"][f"{engine.name} {label}"] = _writes(side, set_keys, Values((64,), 1))
        runs["100-key batch"][f"{engine.name} {label}"] = _batches(side, chunks, Values((64,), 2))
        runs["keys() of 10,000"][f"{engine.name} {label}"] = _listing(side, scan, engine.listings)
    for step in engine.prepare:
        step()
    return runs


def _point(read: Callable[[list[Any]], None], keys: list[Any]) -> Workload:
    def run() -> int:
        read(keys)
        return len(keys)

    return run


def _writes(side: Side, keys: list[Any], values: Any) -> Workload:
    write = side.set

    def run() -> int:
        write(keys, values.next())
        return len(keys)

    return run


def _batches(side: Side, chunks: list[list[Any]], values: Any) -> Workload:
    batch = side.batch
    assert batch is not None

    def run() -> int:
        new = values.next_many(BATCH)
        for chunk in chunks:
            batch(chunk, new)
        return len(chunks)

    return run


def _listing(side: Side, prefix: Any, listings: int) -> Workload:
    keys_of = side.keys
    assert keys_of is not None

    def run() -> int:
        for _ in range(listings):
            found = keys_of(prefix)
        assert len(found) == SCAN_KEYS, f"listed {len(found)} keys, expected {SCAN_KEYS}"
        return listings

    return run


@contextmanager
def opened(args: argparse.Namespace, skipped: dict[str, str]) -> Iterator[list[Engine]]:
    """The engines of ``--only``, opened and filled; those that cannot open are put in *skipped* with why."""
    servers = {"postgresql", "mariadb", "redis"}
    with tempfile.TemporaryDirectory(prefix="bench-backends-") as tmp, ExitStack() as stack:
        engines = []
        for name in args.only:
            directory = Path(tmp) / name
            directory.mkdir()
            inner = ExitStack()
            try:
                prepare: list[Callable[[], object]] = []
                ours, raw, client, raw_prefix = _open(name, directory, args, inner, prepare)
            except ImportError as error:
                inner.close()
                skipped[name] = f"not installed ({error.name or error})"
                continue
            except Exception as error:  # a server that does not answer (or refuses us): skip it, say why
                inner.close()
                if name not in servers:
                    raise
                skipped[name] = f"cannot be used ({type(error).__name__}: {str(error).splitlines()[0][:200]})"
                continue
            stack.enter_context(inner)
            raw_key = _encoder(raw_prefix) if raw.bytes_keys else str
            # Every run long enough (milliseconds) that a scheduler tick does not decide it.
            scale = 10 if name == "memory" else 1
            ops, batches, listings = (args.server_ops, 4, 1) if name in servers else (args.ops * scale, 20, 2 * scale)
            engines.append(Engine(name, client, ours, raw, raw_key, ops, batches, listings, prepare))
        yield engines


def run(args: argparse.Namespace) -> tuple[dict[str, dict[str, list[float]]], list[Engine], dict[str, str]]:
    """Workload -> contender -> seconds per operation of each round, the engines measured, and the skipped ones."""
    skipped: dict[str, str] = {}
    results: dict[str, dict[str, list[float]]] = {}
    with opened(args, skipped) as engines:
        per_engine = [_workloads(engine) for engine in engines]
        gc.collect()
        gc.freeze()  # the filled data out of the collector's way: its pauses land on whichever run allocates
        for workload in WORKLOADS:
            contenders = {name: work for runs in per_engine for name, work in runs[workload].items()}
            results[workload] = {}
            measure(contenders, args.rounds, samples=results[workload])
    return results, engines, skipped


def _cell(samples: dict[str, list[float]], engine: str) -> str:
    """Our median µs per operation, and the median of the per-round ratios ours/raw in operations per second."""
    ours = statistics.median(samples[f"{engine} ours"])
    ratio = median_round_ratio(samples, f"{engine} ours", f"{engine} raw")
    return f"{ours * 1e6:,.1f} ({format_ratio(ratio)}x)"


def render(
    results: dict[str, dict[str, list[float]]], engines: list[Engine], skipped: dict[str, str], markdown: bool
) -> str:
    header = ["backend", "raw client"] + [f"{w} µs (ours/raw)" for w in WORKLOADS]
    rows = []
    for engine in engines:
        cells = [engine.name, engine.raw_client]
        for workload in WORKLOADS:
            cells.append(_cell(results[workload], engine.name))
        rows.append(cells)
    lines = []
    if markdown:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|---|---|" + "---:|" * len(WORKLOADS))
        lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    else:
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

        def line(cells: list[str]) -> str:  # names left, numbers right
            pairs = enumerate(zip(cells, widths, strict=True))
            return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in pairs)

        lines.append(line(header))
        lines.append("-" * len(lines[0]))
        lines += [line(cells) for cells in rows]
    for name, why in skipped.items():
        lines.append(f"\n{name}: skipped, {why}" if not markdown else f"\n*{name}: skipped, {why}.*")
    return "\n".join(lines)


def machine() -> str:
    """Date, cores, load averages and Python: what a reader needs to weigh the numbers."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()} with {os.cpu_count()} cores, "
        f"load average {load} (1, 5, 15 min), Python {platform.python_version()}"
    )


def to_json(
    results: dict[str, dict[str, list[float]]],
    engines: list[Engine],
    skipped: dict[str, str],
    started: str,
    load: list[float],
) -> dict[str, Any]:
    """The run as JSON for ``benchmarks/plot.py``: per engine and workload, ours and raw in µs per operation.

    *started*: when (UTC); *load*: the 1-minute load average before and after.
    """
    rows: dict[str, Any] = {}
    for engine in engines:
        per: dict[str, Any] = {}
        for workload in WORKLOADS:
            samples = results[workload]
            ours, raw = samples[f"{engine.name} ours"], samples[f"{engine.name} raw"]
            per[workload] = {
                "ours_us": statistics.median(ours) * 1e6,
                "raw_us": statistics.median(raw) * 1e6,
                "ratio": median_round_ratio(samples, f"{engine.name} ours", f"{engine.name} raw"),
                "ours_rounds_us": [s * 1e6 for s in ours],
                "raw_rounds_us": [s * 1e6 for s in raw],
            }
        rows[engine.name] = {"raw_client": engine.raw_client, "workloads": per}
    return {
        "benchmark": "bench_backends",
        "started": started,
        "load": load,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "workloads": list(WORKLOADS),
        "engines": rows,
        "skipped": skipped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (median kept)")
    parser.add_argument("--ops", type=int, default=5000, help="gets and sets per run, embedded engines (memory: x10)")
    parser.add_argument("--server-ops", type=int, default=500, help="gets and sets per run, servers")
    parser.add_argument("--only", default=",".join(ENGINES), help="comma-separated engines (default: all)")
    parser.add_argument("--markdown", action="store_true", help="print the table in Markdown")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--postgresql", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--mariadb", default="mysql+pymysql://root@127.0.0.1:3306/test")
    parser.add_argument("--redis", default=None, help="default: AIRSSYS_STORAGE_TEST_REDIS_URL or database 13")
    args = parser.parse_args()
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    for name in args.only:
        if name not in ENGINES:
            parser.error(f"unknown engine {name!r}: choose from {', '.join(ENGINES)}")
    if args.redis is None:
        from bench_redis import DEFAULT_URL

        args.redis = os.environ.get("AIRSSYS_STORAGE_TEST_REDIS_URL") or DEFAULT_URL
    before = machine()
    started, load_before = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.getloadavg()[0]
    results, engines, skipped = run(args)
    print(f"{len(engines)} engines, median of {args.rounds} interleaved rounds; started {before}")
    print(f"finished: load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
    print(render(results, engines, skipped, args.markdown))
    if args.json is not None:
        found = to_json(results, engines, skipped, started, [load_before, os.getloadavg()[0]])
        args.json.write_text(json.dumps(found, indent=1) + "\n")
        print(f"\nwrote {args.json}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
