"""ComponentStorage on leveldb:// against raw plyvel, measured side by side in one run.

Each round runs every workload on both, back to back, alternating which goes
first. The table reports each side's best run (ops/s), their ratio, and the
median over rounds of the per-round ratio ours / raw as a cross-check.
Both databases use the same engine options (snappy, 10 bloom bits, no sync),
so the ratio is the cost of the layer: permission check, key validation and
encoding, namespacing, the exact quota (read old value, counter in the same
write batch) and the locks.

Counters: ``increment`` is compared with what raw plyvel needs for an exact
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

    python benchmarks/bench_leveldb.py [--rounds 15] [--ops 20000] [--keys 10000] [--clock wall|cpu] [--json]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import plyvel
from _harness import kv_main


def _write(batch: Any) -> None:
    batch.write()


class Plyvel:
    """Raw plyvel with the backend's default engine options (snappy, 10 bloom bits)."""

    name = "plyvel"
    scheme = "leveldb"

    def open(self, path: str) -> Any:
        return plyvel.DB(path, create_if_missing=True, bloom_filter_bits=10, compression="snappy")

    def writer(self, db: Any) -> tuple[Callable[[], Any], Callable[[Any], None]]:
        return db.write_batch, _write

    def list_keys(self, db: Any, start: bytes, stop: bytes) -> list[bytes]:
        return list(db.iterator(start=start, stop=stop, include_value=False))


if __name__ == "__main__":
    kv_main(Plyvel(), __doc__ or "")
