"""Child-process bodies for the multi-process and crash tests (importable by spawned children)."""

from __future__ import annotations

import os
import random
import struct
from collections import Counter
from collections.abc import Iterator
from typing import Any

from sqlsupport import commit

from airssys_storage import Access, Manifest, QuotaExceeded, StorageError, StorageManager, StorageSettings

# -- 8 processes x 500 mixed operations -----------------------------------------------


def mixed_operations(
    url: str, options: dict[str, Any], component: str, limit: int, seed: int, ops: int
) -> dict[str, Any]:
    """Run *ops* random writes and reads; report outcomes, the largest usage seen, untyped errors."""
    rng = random.Random(seed)
    own = [f"p{seed}-{i}" for i in range(40)]
    shared = [f"shared-{i}" for i in range(24)]  # overwritten and deleted by every process
    outcomes: Counter[str] = Counter()
    untyped: list[str] = []
    largest = 0
    settings = StorageSettings(url=url, backend_options=options)
    with StorageManager.from_settings(settings) as manager:
        store = manager.component(Manifest(component, Access.READ_WRITE, limit))
        for _ in range(ops):
            pick = rng.random()
            key = rng.choice(own if rng.random() < 0.5 else shared)
            try:
                if pick < 0.35:
                    store.set(key, b"s" * rng.randint(0, 16 * 1024))
                    outcomes["set"] += 1
                elif pick < 0.50:
                    store.delete(key)
                    outcomes["delete"] += 1
                elif pick < 0.72:
                    batch = {
                        rng.choice(own + shared): b"b" * rng.randint(0, 8 * 1024) for _ in range(rng.randint(2, 12))
                    }
                    store.set_many(batch)
                    outcomes["set_many"] += 1
                elif pick < 0.82:
                    store.delete_many(rng.sample(own + shared, rng.randint(2, 10)))
                    outcomes["delete_many"] += 1
                else:
                    store.get(key)
                    outcomes["get"] += 1
            except QuotaExceeded:
                outcomes["quota-exceeded"] += 1
            except StorageError as exc:
                outcomes[exc.code] += 1
                outcomes[f"message: {str(exc)[:120]}"] += 1
            except Exception as exc:  # the test fails on any of these
                untyped.append(f"{type(exc).__name__}: {exc}")
            largest = max(largest, store.usage().bytes)
        retries = manager.backend.stats().get("retries", {})
    return {"outcomes": dict(outcomes), "largest_usage_seen": largest, "untyped": untyped, "retries": retries}


# -- the crash test's writer -------------------------------------------------------------

Op = tuple[str, Any]
CRASH_KEYS = [f"k{i:02d}" for i in range(48)]


def crash_operations(seed: int) -> Iterator[Op]:
    """The deterministic operation stream of one crash round (the parent replays it)."""
    rng = random.Random(seed)
    for index in range(1_000_000):
        tag = b"%d:%d:" % (seed, index)
        pick = rng.random()
        if pick < 0.45:
            yield "set", (rng.choice(CRASH_KEYS), tag + b"v" * rng.randint(0, 3000))
        elif pick < 0.60:
            yield "delete", rng.choice(CRASH_KEYS)
        else:
            keys = rng.sample(CRASH_KEYS, rng.randint(2, 16))
            yield "batch", {key: (tag + b"b" * rng.randint(0, 2000) if rng.random() < 0.8 else None) for key in keys}


def apply_to_model(model: dict[str, bytes], op: Op) -> None:
    kind, arg = op
    if kind == "set":
        model[arg[0]] = arg[1]
    elif kind == "delete":
        model.pop(arg, None)
    else:
        for key, value in arg.items():
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value


def crash_writer(url: str, seed: int, ack_fd: int) -> None:
    """Apply the round's operations one by one; after each commit returns, write its index to *ack_fd*."""
    with StorageManager.from_settings(StorageSettings(url=url)) as manager:
        store = manager.component(Manifest("crash", Access.READ_WRITE, None))
        for index, (kind, arg) in enumerate(crash_operations(seed)):
            if kind == "set":
                store.set(*arg)
            elif kind == "delete":
                store.delete(arg)
            else:
                puts = {k: v for k, v in arg.items() if v is not None}
                deletes = [k for k, v in arg.items() if v is None]
                if deletes and puts:
                    # Puts and deletes in one atomic commit: the backend primitive under
                    # set_many / delete_many, which the public API does not mix.
                    commit(manager.backend, "crash", [(k.encode(), v) for k, v in arg.items()], None)
                elif puts:
                    store.set_many(puts)
                else:
                    store.delete_many(deletes)
            os.write(ack_fd, struct.pack("<I", index))


#: Atomic operations of the crash loop, by index % 4 (see atomics_writer).
ATOMIC_KINDS = ("increment", "compare-and-swap", "fill-range", "delete-range")
#: The range atomics_writer fills and deletes: RANGE_KEYS keys under "rg/".
RANGE_KEYS = 20


def atomics_writer(url: str, options: dict[str, Any], start: int, ack_fd: int) -> None:
    """Operations start, start + 1, …: increment with an op id, compare-and-swap, fill / delete a range.

    After each returns, ``(index, result)`` goes to *ack_fd* (result: the counter's value,
    the new version, or the number of keys removed). *options*: the store's ``backend_options``.
    """
    with StorageManager.from_settings(StorageSettings(url=url, backend_options=options)) as manager:
        store = manager.component(Manifest("crash", Access.READ_WRITE, None))
        index = start
        while True:
            kind = ATOMIC_KINDS[index % 4]
            if kind == "increment":
                result = store.increment("n", 1, op_id=f"inc-{index}")
            elif kind == "compare-and-swap":
                entry = store.get_entry("cas")
                result = store.compare_and_swap("cas", b"v%d" % index, version=None if entry is None else entry.version)
            elif kind == "fill-range":
                store.set_many({f"rg/{j:02}": b"x" * (j + index % 7) for j in range(RANGE_KEYS)})
                result = RANGE_KEYS
            else:
                result = store.delete_range("rg/", "rg0")
            os.write(ack_fd, struct.pack("<Iq", index, result))
            index += 1
