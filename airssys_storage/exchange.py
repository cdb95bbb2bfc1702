"""Moving data out of, into and between stores: the portable export format and migration.

The export format (``airssys-storage-export``, version 2) is JSON Lines, UTF-8,
one JSON object per line, ``\\n``-terminated::

    {"format":"airssys-storage-export","version":2,"component":"my-app"}
    {"key":"config/theme","value":"ZGFyaw=="}
    {"key":"session:9","value":"eA==","expires_at_ms":4102444800000}
    {"key":"user:1","value":""}
    {"end":{"records":3,"bytes":32}}

1. The header: ``format`` (exactly ``"airssys-storage-export"``), ``version``
   (an integer; this module writes ``2`` and reads ``1`` and ``2``) and
   ``component`` (the id the data came from). Readers ignore other header fields.
2. One record per key: the fields ``key`` (the key as a JSON string), ``value``
   (the value's bytes in standard base64 with padding; ``""`` for an empty
   value) and, only for a key that expires, ``expires_at_ms``: its absolute
   expiry, an integer of milliseconds since the Unix epoch (1 to 2**63 - 1).
   No other field. Version 1 files have no ``expires_at_ms`` (their keys never
   expire). Each key appears at most once. Exports list keys in bytewise UTF-8
   order; readers accept any order.
3. The end line: exactly ``{"end": {"records": N, "bytes": B}}`` where N is
   the number of records and B the sum of their UTF-8 key bytes plus value
   bytes (the component's usage). Nothing may follow it. It makes a truncated
   file detectable.

Writers emit compact, ASCII-only JSON with the fields in the order shown, so
exporting the same data always gives the same bytes, whatever the backend.

Importing validates the whole file first (every line, key and value against
the target's limits, duplicates, the end line's counts) and writes nothing
when any of it is wrong; the error names the line. It then writes in atomic
batches of ``max_batch_ops`` keys with the ``set-many`` permission, so the
target's quota and permissions apply to every batch, and each key keeps its
exact expiry. Keys whose value and expiry are already identical are not
rewritten; records whose expiry has passed by the time they are written are
skipped (counted as ``expired``), as the source would no longer show them.
Re-running an interrupted import or migration finishes it.

Versions are per store: an imported or migrated key gets the target's next
version (a fresh key starts at 1), never the source's, so compare-and-swap
clients must read their keys again after a store move.

Verification compares like with like: the entries read from the source (or
file) that are still live at one moment of the target's clock against the
target's entries live at that moment (expired rows that usage still counts
until they are swept are left out on both sides). The source is never
written to.

Operator access: :func:`operator_settings` and :func:`operator_storage` give
admin handles with no quota (or an explicit one) on a manager opened for that
purpose. :func:`operator_storage` reloads the component's manifest *on that
manager*, so never pass a manager that also serves the live component.
"""

from __future__ import annotations

import base64
import binascii
import json
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, ClassVar, TypeVar

from .backend import Usage
from .errors import KeyNotFound, ManifestError, QuotaExceeded, StorageError
from .hostmeta import is_host_namespace
from .manifest import Access, Manifest, validate_component_id
from .storage import MAX_EXPIRES_AT_MS, ComponentStorage, StorageManager, encode_key

if TYPE_CHECKING:
    from .settings import StorageSettings  # only annotations here; see storage.py

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ExportFormatError",
    "VerificationError",
    "ExportInfo",
    "ImportResult",
    "CopyResult",
    "MigrationPlan",
    "operator_settings",
    "operator_storage",
    "export_component",
    "validate_export",
    "read_export_component",
    "import_component",
    "copy_component",
    "plan_migration",
    "migrate",
    "pages",
]

FORMAT_NAME = "airssys-storage-export"
FORMAT_VERSION = 2
#: The format versions this module reads (version 1 has no expiries).
READ_VERSIONS = (1, 2)
#: Keys per scan page when reading a whole component.
PAGE_SIZE = 1000

#: Called with the number of records (keys) just processed.
Progress = Callable[[int], None]
#: One key as exchanged: ``(key, value, expires_at)``, the expiry in ms since the epoch (``None``: never).
Record = tuple[str, bytes, int | None]
_Item = TypeVar("_Item")


class ExportFormatError(StorageError):
    """An import file is not a valid export; ``line`` is the 1-based line at fault."""

    code: ClassVar[str] = "invalid-export-file"

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class VerificationError(StorageError):
    """After a migration or import, the target's key count or usage differs from the source's."""

    code: ClassVar[str] = "verification-failed"


@dataclass(frozen=True)
class ExportInfo:
    """What an export file holds (or what an export wrote)."""

    component: str
    records: int
    bytes: int


@dataclass(frozen=True)
class ImportResult:
    component: str
    records: int
    bytes: int
    #: Records written; the others already had the identical value and expiry, or had expired.
    written: int
    #: Records not written because their expiry had passed (the source would no longer show them).
    expired: int = 0


@dataclass(frozen=True)
class CopyResult:
    """One component's migration: what was written and the live data compared at the end.

    *source* is what was read from the source and is still live at the
    verification's moment, *target* what the target holds live then (expired
    rows not yet swept count on neither side).
    """

    component: str
    written: int
    unchanged: int
    deleted: int
    source: Usage
    target: Usage
    #: Keys read live from the source whose expiry passed before they were written (not written).
    expired: int = 0

    @property
    def verified(self) -> bool:
        return self.source == self.target


@dataclass(frozen=True)
class MigrationPlan:
    """What :func:`migrate` is about to copy: the component ids and their keys in the source."""

    components: list[str]
    #: Keys the source holds in those components (the total a progress bar counts to; from the usage
    #: counters, so expired keys not yet swept are included, though not copied).
    keys: int


# -- operator access ---------------------------------------------------------


def operator_settings(settings: StorageSettings, *, quota: int | None = None) -> StorageSettings:
    """*settings* with the built-in ``manifest`` policy and a fixed *quota* (``None`` = unlimited).

    Handles from :func:`operator_storage` on a manager opened with these
    settings may do everything, limited only by *quota*. The result is valid
    whenever *settings* is: ``plugin_options`` tables of the policies and
    quota strategy it replaces are left out (they configure plugins that
    operator access does not use). Validate *settings* itself first with
    :func:`~airssys_storage.plugins.check_plugin_options` to refuse its
    mistakes (the CLI does).
    """
    policies = ["manifest"]
    strategy = "fixed"
    kept = {name: table for name, table in settings.plugin_options.items() if name in {*policies, strategy}}
    return settings.model_copy(
        update={
            "policies": policies,
            "quota_strategy": strategy,
            "fixed_quota_bytes": quota,
            "plugin_options": kept,
        }
    )


def operator_storage(manager: StorageManager, component: str, *, changes: bool | None = None) -> ComponentStorage:
    """An admin handle on *component* (its quota is whatever *manager*'s strategy gives admins).

    *changes*: the component's change feed on (``True``, for ``watch``), or (``None``) as it is in
    *manager* — a feed the host turned on stays on while an operator (the explorer, a CLI command
    sharing the host's manager) looks — and as the settings say for a component not yet open.
    """
    if changes is None and component in manager.backend.feeds:
        changes = True  # opening with the settings' default would switch the host's feed off
    return manager.component(Manifest(id=component, access=Access.ADMIN, changes=changes))


# -- export ------------------------------------------------------------------


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


def pages(storage: ComponentStorage, prefix: str | None = None) -> Iterator[list[tuple[str, bytes]]]:
    """Every ``(key, value)`` of *storage* whose key starts with *prefix*, page by page, in bytewise order.

    Pages through :meth:`ComponentStorage.scan`, so it works for any number of keys.
    """
    page = min(PAGE_SIZE, _settings(storage).max_keys_per_query)
    cursor: str | None = None
    while True:
        items, cursor = storage.scan(prefix, cursor, page)
        if items:
            yield items
        if cursor is None:
            return


def _record_pages(storage: ComponentStorage) -> Iterator[list[Record]]:
    """Every live key of *storage* with its value and exact expiry, page by page, in bytewise order.

    A key that expires (or is deleted) between the scan and the read of its
    entry is left out. Needs ``scan`` and ``get-entry`` permission.
    """
    for items in pages(storage):
        rows = storage._entry_rows([key for key, _ in items])
        page = [
            (key, row.value, row.expires_at)
            for (key, _), row in zip(items, rows, strict=True)
            if row is not None and row.value is not None
        ]
        if page:
            yield page


class _Census:
    """Keys and bytes of entries, to count those live at one moment (so that verification compares like with like).

    Entries that never expire are summed; expiring ones are kept as
    ``(expires_at, size)`` in two int64 arrays (16 bytes per key).
    """

    def __init__(self) -> None:
        self.keys = self.bytes = 0
        self._expiries = array("q")
        self._sizes = array("q")

    def add(self, key: str, value: bytes, expires_at: int | None) -> None:
        size = len(key.encode()) + len(value)
        if expires_at is None:
            self.keys += 1
            self.bytes += size
        else:
            self._expiries.append(expires_at)
            self._sizes.append(size)

    def live_at(self, now: int) -> Usage:
        """The usage of the entries live at *now* (ms): those without expiry or expiring after *now*."""
        keys, total = self.keys, self.bytes
        for expires_at, size in zip(self._expiries, self._sizes, strict=True):
            if _is_live(expires_at, now):
                keys += 1
                total += size
        return Usage(total, keys)


def _live_census(storage: ComponentStorage) -> _Census:
    """Every live entry of *storage* (a full scan; reads only)."""
    census = _Census()
    for page in _record_pages(storage):
        for record in page:
            census.add(*record)
    return census


def _live_usages(expected: _Census, target: ComponentStorage) -> tuple[Usage, Usage]:
    """*expected* and *target*'s live entries, both counted at one moment of *target*'s clock.

    The moment is read after the target's scan, so an entry that expired
    during the scan is left out on both sides. Returns ``(expected, actual)``.
    """
    actual = _live_census(target)
    now = target._clock()
    return expected.live_at(now), actual.live_at(now)


def export_component(storage: ComponentStorage, out: IO[bytes], *, progress: Progress | None = None) -> ExportInfo:
    """Write every live key of *storage* to *out* in the export format, in bytewise key order, with its expiry.

    The export is consistent if nothing writes to the component meanwhile.
    Needs ``scan`` and ``get-entry`` permission.
    """
    out.write(_line({"format": FORMAT_NAME, "version": FORMAT_VERSION, "component": storage.component_id}))
    records = total = 0
    for page in _record_pages(storage):
        for key, value, expires_at in page:
            line: dict[str, Any] = {"key": key, "value": base64.b64encode(value).decode("ascii")}
            if expires_at is not None:
                line["expires_at_ms"] = expires_at
            out.write(_line(line))
            total += len(key.encode()) + len(value)
        records += len(page)
        if progress is not None:
            progress(len(page))
    out.write(_line({"end": {"records": records, "bytes": total}}))
    return ExportInfo(storage.component_id, records, total)


# -- reading and validating an export ----------------------------------------


def _settings(storage: ComponentStorage) -> StorageSettings:
    # The handle's limits; read through the manager (package-internal access).
    return storage.settings


class _Reader:
    """Parses an export line by line; both import passes use it, so they apply the same rules."""

    def __init__(self, source: IO[bytes], storage: ComponentStorage | None) -> None:
        self._source = source
        self._lineno = 0
        self.version = FORMAT_VERSION
        if storage is None:  # header only
            self._max_line = _HEADER_MAX
        else:
            settings = _settings(storage)
            # The core's own key rule, so the file passes exactly the keys set_many will accept.
            self._max_key = settings.max_key_bytes
            self._max_value = settings.max_value_bytes
            # JSON escaping at most triples a key's UTF-8 bytes; base64 is 4/3 of the value.
            self._max_line = 3 * settings.max_key_bytes + 4 * (settings.max_value_bytes // 3 + 1) + _HEADER_MAX
        self.component = self._header()

    def _fail(self, message: str, line: int | None = None) -> ExportFormatError:
        line = self._lineno if line is None else line
        return ExportFormatError(f"line {line}: {message}", line)

    def _next(self) -> Any:
        """The next line's JSON value, or ``_EOF``."""
        raw = self._source.readline(self._max_line + 1)
        if not raw:
            return _EOF
        self._lineno += 1
        if len(raw) > self._max_line and not raw.endswith(b"\n"):
            raise self._fail(f"the line is longer than {self._max_line} bytes, more than any valid record")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self._fail("not UTF-8 text: the file is binary or corrupted") from None
        try:
            return json.loads(text, object_pairs_hook=_unique_fields)
        except _DuplicateField as exc:
            raise self._fail(
                f"the JSON field {exc.name!r} appears twice in one object: the file is corrupted"
            ) from None
        except json.JSONDecodeError as exc:
            raise self._fail(f"not valid JSON ({exc.msg}, column {exc.colno})") from None
        except RecursionError:
            raise self._fail("not valid JSON (nested too deeply)") from None

    def _header(self) -> str:
        header = self._next()
        if header is _EOF:
            raise ExportFormatError("line 1: the file is empty, not an airssys-storage export", 1)
        if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
            raise self._fail(
                f'not an airssys-storage export: the first line must be the header {{"format": "{FORMAT_NAME}", '
                f'"version": {FORMAT_VERSION}, "component": ID}}'
            )
        version = header.get("version")
        if not _is_int(version) or version not in READ_VERSIONS:
            raise self._fail(
                f"export format version {version!r} is not supported (this airssys-storage reads versions "
                f"{', '.join(map(str, READ_VERSIONS))}): import it with the airssys-storage release that wrote it"
            )
        self.version = version
        try:
            return validate_component_id(header.get("component"))
        except ManifestError as exc:
            raise self._fail(f"header field {exc.message}") from None

    def records(self) -> Iterator[tuple[int, Record]]:
        """Yield ``(line, (key, value, expires_at))`` for every record, then check the end line."""
        fields = _RECORD_FIELDS[self.version]
        count = total = 0
        while True:
            obj = self._next()
            if obj is _EOF:
                raise self._fail(
                    'the file ends without its end line {"end": ...}: it is truncated (an interrupted '
                    "export or copy?); export the component again",
                    self._lineno + 1,
                )
            if isinstance(obj, dict) and obj.keys() in fields:
                record = self._record(obj)
                count += 1
                total += len(record[0].encode()) + len(record[1])
                yield self._lineno, record
            elif isinstance(obj, dict) and obj.keys() == {"end"}:
                self._end(obj["end"], count, total)
                return
            else:
                expiry = ' (and "expires_at_ms": ...)' if self.version >= 2 else ""
                raise self._fail(
                    f'expected a record {{"key": ..., "value": ...{expiry}}} or the end line {{"end": ...}}'
                )

    def _record(self, obj: dict[str, Any]) -> Record:
        key, encoded = obj["key"], obj["value"]
        if not isinstance(key, str):
            raise self._fail(f"key must be a JSON string, not {type(key).__name__}")
        try:
            encode_key(key, self._max_key)
        except StorageError as exc:
            raise self._fail(exc.message) from None
        if not isinstance(encoded, str):
            raise self._fail(f"value of key {key!r} must be a base64 string, not {type(encoded).__name__}")
        try:
            value = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise self._fail(f"value of key {key!r} is not valid base64") from None
        if len(value) > self._max_value:
            raise self._fail(
                f"value of key {key!r} is {len(value)} bytes; the target's maximum is {self._max_value} bytes "
                "(raise max_value_bytes in the settings)"
            )
        if "expires_at_ms" not in obj:
            return key, value, None
        expires_at = obj["expires_at_ms"]
        if not _is_int(expires_at) or not 0 < expires_at <= MAX_EXPIRES_AT_MS:
            raise self._fail(
                f"expires_at_ms of key {key!r} must be an integer of milliseconds since the epoch from 1 to "
                f"{MAX_EXPIRES_AT_MS}, not {expires_at!r}"
            )
        return key, value, expires_at

    def _end(self, end: Any, count: int, total: int) -> None:
        if not isinstance(end, dict) or end.keys() != {"records", "bytes"}:
            raise self._fail('the end line must be {"end": {"records": N, "bytes": B}}')
        for field in ("records", "bytes"):
            if not _is_int(end[field]):
                raise self._fail(
                    f"the end line's {field} must be an integer, not {type(end[field]).__name__} {end[field]!r}: "
                    "the file is corrupted; export the component again"
                )
        if end["records"] != count or end["bytes"] != total:
            raise self._fail(
                f"the end line announces {end['records']!r} records of {end['bytes']!r} bytes, but the file "
                f"holds {count} records of {total} bytes: it is corrupted; export the component again"
            )
        if self._next() is not _EOF:
            raise self._fail("data after the end line: the file is corrupted or two exports were concatenated")


_EOF = object()
#: The field sets a record may have, per format version.
_RECORD_FIELDS = {1: ({"key", "value"},), 2: ({"key", "value"}, {"key", "value", "expires_at_ms"})}


class _DuplicateField(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _unique_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's fields as a dict; a field given twice raises :class:`_DuplicateField`."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _DuplicateField(name)
            seen.add(name)
    return obj


def _is_int(value: object) -> bool:
    """A JSON integer: ``int``, not ``bool`` (``true``) nor ``float`` (``1.0``)."""
    return isinstance(value, int) and not isinstance(value, bool)


# The longest header line, and the slack for JSON syntax and spacing on a record line.
_HEADER_MAX = 65536


def read_export_component(source: IO[bytes]) -> str:
    """The component id in the header of the export at *source* (reads only the first line)."""
    return _Reader(source, None).component


def validate_export(source: IO[bytes], storage: ComponentStorage) -> ExportInfo:
    """Check a whole export against *storage*'s limits without writing; raise :class:`ExportFormatError`.

    The result counts every record of the file (as its end line does),
    expired ones included: whether a record is still live depends on when it
    is imported.
    """
    reader = _Reader(source, storage)
    seen: dict[str, int] = {}
    count = total = 0
    for line, (key, value, _) in reader.records():
        first = seen.setdefault(key, line)
        if first != line:
            raise ExportFormatError(f"line {line}: key {key!r} appears twice (first on line {first})", line)
        count += 1
        total += len(key.encode()) + len(value)
    return ExportInfo(reader.component, count, total)


# -- writing -----------------------------------------------------------------


def _chunks(items: Iterable[_Item], size: int) -> Iterator[list[_Item]]:
    chunk: list[_Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _is_live(expires_at: int | None, now: int) -> bool:
    """Whether an entry expiring at *expires_at* is live at *now* (ms); ``expires_at <= now`` is not."""
    return expires_at is None or expires_at > now


def _live(records: list[Record], now: int) -> list[Record]:
    """The records not yet expired at *now* (ms)."""
    return [record for record in records if _is_live(record[2], now)]


def _write_changed(target: ComponentStorage, records: list[Record], written: _Census) -> tuple[int, int]:
    """Write the live *records* whose value or expiry differs in *target*, as one atomic batch.

    Records already expired by *target*'s clock are skipped; the live ones
    (written or already identical) are added to *written*. Returns ``(written,
    expired)`` counts.
    """
    live = _live(records, target._clock())
    current = target._entry_rows([key for key, _, _ in live])
    changed = [
        record
        for record, row in zip(live, current, strict=True)
        if row is None or row.value != record[1] or row.expires_at != record[2]
    ]
    if changed:
        target._restore_many(changed)
    for record in live:
        written.add(*record)
    return len(changed), len(records) - len(live)


def _file_records(source: IO[bytes], storage: ComponentStorage) -> Iterator[Record]:
    return (record for _, record in _Reader(source, storage).records())


def _projected_usage(source: IO[bytes], storage: ComponentStorage, info: ExportInfo, replace: bool, limit: int) -> int:
    """The bytes *storage* would use after importing the validated file at *source*.

    Both sides count live data only: the file's records still live now, and
    *storage*'s live entries (its expired rows are swept before a write is
    refused for quota, so they never stand in the way).
    """
    used = storage.usage().bytes  # counts expired rows too: an upper bound of the live bytes
    if (0 if replace else used) + info.bytes <= limit:
        return (0 if replace else used) + info.bytes  # an upper bound that already fits: no need to read more
    now = storage._clock()
    batch = _settings(storage).max_batch_ops
    if replace:
        records = _file_records(source, storage)
        return sum(len(key.encode()) + len(value) for key, value, expires_at in records if _is_live(expires_at, now))
    delta = 0
    for chunk in _chunks(_file_records(source, storage), batch):
        live = _live(chunk, now)
        old = storage._entry_rows([key for key, _, _ in live])
        for (key, value, _), previous in zip(live, old, strict=True):
            delta += len(value) - (0 if previous is None else previous.size)
            if previous is None:
                delta += len(key.encode())
    return _live_census(storage).live_at(now).bytes + delta


def import_component(
    storage: ComponentStorage,
    source: IO[bytes],
    *,
    replace: bool = False,
    progress: Progress | None = None,
    on_validated: Callable[[ExportInfo], None] | None = None,
) -> ImportResult:
    """Import the export at *source* (seekable, binary) into *storage*.

    The whole file is validated first; a bad file raises
    :class:`ExportFormatError` and nothing is written. If *storage* has a
    quota and the import would pass it, :class:`~airssys_storage.QuotaExceeded`
    is raised before writing. Keys of *storage* absent from the file are kept,
    unless *replace*, which clears the component first (needs admin access).
    Each key gets the file's expiry (none if the record has none); a record
    whose expiry has passed is not written, like a key absent from the file.
    The file's component id is informational: the data goes to *storage*.
    *on_validated* is called with what the file holds once it passed. Needs
    ``get-entry`` and ``set-many`` permission.
    """
    start = source.tell()
    info = validate_export(source, storage)
    if on_validated is not None:
        on_validated(info)
    limit = storage.quota
    if limit is not None:
        source.seek(start)
        projected = _projected_usage(source, storage, info, replace, limit)
        if projected > limit:
            detail = (
                f"importing {info.records} records would bring component {storage.component_id!r} to "
                f"{projected} bytes, above its quota of {limit} bytes; nothing was written"
            )
            raise QuotaExceeded(
                f"{detail}; delete data, replace the component's data (--replace), or raise the limit: "
                f"{storage.quota_source}",
                detail=detail,
            )
    source.seek(start)
    if replace:
        storage.clear()
    batch = _settings(storage).max_batch_ops
    census = _Census()
    written = expired = done = 0
    try:
        for chunk in _chunks(_file_records(source, storage), batch):
            changed, gone = _write_changed(storage, chunk, census)
            written += changed
            expired += gone
            done += len(chunk)
            if progress is not None:
                progress(len(chunk))
    except StorageError as exc:
        raise type(exc)(
            f"import stopped after {done} of {info.records} records (the written batches stay; re-running "
            f"the import finishes it): {exc.message}"
        ) from exc
    if replace:
        _verify(storage.component_id, *_live_usages(census, storage), "the file")
    return ImportResult(storage.component_id, info.records, info.bytes, written, expired)


def _verify(component: str, expected: Usage, actual: Usage, origin: str) -> None:
    if expected != actual:
        raise VerificationError(_mismatch(component, expected, actual, origin))


def _mismatch(component: str, expected: Usage, actual: Usage, origin: str) -> str:
    fix = (
        "the target holds keys the source lacks: rerun with --prune to delete them"
        if actual.keys > expected.keys
        else "something wrote to the source or target meanwhile: stop writers and rerun"
    )
    return (
        f"component {component!r}: {origin} has {expected.keys} keys / {expected.bytes} bytes, the target "
        f"has {actual.keys} keys / {actual.bytes} bytes; {fix}"
    )


# -- migration ---------------------------------------------------------------


def copy_component(
    source: ComponentStorage,
    target: ComponentStorage,
    *,
    prune: bool = False,
    progress: Progress | None = None,
) -> CopyResult:
    """Copy every live key of *source* into *target* with its value and expiry (identical ones are not rewritten).

    With *prune*, keys of *target* that *source* lacks are deleted, so that
    the target mirrors the source. Returns the live data of both, counted at
    one moment, for verification. Never writes to *source*.
    """
    batch = _settings(target).max_batch_ops
    copied = _Census()
    written = unchanged = expired = deleted = 0
    for page in _record_pages(source):
        for chunk in _chunks(page, batch):
            changed, gone = _write_changed(target, chunk, copied)
            written += changed
            expired += gone
            unchanged += len(chunk) - changed - gone
            if progress is not None:
                progress(len(chunk))
    if prune:
        for listed in pages(target):
            for keys in _chunks([key for key, _ in listed], batch):
                extra = [key for key, value in zip(keys, source.get_many(keys), strict=True) if value is None]
                if extra:
                    deleted += target.delete_many(extra)
    return CopyResult(source.component_id, written, unchanged, deleted, *_live_usages(copied, target), expired)


def plan_migration(
    source: StorageManager,
    target: StorageManager,
    components: Sequence[str] | None = None,
    *,
    prune: bool = False,
) -> MigrationPlan:
    """The components :func:`migrate` copies, and how many keys the source holds in them.

    Without *components*: every component holding data in *source*, plus, with
    *prune*, those holding data only in *target* (e.g. cleared in the source
    since the last run: pruning empties them). A component named in
    *components* that holds no key in *source* (nor, with *prune*, in *target*)
    raises :class:`~airssys_storage.KeyNotFound` naming it: most likely a
    mistyped id.
    """
    if components is None:
        found = set(source.backend.namespaces())
        if prune:
            found.update(target.backend.namespaces())
        # Host metadata (cursors of change-feed deliveries) refers to the source store's seqs: it stays there.
        ids = sorted(ns for ns in found if not is_host_namespace(ns))
    else:
        ids = list(dict.fromkeys(components))
    usages = {cid: operator_storage(source, cid).usage() for cid in ids}
    for cid in components or ():
        if usages[cid].keys == 0 and not (prune and operator_storage(target, cid).usage().keys):
            raise KeyNotFound(
                f"component {cid!r} holds no keys in the source ({source.backend.name} backend); check the id "
                "and the source URL (`airssys-storage stats --url URL` lists the components)"
            )
    return MigrationPlan(ids, sum(usage.keys for usage in usages.values()))


def migrate(
    source: StorageManager,
    target: StorageManager,
    components: Sequence[str] | None = None,
    *,
    prune: bool = False,
    progress: Progress | None = None,
    on_planned: Callable[[MigrationPlan], None] | None = None,
) -> list[CopyResult]:
    """Copy the components :func:`plan_migration` chooses from *source* into *target*.

    By default every component holding data in *source*; with *prune*, keys
    (and components) that *source* lacks are deleted from *target*, so that it
    mirrors the source. *on_planned* is called with the plan before copying.

    Both managers must be opened for this purpose with :func:`operator_settings`
    (see the module docs). Raises :class:`VerificationError` at the end if a
    component's key count or usage differs between the two; every component is
    copied first. Safe to re-run after an interruption.
    """
    plan = plan_migration(source, target, components, prune=prune)
    if on_planned is not None:
        on_planned(plan)
    results = [
        copy_component(operator_storage(source, cid), operator_storage(target, cid), prune=prune, progress=progress)
        for cid in plan.components
    ]
    bad = [r for r in results if not r.verified]
    if bad:
        raise VerificationError("; ".join(_mismatch(r.component, r.source, r.target, "the source") for r in bad))
    return results
