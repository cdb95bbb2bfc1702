"""Settings, read once and explicitly: arguments > environment > TOML file > defaults.

Environment variables are named ``AIRSSYS_STORAGE_<FIELD>`` (list and dict
fields take JSON, e.g. ``AIRSSYS_STORAGE_POLICIES='["manifest"]'``).

The TOML file is the first of:

1. the path in ``AIRSSYS_STORAGE_CONFIG_FILE``;
2. ``airssys-storage.toml`` in the current directory;
3. ``config.toml`` in the user's config directory
   (``platformdirs.user_config_dir("airssys-storage")``, e.g.
   ``~/.config/airssys-storage/config.toml`` on Linux).

Its keys are the field names at top level, e.g. ``url = "sqlite:///data.db"``.

Options of policies and quota strategies live in ``plugin_options``, one table
per class name (``[plugin_options.NAME]`` in the file,
``AIRSSYS_STORAGE_PLUGIN_OPTIONS='{"NAME": {...}}'`` in the environment); each
class that takes options declares them as a pydantic model (``Options``), and
the core validates the table once, when a manager is created (see
:class:`airssys_storage.PermissionPolicy`).
"""

from __future__ import annotations

import os
import re
import tomllib
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

# Shared with the pydantic-free fast path (one definition of each rule): see _settings_fast.
from ._settings_fast import (
    APP_NAME,
    AUDIT_KEY_MODES,
    CONFIG_FILE_ENV,
    ENV_PREFIX,
    check_quota_warnings,
    config_file_path,
    default_url,
    url_problem,
)
from .errors import ConfigurationError

__all__ = ["APP_NAME", "CONFIG_FILE_ENV", "StorageSettings", "default_url", "config_file_path"]


class StorageSettings(BaseSettings):
    """Everything an operator configures. Invalid values raise :class:`ConfigurationError`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    url: str | None = Field(
        default=None,
        description="Backend URL; the scheme picks the backend (memory://, sqlite:////ABSOLUTE/PATH, "
        "postgresql+psycopg://…, mysql+pymysql://…, leveldb:///PATH). Default: a SQLite file "
        "in the user's data directory.",
    )
    backend_options: dict[str, Any] = Field(default_factory=dict, description="Options passed to the backend.")
    policies: list[str] = Field(
        default_factory=lambda: ["manifest"],
        description="Permission policies by name, combined by the veto rule.",
    )
    quota_strategy: str = Field(default="manifest", description="Quota strategy by name.")
    fixed_quota_bytes: int | None = Field(
        default=None, ge=0, description="The limit of the 'fixed' quota strategy (None = unlimited)."
    )
    max_key_bytes: int = Field(default=256, ge=1, le=65536, description="Maximum key length in UTF-8 bytes.")
    max_value_bytes: int = Field(default=1024 * 1024, ge=0, description="Maximum value size in bytes.")
    max_keys_per_query: int = Field(default=10_000, ge=1, description="Maximum keys returned by one query.")
    max_batch_ops: int = Field(default=100, ge=1, description="Maximum operations in one batch.")
    op_id_retention_seconds: float = Field(
        default=600,
        gt=0,
        le=315_360_000,  # 10 years: the retention in ms must fit every engine's 64-bit integers
        allow_inf_nan=False,
        description="How long the result of an increment's op_id is remembered, in seconds (a retry with the "
        "same id within it returns the first result and applies nothing). Default 600 (10 minutes).",
    )
    expiry_sweep_interval: float | None = Field(
        default=None,
        ge=0.01,  # shorter is a busy loop
        le=31_536_000,  # a year: longer overflows the thread's timed wait
        allow_inf_nan=False,
        description="Seconds between runs of the manager's background sweeper, which removes expired keys of "
        "every component (in bounded steps) and releases their quota. None (default): no sweeper; expired keys "
        "are then removed by purge_expired() and by writes that would otherwise exceed the quota.",
    )
    metrics: bool = Field(
        default=False,
        description="Count operations, bytes and errors per component and operation (StorageManager.metrics(), "
        "the Prometheus and OpenTelemetry exporters of airssys_storage.metrics). Off (default): the operations "
        "run exactly the uninstrumented code.",
    )
    metrics_latency: bool = Field(
        default=False,
        description="With metrics on: also record a latency histogram per component and operation (costs two "
        "clock reads per operation).",
    )
    tracing: bool = Field(
        default=False,
        description="With metrics on: open an OpenTelemetry span per operation (opentelemetry-api, the 'otel' "
        "extra; a no-op unless the host installs an OpenTelemetry SDK).",
    )
    quota_warnings: list[float] = Field(
        default_factory=lambda: [80.0, 95.0],
        description="Soft quota thresholds, in percent of each component's quota (each above 0 and below 100): "
        "usage crossing one upward logs a warning once (re-armed when usage falls back to or below it). A "
        "manifest's permissions.storage.quota-warnings replaces them for its component. [] turns them off.",
    )
    audit_keys: str = Field(
        default="hash",
        description="How audit records (logger 'airssys_storage.audit') show a key: 'hash' (default: the first "
        "16 hex digits of its BLAKE2b digest), 'plain' (the key itself) or 'omit'.",
    )
    changes_default: bool = Field(
        default=False,
        description="Whether components whose manifest does not say (permissions.storage.changes) keep a change "
        "feed. Default false: only components asking for it pay for it.",
    )
    changes_retain_events: int = Field(
        default=100_000, ge=1, description="The change log keeps at most this many newest events per component."
    )
    changes_retain_seconds: float | None = Field(
        default=604_800,
        gt=0,
        le=315_360_000,
        allow_inf_nan=False,
        description="The change log keeps no event older than this, in seconds (default 604800: 7 days; None: no "
        "age limit).",
    )
    changes_capture_values: bool = Field(
        default=False, description="Whether 'set' events carry the new value (up to changes_max_value_bytes)."
    )
    changes_max_value_bytes: int = Field(
        default=4096, ge=0, description="The largest value a 'set' event carries, in bytes (larger: none)."
    )
    changes_poll_seconds: float = Field(
        default=0.01,
        ge=0.001,
        le=60,
        allow_inf_nan=False,
        description="How often a waiting watcher checks the change log for commits of other processes, in "
        "seconds (multi-process backends; same-process commits and PostgreSQL NOTIFY wake it at once).",
    )
    blocked_plugins: list[str] = Field(default_factory=list, description="Plugin names not to load.")
    plugin_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Options of policies and quota strategies, by their name: a [plugin_options.NAME] table, "
        "checked against the class's Options model at start-up.",
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError(_describe(exc)) from None
        except SettingsError as exc:
            raise ConfigurationError(_describe_source_error(exc)) from None
        except UnicodeDecodeError as exc:
            raise ConfigurationError(
                f"invalid settings file {config_file_path()}: it is not UTF-8 text ({exc.reason} at byte "
                f"{exc.start}); save it as UTF-8 TOML"
            ) from None
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise ConfigurationError(f"invalid settings file {config_file_path()}: {exc}") from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = config_file_path()
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if path is not None:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=path),)
        return sources

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        problem = None if value is None else url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator(
        "fixed_quota_bytes",
        "max_key_bytes",
        "max_value_bytes",
        "max_keys_per_query",
        "max_batch_ops",
        "changes_retain_events",
        "changes_max_value_bytes",
        mode="before",
    )
    @classmethod
    def _whole_number(cls, value: Any) -> Any:
        # pydantic's lax mode would read true as 1 and 1e3 as 1000 (a bool is an int in Python);
        # a size or a count is a whole number, as in manifests. Strings from the environment pass on.
        if isinstance(value, (bool, float)):
            raise ValueError(f"must be a whole number, not {value!r}")
        return value

    @field_validator(
        "op_id_retention_seconds",
        "expiry_sweep_interval",
        "changes_retain_seconds",
        "changes_poll_seconds",
        mode="before",
    )
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        # pydantic's lax mode reads true as 1.0; a duration is a number of seconds.
        if isinstance(value, bool):
            raise ValueError(f"must be a number of seconds, not {value!r}")
        return value

    @field_validator("metrics", "metrics_latency", "tracing", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> Any:
        # pydantic's lax mode reads 1, "yes" and "on" as true; a flag is true or false (TOML, "true" in env).
        if isinstance(value, bool) or (isinstance(value, str) and value.lower() in ("true", "false")):
            return value
        raise ValueError(f"must be true or false, not {value!r}")

    @field_validator("quota_warnings", mode="before")
    @classmethod
    def _check_warnings(cls, value: Any) -> list[float]:
        return list(check_quota_warnings(value, "quota_warnings"))

    @field_validator("audit_keys")
    @classmethod
    def _check_audit_keys(cls, value: str) -> str:
        if value not in AUDIT_KEY_MODES:
            raise ValueError(f"must be one of {', '.join(AUDIT_KEY_MODES)}, not {value!r}")
        return value

    @field_validator("policies")
    @classmethod
    def _check_policies(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError('must name at least one policy (e.g. ["manifest"]): with none, every operation is denied')
        return value

    @property
    def resolved_url(self) -> str:
        """``url``, or the embedded default when it is not set."""
        return self.url if self.url is not None else default_url()


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        problems.append(f"{field}={error.get('input')!r}: {error['msg']}")
    return "invalid settings: " + "; ".join(problems)


def _describe_source_error(exc: SettingsError) -> str:
    # pydantic-settings names the field but not the value: add the variable's text.
    match = re.search(r'field "([^"]+)"', str(exc))
    field = match.group(1) if match else "settings"
    variable = f"{ENV_PREFIX}{field.upper()}"
    value = os.environ.get(variable)
    shown = f"{variable}={value!r}" if value is not None else field
    hint = " (list and dict fields take JSON, e.g. '[\"manifest\"]')" if value is not None else ""
    return f"invalid settings: {shown}: {exc}{hint}"
