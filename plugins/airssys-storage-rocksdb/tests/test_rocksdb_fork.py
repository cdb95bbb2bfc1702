"""A child forked after this process used RocksDB is refused any RocksDB store, never left to hang.

RocksDB's background thread pool is process-wide and does not survive ``fork``: a flush in the
child (also the one when a handle is freed) would wait forever. The shared conformance suite covers
the stores the parent had open at the fork; this covers a store the child opens itself.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest
from airssys_storage_rocksdb import RocksDBBackend

from airssys_storage import InternalError


def _open_in_child(url: str, results: Any) -> None:
    try:
        RocksDBBackend.open(url, {}).close()
    except InternalError as exc:
        results.put(f"{exc.code}: {exc}")
    else:
        results.put("opened")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="this platform has no os.fork()")
def test_a_forked_child_cannot_open_another_store(tmp_path: Path) -> None:
    RocksDBBackend.open(f"rocksdb://{tmp_path}/parent", {}).close()  # the parent has used RocksDB
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_open_in_child, args=(f"rocksdb://{tmp_path}/child", results))
    child.start()
    message = results.get(timeout=60)
    child.join(60)
    assert message.startswith(f"internal-error: cannot open the RocksDB database at {tmp_path}/child")
    assert "forked" in message and "spawn" in message
    assert not (tmp_path / "child").exists()
    # A spawned process starts clean and opens it.
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_open_in_child, args=(f"rocksdb://{tmp_path}/child", results))
    child.start()
    assert results.get(timeout=120) == "opened"
    child.join(60)
