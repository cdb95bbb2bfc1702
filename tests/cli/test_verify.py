"""`airssys-storage verify [--repair]`: a thin wrapper over StorageBackend.verify, exit 6 when wrong."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from cli_helpers import Run, Store

from airssys_storage import StorageBackend

MakeStore = Callable[[str], Store]


def error_line(stderr: str) -> str:
    """The one error line a failed verify ends its stderr with (after its status line), no traceback."""
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("airssys-storage: error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def tamper(store: Store, component: str, used_bytes: int) -> None:
    """Overwrite *component*'s usage counter behind the backend's back (a stray UPDATE, a bad restore)."""
    with store.manager() as manager:
        backend: StorageBackend = manager.backend
        if backend.name == "sql":
            t = backend._tables  # type: ignore[attr-defined]
            sql = backend._sql(f"UPDATE {t.usage} SET used_bytes = ? WHERE ns = ?")  # type: ignore[attr-defined]
            backend._run("tamper", backend._execute, sql, (used_bytes, component))  # type: ignore[attr-defined]
        else:
            from airssys_storage_leveldb.layout import USAGE, usage_key

            backend._db.put(usage_key(component), USAGE.pack(used_bytes, 1))  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["sqlite", "leveldb", "postgresql", "mariadb"])
def test_verify_finds_and_repairs_a_tampered_counter(cli: Run, make_store: MakeStore, name: str) -> None:
    store = make_store(name)
    app = store.component("app")
    store.write(app, {"hello": b"1234567"})  # 12 bytes
    assert cli("verify", *store.args()).exit_code == 0
    tamper(store, app, 1_000_012)

    found = cli("verify", *store.args())
    assert found.exit_code == 6
    assert "disagree with the data" in error_line(found.stderr)
    assert "airssys-storage verify --repair --url" in found.stderr
    assert "1000012" in found.stdout and app in found.stdout

    as_json = cli("verify", *store.args(), "--json")
    assert as_json.exit_code == 6
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["repaired"] is False
    [mismatch] = [m for m in report["mismatches"] if m["namespace"] == app]
    assert mismatch["stored"] == {"bytes": 1_000_012, "keys": 1} and mismatch["actual"] == {"bytes": 12, "keys": 1}

    fixed = cli("verify", "--repair", *store.args(), "--json")
    assert fixed.exit_code == 0, fixed.stderr
    assert json.loads(fixed.stdout)["repaired"] is True
    with store.manager() as manager:
        assert manager.backend.usage(app).bytes == 12
    again = cli("verify", *store.args())
    assert again.exit_code == 0, again.stderr
    assert store.read(app) == {"hello": b"1234567"}


def test_verify_memory_store_is_sound(cli: Run) -> None:
    result = cli("verify", "--url", "memory://", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True
