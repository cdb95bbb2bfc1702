"""docs/cli.md stays true: every command documented, the format example real, the exit codes listed."""

from __future__ import annotations

import io
import re
from pathlib import Path

from airssys_storage import StorageManager, StorageSettings
from airssys_storage.cli.app import BUILTIN_COMMANDS, ExitCode
from airssys_storage.exchange import export_component, operator_settings, operator_storage

DOC = (Path(__file__).parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")


def test_every_command_has_a_section_with_an_example() -> None:
    sections = dict(re.findall(r"^### `(\w+)[^`]*`\n(.*?)(?=^### |^## )", DOC, flags=re.M | re.S))
    for name in BUILTIN_COMMANDS:  # `manifest check` is documented under "manifest"
        body = sections[name]
        assert "```sh" in body and "airssys-storage " in body, f"section of {name!r} has no example"


def test_every_exit_code_is_in_the_table() -> None:
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", DOC, flags=re.M)}
    assert documented == {int(code) for code in ExitCode}


def test_the_format_example_is_what_export_writes() -> None:
    example = re.search(r"^```\n(\{\"format\".*?)```", DOC, flags=re.M | re.S)
    assert example is not None
    with StorageManager.from_settings(operator_settings(StorageSettings(url="memory://"))) as manager:
        storage = operator_storage(manager, "my-app")
        storage.set_many([("config/theme", b"dark"), ("user:1", b"")])
        out = io.BytesIO()
        export_component(storage, out)
    assert out.getvalue().decode() == example.group(1)
