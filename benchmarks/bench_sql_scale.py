"""keys() of a 10,000-key component, alone and beside 10^5 rows of other components.

Prefix listings are primary-key range scans, so rows of other namespaces
should not slow them down; the target is at most 2x. Both stores are
measured in one run with interleaved rounds; ratios are alone/crowded in
operations per second (1.0 = no slowdown).

    python benchmarks/bench_sql_scale.py [--neighbours N] [--rounds R] [--postgresql URL | --no-postgresql]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

from _harness import measure, print_table
from bench_sql import connect_postgresql, drop_store

from airssys_storage import Access, Manifest, StorageManager, StorageSettings

KEYS = 10_000
BATCH = 100


def fill(manager: StorageManager, component: str, count: int, prefix: str = "key_") -> None:
    store = manager.component(Manifest(component, Access.ADMIN, "500MB"))
    for start in range(0, count, BATCH):
        store.set_many([(f"{prefix}{i:07d}", b"x" * 32) for i in range(start, min(count, start + BATCH))])


def scale(
    name: str,
    url_alone: str,
    url_crowded: str,
    options: tuple[dict[str, Any], dict[str, Any]],
    neighbours: int,
    rounds: int,
) -> tuple[str, dict[str, float]]:
    alone = StorageManager.from_settings(StorageSettings(url=url_alone, backend_options=options[0]))
    crowded = StorageManager.from_settings(StorageSettings(url=url_crowded, backend_options=options[1]))
    try:
        fill(alone, "target", KEYS)
        # Neighbours on both sides of "target" in key order, as many rows as asked.
        per = neighbours // 4
        for component in ("tar", "targe", "target-a", "targets"):
            fill(crowded, component, per)
        fill(crowded, "target", KEYS)
        stores = {
            "alone": alone.component(Manifest("target", Access.ADMIN, "500MB")),
            "crowded": crowded.component(Manifest("target", Access.ADMIN, "500MB")),
        }

        def run(store: Any) -> Any:
            def once() -> int:
                assert len(store.keys()) == KEYS
                return 1

            return once

        result = measure({label: run(store) for label, store in stores.items()}, rounds)
        return f"{name}: keys() of {KEYS:,}", {"crowded": result["crowded"], "alone": result["alone"]}
    finally:
        alone.close()
        crowded.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--neighbours", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--postgresql", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-postgresql", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        rows.append(
            scale(
                "SQLite",
                f"sqlite:///{directory}/alone.db",
                f"sqlite:///{directory}/crowded.db",
                ({}, {}),
                args.neighbours,
                args.rounds,
            )
        )
    if not args.no_postgresql:
        prefixes = (f"scale{os.getpid()}a_", f"scale{os.getpid()}c_")
        try:
            rows.append(
                scale(
                    "PostgreSQL",
                    args.postgresql,
                    args.postgresql,
                    ({"table_prefix": prefixes[0]}, {"table_prefix": prefixes[1]}),
                    args.neighbours,
                    args.rounds,
                )
            )
        finally:
            with connect_postgresql(args.postgresql) as admin:
                for prefix in prefixes:
                    drop_store(admin, prefix)
    print_table(
        f"keys() beside {args.neighbours:,} rows of other components (crowded) vs an otherwise empty store (alone)",
        rows,
        "crowded",
        ["alone"],
    )


if __name__ == "__main__":
    main()
