"""Plugin discovery: fake entry points, blocked, duplicate, missing, broken."""

from __future__ import annotations

import importlib.metadata
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
from airssys_storage_memory import MemoryBackend

from airssys_storage import (
    PermissionPolicy,
    PluginError,
    PluginRegistry,
    QuotaStrategy,
    StorageManager,
    StorageSettings,
    hookimpl,
)


def make_plugin(module_name: str, **hooks: Any) -> str:
    """Install a module with the given hook implementations into sys.modules."""
    module = types.ModuleType(module_name)
    for hook_name, classes in hooks.items():

        def impl(classes: Any = classes) -> Any:
            if isinstance(classes, Exception):
                raise classes
            return classes

        impl.__name__ = hook_name
        setattr(module, hook_name, hookimpl(impl))
    sys.modules[module_name] = module
    return module_name


def ep(name: str, module: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name, module, "airssys_storage")


@pytest.fixture(autouse=True)
def clean_modules() -> Iterator[None]:
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("fake_airssys_"):
            del sys.modules[name]


class OtherMemory(MemoryBackend):
    name = "memory"


class Schemeless(MemoryBackend):
    name = "schemeless"
    url_schemes = ("memory",)


class RedisLike(MemoryBackend):
    name = "redislike"
    url_schemes = ("redislike",)


class TenPercent(QuotaStrategy):
    name = "tiny"

    def limit_for(self, manifest: Any) -> int | None:
        return 10


def test_installed_entry_points_and_builtins() -> None:
    registry = PluginRegistry.load()
    rows = registry.describe()
    kinds = {(row["kind"], row["name"]) for row in rows}
    assert ("backend", "memory") in kinds
    assert ("permission policy", "manifest") in kinds
    assert ("quota strategy", "manifest") in kinds
    assert ("quota strategy", "fixed") in kinds
    memory = next(row for row in rows if row["name"] == "memory")
    assert memory["distribution"] == "airssys-storage-memory"
    assert memory["url_schemes"] == ["memory"]
    assert memory["version"]


def test_fake_entry_point_registers_a_backend() -> None:
    module = make_plugin("fake_airssys_redis", register_backends=[RedisLike])
    registry = PluginRegistry.load(entry_points=[ep("redislike", module)])
    assert registry.backend_for_url("redislike://host/0") is RedisLike
    assert registry.backend_for_url("REDISLIKE+driver://x") is RedisLike


def test_duplicate_backend_name_fails_naming_both_plugins() -> None:
    first = make_plugin("fake_airssys_one", register_backends=[MemoryBackend])
    second = make_plugin("fake_airssys_two", register_backends=[OtherMemory])
    with pytest.raises(PluginError) as info:
        PluginRegistry.load(entry_points=[ep("one", first), ep("two", second)])
    message = str(info.value)
    assert "'memory'" in message and "'one'" in message and "'two'" in message


def test_duplicate_scheme_fails_naming_both() -> None:
    first = make_plugin("fake_airssys_one", register_backends=[MemoryBackend])
    second = make_plugin("fake_airssys_two", register_backends=[Schemeless])
    with pytest.raises(PluginError) as info:
        PluginRegistry.load(entry_points=[ep("one", first), ep("two", second)])
    assert "scheme 'memory'" in str(info.value)
    assert "'one'" in str(info.value) and "'two'" in str(info.value)


def test_duplicate_policy_name_with_builtin() -> None:
    class Clash(PermissionPolicy):
        name = "manifest"

    module = make_plugin("fake_airssys_clash", register_permission_policies=[Clash])
    with pytest.raises(PluginError) as info:
        PluginRegistry.load(entry_points=[ep("clash", module)])
    assert "'builtin'" in str(info.value) and "'clash'" in str(info.value)


def test_blocked_plugin_is_not_loaded() -> None:
    module = make_plugin("fake_airssys_redis", register_backends=[RedisLike])
    registry = PluginRegistry.load(blocked=["redislike"], entry_points=[ep("redislike", module)])
    with pytest.raises(PluginError):
        registry.backend_for_url("redislike://")


def test_blocking_resolves_a_duplicate() -> None:
    first = make_plugin("fake_airssys_one", register_backends=[MemoryBackend])
    second = make_plugin("fake_airssys_two", register_backends=[OtherMemory])
    registry = PluginRegistry.load(blocked=["two"], entry_points=[ep("one", first), ep("two", second)])
    assert registry.backend_for_url("memory://") is MemoryBackend


def test_unknown_backend_lists_installed_and_pip_command() -> None:
    registry = PluginRegistry.load()
    with pytest.raises(PluginError) as info:
        registry.backend_for_url("leveldbx:///tmp/x")
    message = str(info.value)
    assert "installed schemes: " in message and "memory" in message
    assert "pip install the plugin that serves it (e.g. airssys-storage-leveldbx)" in message


def test_known_scheme_hint_names_the_right_distribution() -> None:
    registry = PluginRegistry.load(entry_points=[])
    with pytest.raises(PluginError) as info:
        registry.backend_for_url("postgresql+psycopg://user:hunter2@db/x")
    # The packages are not on PyPI yet: the hint is the plugin's directory in a clone (issue 9).
    assert "pip install './plugins/airssys-storage-sql[postgresql]' in the root of a clone" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_unknown_policy_and_strategy() -> None:
    registry = PluginRegistry.load()
    with pytest.raises(PluginError) as info:
        registry.policy("rbac")
    assert "installed: manifest" in str(info.value)
    assert "pip install airssys-storage-rbac" in str(info.value)
    with pytest.raises(PluginError) as info:
        registry.quota_strategy("elastic")
    assert "fixed, manifest" in str(info.value)


def test_broken_plugin_is_reported_and_fatal_only_when_selected(caplog: pytest.LogCaptureFixture) -> None:
    broken = ep("leveldbish", "fake_airssys_does_not_exist")
    memory = make_plugin("fake_airssys_mem", register_backends=[MemoryBackend])
    registry = PluginRegistry.load(entry_points=[broken, ep("memory", memory)])
    assert "leveldbish" in registry.failures
    assert "ModuleNotFoundError" in registry.failures["leveldbish"]
    assert "leveldbish" in caplog.text
    assert registry.backend_for_url("memory://") is MemoryBackend  # unaffected
    with pytest.raises(PluginError) as info:
        registry.backend_for_url("leveldbish:///x")
    assert "failed to load" in str(info.value) and "ModuleNotFoundError" in str(info.value)


def test_plugin_whose_registration_hook_raises_is_named() -> None:
    module = make_plugin("fake_airssys_raises", register_backends=RuntimeError("boom"))
    with pytest.raises(PluginError) as info:
        PluginRegistry.load(entry_points=[ep("raises", module)])
    assert "'raises'" in str(info.value) and "register_backends" in str(info.value) and "boom" in str(info.value)


def test_registered_class_must_subclass_the_base() -> None:
    module = make_plugin("fake_airssys_wrong", register_backends=[TenPercent])
    with pytest.raises(PluginError) as info:
        PluginRegistry.load(entry_points=[ep("wrong", module)])
    assert "not a subclass of StorageBackend" in str(info.value)


def test_unknown_hook_is_rejected() -> None:
    module = make_plugin("fake_airssys_typo", register_backend=[RedisLike])
    with pytest.raises(PluginError) as info:
        PluginRegistry.load(entry_points=[ep("typo", module)])
    assert "register_backend" in str(info.value)


def test_third_party_quota_strategy_is_selected_by_settings() -> None:
    from airssys_storage import Access, Manifest, QuotaExceeded

    module = make_plugin("fake_airssys_quota", register_quota_strategies=[TenPercent])
    memory = make_plugin("fake_airssys_mem", register_backends=[MemoryBackend])
    registry = PluginRegistry.load(entry_points=[ep("tiny", module), ep("memory", memory)])
    settings = StorageSettings(url="memory://", quota_strategy="tiny")
    with StorageManager.from_settings(settings, registry=registry) as manager:
        store = manager.component(Manifest("app", Access.READ_WRITE))
        store.set("k", b"123456789")
        with pytest.raises(QuotaExceeded):
            store.set("j", b"")


def test_builtin_plugin_goes_through_the_same_hooks() -> None:
    registry = PluginRegistry.load(blocked=["builtin"], entry_points=[])
    with pytest.raises(PluginError):
        registry.policy("manifest")


def test_importing_the_package_loads_nothing() -> None:
    import subprocess

    code = (
        "import sys, airssys_storage; "
        "assert 'airssys_storage_memory' not in sys.modules, 'plugin imported at import time'; "
        "print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.stdout.strip() == "ok", result.stderr


def test_plugins_that_only_add_commands_are_listed() -> None:
    def register_commands(cli: Any) -> None:
        return None

    module = types.ModuleType("fake_airssys_cmds")
    module.register_commands = hookimpl(register_commands)  # type: ignore[attr-defined]
    sys.modules["fake_airssys_cmds"] = module
    rows = PluginRegistry.load(entry_points=[ep("cmds", "fake_airssys_cmds")]).describe()
    assert {"name": "cmds", "kind": "commands", "plugin": "cmds"}.items() <= next(
        row for row in rows if row["name"] == "cmds"
    ).items()
