"""The README's Python examples run as written (from the repository root, on memory://)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from wasmtime_helpers import REPOSITORY

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def python_block_after(heading: str) -> str:
    section = README[README.index(heading) :]
    return re.findall(r"```python\n(.*?)```", section, re.S)[0]


@pytest.mark.parametrize(
    ("heading", "printed"),
    [("## Python\n", ["1"]), ("## Hosting API", ["1", "2", "3"]), ("## The change feed for guests", ["2", "1", "0"])],
)
def test_example_runs(
    heading: str,
    printed: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(REPOSITORY)
    monkeypatch.setenv("AIRSSYS_STORAGE_URL", "memory://")
    monkeypatch.setenv("AIRSSYS_STORAGE_WASMTIME_CACHE_DIR", str(tmp_path))
    exec(compile(python_block_after(heading), f"README {heading.strip()}", "exec"), {})
    assert capsys.readouterr().out.split() == printed
