"""SIGKILL a SQLite writer at random points, over and over; nothing acknowledged may be lost.

Each round forks a child that applies a deterministic stream of single sets,
deletes and batches (see :func:`sqlworkers.crash_operations`) and writes the
index of every operation to a pipe after its commit returned. The parent kills
it at a random moment, then checks the database against its model: the state
must be exactly "every acknowledged operation applied", or that plus the one
operation in flight. Anything else is a lost acknowledged write or a torn
batch. The usage counter must equal the recomputed sum, and
``PRAGMA integrity_check`` must say ok.
"""

from __future__ import annotations

import json
import random
import sqlite3
import struct
from itertools import islice
from pathlib import Path

import pytest
from airssys_storage_sql import SQLBackend
from sqlsupport import kill_at_random
from sqlworkers import apply_to_model, crash_operations, crash_writer

KILLS = 110


def _acks(data: bytes) -> list[int]:
    usable = len(data) - len(data) % 4  # a kill can cut the last write short
    return [index for (index,) in struct.iter_unpack("<I", data[:usable])]


def _stored_state(url: str) -> tuple[dict[str, bytes], int, int]:
    backend = SQLBackend.open(url, {})
    try:
        pairs = backend.items("crash", b"", None, 10_000)
        usage = backend.usage("crash")
    finally:
        backend.close()
    return {key.decode(): value for key, value in pairs}, usage.bytes, usage.keys


@pytest.mark.slow
@pytest.mark.engines("sqlite")
def test_sigkill_loses_no_acknowledged_write_and_tears_no_batch(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite3"
    url = f"sqlite:///{path}"
    rng = random.Random(20240607)
    model: dict[str, bytes] = {}
    stats = {
        "kills": 0,
        "acknowledged": 0,
        "in_flight_committed": 0,
        "in_flight_not_committed": 0,
        "killed_before_first_ack": 0,
    }
    for round_ in range(KILLS):
        seed = 1000 + round_
        acks = _acks(kill_at_random(crash_writer, (url, seed), rng))
        stats["kills"] += 1
        assert acks == list(range(len(acks))), "acknowledgements must arrive in order"
        stats["acknowledged"] += len(acks)
        stats["killed_before_first_ack"] += not acks

        operations = list(islice(crash_operations(seed), len(acks) + 1))
        acknowledged = dict(model)
        for operation in operations[:-1]:
            apply_to_model(acknowledged, operation)
        with_in_flight = dict(acknowledged)
        apply_to_model(with_in_flight, operations[-1])

        stored, used, count = _stored_state(url) if path.exists() else ({}, 0, 0)
        if stored == with_in_flight and stored != acknowledged:
            stats["in_flight_committed"] += 1
        elif stored == acknowledged:
            stats["in_flight_not_committed"] += stored != with_in_flight
        else:
            lost = sorted(
                k for k in acknowledged if stored.get(k) != acknowledged[k] and stored.get(k) != with_in_flight.get(k)
            )
            pytest.fail(
                f"round {round_}: state is neither the acknowledged one nor that plus the op in flight; {lost[:5]}"
            )
        assert used == sum(len(k.encode()) + len(v) for k, v in stored.items()), f"round {round_}: counter != sum"
        assert count == len(stored)
        if path.exists():
            with sqlite3.connect(path) as check:
                assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        model = stored
    print("\ncrash result:", json.dumps(stats))
    assert stats["kills"] >= 100
    assert stats["acknowledged"] > 10 * stats["kills"], "most kills must land among writes, not before them"
