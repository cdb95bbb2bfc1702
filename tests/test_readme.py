"""The README's examples run as written: the ten-line example and the three plugins."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from airssys_storage import (
    Access,
    Manifest,
    PermissionDenied,
    PluginRegistry,
    QuotaExceeded,
    StorageManager,
    StorageSettings,
)
from airssys_storage.testing import BackendConformance

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def python_block_after(heading: str, index: int = 0) -> str:
    section = README[README.index(heading) :]
    return re.findall(r"```python\n(.*?)```", section, re.S)[index]


def load_module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"README:{name}", "exec"), module.__dict__)
    sys.modules[name] = module
    return module


def registry_with(name: str, module_name: str, source: str) -> PluginRegistry:
    load_module(module_name, source)
    installed = list(importlib.metadata.entry_points(group="airssys_storage"))
    return PluginRegistry.load(
        entry_points=[*installed, importlib.metadata.EntryPoint(name, module_name, "airssys_storage")]
    )


def test_ten_line_example(capsys: pytest.CaptureFixture[str]) -> None:
    exec(python_block_after("## Python in ten lines"), {})
    assert capsys.readouterr().out == "['user:alice'] 21\n"


class TestReadmeBackend(BackendConformance):
    """The README's backend example passes the whole conformance suite."""

    @pytest.fixture
    def storage_url(self) -> str:
        return "dictdb://"

    @pytest.fixture
    def manager_factory(self, storage_settings: StorageSettings) -> Callable[[], StorageManager]:
        registry = registry_with("dictdb", "airssys_storage_dictdb", python_block_after("### A backend"))
        return lambda: StorageManager.from_settings(storage_settings, registry=registry)


def test_readme_conformance_example_is_the_one_tested_here() -> None:
    example = python_block_after("### A backend", 1)
    assert "class TestDictBackend(BackendConformance)" in example
    assert 'return "dictdb://"' in example


def test_readme_policy() -> None:
    registry = registry_with("nosecrets", "airssys_storage_nosecrets", python_block_after("### A permission policy"))
    settings = StorageSettings(url="memory://", policies=["manifest", "no-secrets"])
    with StorageManager.from_settings(settings, registry=registry) as manager:
        store = manager.component(Manifest("app", Access.READ_WRITE))
        store.set("public", b"1")
        with pytest.raises(PermissionDenied):
            store.set("secret/token", b"1")


def test_readme_quota_strategy() -> None:
    registry = registry_with("flatquota", "airssys_storage_flatquota", python_block_after("### A quota strategy"))
    settings = StorageSettings(url="memory://", quota_strategy="one-megabyte")
    with StorageManager.from_settings(settings, registry=registry) as manager:
        store = manager.component(Manifest("app", Access.ADMIN, "500MB"))
        assert store.quota == 1024 * 1024
        with pytest.raises(QuotaExceeded, match=r"raise the limit: it is the one-megabyte strategy.s fixed 1 MiB"):
            store.set("k", b"x" * 1024 * 1024)
