"""Inputs from an outside trial: each bad input is its class of error (exit code), named where it came from."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import Completed, Run, Store
from test_commands import one_error_line, write_manifest

from airssys_storage import ConfigurationError, StorageSettings
from airssys_storage.files import atomic_private_file

MakeStore = Callable[[str], Store]

# -- files the project reads that are not UTF-8 ------------------------------------------


def test_a_settings_file_that_is_not_utf8_is_invalid_config_naming_it(
    cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "airssys-storage.toml").write_bytes(b"\xff\xfe")
    for command in (["config"], ["config", "--check"], ["keys", "-c", "app", "--url", "memory://"]):
        result = cli(*command)
        assert result.exit_code == 3, (command, result.stderr)
        line = one_error_line(result.stderr)
        assert str(tmp_path / "airssys-storage.toml") in line and "not UTF-8" in line
    with pytest.raises(ConfigurationError, match="not UTF-8"):
        StorageSettings()


def test_other_files_that_are_not_utf8(cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    url = ["--url", f"sqlite:///{tmp_path}/s.db"]
    manifest = cli("manifest", "check", str(binary))
    assert manifest.exit_code == 3 and str(binary) in one_error_line(manifest.stderr)
    imported = cli("import", str(binary), *url)
    assert imported.exit_code == 2 and "line 1: not UTF-8" in one_error_line(imported.stderr)
    assert cli("set", "-c", "app", "k", "--file", str(binary), *url).exit_code == 0  # values are bytes
    with_manifest = cli("set", "-c", "app", "k", "v", "--manifest", str(binary), *url)
    assert with_manifest.exit_code == 3 and str(binary) in one_error_line(with_manifest.stderr)
    monkeypatch.setenv("AIRSSYS_STORAGE_BACKEND_OPTIONS", "{\udcff}")  # a non-UTF-8 byte, as os.environ holds it
    options = cli("keys", "-c", "app", *url)
    assert options.exit_code == 3 and "AIRSSYS_STORAGE_BACKEND_OPTIONS" in one_error_line(options.stderr)


# -- URLs: bad input is invalid-config, named at its source -------------------------------


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("memory://[", "is not a valid URL"),
        ("sqlite:////tmp/a%00b.db", "NUL character"),
        ("leveldb:///tmp/a%00b", "NUL character"),
        ("postgresql+psycopg://u@127.0.0.1:99999/db", "invalid port"),
        ("mysql+pymysql://root@127.0.0.1:99999/test", "invalid port"),
        ("postgresql+psycopg://u@127.0.0.1:abc/db", "invalid port"),
    ],
)
def test_bad_urls_are_invalid_config_and_name_their_source(
    cli: Run, monkeypatch: pytest.MonkeyPatch, url: str, fragment: str
) -> None:
    given = cli("keys", "-c", "app", "--url", url)
    assert given.exit_code == 3
    line = one_error_line(given.stderr)
    assert fragment in line and line.endswith("fix --url on the command line")
    migrated = cli("migrate", "--from", "memory://", "--to", url)
    assert migrated.exit_code == 3 and one_error_line(migrated.stderr).endswith("fix --to on the command line")
    monkeypatch.setenv("AIRSSYS_STORAGE_URL", url)
    configured = cli("keys", "-c", "app")
    assert configured.exit_code == 3 and "AIRSSYS_STORAGE_* environment variable" in one_error_line(configured.stderr)
    with pytest.raises(ConfigurationError, match=fragment):
        StorageSettings(url=url)


# -- output paths and --manifest --------------------------------------------------------


@pytest.fixture
def store(make_store: MakeStore) -> Store:
    return make_store("sqlite")


def test_a_directory_as_output_file_is_named_as_a_directory(cli: Run, store: Store, tmp_path: Path) -> None:
    store.write("app", {"k": b"v"})
    for command in (["get", "-c", "app", "k", "-o", str(tmp_path)], ["export", "-c", "app", "-o", f"{tmp_path}/"]):
        result = cli(*command, "--url", store.url)
        assert result.exit_code == 2
        line = one_error_line(result.stderr)
        assert f"cannot write '{command[-1]}': it is a directory" in line and ".tmp" not in line
    with pytest.raises(IsADirectoryError) as caught, atomic_private_file(tmp_path):
        pass
    assert caught.value.filename == str(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("access", ["read-only", "none"])
def test_manifest_that_cannot_write_is_a_permission_error_not_quota_advice(
    cli: Run, store: Store, tmp_path: Path, access: str
) -> None:
    manifest = write_manifest(tmp_path / "m.toml", "app", access)
    export = tmp_path / "e.jsonl"
    store.write("app", {"k": b"v"})
    assert cli("export", "-c", "app", "-o", str(export), "--url", store.url).exit_code == 0
    for command in (["set", "-c", "app", "k2", "v"], ["import", str(export), "--replace"]):
        result = cli(*command, "--manifest", str(manifest), "--url", store.url)
        assert result.exit_code == 4
        line = one_error_line(result.stderr)
        assert f"access '{access}', which cannot write" in line and "max-size" not in line
    assert store.read("app") == {"k": b"v"}


# -- Ctrl-C while the command line is still loading ---------------------------------------

_INTERRUPT_WHILE_IMPORTING = """
import builtins, sys
real = builtins.__import__
def interrupting(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 1 and name == "app":  # `from .app import cli` in airssys_storage.cli.run
        raise KeyboardInterrupt
    return real(name, globals, locals, fromlist, level)
builtins.__import__ = interrupting
from airssys_storage.cli import run
run()
"""


def test_ctrl_c_while_loading_is_one_line_and_exit_130() -> None:
    done = subprocess.run([sys.executable, "-c", _INTERRUPT_WHILE_IMPORTING], capture_output=True, text=True)
    assert done.returncode == 130
    assert done.stderr == "airssys-storage: error: interrupted; work done so far stays (every batch is atomic)\n"


def test_the_console_script_is_run(cli_process: Callable[..., Completed]) -> None:
    # run() is the entry point: it exits with the command's code
    done = cli_process("get", "--url", "memory://", "-c", "app", "nope")
    assert done.returncode == 1 and "not found" in one_error_line(done.stderr)
    assert cli_process("--version").returncode == 0
