"""Options of plugin classes, declared by each class and validated here once: ``backend_options``, ``plugin_options``.

A backend (``StorageBackend.Options``), permission policy or quota strategy
(``Options``) declares its options as a class that pydantic validates with
``extra="forbid"``: a pydantic model, or a stdlib dataclass whose fields give
their description and constraints in ``dataclasses.field(metadata=...)``
(:func:`option` writes that). :func:`parse_options` is the one place that turns
a table from the settings into an instance of that class, with one message
shape for every problem: the option, what is wrong, and the fix.

Why dataclasses too: importing pydantic costs about 100 ms, more than a whole
one-key CLI read may take. Every installed backend plugin is imported at
start-up, so the built-in backends declare dataclasses; an empty table then
becomes ``Options()`` without pydantic, and pydantic is imported only to
validate options that were given (or to describe them, ``airssys-storage config``).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ConfigurationError

__all__ = [
    "OptionError",
    "OptionInfo",
    "SECRET_OPTION_NAMES",
    "describe_options",
    "option",
    "parse_options",
    "redact_options",
    "size_option",
    "size_schema",
]

#: Option names whose values are secrets, compared exactly (case-insensitive, ``-`` read as ``_``):
#: a name that merely contains one of them (``size_cache_keys``) is shown.
SECRET_OPTION_NAMES = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "sslpassword",
        "secret",
        "client_secret",
        "secret_key",
        "token",
        "access_token",
        "auth_token",
        "api_key",
        "apikey",
        "private_key",
        "credentials",
    }
)


def redact_options(value: Any) -> Any:
    """*value* (backend options) with secrets masked as ``***``, recursively.

    An entry is masked when its name is one of :data:`SECRET_OPTION_NAMES`;
    a string that is a URL with a password (``…://user:PASSWORD@host``) shows
    ``***`` in its place. Nothing else is touched.
    """
    if isinstance(value, dict):
        return {
            k: "***" if str(k).lower().replace("-", "_") in SECRET_OPTION_NAMES else redact_options(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_options(v) for v in value]
    if isinstance(value, str) and "://" in value:
        from .plugins import redact_url  # plugins imports this module

        return redact_url(value)
    return value


#: ``__pydantic_config__`` of a dataclass declaring options: unknown keys are errors.
FORBID_EXTRA: dict[str, Any] = {"extra": "forbid"}


def option(
    default: Any = dataclasses.MISSING,
    description: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    strict: bool = True,
    **constraints: Any,
) -> Any:
    """A dataclass field declaring one option: its *default*, *description* and pydantic *constraints*.

    *constraints* are keyword arguments of ``pydantic.Field`` (``ge``, ``gt``,
    ``le``, ``pattern``, ``allow_inf_nan``, ...), kept in the field's metadata,
    which pydantic reads; nothing imports pydantic here. *factory* makes a
    mutable default (``factory=dict``). *strict* (the default) refuses
    conversions a TOML or JSON value never needs (``true`` as ``1``, ``"5"`` as ``5``).
    Write the unit in the description (``"Seconds to wait ..."``): the
    description is what ``airssys-storage config`` and every error show.
    """
    metadata = {"description": description, **constraints}
    if strict:
        metadata["strict"] = True
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def size_option(name: str, value: object, minimum: int, maximum: int) -> int:
    """A size option's value in bytes: an int or a string such as ``"8MB"`` / ``"512KiB"``, within the bounds.

    For an options dataclass's ``__post_init__``; raises :class:`OptionError`
    naming *name* (booleans, floats and sizes out of ``minimum..maximum`` bytes are refused).
    """
    from .errors import StorageError
    from .manifest import parse_size

    try:
        size = parse_size(value, name)
    except StorageError as exc:
        raise OptionError(name, exc.message.removeprefix(f"{name} ")) from None
    if not minimum <= size <= maximum:
        raise OptionError(name, f"must be from {minimum} to {maximum} bytes")
    return size


def size_schema(minimum: int, maximum: int, *, nullable: bool = False) -> dict[str, Any]:
    """The JSON schema of a size option (an int within the bounds, or a string), for ``airssys-storage config``."""
    kinds: list[dict[str, Any]] = [{"type": "integer", "minimum": minimum, "maximum": maximum}, {"type": "string"}]
    if nullable:
        kinds.append({"type": "null"})
    return {"anyOf": kinds}


class OptionError(ValueError):
    """Raised by an options dataclass's ``__post_init__`` for a rule pydantic cannot state: names the option.

    The message says what is wrong with the value (``"must be a size such as 8MB"``).
    """

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option
        self.message = message


def parse_options(model: type[Any] | None, raw: Any, *, table: str, owner: str) -> Any:
    """*raw* validated against *model*: an instance of *model*, or *raw* itself (a mapping) when *model* is ``None``.

    An instance of *model* passes through unchanged (validation happens once).
    *table* names the settings table in messages (``backend_options``,
    ``plugin_options.prefix``), *owner* the class it configures (``backend
    'sql'``). Raises :class:`ConfigurationError` naming each bad option, the
    problem and the fix.
    """
    if model is not None and isinstance(raw, model):
        return raw
    if not isinstance(raw, Mapping):
        raise ConfigurationError(
            f"{table} must be a table (a JSON object / dict of option names to values), not {type(raw).__name__}"
        )
    if model is None:
        return raw
    if not raw and dataclasses.is_dataclass(model):
        try:
            return model()  # every default: no pydantic needed
        except TypeError:
            pass  # a required field: let validation say which
    from pydantic import ValidationError

    # Every problem at once: pydantic checks the fields, then __post_init__ runs only when they
    # all passed and stops at its first problem; so the options found bad are dropped (their
    # defaults stand in) and the rest validated again, until no new problem shows.
    given = dict(raw)
    errors: list[Any] = []
    while True:
        try:
            result = _adapter(model).validate_python(dict(given))  # a copy: errors keep their input
        except ValidationError as exc:
            found = exc.errors(include_url=False)
            errors.extend(found)
            bad = {_option_of(error) for error in found} & given.keys()
            if bad:
                for name in bad:
                    del given[name]
                continue
        if not errors:
            return result
        problems = _problems(model, errors, table, owner)
        raise ConfigurationError(
            f"invalid {table} for the {owner}: " + "; ".join(problems), count=len(problems)
        ) from None


def _option_of(error: Mapping[str, Any]) -> str:
    """The option a pydantic error is about: its location, or the :class:`OptionError` a ``__post_init__`` raised."""
    problem = error.get("ctx", {}).get("error")
    return problem.option if isinstance(problem, OptionError) else ".".join(str(p) for p in error["loc"][:1])


#: model -> its pydantic TypeAdapter (built on first use; building one takes milliseconds).
_ADAPTERS: dict[type[Any], Any] = {}


def _adapter(model: type[Any]) -> Any:
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        from pydantic import TypeAdapter

        adapter = _ADAPTERS[model] = TypeAdapter(model)
    return adapter


def _problems(model: type[Any], errors: list[Any], table: str, owner: str) -> list[str]:
    """One sentence per bad option (union types give several errors for one option: joined)."""
    known = {info.name: info for info in describe_options(model)}
    by_option: dict[str, list[Any]] = {}
    for error in errors:
        by_option.setdefault(_option_of(error), []).append(error)
    problems = []
    for name, found in by_option.items():
        first = found[0]
        if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            # An unknown name may be a misspelt secret (db_password): its value is never shown.
            if not known:
                problems.append(f"{table}.{name}: the {owner} takes no options; remove it")
                continue
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(
                f"{table}.{name}: the {owner} has no option {name!r}{hint}; its options: "
                f"{', '.join(sorted(known))} (`airssys-storage config` describes them); rename or remove it"
            )
            continue
        messages = []
        for error in found:
            problem = error.get("ctx", {}).get("error")
            message = problem.message if isinstance(problem, OptionError) else str(error["msg"])
            if message not in messages:
                messages.append(message[:1].lower() + message[1:])
        value = dict(first["input"]).get(name) if not first["loc"] else first.get("input")
        info = known.get(name)
        expected = f" ({name}: {info.description}; default {info.default!r})" if info is not None else ""
        problems.append(
            f"{table}.{name}{_shown(name, value, info)}: {' or '.join(messages)}{expected}; "
            "fix the value, or remove it for the default"
        )
    return problems


_VALUE_WORDS = {bool: "true/false", int: "integer", float: "number", str: "string", list: "list", dict: "table"}


def _shown(name: str, value: Any, info: OptionInfo | None) -> str:
    """How a message shows *value* of option *name*: ``='x'``, or only its type, ``" (a string)"``.

    A message must not carry a secret: the value itself is shown only when it is a
    plain scalar of a declared option that is no table (``connect_args`` holds
    passwords) and not named as a secret.
    """
    scalar = value is None or isinstance(value, (bool, int, float, str))
    table_option = info is None or any(kind.startswith("table") for kind in info.kind.split(" or "))
    if scalar and not table_option and name.lower().replace("-", "_") not in SECRET_OPTION_NAMES:
        return f"={redact_options(value)!r}"
    return f" (a {_VALUE_WORDS.get(type(value), type(value).__name__)})"


@dataclasses.dataclass(frozen=True)
class OptionInfo:
    """One declared option, as ``airssys-storage config`` shows it."""

    name: str
    #: The type and constraints in words, e.g. ``"integer >= 1"``.
    kind: str
    default: Any
    description: str


def describe_options(model: type[Any] | None) -> list[OptionInfo]:
    """The options *model* declares, in declaration order (imports pydantic: for display and messages)."""
    if model is None:
        return []
    schema = _adapter(model).json_schema()
    properties: dict[str, Any] = schema.get("properties", {})
    defaults = _defaults(model)
    return [
        OptionInfo(name, _kind(prop), defaults.get(name), str(prop.get("description", "")))
        for name, prop in properties.items()
    ]


def _defaults(model: type[Any]) -> dict[str, Any]:
    if dataclasses.is_dataclass(model):
        values: dict[str, Any] = {}
        for f in dataclasses.fields(model):
            if f.default is not dataclasses.MISSING:
                values[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                values[f.name] = f.default_factory()
        return values
    fields = getattr(model, "model_fields", {})
    return {
        name: info.get_default(call_default_factory=True) for name, info in fields.items() if not info.is_required()
    }


_BOUNDS = (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))
_TYPE_WORDS = {"integer": "integer", "number": "number", "string": "string", "boolean": "true/false", "object": "table"}


def _kind(prop: Mapping[str, Any]) -> str:
    """A JSON schema property in words: ``integer >= 1``, ``"snappy" or "none" or null``."""
    if "enum" in prop:
        return " or ".join(repr(v) for v in prop["enum"])
    if "anyOf" in prop:
        return " or ".join(_kind(p) for p in prop["anyOf"])
    words = _TYPE_WORDS.get(str(prop.get("type")), str(prop.get("type", "any")))
    if prop.get("type") == "null":
        words = "null"
    for key, sign in _BOUNDS:
        if key in prop:
            words += f" {sign} {prop[key]}"
    if "pattern" in prop:
        words += f" matching {prop['pattern']}"
    return words
