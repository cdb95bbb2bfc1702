"""Backend options (issue 10): declared by each backend, validated once by the core, uniform errors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from airssys_storage_memory import MemoryBackend
from pydantic import BaseModel, ConfigDict, Field

from airssys_storage import ConfigurationError, StorageManager, StorageSettings, register_plugin, unregister_plugin
from airssys_storage.options import FORBID_EXTRA, OptionError, describe_options, option, parse_options
from airssys_storage.storage import check_settings


@dataclass(frozen=True)
class DataclassOptions:
    __pydantic_config__: ClassVar[dict[str, Any]] = FORBID_EXTRA

    timeout: float = option(5.0, "seconds to wait", gt=0, allow_inf_nan=False)
    retries: int = option(3, "attempts after the first", ge=0, le=10)
    mode: str = option("fast", "fast or safe, any case")
    extra: Mapping[str, Any] = option(factory=dict, description="passed through")

    def __post_init__(self) -> None:
        if self.mode.lower() not in ("fast", "safe"):
            raise OptionError("mode", "must be fast or safe")
        object.__setattr__(self, "mode", self.mode.lower())


class ModelOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field("/tmp/x", description="where the data lives")
    size: int = Field(10, ge=1, description="entries kept, a count")


def check(model: type[Any] | None, raw: Any) -> Any:
    return parse_options(model, raw, table="backend_options", owner="backend 'probe'")


def test_options_become_an_instance_with_defaults_for_what_is_not_given() -> None:
    """A dataclass or a pydantic model: the given values validated and normalised, the rest defaults."""
    parsed = check(DataclassOptions, {"timeout": 2, "mode": "SAFE"})
    assert parsed == DataclassOptions(timeout=2.0, retries=3, mode="safe")
    assert isinstance(parsed.timeout, float)
    assert check(ModelOptions, {"size": 4}) == ModelOptions(path="/tmp/x", size=4)
    assert check(DataclassOptions, {}) == DataclassOptions()
    assert check(ModelOptions, {}) == ModelOptions()


def test_an_instance_passes_through_and_no_model_means_the_mapping_as_given() -> None:
    """Validation happens once; a backend without Options gets the mapping unchanged."""
    instance = DataclassOptions(retries=1)
    assert check(DataclassOptions, instance) is instance
    raw = {"anything": [1, 2]}
    assert check(None, raw) is raw


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"timeout": 0}, "backend_options.timeout=0: input should be greater than 0 (timeout: seconds to wait; "),
        ({"timeout": float("nan")}, "backend_options.timeout=nan: input should be a finite number"),
        ({"retries": True}, "backend_options.retries=True: input should be a valid integer"),
        ({"retries": "3"}, "backend_options.retries='3': input should be a valid integer"),
        ({"retries": 11}, "backend_options.retries=11: input should be less than or equal to 10"),
        ({"mode": "slow"}, "backend_options.mode='slow': must be fast or safe (mode: fast or safe, any case;"),
        ({"extra": [1]}, "backend_options.extra (a list): input should be a valid dictionary"),
        ({"retires": 1}, "the backend 'probe' has no option 'retires' (did you mean 'retries'?); its options: "),
    ],
)
def test_every_problem_names_the_option_the_problem_and_the_fix(raw: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        check(DataclassOptions, raw)
    message = info.value.message
    assert message.startswith("invalid backend_options for the backend 'probe': ")
    assert expected in message
    assert "remove it for the default" in message or "rename or remove it" in message
    assert info.value.code == "invalid-config"


def test_several_problems_are_reported_together() -> None:
    with pytest.raises(ConfigurationError) as info:
        check(ModelOptions, {"size": 0, "nope": 1})
    assert "backend_options.size=0" in info.value.message and "backend_options.nope:" in info.value.message
    assert info.value.count == 2


def test_field_problems_and_post_init_problems_are_reported_together() -> None:
    """__post_init__ runs only when every field passed: the bad fields give way so that it reports too."""
    with pytest.raises(ConfigurationError) as info:
        check(DataclassOptions, {"timeout": 0, "retries": True, "mode": "slow", "nope": 1})
    message = info.value.message
    for part in ("backend_options.timeout=0", "backend_options.retries=True", "backend_options.mode='slow'", ".nope:"):
        assert part in message
    assert info.value.count == 4 and message.count("; fix the value") + message.count("rename or remove") == 4


@pytest.mark.parametrize(
    "raw",
    [
        {"db_password": "hunter2"},  # an unknown option may be a misspelt secret
        {"password": "hunter2"},
        {"extra": "password=hunter2"},  # a table option (connect_args) given as something else
        {"extra": ["hunter2"]},
    ],
)
def test_no_message_echoes_an_unknown_option_or_a_table_option(raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        check(DataclassOptions, raw)
    assert "hunter2" not in info.value.message
    assert f"backend_options.{next(iter(raw))}" in info.value.message


def test_options_that_are_not_a_table_are_refused() -> None:
    for raw in ([], "x=1", None):
        with pytest.raises(ConfigurationError, match="backend_options must be a table"):
            check(DataclassOptions, raw)


def test_describe_options_gives_kind_default_and_description() -> None:
    described = {info.name: info for info in describe_options(DataclassOptions)}
    assert list(described) == ["timeout", "retries", "mode", "extra"]
    assert described["retries"].kind == "integer >= 0 <= 10"
    assert described["timeout"].kind == "number > 0"
    assert described["extra"].default == {} and described["extra"].kind == "table"
    assert described["mode"].description == "fast or safe, any case"
    modelled = {info.name: info for info in describe_options(ModelOptions)}
    assert modelled["size"].default == 10 and modelled["size"].description == "entries kept, a count"
    assert describe_options(None) == []


def test_empty_options_of_a_dataclass_import_no_pydantic() -> None:
    """Start-up speed: every backend plugin is imported at start-up, pydantic only when options are given."""
    code = (
        "import importlib, sys\n"
        "checked = []\n"
        "for module, name in (('airssys_storage_sql', 'SQLBackend'), ('airssys_storage_memory', 'MemoryBackend'),\n"
        "                     ('airssys_storage_leveldb', 'LevelDBBackend')):\n"
        "    try:\n"
        "        cls = getattr(importlib.import_module(module), name)\n"
        "    except ModuleNotFoundError:\n"
        "        continue  # a plugin this environment does not install (the leveldb env checks that one)\n"
        "    cls.parse_options({})\n"
        "    checked.append(name)\n"
        "print(checked, sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    checked, pydantic_modules = done.stdout.strip().split("] ")
    assert "SQLBackend" in checked and "MemoryBackend" in checked  # the core env installs both
    assert pydantic_modules == "[]"


# -- through the manager: what open() receives ---------------------------------------------------


class Seen:
    options: ClassVar[list[Any]] = []


class PlainBackend(MemoryBackend):
    """A third-party backend with no Options: it gets the mapping as given."""

    name = "plain-probe"
    url_schemes = ("plainprobe",)
    Options = None

    @classmethod
    def open(cls, url: str, options: Mapping[str, Any]) -> PlainBackend:
        Seen.options.append(options)
        return cls()


class ModelBackend(MemoryBackend):
    """A third-party backend declaring a pydantic model: it gets an instance."""

    name = "model-probe"
    url_schemes = ("modelprobe",)
    Options = ModelOptions

    @classmethod
    def exists(cls, url: str, options: Any) -> bool | None:
        Seen.options.append(("exists", options))
        return True

    @classmethod
    def open(cls, url: str, options: Any) -> ModelBackend:
        Seen.options.append(options)
        return cls()


class ProbePlugin:
    from airssys_storage import hookimpl

    @hookimpl
    def register_backends(self) -> list[type[Any]]:
        return [PlainBackend, ModelBackend]


@pytest.fixture
def probes() -> Iterator[None]:
    Seen.options = []
    register_plugin(ProbePlugin(), "options-probe")
    try:
        yield
    finally:
        unregister_plugin("options-probe")


def test_open_gets_the_validated_instance_once(probes: None) -> None:
    settings = StorageSettings(url="modelprobe://x", backend_options={"size": 2})
    StorageManager.from_settings(settings, existing=True).close()
    assert Seen.options == [("exists", ModelOptions(size=2)), ModelOptions(size=2)]
    assert Seen.options[0][1] is Seen.options[1]  # parsed once, the same instance for both


def test_a_backend_without_options_gets_the_mapping_as_given(probes: None) -> None:
    StorageManager.from_settings(StorageSettings(url="plainprobe://x", backend_options={"free": [1]})).close()
    assert Seen.options == [{"free": [1]}]


def test_bad_options_are_refused_before_the_backend_is_asked(probes: None) -> None:
    settings = StorageSettings(url="modelprobe://x", backend_options={"size": "big"})
    with pytest.raises(ConfigurationError, match=r"backend_options.size='big'"):
        StorageManager.from_settings(settings, existing=True)
    assert Seen.options == []
    assert [problem.message for problem in check_settings(settings)] == [
        "invalid backend_options for the backend 'model-probe': backend_options.size='big': input should be a valid "
        "integer, unable to parse string as an integer (size: entries kept, a count; default 10); fix the value, "
        "or remove it for the default"
    ]
    assert Seen.options == []  # check_settings opens nothing
