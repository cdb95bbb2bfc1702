"""The pydantic-free settings fast path equals StorageSettings, and leaves every doubtful input to it.

For a matrix of environment variables, settings files and arguments,
``read_plain`` either returns exactly the values (and ``resolved_url``) of
``StorageSettings`` or ``None``, never a different answer; invalid inputs
get the full path's error. The CLI's data commands give the same output
and exit code with and without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from cli_helpers import Run
from hypothesis import given, settings
from hypothesis import strategies as st

from airssys_storage import ConfigurationError, StorageSettings
from airssys_storage._settings_fast import FIELDS, PlainSettings, read_plain
from airssys_storage.cli import common

# -- the matrix ----------------------------------------------------------------

#: Environment variables (besides the config-file one); each entry is one alternative.
ENVIRONMENTS: list[dict[str, str]] = [
    {},
    {"AIRSSYS_STORAGE_URL": "memory://"},
    {"AIRSSYS_STORAGE_URL": "sqlite:////tmp/x/store.sqlite3", "AIRSSYS_STORAGE_MAX_BATCH_OPS": "7"},
    {"airssys_storage_url": "memory://lower"},  # names are case-insensitive
    {"AIRSSYS_STORAGE_URL": "memory://a", "airssys_storage_url": "memory://b"},
    {"AIRSSYS_STORAGE_MAX_KEY_BYTES": "007"},
    {"AIRSSYS_STORAGE_MAX_KEY_BYTES": " 12 "},
    {"AIRSSYS_STORAGE_MAX_KEY_BYTES": "65536"},
    {"AIRSSYS_STORAGE_MAX_KEY_BYTES": "65537"},
    {"AIRSSYS_STORAGE_MAX_KEY_BYTES": "0"},
    {"AIRSSYS_STORAGE_MAX_KEY_BYTES": "1_000"},
    {"AIRSSYS_STORAGE_MAX_KEY_BYTES": "many"},
    {"AIRSSYS_STORAGE_MAX_VALUE_BYTES": "0", "AIRSSYS_STORAGE_FIXED_QUOTA_BYTES": "10"},
    {"AIRSSYS_STORAGE_FIXED_QUOTA_BYTES": "null"},
    {"AIRSSYS_STORAGE_FIXED_QUOTA_BYTES": ""},
    {"AIRSSYS_STORAGE_POLICIES": '["manifest", "extra"]'},
    {"AIRSSYS_STORAGE_POLICIES": "[]"},
    {"AIRSSYS_STORAGE_POLICIES": "manifest"},
    {"AIRSSYS_STORAGE_POLICIES": "[1]"},
    {"AIRSSYS_STORAGE_BLOCKED_PLUGINS": '["leveldb"]'},
    {"AIRSSYS_STORAGE_BACKEND_OPTIONS": '{"timeout": 2, "nested": {"b": 2}}'},
    {"AIRSSYS_STORAGE_BACKEND_OPTIONS": "[1, 2]"},
    {"AIRSSYS_STORAGE_BACKEND_OPTIONS": ""},
    {"AIRSSYS_STORAGE_PLUGIN_OPTIONS": '{"fixed": {"x": 1}}'},
    {"AIRSSYS_STORAGE_PLUGIN_OPTIONS": '{"fixed": 1}'},
    {"AIRSSYS_STORAGE_QUOTA_STRATEGY": "fixed"},
    {"AIRSSYS_STORAGE_URL": "no-scheme"},
    {"AIRSSYS_STORAGE_URL": "memory://["},
    {"AIRSSYS_STORAGE_URL": "postgresql://h:99999/db"},
    {"AIRSSYS_STORAGE_URL": "sqlite:////tmp/a%00b"},
    {"AIRSSYS_STORAGE_BOGUS": "1"},  # other variables with the prefix are ignored
]

#: Settings files: None = no file; else (where, TOML text). "local" = ./airssys-storage.toml,
#: "explicit" = named by AIRSSYS_STORAGE_CONFIG_FILE, "missing" = that variable names no file.
FILES: list[tuple[str, str] | None] = [
    None,
    ("local", 'url = "memory://file"\nmax_keys_per_query = 5\n'),
    ("explicit", 'url = "sqlite:////tmp/f.db"\n[backend_options]\ntimeout = 3\nnested = { a = 1 }\n'),
    ("explicit", 'policies = ["manifest"]\nblocked_plugins = ["wasm"]\nquota_strategy = "fixed"\n'),
    ("explicit", 'quota_strategy = "fixed"\nfixed_quota_bytes = 100\n[plugin_options.fixed]\n'),
    ("local", "max_key_bytes = true\n"),
    ("local", "max_value_bytes = 1e3\n"),
    ("local", "fixed_quota_bytes = 2.0\n"),
    ("local", 'max_batch_ops = "12"\n'),
    ("local", "unknown_field = 1\n"),
    ("local", "url = 5\n"),
    ("local", "url = [broken\n"),
    ("local", "policies = []\n"),
    ("missing", ""),
    ("not-utf8", ""),
]

#: Arguments as the CLI passes them (StoreSpec.settings).
ARGUMENTS: list[dict[str, Any]] = [
    {},
    {"url": "memory://arg"},
    {"url": None},
    {"url": "sqlite:////tmp/arg.db", "backend_options": {}},
    {"url": "sqlite:////tmp/arg.db", "backend_options": {"nested": {"c": 3}}},
    {"backend_options": {"timeout": 9}},
    {"url": "bad"},
    {"unknown_field": 1},
    {"max_key_bytes": True},
]


@contextmanager
def configured(environment: Mapping[str, str], file: tuple[str, str] | None) -> Iterator[None]:
    """The process environment and working directory of one matrix cell (restored afterwards)."""
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        root = Path(tmp)
        for name in list(os.environ):
            if name.lower().startswith("airssys_storage_"):
                patch.delenv(name)
        patch.setenv("XDG_CONFIG_HOME", str(root / "config"))  # no user settings file of the machine
        patch.setenv("XDG_DATA_HOME", str(root / "data"))
        patch.chdir(root)
        for name, value in environment.items():
            patch.setenv(name, value)
        if file is not None:
            where, text = file
            if where == "local":
                (root / "airssys-storage.toml").write_text(text, encoding="utf-8")
            elif where == "explicit":
                (root / "conf.toml").write_text(text, encoding="utf-8")
                patch.setenv("AIRSSYS_STORAGE_CONFIG_FILE", str(root / "conf.toml"))
            elif where == "missing":
                patch.setenv("AIRSSYS_STORAGE_CONFIG_FILE", str(root / "nope.toml"))
            else:
                (root / "airssys-storage.toml").write_bytes(b'url = "memory://\xff"\n')
        yield


def full_path(arguments: Mapping[str, Any]) -> tuple[str, Any]:
    """("ok", field values and resolved_url) or ("error", the message) from StorageSettings."""
    try:
        model = StorageSettings(**arguments)
    except ConfigurationError as exc:
        return "error", exc.message
    return "ok", {**{name: getattr(model, name) for name in StorageSettings.model_fields}, "": model.resolved_url}


def took_the_fast_path(environment: dict[str, str], file: tuple[str, str] | None, arguments: dict[str, Any]) -> bool:
    """Whether read_plain answered in this cell; when it did, its values are StorageSettings' exactly."""
    with configured(environment, file):
        outcome, expected = full_path(arguments)
        plain = read_plain(**arguments)
        if plain is None:
            return False
        assert outcome == "ok", f"fast path accepted what the model refuses: {expected}"
        assert {**plain.model_dump(), "": plain.resolved_url} == expected
        return True


@settings(max_examples=300, deadline=None)
@given(
    environment=st.sampled_from(ENVIRONMENTS),
    file=st.sampled_from(FILES),
    arguments=st.sampled_from(ARGUMENTS),
)
def test_fast_path_equals_the_model_or_declines(
    environment: dict[str, str], file: tuple[str, str] | None, arguments: dict[str, Any]
) -> None:
    """Contract: read_plain gives StorageSettings' values exactly, or None (never its own answer)."""
    took_the_fast_path(environment, file, arguments)


@pytest.mark.parametrize(
    ("environment", "file", "arguments"),
    [
        ({}, None, {}),
        (ENVIRONMENTS[1], None, {}),
        (ENVIRONMENTS[2], FILES[1], {}),
        (ENVIRONMENTS[5], FILES[2], {"url": "sqlite:////tmp/arg.db", "backend_options": {}}),
        (ENVIRONMENTS[20], FILES[2], {"backend_options": {"timeout": 9}}),  # dicts merge across all three
        (ENVIRONMENTS[12], FILES[4], {"url": None}),
        (ENVIRONMENTS[19], FILES[3], {}),
        (ENVIRONMENTS[30], None, {}),
    ],
)
def test_plain_inputs_take_the_fast_path(
    environment: dict[str, str], file: tuple[str, str] | None, arguments: dict[str, Any]
) -> None:
    """The common, plainly valid configurations are served without pydantic, with the model's values."""
    assert took_the_fast_path(environment, file, arguments)


@pytest.mark.parametrize(
    ("environment", "file", "arguments"),
    [
        ({"AIRSSYS_STORAGE_URL": "memory://["}, None, {}),
        ({"AIRSSYS_STORAGE_MAX_KEY_BYTES": "many"}, None, {}),
        ({"AIRSSYS_STORAGE_POLICIES": "manifest"}, None, {}),
        ({}, ("local", "unknown_field = 1\n"), {}),
        ({}, ("local", "url = [broken\n"), {}),
        ({}, ("not-utf8", ""), {}),
        ({}, ("missing", ""), {}),
        ({}, None, {"url": "bad"}),
    ],
)
def test_invalid_inputs_get_the_full_paths_error(
    environment: dict[str, str], file: tuple[str, str] | None, arguments: dict[str, Any]
) -> None:
    """An invalid value is reported by StorageSettings, word for word, whichever path is asked."""
    with configured(environment, file):
        with pytest.raises(ConfigurationError) as full:
            common.load_configured_settings(**arguments)
        with pytest.raises(ConfigurationError) as fast:
            common.load_configured_settings(plain=True, **arguments)
    assert fast.value.message == full.value.message and fast.value.code == "invalid-config"


def test_fields_match_the_model() -> None:
    """FIELDS names every model field with the model's default and bounds (a new field must be added)."""
    assert list(FIELDS) == list(StorageSettings.model_fields)
    for name, info in StorageSettings.model_fields.items():
        field = FIELDS[name]
        assert field.make_default() == info.get_default(call_default_factory=True), name
        low = next((m.ge for m in info.metadata if isinstance(m, annotated_types.Ge)), None)
        high = next((m.le for m in info.metadata if isinstance(m, annotated_types.Le)), None)
        assert (field.low, field.high) == (low, high), name


def test_plain_settings_are_frozen_and_copy_like_the_model() -> None:
    """model_copy applies updates unvalidated and leaves the original alone; setting a field fails."""
    with configured({"AIRSSYS_STORAGE_URL": "memory://"}, None):
        plain = read_plain()
        model = StorageSettings()
    assert plain is not None
    update = {"policies": ["manifest"], "quota_strategy": "fixed", "fixed_quota_bytes": 5, "plugin_options": {}}
    assert plain.model_copy(update=update).model_dump() == model.model_copy(update=update).model_dump()
    assert plain.quota_strategy == "manifest"
    with pytest.raises(TypeError):
        plain.url = "memory://other"
    with pytest.raises(AttributeError):
        plain.no_such_field  # noqa: B018


def test_the_fast_path_imports_no_pydantic() -> None:
    """Reading plain settings costs no pydantic import (the point of the fast path)."""
    code = (
        "import sys\n"
        "from airssys_storage._settings_fast import read_plain\n"
        "assert read_plain() is not None\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'pydantic', 'pydantic_settings'}))\n"
    )
    env = {**os.environ, "AIRSSYS_STORAGE_URL": "memory://"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# -- the CLI with and without it ---------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "leveldb"])
def test_data_commands_answer_alike_on_both_paths(
    cli: Run, make_store: Any, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """get, keys, size and the not-found hint are the same whether settings come plain or from the model."""
    store = make_store(backend)
    component = store.component("fast")
    store.write(component, {"a": b"1", "b/c": b"\x00\xff"})
    monkeypatch.setenv("AIRSSYS_STORAGE_URL", store.url)
    if store.options:
        monkeypatch.setenv("AIRSSYS_STORAGE_BACKEND_OPTIONS", json.dumps(store.options))
    commands = [
        ["get", "-c", component, "b/c"],
        ["get", "-c", component, "missing"],
        ["keys", "-c", component],
        ["size", "-c", component, "--json"],
        ["get", "-c", component, "a", *store.args()],
        ["get", "-c", component, "a", "--url", "memory://["],
    ]
    taken: list[bool] = []
    real = read_plain

    def spy(**arguments: Any) -> PlainSettings | None:
        result = real(**arguments)
        taken.append(result is not None)
        return result

    def outputs() -> list[tuple[int, bytes, str]]:
        return [(r.exit_code, r.stdout_bytes, r.stderr) for r in (cli(*command) for command in commands)]

    monkeypatch.setattr(common, "read_plain", spy)
    fast = outputs()
    assert taken and any(taken)
    monkeypatch.setattr(common, "read_plain", lambda **arguments: None)
    assert outputs() == fast
    assert [code for code, _, _ in fast] == [0, 1, 0, 0, 0, 3]
