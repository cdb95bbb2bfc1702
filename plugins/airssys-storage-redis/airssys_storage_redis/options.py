"""The ``backend_options`` of the Redis backend, declared once: names, defaults, units, ranges, descriptions.

The core validates them (:meth:`airssys_storage.StorageBackend.parse_options`)
and :meth:`RedisBackend.open <airssys_storage_redis.RedisBackend.open>` gets
an instance. A dataclass, not a pydantic model: every installed backend is
imported at start-up, and pydantic only when options are given (see
:mod:`airssys_storage.options`). The password belongs in the URL
(``redis://:PASSWORD@host:6379/0``) and is redacted in every message.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from airssys_storage.options import FORBID_EXTRA, option

__all__ = ["RedisOptions"]


@dataclass(frozen=True)
class RedisOptions:
    """``backend_options`` of the ``redis`` backend (all optional)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = FORBID_EXTRA

    key_prefix: str = option(
        "airssys:",
        "prefix of every Redis key the backend writes (<prefix>{<component>}:d and so on): printable ASCII "
        "without braces, spaces, * ? [ ] or \\, at most 64 characters; it selects the store, so several stores "
        "can share one database",
        pattern=r"^[!-)+->@-Z^-z|~]{0,64}$",
    )
    pool_size: int = option(16, "most connections this backend opens (one per concurrently busy thread)", ge=1)
    pool_timeout: float = option(
        30.0, "seconds a thread waits for a connection while pool_size are busy", gt=0, allow_inf_nan=False
    )
    connect_timeout: float = option(
        5.0,
        "seconds to wait for a connection to the server, its TLS handshake (rediss://) and its answer to the "
        "first PING (what tells a Redis server from something else)",
        gt=0,
        allow_inf_nan=False,
    )
    socket_timeout: float = option(
        30.0,
        "seconds to wait for the server's answer to one command; a commit that times out raises "
        "outcome-unknown (it may have been applied)",
        gt=0,
        allow_inf_nan=False,
    )
    read_retries: int = option(
        1,
        "how often a read that met a lost connection is repeated on a fresh one (writes are never repeated: "
        "a commit cut off by a lost connection raises outcome-unknown)",
        ge=0,
        le=5,
    )
    health_check_interval: int = option(
        0,
        "seconds a pooled connection may sit idle before it is checked with PING when next used (0: never; "
        "dead idle connections are found anyway when the server closed them)",
        ge=0,
    )
    tls_ca_file: str | None = option(
        None, "rediss:// only: a PEM file of the certificate authorities to trust (null: the system's)"
    )
    tls_verify: bool = option(
        True, "rediss:// only: verify the server's certificate and host name (turn off only for tests)"
    )

    def as_dict(self) -> dict[str, Any]:
        """The options in force, for ``stats()``."""
        return dataclasses.asdict(self)
