"""A new LevelDB database directory is private (0700): LevelDB's own files inside it are 0644."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from airssys_storage_leveldb import LevelDBBackend

from airssys_storage import ConfigurationError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_database_directory_is_private(tmp_path: Path) -> None:
    path = tmp_path / "db"
    backend = LevelDBBackend.open(f"leveldb://{path}", {})
    try:
        backend.put_one("ns", b"key", b"value", None)
        assert mode(path) == 0o700
        inside = {entry.name: mode(entry) for entry in path.iterdir()}
        # LevelDB hard-codes 0644 for its files; the directory is what keeps others out.
        assert "CURRENT" in inside and set(inside.values()) <= {0o644, 0o600, 0o755}
    finally:
        backend.close()


def test_an_existing_empty_directory_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "chosen"
    path.mkdir()
    os.chmod(path, 0o750)
    LevelDBBackend.open(f"leveldb://{path}", {}).close()
    assert mode(path) == 0o750


def test_a_directory_that_cannot_be_created_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path: object, mode: int = 0o777) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "mkdir", refuse)  # the tests may run as root, who ignores a read-only parent
    with pytest.raises(
        ConfigurationError, match=f"cannot create the LevelDB database directory {tmp_path}/db: Permission"
    ):
        LevelDBBackend.open(f"leveldb://{tmp_path / 'db'}", {})


def test_repair_creates_its_lock_file_private(tmp_path: Path) -> None:
    path = tmp_path / "db"
    LevelDBBackend.open(f"leveldb://{path}", {}).close()
    (path / "LOCK").unlink()
    LevelDBBackend.repair_url(f"leveldb://{path}")
    assert mode(path / "LOCK") == 0o600
    assert mode(path) == 0o700
