"""Crash safety: a writer SIGKILLed at random points loses no acknowledged write and tears no batch.

The loop and its checks are the core's (:mod:`airssys_storage.testing.crash`): 120 kills during
sets, sets with a TTL, deletes, batches, increments with op ids, compare-and-swap and prefix deletes.
Here with the default options (sync and metasync on) but a 64 KiB map, so kills also land in commits
that grow it, and every kill of a writer holding LMDB's write lock checks that the next process takes
the lock over; ``verify()`` must find the store sound after every kill.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from airssys_storage_lmdb import LMDBBackend

from airssys_storage.testing.crash import ROUNDS, sigkill_loop

OPTIONS = {"map_size": "64KiB"}


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_write_and_tears_no_batch(tmp_path: Path) -> None:
    url = f"lmdb://{tmp_path}/db"
    outcomes = sigkill_loop(url, lambda url: LMDBBackend.open(url, OPTIONS), options=OPTIONS, verify=True)
    assert sum(outcomes.values()) - outcomes["acknowledged"] == ROUNDS
