"""The ``backend_options`` of the LMDB backend, declared once: names, defaults, units, ranges, descriptions.

The core validates them (:meth:`airssys_storage.StorageBackend.parse_options`)
and :meth:`LMDBBackend.open <airssys_storage_lmdb.LMDBBackend.open>` gets an
instance. A dataclass, not a pydantic model, as for every backend: pydantic
is imported only when options are given (see :mod:`airssys_storage.options`).

Sizes are bytes: an int, or a string such as ``"64MiB"`` / ``"1GiB"``.

Durability (LMDB's own flags, see its documentation of ``mdb_env_open``):

``sync=True, metasync=True`` (the default)
    Every commit is flushed to disk (data pages and the meta page) before
    it returns: an acknowledged write survives a process crash, a kernel
    crash and a power loss.
``sync=True, metasync=False`` (``MDB_NOMETASYNC``)
    The meta page is flushed with the next commit: the database stays
    intact, but a system crash may undo the last commit.
``sync=False`` (``MDB_NOSYNC``)
    Nothing is flushed by a commit: the data is in the operating system's
    page cache, so a process crash (``kill -9``) loses nothing, but a
    system crash or power loss may lose recent commits (the database stays
    consistent on file systems that keep the write order).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from airssys_storage import StorageError, parse_size
from airssys_storage.options import FORBID_EXTRA, OptionError, option

__all__ = ["LMDBOptions"]

#: LMDB needs a few pages; below 64 KiB every store would start by growing.
_MIN_MAP = 64 * 1024
#: The largest map on a 64-bit system (well above any disk; a size_t).
_MAX_MAP = 2**63 - 1

if TYPE_CHECKING:
    _Size = int | str
else:
    # pydantic sees Any (its lax union would turn true into 1); __post_init__ (parse_size) checks the value.
    _Size = Any


def _size_schema(minimum: int, maximum: int) -> dict[str, Any]:
    """The JSON schema of a size option, for ``airssys-storage config``."""
    return {"anyOf": [{"type": "integer", "minimum": minimum, "maximum": maximum}, {"type": "string"}]}


@dataclass(frozen=True)
class LMDBOptions:
    """``backend_options`` of the ``lmdb`` backend (all optional)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = FORBID_EXTRA

    # RUF009: option() returns a dataclasses.field, as for every field; ruff cannot see that _Size is immutable.
    map_size: _Size = option(  # noqa: RUF009
        "64MiB",
        'the memory map\'s starting size, bytes (or "64MiB"): the most the data file may hold before the backend '
        "grows the map (it doubles it inside the commit that needs room, up to max_map_size); the file is sparse "
        f"on Linux, so a large map costs address space, not disk; {_MIN_MAP} or more",
        strict=False,
        json_schema_extra=_size_schema(_MIN_MAP, _MAX_MAP),
    )
    max_map_size: _Size = option(  # noqa: RUF009
        "64GiB",
        'the ceiling of the map\'s growth, bytes (or "64GiB"): a commit that needs more is refused with '
        "internal-error naming this option; at least map_size",
        strict=False,
        json_schema_extra=_size_schema(_MIN_MAP, _MAX_MAP),
    )
    sync: bool = option(
        True,
        "flush every commit to disk before it returns (an fsync): survives power loss; false (MDB_NOSYNC) "
        "survives a process crash only, and is several times faster per write",
    )
    metasync: bool = option(
        True,
        "with sync, flush the meta page too in every commit; false (MDB_NOMETASYNC): a system crash may undo "
        "the last commit (the database stays intact)",
    )
    max_readers: int = option(
        126,
        "reader slots in the lock file: threads and processes reading at one moment (LMDB's default 126); "
        "fixed by the first process that opens the store",
        ge=1,
        le=1_000_000,
    )
    readahead: bool = option(
        True,
        "let the operating system read ahead in the data file; false helps when the data is much larger than memory",
    )

    def __post_init__(self) -> None:
        # frozen: each value normalised once, here
        map_size = _size("map_size", self.map_size)
        max_map_size = _size("max_map_size", self.max_map_size)
        if max_map_size < map_size:
            raise OptionError("max_map_size", f"must be at least map_size ({map_size} bytes)")
        object.__setattr__(self, "map_size", map_size)
        object.__setattr__(self, "max_map_size", max_map_size)

    def environment_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``lmdb.open`` for these options (without the path and ``max_dbs``)."""
        return {
            "map_size": self.map_size,
            "sync": self.sync,
            "metasync": self.metasync,
            "max_readers": self.max_readers,
            "readahead": self.readahead,
        }

    def as_dict(self) -> dict[str, Any]:
        """The options in force, for ``stats()``."""
        return dataclasses.asdict(self)


def _size(name: str, value: object) -> int:
    try:
        size = parse_size(value, name)
    except StorageError as exc:
        raise OptionError(name, exc.message.removeprefix(f"{name} ")) from None
    if not _MIN_MAP <= size <= _MAX_MAP:
        raise OptionError(name, f"must be from {_MIN_MAP} to {_MAX_MAP} bytes")
    return size
