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
    run_only = {int(code) for code in re.findall(r"^\| (\d+) \| `run` only:", DOC, flags=re.M)}
    assert documented - run_only == {int(code) for code in ExitCode}


def test_exit_code_70_names_what_it_means_for_run_too() -> None:
    """Outside tester: the table said 70 is "a bug, report it" while `run` exits 70 when the guest traps."""
    row = re.search(r"^\| 70 \|(.*)$", DOC, flags=re.M)
    assert row is not None and "bug" in row.group(1) and "`run`" in row.group(1) and "trapped" in row.group(1)
    assert "| 124 | `run` only:" in DOC


def test_url_lists_every_scheme_of_the_repository_plugins() -> None:
    """Outside tester: --url listed neither rocksdb://, lmdb://, redis:// nor rediss://."""
    section = DOC.split("## Choosing the store", 1)[1].split("\n## ", 1)[0]
    for scheme in (
        "memory://",
        "sqlite:///",
        "leveldb:///",
        "rocksdb:///",
        "lmdb:///",
        "postgresql+psycopg://",
        "mysql+pymysql://",
        "redis://",
        "rediss://",
    ):
        assert scheme in section, scheme


def test_the_format_example_is_what_export_writes() -> None:
    example = re.search(r"^```\n(\{\"format\".*?)```", DOC, flags=re.M | re.S)
    assert example is not None
    with StorageManager.from_settings(operator_settings(StorageSettings(url="memory://"))) as manager:
        storage = operator_storage(manager, "my-app")
        storage.set_many([("config/theme", b"dark"), ("user:1", b"")])
        storage._restore_many([("session:9", b"x", 4_102_444_800_000)])  # 2100-01-01, an exact expiry
        out = io.BytesIO()
        export_component(storage, out)
    assert out.getvalue().decode() == example.group(1)


ROOT = Path(__file__).parents[2]
#: Every document a user follows: the README, docs/, and the plugins' and contrib's READMEs.
USER_DOCS = [
    ROOT / "README.md",
    *ROOT.glob("docs/*.md"),
    *ROOT.glob("plugins/*/README.md"),
    *ROOT.glob("contrib/*/README.md"),
]
#: Top-level directories of an absolute path: ``sqlite:///var/…`` names the *relative* file ``var/…``.
_ABSOLUTE_LOOKING = re.compile(r"sqlite:///(?:var|tmp|home|srv|opt|etc|usr|root|mnt|data)/")


def test_sqlite_url_examples_are_absolute_where_they_mean_it() -> None:
    # SQLAlchemy's sqlite:///var/lib/x is var/lib/x under the current directory; absolute takes four slashes.
    wrong = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in USER_DOCS
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _ABSOLUTE_LOOKING.search(line)
    ]
    assert len(USER_DOCS) >= 5 and wrong == [], "write sqlite:////ABSOLUTE/PATH:\n" + "\n".join(wrong)


def test_the_absolute_sqlite_example_is_absolute(tmp_path: Path) -> None:
    # The documented form resolves to the absolute file, as the leveldb:///ABSOLUTE/PATH examples do.
    from sqlalchemy.engine import make_url

    assert make_url("sqlite:////var/lib/app/store.sqlite3").database == "/var/lib/app/store.sqlite3"
    assert make_url("sqlite:///var/lib/app/store.sqlite3").database == "var/lib/app/store.sqlite3"
