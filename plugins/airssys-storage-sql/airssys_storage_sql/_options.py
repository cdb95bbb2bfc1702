"""The ``backend_options`` of the ``sql`` backend, declared once: names, defaults, units, ranges, descriptions.

The core validates them (:meth:`airssys_storage.StorageBackend.parse_options`)
and :meth:`SQLBackend.open <airssys_storage_sql.SQLBackend.open>` gets an
instance. A dataclass, not a pydantic model: this module is imported at every
start-up, and pydantic only when options are given (see :mod:`airssys_storage.options`).
What only the URL decides (``synchronous`` applies to SQLite) is checked at open.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from airssys_storage import ConfigurationError
from airssys_storage.options import FORBID_EXTRA, OptionError, option

__all__ = ["SQLOptions", "connect_arg_error"]

_SYNCHRONOUS = ("NORMAL", "FULL", "EXTRA")
# The engines take lock_timeout as whole milliseconds (PostgreSQL lock_timeout, SQLite busy_timeout:
# a 32-bit int, where 0 means "never time out" and "do not wait") or whole seconds (MariaDB); the bounds
# keep every engine's value in range and nonzero.
_MIN_LOCK_TIMEOUT = 0.001
_MAX_LOCK_TIMEOUT = (2**31 - 1) / 1000
# PyMySQL refuses more than a year; libpq takes whole seconds.
_MAX_CONNECT_TIMEOUT = 31_536_000


@dataclass(frozen=True)
class SQLOptions:
    """``backend_options`` of the ``sql`` backend (all optional)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = FORBID_EXTRA

    table_prefix: str = option(
        "airssys_",
        "prefix of the three table names (<prefix>data, <prefix>usage, <prefix>meta): lower-case ASCII letters, "
        "digits and _, a letter first, at most 40 characters, or empty; it selects the store",
        pattern=r"^(?:[a-z][a-z0-9_]{0,39})?$",
    )
    pool_size: int = option(8, "most connections this backend opens (one per concurrently busy thread)", ge=1)
    pool_timeout: float = option(
        30.0, "seconds a thread waits for a connection while pool_size are busy", gt=0, allow_inf_nan=False
    )
    lock_timeout: float = option(
        10.0,
        "seconds a write waits for a lock held by another writer before failing (PostgreSQL and SQLite round it "
        "up to whole milliseconds, MariaDB to whole seconds)",
        ge=_MIN_LOCK_TIMEOUT,
        le=_MAX_LOCK_TIMEOUT,
        allow_inf_nan=False,
    )
    connect_timeout: float = option(
        10.0,
        "seconds to wait for a server connection (PostgreSQL, MariaDB; rounded up to whole seconds)",
        gt=0,
        le=_MAX_CONNECT_TIMEOUT,
        allow_inf_nan=False,
    )
    synchronous: str = option(
        "NORMAL",
        "SQLite only: PRAGMA synchronous, NORMAL (survives a process crash), FULL (also power loss) or EXTRA; any case",
    )
    connect_args: Mapping[str, Any] = option(
        factory=dict, description='extra keyword arguments for the DBAPI connect(), e.g. {"sslmode": "require"}'
    )

    def __post_init__(self) -> None:
        synchronous = self.synchronous.upper()
        if synchronous not in _SYNCHRONOUS:
            raise OptionError("synchronous", f"must be one of {', '.join(_SYNCHRONOUS)}")
        object.__setattr__(self, "synchronous", synchronous)  # frozen: normalised once, here
        object.__setattr__(self, "connect_args", dict(self.connect_args))

    @property
    def lock_timeout_ms(self) -> int:
        """``lock_timeout`` in whole milliseconds, rounded up: at least 1 (0 would mean no timeout)."""
        return _ceil(self.lock_timeout * 1000)

    @property
    def lock_timeout_s(self) -> int:
        """``lock_timeout`` in whole seconds, rounded up: at least 1."""
        return _ceil(self.lock_timeout)

    @property
    def connect_timeout_s(self) -> int:
        """``connect_timeout`` in whole seconds, rounded up: at least 1."""
        return _ceil(self.connect_timeout)


def _ceil(value: float) -> int:
    # Rounded to 6 decimals first, so that float noise (0.007 * 1000 == 7.000000000000001) is no extra unit.
    return max(1, math.ceil(round(value, 6)))


# How each driver names a keyword argument its connect() does not take: sqlite3, PyMySQL, psycopg (libpq).
_UNKNOWN_ARGUMENT = re.compile(
    r"'(?P<a>[^']+)' is an invalid keyword argument|unexpected keyword argument '(?P<b>[^']+)'"
    r'|invalid connection option "(?P<c>[^"]+)"'
)


def connect_arg_error(exc: BaseException, connect_args: Mapping[str, Any]) -> ConfigurationError | None:
    """The settings error when *exc* (from the driver's ``connect()``) refuses a name of *connect_args*, else ``None``.

    Names the argument, never its value (``connect_args`` holds passwords). A name the
    backend passes itself is not the operator's mistake and gives ``None``.
    """
    match = _UNKNOWN_ARGUMENT.search(str(getattr(exc, "orig", None) or exc))
    if match is None:
        return None
    name = match.group("a") or match.group("b") or match.group("c")
    if name not in connect_args:
        return None
    return ConfigurationError(
        f"backend_options.connect_args.{name}: the database driver's connect() takes no argument {name!r}; "
        "rename or remove it (see the driver's documentation for its connection arguments)"
    )
