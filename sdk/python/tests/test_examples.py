"""examples/todo-python runs as its README shows, on a SQLite store of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TODO = Path(__file__).resolve().parents[3] / "examples" / "todo-python" / "todo.py"


def test_the_todo_example(tmp_path: Path) -> None:
    """add, add, done, list: ids from the counter, items listed in id order, state kept between runs."""
    env = {**os.environ, "AIRSSYS_STORAGE_URL": f"sqlite:///{tmp_path}/todo.sqlite3"}
    env.pop("AIRSSYS_STORAGE_SETTINGS", None)

    def todo(*args: str) -> str:
        return subprocess.run(
            [sys.executable, str(TODO), *args], env=env, capture_output=True, text=True, check=True, cwd=tmp_path
        ).stdout

    assert todo("add", "buy milk") == "added 1: buy milk\n"
    assert todo("add", "call Ada") == "added 2: call Ada\n"
    assert todo("done", "1") == "done 1: buy milk\n"
    assert todo("list") == "[x] 1 buy milk\n[ ] 2 call Ada\n2 items, last id 2\n"
