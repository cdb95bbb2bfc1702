"""SQLite files are private: a new database and its -wal, -shm and -journal files have mode 0600."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest
from airssys_storage_sql import SQLBackend

from airssys_storage.files import create_private_file

pytestmark = pytest.mark.engines("sqlite")


def modes(directory: Path) -> dict[str, int]:
    return {path.name: stat.S_IMODE(path.stat().st_mode) for path in directory.iterdir()}


def modes_after_a_write(path: Path) -> dict[str, int]:
    """The modes of the files beside *path* while a backend on it is open and has written."""
    backend = SQLBackend.open(f"sqlite:///{path}", {})
    try:
        backend.put_one("ns", b"key", b"value", None)
        return modes(path.parent)
    finally:
        backend.close()


def test_a_new_database_and_its_wal_and_shm_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    assert modes_after_a_write(path) == {"store.db": 0o600, "store.db-wal": 0o600, "store.db-shm": 0o600}
    assert modes(tmp_path)["store.db"] == 0o600


def test_a_relative_path_is_private_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    SQLBackend.open("sqlite:///relative.db", {}).close()
    assert modes(tmp_path)["relative.db"] == 0o600


def test_sqlite_gives_its_rollback_journal_the_database_file_mode(tmp_path: Path) -> None:
    """What the backend relies on: SQLite copies the main file's mode to the files it creates beside it."""
    path = tmp_path / "journal.db"
    assert create_private_file(path)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode = DELETE")
        connection.execute("CREATE TABLE t (v)")
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO t VALUES (zeroblob(100000))")
        assert modes(tmp_path) == {"journal.db": 0o600, "journal.db-journal": 0o600}
        connection.execute("COMMIT")
    finally:
        connection.close()


def test_an_existing_database_keeps_the_mode_its_owner_gave_it(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    SQLBackend.open(f"sqlite:///{path}", {}).close()
    os.chmod(path, 0o640)
    assert modes_after_a_write(path) == {"shared.db": 0o640, "shared.db-wal": 0o640, "shared.db-shm": 0o640}


def test_an_in_memory_database_creates_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    SQLBackend.open("sqlite://", {}).close()
    SQLBackend.open("sqlite:///:memory:", {}).close()
    assert list(tmp_path.iterdir()) == []
