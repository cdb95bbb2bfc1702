"""The ``backend_options`` of the ``sql`` backend, declared once: names, defaults, units, ranges, descriptions.

The core validates them (:meth:`airssys_storage.StorageBackend.parse_options`)
and :meth:`SQLBackend.open <airssys_storage_sql.SQLBackend.open>` gets an
instance. A dataclass, not a pydantic model: this module is imported at every
start-up, and pydantic only when options are given (see :mod:`airssys_storage.options`).
What only the URL decides (``synchronous`` applies to SQLite) is checked at open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from airssys_storage.options import FORBID_EXTRA, OptionError, option

__all__ = ["SQLOptions"]

_SYNCHRONOUS = ("NORMAL", "FULL", "EXTRA")


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
        10.0, "seconds a write waits for a lock held by another writer before failing", gt=0, allow_inf_nan=False
    )
    connect_timeout: float = option(
        10.0, "seconds to wait for a server connection (PostgreSQL, MariaDB)", gt=0, allow_inf_nan=False
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
