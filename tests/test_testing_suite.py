"""The shipped conformance suite itself: its dependencies, its docstrings, and that it catches what it claims."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from airssys_storage_memory import MemoryBackend

import airssys_storage.testing.conformance as conformance
from airssys_storage import PluginRegistry, StorageManager, StorageSettings, hookimpl
from airssys_storage.planner import Plan, Write, WriteKind
from airssys_storage.testing import BackendConformance


@pytest.mark.parametrize("missing", ["pytest", "hypothesis"])
def test_missing_test_dependencies_name_the_extra(missing: str) -> None:
    code = f"import sys; sys.modules[{missing!r}] = None; import airssys_storage.testing"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert f"({missing} is missing)" in last and "pip install 'airssys-storage[testing]'" in last


def test_the_testing_extra_lists_what_the_suite_imports() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[1]
    extra = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]["testing"]
    names = {requirement.split(">")[0].split("=")[0] for requirement in extra}
    imported: set[str] = set()
    for path in (root / "airssys_storage" / "testing").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"airssys_storage"}
    assert third_party == names == {"pytest", "hypothesis"}


def test_every_conformance_test_names_its_contract_clause() -> None:
    tests = [name for name in dir(BackendConformance) if name.startswith("test_")]
    assert len(tests) > 40
    for name in tests:
        doc = getattr(BackendConformance, name).__doc__
        assert doc and "\n" not in doc.strip(), f"{name} needs a one-line docstring naming its contract clause"


class NoUnlimited(MemoryBackend):
    """A backend that breaks on every unlimited write (issue 9 §6): the suite must catch it."""

    name = "no-unlimited"
    url_schemes = ("no-unlimited",)

    def apply(self, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        if limit is None:
            raise TypeError("'>' not supported between instances of 'int' and 'NoneType'")
        return super().apply(namespace, writes, limit)

    def put_one(self, namespace: str, key: bytes, value: bytes, limit: int | None) -> int:
        return self.apply(namespace, (Write(key, WriteKind.PUT, value),), limit).results[0]


class _Plugin:
    @staticmethod
    @hookimpl
    def register_backends() -> list[type[MemoryBackend]]:
        return [NoUnlimited]


@pytest.mark.parametrize(
    "test", ["test_unlimited_quota_on_every_backend_write_path", "test_unlimited_quota_through_the_api"]
)
def test_the_suite_fails_a_backend_that_breaks_on_unlimited_writes(test: str) -> None:
    registry = PluginRegistry.load(plugins={"no-unlimited": _Plugin})
    with StorageManager.from_settings(StorageSettings(url="no-unlimited://"), registry=registry) as manager:
        with pytest.raises(Exception, match="NoneType"):
            getattr(BackendConformance(), test)(manager)


def test_the_race_uses_records_that_fill_the_quota_exactly() -> None:
    key = f"w{conformance.RACE_PROCESSES - 1}-{119:03}"
    assert len(key) + conformance._RACE_VALUE == conformance._RACE_RECORD
    assert conformance._RACE_LIMIT % conformance._RACE_RECORD == 0
