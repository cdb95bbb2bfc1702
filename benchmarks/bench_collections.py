"""Collections against the raw API they are built on (issue 13's targets), interleaved in one run.

- map get vs ``storage.get`` + ``json.loads`` (target: the map costs at most 1.5x);
- vector append vs one plain ``storage.set`` (target: at most 3x; an append
  is one atomic batch of the slot and the length, the length's version
  guessed from the vector's own last change instead of read).

Run from outside the repository (so the installed packages are used):
``python /path/to/benchmarks/bench_collections.py [memory|sqlite|all]``.
Prints µs per operation and the cost ratio ours/raw (lower is better); no
assertion on timings.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable

from _harness import measure

from airssys_storage import ComponentStorage, Manifest, StorageManager, StorageSettings
from airssys_storage.collections import StorageMap, StorageVector

KEYS = 1000


def contenders(storage: ComponentStorage) -> list[tuple[str, dict[str, Callable[[], int]]]]:
    users: StorageMap[str, dict[str, object]] = StorageMap(storage, "users/")
    record = {"name": "Ada Lovelace", "age": 36, "tags": ["math", "engines"]}
    names = [f"user-{index}" for index in range(KEYS)]
    for name in names:
        users[name] = record
    raw_keys = [users.prefix + f"'{name} " for name in names]  # the same stored rows

    def map_get() -> int:
        get = users.get
        for name in names:
            get(name)
        return KEYS

    def raw_get() -> int:
        get, loads = storage.get, json.loads
        for key in raw_keys:
            loads(get(key))  # type: ignore[arg-type]
        return KEYS

    vector: StorageVector[dict[str, object]] = StorageVector(storage, "log/")
    counter = iter(range(10**9))
    payload = json.dumps(record).encode()

    def vector_append() -> int:
        append = vector.append
        for _ in range(200):
            append(record)
        return 200

    def plain_set() -> int:
        put = storage.set
        for _ in range(200):
            put(f"raw/{next(counter)}", payload)
        return 200

    return [
        ("map get vs get+json", {"ours": map_get, "raw": raw_get}),
        ("vector append vs set", {"ours": vector_append, "raw": plain_set}),
    ]


def run(label: str, settings: StorageSettings) -> None:
    with StorageManager.from_settings(settings) as manager:
        storage = manager.component(Manifest(id="bench", access="read-write"))
        print(f"\n{label}")
        print(f"{'workload':<26}{'ours µs/op':>12}{'raw µs/op':>12}{'ours/raw':>10}{'target':>8}")
        for (workload, pair), target in zip(contenders(storage), ("1.5x", "3x"), strict=True):
            result = measure(pair, rounds=9)
            print(
                f"{workload:<26}{result['ours'] * 1e6:>12.2f}{result['raw'] * 1e6:>12.2f}"
                f"{result['ours'] / result['raw']:>9.2f}x{target:>8}"
            )


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    if which in ("memory", "all"):
        run("memory://", StorageSettings(url="memory://"))
    if which in ("sqlite", "all"):
        with tempfile.TemporaryDirectory() as directory:
            run("SQLite (file)", StorageSettings(url=f"sqlite:///{directory}/bench.sqlite3"))


if __name__ == "__main__":
    main()
