"""The settings rules that need no pydantic, and a pydantic-free fast path for plain settings.

Importing pydantic and pydantic-settings costs more than a whole one-key
CLI read may take (issue 9: <= 150 ms). :func:`read_plain` resolves the same
sources as :class:`~airssys_storage.settings.StorageSettings` — arguments >
``AIRSSYS_STORAGE_*`` environment > TOML settings file > defaults, dict fields
deep-merged across sources as pydantic-settings does — but only for inputs
whose meaning is beyond doubt (exact types, plain decimal digits, values in
bounds). For anything else it returns ``None`` and the caller uses
``StorageSettings``, whose result or error is then the answer: the fast path
never decides that an input is wrong. ``tests/cli/test_fast_settings.py``
checks that both paths agree (and that :data:`FIELDS` matches the model).

The URL rule, the settings file's location and the default URL live here
so that both paths share one definition; :mod:`airssys_storage.settings`
re-exports them.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .errors import ConfigurationError

__all__ = [
    "APP_NAME",
    "AUDIT_KEY_MODES",
    "CONFIG_FILE_ENV",
    "ENV_PREFIX",
    "FIELDS",
    "PlainSettings",
    "check_quota_warnings",
    "config_file_path",
    "default_url",
    "read_plain",
    "url_problem",
]

APP_NAME = "airssys-storage"
CONFIG_FILE_ENV = "AIRSSYS_STORAGE_CONFIG_FILE"
ENV_PREFIX = "AIRSSYS_STORAGE_"
#: How audit records show a key (setting ``audit_keys``): a digest of it, the key itself, or nothing.
AUDIT_KEY_MODES = ("hash", "plain", "omit")


def default_url() -> str:
    """The embedded default: a SQLite file in the user's data directory."""
    import platformdirs

    path = Path(platformdirs.user_data_dir(APP_NAME)) / "storage.sqlite3"
    return f"sqlite:///{path}"


def config_file_path() -> Path | None:
    """The TOML settings file that applies now, or ``None`` (see :mod:`airssys_storage.settings`)."""
    explicit = os.environ.get(CONFIG_FILE_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigurationError(f"{CONFIG_FILE_ENV}={explicit!r} does not name a readable file")
        return path
    local = Path.cwd() / "airssys-storage.toml"
    if local.is_file():
        return local
    import platformdirs  # only when there is no local file: it is not free to import

    user = Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"
    return user if user.is_file() else None


def url_problem(value: str) -> str | None:
    """What is wrong with the backend URL *value* (the tail of ``url=...: ``), or ``None`` if it is usable."""
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value) is None:
        return "must be a URL such as memory://, sqlite:////absolute/path/to/file.db or leveldb:///absolute/path"
    try:
        parts = urlsplit(value)
    except ValueError as exc:  # e.g. an unclosed [ in the host part
        return f"is not a valid URL ({exc}); percent-encode special characters"
    try:
        parts.port  # noqa: B018  # reading it checks it
    except ValueError as exc:  # port 99999, port abc
        return f"has an invalid port ({exc}): write a number from 1 to 65535"
    if "\x00" in unquote(value):
        return "contains a NUL character (\\x00 or %00), which no file name, host or database name can hold: remove it"
    return None


def check_quota_warnings(value: object, where: str) -> tuple[float, ...]:
    """Soft quota thresholds: a list of percentages, each above 0 and below 100; returned sorted, distinct.

    Raises :class:`ValueError` naming *where* (the setting or the manifest field) otherwise.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError(f"{where} must be a list of percentages such as [80, 95], not {value!r}")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not 0 < item < 100:
            raise ValueError(f"{where}: {item!r} is not a percentage above 0 and below 100 (e.g. [80, 95])")
    return tuple(sorted({float(item) for item in value}))


# -- the fast path ---------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """How the fast path reads one field of ``StorageSettings``.

    *kind*: ``url``, ``str``, ``bool``, ``int``, ``str-list``, ``dict``, ``dict-of-dicts``
    or ``default-only`` (any value given for it sends the caller to the full
    path). *low*/*high*: the model's inclusive bounds of an ``int``.
    """

    kind: str
    default: Any
    optional: bool = False
    low: float | None = None
    high: float | None = None
    non_empty: bool = False

    def make_default(self) -> Any:
        # Mutable defaults are fresh per settings object, as the model's default factories make them.
        return self.default.copy() if isinstance(self.default, (list, dict)) else self.default


#: Every field of ``StorageSettings`` (a test checks names, defaults and bounds against the model).
FIELDS: dict[str, Field] = {
    "url": Field("url", None, optional=True),
    "backend_options": Field("dict", {}),
    "policies": Field("str-list", ["manifest"], non_empty=True),
    "quota_strategy": Field("str", "manifest"),
    "fixed_quota_bytes": Field("int", None, optional=True, low=0),
    "max_key_bytes": Field("int", 256, low=1, high=65536),
    "max_value_bytes": Field("int", 1024 * 1024, low=0),
    "max_keys_per_query": Field("int", 10_000, low=1),
    "max_batch_ops": Field("int", 100, low=1),
    "op_id_retention_seconds": Field("default-only", 600, high=315_360_000),
    "expiry_sweep_interval": Field("default-only", None, optional=True, low=0.01, high=31_536_000),
    "metrics": Field("bool", False),
    "metrics_latency": Field("bool", False),
    "tracing": Field("bool", False),
    "quota_warnings": Field("default-only", [80.0, 95.0]),
    "audit_keys": Field("default-only", "hash"),
    "changes_default": Field("default-only", False),
    "changes_retain_events": Field("int", 100_000, low=1),
    "changes_retain_seconds": Field("default-only", 604_800, optional=True, high=315_360_000),
    "changes_capture_values": Field("default-only", False),
    "changes_max_value_bytes": Field("int", 4096, low=0),
    "changes_poll_seconds": Field("default-only", 0.01, low=0.001, high=60),
    "blocked_plugins": Field("str-list", []),
    "plugin_options": Field("dict-of-dicts", {}),
}

_COMPLEX_KINDS = frozenset({"str-list", "dict", "dict-of-dicts"})
_DIGITS = re.compile(r"[0-9]{1,18}")


class _Decline(Exception):
    """The fast path cannot vouch for this input: the full path decides."""


class PlainSettings:
    """Resolved settings without pydantic: the fields of ``StorageSettings`` as attributes.

    It offers what the library reads from settings — the fields,
    :attr:`resolved_url`, :meth:`model_copy` and :meth:`model_dump` — and
    nothing else; pass it only where those suffice (the CLI's operator
    handles, which run built-in policies only). Frozen, like the model.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(f"settings are frozen: cannot set {name!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"

    @property
    def resolved_url(self) -> str:
        """``url``, or the embedded default when it is not set."""
        url: str | None = self._values["url"]
        return url if url is not None else default_url()

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> PlainSettings:
        """A copy with *update* applied unvalidated, as ``BaseModel.model_copy`` does."""
        if deep:
            raise NotImplementedError("PlainSettings.model_copy(deep=True)")
        unknown = set(update or {}) - set(self._values)
        if unknown:
            raise AttributeError(f"not settings fields: {sorted(unknown)}")
        return PlainSettings({**self._values, **(update or {})})

    def model_dump(self) -> dict[str, Any]:
        """The fields as a dict (a shallow copy)."""
        return dict(self._values)


def read_plain(**arguments: Any) -> PlainSettings | None:
    """``StorageSettings(**arguments)`` without pydantic, or ``None`` when the full path must decide.

    Same sources and precedence as the model. ``None`` for anything not
    plainly valid (see the module docs); never raises.
    """
    try:
        return PlainSettings(_resolve(arguments))
    except _Decline:
        return None
    except Exception:  # whatever went wrong, the full path gives the true answer or error
        return None


def _resolve(arguments: Mapping[str, Any]) -> dict[str, Any]:
    if set(arguments) - set(FIELDS):
        raise _Decline  # unknown argument: the model's error
    file_state = _file_state()
    env_state = _env_state()
    # pydantic-settings: state = deep_update(lower source, higher state), from the highest source down.
    state = _deep_update(file_state, _deep_update(env_state, dict(arguments)))
    values = {}
    for name, field in FIELDS.items():
        values[name] = _check(field, state[name]) if name in state else field.make_default()
    return values


def _file_state() -> dict[str, Any]:
    path = config_file_path()  # its ConfigurationError: the full path raises the same one
    if path is None:
        return {}
    with open(path, "rb") as stream:
        state = tomllib.load(stream)
    if set(state) - set(FIELDS):
        raise _Decline  # extra keys are forbidden: the model's error
    return state


def _env_state() -> dict[str, Any]:
    state: dict[str, Any] = {}
    prefix = ENV_PREFIX.lower()
    for variable, text in os.environ.items():
        lowered = variable.lower()
        if not lowered.startswith(prefix):
            continue
        name = lowered[len(prefix) :]
        if name not in FIELDS:
            continue  # the model ignores other variables with the prefix (e.g. ..._CONFIG_FILE)
        if variable != variable.upper():
            raise _Decline  # names are case-insensitive: which of two spellings wins is the model's business
        field = FIELDS[name]
        if field.kind in _COMPLEX_KINDS:
            import json

            state[name] = json.loads(text)  # JSONDecodeError: the model's error (via read_plain)
        else:
            state[name] = text
    return state


def _deep_update(lower: dict[str, Any], higher: dict[str, Any]) -> dict[str, Any]:
    # pydantic's deep_update: dicts merge key by key, anything else replaces.
    merged = lower.copy()
    for key, value in higher.items():
        if key in merged and isinstance(merged[key], dict) and isinstance(value, dict):
            merged[key] = _deep_update(merged[key], value)
        else:
            merged[key] = value
    return merged


def _check(field: Field, value: Any) -> Any:
    """*value* as the model would store it, if it is plainly valid; else :class:`_Decline`."""
    if value is None:
        if field.optional:
            return None
        raise _Decline
    kind = field.kind
    if kind == "url":
        if type(value) is str and url_problem(value) is None:
            return value
    elif kind == "str":
        if type(value) is str:
            return value
    elif kind == "bool":
        if type(value) is bool:
            return value
        if value in ("true", "false"):  # the environment's spelling; any other is the model's to judge
            return value == "true"
    elif kind == "int":
        number = value if type(value) is int else None
        if type(value) is str and _DIGITS.fullmatch(value):
            number = int(value)  # what the model's lax mode makes of plain digits
        if number is not None and (field.low is None or number >= field.low):
            if field.high is None or number <= field.high:
                return number
    elif kind == "str-list":
        if type(value) is list and all(type(item) is str for item in value):
            if value or not field.non_empty:
                return list(value)
    elif kind == "dict":
        if type(value) is dict and all(type(key) is str for key in value):
            return dict(value)
    elif kind == "dict-of-dicts":
        if type(value) is dict and all(type(k) is str and type(v) is dict for k, v in value.items()):
            if all(type(key) is str for table in value.values() for key in table):
                return {name: dict(table) for name, table in value.items()}
    raise _Decline
