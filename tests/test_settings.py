"""Settings: sources, precedence, defaults and typed errors that name field and value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airssys_storage import ConfigurationError, PluginError, StorageManager, StorageSettings
from airssys_storage.settings import default_url


def test_defaults() -> None:
    s = StorageSettings()
    assert s.url is None
    assert s.resolved_url == default_url()
    assert s.resolved_url.startswith("sqlite:///") and s.resolved_url.endswith("storage.sqlite3")
    assert s.policies == ["manifest"]
    assert s.quota_strategy == "manifest"
    assert (s.max_key_bytes, s.max_value_bytes, s.max_keys_per_query, s.max_batch_ops) == (
        256,
        1024 * 1024,
        10_000,
        100,
    )
    assert s.blocked_plugins == []
    assert s.op_id_retention_seconds == 600  # issue 10: at least 10 minutes by default
    assert s.expiry_sweep_interval is None  # no background sweeper unless configured


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRSSYS_STORAGE_URL", "memory://")
    monkeypatch.setenv("AIRSSYS_STORAGE_POLICIES", '["manifest", "extra"]')
    monkeypatch.setenv("AIRSSYS_STORAGE_MAX_BATCH_OPS", "7")
    s = StorageSettings()
    assert s.url == "memory://"
    assert s.policies == ["manifest", "extra"]
    assert s.max_batch_ops == 7


def test_toml_file_in_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "airssys-storage.toml").write_text('url = "memory://"\nmax_keys_per_query = 5\n')
    assert StorageSettings().max_keys_per_query == 5


def test_explicit_config_file_and_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "conf.toml"
    config.write_text('url = "memory://from-file"\nmax_batch_ops = 3\nquota_strategy = "fixed"\n')
    monkeypatch.setenv("AIRSSYS_STORAGE_CONFIG_FILE", str(config))
    monkeypatch.setenv("AIRSSYS_STORAGE_MAX_BATCH_OPS", "4")
    s = StorageSettings(quota_strategy="manifest")
    assert s.url == "memory://from-file"  # file
    assert s.max_batch_ops == 4  # env beats file
    assert s.quota_strategy == "manifest"  # argument beats env and file


def test_missing_explicit_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRSSYS_STORAGE_CONFIG_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigurationError) as info:
        StorageSettings()
    assert "nope.toml" in str(info.value)


def test_user_config_dir_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_home = tmp_path / "cfg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    (config_home / "airssys-storage").mkdir(parents=True)
    (config_home / "airssys-storage" / "config.toml").write_text("max_value_bytes = 10\n")
    assert StorageSettings().max_value_bytes == 10


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("url", "no-scheme-here"),
        ("max_key_bytes", 0),
        ("max_key_bytes", "many"),
        ("max_value_bytes", -1),
        ("max_keys_per_query", 0),
        ("max_batch_ops", -5),
        ("policies", []),
        ("fixed_quota_bytes", -1),
        ("max_key_bytes", True),  # outside trial: read as 1
        ("max_value_bytes", 1e3),  # outside trial: read as 1000
        ("fixed_quota_bytes", 2.0),
        ("blocked_plugins", "sql"),
        ("op_id_retention_seconds", 0),
        ("op_id_retention_seconds", float("inf")),
        ("op_id_retention_seconds", True),
        ("expiry_sweep_interval", -1),
        ("expiry_sweep_interval", float("nan")),
        ("expiry_sweep_interval", False),
        ("unknown_field", 1),
    ],
)
def test_bad_settings_name_field_and_value(field: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        StorageSettings(**{field: value})
    assert info.value.code == "invalid-config"
    assert field in str(info.value)
    assert repr(value) in str(info.value)


def test_whole_numbers_from_the_environment_and_a_file_still_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bool/float refusal does not touch strings from the environment or integers from TOML."""
    monkeypatch.setenv("AIRSSYS_STORAGE_MAX_KEY_BYTES", "128")
    (tmp_path / "airssys-storage.toml").write_text("max_value_bytes = 4096\n")
    monkeypatch.chdir(tmp_path)
    settings = StorageSettings()
    assert (settings.max_key_bytes, settings.max_value_bytes) == (128, 4096)


def test_bad_environment_value_is_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRSSYS_STORAGE_MAX_BATCH_OPS", "lots")
    with pytest.raises(ConfigurationError) as info:
        StorageSettings()
    assert "max_batch_ops" in str(info.value) and "lots" in str(info.value)


def test_settings_are_frozen() -> None:
    s = StorageSettings(url="memory://")
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error
        s.url = "x://"  # type: ignore[misc]


def test_unknown_backend_at_startup() -> None:
    with pytest.raises(PluginError) as info:
        StorageManager.from_settings(StorageSettings(url="nosuch://x"))
    assert "installed schemes:" in str(info.value)


def test_unknown_policy_at_startup() -> None:
    with pytest.raises(PluginError) as info:
        StorageManager.from_settings(StorageSettings(url="memory://", policies=["manifest", "nope"]))
    assert "'nope'" in str(info.value)


def test_backend_options_are_validated_by_the_backend() -> None:
    with pytest.raises(ConfigurationError) as info:
        StorageManager.from_settings(StorageSettings(url="memory://", backend_options={"bogus": 1}))
    assert "bogus" in str(info.value)


# -- fuzzing: any environment value either parses or raises ConfigurationError

FIELDS = [
    "URL",
    "POLICIES",
    "QUOTA_STRATEGY",
    "FIXED_QUOTA_BYTES",
    "MAX_KEY_BYTES",
    "MAX_VALUE_BYTES",
    "MAX_KEYS_PER_QUERY",
    "MAX_BATCH_OPS",
    "BLOCKED_PLUGINS",
    "BACKEND_OPTIONS",
]
env_values = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20),
    st.integers().map(str),
    st.builds(json.dumps, st.lists(st.text(max_size=5), max_size=3)),
    st.builds(json.dumps, st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), env_values, max_size=4))
def test_fuzzed_environment(values: dict[str, str]) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in values.items():
            monkeypatch.setenv(f"AIRSSYS_STORAGE_{name}", value)
        try:
            s = StorageSettings()
        except ConfigurationError as exc:
            assert exc.code == "invalid-config"
            assert "invalid settings" in str(exc)
            return
    assert s.max_key_bytes >= 1 and s.max_batch_ops >= 1 and s.max_keys_per_query >= 1
    assert s.policies


def test_broken_settings_file_is_typed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "airssys-storage.toml").write_text("url = = broken")
    with pytest.raises(ConfigurationError) as info:
        StorageSettings()
    assert "airssys-storage.toml" in str(info.value)


def test_durations_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRSSYS_STORAGE_OP_ID_RETENTION_SECONDS", "900")
    monkeypatch.setenv("AIRSSYS_STORAGE_EXPIRY_SWEEP_INTERVAL", "2.5")
    settings = StorageSettings()
    assert (settings.op_id_retention_seconds, settings.expiry_sweep_interval) == (900, 2.5)
