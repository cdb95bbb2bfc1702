"""Component manifests (``component-manifest.toml``), parsed fail-closed."""

from __future__ import annotations

import dataclasses
import enum
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._settings_fast import check_quota_warnings
from .errors import ManifestError

__all__ = [
    "BUCKET_NAME",
    "DEFAULT_BUCKETS",
    "LIMITS_FIELDS",
    "Access",
    "Manifest",
    "ManifestLimits",
    "parse_size",
    "QUOTA_TABLE",
    "validate_buckets",
]

MiB = 1024 * 1024


class Access(enum.StrEnum):
    """Storage permission level declared in a manifest (the seed's table)."""

    NONE = "none"
    READ_ONLY = "read-only"
    READ_WRITE = "read-write"
    ADMIN = "admin"


#: access level -> (default quota, maximum quota) in bytes; the seed's table.
QUOTA_TABLE: dict[Access, tuple[int, int]] = {
    Access.NONE: (0, 0),
    Access.READ_ONLY: (0, 0),
    Access.READ_WRITE: (10 * MiB, 100 * MiB),
    Access.ADMIN: (50 * MiB, 500 * MiB),
}

COMPONENT_ID_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,62}")

# MB means 1024**2 as in the seed; the IEC spellings are accepted as synonyms.
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 1024,
    "KiB": 1024,
    "MB": MiB,
    "MiB": MiB,
    "GB": 1024 * MiB,
    "GiB": 1024 * MiB,
}
_SIZE_PATTERN = re.compile(r"([0-9]+) ?(B|KB|KiB|MB|MiB|GB|GiB)?")


def parse_size(value: object, field: str = "max-size") -> int:
    """Parse ``"10MB"``, ``"512KiB"``, ``"1GB"`` or a non-negative integer into bytes.

    Booleans, floats, negative numbers and anything else fail with a
    :class:`ManifestError` naming *field*.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ManifestError(
            f"{field} must be an integer number of bytes or a string such as "
            f'"10MB" or "512KiB", not {type(value).__name__} {value!r}'
        )
    if isinstance(value, int):
        if value < 0:
            raise ManifestError(f"{field} must not be negative, got {value}")
        return value
    match = _SIZE_PATTERN.fullmatch(value.strip())
    if match is None:
        raise ManifestError(
            f"{field} {value!r} is not a size: write an integer number of bytes "
            'or a number with a unit B, KB, KiB, MB, MiB, GB or GiB, e.g. "10MB"'
        )
    return int(match.group(1)) * _UNITS[match.group(2) or ""]


def validate_component_id(value: object) -> str:
    """Return *value* if it is a valid component id, else raise :class:`ManifestError`."""
    if not isinstance(value, str) or COMPONENT_ID_PATTERN.fullmatch(value) is None:
        raise ManifestError(
            f"component.id {value!r} is invalid: it must match "
            f"^{COMPONENT_ID_PATTERN.pattern}$ (lower-case ASCII letter first, then "
            "up to 62 of a-z 0-9 _ -)"
        )
    return value


#: The fields of a manifest's ``[limits]`` table and the :class:`ManifestLimits` attribute each sets.
LIMITS_FIELDS = {
    "timeout": "timeout",
    "max-memory": "max_memory",
    "max-table-elements": "max_table_elements",
    "max-instances": "max_instances",
    "max-call-bytes": "max_call_bytes",
    "max-transaction-writes": "max_transaction_writes",
    "max-transaction-bytes": "max_transaction_bytes",
}


#: The ``[limits]`` attributes that are counts (whole numbers), not sizes in bytes.
_COUNT_LIMITS = frozenset({"max_table_elements", "max_instances", "max_transaction_writes"})


@dataclass(frozen=True)
class ManifestLimits:
    """The sandbox limits a component asks for in its manifest's ``[limits]`` table; ``None`` = not asked.

    A host (such as ``airssys-storage-wasmtime``) caps each by its own
    ceiling. ``timeout`` is seconds (a finite number > 0);
    ``max-table-elements``, ``max-instances`` and ``max-transaction-writes``
    are counts (a whole number >= 1); ``max-memory``, ``max-call-bytes`` and
    ``max-transaction-bytes`` are sizes in bytes (an integer >= 1, or
    ``"64MiB"`` etc., see :func:`parse_size`). The two transaction limits
    bound the write buffer of a ``transactional`` component's invocation
    (keys written, bytes of keys and values buffered; see
    :mod:`airssys_storage.transaction`). Invalid values raise
    :class:`ManifestError` naming the field::

        [limits]
        timeout = 5
        max-memory = "64MiB"
        max-table-elements = 10000
        max-instances = 10
        max-call-bytes = "1MiB"
        max-transaction-writes = 1000
        max-transaction-bytes = "4MiB"
    """

    timeout: float | None = None
    max_memory: int | None = None
    max_table_elements: int | None = None
    max_instances: int | None = None
    max_call_bytes: int | None = None
    max_transaction_writes: int | None = None
    max_transaction_bytes: int | None = None

    @classmethod
    def from_table(cls, table: object, where: str = "[limits]") -> ManifestLimits:
        """Validate a parsed ``[limits]`` table; errors start with *where*."""
        if not isinstance(table, dict):
            raise ManifestError(f'{where} must be a table such as {{ timeout = 5, max-memory = "64MiB" }}')
        unknown = set(table) - set(LIMITS_FIELDS)
        if unknown:
            raise ManifestError(
                f"{where} has unknown field(s) {sorted(unknown)}: only {', '.join(LIMITS_FIELDS)} exist"
            )
        values: dict[str, Any] = {}
        for key, value in table.items():
            attribute = LIMITS_FIELDS[key]
            if attribute == "timeout":
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ManifestError(f"{where} timeout must be a number of seconds, got {value!r}")
                if not (math.isfinite(value) and value > 0):
                    raise ManifestError(f"{where} timeout must be a positive number of seconds, got {value!r}")
                values[attribute] = float(value)
            elif attribute in _COUNT_LIMITS:  # counts, not sizes: "10MB" elements means nothing
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ManifestError(f"{where} {key} must be a whole number of at least 1, got {value!r}")
                values[attribute] = value
            else:
                size = parse_size(value, f"{where} {key}")
                if size < 1:
                    raise ManifestError(f"{where} {key} must be at least 1, got {value!r}")
                values[attribute] = size
        return cls(**values)

    def asked(self) -> dict[str, Any]:
        """The limits the manifest sets, by attribute name (those left ``None`` are absent)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}


#: What a bucket name may be: 1 to 63 of a-z, 0-9, '_', '.', '-', starting with a letter or digit.
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}\Z")
#: The buckets of a manifest without ``permissions.storage.buckets``.
DEFAULT_BUCKETS = ("default",)


def validate_buckets(value: object) -> tuple[str, ...]:
    """``permissions.storage.buckets``: a non-empty list of distinct bucket names; returned as a tuple."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise ManifestError(
            f'permissions.storage.buckets must be a non-empty list of names such as ["default", "cache"], not {value!r}'
        )
    for name in value:
        if not isinstance(name, str) or BUCKET_NAME.match(name) is None:
            raise ManifestError(
                f"permissions.storage.buckets: {name!r} is no bucket name (1 to 63 of a-z, 0-9, '_', '.', '-', "
                "starting with a letter or digit)"
            )
    if len(set(value)) != len(value):
        raise ManifestError(f"permissions.storage.buckets lists a bucket twice: {list(value)}")
    return tuple(value)


def validate_subscriptions(value: object, access: Access, changes: bool | None) -> tuple[str, ...]:
    """``permissions.storage.subscribe``: distinct key prefixes (strings); returned as a tuple.

    Subscribing reads the change feed, so it needs an access that reads
    (``read-only`` and above) and a feed that is not switched off
    (``changes = false``).
    """
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ManifestError(
            f'permissions.storage.subscribe must be a list of key prefixes such as ["orders/"], not {value!r}'
        )
    for prefix in value:
        if not isinstance(prefix, str) or (prefix and not prefix.isprintable()):
            raise ManifestError(
                f"permissions.storage.subscribe: {prefix!r} is no key prefix (a string without control characters)"
            )
    if len(set(value)) != len(value):
        raise ManifestError(f"permissions.storage.subscribe lists a prefix twice: {list(value)}")
    if value and access is Access.NONE:
        raise ManifestError(
            "permissions.storage.subscribe needs read access (access 'read-only', 'read-write' or 'admin'), "
            "but access is 'none': remove subscribe or raise the access"
        )
    if value and changes is False:
        raise ManifestError(
            "permissions.storage.subscribe needs the change feed, but changes = false: remove one of them"
        )
    return tuple(value)


@dataclass(frozen=True)
class Manifest:
    """What the host knows about one component: identity, access level and quota.

    ``max_size`` is the quota the manifest asked for (a size string such as
    ``"10MB"`` is parsed into bytes on construction), or ``None`` to take the
    default of its access level; :attr:`quota` resolves it.
    ``transactional`` (``permissions.storage.transactional``, default
    ``false``) asks the host to run every invocation of the component as one
    transaction (:mod:`airssys_storage.transaction`): its writes commit
    together when the invocation succeeds and are discarded when it fails.
    It needs access ``read-write`` or ``admin``.
    ``changes`` (``permissions.storage.changes``) turns the component's
    change feed on (``True``) or off (``False``); ``None`` (not given) takes
    the setting ``changes_default``. See :mod:`airssys_storage.changes`.
    """

    id: str
    access: Access = Access.NONE
    max_size: int | str | None = None
    name: str = ""
    version: str = ""
    #: The ``[limits]`` table (see :class:`ManifestLimits`).
    limits: ManifestLimits = dataclasses.field(default_factory=ManifestLimits)
    #: The key-value buckets (wasi:keyvalue buckets, Spin store labels) the component may open
    #: (``permissions.storage.buckets``): parts of its own storage, under its access level and quota.
    buckets: tuple[str, ...] = DEFAULT_BUCKETS
    #: Whether each invocation's writes commit as one transaction (``permissions.storage.transactional``).
    transactional: bool = False
    #: Soft quota thresholds in percent of :attr:`quota` (``permissions.storage.quota-warnings``, e.g.
    #: ``[70, 90]``); ``None``: the setting ``quota_warnings`` applies. Sorted and distinct after construction.
    quota_warnings: tuple[float, ...] | None = None
    #: Whether the component keeps a change feed (``permissions.storage.changes``; ``None``: the settings decide).
    changes: bool | None = None
    #: Key prefixes whose changes a host delivers to the component's change handler
    #: (``permissions.storage.subscribe``, e.g. ``["orders/"]``; ``""``: every key). Needs read access
    #: and the change feed; each is one subscription with its own durable cursor.
    subscribe: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_component_id(self.id)
        object.__setattr__(self, "buckets", validate_buckets(self.buckets))
        try:
            access = Access(self.access)
        except ValueError:
            raise ManifestError(
                f"permissions.storage.access {self.access!r} is invalid: use one of "
                + ", ".join(repr(a.value) for a in Access)
            ) from None
        object.__setattr__(self, "access", access)
        if self.quota_warnings is not None:
            try:
                warnings = check_quota_warnings(self.quota_warnings, "permissions.storage.quota-warnings")
            except ValueError as exc:
                raise ManifestError(str(exc)) from None
            object.__setattr__(self, "quota_warnings", warnings)
        if self.changes is not None and not isinstance(self.changes, bool):
            raise ManifestError(f"permissions.storage.changes must be true or false, not {self.changes!r}")
        object.__setattr__(self, "subscribe", validate_subscriptions(self.subscribe, access, self.changes))
        if not isinstance(self.transactional, bool):
            raise ManifestError(f"permissions.storage.transactional must be true or false, not {self.transactional!r}")
        if self.transactional and access not in (Access.READ_WRITE, Access.ADMIN):
            raise ManifestError(
                f"permissions.storage.transactional = true needs access 'read-write' or 'admin' (it buffers "
                f"writes), but access is {access.value!r}: remove transactional or raise the access"
            )
        if self.max_size is not None:
            size = parse_size(self.max_size, "permissions.storage.max-size")
            maximum = QUOTA_TABLE[access][1]
            if size > maximum:
                raise ManifestError(
                    f"permissions.storage.max-size {self.max_size!r} ({size} bytes) is above "
                    f"the maximum of {maximum} bytes for access {access.value!r}"
                )
            object.__setattr__(self, "max_size", size)

    @property
    def quota(self) -> int:
        """The byte quota: ``max-size`` if given, else the access level's default."""
        if self.max_size is None:
            return QUOTA_TABLE[self.access][0]
        return int(self.max_size)  # already parsed by __post_init__

    @classmethod
    def from_toml(cls, text: str) -> Manifest:
        """Parse the text of a ``component-manifest.toml``."""
        try:
            data = tomllib.loads(text)
        except (tomllib.TOMLDecodeError, TypeError) as exc:
            raise ManifestError(f"manifest is not valid TOML: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str | Path) -> Manifest:
        """Read and parse a manifest file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:  # ValueError: not UTF-8, or a NUL in the path
            raise ManifestError(f"cannot read manifest {str(path)!r}: {exc}") from None
        try:
            return cls.from_toml(text)
        except ManifestError as exc:
            raise ManifestError(f"{path}: {exc.message}") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Build a manifest from already parsed TOML data."""
        component = _table(data, "component")
        for field in ("name", "version"):
            if not isinstance(component.get(field, ""), str):
                raise ManifestError(f"component.{field} must be a string")
        if "id" not in component:
            raise ManifestError('component.id is missing: add id = "my-component" under [component]')
        permissions = _table(data, "permissions", required=False)
        storage = permissions.get("storage", {"access": "none"})
        if isinstance(storage, str):
            storage = {"access": storage}
        if not isinstance(storage, dict):
            raise ManifestError(
                'permissions.storage must be a table such as { access = "read-write", max-size = "10MB" }'
            )
        known = {"access", "max-size", "buckets", "transactional", "quota-warnings", "changes", "subscribe"}
        unknown = set(storage) - known
        if unknown:
            raise ManifestError(
                f"permissions.storage has unknown field(s) {sorted(unknown)}: only access, max-size, buckets, "
                "transactional, quota-warnings, changes and subscribe exist"
            )
        if "access" not in storage:
            raise ManifestError("permissions.storage.access is missing")
        access = storage["access"]
        if not isinstance(access, str) or access not in {a.value for a in Access}:
            raise ManifestError(
                f"permissions.storage.access {access!r} is invalid: use one of "
                + ", ".join(repr(a.value) for a in Access)
            )
        return cls(
            id=component["id"],
            access=Access(access),
            max_size=storage.get("max-size"),
            name=component.get("name", ""),
            version=component.get("version", ""),
            limits=ManifestLimits.from_table(data["limits"]) if "limits" in data else ManifestLimits(),
            buckets=storage.get("buckets", DEFAULT_BUCKETS),
            transactional=storage.get("transactional", False),
            quota_warnings=storage.get("quota-warnings"),
            changes=storage.get("changes"),
            subscribe=storage.get("subscribe", ()),
        )


def _table(data: dict[str, Any], name: str, required: bool = True) -> dict[str, Any]:
    value = data.get(name)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise ManifestError(f"[{name}] table is missing or not a table")
    return value
