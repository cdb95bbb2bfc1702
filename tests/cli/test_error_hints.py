"""The "check that the store is reachable" hint goes only on errors where reachability is the likely cause.

Outside tester: read-only, in-use and corruption errors ended with "check that the store is reachable and the
URL is right …; rerun with --debug", which names a fix that is not theirs; they already name their own.
"""

from __future__ import annotations

import pytest
from cli_helpers import Run, Store
from click.testing import Result

from airssys_storage import InternalError, StoreDamaged, StoreUnreachable
from airssys_storage.cli.app import ExitCode, _describe

HINT = "check that the store is reachable"


def _error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("airssys-storage: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "error",
    [
        InternalError("the LevelDB database at /x is in use by another process; stop it first"),
        InternalError("Redis at h:6379/0 is a read-only replica (READONLY): point the URL at the primary"),
        StoreDamaged("the SQLite database at /x is damaged: run `airssys-storage repair --url sqlite:///x`"),
    ],
    ids=["in-use", "read-only", "damaged"],
)
def test_errors_that_name_their_fix_get_no_reachability_hint(error: InternalError) -> None:
    code, message = _describe(error)
    assert code == ExitCode.BACKEND and message == error.message and HINT not in message


def test_an_unreachable_store_gets_the_reachability_hint() -> None:
    code, message = _describe(StoreUnreachable("cannot connect to PostgreSQL at 127.0.0.1:9/test: refused"))
    assert code == ExitCode.BACKEND and message.endswith("rerun with --debug for details") and HINT in message


def test_in_use_error_from_the_cli_names_its_fix_only(cli: Run, make_store: object) -> None:
    """End to end: a LevelDB store held open by this process; `size` says it is in use, nothing about reaching it."""
    store: Store = make_store("leveldb")  # type: ignore[operator]
    store.write("app", {"k": b"v"})
    holder = store.manager()
    try:
        result = cli("size", *store.args(), "-c", "app")
    finally:
        holder.close()
    assert result.exit_code in (ExitCode.CONFIG, ExitCode.BACKEND), result.stderr
    line = _error_line(result)
    assert "in use" in line and HINT not in line and "--debug" not in line


def test_unreachable_redis_server_gets_the_reachability_hint(cli: Run) -> None:
    pytest.importorskip("airssys_storage_redis", reason="the Redis plugin is not installed")
    result = cli("size", "--url", "redis://127.0.0.1:9/14", "-c", "app")
    assert result.exit_code == ExitCode.BACKEND, result.stderr
    line = _error_line(result)
    assert "127.0.0.1:9" in line and HINT in line
