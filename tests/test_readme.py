"""The README's examples run as written: the ten-line example and the three plugins."""

from __future__ import annotations

import re
import sys
import tomllib
import types
from collections.abc import Callable
from pathlib import Path

import pytest

import airssys_storage
from airssys_storage import (
    Access,
    ConfigurationError,
    Manifest,
    PermissionDenied,
    PluginRegistry,
    QuotaExceeded,
    StorageManager,
    StorageSettings,
)
from airssys_storage.testing import BackendConformance, FakeClock

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
    return PluginRegistry.load(plugins={name: load_module(module_name, source)})


def test_ten_line_example(capsys: pytest.CaptureFixture[str]) -> None:
    exec(python_block_after("## Python in ten lines"), {})
    assert capsys.readouterr().out == "['user:alice'] 21\n"


class TestReadmeBackend(BackendConformance):
    """The README's backend example passes the whole conformance suite."""

    @pytest.fixture
    def storage_url(self) -> str:
        return "dictdb://"

    @pytest.fixture
    def manager_factory(self, storage_settings: StorageSettings, clock: FakeClock) -> Callable[[], StorageManager]:
        registry = registry_with("dictdb", "airssys_storage_dictdb", python_block_after("### A backend"))
        return lambda: StorageManager.from_settings(storage_settings, registry=registry, clock=clock)


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
        assert "get" in store._state.fast_allowed  # reads are not asked
    options = tomllib.loads(toml_block_after("### A permission policy"))
    configured = StorageSettings(url="memory://", policies=["manifest", "no-secrets"], **options)
    with StorageManager.from_settings(configured, registry=registry) as manager:
        store = manager.component(Manifest("app", Access.READ_WRITE))
        store.set("secret/token", b"1")
        with pytest.raises(PermissionDenied):
            store.set("private/token", b"1")


def test_readme_quota_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = registry_with("flatquota", "airssys_storage_flatquota", python_block_after("### A quota strategy"))
    settings = StorageSettings(url="memory://", quota_strategy="flat")
    with StorageManager.from_settings(settings, registry=registry) as manager:
        store = manager.component(Manifest("app", Access.ADMIN, "500MB"))
        assert store.quota == 1024 * 1024
        with pytest.raises(QuotaExceeded, match=r"raise the limit: it is the flat strategy.s limit of 1048576 bytes"):
            store.set("k", b"x" * 1024 * 1024)
    section = README[README.index("### A quota strategy") :]
    variable = re.search(r"AIRSSYS_STORAGE_PLUGIN_OPTIONS='(.*?)'", section)
    assert variable is not None
    monkeypatch.setenv("AIRSSYS_STORAGE_PLUGIN_OPTIONS", variable.group(1))
    with StorageManager.from_settings(StorageSettings(url="memory://", quota_strategy="flat"), registry=registry) as m:
        assert m.component(Manifest("app", Access.ADMIN)).quota == 5_000_000


def test_readme_in_process_registration() -> None:
    module = load_module("airssys_storage_dictdb", python_block_after("### A backend"))
    namespace = {"my_plugin_module": module, "settings": StorageSettings(url="dictdb://")}
    try:
        exec(python_block_after("### Registering a plugin in-process"), namespace)
        assert type(namespace["manager"].backend).__name__ == "DictBackend"
        namespace["manager"].close()
    finally:
        airssys_storage.unregister_plugin("dictdb")


def test_readme_backend_options() -> None:
    """The options example: open() gets the validated instance; bad options are a ConfigurationError."""
    module = load_module("airssys_storage_dictdb", python_block_after("### A backend"))
    namespace = dict(module.__dict__)
    exec(python_block_after("#### Backend options"), namespace)
    backend_cls = namespace["LimitedDictBackend"]
    assert backend_cls.open("dictdb-limited://", {"max_namespaces": 5}).max_namespaces == 5
    assert backend_cls.open("dictdb-limited://", backend_cls.parse_options({})).max_namespaces == 1000
    for bad, named in (({"max_namespaces": 0}, "max_namespaces=0"), ({"max_namespace": 1}, "did you mean")):
        with pytest.raises(ConfigurationError, match=named):
            backend_cls.open("dictdb-limited://", bad)


def toml_block_after(heading: str) -> str:
    section = README[README.index(heading) :]
    return re.findall(r"```toml\n(.*?)```", section, re.S)[0]


def test_transactions_example_runs() -> None:
    """The Transactions example commits both writes at once."""
    with StorageManager.from_settings(StorageSettings(url="memory://")) as manager:
        storage = manager.component(Manifest(id="shop", access="read-write"))
        exec(python_block_after("### Transactions"), {"storage": storage})
        assert storage.get("order:17") == b"paid" and storage.get("orders") == b"1"
