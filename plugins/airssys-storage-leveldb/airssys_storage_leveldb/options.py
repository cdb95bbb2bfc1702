"""The ``backend_options`` of the LevelDB backend, declared once: names, defaults, units, ranges, descriptions.

The core validates them (:meth:`airssys_storage.StorageBackend.parse_options`)
and :meth:`LevelDBBackend.open <airssys_storage_leveldb.LevelDBBackend.open>`
gets an instance. A dataclass, not a pydantic model: every installed backend
is imported at start-up, and pydantic only when options are given (see
:mod:`airssys_storage.options`).

Sizes are bytes: an int, or a string such as ``"8MB"`` / ``"512KiB"`` (TOML and
environment variables have no other way to say "large number" readably).
``compression`` takes ``"none"`` as well as ``None`` because TOML has no null.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from airssys_storage.options import FORBID_EXTRA, OptionError, option, size_option, size_schema

__all__ = ["LevelDBOptions"]

# LevelDB silently clips write_buffer_size to this range; we refuse instead,
# so the operator gets the buffer they think they configured.
_MIN_WRITE_BUFFER = 64 * 1024
_MAX_WRITE_BUFFER = 1024 * 1024 * 1024
# plyvel takes sizes as C size_t; LevelDB's cache adds to its capacity (shards), so stay well below SIZE_MAX.
_MAX_SIZE = sys.maxsize
_COMPRESSIONS = {"snappy": "snappy", "none": None}

if TYPE_CHECKING:
    _Size = int | str | None
else:
    # pydantic sees Any: its lax union would turn true into 1 (and a union cannot be strict), so
    # __post_init__ (size_option, which refuses booleans) checks the value; size_schema describes it.
    _Size = Any


@dataclass(frozen=True)
class LevelDBOptions:
    """``backend_options`` of the ``leveldb`` backend (all optional); ``None`` sizes mean LevelDB's own default."""

    __pydantic_config__: ClassVar[dict[str, Any]] = FORBID_EXTRA

    sync: bool = option(False, "fsync the log on every commit: survives power loss, costs about an fsync per write")
    # RUF009: option() returns a dataclasses.field, as for every field; ruff cannot see that _Size is immutable.
    block_cache_size: _Size = option(  # noqa: RUF009
        None,
        f'LRU cache of uncompressed blocks, bytes (or "64MB"), at most {_MAX_SIZE}; null: LevelDB\'s default, 8 MiB',
        strict=False,
        json_schema_extra=size_schema(0, _MAX_SIZE, nullable=True),
    )
    write_buffer_size: _Size = option(  # noqa: RUF009
        None,
        f'memtable size before it is flushed to a table file, bytes (or "16MB"), {_MIN_WRITE_BUFFER} to '
        f"{_MAX_WRITE_BUFFER}; null: LevelDB's default, 4 MiB",
        strict=False,
        json_schema_extra=size_schema(_MIN_WRITE_BUFFER, _MAX_WRITE_BUFFER, nullable=True),
    )
    compression: str | None = option("snappy", 'block compression: "snappy", or "none" (or null)', strict=False)
    bloom_filter_bits: int = option(10, "bits per key of the bloom filter in each table (0: no filter)", ge=0, le=64)
    size_cache_keys: int = option(
        100_000,
        "how many rows of recently written keys (size, version, expiry; never the value) the backend keeps in "
        "memory so that an overwrite need not read the old row (0: none; about 150 bytes each)",
        ge=0,
    )
    verify_checksums: bool = option(
        False,
        "verify the checksum of every block a read takes from disk, so that a damaged table is an error "
        "instead of a wrong value (costs about 2x on get, see the README)",
    )

    def __post_init__(self) -> None:
        # frozen: each value normalised once, here
        if self.block_cache_size is not None:
            object.__setattr__(
                self, "block_cache_size", size_option("block_cache_size", self.block_cache_size, 0, _MAX_SIZE)
            )
        if self.write_buffer_size is not None:
            size = size_option("write_buffer_size", self.write_buffer_size, _MIN_WRITE_BUFFER, _MAX_WRITE_BUFFER)
            object.__setattr__(self, "write_buffer_size", size)
        key = "none" if self.compression is None else self.compression.lower()
        if key not in _COMPRESSIONS:
            raise OptionError("compression", 'must be "snappy" or "none" (or null)')
        object.__setattr__(self, "compression", _COMPRESSIONS[key])

    def plyvel_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``plyvel.DB`` and ``plyvel.repair_db`` (without ``create_if_missing``).

        The open adds ``paranoid_checks=True`` (always on, see the backend's docs).
        """
        kwargs: dict[str, Any] = {"compression": self.compression, "bloom_filter_bits": self.bloom_filter_bits}
        if self.block_cache_size is not None:
            kwargs["lru_cache_size"] = self.block_cache_size
        if self.write_buffer_size is not None:
            kwargs["write_buffer_size"] = self.write_buffer_size
        return kwargs

    def as_dict(self) -> dict[str, Any]:
        """The options in force, for ``stats()``."""
        return dataclasses.asdict(self)
