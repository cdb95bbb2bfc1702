"""A backend whose driver or engine library is not installed is a configuration error with the pip line.

Issue 9: ``airssys-storage keys -c x --url postgresql+psycopg://…`` without
psycopg said "cannot open backend … check that the store is reachable"
(exit 5). Each case runs the command line in a subprocess in which importing
the module is blocked (``sys.modules[name] = None``), on every backend and on
the commands that open stores in different ways.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import MARIADB_URL, POSTGRESQL_URL

# Runs the CLI with the modules named in argv[1] (comma-separated) made unimportable.
BLOCKED_CLI = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
from airssys_storage.cli import main
main(sys.argv[2:], prog_name="airssys-storage")
"""

CASES = {
    "postgresql": ("airssys_storage_sql", "psycopg", lambda tmp: POSTGRESQL_URL, "pip install 'psycopg[binary]>=3.1'"),
    "mariadb": ("airssys_storage_sql", "pymysql", lambda tmp: MARIADB_URL, "pip install 'PyMySQL>=1.1'"),
    "sqlite": (
        "airssys_storage_sql",
        "sqlalchemy",
        lambda tmp: f"sqlite:///{tmp}/db.sqlite3",
        "pip install 'SQLAlchemy",
    ),
    "leveldb": ("airssys_storage_leveldb", "plyvel", lambda tmp: f"leveldb://{tmp}/ldb", "pip install 'plyvel>=1.5'"),
    "rocksdb": (
        "airssys_storage_rocksdb",
        "rocksdict",
        lambda tmp: f"rocksdb://{tmp}/ldb",
        "pip install 'rocksdict>=0.3.23'",
    ),
}


def run_blocked(blocked: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKED_CLI, blocked, *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("backend", list(CASES))
def test_missing_driver_is_invalid_config_with_the_pip_line(backend: str, tmp_path: Path) -> None:
    plugin, module, make_url, pip_line = CASES[backend]
    if importlib.util.find_spec(plugin) is None:
        pytest.skip(f"{plugin} is not installed")
    url = make_url(tmp_path)
    other = f"sqlite:///{tmp_path}/other.sqlite3" if backend != "sqlite" else "memory://"
    # Read commands refuse a store that does not exist (or an empty file) before loading any driver:
    # make real, non-empty SQLite files.
    for name in ("other.sqlite3", "db.sqlite3"):
        with contextlib.closing(sqlite3.connect(tmp_path / name)) as connection:
            connection.execute("CREATE TABLE unrelated (x)")
    (tmp_path / "ldb").mkdir()
    (tmp_path / "ldb" / "LOG").touch()
    commands = [
        ["keys", "-c", "x", "--url", url],
        ["get", "-c", "x", "k", "--url", url],
        ["stats", "--url", url],
        ["migrate", "--from", other, "--to", url],
    ]
    for command in commands:
        done = run_blocked(module, *command)
        assert done.returncode == 3, (command, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("airssys-storage: error: "), done.stderr
        assert module in lines[0].lower() and pip_line in lines[0] and "reachable" not in lines[0]


def test_missing_plyvel_also_fails_repair_with_the_pip_line(tmp_path: Path) -> None:
    if importlib.util.find_spec("airssys_storage_leveldb") is None:
        pytest.skip("airssys_storage_leveldb is not installed")
    (tmp_path / "ldb").mkdir()
    done = run_blocked("plyvel", "repair", "--url", f"leveldb://{tmp_path}/ldb")
    assert done.returncode == 3 and "pip install 'plyvel>=1.5'" in done.stderr, done.stderr


def test_opening_an_existing_sqlite_file_imports_no_sqlalchemy(tmp_path: Path) -> None:
    """Start-up (issue 9): SQLAlchemy cost more than the rest of a one-key CLI read; a plain file does not need it."""
    if importlib.util.find_spec("airssys_storage_sql") is None:
        pytest.skip("airssys_storage_sql is not installed")
    code = (
        "import sys\n"
        "from airssys_storage import Access, Manifest, StorageManager, StorageSettings\n"
        f"with StorageManager.from_settings(StorageSettings(url='sqlite:///{tmp_path}/s.db')) as m:\n"
        "    s = m.component(Manifest('app', Access.READ_WRITE))\n"
        "    created = 'sqlalchemy' in sys.modules\n"  # a new file: its tables are compiled by SQLAlchemy
        "    s.set('k', b'v') if created else None\n"
        "    print(created, s.get('k'), 'sqlalchemy' in sys.modules)\n"
    )
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert first.stdout.split() == ["True", "b'v'", "True"]
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert again.stdout.split() == ["False", "b'v'", "False"]
