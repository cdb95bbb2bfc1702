"""SIGKILL a writer of atomic operations at random points: counters, versions and ranges stay exact.

On every engine (SQLite, PostgreSQL, MariaDB): the child writes through the
backend; on the servers only the child's session dies, the server keeps running.

Each round forks a child that runs increments (each with its own op id),
compare-and-swaps, and fills and deletes of a 20-key range (see
:func:`sqlworkers.atomics_writer`), acknowledging each after it returned.
The parent kills it at a random moment, reopens the store, and checks:

* the usage counter equals a recount of the rows (``verify``), and the
  engine's integrity check passes (SQLite, MariaDB);
* replaying the increment in flight with its op id gives exactly one more
  than the acknowledged increments, whether or not the killed child had
  committed it (the op record is committed with the data, or not at all);
* the versions of the counter and the compare-and-swap key never go back:
  not below the last acknowledged version, not below what the previous
  round saw;
* the range holds all of its keys or none (a range delete is never torn).
"""

from __future__ import annotations

import json
import random
import struct
from typing import Any

import pytest
from sqlsupport import kill_at_random
from sqlworkers import ATOMIC_KINDS, RANGE_KEYS, atomics_writer

from airssys_storage import Access, Manifest, StorageManager, StorageSettings

KILLS = 60


def _acks(data: bytes) -> list[tuple[int, int]]:
    usable = len(data) - len(data) % 12  # a kill can cut the last write short
    return list(struct.iter_unpack("<Iq", data[:usable]))


@pytest.mark.slow
def test_sigkill_during_increment_cas_and_range_delete_keeps_counters_versions_and_ranges(
    store_url: str, store_options: dict[str, Any]
) -> None:
    url, options = store_url, store_options
    # A write to a server takes a few round trips: a longer window lets kills land among operations.
    window = 0.03 if url.startswith("sqlite") else 0.25
    rng = random.Random(20261129)
    increments = 0  # increments applied, as the replays have settled it
    seen = {"n": 0, "cas": 0}  # highest version observed per key
    next_index = 0
    stats = {"kills": 0, "acknowledged": 0, "replayed_committed": 0, "replayed_applied": 0, "ranges_full": 0}
    for round_ in range(KILLS):
        acks = _acks(kill_at_random(atomics_writer, (url, options, next_index), rng, window))
        stats["kills"] += 1
        assert [index for index, _ in acks] == list(range(next_index, next_index + len(acks)))
        stats["acknowledged"] += len(acks)
        for index, result in acks:
            kind = ATOMIC_KINDS[index % 4]
            if kind == "increment":
                increments += 1
                assert result == increments, f"round {round_}: op {index} counted {result}, expected {increments}"
            elif kind == "compare-and-swap":
                assert result > seen["cas"], f"round {round_}: version {result} after {seen['cas']}"
                seen["cas"] = result
        in_flight = next_index + len(acks)

        with StorageManager.from_settings(StorageSettings(url=url, backend_options=options)) as manager:
            report = manager.backend.verify()
            assert report.ok, f"round {round_}: {report.as_dict()}"
            store = manager.component(Manifest("crash", Access.READ_WRITE, None))
            if ATOMIC_KINDS[in_flight % 4] == "increment":  # settle it: a replay applies it at most once
                before = store.get("n")
                assert store.increment("n", 1, op_id=f"inc-{in_flight}") == increments + 1
                stats["replayed_committed" if before == b"%d" % (increments + 1) else "replayed_applied"] += 1
                increments += 1
                in_flight += 1  # the next child must not reuse its op id
            assert int(store.get("n") or b"0") == increments, f"round {round_}"
            for key in ("n", "cas"):
                entry = store.get_entry(key)
                version = 0 if entry is None else entry.version
                assert version >= seen[key], f"round {round_}: {key} went from version {seen[key]} to {version}"
                seen[key] = version
            in_range = len(store.keys("rg/"))
            assert in_range in (0, RANGE_KEYS), f"round {round_}: a torn range: {in_range} of {RANGE_KEYS} keys"
            stats["ranges_full"] += in_range == RANGE_KEYS
        next_index = in_flight
    print("\natomics crash result:", json.dumps(stats))
    assert stats["acknowledged"] > 5 * stats["kills"], "most kills must land among operations"
