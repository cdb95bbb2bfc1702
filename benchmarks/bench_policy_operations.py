"""What a key-using policy that only guards writes costs on reads, with and without ``operations``.

Three managers on memory:// with 10,000 keys, measured interleaved in one run:

- ``none``: the manifest policy only (the baseline: no per-call policy);
- ``all-ops``: plus a key policy that denies writes under "frozen/" but, not
  declaring ``operations``, is asked on every call (issue 9: reads 5x slower);
- ``writes``: the same policy declaring ``operations = WRITE_OPERATIONS``.

Ratios are ops/s relative to ``none`` (1.0 = as fast as without the policy).

    python benchmarks/bench_policy_operations.py [--keys N] [--rounds R]
"""

from __future__ import annotations

import argparse

from _harness import measure

from airssys_storage import (
    WRITE_OPERATIONS,
    Access,
    Manifest,
    Operation,
    PermissionPolicy,
    PluginRegistry,
    StorageManager,
    StorageSettings,
    hookimpl,
)


class FrozenWritesAllOps(PermissionPolicy):
    """Needs the key only for writes, but asked about every operation."""

    name = "frozen-all-ops"
    uses_key = True

    def check(self, manifest: Manifest, operation: Operation, key: str | None) -> bool | None:
        if operation.is_write and key is not None and key.startswith("frozen/"):
            return False
        return None


class FrozenWrites(FrozenWritesAllOps):
    """The same policy, asked only about writes."""

    name = "frozen-writes"
    operations = WRITE_OPERATIONS


class _Plugin:
    @staticmethod
    @hookimpl
    def register_permission_policies() -> list[type[PermissionPolicy]]:
        return [FrozenWritesAllOps, FrozenWrites]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    registry = PluginRegistry.load(plugins={"bench-policies": _Plugin})
    keys = [f"user_{i:06d}" for i in range(args.keys)]
    stores = {}
    for label, extra in (("none", []), ("all-ops", ["frozen-all-ops"]), ("writes", ["frozen-writes"])):
        settings = StorageSettings(url="memory://", policies=["manifest", *extra], max_keys_per_query=args.keys)
        manager = StorageManager.from_settings(settings, registry=registry)
        store = manager.component(Manifest("bench", Access.READ_WRITE, "100MB"))
        for start in range(0, len(keys), 100):
            store.set_many({key: b"x" * 64 for key in keys[start : start + 100]})
        stores[label] = store

    def getter(store: object) -> object:
        def run() -> int:
            get = store.get  # type: ignore[attr-defined]
            for key in keys:
                get(key)
            return len(keys)

        return run

    def lister(store: object) -> object:
        def run() -> int:
            for _ in range(5):
                assert len(store.keys()) == len(keys)  # type: ignore[attr-defined]
            return 5

        return run

    for workload, make in (("get", getter), (f"keys() of {args.keys}", lister)):
        result = measure({label: make(store) for label, store in stores.items()}, rounds=args.rounds)  # type: ignore[misc]
        base = result["none"]
        cells = "  ".join(
            f"{label} {seconds * 1e6:9.2f} µs ({base / seconds:4.2f}x)" for label, seconds in result.items()
        )
        print(f"{workload:<16} {cells}")


if __name__ == "__main__":
    main()
