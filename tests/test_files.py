"""Files and directories airssys-storage creates are private (0700 / 0600); existing ones keep their modes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from airssys_storage import ConfigurationError, Manifest, StorageManager, StorageSettings
from airssys_storage.files import atomic_private_file, create_private_file, make_private_dirs


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the helpers -------------------------------------------------------------------------


def test_make_private_dirs_creates_every_missing_parent_private(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c"
    make_private_dirs(target)
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", target)] == [0o700] * 3
    make_private_dirs(target)  # existing: nothing to do


def test_make_private_dirs_leaves_existing_directories_alone(tmp_path: Path) -> None:
    existing = tmp_path / "mine"
    existing.mkdir()
    os.chmod(existing, 0o755)
    make_private_dirs(existing / "new")
    assert (mode(existing), mode(existing / "new")) == (0o755, 0o700)


def test_make_private_dirs_under_a_file_raises(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        make_private_dirs(tmp_path / "file" / "sub")


def test_create_private_file(tmp_path: Path) -> None:
    path = tmp_path / "new"
    assert create_private_file(path) is True
    assert mode(path) == 0o600 and path.read_bytes() == b""
    path.write_bytes(b"kept")
    os.chmod(path, 0o644)
    assert create_private_file(path) is False
    assert (mode(path), path.read_bytes()) == (0o644, b"kept")


def test_atomic_private_file_replaces_whole_and_private(tmp_path: Path) -> None:
    path = tmp_path / "out"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    with atomic_private_file(path) as stream:
        stream.write(b"new")
        assert path.read_bytes() == b"old"  # nothing visible until the block completes
    assert (path.read_bytes(), mode(path)) == (b"new", 0o600)
    with pytest.raises(RuntimeError), atomic_private_file(path) as stream:
        stream.write(b"half")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary file left behind


# -- the default data directory ------------------------------------------------------------


def default_store_files() -> tuple[Path, Path]:
    data_home = Path(os.environ["XDG_DATA_HOME"])  # inside the isolated test environment's home
    return data_home, data_home / "airssys-storage" / "storage.sqlite3"


def test_the_default_data_directory_and_database_are_private() -> None:
    pytest.importorskip("airssys_storage_sql", reason="the embedded default is the SQL plugin's SQLite")
    data_home, database = default_store_files()
    assert not data_home.parent.exists()  # ~/.local is created too
    with StorageManager.from_settings(StorageSettings()) as manager:
        manager.component(Manifest(id="app", access="read-write")).set("k", b"secret")
        created = [data_home.parent, data_home, database.parent]
        assert [mode(p) for p in created] == [0o700] * 3
        files = {p.name: mode(p) for p in database.parent.iterdir()}
        assert files == {"storage.sqlite3": 0o600, "storage.sqlite3-wal": 0o600, "storage.sqlite3-shm": 0o600}


def test_an_existing_data_directory_keeps_its_mode() -> None:
    pytest.importorskip("airssys_storage_sql", reason="the embedded default is the SQL plugin's SQLite")
    _, database = default_store_files()
    database.parent.mkdir(parents=True)
    os.chmod(database.parent, 0o750)
    StorageManager.from_settings(StorageSettings()).close()
    assert (mode(database.parent), mode(database)) == (0o750, 0o600)


def test_a_default_data_directory_that_cannot_be_created_names_the_fix() -> None:
    pytest.importorskip("airssys_storage_sql", reason="the embedded default is the SQL plugin's SQLite")
    data_home, _ = default_store_files()
    data_home.parent.parent.mkdir(parents=True, exist_ok=True)
    data_home.parent.write_text("a file where ~/.local should be")
    with pytest.raises(ConfigurationError, match=r"cannot create the default data directory .*AIRSSYS_STORAGE_URL"):
        StorageManager.from_settings(StorageSettings())
