"""The ``backend_options`` of the LevelDB backend, validated once at open.

Sizes are bytes: an int, or a string such as ``"8MB"`` / ``"512KiB"`` (TOML and
environment variables have no other way to say "large number" readably).
``compression`` takes ``"none"`` as well as ``None`` because TOML has no null.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airssys_storage import ConfigurationError, StorageError, parse_size

__all__ = ["LevelDBOptions"]

# LevelDB silently clips write_buffer_size to this range; we refuse instead,
# so the operator gets the buffer they think they configured.
_MIN_WRITE_BUFFER = 64 * 1024
_MAX_WRITE_BUFFER = 1024 * 1024 * 1024
_MAX_BLOOM_BITS = 64
_COMPRESSIONS = {"snappy": "snappy", "none": None}


@dataclass(frozen=True)
class LevelDBOptions:
    """Validated options; ``None`` sizes mean LevelDB's own default."""

    #: fsync the log on every commit: survives power loss, costs ~an fsync per write.
    sync: bool = False
    #: LRU cache of uncompressed blocks, bytes (LevelDB default 8 MiB).
    block_cache_size: int | None = None
    #: memtable size before it is flushed to a table file, bytes (LevelDB default 4 MiB).
    write_buffer_size: int | None = None
    #: ``"snappy"`` or ``None``.
    compression: str | None = "snappy"
    #: bits per key of the bloom filter in each table (0 = no filter).
    bloom_filter_bits: int = 10
    #: how many value sizes the backend remembers so that a write need not read
    #: the old value to charge the quota (0 = always read; ~100 bytes each).
    size_cache_keys: int = 100_000
    #: verify the checksum of every block a read takes from disk, so a damaged table
    #: is an error instead of a wrong value (see the README for the cost).
    verify_checksums: bool = False

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> LevelDBOptions:
        """Validate *options*; a bad value raises :class:`ConfigurationError` naming the option."""
        if not isinstance(options, Mapping):
            raise ConfigurationError(f"backend_options must be a table/dict, not {type(options).__name__}")
        known = {
            "sync",
            "block_cache_size",
            "write_buffer_size",
            "compression",
            "bloom_filter_bits",
            "size_cache_keys",
            "verify_checksums",
        }
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigurationError(f"unknown leveldb backend option(s) {unknown}; the options are {sorted(known)}")
        values: dict[str, Any] = {}
        for name in ("sync", "verify_checksums"):
            if name in options:
                flag = options[name]
                if not isinstance(flag, bool):
                    raise _bad(name, flag, "must be true or false")
                values[name] = flag
        if options.get("block_cache_size") is not None:
            values["block_cache_size"] = _size("block_cache_size", options["block_cache_size"], 0, None)
        if options.get("write_buffer_size") is not None:
            values["write_buffer_size"] = _size(
                "write_buffer_size", options["write_buffer_size"], _MIN_WRITE_BUFFER, _MAX_WRITE_BUFFER
            )
        if "compression" in options:
            compression = options["compression"]
            key = "none" if compression is None else compression
            if not isinstance(key, str) or key.lower() not in _COMPRESSIONS:
                raise _bad("compression", compression, 'must be "snappy" or "none" (or null)')
            values["compression"] = _COMPRESSIONS[key.lower()]
        if "bloom_filter_bits" in options:
            bits = options["bloom_filter_bits"]
            if isinstance(bits, bool) or not isinstance(bits, int) or not 0 <= bits <= _MAX_BLOOM_BITS:
                raise _bad("bloom_filter_bits", bits, f"must be an integer from 0 (no filter) to {_MAX_BLOOM_BITS}")
            values["bloom_filter_bits"] = bits
        if "size_cache_keys" in options:
            entries = options["size_cache_keys"]
            if isinstance(entries, bool) or not isinstance(entries, int) or entries < 0:
                raise _bad("size_cache_keys", entries, "must be a non-negative integer (0 disables the cache)")
            values["size_cache_keys"] = entries
        return cls(**values)

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
        return {
            "sync": self.sync,
            "block_cache_size": self.block_cache_size,
            "write_buffer_size": self.write_buffer_size,
            "compression": self.compression,
            "bloom_filter_bits": self.bloom_filter_bits,
            "size_cache_keys": self.size_cache_keys,
            "verify_checksums": self.verify_checksums,
        }


def _size(name: str, value: object, minimum: int, maximum: int | None) -> int:
    try:
        size = parse_size(value, name)
    except StorageError as exc:
        # parse_size speaks of manifests (ManifestError); this is a backend option.
        raise ConfigurationError(f"leveldb backend option {exc.message}") from None
    if size < minimum or (maximum is not None and size > maximum):
        bounds = f"at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise _bad(name, value, f"must be {bounds} bytes")
    return size


def _bad(name: str, value: object, why: str) -> ConfigurationError:
    return ConfigurationError(f"leveldb backend option {name}={value!r} is invalid: it {why}")
