"""The change feed on LMDB beyond the shared suite: two handles on one store share one dense log.

The issue's multi-process proofs (4 writer processes x 2,500 writes; a
SIGKILLed reader resuming from its cursor) are in the shared conformance suite
(:mod:`airssys_storage.testing.feedproof`, run by ``test_lmdb_conformance.py``).
Seqs are dense across processes because LMDB runs one write transaction at a
time, and each commit reads and advances the seq in it.
"""

from __future__ import annotations

from pathlib import Path

from airssys_storage import Access, Manifest, StorageManager, StorageSettings
from airssys_storage.testing.changes import pull_all


def _settings(path: Path) -> StorageSettings:
    return StorageSettings(url=f"lmdb://{path}/db", backend_options={"sync": False}, changes_capture_values=True)


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
