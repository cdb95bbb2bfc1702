"""The change feed's multi-process proof on LMDB (issue 14).

4 writer processes x 2,500 writes: a reader in this process sees every seq
exactly once, in order, no gaps, and the events replayed onto an empty dict
give the final state (seqs are dense across processes because LMDB runs one
write transaction at a time, and each commit reads and advances the seq in it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airssys_storage import Access, Manifest, StorageManager, StorageSettings
from airssys_storage.testing.changes import pull_all, run_feed_race


def _settings(path: Path) -> StorageSettings:
    return StorageSettings(url=f"lmdb://{path}/db", backend_options={"sync": False}, changes_capture_values=True)


@pytest.mark.slow
def test_four_writer_processes_and_one_reader(tmp_path: Path) -> None:
    """4 x 2,500 writes from spawned processes: every seq once, in order, dense; replay equals the final state."""
    report = run_feed_race(_settings(tmp_path), "feed-proof", 4, 2500)
    assert report["seqs_in_order"] and report["no_duplicates"]
    assert report["seen"] == report["expected"] == 10_000
    assert report["replayed"] == report["final"]


def test_two_handles_share_one_dense_log(tmp_path: Path) -> None:
    """Two managers on one store (as two processes would be): their commits interleave in one dense log."""
    settings = _settings(tmp_path)
    manifest = Manifest("feed-two", Access.ADMIN, changes=True)
    with StorageManager.from_settings(settings) as first, StorageManager.from_settings(settings) as second:
        a, b = first.component(manifest), second.component(manifest)
        for i in range(10):
            (a if i % 2 else b).set(f"k{i}", str(i).encode())
        b.delete("k0")
        events, cursor = pull_all(a)
        assert [event.seq for event in events] == list(range(1, 12)) and cursor == 11
        assert b.snapshot_seq() == 11 and first.backend.wait_for_changes("feed-two", 10, 0)
