"""Operator commands under a configuration whose ``plugin_options`` set up a third-party policy and quota strategy.

Operator access replaces the policies and the quota strategy (admin rights,
no quota unless ``--manifest``), so the configured plugins' tables must not
make the derived settings invalid; the configured ones are still validated
(the same check ``config --check`` runs).
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Run
from pydantic import BaseModel, Field

from airssys_storage import (
    WRITE_OPERATIONS,
    Access,
    ConfigurationError,
    PermissionPolicy,
    QuotaStrategy,
    StorageManager,
    StorageSettings,
    hookimpl,
    register_plugin,
    unregister_plugin,
)
from airssys_storage.exchange import operator_settings, operator_storage


class NoSecrets(PermissionPolicy):
    """The README's example policy."""

    name = "no-secrets"
    uses_key = True
    operations = WRITE_OPERATIONS

    class Options(BaseModel):
        prefix: str = "secret/"

    def check(self, manifest: Any, operation: Any, key: str | None) -> bool | None:
        if key is not None and key.startswith(self.options.prefix):
            return False
        return None


class FlatQuota(QuotaStrategy):
    """The README's example quota strategy."""

    name = "flat"

    class Options(BaseModel):
        limit: int = Field(default=1024 * 1024, ge=0)

    def limit_for(self, manifest: Any) -> int:
        return 0 if manifest.access in (Access.NONE, Access.READ_ONLY) else self.options.limit

    def describe_limit(self, manifest: Any) -> str:
        return f"it is the flat strategy's limit of {self.options.limit} bytes (plugin_options.flat.limit)"


@pytest.fixture(autouse=True)
def readme_plugins() -> Iterator[None]:
    module = types.ModuleType("readme_plugins")

    @hookimpl
    def register_permission_policies() -> list[type[PermissionPolicy]]:
        return [NoSecrets]

    @hookimpl
    def register_quota_strategies() -> list[type[QuotaStrategy]]:
        return [FlatQuota]

    module.register_permission_policies = register_permission_policies  # type: ignore[attr-defined]
    module.register_quota_strategies = register_quota_strategies  # type: ignore[attr-defined]
    name = register_plugin(module, name="readme-plugins")
    yield
    unregister_plugin(name)


NO_SECRETS = {
    "AIRSSYS_STORAGE_POLICIES": '["manifest","no-secrets"]',
    "AIRSSYS_STORAGE_PLUGIN_OPTIONS": '{"no-secrets":{"prefix":"private/"}}',
}
FLAT = {"AIRSSYS_STORAGE_QUOTA_STRATEGY": "flat", "AIRSSYS_STORAGE_PLUGIN_OPTIONS": '{"flat":{"limit":10}}'}


@pytest.mark.parametrize("env", [NO_SECRETS, FLAT], ids=["policy", "strategy"])
def test_every_operator_command_works_with_plugin_options(cli: Run, tmp_path: Path, env: dict[str, str]) -> None:
    url = ["--url", f"sqlite:///{tmp_path}/store.sqlite3"]
    export = tmp_path / "a.jsonl"
    commands = [
        ["set", "-c", "app", "private/k", "value", *url],
        ["get", "-c", "app", "private/k", *url],
        ["keys", "-c", "app", *url],
        ["size", "-c", "app", *url],
        ["export", "-c", "app", "-o", str(export), *url],
        ["import", str(export), "--replace", *url],
        ["stats", "--json", *url],
        ["verify", "--json", *url],
        ["bench", "--ops", "5", "--json", *url],
        ["config", "--check", *url],
    ]
    for command in commands:
        result = cli(*command, env=env)
        assert result.exit_code == 0, (command, result.stderr)
    assert cli("get", "-c", "app", "private/k", *url, env=env).stdout == "value"


def test_set_with_manifest_uses_the_configured_strategy_and_its_options(cli: Run, tmp_path: Path) -> None:
    manifest = tmp_path / "app.toml"
    manifest.write_text('[component]\nid = "app"\n[permissions.storage]\naccess = "read-write"\n')
    url = ["--url", f"sqlite:///{tmp_path}/store.sqlite3"]
    fits = cli("set", "-c", "app", "k", "12345", "--manifest", str(manifest), *url, env=FLAT)
    assert fits.exit_code == 0, fits.stderr
    refused = cli("set", "-c", "app", "k2", "123456789", "--manifest", str(manifest), *url, env=FLAT)
    assert refused.exit_code != 0
    assert "flat strategy's limit of 10 bytes" in refused.stderr


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ('{"nope":{"a":1}}', "plugin_options names 'nope'"),
        ('{"manifest":{"a":1}}', "plugin_options.manifest"),
        ('{"flat":{"limit":-1}}', "plugin_options.flat.limit"),
    ],
)
def test_config_check_refuses_what_data_commands_refuse(cli: Run, tmp_path: Path, options: str, names: str) -> None:
    env = {"AIRSSYS_STORAGE_QUOTA_STRATEGY": "flat", "AIRSSYS_STORAGE_PLUGIN_OPTIONS": options}
    url = ["--url", f"sqlite:///{tmp_path}/store.sqlite3"]
    checked = cli("config", "--check", *url, env=env)
    data = cli("keys", "-c", "app", *url, env=env)
    assert checked.exit_code == data.exit_code == 3, (checked.stderr, data.stderr)
    assert names in checked.stderr and names in data.stderr
    # the names the user configured, not the operator's replacements
    assert "quota strategy ('fixed')" not in data.stderr
    plain = cli("config", "--json", *url, env=env)
    assert plain.exit_code == 0 and any(names in p for p in json.loads(plain.stdout)["problems"])


def test_operator_settings_of_valid_settings_are_valid(tmp_path: Path) -> None:
    settings = StorageSettings(
        url=f"sqlite:///{tmp_path}/store.sqlite3",
        policies=["manifest", "no-secrets"],
        quota_strategy="flat",
        plugin_options={"no-secrets": {"prefix": "private/"}, "flat": {"limit": 10}},
    )
    with StorageManager.from_settings(settings):
        pass
    derived = operator_settings(settings)
    assert derived.plugin_options == {}
    with StorageManager.from_settings(derived) as manager:
        operator_storage(manager, "app").set("private/k", b"x" * 100)
    with pytest.raises(ConfigurationError, match="plugin_options names 'nope'"):
        StorageManager.from_settings(operator_settings(settings).model_copy(update={"plugin_options": {"nope": {}}}))
