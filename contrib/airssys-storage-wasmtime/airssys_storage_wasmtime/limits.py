"""The sandbox limits of one guest invocation, set per host and per component.

A host sets the ceiling (:class:`Host` ``limits=``, or ``airssys-storage run
--timeout SECONDS --max-memory SIZE --max-call-bytes SIZE``, or the
environment variables of :data:`ENVIRONMENT`, which
:meth:`SandboxLimits.from_environment` reads); a component may ask for less
in its manifest's ``[limits]`` table, never for more::

    [limits]
    timeout = 5            # seconds of one invocation (export call or instantiation)
    max-memory = "64MiB"   # bytes of each linear memory
    max-call-bytes = "1MiB"
    max-transaction-writes = 1000      # transactional components only
    max-transaction-bytes = "4MiB"

Defaults (:data:`DEFAULT_LIMITS`): 30 s, 256 MiB per linear memory, 100,000
elements per table, 100 instances, tables and memories per store, 2 MiB per
storage call and direction, 10,000 keys and 16 MiB buffered per transaction.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airssys_storage import ConfigurationError, Manifest, ManifestError
from airssys_storage.manifest import LIMITS_FIELDS, ManifestLimits, parse_size
from airssys_storage.transaction import DEFAULT_MAX_BYTES, DEFAULT_MAX_WRITES

__all__ = ["DEFAULT_LIMITS", "ENVIRONMENT", "MANIFEST_FIELDS", "SandboxLimits", "format_bytes"]

MiB = 1024 * 1024

#: The fields of a manifest's ``[limits]`` table and the attribute each sets (the core manifest's table).
MANIFEST_FIELDS = LIMITS_FIELDS


#: Environment variables a host's limits can be set with, and the field each sets.
ENVIRONMENT = {
    "AIRSSYS_STORAGE_WASMTIME_TIMEOUT": "timeout",
    "AIRSSYS_STORAGE_WASMTIME_MAX_MEMORY": "max-memory",
    "AIRSSYS_STORAGE_WASMTIME_MAX_CALL_BYTES": "max-call-bytes",
}


@dataclass(frozen=True)
class SandboxLimits:
    """What one guest invocation may use. Every field is a ceiling.

    An invalid value raises :class:`~airssys_storage.ConfigurationError`
    (:class:`~airssys_storage.ManifestError` when it comes from a manifest).

    - ``timeout``: seconds of wall-clock time one call into the guest
      (an export call, or instantiation with its start functions) may take,
      enforced with wasmtime's epoch interruption (checked every
      :data:`~airssys_storage_wasmtime.host.TICK_SECONDS`); past it the call
      raises :class:`~.GuestTimeout`.
    - ``max_memory``: bytes of each linear memory; growing past it fails
      (``memory.grow`` returns -1; most guests then trap).
    - ``max_table_elements``: elements of each table.
    - ``max_instances``, ``max_tables``, ``max_memories``: per store.
    - ``max_call_bytes``: bytes of keys and values one storage call may move in
      each direction (the request, and the response: get, get-many, range,
      scan, keys). Past it the call returns ``value-too-large`` (seed
      interface) or ``invalid-argument`` (batch and range interfaces) to the
      guest, checked before the response is converted for the guest.
    - ``max_transaction_writes``, ``max_transaction_bytes``: for a component
      whose manifest says ``transactional = true``, the keys one invocation
      may write and the bytes of keys and values it may buffer
      (:mod:`airssys_storage.transaction`); past them the storage call returns
      ``too-many-keys`` / ``value-too-large`` to the guest.
    """

    timeout: float = 30.0
    max_memory: int = 256 * MiB
    max_table_elements: int = 100_000
    max_instances: int = 100
    max_tables: int = 100
    max_memories: int = 100
    max_call_bytes: int = 2 * MiB
    max_transaction_writes: int = DEFAULT_MAX_WRITES
    max_transaction_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        if not (isinstance(self.timeout, (int, float)) and math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigurationError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        for field in dataclasses.fields(self)[1:]:
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{field.name} must be a positive integer, got {value!r}")

    def capped_by(self, ceiling: SandboxLimits) -> SandboxLimits:
        """These limits, each lowered to *ceiling*'s where that is lower."""
        return SandboxLimits(
            **{f.name: min(getattr(self, f.name), getattr(ceiling, f.name)) for f in dataclasses.fields(self)}
        )

    def with_overrides(self, **overrides: Any) -> SandboxLimits:
        """A copy with the fields given (``None`` values are ignored)."""
        return dataclasses.replace(self, **{name: value for name, value in overrides.items() if value is not None})

    @classmethod
    def from_table(cls, table: object, base: SandboxLimits | None = None, where: str = "[limits]") -> SandboxLimits:
        """Limits from a manifest's ``[limits]`` table (fields of :data:`MANIFEST_FIELDS`) over *base*.

        Validated by the core manifest (:meth:`~airssys_storage.ManifestLimits.from_table`):
        sizes accept ``"64MiB"`` etc. Raises :class:`~airssys_storage.ManifestError`
        naming the field for an unknown field or a bad value.
        """
        return cls.from_manifest_limits(ManifestLimits.from_table(table, where), base, where)

    @classmethod
    def from_manifest_limits(
        cls, asked: ManifestLimits, base: SandboxLimits | None = None, where: str = "[limits]"
    ) -> SandboxLimits:
        """*base* (default :data:`DEFAULT_LIMITS`) with the limits a parsed manifest asks for."""
        try:
            return dataclasses.replace(base or DEFAULT_LIMITS, **asked.asked())
        except ConfigurationError as exc:
            raise ManifestError(f"{where} {exc.message}") from None

    @classmethod
    def from_environment(cls, base: SandboxLimits | None = None) -> SandboxLimits:
        """*base* (default :data:`DEFAULT_LIMITS`) with the variables of :data:`ENVIRONMENT` that are set.

        Values as in a manifest (``AIRSSYS_STORAGE_WASMTIME_MAX_MEMORY=64MiB``);
        a bad one raises :class:`~airssys_storage.ConfigurationError` naming the variable.
        """
        values: dict[str, Any] = {}
        for variable, key in ENVIRONMENT.items():
            value = os.environ.get(variable, "").strip()
            if not value:
                continue
            attribute = MANIFEST_FIELDS[key]
            if attribute == "timeout":
                try:
                    values[attribute] = float(value)
                except ValueError:
                    raise ConfigurationError(f"{variable} must be a number of seconds, got {value!r}") from None
            else:
                try:
                    values[attribute] = parse_size(value, variable)
                except ConfigurationError as exc:  # parse_size speaks of manifests: this is the host's setting
                    raise ConfigurationError(exc.message) from None
        try:
            return dataclasses.replace(base or DEFAULT_LIMITS, **values)
        except ConfigurationError as exc:
            raise ConfigurationError(f"the AIRSSYS_STORAGE_WASMTIME_* environment variables: {exc.message}") from None

    @classmethod
    def from_manifest_file(cls, path: str | Path, base: SandboxLimits | None = None) -> SandboxLimits:
        """The ``[limits]`` table of the manifest at *path* over *base* (*base* when it has none).

        The whole manifest is read and validated (:meth:`~airssys_storage.Manifest.from_file`).
        """
        return cls.from_manifest_limits(Manifest.from_file(path).limits, base, f"{path}: [limits]")

    def describe(self) -> str:
        """One line for error messages, e.g. ``timeout 30 s, memory 256 MiB, 2 MiB per storage call``."""
        return (
            f"timeout {self.timeout:g} s, memory {format_bytes(self.max_memory)} per linear memory, "
            f"{format_bytes(self.max_call_bytes)} per storage call"
        )


def format_bytes(size: int) -> str:
    """``2 MiB``, ``512 KiB`` or ``1000 bytes``."""
    for unit, factor in (("GiB", 1024 * MiB), ("MiB", MiB), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


#: The limits of a host that set none.
DEFAULT_LIMITS = SandboxLimits()
