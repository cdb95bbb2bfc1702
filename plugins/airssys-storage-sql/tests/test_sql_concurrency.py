"""Several processes on one component: the quota holds exactly and the counter stays true."""

from __future__ import annotations

import json
import multiprocessing
from collections import Counter
from typing import Any

import pytest
from airssys_storage_sql import SQLBackend
from sqlworkers import mixed_operations

PROCESSES = 8
OPS_PER_PROCESS = 500
LIMIT = 1024 * 1024


@pytest.mark.slow
def test_eight_processes_never_overshoot_the_quota(
    sql_engine: str, store_url: str, store_options: dict[str, Any]
) -> None:
    ctx = multiprocessing.get_context("spawn")  # children open their own connections from scratch
    args = [(store_url, store_options, "contended", LIMIT, seed, OPS_PER_PROCESS) for seed in range(PROCESSES)]
    with ctx.Pool(PROCESSES) as pool:
        # A deadlock would hang here: the timeout turns it into a failure.
        results = pool.starmap_async(mixed_operations, args).get(timeout=300)

    outcomes: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    for result in results:
        outcomes.update(result["outcomes"])
        retries.update(result["retries"])
    untyped = [error for result in results for error in result["untyped"]]
    largest_seen = max(result["largest_usage_seen"] for result in results)

    backend = SQLBackend.open(store_url, store_options)
    try:
        pairs = backend.items("contended", b"", None, 100_000)
        usage = backend.usage("contended")
    finally:
        backend.close()
    recomputed = sum(len(key) + len(value) for key, value in pairs)
    report = {
        "engine": sql_engine,
        "operations": PROCESSES * OPS_PER_PROCESS,
        "outcomes": dict(sorted(outcomes.items())),
        "retries": dict(retries),
        "largest_usage_seen": largest_seen,
        "final_counter": usage.bytes,
        "recomputed_sum": recomputed,
        "overshoot": max(0, largest_seen - LIMIT, recomputed - LIMIT),
    }
    print("\nmulti-process result:", json.dumps(report, indent=1))
    assert untyped == []
    assert usage.bytes == recomputed
    assert usage.keys == len(pairs)
    assert largest_seen <= LIMIT and recomputed <= LIMIT
    assert outcomes["quota-exceeded"] > 0, "the workload must press against the quota to test the guard"
    assert outcomes["internal-error"] == 0, outcomes
