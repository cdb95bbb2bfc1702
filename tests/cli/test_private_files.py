"""Files the command line writes (exports, values saved with --output) are readable by their owner only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cli_helpers import Run


@pytest.fixture
def url(tmp_path: Path) -> str:
    pytest.importorskip("airssys_storage_sql")
    return f"sqlite:///{tmp_path / 'store.db'}"


def test_export_and_get_output_files_are_private(cli: Run, url: str, tmp_path: Path) -> None:
    assert cli("set", "-c", "app", "--url", url, "token", "s3cret").exit_code == 0
    export, value = tmp_path / "app.jsonl", tmp_path / "token.txt"
    value.write_text("an older file the user could share")
    os.chmod(value, 0o644)
    assert cli("export", "-c", "app", "--url", url, "-o", str(export)).exit_code == 0
    result = cli("get", "-c", "app", "--url", url, "token", "--output", str(value))
    assert result.exit_code == 0, result.output
    assert value.read_text() == "s3cret"
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in (export, value)} == {"app.jsonl": 0o600, "token.txt": 0o600}
