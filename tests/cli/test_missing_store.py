"""Commands that only read a store never create one: a mistyped path is an error naming it (issue 9 §2, item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import Run

READS = [
    ["verify"],
    ["verify", "--repair"],
    ["export", "-c", "app"],
    ["keys", "-c", "app"],
    ["get", "-c", "app", "k"],
    ["size", "-c", "app"],
    ["stats"],
]


@pytest.mark.parametrize("scheme", ["sqlite", "leveldb"])
@pytest.mark.parametrize("command", READS, ids=lambda c: " ".join(c))
def test_read_commands_refuse_a_missing_store_and_create_nothing(
    cli: Run, tmp_path: Path, scheme: str, command: list[str]
) -> None:
    """The issue's `verify --url sqlite:////tmp/w/typo.db` (and the LevelDB directory): exit 3, nothing created."""
    pytest.importorskip("plyvel" if scheme == "leveldb" else "sqlite3")
    typo = tmp_path / ("typo.db" if scheme == "sqlite" else "typo")
    url = f"sqlite:///{typo}" if scheme == "sqlite" else f"leveldb://{typo}"
    result = cli(*command, "--url", url)
    assert result.exit_code == 3, result.stderr
    assert f"no store at {url}" in result.stderr and "check the URL" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_migrate_from_a_missing_store_fails_and_creates_nothing(cli: Run, tmp_path: Path) -> None:
    """The issue's `migrate --from sqlite:////tmp/w/nonexistent.db --to …` printed 'migrated 0 components'."""
    source = f"sqlite:///{tmp_path}/nonexistent.db"
    result = cli("migrate", "--from", source, "--to", f"sqlite:///{tmp_path}/target.db")
    assert result.exit_code == 3, result.stderr
    assert f"no store at {source}" in result.stderr and "migrated" not in result.stdout
    assert not (tmp_path / "nonexistent.db").exists()


def test_read_commands_still_read_an_existing_empty_store(cli: Run, tmp_path: Path) -> None:
    """A store that exists (created by a write) is read as before, even with no keys left."""
    url = f"sqlite:///{tmp_path}/store.db"
    assert cli("set", "-c", "app", "--url", url, "k", "v").exit_code == 0
    assert cli("delete", "-c", "app", "--url", url, "k").exit_code == 0
    assert cli("keys", "-c", "app", "--url", url).exit_code == 0
    assert cli("verify", "--url", url).exit_code == 0


def test_an_empty_sqlite_file_is_no_store_for_read_commands(cli: Run, tmp_path: Path) -> None:
    """A 0-byte file (e.g. `touch empty.db`) is not a store: verify refuses it and writes nothing into it."""
    empty = tmp_path / "empty.db"
    empty.touch()
    result = cli("verify", "--url", f"sqlite:///{empty}")
    assert result.exit_code == 3, result.stderr
    assert "no store at" in result.stderr
    assert empty.stat().st_size == 0


@pytest.mark.parametrize(
    "spelling",
    ["sqlite:///{d}/sub/../store.db", "sqlite+pysqlite:///{d}/store.db", "sqlite:///{d}//store.db"],
)
def test_migrate_refuses_one_store_spelled_two_ways(cli: Run, tmp_path: Path, spelling: str) -> None:
    """Outside trial: `--from sqlite:////t/src.db --to sqlite:////t/../t/src.db` "migrated" a store onto itself."""
    (tmp_path / "sub").mkdir()
    url = f"sqlite:///{tmp_path}/store.db"
    assert cli("set", "-c", "app", "--url", url, "k", "v").exit_code == 0
    result = cli("migrate", "--from", url, "--to", spelling.format(d=tmp_path), "--prune")
    assert result.exit_code != 0 and "name the same store" in result.stderr, result.stderr
    assert cli("get", "-c", "app", "--url", url, "k").stdout.strip() == "v"


@pytest.mark.parametrize("scheme", ["leveldb", "rocksdb", "lmdb"])
def test_migrate_refuses_one_directory_store_spelled_two_ways(cli: Run, tmp_path: Path, scheme: str) -> None:
    """`--from lmdb:///d/store --to lmdb:///d/sub/../store` name one store (LMDB was compared as written)."""
    pytest.importorskip(f"airssys_storage_{scheme}")
    (tmp_path / "sub").mkdir()
    url = f"{scheme}://{tmp_path}/store"
    assert cli("set", "-c", "app", "--url", url, "k", "v").exit_code == 0
    for spelling in (f"{scheme}://{tmp_path}/sub/../store", f"{scheme}://{tmp_path}//store/"):
        result = cli("migrate", "--from", url, "--to", spelling, "--prune")
        assert result.exit_code == 2 and "name the same store" in result.stderr, result.stderr
    assert cli("get", "-c", "app", "--url", url, "k").stdout.strip() == "v"
