"""Crash safety: a writer SIGKILLed at random points loses no acknowledged write and tears no batch.

The loop and its checks are the core's (:mod:`airssys_storage.testing.crash`): 120 kills during
sets, sets with a TTL, deletes, batches, increments with op ids, compare-and-swap and prefix deletes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from airssys_storage_leveldb import LevelDBBackend

from airssys_storage.testing.crash import ROUNDS, sigkill_loop


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_write_and_tears_no_batch(tmp_path: Path) -> None:
    outcomes = sigkill_loop(f"leveldb://{tmp_path}/db", lambda url: LevelDBBackend.open(url, {}))
    assert sum(outcomes.values()) - outcomes["acknowledged"] == ROUNDS
