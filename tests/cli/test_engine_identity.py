"""No embedded backend opens, repairs or writes a store of another engine (the outside tester's reproducers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from airssys_storage.storeid import MARKER, detect_engine

BINDINGS = {"leveldb": "plyvel", "rocksdb": "rocksdict", "lmdb": "lmdb"}
PLUGINS = {"leveldb": "airssys_storage_leveldb", "rocksdb": "airssys_storage_rocksdb", "lmdb": "airssys_storage_lmdb"}
PAIRS = [(a, b) for a in BINDINGS for b in BINDINGS if a != b]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "airssys_storage.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})


def need(*engines: str) -> None:
    for engine in engines:
        pytest.importorskip(BINDINGS[engine], reason=f"the {engine} binding is not installed")
        pytest.importorskip(PLUGINS[engine], reason=f"the {engine} plugin is not installed")


def snapshot(path: Path) -> dict[str, tuple[int, float]]:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime) for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize(("wrote", "other"), PAIRS, ids=[f"{a}-store-opened-as-{b}" for a, b in PAIRS])
def test_a_store_of_another_engine_is_refused_and_left_untouched(tmp_path: Path, wrote: str, other: str) -> None:
    need(wrote, other)
    store = tmp_path / "store"
    done = run_cli("set", "-c", "app", "k", "v", "--url", f"{wrote}://{store}")
    assert done.returncode == 0, done.stderr
    assert detect_engine(str(store)) == wrote and (store / MARKER).exists()
    before = snapshot(store)
    for command in (["keys", "-c", "app"], ["get", "-c", "app", "k"], ["repair"], ["verify"]):
        done = run_cli(*command, "--url", f"{other}://{store}")
        assert done.returncode == 3, (command, done.stdout, done.stderr)
        assert f"use {wrote}://{store}" in done.stderr, done.stderr
        assert "repair --url" not in done.stderr and "corrupted" not in done.stderr
    assert snapshot(store) == before
    done = run_cli("get", "-c", "app", "k", "--url", f"{wrote}://{store}")
    assert done.returncode == 0 and done.stdout.strip() == "v", done.stderr


@pytest.mark.parametrize(("wrote", "other"), PAIRS, ids=[f"unmarked-{a}-store-opened-as-{b}" for a, b in PAIRS])
def test_an_unmarked_store_is_recognised_by_its_engine_files(tmp_path: Path, wrote: str, other: str) -> None:
    need(wrote, other)
    store = tmp_path / "store"
    assert run_cli("set", "-c", "app", "k", "v", "--url", f"{wrote}://{store}").returncode == 0
    (store / MARKER).unlink()  # as written by a version before the marker
    before = snapshot(store)
    done = run_cli("repair", "--url", f"{other}://{store}")
    assert done.returncode == 3 and f"use {wrote}://{store}" in done.stderr, done.stderr
    assert snapshot(store) == before
    done = run_cli("get", "-c", "app", "k", "--url", f"{wrote}://{store}")
    assert done.returncode == 0 and done.stdout.strip() == "v", done.stderr
