"""The LevelDB backend: ``leveldb:///absolute/path``, one process per database.

Commits: every write is decided by :func:`airssys_storage.planner.plan` (the
guard rule, versions, expiry, conditions, counters, op ids; see
:mod:`airssys_storage.backend`). :meth:`LevelDBBackend.apply` reads the old
rows, the counter record and the recorded op ids under one lock, plans, and
writes rows, counter and op records as one LevelDB write batch, with
``wb.write()`` only after every change has been added, so a failure while
building the batch writes nothing (plyvel's ``with db.write_batch():`` would
write the partial batch when the block raises). LevelDB applies a batch
all-or-nothing, also across a crash: its log replay drops a batch whose
record is incomplete. The record format is in :mod:`.layout`.

Serialisation: one lock around every read-plan-write, the row cache and the
reused write batch. The core takes no lock of its own, so this lock is what
makes each commit atomic for every component and thread sharing the backend;
taken with acquire/release it costs about 0.1 µs per write.

Caches: counter records are kept in memory after their first read, and so are
the rows (size, version, expiry — not the value) of recently written keys, so
that an overwrite learns the old state without reading it: LevelDB's lock
file guarantees that no other process writes this database while it is open,
so neither cache can go stale. A miss costs one ``get`` of the row, whose
header holds the version and expiry beside the value.

Fork: a forked child must not use the parent's handle (two processes writing
through one LevelDB handle lose acknowledged writes and break the counters).
An at-fork hook (:mod:`airssys_storage.forking`) swaps every handle in the
child for a stand-in whose every method raises a clear error, so there is no
per-operation process check; the parent keeps working untouched.

Damage: the database is opened with ``paranoid_checks``, so damage LevelDB
sees while opening (a bad write-ahead log record, a bad ``MANIFEST``) refuses
the open with the repair command instead of silently dropping records. Reads
verify block checksums when ``verify_checksums`` is set (see the options);
:meth:`LevelDBBackend.verify` always does.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import operator
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from itertools import islice
from time import time_ns as _time_ns
from typing import Any, NamedTuple, NoReturn, TypeAlias
from urllib.parse import unquote, urlsplit

try:
    import plyvel
except ImportError as _exc:  # the plugin still registers; opening a store names the fix
    PLYVEL_MISSING: ImportError | None = _exc
else:
    PLYVEL_MISSING = None

from airssys_storage import (
    Capabilities,
    ConfigurationError,
    InternalError,
    StorageBackend,
    StorageError,
    StoreDamaged,
    Usage,
    VerifyReport,
)
from airssys_storage.backend import (
    BadKey,
    BadRow,
    expiry_problem,
    key_problems,
    operator_command,
    verify_report,
    version_problem,
    wall_clock_ms,
)
from airssys_storage.files import PRIVATE_FILE_MODE, make_private_dirs
from airssys_storage.forking import ForkAware, track
from airssys_storage.planner import MAX_VERSION, KeyState, Plan, SpaceState, Write, WriteKind, add_to_counter, plan
from airssys_storage.plugins import backend_scheme

from .layout import (
    COUNTER,
    DATA_END,
    DATA_TAG,
    MIGRATING_KEY,
    OP_RESULT,
    OP_TIME,
    SCHEMA_KEY,
    SCHEMA_VERSION,
    USAGE_PREFIX,
    V1_USAGE,
    counter_key,
    decode_header,
    encode_row,
    namespace_of_counter_key,
    namespace_prefix,
    op_key,
    op_time_key,
    op_time_prefix,
)
from .options import LevelDBOptions

__all__ = ["LevelDBBackend", "path_from_url"]

#: What :meth:`LevelDBBackend.verify` checks (shown in its report).
_VERIFY_CHECKS = ("usage counters", "counts of rows with an expiry", "row headers", "block checksums of every record")
#: How a counter record that cannot be decoded shows in a verify report.
_BAD = Usage(-1, -1)
#: Keys recounted between two progress reports.
_PROGRESS_STEP = 10_000

SQL_HINT = "multi-process hosts should use the SQL backend (sqlite:////ABSOLUTE/PATH or postgresql+psycopg://…)"

# Real paths of the databases open in this process, so that repair_url() does
# not pull a database out from under a live handle (RepairDB takes no lock).
_open_paths: set[str] = set()
_open_paths_lock = threading.Lock()
# In a forked child: real paths the parent had open at the fork. LevelDB's
# in-process lock table still lists them, so this process can never open them.
_forked_paths: set[str] = set()
# Handles inherited by a forked child: never closed nor freed there (see after_fork_in_child).
_inherited: list[Any] = []


def path_from_url(url: str) -> str:
    """The absolute filesystem path of a ``leveldb:///absolute/path`` URL."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigurationError(f"leveldb URL {url!r} is invalid ({exc}); write leveldb:///absolute/path") from None
    if backend_scheme(url) != "leveldb":
        raise ConfigurationError(f"{url!r} is not a leveldb:// URL")
    if parts.netloc:
        raise ConfigurationError(
            f"leveldb URL {url!r} names a host ({parts.netloc!r}); write leveldb:///absolute/path with three slashes"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"leveldb URL {url!r} has a query or fragment; put options in backend_options instead")
    path = unquote(parts.path)
    if not path.startswith("/") or path.rstrip("/") == "":
        raise ConfigurationError(f"leveldb URL {url!r} must name an absolute directory path: leveldb:///absolute/path")
    # normpath keeps a leading "//" (POSIX leaves its meaning to the system; Linux reads it as "/"):
    # leveldb:////data/x names /data/x, and messages should say so.
    return "/" + os.path.normpath(path).lstrip("/")


class _Space:
    """One namespace: its key prefixes, a prefixed view for listings and its cached counter record."""

    __slots__ = ("counter", "counter_key", "namespace", "op_prefix", "op_time_prefix", "prefix", "view")

    def __init__(self, namespace: str, db: Any) -> None:
        self.namespace = namespace
        self.prefix = namespace_prefix(namespace)
        self.counter_key = counter_key(namespace)
        self.op_prefix = op_key(namespace, "")
        self.op_time_prefix = op_time_prefix(namespace)
        self.bind(db)

    def bind(self, db: Any) -> None:
        """Use *db* from now on and forget the cached counter (a holder of this object reloads it)."""
        # A prefixed view strips the prefix from listed keys in C.
        self.view: Any = db if isinstance(db, _Closed) else db.prefixed_db(self.prefix)
        #: (bytes, keys, floor, expiring), or None until first read from the database (under the write lock).
        self.counter: Counter | None = None


#: A namespace's counter record: bytes used, rows, version floor, rows with an expiry.
Counter: TypeAlias = tuple[int, int, int, int]
#: What the row cache holds for a data key: its row without the value, or ``None`` for no row.
Cached: TypeAlias = "KeyState | None"


class _RowFix(NamedTuple):
    """How a repair fixes a row with a bad version or expiry (see :class:`BadRow`)."""

    row: BadRow
    data_key: bytes
    #: The record to write instead (the fresh version), or None to remove the row.
    record: bytes | None
    #: The floor the removal raises the counter's floor to (0: none).
    floor: int
    #: Rows with an expiry the removal takes off the counter's ``expiring``.
    expiring: int


# Not in the row cache (``None`` there means "no row").
_MISS: Any = object()
_new = tuple.__new__
_first = operator.itemgetter(0)
_PUT, _DELETE, _INCREMENT, _TOUCH, _SWEEP = WriteKind  # in definition order
#: Recorded operations older than the retention dropped per commit that records one (bounds its cost).
_OP_GC_STEP = 64


class _NoRows(dict[bytes, Cached]):
    """The row cache when it is switched off (``size_cache_keys = 0``): it never holds anything."""

    def __setitem__(self, key: bytes, value: Cached) -> None:
        pass


class _Closed:
    """Stands in for the database after close(): any use is a clear error, at no cost before."""

    def __init__(self, path: str) -> None:
        self._path = path

    def __getattr__(self, name: str) -> Callable[..., NoReturn]:
        return self._fail

    def _fail(self, *args: object, **kwargs: object) -> NoReturn:
        raise InternalError(f"the LevelDB database at {self._path} is closed")


class _Forked(_Closed):
    """Stands in for the parent's database in a forked child: any use is a clear error."""

    def _fail(self, *args: object, **kwargs: object) -> NoReturn:
        raise InternalError(_forked_message(self._path))


def _forked_message(path: str) -> str:
    return (
        f"the LevelDB database at {path} was opened by the parent of this forked process, and a forked "
        "child cannot use it (LevelDB allows one process per database, and this process inherited the "
        "parent's lock): open the store only in the process that uses it, in a process that did not inherit "
        f"it (e.g. multiprocessing's 'spawn' start method), or {SQL_HINT}"
    )


class LevelDBBackend(StorageBackend, ForkAware):
    """Namespaced rows in one LevelDB database, counters and operation ids in the same write batches."""

    name = "leveldb"
    url_schemes = ("leveldb",)
    capabilities = Capabilities(persistent=True, multi_process=False, repair=True)
    Options = LevelDBOptions

    def __init__(self, path: str, db: Any, options: LevelDBOptions) -> None:
        self.path = path
        self.options = options
        self._lock = threading.Lock()
        self._spaces: dict[str, _Space] = {}
        # Rows (size, version, expiry; no value) of recently written keys, None for "no row",
        # so that a write learns its key's old state without reading it. Exact because no
        # other process can write this database while it is open.
        self._rows: dict[bytes, Cached] = {} if options.size_cache_keys else _NoRows()
        self._row_limit = options.size_cache_keys
        #: Bumped by every counter repair, so that a repair based on an older snapshot starts again.
        self._repairs = 0
        self._bind(db)
        if options.verify_checksums:
            self.get = self._get_verified  # type: ignore[method-assign]
        self._real_path = os.path.realpath(path)
        with _open_paths_lock:
            _open_paths.add(self._real_path)
        track(self)

    def after_fork_in_child(self) -> None:
        """Swap the inherited handle for the refusing stand-in (see the module docs)."""
        global _open_paths_lock
        db = self._db
        if not isinstance(db, _Closed):
            # Never close or free it here: LevelDB's destructor would wait for a background
            # compaction thread that does not exist in the child, and unlock the parent's files.
            # One extra reference keeps even interpreter shutdown from freeing it.
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(db))
            _inherited.append(db)
            _forked_paths.add(self._real_path)
        _open_paths_lock = threading.Lock()  # another thread may have held it at fork time
        _open_paths.discard(self._real_path)
        self._lock = threading.Lock()
        self._bind(_Forked(self.path))

    def _bind(self, db: Any) -> None:
        """Point every handle at *db* (a ``plyvel.DB`` or the closed stand-in); forget the caches."""
        # Hot paths call self._db.get() rather than a bound method kept on the
        # instance: Python 3.11 specialises the method call on the database
        # object but not a call through an instance attribute (~10 ns).
        self._db: Any = db
        if isinstance(db, _Closed) or not self.options.sync:
            self._put: Any = db.put
            # One batch, cleared and reused per commit (under the lock): saves an allocation per write.
            self._batch: Any = db if isinstance(db, _Closed) else db.write_batch()
        else:
            self._put = functools.partial(db.put, sync=True)
            self._batch = db.write_batch(sync=True)
        # Rebound rather than dropped: a writer that fetched a space before
        # taking the lock must not use a counter cached before a repair.
        for space in self._spaces.values():
            space.bind(db)
        self._rows.clear()

    # -- opening ---------------------------------------------------------------

    @classmethod
    def open(cls, url: str, options: LevelDBOptions | Mapping[str, Any]) -> LevelDBBackend:
        """Open the database at *url*; *options* as :meth:`parse_options` gives them (a plain mapping is parsed)."""
        opts: LevelDBOptions = cls.parse_options(options)
        path = path_from_url(url)
        db = _open_db(path, opts)
        try:
            _check_schema(db, path)
        except BaseException:
            db.close()
            raise
        return cls(path, db, opts)

    @classmethod
    def exists(cls, url: str, options: Any) -> bool | None:
        """Whether the database directory exists and holds anything (an empty directory is no store yet)."""
        path = path_from_url(url)
        try:
            return any(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            return False

    @classmethod
    def repair_url(cls, url: str, options: LevelDBOptions | Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Repair the database at *url*, which must not be open anywhere, and recount its usage.

        Runs LevelDB's ``RepairDB`` (plyvel's ``repair_db``): it salvages every
        readable record from the log and table files, and drops what it
        cannot read. RepairDB keeps table files whose blocks fail their
        checksum, so the records of such blocks are dropped next (and counted
        in ``records_dropped``). A table file RepairDB cannot read at all is
        moved to ``PATH/lost/``: its records cannot be counted, so the report
        names it in ``files_lost`` and adds a ``warning`` (RepairDB also moves
        every converted log and old MANIFEST there on every run; those hold
        nothing lost and are not reported). Then every usage counter is
        recomputed from the data. Returns what the recount found (see :meth:`recount`).
        """
        opts: LevelDBOptions = cls.parse_options(options or {})
        path = path_from_url(url)
        require_plyvel()
        if not os.path.isdir(path):
            raise ConfigurationError(f"cannot repair the LevelDB database at {path}: no such directory")
        real = os.path.realpath(path)
        with _open_paths_lock:
            if real in _open_paths:
                raise ConfigurationError(
                    f"cannot repair the LevelDB database at {path} while this process has it open; "
                    "call repair() on the open backend, or close it first"
                )
        lost_before = _lost_files(path)
        with _exclusive(path):
            dropped = _repair_files(path, opts)
        # RepairDB moves a table it cannot read at all into PATH/lost/: every record in it is gone. It
        # also moves every log (after converting its readable records into a table) and every old
        # MANIFEST there on each run (LevelDB's db/repair.cc, ArchiveFile): those lose nothing.
        lost = sorted(name for name in _lost_files(path) - lost_before if name.endswith((".ldb", ".sst")))
        backend = cls.open(url, opts)
        try:
            report = {**backend.recount(), "records_dropped": dropped, "files_lost": lost}
        finally:
            backend.close()
        if lost:
            report["warning"] = (
                f"RepairDB could not read {len(lost)} file(s) and moved them to {os.path.join(path, 'lost')}: "
                "their records are not in the repaired database and are not counted in records_dropped; "
                "restore the lost data from a backup"
            )
        return report

    # -- reads -------------------------------------------------------------------

    def _space(self, namespace: str) -> _Space:
        space = self._spaces.get(namespace)
        if space is None:
            space = self._spaces.setdefault(namespace, _Space(namespace, self._db))
        return space

    def get(self, namespace: str, key: bytes) -> bytes | None:
        try:
            prefix = self._spaces[namespace].prefix
        except KeyError:
            prefix = self._space(namespace).prefix
        try:
            raw: bytes | None = self._db.get(prefix + key)
        except plyvel.Error as exc:
            self._fail("read from", exc)
        if raw is None:
            return None
        try:  # free in 3.11 unless raised
            head = raw[0]
        except IndexError:  # an empty record: damage, which _value names
            head = 0
        # The hot path: a row without expiry is one byte test and one slice (see layout).
        if 0 < head < 9:
            return raw[head + 1 :]
        if 16 < head < 25 and len(raw) > head - 8:  # EXPIRES | width 1..8, the header complete
            # A row with an expiry, its header read inline: expires_at follows the version.
            start = head - 15  # 1 + width
            expires_at = int.from_bytes(raw[start : start + 8], "little")
            # The wall clock read inline: expires_at <= time_ns() // 10**6 exactly when
            # expires_at * 10**6 <= time_ns() (integers), at a third of a clock() call's cost.
            if self.clock is wall_clock_ms:
                return None if expires_at * 1_000_000 <= _time_ns() else raw[start + 8 :]
            return None if expires_at <= self.clock() else raw[start + 8 :]
        return self._value(prefix + key, raw, None)

    def _get_verified(self, namespace: str, key: bytes) -> bytes | None:
        """:meth:`get` when ``verify_checksums`` is on (installed on the instance at open)."""
        data_key = self._space(namespace).prefix + key
        raw = self._read(data_key)  # verify_checksums is on
        return None if raw is None else self._value(data_key, raw, None)

    def _decode(self, data_key: bytes, raw: bytes) -> tuple[int, int, int | None]:
        """``(value offset, version, expires_at)`` of the record *raw* of *data_key*; damage is an error."""
        try:
            return decode_header(raw)
        except ValueError as exc:
            namespace = data_key[2 : 2 + data_key[1]].decode("ascii", "replace")
            key = data_key[2 + data_key[1] :]
            raise StoreDamaged(
                f"the row of key {key.decode(errors='replace')!r} of component {namespace!r} in the LevelDB "
                f"database at {self.path} is corrupted ({exc}): run "
                f"`{operator_command('verify --repair', f'leveldb://{self.path}')}` to remove it"
            ) from None

    def _value(self, data_key: bytes, raw: bytes, now: int | None) -> bytes | None:
        """The value of record *raw*, ``None`` if it expired (at *now*; read the clock if ``None`` and needed)."""
        offset, _, expires_at = self._decode(data_key, raw)
        if expires_at is not None and expires_at <= (self.clock() if now is None else now):
            return None
        return raw[offset:]

    def _row(self, data_key: bytes, raw: bytes, with_value: bool = False) -> KeyState:
        """The row in record *raw* (live or expired), with its value if *with_value*."""
        if 0 < (head := raw[0] if raw else 0) < 9:  # no expiry: the header is a width and a version
            end = head + 1
            version = int.from_bytes(raw[1:end], "little")
            return _new(KeyState, (len(raw) - end, version, None, raw[end:] if with_value else None))
        offset, version, expires_at = self._decode(data_key, raw)
        return _new(KeyState, (len(raw) - offset, version, expires_at, raw[offset:] if with_value else None))

    def _read(self, data_key: bytes) -> bytes | None:
        """The record of *data_key* (checksums verified if the options say so), or ``None``."""
        try:
            raw: bytes | None = self._db.get(data_key, verify_checksums=self.options.verify_checksums)
        except plyvel.Error as exc:
            self._fail("read from", exc)
        return raw

    def get_entry(self, namespace: str, key: bytes) -> KeyState | None:
        data_key = self._space(namespace).prefix + key
        raw = self._read(data_key)
        if raw is None:
            return None
        row = self._row(data_key, raw, with_value=True)
        if row.expires_at is not None and row.expires_at <= self.clock():
            return None
        return row

    def get_many(self, namespace: str, keys: Sequence[bytes]) -> list[bytes | None]:
        prefix = self._space(namespace).prefix
        verify = self.options.verify_checksums
        try:
            # One snapshot: every value from the same moment, never half of a concurrent batch.
            with self._db.snapshot() as snapshot:
                get = snapshot.get
                raws = [get(prefix + key, verify_checksums=verify) for key in keys]
        except plyvel.Error as exc:
            self._fail("read from", exc)
        values: list[bytes | None] = []
        now: int | None = None  # one clock reading for the whole call, taken only if a row has an expiry
        for key, raw in zip(keys, raws, strict=True):
            if raw is None:
                values.append(None)
            elif 0 < (head := raw[0] if raw else 0) < 9:
                values.append(raw[head + 1 :])
            else:
                offset, _, expires_at = self._decode(prefix + key, raw)
                if expires_at is not None:
                    now = self.clock() if now is None else now
                    if expires_at <= now:
                        values.append(None)
                        continue
                values.append(raw[offset:])
        return values

    def has(self, namespace: str, key: bytes) -> bool:
        data_key = self._space(namespace).prefix + key
        raw = self._read(data_key)
        if raw is None:
            return False
        if 0 < (raw[0] if raw else 0) < 9:
            return True
        return self._value(data_key, raw, None) is not None

    def items(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        space = self._space(namespace)
        found: list[tuple[bytes, bytes]] = []
        if limit <= 0:
            return found
        now: int | None = None
        try:
            for key, raw in space.view.iterator(start=start, stop=end, verify_checksums=self.options.verify_checksums):
                if 0 < (head := raw[0] if raw else 0) < 9:
                    found.append((key, raw[head + 1 :]))
                else:
                    offset, _, expires_at = self._decode(space.prefix + key, raw)
                    if expires_at is not None:
                        now = self.clock() if now is None else now
                        if expires_at <= now:
                            continue
                    found.append((key, raw[offset:]))
                if len(found) == limit:
                    break
        except plyvel.Error as exc:
            self._fail("read from", exc)
        return found

    def keys(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[bytes]:
        space = self._space(namespace)
        counter = space.counter or self._counter(space)
        verify = self.options.verify_checksums
        try:
            if not counter[3]:
                # No row has an expiry: list keys without reading a value.
                keys = space.view.iterator(start=start, stop=end, include_value=False, verify_checksums=verify)
                return list(islice(keys, max(limit, 0)))
        except plyvel.Error as exc:
            self._fail("read from", exc)
        return [key for key, _ in self.items(namespace, start, end, limit)]

    def usage(self, namespace: str) -> Usage:
        space = self._space(namespace)
        used, count, _, _ = space.counter or self._counter(space)
        return Usage(used, count)

    def _counter(self, space: _Space) -> Counter:
        """The counter of *space*, read from the database on first use (under the lock)."""
        with self._lock:
            return self._load_counter(space)

    def _load_counter(self, space: _Space) -> Counter:
        """The counter of *space*, read from the database on first use. Call under the lock."""
        counter = space.counter
        if counter is None:
            try:
                raw = self._db.get(space.counter_key)
            except plyvel.Error as exc:
                self._fail("read from", exc)
            counter = (0, 0, 0, 0) if raw is None else self._unpack_counter(space.counter_key, raw)
            space.counter = counter
        return counter

    def _unpack_counter(self, key: bytes, raw: bytes) -> Counter:
        if len(raw) != COUNTER.size:
            raise StoreDamaged(
                f"the usage counter of namespace {namespace_of_counter_key(key)!r} in the LevelDB database at "
                f"{self.path} is corrupted ({len(raw)} bytes); {_repair_hint(self.path)}"
            )
        used, count, floor, expiring = COUNTER.unpack(raw)
        return used, count, floor, expiring

    # -- writes ------------------------------------------------------------------

    def apply(self, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        try:
            space = self._spaces[namespace]
        except KeyError:
            space = self._space(namespace)
        self._lock.acquire()
        try:
            decided = self._apply_locked(space, writes, limit)
        except plyvel.Error as exc:
            self._fail("write to", exc)
        finally:
            self._lock.release()
        return decided

    def _apply_locked(self, space: _Space, writes: Sequence[Write], limit: int | None) -> Plan:
        """:meth:`apply` inside the lock (plyvel errors pass through)."""
        counter = space.counter or self._load_counter(space)
        old = self._old_rows(space.prefix, writes)
        now = self.clock()
        done: dict[str, int] | None = None
        stale: dict[str, int] = {}
        for write in writes:
            if write.op_id is not None:
                done = self._done_ops(space, writes, now, stale)
                break
        decided = plan(space.namespace, writes, old, _new(SpaceState, counter[:3]), limit, now, done)
        self._write(space, counter, decided, writes, old, now, stale)
        return decided

    def _old_rows(self, prefix: bytes, writes: Sequence[Write]) -> list[KeyState | None]:
        """The old row of each write's key (with the value where the write needs it). Call under the lock."""
        rows = self._rows
        get = self._db.get
        old: list[KeyState | None] = []
        for write in writes:
            data_key = prefix + write.key
            kind = write.kind
            if kind is _INCREMENT or kind is _TOUCH:  # a TOUCH rewrites the stored value under a new header
                raw = get(data_key)
                old.append(None if raw is None else self._row(data_key, raw, with_value=True))
                continue
            row = rows.get(data_key, _MISS)
            if row is _MISS:
                raw = get(data_key)
                row = None if raw is None else self._row(data_key, raw)
            old.append(row)
        return old

    def _done_ops(self, space: _Space, writes: Sequence[Write], now: int, stale: dict[str, int]) -> dict[str, int]:
        """The recorded results of the writes' op ids younger than the retention; older ones go to *stale*."""
        done: dict[str, int] = {}
        horizon = now - self.op_retention_ms
        for write in writes:
            if write.op_id is None:
                continue
            raw = self._db.get(space.op_prefix + write.op_id.encode())
            if raw is None:
                continue
            if len(raw) != OP_TIME.size + OP_RESULT:
                raise StoreDamaged(
                    f"the recorded operation {write.op_id!r} of component {space.namespace!r} in the LevelDB "
                    f"database at {self.path} is corrupted ({len(raw)} bytes); {_repair_hint(self.path)}"
                )
            (recorded,) = OP_TIME.unpack_from(raw)
            if recorded > horizon:
                done[write.op_id] = int.from_bytes(raw[OP_TIME.size :], "little", signed=True)
            else:
                stale[write.op_id] = recorded
        return done

    def _write(
        self,
        space: _Space,
        counter: Counter,
        decided: Plan,
        writes: Sequence[Write],
        old: Sequence[KeyState | None],
        now: int,
        stale: Mapping[str, int],
        *,
        reset: bool = False,
    ) -> None:
        """Write plan *decided* (rows, counter, op records) in one batch. Call under the lock.

        *old* are the rows :func:`plan` saw for *writes*. With *reset* (clear), the
        counter becomes zero rows and bytes whatever it said, keeping the plan's floor.
        """
        puts, deletes = decided.puts, decided.deletes
        if not (puts or deletes or decided.space_changed or decided.op_records or reset):
            return  # nothing changes (a delete of a missing key, a replayed op id, a failed TOUCH)
        prefix = space.prefix
        # The old row of each put and delete. A write makes at most one of them, in the writes' order:
        # when every write made a put (or every one a delete), they line up with *old*; otherwise
        # they are matched by key (a dict per commit: ~0.1 µs per write of a set_many).
        put_rows: Sequence[KeyState | None] = old
        delete_rows: Sequence[KeyState | None] = old
        if len(puts) != len(old) and len(deletes) != len(old):
            before = dict(zip(map(_first, writes), old, strict=True))
            put_rows = [before[put[0]] for put in puts]
            delete_rows = [before[key] for key in deletes]
        if len(puts) == 1 and not (deletes or decided.space_changed or decided.op_records or reset):
            # One row rewritten in place (an increment or TOUCH keeping its size): with the count of
            # rows with an expiry unchanged too, the row record alone is the commit.
            key, value, version, expires_at = puts[0]
            row = put_rows[0]
            assert row is not None  # the counter did not change, so the row existed
            if (row.expires_at is None) is (expires_at is None):
                if value is None:  # TOUCH: the stored value (read for it) under a new header
                    value = row.value
                    assert value is not None
                data_key = prefix + key
                if expires_at is None:
                    width = (version.bit_length() + 7) >> 3
                    self._put(data_key, ((version << 8) | width).to_bytes(width + 1, "little") + value)
                else:
                    self._put(data_key, encode_row(version, expires_at, value))
                self._remember(data_key, _new(KeyState, (len(value), version, expires_at, None)))
                return
        expiring = counter[3]
        rows = self._rows
        if len(rows) + len(puts) + len(deletes) > self._row_limit:
            rows.clear()  # crude but O(1) per write on average, and never wrong
        batch = self._batch
        batch.clear()
        try:
            put = batch.put
            # The row cache learns each row as it is added (cheaper than a second pass) and
            # forgets them all if anything fails.
            for (key, value, version, expires_at), row in zip(puts, put_rows):  # noqa: B905 - lined up above
                if row is not None and row.expires_at is not None:
                    expiring -= 1
                if value is None:  # TOUCH: the stored value under a new header
                    assert row is not None and row.value is not None
                    value = row.value
                data_key = prefix + key
                if expires_at is None:
                    width = (version.bit_length() + 7) >> 3
                    put(data_key, ((version << 8) | width).to_bytes(width + 1, "little") + value)
                else:
                    expiring += 1
                    put(data_key, encode_row(version, expires_at, value))
                rows[data_key] = _new(KeyState, (len(value), version, expires_at, None))
            for key, row in zip(deletes, delete_rows):  # noqa: B905 - lined up above
                if row is not None and row.expires_at is not None:
                    expiring -= 1
                batch.delete(prefix + key)
                rows[prefix + key] = None
            after = decided.space
            new: Counter = (0, 0, after.floor, 0) if reset else (after.bytes, after.keys, after.floor, expiring)
            if new != counter:
                put(space.counter_key, COUNTER.pack(*new))
            if decided.op_records:
                self._record_ops(space, decided.op_records, now, stale)
            batch.write()
        except BaseException:
            batch.clear()  # the reused batch must carry nothing of a failed commit
            for key, _, _, _ in puts:
                rows.pop(prefix + key, None)
            for key in deletes:
                rows.pop(prefix + key, None)
            raise
        space.counter = new

    def _remember(self, data_key: bytes, row: KeyState | None) -> None:
        """Cache the row just written under *data_key* (``None``: removed). Call under the lock, after the write."""
        rows = self._rows
        if len(rows) >= self._row_limit:
            rows.clear()  # crude but O(1) per write on average, and never wrong
        rows[data_key] = row

    def _record_ops(
        self, space: _Space, records: Sequence[tuple[str, int]], now: int, stale: Mapping[str, int]
    ) -> None:
        """Add the op records of a commit to the batch, and drop some older than the retention first."""
        batch = self._batch
        time_prefix = space.op_time_prefix
        horizon = now - self.op_retention_ms
        if horizon >= 0:
            start = len(time_prefix) + OP_TIME.size
            old = self._db.iterator(
                start=time_prefix, stop=op_time_key(time_prefix, horizon + 1, ""), include_value=False
            )
            with contextlib.closing(old):
                for index_key in islice(old, _OP_GC_STEP):
                    batch.delete(index_key)
                    batch.delete(space.op_prefix + index_key[start:])
        for op_id, result in records:
            if op_id in stale:  # its old record is re-used: drop its index entry, or a sweep would drop the new one
                batch.delete(op_time_key(time_prefix, stale[op_id], op_id))
            batch.put(
                space.op_prefix + op_id.encode(), OP_TIME.pack(now) + result.to_bytes(OP_RESULT, "little", signed=True)
            )
            batch.put(op_time_key(time_prefix, now, op_id), b"")

    def put_one(
        self, namespace: str, key: bytes, value: bytes, limit: int | None, if_version: int | None = None
    ) -> int:
        # The hot path of set(): apply() without its generality. The planner
        # decides as always; a row without expiry needs no clock (``now`` only
        # tells live from expired rows), and a commit that leaves the counter
        # as it is (a same-size overwrite) is the row record alone, written
        # with one put instead of a batch. The lock is taken with acquire()
        # and released in ``finally``: about 0.1 µs cheaper than ``with``.
        # *if_version* is compare_and_swap_one's condition, decided by the
        # planner like any other (the same-size shortcut only when it holds).
        try:
            space = self._spaces[namespace]
        except KeyError:
            space = self._space(namespace)
        data_key = space.prefix + key
        rows = self._rows
        self._lock.acquire()
        try:
            row = rows.get(data_key, _MISS)
            if row is _MISS:
                raw = self._db.get(data_key)
                row = None if raw is None else self._row(data_key, raw)
                if len(rows) >= self._row_limit:
                    rows.clear()  # crude but O(1) per write on average, and never wrong
            if row is not None:
                if row.expires_at is not None:  # the general path counts rows with an expiry
                    write = _new(Write, (key, _PUT, value, None, if_version, 0, None))
                    return self._apply_locked(space, (write,), limit).results[0]
                if (
                    row.size == len(value)
                    and row.version < MAX_VERSION
                    and (if_version is None or if_version == row.version)
                ):
                    # A same-size overwrite, the one case decided here: the planner's answer is
                    # the next version and no counter change (its delta is 0, which any quota
                    # accepts), so the row record alone is the commit (test_leveldb_v2 checks it
                    # equals the planner's).
                    version: int = row.version + 1
                    width = (version.bit_length() + 7) >> 3
                    put = self._put  # a local: 3.11 does not specialise a call through an instance attribute
                    put(data_key, ((version << 8) | width).to_bytes(width + 1, "little") + value)
                    rows[data_key] = _new(KeyState, (row.size, version, None, None))
                    return version
            counter = space.counter or self._load_counter(space)
            decided = plan(
                namespace,
                (_new(Write, (key, _PUT, value, None, if_version, 0, None)),),
                (row,),
                _new(SpaceState, counter[:3]),
                limit,
                0,
            )
            version = decided.results[0]
            width = (version.bit_length() + 7) >> 3
            after = decided.space  # a new row or another size: the counter changes
            new = (after.bytes, after.keys, after.floor, counter[3])
            batch = self._batch
            batch.clear()
            batch.put(data_key, ((version << 8) | width).to_bytes(width + 1, "little") + value)
            batch.put(space.counter_key, COUNTER.pack(*new))
            batch.write()
            space.counter = new
            rows[data_key] = _new(KeyState, (len(value), version, None, None))
        except plyvel.Error as exc:
            self._fail("write to", exc)
        finally:
            self._lock.release()
        return version

    def compare_and_swap_one(self, namespace: str, key: bytes, value: bytes, version: int, limit: int | None) -> int:
        # put_one with the condition: the planner decides it (this class's put_one, whatever a
        # subclass makes of its own).
        return LevelDBBackend.put_one(self, namespace, key, value, limit, version)

    def increment_one(self, namespace: str, key: bytes, delta: int, limit: int | None) -> int:
        # The hot path of increment(): a live counter without expiry whose new value keeps its
        # size (the planner's answer: the next version, no counter change, which any quota
        # accepts) is one read and one put of the row; the rule itself is the planner's
        # add_to_counter. Anything else (a new key, another size, an expiry) goes to the planner.
        try:
            space = self._spaces[namespace]
        except KeyError:
            space = self._space(namespace)
        data_key = space.prefix + key
        self._lock.acquire()
        try:
            raw = self._db.get(data_key)
            if raw is not None and 0 < (head := raw[0] if raw else 0) < 9 and len(raw) > head:  # no expiry
                end = head + 1
                number, value = add_to_counter(key, raw[end:], delta)
                version = int.from_bytes(raw[1:end], "little") + 1
                if len(value) == len(raw) - end and version <= MAX_VERSION:
                    width = (version.bit_length() + 7) >> 3
                    self._put(data_key, ((version << 8) | width).to_bytes(width + 1, "little") + value)
                    self._remember(data_key, _new(KeyState, (len(value), version, None, None)))
                    return number
            write = _new(Write, (key, _INCREMENT, b"", None, None, delta, None))
            return self._apply_locked(space, (write,), limit).results[0]
        except plyvel.Error as exc:
            self._fail("write to", exc)
        finally:
            self._lock.release()

    def delete_one(self, namespace: str, key: bytes) -> bool:
        # The hot path of delete(): like put_one, the clock only for a row with an expiry.
        try:
            space = self._spaces[namespace]
        except KeyError:
            space = self._space(namespace)
        data_key = space.prefix + key
        self._lock.acquire()
        try:
            row = self._rows.get(data_key, _MISS)
            if row is _MISS:
                raw = self._db.get(data_key)
                row = None if raw is None else self._row(data_key, raw)
            if row is None:
                return False  # what the planner says for a missing key: nothing to write
            counter = space.counter or self._load_counter(space)
            writes = (_new(Write, (key, _DELETE, b"", None, None, 0, None)),)
            now = 0 if row.expires_at is None else self.clock()
            decided = plan(namespace, writes, (row,), _new(SpaceState, counter[:3]), None, now)
            self._write(space, counter, decided, writes, (row,), now, {})
        except plyvel.Error as exc:
            self._fail("write to", exc)
        finally:
            self._lock.release()
        return decided.results[0] == 1

    def delete_range(
        self, namespace: str, start: bytes, end: bytes | None, *, expired_only: bool = False, limit: int | None = None
    ) -> Plan:
        space = self._space(namespace)
        with self._lock:
            try:
                counter = self._load_counter(space)
                now = self.clock()
                writes: list[Write] = []
                old: list[KeyState | None] = []
                if not (expired_only and not counter[3]):  # no row has an expiry: nothing to sweep
                    self._range_rows(space, start, end, now if expired_only else None, limit, writes, old)
                decided = plan(namespace, writes, old, _new(SpaceState, counter[:3]), None, now)
                self._write(space, counter, decided, writes, old, now, {})
            except plyvel.Error as exc:
                self._fail("write to", exc)
        return decided

    def _range_rows(
        self,
        space: _Space,
        start: bytes,
        end: bytes | None,
        expired_at: int | None,
        limit: int | None,
        writes: list[Write],
        old: list[KeyState | None],
    ) -> None:
        """Fill *writes* and *old* with a DELETE per row in the range (a SWEEP per row expired at *expired_at*)."""
        if limit is not None and limit <= 0:
            return
        kind = _DELETE if expired_at is None else _SWEEP
        prefix = space.prefix
        for key, raw in space.view.iterator(start=start, stop=end):
            row = self._row(prefix + key, raw)
            if expired_at is not None and (row.expires_at is None or row.expires_at > expired_at):
                continue
            writes.append(_new(Write, (key, kind, b"", None, None, 0, None)))
            old.append(row)
            if len(writes) == limit:
                break

    def clear(self, namespace: str) -> None:
        space = self._space(namespace)
        with self._lock:
            try:
                counter = self._load_counter(space)
                writes: list[Write] = []
                old: list[KeyState | None] = []
                self._range_rows(space, b"", None, None, None, writes, old)
                # The planner raises the floor to the highest removed version; the counter becomes zero.
                decided = plan(namespace, writes, old, _new(SpaceState, counter[:3]), None, 0)
                self._write(space, counter, decided, writes, old, 0, {}, reset=True)
                self._batch.clear()  # do not keep a large batch alive
            except plyvel.Error as exc:
                self._fail("write to", exc)

    # -- administration ----------------------------------------------------------

    def namespaces(self) -> list[str]:
        return sorted(ns for ns, counter in self._counters().items() if counter[1] > 0)

    def _counters(self) -> dict[str, Counter]:
        try:
            return {
                namespace_of_counter_key(key): self._unpack_counter(key, raw)
                for key, raw in self._db.iterator(prefix=USAGE_PREFIX)
            }
        except plyvel.Error as exc:
            self._fail("read from", exc)

    def stats(self) -> dict[str, Any]:
        counters = self._counters()
        try:
            disk = self._db.approximate_size(b"", DATA_END)
            memory = self._db.get_property(b"leveldb.approximate-memory-usage")
        except plyvel.Error as exc:
            self._fail("read from", exc)
        return {
            "path": self.path,
            "schema_version": SCHEMA_VERSION,
            "namespaces": sum(1 for counter in counters.values() if counter[1] > 0),
            "keys": sum(counter[1] for counter in counters.values()),
            "bytes": sum(counter[0] for counter in counters.values()),
            "keys_with_expiry": sum(counter[3] for counter in counters.values()),
            "approximate_disk_bytes": disk,
            "approximate_memory_bytes": int(memory) if memory else None,
            "options": self.options.as_dict(),
        }

    def verify(self, repair: bool = False, progress: Callable[[int], None] | None = None) -> VerifyReport:
        """Read every record with its block checksum verified, recount usage, compare with the counters.

        Reads one snapshot, so writers are not held up: the data and the
        counters of a snapshot always agree (each commit writes both in one
        batch). Expired rows are counted (usage charges them until they are
        removed), and so are the rows that have an expiry (the counter's
        ``expiring``, which must be exact: listings trust a zero). With
        *repair*, each wrong counter is corrected by the difference the
        snapshot showed, under the write lock, in one synced batch; a
        correction is exact even if commits happened since the snapshot,
        since each of them changed the data and the counter alike. A row
        whose header cannot be decoded is reported (and removed) with the
        keys that break the key rules. A checksum failure is reported in
        ``problems`` with the repair command (``airssys-storage repair``:
        LevelDB's RepairDB); a recount cannot fix it. A counter record that
        cannot be decoded shows as ``Usage(-1, -1)``. Rows whose version is 0
        or whose expiry is 0 (decodable, but out of range) are reported in
        ``bad_rows`` and fixed as :class:`BadRow` says; since a fresh version
        must be above every version of the namespace, that repair recounts
        once more holding the write lock, so nothing changes between the
        recount and the fix.
        """
        exclusive = False
        while True:
            with self._lock if exclusive else contextlib.nullcontext():
                outcome = self._verify_pass(repair, None if exclusive else progress, exclusive)
            if isinstance(outcome, VerifyReport):
                return outcome
            exclusive = outcome  # True: fix bad rows in a pass under the lock; False: another repair ran, look again

    def _verify_pass(self, repair: bool, progress: Callable[[int], None] | None, locked: bool) -> VerifyReport | bool:
        """One recount (and repair) for :meth:`verify`: the report, or whether to run again under the lock.

        With *locked* the caller holds the lock for the whole pass.
        """
        lock: Any = contextlib.nullcontext() if locked else self._lock
        with lock:
            generation = self._repairs
            snapshot = self._db.snapshot()
        try:
            found = self._recount(snapshot, progress)
        finally:
            snapshot.close()
        if isinstance(found, str):
            return VerifyReport(store=self.path, problems=(found,), checks=_VERIFY_CHECKS, recounted=False)
        stored, actual, bad, expiring, fixes = found
        rows = [fix.row for fix in fixes]
        report = verify_report(
            self.path, stored, actual, bad_keys=bad, bad_rows=rows, repaired=repair, checks=_VERIFY_CHECKS
        )
        if not repair and expiring:
            report = replace(
                report,
                problems=(
                    *report.problems,
                    *(
                        f"the counter of component {ns!r} says {was} rows have an expiry, a recount finds "
                        f"{now}: run `{operator_command('verify --repair', f'leveldb://{self.path}')}`"
                        for ns, (was, now) in sorted(expiring.items())
                    ),
                ),
            )
        if not (repair and (report.mismatches or report.bad_keys or rows or expiring)):
            return report
        if rows and not locked:
            return True
        with lock:
            if self._repairs != generation:
                return False
            self._repairs += 1
            self._correct(report, expiring, fixes)
        return report

    def _recount(
        self, snapshot: Any, progress: Callable[[int], None] | None
    ) -> tuple[dict[str, Usage], dict[str, Usage], list[BadKey], dict[str, tuple[int, int]], list[_RowFix]] | str:
        """Stored counters, recounted usage, rows to remove, wrong ``expiring`` counts and row fixes, or the damage.

        Rows to remove are keys breaking the key rules and rows whose header
        cannot be decoded (both unreachable through the API). The fourth item maps
        each namespace whose ``expiring`` count is wrong to (stored, recounted).
        The last fixes the rows whose version or expiry is 0 (:class:`BadRow`).
        """
        # namespace -> [bytes, rows, rows with an expiry, highest sound version]
        actual: dict[str, list[int]] = {}
        stored: dict[str, Usage] = {}
        stored_expiring: dict[str, int] = {}
        floors: dict[str, int] = {}
        bad: list[BadKey] = []
        # Decodable rows whose version or expiry is 0 (the only out-of-range values a header can hold):
        # (namespace, data key, bytes, version, expires_at, value), in key order.
        damaged: list[tuple[str, bytes, int, int, int | None, bytes]] = []
        # The keys read since the last check, (namespace, key, bytes) each: checked a chunk at a time.
        chunk: list[tuple[str, bytes, int]] = []

        def check() -> None:
            for index, problem in key_problems([key for _, key, _ in chunk]):
                bad.append(BadKey(*chunk[index], problem))
            chunk.clear()

        pending = 0
        try:
            for key, raw in snapshot.iterator(start=DATA_TAG, stop=DATA_END, verify_checksums=True, fill_cache=False):
                size = key[1]
                namespace = key[2 : 2 + size].decode("ascii", "replace")
                entry = actual.setdefault(namespace, [0, 0, 0, 0])
                try:
                    offset, version, expires_at = decode_header(raw)
                except ValueError as exc:
                    # Charged as a whole record: removing it takes off what it counts here.
                    used = len(key) - 2 - size + len(raw)
                    bad.append(BadKey(namespace, key[2 + size :], used, f"a malformed row header: {exc}"))
                    entry[0] += used
                    entry[1] += 1
                    continue
                used = len(key) - 2 - size + len(raw) - offset
                entry[0] += used
                entry[1] += 1
                if expires_at is not None:
                    entry[2] += 1
                if version > entry[3]:
                    entry[3] = version
                if version == 0 or expires_at == 0:
                    damaged.append((namespace, key, used, version, expires_at, raw[offset:]))
                chunk.append((namespace, key[2 + size :], used))
                pending += 1
                if pending == _PROGRESS_STEP:
                    check()
                    if progress is not None:
                        progress(pending)
                    pending = 0
            check()
            for key, raw in snapshot.iterator(prefix=USAGE_PREFIX, verify_checksums=True, fill_cache=False):
                namespace = namespace_of_counter_key(key)
                if len(raw) == COUNTER.size:
                    used, count, floor, expiring = COUNTER.unpack(raw)
                    stored[namespace] = Usage(used, count)
                    floors[namespace] = floor
                    stored_expiring[namespace] = expiring
                else:
                    stored[namespace] = _BAD
        except plyvel.CorruptionError as exc:
            return str(_error(self.path, "verify", exc))
        except plyvel.Error as exc:
            self._fail("verify", exc)
        if pending and progress is not None:
            progress(pending)
        wrong_expiring = {
            ns: (stored_expiring.get(ns, 0), entry[2])
            for ns, entry in actual.items()
            if stored_expiring.get(ns, 0) != entry[2]
        }
        wrong_expiring.update((ns, (count, 0)) for ns, count in stored_expiring.items() if count and ns not in actual)
        usage = {ns: Usage(used, count) for ns, (used, count, _, _) in actual.items()}
        removed = {(found.namespace, found.key) for found in bad}
        fixes: list[_RowFix] = []
        latest: dict[str, int] = {}  # namespace -> the last fresh version handed out
        for namespace, data_key, used, version, expires_at, value in damaged:
            key = data_key[2 + data_key[1] :]
            if (namespace, key) in removed:
                continue
            bad_version = version_problem(version, MAX_VERSION)
            bad_expiry = expiry_problem(expires_at)
            if bad_version is not None:
                fresh = max(latest.get(namespace, 0), actual[namespace][3], floors.get(namespace, 0)) + 1
                if fresh > MAX_VERSION:
                    return f"component {namespace!r} has no version left to give key {key!r}: restore a backup"
                latest[namespace] = version = fresh
            problem = "; ".join(text for text in (bad_version, bad_expiry) if text is not None)
            if bad_expiry is not None:
                fix = f"removed as expired (the version floor becomes at least {version})"
                row = BadRow(namespace, key, used, problem, fix, True)
                fixes.append(_RowFix(row, data_key, None, version, 1))
            else:
                row = BadRow(namespace, key, used, problem, f"given version {version}", False)
                fixes.append(_RowFix(row, data_key, encode_row(version, expires_at, value), 0, 0))
        return stored, usage, bad, wrong_expiring, fixes

    def _correct(self, report: VerifyReport, expiring: Mapping[str, tuple[int, int]], fixes: Sequence[_RowFix]) -> None:
        """Delete the bad rows, fix the rows of *fixes*, add each difference (recount - stored) to its live counter.

        One synced batch. Call under the lock (for *fixes*: held since their
        recount). A counter's floor is kept, or raised by a removed bad row;
        an unreadable counter becomes the snapshot's recount with that floor.
        """
        batch = self._db.write_batch(sync=True)
        corrected: list[tuple[_Space, Counter]] = []
        removed = [self._space(found.namespace).prefix + found.key for found in report.bad_keys]
        mismatches = {mismatch.namespace: mismatch for mismatch in report.mismatches}
        # namespace -> (the floor removed rows raise it to, rows with an expiry removed)
        lowered: dict[str, tuple[int, int]] = {}
        for fix in fixes:
            floor, gone = lowered.get(fix.row.namespace, (0, 0))
            lowered[fix.row.namespace] = (max(floor, fix.floor), gone + fix.expiring)
        try:
            for data_key in removed:
                batch.delete(data_key)
            for fix in fixes:
                if fix.record is None:
                    batch.delete(fix.data_key)
                else:
                    batch.put(fix.data_key, fix.record)
            for namespace in sorted({*mismatches, *expiring, *lowered}):
                space = self._space(namespace)
                mismatch = mismatches.get(namespace)
                was, now = expiring.get(namespace, (0, 0))
                raised, gone = lowered.get(namespace, (0, 0))
                if mismatch is not None and mismatch.stored == _BAD:
                    counter: Counter = (mismatch.actual.bytes, mismatch.actual.keys, raised, now - gone)
                else:
                    used, count, floor, rows_expiring = self._load_counter(space)
                    if mismatch is not None:
                        used += mismatch.actual.bytes - mismatch.stored.bytes
                        count += mismatch.actual.keys - mismatch.stored.keys
                    counter = (used, count, max(floor, raised), rows_expiring + now - was - gone)
                if counter == (0, 0, 0, 0):
                    batch.delete(space.counter_key)
                else:
                    batch.put(space.counter_key, COUNTER.pack(*counter))
                corrected.append((space, counter))
            batch.write()
        except plyvel.Error as exc:
            for space, _ in corrected:
                space.counter = None
            self._fail("write to", exc)
        for data_key in [*removed, *(fix.data_key for fix in fixes)]:
            self._rows.pop(data_key, None)
        for space, counter in corrected:
            space.counter = counter

    def recount(self) -> dict[str, Any]:
        """Recompute every usage counter from the data and write the corrected ones.

        Returns the totals and the namespaces whose stored counter was wrong
        (the shape :meth:`repair_url` reports). :meth:`verify` with
        ``repair=True`` does the work; damage it finds raises ``InternalError``.
        """
        report = self.verify(repair=True)
        if report.problems:
            raise StoreDamaged(report.problems[0])
        return {
            "path": self.path,
            "namespaces": report.namespaces,
            "keys": report.keys,
            "bytes": report.bytes,
            "counters_corrected": [mismatch.namespace for mismatch in report.mismatches],
            "bad_keys_removed": [found.describe() for found in report.bad_keys],
        }

    def repair(self) -> dict[str, Any]:
        """Close, repair the files as :meth:`repair_url` does, reopen and recount the usage counters."""
        with self._lock:
            self._db.close()
            self._bind(_Closed(self.path))
            dropped = _repair_files(self.path, self.options)
            self._bind(_open_db(self.path, self.options))
        return {**self.recount(), "records_dropped": dropped}

    def close(self) -> None:
        with self._lock:
            db = self._db
            self._bind(_Closed(self.path))
            if not isinstance(db, _Closed):
                db.close()
            with _open_paths_lock:
                _open_paths.discard(self._real_path)

    def _fail(self, action: str, exc: Exception) -> NoReturn:
        raise _error(self.path, action, exc) from exc


# -- helpers --------------------------------------------------------------------


def _message(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


def _error(path: str, action: str, exc: Exception) -> StorageError:
    message = _message(exc)
    if isinstance(exc, plyvel.CorruptionError):
        return StoreDamaged(f"the LevelDB database at {path} is corrupted ({message}); {_repair_hint(path)}")
    return InternalError(f"cannot {action} the LevelDB database at {path}: {message}")


def _repair_hint(path: str) -> str:
    return (
        f"stop every process using it and run `{operator_command('repair', f'leveldb://{path}')}` "
        f"(or LevelDBBackend.repair_url('leveldb://{path}')); see the airssys-storage-leveldb README"
    )


def _lost_files(path: str) -> set[str]:
    """Names of the files in the database's ``lost/`` directory, where RepairDB puts what it cannot read."""
    try:
        return {entry.name for entry in os.scandir(os.path.join(path, "lost"))}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def _repair_files(path: str, options: LevelDBOptions) -> int:
    """RepairDB, then drop the records of blocks that fail their checksum; how many were dropped.

    The database must be closed everywhere. RepairDB rebuilds the MANIFEST and
    salvages the logs, but keeps a table whose data block is damaged, and a
    read of that block then fails forever. So every record is read once with
    its checksum verified; if any fails, the records that pass are copied
    into a fresh database that takes the path, and the damaged one is kept
    beside it as ``PATH.damaged-<time>`` for the operator to inspect or delete.
    """
    failed = f"repairing the LevelDB database at {path} failed"
    try:
        plyvel.repair_db(path, **options.plyvel_kwargs())
        db = plyvel.DB(path, **options.plyvel_kwargs())
    except plyvel.Error as exc:
        raise InternalError(f"{failed}: {_message(exc)}; restore it from a backup") from exc
    try:
        damaged = 0
        for key in db.iterator(include_value=False, fill_cache=False):
            try:
                db.get(key, verify_checksums=True, fill_cache=False)
            except plyvel.CorruptionError:
                damaged += 1
        if damaged:
            _copy_sound_records(db, path, options)
        return damaged
    except plyvel.Error as exc:
        raise InternalError(
            f"{failed}: its damaged records cannot be told apart ({_message(exc)}); restore it from a backup"
        ) from exc
    except OSError as exc:
        raise InternalError(f"{failed}: cannot replace it with the salvaged copy ({exc}); check the directory") from exc
    finally:
        db.close()


def _copy_sound_records(db: Any, path: str, options: LevelDBOptions) -> None:
    """Copy every record of *db* whose block passes its checksum into a new database that replaces *path*."""
    fresh_path = f"{path}.repair-{os.getpid()}"
    _create_private_directory(fresh_path)  # private while it fills; it takes the damaged one's mode below
    schema = _schema_of(db)  # the rows keep their format: an open after the repair migrates them
    fresh = plyvel.DB(fresh_path, create_if_missing=True, error_if_exists=True, **options.plyvel_kwargs())
    try:
        batch = fresh.write_batch()
        pending = 0
        for key in db.iterator(include_value=False, fill_cache=False):
            try:
                value = db.get(key, verify_checksums=True, fill_cache=False)
            except plyvel.CorruptionError:
                continue
            if value is not None:
                batch.put(key, value)
                pending += 1
            if pending == _PROGRESS_STEP:
                batch.write()
                batch = fresh.write_batch()
                pending = 0
        batch.put(SCHEMA_KEY, schema)  # even if its own block was the damaged one
        batch.write()
    finally:
        fresh.close()
    os.chmod(fresh_path, stat.S_IMODE(os.stat(path).st_mode))
    os.rename(path, f"{path}.damaged-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    os.rename(fresh_path, path)


def _check_location(path: str) -> None:
    """Clear errors for locations LevelDB would reject with a cryptic message (or accept wrongly)."""
    parent = os.path.dirname(path)
    if not os.path.exists(parent):
        raise ConfigurationError(
            f"cannot open the LevelDB database at {path}: its parent directory {parent} does not exist; "
            "create it first (the backend creates only the database directory itself)"
        )
    if not os.path.isdir(parent):
        raise ConfigurationError(f"cannot open the LevelDB database at {path}: {parent} is not a directory")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigurationError(
            f"cannot open the LevelDB database at {path}: it is a file, not a LevelDB database directory"
        )
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "CURRENT")):
        entries = set(os.listdir(path)) - {"LOCK", "LOG", "LOG.old"}
        if entries:
            # Another process may be creating the database right now (it writes the MANIFEST
            # before CURRENT): that is "in use", never "damaged" or "not a database".
            _refuse_if_in_use(path)
            if os.path.exists(os.path.join(path, "CURRENT")):
                return  # it was being created and is complete now
        if any(name.endswith((".ldb", ".log", ".sst")) or name.startswith("MANIFEST-") for name in entries):
            raise StoreDamaged(
                f"the LevelDB database at {path} is corrupted (its CURRENT file is missing); {_repair_hint(path)}"
            )
        if entries:
            raise ConfigurationError(
                f"cannot open a LevelDB database at {path}: the directory is not empty and holds no LevelDB "
                "database; point the URL at a new path or an existing database"
            )


def _create_private_directory(path: str) -> None:
    """Create a new database directory with mode 0700; an existing one is left as it is.

    LevelDB creates every file inside with mode 0644 (hard-coded in its POSIX
    environment, also for the files compactions write later from its own
    threads), so the private directory is what keeps other users out. A
    process umask around the open would change every thread of the process
    and still miss those later files.
    """
    try:
        make_private_dirs(path)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the LevelDB database directory {path}: {exc.strerror or exc}; "
            "check the permissions of its parent directory"
        ) from None


def require_plyvel() -> None:
    """Raise ``invalid-config`` with the install line when plyvel (the LevelDB binding) is missing."""
    if PLYVEL_MISSING is not None:
        raise ConfigurationError(
            f"the leveldb backend needs the Python module 'plyvel', which is not installed ({PLYVEL_MISSING}); "
            "install it with: pip install 'plyvel>=1.5' (where no plyvel wheel exists for your Python or "
            "platform, pip builds it from source: install a C++ compiler and the LevelDB headers first, "
            "see the airssys-storage-leveldb README)"
        )


def _open_db(path: str, options: LevelDBOptions) -> Any:
    require_plyvel()
    _check_location(path)
    _create_private_directory(path)
    try:
        return plyvel.DB(path, create_if_missing=True, paranoid_checks=True, **options.plyvel_kwargs())
    except plyvel.Error as exc:
        message = _message(exc)
        if "already held by process" in message:
            raise _in_use(path, this_process=True) from None
        if message.startswith("IO error: lock "):
            raise _in_use(path, this_process=False) from None
        raise _error(path, "open", exc) from None


def _in_use(path: str, this_process: bool) -> StorageError:
    """The error for a database another handle holds (never reported as damage)."""
    real = os.path.realpath(path)
    if real in _forked_paths:
        return InternalError(_forked_message(path))
    if this_process:
        return ConfigurationError(
            f"the LevelDB database at {path} is in use by another handle in this process; LevelDB allows "
            f"one open handle per database: share one StorageManager, or use the SQL backend — {SQL_HINT}"
        )
    return ConfigurationError(
        f"the LevelDB database at {path} is in use by another process; LevelDB allows one process per "
        f"database, so {SQL_HINT}"
    )


def _refuse_if_in_use(path: str) -> None:
    """Raise :func:`_in_use` when a handle in this or another process holds *path*'s lock file."""
    real = os.path.realpath(path)
    with _open_paths_lock:
        mine = real in _open_paths or real in _forked_paths
    if mine:
        # Never probe a lock this process holds: closing the probe's descriptor would drop it.
        raise _in_use(path, this_process=True)
    if not os.path.exists(os.path.join(path, "LOCK")):
        return  # LevelDB creates its lock file first: no one has this directory open
    try:
        with _exclusive(path, "open"):
            pass
    except ConfigurationError:
        raise _in_use(path, this_process=False) from None


def _check_schema(db: Any, path: str) -> None:
    try:
        _check_schema_version(db, path)
    except plyvel.Error as exc:
        raise _error(path, "open", exc) from None


def _check_schema_version(db: Any, path: str) -> None:
    raw = db.get(SCHEMA_KEY, verify_checksums=True)
    if raw is None:
        with contextlib.closing(db.iterator(include_value=False, verify_checksums=True)) as keys:
            empty = next(keys, None) is None
        if not empty:
            raise ConfigurationError(
                f"the LevelDB database at {path} was not written by airssys-storage (it has no schema "
                "version); refusing to use it: point the URL at a new path"
            )
        db.put(SCHEMA_KEY, str(SCHEMA_VERSION).encode(), sync=True)
        return
    if not raw.isdigit() or int(raw) < 1:
        raise StoreDamaged(
            f"the LevelDB database at {path} has a corrupted schema version {raw!r}; {_repair_hint(path)}"
        )
    version = int(raw)
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"the LevelDB database at {path} has schema version {version}, newer than version {SCHEMA_VERSION} "
            "that this airssys-storage-leveldb understands; upgrade airssys-storage-leveldb"
        )
    if version < SCHEMA_VERSION or db.get(MIGRATING_KEY, verify_checksums=True) is not None:
        _migrate(db, path, version)


def _migrate(db: Any, path: str, version: int) -> None:
    """Rewrite a schema 1 database in schema 2, resumably: a crash at any point leaves a database this resumes.

    Schema 1 rows hold the bare value and counters (bytes, keys). The first
    synced batch rewrites every counter (floor 0, no rows with expiry),
    sets the schema version to 2 (so older code refuses the database from
    then on) and writes the ``migrating`` marker. Then the rows are rewritten
    in key order (version 1, no expiry), a chunk per synced batch, each with
    the marker advanced to its last key in the same batch; the last batch
    removes the marker. Opening a database with the marker resumes after it.
    """
    if version == 1:
        batch = db.write_batch(sync=True)
        for key, raw in db.iterator(prefix=USAGE_PREFIX, verify_checksums=True):
            if len(raw) != V1_USAGE.size:
                raise StoreDamaged(
                    f"the usage counter of namespace {namespace_of_counter_key(key)!r} in the LevelDB database at "
                    f"{path} is corrupted ({len(raw)} bytes), so it cannot be migrated to schema version "
                    f"{SCHEMA_VERSION}; {_repair_hint(path)}"
                )
            used, count = V1_USAGE.unpack(raw)
            batch.put(key, COUNTER.pack(used, count, 0, 0))
        batch.put(SCHEMA_KEY, str(SCHEMA_VERSION).encode())
        batch.put(MIGRATING_KEY, b"")
        batch.write()
    done = db.get(MIGRATING_KEY, verify_checksums=True) or DATA_TAG
    rows = db.iterator(start=done, stop=DATA_END, include_start=done == DATA_TAG, verify_checksums=True)
    with contextlib.closing(rows):
        while True:
            chunk = list(islice(rows, _PROGRESS_STEP))
            batch = db.write_batch(sync=True)
            for key, value in chunk:
                batch.put(key, encode_row(1, None, value))
            if chunk:
                batch.put(MIGRATING_KEY, chunk[-1][0])
            else:
                batch.delete(MIGRATING_KEY)
            batch.write()
            if not chunk:
                return


def _schema_of(db: Any) -> bytes:
    """The schema version of *db* as stored, or (its record unreadable) as its counter records tell."""
    try:
        raw = db.get(SCHEMA_KEY, verify_checksums=True, fill_cache=False)
    except plyvel.CorruptionError:
        raw = None
    if raw is not None and raw.isdigit():
        return bytes(raw)
    try:
        for _, counter in db.iterator(prefix=USAGE_PREFIX, verify_checksums=True, fill_cache=False):
            return b"1" if len(counter) == V1_USAGE.size else str(SCHEMA_VERSION).encode()
    except plyvel.CorruptionError:
        pass
    return str(SCHEMA_VERSION).encode()


@contextlib.contextmanager
def _exclusive(path: str, action: str = "repair") -> Iterator[None]:
    """Hold LevelDB's own lock file (while RepairDB runs, which takes no lock itself)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: LevelDB uses another locking scheme there
        yield
        return
    fd = os.open(os.path.join(path, "LOCK"), os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigurationError(
                f"cannot {action} the LevelDB database at {path}: it is in use by another process; stop it first"
            ) from None
        yield
    finally:
        os.close(fd)
