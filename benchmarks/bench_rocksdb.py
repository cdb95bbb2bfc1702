"""ComponentStorage on rocksdb:// against raw rocksdict, measured side by side in one run.

Each round runs every workload on both, back to back, alternating which goes
first. The table reports each side's best run (ops/s), their ratio, and the
median over rounds of the per-round ratio ours / raw as a cross-check.
Every database uses the same engine options (the backend's defaults: LZ4, Zstandard
on the last level, 10 bloom bits, a 32 MiB block cache, no sync),
so the ratio is the cost of the layer: permission check, key validation and
encoding, namespacing, the exact quota (read old value, counter in the same
write batch) and the locks.

Counters: ``increment`` is compared with what raw rocksdict needs for an exact
atomic increment at the least (read-modify-write of the decimal value under a
lock), and ``compare_and_swap`` (each call with the version the previous one
returned) is shown beside our plain ``set`` as well.

``--keys`` sets how many keys each write workload overwrites (10,000 by
default; 1,000,000 shows an overwrite whose old row is no longer cached).

Every side gets its input ready-made, and reads it once just before its timed
run (outside the timing), as a caller that has just built its arguments
would have them in the CPU cache: otherwise the runs in between evict them,
and the side whose input has more objects (ours: pairs of str and bytes;
raw: bytes) pays cache misses the bench itself caused.

The workloads are benchmarks/_harness.py's, shared with bench_leveldb.py.

    python benchmarks/bench_rocksdb.py [--rounds 15] [--ops 20000] [--keys 10000] [--clock wall|cpu] [--json]
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import rocksdict
from _harness import kv_main


def engine_options() -> Any:
    """The backend's default engine options (see airssys_storage_rocksdb.options), for the raw databases."""
    engine = rocksdict.Options(raw_mode=True)
    engine.create_if_missing(True)
    engine.set_max_background_jobs(2)
    engine.set_write_buffer_size(64 * 2**20)
    engine.set_max_write_buffer_number(2)
    engine.set_compression_type(rocksdict.DBCompressionType.lz4())
    engine.set_bottommost_compression_type(rocksdict.DBCompressionType.zstd())
    table = rocksdict.BlockBasedOptions()
    table.set_block_cache(rocksdict.Cache(32 * 2**20))
    table.set_bloom_filter(10, False)
    engine.set_block_based_table_factory(table)
    return engine


class Rocksdict:
    """Raw rocksdict with the backend's default engine options."""

    name = "rocksdict"
    scheme = "rocksdb"

    def open(self, path: str) -> Any:
        return rocksdict.Rdict(path, engine_options())

    def writer(self, db: Any) -> tuple[Callable[[], Any], Callable[[Any], None]]:
        return functools.partial(rocksdict.WriteBatch, raw_mode=True), db.write

    def list_keys(self, db: Any, start: bytes, stop: bytes) -> list[bytes]:
        bounds = rocksdict.ReadOptions()
        bounds.set_iterate_lower_bound(start)
        bounds.set_iterate_upper_bound(stop)
        return list(db.keys(from_key=start, read_opt=bounds))


if __name__ == "__main__":
    kv_main(Rocksdict(), __doc__ or "")
