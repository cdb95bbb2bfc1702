"""Plugin discovery: fake entry points, blocked, duplicate, missing, broken."""

from __future__ import annotations

import importlib.metadata
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
from airssys_storage_memory import MemoryBackend
from pydantic import BaseModel, ConfigDict, Field

from airssys_storage import (
    Access,
    Manifest,
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


def plugin_object(**hooks: Any) -> types.ModuleType:
    """An in-process plugin (a module never put in sys.modules) with the given hook implementations."""
    return sys.modules.pop(make_plugin("fake_airssys_in_process", **hooks))


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


def test_duplicate_backend_name_fails_naming_both_plugins_only_when_selected() -> None:
    first = make_plugin("fake_airssys_one", register_backends=[MemoryBackend])
    second = make_plugin("fake_airssys_two", register_backends=[OtherMemory, RedisLike])
    registry = PluginRegistry.load(entry_points=[ep("one", first), ep("two", second)])
    assert registry.backend_for_url("redislike://") is RedisLike  # the rest of both plugins works
    with pytest.raises(PluginError) as info:
        registry.backend_for_url("memory://")
    message = str(info.value)
    assert "'memory'" in message and "'one'" in message and "'two'" in message and "blocked_plugins" in message


def test_duplicate_scheme_fails_naming_both() -> None:
    first = make_plugin("fake_airssys_one", register_backends=[MemoryBackend])
    second = make_plugin("fake_airssys_two", register_backends=[Schemeless])
    registry = PluginRegistry.load(entry_points=[ep("one", first), ep("two", second)])
    with pytest.raises(PluginError) as info:
        registry.backend_for_url("memory://")
    assert "scheme 'memory'" in str(info.value)
    assert "'one'" in str(info.value) and "'two'" in str(info.value)


def test_duplicate_policy_name_with_builtin() -> None:
    class Clash(PermissionPolicy):
        name = "manifest"

    registry = PluginRegistry.load(
        entry_points=[], plugins={"clash": plugin_object(register_permission_policies=[Clash])}
    )
    assert registry.quota_strategy("manifest").name == "manifest"
    with pytest.raises(PluginError) as info:
        registry.policy("manifest")
    assert "'builtin'" in str(info.value) and "'clash'" in str(info.value)


def test_blocked_plugin_is_not_loaded() -> None:
    module = make_plugin("fake_airssys_redis", register_backends=[RedisLike])
    registry = PluginRegistry.load(blocked=["redislike"], entry_points=[ep("redislike", module)])
    assert "fake_airssys_redis" in sys.modules  # (made above) but never registered
    with pytest.raises(PluginError):
        registry.backend_for_url("redislike://")


def test_blocking_resolves_a_duplicate() -> None:
    first = make_plugin("fake_airssys_one", register_backends=[MemoryBackend])
    second = make_plugin("fake_airssys_two", register_backends=[OtherMemory])
    registry = PluginRegistry.load(blocked=["two"], entry_points=[ep("one", first), ep("two", second)])
    assert registry.backend_for_url("memory://") is MemoryBackend


def test_unknown_backend_lists_installed_and_invents_no_distribution() -> None:
    registry = PluginRegistry.load()
    with pytest.raises(PluginError) as info:
        registry.backend_for_url("leveldbx:///tmp/x")
    message = str(info.value)
    assert "installed schemes: " in message and "memory" in message
    assert "pip install" not in message  # no distribution of this project is called airssys-storage-leveldbx
    assert "No distribution of this project provides it" in message


def test_known_scheme_hint_names_the_right_distribution() -> None:
    registry = PluginRegistry.load(entry_points=[])
    with pytest.raises(PluginError) as info:
        registry.backend_for_url("postgresql+psycopg://user:hunter2@db/x")
    # The packages are not on PyPI yet: the hint is the plugin's directory in a clone (issue 9).
    assert "pip install './plugins/airssys-storage-sql[postgresql]' in the root of a clone" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_install_hints_name_real_distributions() -> None:
    """Every hint names a directory of this repository holding that distribution (and its extras)."""
    import tomllib
    from pathlib import Path

    from airssys_storage.plugins import KNOWN_SCHEME_DISTRIBUTIONS

    root = Path(__file__).resolve().parents[1]
    real: set[str] = set()
    for pyproject in [*root.glob("plugins/*/pyproject.toml"), *root.glob("contrib/*/pyproject.toml")]:
        project = tomllib.loads(pyproject.read_text())["project"]
        directory = f"./{pyproject.parent.relative_to(root)}"
        assert pyproject.parent.name == project["name"]
        real.add(directory)
        real.update(f"{directory}[{extra}]" for extra in project.get("optional-dependencies", {}))
    assert set(KNOWN_SCHEME_DISTRIBUTIONS.values()) <= real


def test_unknown_policy_and_strategy() -> None:
    registry = PluginRegistry.load()
    with pytest.raises(PluginError) as info:
        registry.policy("rbac")
    assert "installed: manifest" in str(info.value)
    assert "pip install" not in str(info.value)
    with pytest.raises(PluginError) as info:
        registry.quota_strategy("elastic")
    assert "fixed, manifest" in str(info.value)


def test_blocked_policy_says_blocked_by_settings_not_a_pip_hint() -> None:
    """Issue 9 §3: a blocked policy suggested the non-existent airssys-storage-keyprefix."""

    class KeyPrefix(PermissionPolicy):
        name = "keyprefix"

    module = make_plugin("fake_airssys_keyprefix", register_permission_policies=[KeyPrefix])
    registry = PluginRegistry.load(blocked=["keyprefix"], entry_points=[ep("keyprefix", module)])
    with pytest.raises(PluginError) as info:
        registry.policy("keyprefix")
    message = str(info.value)
    assert "blocked by settings (blocked_plugins)" in message and "'keyprefix'" in message
    assert "pip install" not in message and "not installed" not in message.split(":")[-1]


def test_blocked_backend_and_builtin_say_blocked_by_settings() -> None:
    memory = [e for e in importlib.metadata.entry_points(group="airssys_storage") if e.name == "memory"]
    registry = PluginRegistry.load(blocked=["memory", "builtin"], entry_points=memory)
    with pytest.raises(PluginError, match=r"'memory', which provides it, is blocked by settings") as info:
        registry.backend_for_url("memory://")
    assert "pip install" not in str(info.value)
    with pytest.raises(PluginError, match=r"'builtin', which provides it, is blocked by settings"):
        registry.quota_strategy("fixed")


def test_broken_plugin_is_reported_and_fatal_only_when_selected(caplog: pytest.LogCaptureFixture) -> None:
    broken = ep("leveldbish", "fake_airssys_does_not_exist")
    memory = make_plugin("fake_airssys_mem", register_backends=[MemoryBackend])
    registry = PluginRegistry.load(entry_points=[broken, ep("memory", memory)])
    assert "leveldbish" in registry.failures
    assert "ModuleNotFoundError" in registry.failures["leveldbish"]
    assert "leveldbish" in caplog.text and "blocked_plugins" in caplog.text
    assert registry.backend_for_url("memory://") is MemoryBackend  # unaffected
    with pytest.raises(PluginError) as info:
        registry.backend_for_url("leveldbish:///x")
    message = str(info.value)
    assert "'leveldbish'" in message and "is broken" in message and "ModuleNotFoundError" in message
    assert "blocked_plugins" in message


class _Exits:
    """A plugin object whose hooks end the process, as a careless plugin might."""

    @hookimpl
    def register_backends(self) -> list[Any]:
        raise SystemExit(2)


JUNK = {
    "raises": RuntimeError("boom"),
    "not-a-list": MemoryBackend,
    "a-string": "memory",
    "not-a-class": [object()],
    "wrong-base": [TenPercent],
    "nameless": [type("Nameless", (MemoryBackend,), {"name": ""})],
}


@pytest.mark.parametrize("junk", list(JUNK), ids=list(JUNK))
def test_a_junk_registration_is_skipped_and_memory_still_works(junk: str, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 9 §3: register_backends() raising or returning junk must not stop a host on memory://."""
    bad = plugin_object(register_backends=JUNK[junk], register_quota_strategies=[TenPercent])
    registry = PluginRegistry.load(plugins={"bad": bad})
    assert "bad" in registry.failures and "register_backends()" in registry.failures["bad"]
    assert "'bad'" in caplog.text
    with StorageManager.from_settings(StorageSettings(url="memory://"), registry=registry) as manager:
        manager.component(Manifest("app", Access.READ_WRITE)).set("k", b"v")
    # The whole plugin is skipped: its valid strategy is not registered, and selecting it names the plugin.
    with pytest.raises(PluginError) as info:
        registry.quota_strategy("tiny")
    assert "'bad'" in str(info.value) and "is broken" in str(info.value) and "blocked_plugins" in str(info.value)


def test_a_registration_hook_calling_sys_exit_is_skipped() -> None:
    registry = PluginRegistry.load(plugins={"exits": _Exits()})
    assert registry.failures["exits"] == "register_backends() raised SystemExit: 2"
    assert registry.backend_for_url("memory://") is MemoryBackend


def test_a_plugin_calling_sys_exit_at_import_is_skipped(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 9 §3: a plugin calling sys.exit() at import ended the host."""
    (tmp_path / "fake_airssys_exit_at_import.py").write_text("import sys\nsys.exit('no config')\n")
    (tmp_path / "fake_airssys_raise_at_import.py").write_text("raise ImportError('missing libfoo.so')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    installed = list(importlib.metadata.entry_points(group="airssys_storage"))
    registry = PluginRegistry.load(
        entry_points=[
            *installed,
            ep("exits", "fake_airssys_exit_at_import"),
            ep("raises", "fake_airssys_raise_at_import"),
        ]
    )
    assert registry.failures["exits"] == "SystemExit: no config"
    assert registry.failures["raises"] == "ImportError: missing libfoo.so"
    assert registry.backend_for_url("memory://") is MemoryBackend


def test_unknown_hook_is_a_broken_plugin() -> None:
    module = make_plugin("fake_airssys_typo", register_backend=[RedisLike])
    registry = PluginRegistry.load(entry_points=[ep("typo", module)])
    assert "register_backend" in registry.failures["typo"]
    assert registry.policy("manifest").name == "manifest"


def test_hook_implementations_may_take_fewer_arguments() -> None:
    """Issue 9 §3: register_commands() without the cli argument is valid pluggy and must work."""
    calls: list[str] = []

    class NoArgs:
        @hookimpl
        def register_commands(self) -> None:
            calls.append("called")

    registry = PluginRegistry.load(plugins={"noargs": NoArgs()})
    import click

    registry.register_commands(click.Group())
    assert calls == ["called"]
    assert "noargs" not in registry.failures


def test_register_plugin_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    import airssys_storage

    plugin = plugin_object(register_backends=[RedisLike])
    name = airssys_storage.register_plugin(plugin, name="redislike")
    try:
        assert name == "redislike"
        settings = StorageSettings(url="redislike://")
        with StorageManager.from_settings(settings) as manager:
            assert isinstance(manager.backend, RedisLike)
        rows = PluginRegistry.load().describe()
        assert {"name": "redislike", "plugin": "redislike"}.items() <= next(
            row for row in rows if row["name"] == "redislike"
        ).items()
        assert PluginRegistry.load(blocked=["redislike"])._schemes.get("redislike") is None
    finally:
        airssys_storage.unregister_plugin("redislike")
    with pytest.raises(PluginError):
        PluginRegistry.load().backend_for_url("redislike://")


def test_an_unhashable_plugin_object_is_broken_not_fatal() -> None:
    unhashable = types.SimpleNamespace(register_backends=hookimpl(lambda: [RedisLike]))
    registry = PluginRegistry.load(plugins={"unhashable": unhashable})
    assert registry.failures["unhashable"].startswith("TypeError: unhashable")
    assert registry.backend_for_url("memory://") is MemoryBackend


def test_register_plugin_names_a_module_by_its_name() -> None:
    import airssys_storage

    module = types.ModuleType("fake_airssys_named")
    try:
        assert airssys_storage.register_plugin(module) == "fake_airssys_named"
    finally:
        airssys_storage.unregister_plugin("fake_airssys_named")


def test_third_party_quota_strategy_is_selected_by_settings() -> None:
    from airssys_storage import QuotaExceeded

    registry = PluginRegistry.load(plugins={"tiny": plugin_object(register_quota_strategies=[TenPercent])})
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
    rows = PluginRegistry.load(plugins={"cmds": module}).describe()
    assert {"name": "cmds", "kind": "commands", "plugin": "cmds"}.items() <= next(
        row for row in rows if row["name"] == "cmds"
    ).items()


class _LimitOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(ge=0)


class OptionLimit(QuotaStrategy):
    """A third-party-style strategy whose limit comes from its options (issue 9 §6)."""

    name = "option-limit"
    Options = _LimitOptions

    def limit_for(self, manifest: Any) -> int | None:
        assert isinstance(self.options, _LimitOptions)
        return self.options.limit


def test_a_quota_strategy_takes_its_limit_from_plugin_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from airssys_storage import QuotaExceeded

    registry = PluginRegistry.load(plugins={"limits": plugin_object(register_quota_strategies=[OptionLimit])})
    monkeypatch.setenv("AIRSSYS_STORAGE_PLUGIN_OPTIONS", '{"option-limit": {"limit": 5}}')
    settings = StorageSettings(url="memory://", quota_strategy="option-limit")
    with StorageManager.from_settings(settings, registry=registry) as manager:
        store = manager.component(Manifest("app", Access.READ_WRITE))
        assert store.quota == 5
        store.set("k", b"1234")
        with pytest.raises(QuotaExceeded):
            store.set("j", b"")


def test_a_missing_required_option_names_the_plugin_and_field() -> None:
    from airssys_storage import ConfigurationError

    registry = PluginRegistry.load(plugins={"limits": plugin_object(register_quota_strategies=[OptionLimit])})
    settings = StorageSettings(url="memory://", quota_strategy="option-limit")
    with pytest.raises(ConfigurationError) as info:
        StorageManager.from_settings(settings, registry=registry)
    assert "quota strategy 'option-limit'" in str(info.value) and "plugin_options.option-limit.limit" in str(info.value)
