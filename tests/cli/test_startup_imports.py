"""Start-up (issue 9): the modules a one-key CLI read runs import no pydantic, and a plain `get` loads none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import SCRIPT, use_backend

_HEAVY = "sorted(m for m in sys.modules if m.split('.')[0] in {'pydantic', 'pydantic_settings'})"


def _loaded_after(code: str, env: dict[str, str]) -> str:
    probe = f"import sys\n{code}\nprint({_HEAVY})\n"
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_the_get_commands_modules_import_no_pydantic() -> None:
    """Importing the command line's data commands (and so storage, exchange, plugins) leaves pydantic out."""
    code = "import airssys_storage.cli.data, airssys_storage.storage, airssys_storage.exchange"
    assert _loaded_after(code, dict(os.environ)) == "[]"


def test_a_plain_get_loads_no_pydantic(tmp_path: Path) -> None:
    """`airssys-storage get` on the default SQLite backend, configured by environment, never imports pydantic."""
    use_backend("sqlite", tmp_path)
    env = {**os.environ, "AIRSSYS_STORAGE_URL": f"sqlite:///{tmp_path}/store.sqlite3"}
    subprocess.run([*SCRIPT, "set", "-c", "app", "key", "value"], env=env, check=True, capture_output=True)
    runner = (
        "import runpy\n"
        "sys.argv = ['airssys-storage', 'get', '-c', 'app', 'key']\n"
        "try:\n"
        "    runpy.run_module('airssys_storage.cli', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
    )
    out = _loaded_after(runner, env)
    assert out == "value[]", out


@pytest.mark.parametrize("setting", ["AIRSSYS_STORAGE_MAX_KEY_BYTES= 12 ", "AIRSSYS_STORAGE_POLICIES=manifest"])
def test_a_doubtful_setting_takes_the_full_path(tmp_path: Path, setting: str) -> None:
    """A value the fast path cannot vouch for is read by StorageSettings (valid or not, its answer stands)."""
    name, value = setting.split("=", 1)
    env = {**os.environ, "AIRSSYS_STORAGE_URL": "memory://", name: value}
    code = (
        "from airssys_storage.cli.common import load_configured_settings\n"
        "try:\n"
        "    load_configured_settings(plain=True)\n"
        "except Exception:\n"
        "    pass\n"
    )
    assert "pydantic_settings" in _loaded_after(code, env)
