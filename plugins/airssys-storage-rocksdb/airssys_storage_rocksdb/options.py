"""The ``backend_options`` of the RocksDB backend, declared once: names, defaults, units, ranges, descriptions.

The core validates them (:meth:`airssys_storage.StorageBackend.parse_options`)
and :meth:`RocksDBBackend.open <airssys_storage_rocksdb.RocksDBBackend.open>`
gets an instance. A dataclass, not a pydantic model: every installed backend
is imported at start-up, and pydantic only when options are given (see
:mod:`airssys_storage.options`), as for the LevelDB plugin's options.

Sizes are bytes: an int, or a string such as ``"64MB"`` / ``"512KiB"``.
Compression names take ``"none"`` because TOML has no null. The defaults
follow RocksDB's tuning guide (LZ4 on the upper levels, Zstandard on the
bottommost level, which holds about 90% of the data; 10 bloom bits per key).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from airssys_storage.options import FORBID_EXTRA, OptionError, option, size_option, size_schema

__all__ = ["COMPRESSIONS", "RocksDBOptions"]

#: The compressions offered (every rocksdict wheel has them).
COMPRESSIONS = ("none", "lz4", "zstd")
_MIN_WRITE_BUFFER = 64 * 1024
_MAX_WRITE_BUFFER = 4 * 1024**3
_MAX_CACHE = 1 << 48

if TYPE_CHECKING:
    _Size = int | str
else:
    # pydantic sees Any: its lax union would turn true into 1, so __post_init__ (size_option,
    # which refuses booleans) checks the value; size_schema describes it.
    _Size = Any


@dataclass(frozen=True)
class RocksDBOptions:
    """``backend_options`` of the ``rocksdb`` backend (all optional; defaults in the field descriptions)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = FORBID_EXTRA

    sync: bool = option(
        False, "fsync the write-ahead log on every commit: survives power loss, costs about an fsync per write"
    )
    compression: str = option(
        "lz4", 'block compression of every level but the last: "none", "lz4" or "zstd"', strict=False
    )
    bottommost_compression: str = option(
        "zstd", 'block compression of the last level (most of the data): "none", "lz4" or "zstd"', strict=False
    )
    # RUF009: option() returns a dataclasses.field; ruff cannot see that _Size is immutable.
    block_cache_size: _Size = option(  # noqa: RUF009
        "32MiB",
        f'LRU cache of uncompressed blocks, bytes (or "64MB"), 0 to {_MAX_CACHE}',
        strict=False,
        json_schema_extra=size_schema(0, _MAX_CACHE),
    )
    write_buffer_size: _Size = option(  # noqa: RUF009
        "64MiB",
        f'memtable size before it is flushed to a table file, bytes (or "16MB"), {_MIN_WRITE_BUFFER} to '
        f"{_MAX_WRITE_BUFFER}",
        strict=False,
        json_schema_extra=size_schema(_MIN_WRITE_BUFFER, _MAX_WRITE_BUFFER),
    )
    max_write_buffer_number: int = option(
        2, "memtables kept in memory (one being written, the rest being flushed)", ge=2, le=64
    )
    bloom_filter_bits: int = option(10, "bits per key of the bloom filter in each table (0: no filter)", ge=0, le=64)
    background_jobs: int = option(2, "threads for flushes and compactions (RocksDB's max_background_jobs)", ge=1, le=64)
    size_cache_keys: int = option(
        100_000,
        "how many rows of recently written keys (size, version, expiry; never the value) the backend keeps in "
        "memory so that an overwrite need not read the old row (0: none; about 150 bytes each)",
        ge=0,
    )

    def __post_init__(self) -> None:
        # frozen: each value normalised once, here
        object.__setattr__(
            self, "block_cache_size", size_option("block_cache_size", self.block_cache_size, 0, _MAX_CACHE)
        )
        size = size_option("write_buffer_size", self.write_buffer_size, _MIN_WRITE_BUFFER, _MAX_WRITE_BUFFER)
        object.__setattr__(self, "write_buffer_size", size)
        for name in ("compression", "bottommost_compression"):
            value = getattr(self, name)
            key = value.lower() if isinstance(value, str) else value
            if key not in COMPRESSIONS:
                raise OptionError(name, 'must be "none", "lz4" or "zstd"')
            object.__setattr__(self, name, key)

    def as_dict(self) -> dict[str, Any]:
        """The options in force, for ``stats()``."""
        return dataclasses.asdict(self)
