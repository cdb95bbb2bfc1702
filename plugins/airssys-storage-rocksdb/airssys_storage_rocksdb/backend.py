"""The RocksDB backend: ``rocksdb:///absolute/path``, one writer process per database.

Commits: every write is decided by :func:`airssys_storage.planner.plan` (the
guard rule, versions, expiry, conditions, counters, op ids; see
:mod:`airssys_storage.backend`). :meth:`RocksDBBackend.apply` reads the old
rows, the counter record and the recorded op ids under one lock, plans, and
writes rows, counter and op records as one RocksDB ``WriteBatch`` (across
column families, see :mod:`.layout`), written only after every change has
been added, so a failure while building it writes nothing. RocksDB applies a
batch all-or-nothing, also across a crash: recovery (point-in-time, the
default) replays the write-ahead log up to the last complete batch.

Serialisation: one lock around every read-plan-write and the row cache; the
core takes no lock of its own, so this lock makes each commit atomic for
every component and thread sharing the backend.

Caches: counter records are kept in memory after their first read, and so are
the rows (size, version, expiry — not the value) of recently written keys, so
that an overwrite learns the old state without reading it: RocksDB's lock
file guarantees that no other process writes this database while it is open,
so neither cache can go stale (as in the LevelDB plugin).

Reads: :meth:`RocksDBBackend.get_many` is one RocksDB ``MultiGet``, which
reads every key at one sequence number (one implicit snapshot); listings are
one iterator, which also reads one implicit snapshot.

Read-only: ``rocksdb:///path?mode=read-only`` opens a RocksDB read-only
instance (any number of them, beside the one writer, even in other
processes): it sees the database as it was when it opened (including the
write-ahead log), and every write raises ``internal-error`` naming the mode.
For operator commands (``keys``, ``get``, ``export``, ``stats``) while the host runs.

Fork: a forked child must not use the parent's handle (RocksDB's background
threads do not exist there, and two processes writing one database lose
writes). An at-fork hook (:mod:`airssys_storage.forking`) swaps every handle
in the child for a stand-in whose every method raises a clear error.
"""

from __future__ import annotations

import contextlib
import ctypes
import operator
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from itertools import islice
from typing import Any, NamedTuple, NoReturn, TypeAlias
from urllib.parse import parse_qsl, unquote, urlsplit

try:
    import rocksdict
except ImportError as _exc:  # the plugin still registers; opening a store names the fix
    ROCKSDICT_MISSING: ImportError | None = _exc
else:
    ROCKSDICT_MISSING = None

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
    key_successor,
    operator_command,
    verify_report,
    version_problem,
)
from airssys_storage.files import make_private_dirs
from airssys_storage.forking import ForkAware, track
from airssys_storage.planner import MAX_VERSION, KeyState, Plan, SpaceState, Write, WriteKind, plan
from airssys_storage.plugins import backend_scheme

from .layout import (
    COLUMN_FAMILIES,
    COUNTER,
    COUNTERS_CF,
    META_CF,
    OP_RESULT,
    OP_TIME,
    OP_TIMES_CF,
    OPS_CF,
    SCHEMA_KEY,
    SCHEMA_VERSION,
    decode_header,
    encode_namespace,
    encode_row,
    op_time_key,
)
from .options import RocksDBOptions

__all__ = ["RocksDBBackend", "parse_url", "path_from_url"]

#: What :meth:`RocksDBBackend.verify` checks (shown in its report).
_VERIFY_CHECKS = ("usage counters", "counts of rows with an expiry", "row headers", "block checksums of every record")
#: How a counter record that cannot be decoded shows in a verify report.
_BAD = Usage(-1, -1)
#: Keys recounted between two progress reports.
_PROGRESS_STEP = 10_000
#: The values of the URL's ``mode`` query parameter.
READ_WRITE = "read-write"
READ_ONLY = "read-only"

SQL_HINT = "multi-process hosts should use the SQL backend (sqlite:////ABSOLUTE/PATH or postgresql+psycopg://…)"
_READ_ONLY_HINT = "operator commands can read it meanwhile with --url 'rocksdb:///PATH?mode=read-only'"

# Real paths of the databases open read-write in this process, so that repair_url()
# does not pull a database out from under a live handle.
_open_paths: set[str] = set()
_open_paths_lock = threading.Lock()
# In a forked child: real paths the parent had open at the fork (its lock is the parent's).
_forked_paths: set[str] = set()
# Handles inherited by a forked child: never closed nor freed there (see after_fork_in_child).
_inherited: list[Any] = []
# Whether this process has opened a RocksDB database, and whether it is a child forked after that:
# RocksDB's background thread pool is process-wide and does not survive a fork, so in such a child
# a flush (also the one when a handle is freed) would wait forever. Such a child opens nothing.
_engine_used = False
_engine_lost = False


def _after_fork_in_child() -> None:
    global _engine_lost
    _engine_lost = True


def _use_engine(path: str) -> None:
    """Refuse to open *path* in a child forked after this process used RocksDB; note the first use."""
    global _engine_used
    if _engine_lost:
        raise InternalError(
            f"cannot open the RocksDB database at {path}: this process was forked from one that had used "
            "RocksDB, whose background threads (flushes, compactions) do not exist in a forked child, so "
            "RocksDB would hang here: open RocksDB stores only in processes that did not inherit it "
            f"(multiprocessing's 'spawn' start method, or a new program), or {SQL_HINT}"
        )
    if not _engine_used:
        _engine_used = True
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)


def parse_url(url: str) -> tuple[str, str]:
    """``(absolute path, mode)`` of a ``rocksdb:///absolute/path[?mode=read-only]`` URL.

    *mode* is ``"read-write"`` (the default) or ``"read-only"``; anything
    else is a :class:`~airssys_storage.ConfigurationError` naming the fix.
    """
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ConfigurationError(f"rocksdb URL {url!r} is invalid ({exc}); write rocksdb:///absolute/path") from None
    if backend_scheme(url) != "rocksdb":
        raise ConfigurationError(f"{url!r} is not a rocksdb:// URL")
    if parts.netloc:
        raise ConfigurationError(
            f"rocksdb URL {url!r} names a host ({parts.netloc!r}); write rocksdb:///absolute/path with three slashes"
        )
    mode = READ_WRITE
    for name, value in query:
        if name != "mode" or value not in (READ_WRITE, READ_ONLY):
            raise ConfigurationError(
                f"rocksdb URL {url!r} has an unknown query {name}={value!r}: the only one is mode=read-only "
                "(put engine options in backend_options)"
            )
        mode = value
    if parts.fragment:
        raise ConfigurationError(f"rocksdb URL {url!r} has a fragment; write rocksdb:///absolute/path")
    path = unquote(parts.path)
    if "\x00" in path:
        raise ConfigurationError(f"rocksdb URL {url!r} holds a NUL character; write rocksdb:///absolute/path")
    if not path.startswith("/") or path.rstrip("/") == "":
        raise ConfigurationError(f"rocksdb URL {url!r} must name an absolute directory path: rocksdb:///absolute/path")
    # normpath keeps a leading "//" (Linux reads it as "/"): rocksdb:////data/x names /data/x.
    return "/" + os.path.normpath(path).lstrip("/"), mode


def path_from_url(url: str) -> str:
    """The absolute filesystem path of a ``rocksdb:///absolute/path`` URL."""
    return parse_url(url)[0]


class _Space:
    """One namespace: its key prefixes and its cached counter record."""

    __slots__ = ("counter", "counter_key", "end", "namespace", "op_prefix", "prefix")

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.prefix = encode_namespace(namespace)
        #: The first key after every data key of the namespace (exclusive bound of a full listing).
        self.end: bytes = key_successor(self.prefix) or b""
        self.counter_key = namespace.encode("ascii")
        #: Prefix of the namespace's op records and retention-index entries (each in its column family).
        self.op_prefix = self.prefix
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
#: The header of a row without expiry whose version is below 256, by version (see layout: width 1).
_SHORT_HEADERS = [
    bytes((1, version)) for version in range(256)
]  # never used for version 0 (planned versions start at 1)
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
        raise InternalError(f"the RocksDB database at {self._path} is closed")


class _Forked(_Closed):
    """Stands in for the parent's database in a forked child: any use is a clear error."""

    def _fail(self, *args: object, **kwargs: object) -> NoReturn:
        raise InternalError(_forked_message(self._path))


def _forked_message(path: str) -> str:
    return (
        f"the RocksDB database at {path} was opened by the parent of this forked process, and a forked "
        "child cannot use it (RocksDB allows one writer process per database, and its background threads "
        "do not exist in the child): open the store only in the process that uses it, in a process that did "
        f"not inherit it (e.g. multiprocessing's 'spawn' start method), or {SQL_HINT}"
    )


class RocksDBBackend(StorageBackend, ForkAware):
    """Namespaced rows in one RocksDB database; counters and operation ids in column families of their own."""

    name = "rocksdb"
    url_schemes = ("rocksdb",)
    capabilities = Capabilities(persistent=True, multi_process=False, repair=True)
    Options = RocksDBOptions

    def __init__(self, path: str, db: Any, options: RocksDBOptions, mode: str = READ_WRITE) -> None:
        self.path = path
        self.options = options
        self.mode = mode
        self._lock = threading.Lock()
        self._spaces: dict[str, _Space] = {}
        # Rows (size, version, expiry; no value) of recently written keys, None for "no row".
        self._rows: dict[bytes, Cached] = {} if options.size_cache_keys else _NoRows()
        self._row_limit = options.size_cache_keys
        #: Bumped by every counter repair, so that a repair based on an older snapshot starts again.
        self._repairs = 0
        self._write_options = _write_options(options)
        self._bind(db)
        self._real_path = os.path.realpath(path)
        if mode == READ_ONLY:
            for name in ("apply", "put_one", "delete_one", "delete_range", "clear", "repair"):
                setattr(self, name, self._refuse_write)
        else:
            with _open_paths_lock:
                _open_paths.add(self._real_path)
        track(self)

    def _refuse_write(self, *args: object, **kwargs: object) -> NoReturn:
        raise InternalError(
            f"the RocksDB database at {self.path} is open read-only (mode=read-only in its URL): it cannot be "
            "written; drop ?mode=read-only from the URL to write (only one process can write at a time)"
        )

    def after_fork_in_child(self) -> None:
        """Swap the inherited handle for the refusing stand-in (see the module docs)."""
        global _open_paths_lock
        db = self._db
        if not isinstance(db, _Closed):
            # Never close or free it here: RocksDB's destructor would wait for background
            # threads that do not exist in the child and unlock the parent's files.
            # One extra reference keeps even interpreter shutdown from freeing it.
            for handle in (db, *self._cfs.values()):
                ctypes.pythonapi.Py_IncRef(ctypes.py_object(handle))
                _inherited.append(handle)
            if self.mode == READ_WRITE:
                _forked_paths.add(self._real_path)
        _open_paths_lock = threading.Lock()  # another thread may have held it at fork time
        _open_paths.discard(self._real_path)
        self._lock = threading.Lock()
        self._bind(_Forked(self.path))

    def _bind(self, db: Any) -> None:
        """Point every handle at *db* (an ``Rdict`` or a stand-in); forget the caches."""
        self._db: Any = db
        if isinstance(db, _Closed):
            self._cfs: dict[str, Any] = {name: db for name in COLUMN_FAMILIES}
            self._handles: dict[str, Any] = dict(self._cfs)
        else:
            self._cfs = {name: db.get_column_family(name) for name in COLUMN_FAMILIES}
            self._handles = {name: db.get_column_family_handle(name) for name in COLUMN_FAMILIES}
        self._counters_cf: Any = self._cfs[COUNTERS_CF]
        self._counters_handle: Any = self._handles[COUNTERS_CF]
        for space in self._spaces.values():
            space.counter = None
        self._rows.clear()

    # -- opening ---------------------------------------------------------------

    @classmethod
    def open(cls, url: str, options: RocksDBOptions | Mapping[str, Any]) -> RocksDBBackend:
        """Open the database at *url*; *options* as :meth:`parse_options` gives them (a plain mapping is parsed).

        Raises :class:`~airssys_storage.ConfigurationError` for a bad URL or
        location, :class:`~airssys_storage.InternalError` when another process
        writes the database ("in use by another process"), and
        :class:`~airssys_storage.StoreDamaged` with the repair command when
        RocksDB finds damage while opening.
        """
        opts: RocksDBOptions = cls.parse_options(options)
        path, mode = parse_url(url)
        db = _open_db(path, opts, mode)
        try:
            _check_schema(db, path, mode)
        except BaseException:
            db.close()
            raise
        return cls(path, db, opts, mode)

    @classmethod
    def exists(cls, url: str, options: Any) -> bool | None:
        """Whether the database directory exists and holds anything (an empty directory is no store yet)."""
        path = path_from_url(url)
        try:
            return any(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            return False

    @classmethod
    def repair_url(cls, url: str, options: RocksDBOptions | Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Repair the database at *url*, which must not be open anywhere, and recount its usage.

        Runs RocksDB's ``RepairDB`` (rocksdict's ``Rdict.repair``): it rebuilds
        the ``MANIFEST`` from the table files and salvages every readable
        record of the write-ahead logs, dropping what it cannot read; column
        families are recovered from the tables' properties. Then every usage
        counter is recomputed from the data. Returns what the recount found
        (see :meth:`recount`). Raises :class:`~airssys_storage.ConfigurationError`
        when the database is open (here or in another process).
        """
        opts: RocksDBOptions = cls.parse_options(options or {})
        path, _ = parse_url(url)
        require_rocksdict()
        if not os.path.isdir(path):
            raise ConfigurationError(f"cannot repair the RocksDB database at {path}: no such directory")
        real = os.path.realpath(path)
        with _open_paths_lock:
            if real in _open_paths:
                raise ConfigurationError(
                    f"cannot repair the RocksDB database at {path} while this process has it open; "
                    "call repair() on the open backend, or close it first"
                )
        with _exclusive(path):
            _repair_files(path, opts)
        backend = cls.open(url.split("?", 1)[0], opts)
        try:
            return backend.recount()
        finally:
            backend.close()

    # -- reads -------------------------------------------------------------------

    def _space(self, namespace: str) -> _Space:
        space = self._spaces.get(namespace)
        if space is None:
            space = self._spaces.setdefault(namespace, _Space(namespace))
        return space

    def get(self, namespace: str, key: bytes) -> bytes | None:
        try:
            prefix = self._spaces[namespace].prefix
        except KeyError:
            prefix = self._space(namespace).prefix
        try:
            raw: bytes | None = self._db.get(prefix + key)
        except Exception as exc:
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
        return self._value(prefix + key, raw, None)

    def _decode(self, data_key: bytes, raw: bytes) -> tuple[int, int, int | None]:
        """``(value offset, version, expires_at)`` of the record *raw* of *data_key*; damage is an error."""
        try:
            return decode_header(raw)
        except ValueError as exc:
            namespace = data_key[1 : 1 + data_key[0]].decode("ascii", "replace")
            key = data_key[1 + data_key[0] :]
            raise StoreDamaged(
                f"the row of key {key.decode(errors='replace')!r} of component {namespace!r} in the RocksDB "
                f"database at {self.path} is corrupted ({exc}): run "
                f"`{operator_command('verify --repair', f'rocksdb://{self.path}')}` to remove it"
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
        """The record of *data_key*, or ``None``."""
        try:
            raw: bytes | None = self._db.get(data_key)
        except Exception as exc:
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
        if not keys:
            return []
        try:
            # One MultiGet: every value at one sequence number, never half of a concurrent batch.
            raws: list[bytes | None] = self._db.get([prefix + key for key in keys])
        except Exception as exc:
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

    def _iterate(
        self, source: Any, space: _Space, start: bytes, end: bytes | None, values: bool = True
    ) -> tuple[Any, Any]:
        """An iterator over the data records of *space* with ``start <= key < end`` (full data keys).

        Returned with its read options, which the caller must keep referenced while it iterates:
        the iterator's bounds live in them (freeing them early makes it read past its bounds).
        """
        lower = space.prefix + start
        upper = space.end if end is None else space.prefix + end
        read = rocksdict.ReadOptions()
        read.set_iterate_lower_bound(lower)
        read.set_iterate_upper_bound(upper)
        if values:
            return source.items(from_key=lower, read_opt=read), read
        return source.keys(from_key=lower, read_opt=read), read

    def items(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        space = self._space(namespace)
        found: list[tuple[bytes, bytes]] = []
        if limit <= 0 or (end is not None and end <= start):
            return found
        now: int | None = None
        skip = len(space.prefix)
        try:
            rows, _bounds = self._iterate(self._db, space, start, end)
            for data_key, raw in rows:
                if 0 < (head := raw[0] if raw else 0) < 9:
                    found.append((data_key[skip:], raw[head + 1 :]))
                else:
                    offset, _, expires_at = self._decode(data_key, raw)
                    if expires_at is not None:
                        now = self.clock() if now is None else now
                        if expires_at <= now:
                            continue
                    found.append((data_key[skip:], raw[offset:]))
                if len(found) == limit:
                    break
        except StorageError:
            raise
        except Exception as exc:
            self._fail("read from", exc)
        return found

    def keys(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[bytes]:
        space = self._space(namespace)
        counter = space.counter or self._counter(space)
        if limit <= 0 or (end is not None and end <= start):
            return []
        if counter[3]:
            return [key for key, _ in self.items(namespace, start, end, limit)]
        # No row has an expiry: list keys without reading a value.
        skip = len(space.prefix)
        try:
            keys, _bounds = self._iterate(self._db, space, start, end, values=False)
            if counter[1] > limit:  # the namespace holds more rows than asked for
                keys = islice(keys, limit)
            return [data_key[skip:] for data_key in keys]
        except Exception as exc:
            self._fail("read from", exc)

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
                raw = self._counters_cf.get(space.counter_key)
            except Exception as exc:
                self._fail("read from", exc)
            counter = (0, 0, 0, 0) if raw is None else self._unpack_counter(space.counter_key, raw)
            space.counter = counter
        return counter

    def _unpack_counter(self, key: bytes, raw: bytes) -> Counter:
        if len(raw) != COUNTER.size:
            raise StoreDamaged(
                f"the usage counter of namespace {key.decode('ascii', 'replace')!r} in the RocksDB database at "
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
        except StorageError:
            raise
        except Exception as exc:
            self._fail("write to", exc)
        finally:
            self._lock.release()
        return decided

    def _apply_locked(self, space: _Space, writes: Sequence[Write], limit: int | None) -> Plan:
        """:meth:`apply` inside the lock (engine errors pass through)."""
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
        ops = self._cfs[OPS_CF]
        for write in writes:
            if write.op_id is None:
                continue
            raw = ops.get(space.op_prefix + write.op_id.encode())
            if raw is None:
                continue
            if len(raw) != OP_TIME.size + OP_RESULT:
                raise StoreDamaged(
                    f"the recorded operation {write.op_id!r} of component {space.namespace!r} in the RocksDB "
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
        # The old row of each put and delete: lined up with *old* when every write made one, else by key.
        put_rows: Sequence[KeyState | None] = old
        delete_rows: Sequence[KeyState | None] = old
        if len(puts) != len(old) and len(deletes) != len(old):
            before = dict(zip(map(_first, writes), old, strict=True))
            put_rows = [before[put[0]] for put in puts]
            delete_rows = [before[key] for key in deletes]
        if len(puts) == 1 and not (deletes or decided.space_changed or decided.op_records or reset):
            # One row rewritten in place (an increment or TOUCH keeping its size): with the count of
            # rows with an expiry unchanged too, the row record alone is the commit (one put).
            key, value, version, expires_at = puts[0]
            row = put_rows[0]
            assert row is not None  # the counter did not change, so the row existed
            if (row.expires_at is None) is (expires_at is None):
                if value is None:  # TOUCH: the stored value (read for it) under a new header
                    value = row.value
                    assert value is not None
                data_key = prefix + key
                self._rows.pop(data_key, None)  # stays out if the put fails
                self._db.put(data_key, encode_row(version, expires_at, value), self._write_options)
                self._remember(data_key, _new(KeyState, (len(value), version, expires_at, None)))
                return
        expiring = counter[3]
        rows = self._rows
        if len(rows) + len(puts) + len(deletes) > self._row_limit:
            rows.clear()  # crude but O(1) per write on average, and never wrong
        batch = rocksdict.WriteBatch(raw_mode=True)
        try:
            put = batch.put
            done = 0
            if not expiring:
                # No row of the namespace has an expiry, so no old row has one: the leading puts
                # without expiry (the usual batch) need neither their old row nor the counting.
                headers = _SHORT_HEADERS
                for key, value, version, expires_at in puts:
                    if expires_at is not None or value is None or version > 255:
                        break
                    data_key = prefix + key
                    put(data_key, headers[version] + value)
                    rows[data_key] = _new(KeyState, (len(value), version, None, None))
                    done += 1
            for (key, value, version, expires_at), row in zip(puts[done:], put_rows[done:]):  # noqa: B905
                if row is not None and row.expires_at is not None:
                    expiring -= 1
                if value is None:  # TOUCH: the stored value under a new header
                    assert row is not None and row.value is not None
                    value = row.value
                data_key = prefix + key
                if expires_at is None:
                    if version < 256:  # the common case: a two-byte header from the table
                        put(data_key, _SHORT_HEADERS[version] + value)
                    else:
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
                put(space.counter_key, COUNTER.pack(*new), self._counters_handle)
            if decided.op_records:
                self._record_ops(batch, space, decided.op_records, now, stale)
            self._db.write(batch, self._write_options)
        except BaseException:
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
        self, batch: Any, space: _Space, records: Sequence[tuple[str, int]], now: int, stale: Mapping[str, int]
    ) -> None:
        """Add the op records of a commit to *batch*, and drop some older than the retention first."""
        ops, times = self._handles[OPS_CF], self._handles[OP_TIMES_CF]
        time_prefix = space.op_prefix
        horizon = now - self.op_retention_ms
        if horizon >= 0:
            start = len(time_prefix) + OP_TIME.size
            read = rocksdict.ReadOptions()
            read.set_iterate_lower_bound(time_prefix)
            read.set_iterate_upper_bound(op_time_key(time_prefix, horizon + 1, ""))
            for index_key in islice(self._cfs[OP_TIMES_CF].keys(from_key=time_prefix, read_opt=read), _OP_GC_STEP):
                batch.delete(index_key, times)
                batch.delete(space.op_prefix + index_key[start:], ops)
        for op_id, result in records:
            if op_id in stale:  # its old record is re-used: drop its index entry, or a sweep would drop the new one
                batch.delete(op_time_key(time_prefix, stale[op_id], op_id), times)
            record = OP_TIME.pack(now) + result.to_bytes(OP_RESULT, "little", signed=True)
            batch.put(space.op_prefix + op_id.encode(), record, ops)
            batch.put(op_time_key(time_prefix, now, op_id), b"", times)

    def put_one(self, namespace: str, key: bytes, value: bytes, limit: int | None) -> int:
        # The hot path of set(): apply() without its generality (as in the LevelDB plugin). The
        # planner decides as always; a row without expiry needs no clock, and a same-size
        # overwrite leaves the counter as it is, so the row record alone is the commit.
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
                    write = _new(Write, (key, _PUT, value, None, None, 0, None))
                    return self._apply_locked(space, (write,), limit).results[0]
                if row.size == len(value) and row.version < MAX_VERSION:
                    # A same-size overwrite: the planner's answer is the next version and no
                    # counter change (a delta of 0, which any quota accepts); the tests check it.
                    version: int = row.version + 1
                    if version < 256:
                        record = _SHORT_HEADERS[version] + value
                    else:
                        width = (version.bit_length() + 7) >> 3
                        record = ((version << 8) | width).to_bytes(width + 1, "little") + value
                    self._db.put(data_key, record, self._write_options)
                    rows[data_key] = _new(KeyState, (row.size, version, None, None))
                    return version
            counter = space.counter or self._load_counter(space)
            decided = plan(
                namespace,
                (_new(Write, (key, _PUT, value, None, None, 0, None)),),
                (row,),
                _new(SpaceState, counter[:3]),
                limit,
                0,
            )
            version = decided.results[0]
            width = (version.bit_length() + 7) >> 3
            after = decided.space  # a new row or another size: the counter changes
            new = (after.bytes, after.keys, after.floor, counter[3])
            batch = rocksdict.WriteBatch(raw_mode=True)
            batch.put(data_key, ((version << 8) | width).to_bytes(width + 1, "little") + value)
            batch.put(space.counter_key, COUNTER.pack(*new), self._counters_handle)
            self._db.write(batch, self._write_options)
            space.counter = new
            rows[data_key] = _new(KeyState, (len(value), version, None, None))
        except StorageError:
            raise
        except Exception as exc:
            rows.pop(data_key, None)
            self._fail("write to", exc)
        finally:
            self._lock.release()
        return version

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
        except StorageError:
            raise
        except Exception as exc:
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
            except StorageError:
                raise
            except Exception as exc:
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
        if (limit is not None and limit <= 0) or (end is not None and end <= start):
            return
        kind = _DELETE if expired_at is None else _SWEEP
        skip = len(space.prefix)
        rows, _bounds = self._iterate(self._db, space, start, end)
        for data_key, raw in rows:
            row = self._row(data_key, raw)
            if expired_at is not None and (row.expires_at is None or row.expires_at > expired_at):
                continue
            writes.append(_new(Write, (data_key[skip:], kind, b"", None, None, 0, None)))
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
            except StorageError:
                raise
            except Exception as exc:
                self._fail("write to", exc)

    # -- administration ----------------------------------------------------------

    def namespaces(self) -> list[str]:
        return sorted(ns for ns, counter in self._counters().items() if counter[1] > 0)

    def _counters(self) -> dict[str, Counter]:
        try:
            return {
                key.decode("ascii", "replace"): self._unpack_counter(key, raw) for key, raw in self._counters_cf.items()
            }
        except StorageError:
            raise
        except Exception as exc:
            self._fail("read from", exc)

    def stats(self) -> dict[str, Any]:
        """Usage totals, the options in force and RocksDB's own properties of the data column family.

        ``estimated_keys`` (``rocksdb.estimate-num-keys``: records, including
        metadata-free overwrites not yet compacted away), ``sst_files_bytes``
        (``rocksdb.total-sst-files-size``), ``live_sst_files_bytes``,
        ``pending_compaction_bytes`` (``rocksdb.estimate-pending-compaction-bytes``),
        ``memtable_bytes`` (``rocksdb.cur-size-all-mem-tables``), ``running_compactions``.
        """
        counters = self._counters()
        properties = {
            "estimated_keys": "rocksdb.estimate-num-keys",
            "sst_files_bytes": "rocksdb.total-sst-files-size",
            "live_sst_files_bytes": "rocksdb.live-sst-files-size",
            "pending_compaction_bytes": "rocksdb.estimate-pending-compaction-bytes",
            "memtable_bytes": "rocksdb.cur-size-all-mem-tables",
            "running_compactions": "rocksdb.num-running-compactions",
        }
        try:
            engine = {name: self._db.property_int_value(prop) for name, prop in properties.items()}
        except Exception as exc:
            self._fail("read from", exc)
        return {
            "path": self.path,
            "mode": self.mode,
            "schema_version": SCHEMA_VERSION,
            "namespaces": sum(1 for counter in counters.values() if counter[1] > 0),
            "keys": sum(counter[1] for counter in counters.values()),
            "bytes": sum(counter[0] for counter in counters.values()),
            "keys_with_expiry": sum(counter[3] for counter in counters.values()),
            "rocksdb": engine,
            "options": self.options.as_dict(),
        }

    def compact(self) -> dict[str, Any]:
        """Compact every column family to the last level (RocksDB's ``CompactRange`` over all keys).

        Drops deleted and overwritten records and rewrites the tables with the
        bottommost compression; writers keep working meanwhile. Returns the
        table-file bytes before and after. Raises ``internal-error`` on a
        read-only instance.
        """
        if self.mode == READ_ONLY:
            self._refuse_write()
        before = self.stats()["rocksdb"]["sst_files_bytes"]
        try:
            self._db.compact_range(None, None)
            for cf in self._cfs.values():
                cf.compact_range(None, None)
        except Exception as exc:
            self._fail("compact", exc)
        return {"path": self.path, "sst_files_bytes_before": before, **self.stats()["rocksdb"]}

    def verify(self, repair: bool = False, progress: Callable[[int], None] | None = None) -> VerifyReport:
        """Read every record with its block checksum verified, recount usage, compare with the counters.

        As the LevelDB plugin's verify: reads one snapshot (data and counters
        at the same sequence number), so writers are not held up; with
        *repair*, each wrong counter is corrected by the difference the
        snapshot showed, under the write lock, in one synced batch, exact even
        if commits happened since. Rows whose header cannot be decoded are
        reported (and removed) with keys breaking the key rules; rows whose
        version or expiry is 0 are reported in ``bad_rows`` and fixed as
        :class:`BadRow` says (under the lock). Damage RocksDB reports while
        reading is in ``problems`` with the repair command.
        """
        if repair and self.mode == READ_ONLY:
            self._refuse_write()
        exclusive = False
        while True:
            with self._lock if exclusive else contextlib.nullcontext():
                outcome = self._verify_pass(repair, None if exclusive else progress, exclusive)
            if isinstance(outcome, VerifyReport):
                return outcome
            exclusive = outcome  # True: fix bad rows in a pass under the lock; False: another repair ran, look again

    def _verify_pass(self, repair: bool, progress: Callable[[int], None] | None, locked: bool) -> VerifyReport | bool:
        """One recount (and repair) for :meth:`verify`: the report, or whether to run again under the lock."""
        lock: Any = contextlib.nullcontext() if locked else self._lock
        with lock:
            generation = self._repairs
            try:
                # Taken together under the write lock: no commit between them, one sequence number.
                snapshots = (self._db.snapshot(), self._counters_cf.snapshot())
            except Exception as exc:
                self._fail("verify", exc)
        found = self._recount(*snapshots, progress)
        del snapshots
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
                        f"{now}: run `{operator_command('verify --repair', f'rocksdb://{self.path}')}`"
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
        self, data: Any, counters: Any, progress: Callable[[int], None] | None
    ) -> tuple[dict[str, Usage], dict[str, Usage], list[BadKey], dict[str, tuple[int, int]], list[_RowFix]] | str:
        """Stored counters, recounted usage, rows to remove, wrong ``expiring`` counts and row fixes, or the damage."""
        # namespace -> [bytes, rows, rows with an expiry, highest sound version]
        actual: dict[str, list[int]] = {}
        stored: dict[str, Usage] = {}
        stored_expiring: dict[str, int] = {}
        floors: dict[str, int] = {}
        bad: list[BadKey] = []
        damaged: list[tuple[str, bytes, int, int, int | None, bytes]] = []
        chunk: list[tuple[str, bytes, int]] = []

        def check() -> None:
            for index, problem in key_problems([key for _, key, _ in chunk]):
                bad.append(BadKey(*chunk[index], problem))
            chunk.clear()

        read = rocksdict.ReadOptions()
        read.set_verify_checksums(True)
        pending = 0
        try:
            for key, raw in data.items(read_opt=read):
                size = key[0]
                namespace = key[1 : 1 + size].decode("ascii", "replace")
                entry = actual.setdefault(namespace, [0, 0, 0, 0])
                try:
                    offset, version, expires_at = decode_header(raw)
                except ValueError as exc:
                    used = len(key) - 1 - size + len(raw)  # charged as a whole record
                    bad.append(BadKey(namespace, key[1 + size :], used, f"a malformed row header: {exc}"))
                    entry[0] += used
                    entry[1] += 1
                    continue
                used = len(key) - 1 - size + len(raw) - offset
                entry[0] += used
                entry[1] += 1
                if expires_at is not None:
                    entry[2] += 1
                if version > entry[3]:
                    entry[3] = version
                if version == 0 or expires_at == 0:
                    damaged.append((namespace, key, used, version, expires_at, raw[offset:]))
                chunk.append((namespace, key[1 + size :], used))
                pending += 1
                if pending == _PROGRESS_STEP:
                    check()
                    if progress is not None:
                        progress(pending)
                    pending = 0
            check()
            for key, raw in counters.items(read_opt=read):
                namespace = key.decode("ascii", "replace")
                if len(raw) == COUNTER.size:
                    used, count, floor, rows_expiring = COUNTER.unpack(raw)
                    stored[namespace] = Usage(used, count)
                    floors[namespace] = floor
                    stored_expiring[namespace] = rows_expiring
                else:
                    stored[namespace] = _BAD
        except Exception as exc:
            if _message(exc).startswith("Corruption"):
                return str(_error(self.path, "verify", exc))
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
            key = data_key[1 + data_key[0] :]
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

        One synced batch. Call under the lock. A counter's floor is kept, or
        raised by a removed bad row; an unreadable counter becomes the
        snapshot's recount with that floor.
        """
        batch = rocksdict.WriteBatch(raw_mode=True)
        corrected: list[tuple[_Space, Counter]] = []
        removed = [self._space(found.namespace).prefix + found.key for found in report.bad_keys]
        mismatches = {mismatch.namespace: mismatch for mismatch in report.mismatches}
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
                    batch.delete(space.counter_key, self._counters_handle)
                else:
                    batch.put(space.counter_key, COUNTER.pack(*counter), self._counters_handle)
                corrected.append((space, counter))
            self._db.write(batch, _write_options(None))
        except StorageError:
            raise
        except Exception as exc:
            for space, _ in corrected:
                space.counter = None
            self._fail("write to", exc)
        for data_key in [*removed, *(fix.data_key for fix in fixes)]:
            self._rows.pop(data_key, None)
        for space, counter in corrected:
            space.counter = counter

    def recount(self) -> dict[str, Any]:
        """Recompute every usage counter from the data and write the corrected ones.

        Returns the totals and the namespaces whose stored counter was wrong.
        :meth:`verify` with ``repair=True`` does the work; damage it finds
        raises :class:`~airssys_storage.StoreDamaged`.
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
            db = self._db
            self._bind(_Closed(self.path))
            db.close()
            _repair_files(self.path, self.options)
            self._bind(_open_db(self.path, self.options, READ_WRITE))
        return self.recount()

    def close(self) -> None:
        with self._lock:
            db = self._db
            self._bind(_Closed(self.path))
            if not isinstance(db, _Closed):
                try:
                    db.close()
                except Exception as exc:
                    self._fail("close", exc)
                finally:
                    if self.mode == READ_WRITE:
                        with _open_paths_lock:
                            _open_paths.discard(self._real_path)

    def _fail(self, action: str, exc: Exception) -> NoReturn:
        """Raise the :class:`StorageError` for an engine error *exc*; anything else passes unchanged."""
        if isinstance(exc, StorageError) or not _is_engine_error(exc):
            raise exc
        raise _error(self.path, action, exc) from exc


# -- helpers --------------------------------------------------------------------


def _is_engine_error(exc: BaseException) -> bool:
    """Whether *exc* comes from RocksDB (rocksdict raises plain ``Exception`` and ``DbClosedError``)."""
    return type(exc) is Exception or (ROCKSDICT_MISSING is None and isinstance(exc, rocksdict.DbClosedError))


def _message(exc: BaseException) -> str:
    return str(exc.args[0]) if exc.args else str(exc)


def _error(path: str, action: str, exc: Exception) -> StorageError:
    message = _message(exc)
    if message.startswith("Corruption"):
        return StoreDamaged(f"the RocksDB database at {path} is corrupted ({message}); {_repair_hint(path)}")
    if isinstance(exc, rocksdict.DbClosedError):
        return InternalError(f"the RocksDB database at {path} is closed")
    return InternalError(f"cannot {action} the RocksDB database at {path}: {message}")


def _repair_hint(path: str) -> str:
    return (
        f"stop every process using it and run `{operator_command('repair', f'rocksdb://{path}')}` "
        f"(or RocksDBBackend.repair_url('rocksdb://{path}')); see the airssys-storage-rocksdb README"
    )


def _write_options(options: RocksDBOptions | None) -> Any:
    """RocksDB write options: fsync per commit when *options* say ``sync`` (``None``: always)."""
    write = rocksdict.WriteOptions()
    write.sync = options is None or options.sync
    return write


def _engine_options(options: RocksDBOptions) -> Any:
    """The ``rocksdict.Options`` of every column family (raw bytes, the tuning *options* ask for)."""
    engine = rocksdict.Options(raw_mode=True)
    engine.create_if_missing(True)
    engine.create_missing_column_families(True)
    engine.set_paranoid_checks(True)
    engine.set_keep_log_file_num(4)
    engine.set_max_background_jobs(options.background_jobs)
    engine.set_write_buffer_size(int(options.write_buffer_size))
    engine.set_max_write_buffer_number(options.max_write_buffer_number)
    engine.set_compression_type(getattr(rocksdict.DBCompressionType, options.compression)())
    engine.set_bottommost_compression_type(getattr(rocksdict.DBCompressionType, options.bottommost_compression)())
    table = rocksdict.BlockBasedOptions()
    if options.block_cache_size:
        table.set_block_cache(rocksdict.Cache(int(options.block_cache_size)))
    else:
        table.disable_cache()
    if options.bloom_filter_bits:
        table.set_bloom_filter(options.bloom_filter_bits, False)
    engine.set_block_based_table_factory(table)
    return engine


def _repair_files(path: str, options: RocksDBOptions) -> None:
    """RocksDB's RepairDB on *path* (closed everywhere)."""
    _use_engine(path)
    try:
        rocksdict.Rdict.repair(path, _engine_options(options))
    except Exception as exc:
        raise InternalError(
            f"repairing the RocksDB database at {path} failed: {_message(exc)}; restore it from a backup"
        ) from exc


def _check_location(path: str) -> None:
    """Clear errors for locations RocksDB would reject with a cryptic message (or accept wrongly)."""
    parent = os.path.dirname(path)
    if not os.path.exists(parent):
        raise ConfigurationError(
            f"cannot open the RocksDB database at {path}: its parent directory {parent} does not exist; "
            "create it first (the backend creates only the database directory itself)"
        )
    if not os.path.isdir(parent):
        raise ConfigurationError(f"cannot open the RocksDB database at {path}: {parent} is not a directory")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigurationError(
            f"cannot open the RocksDB database at {path}: it is a file, not a RocksDB database directory"
        )
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "CURRENT")):
        entries = set(os.listdir(path)) - {"LOCK", "LOG", "IDENTITY", "rocksdict-config.json"}
        entries = {name for name in entries if not name.startswith(("LOG.old", "OPTIONS-"))}
        if entries:
            # Another process may be creating the database right now: that is "in use", never "damaged".
            _refuse_if_in_use(path)
            if os.path.exists(os.path.join(path, "CURRENT")):
                return  # it was being created and is complete now
        if any(name.endswith((".log", ".sst")) or name.startswith("MANIFEST-") for name in entries):
            raise StoreDamaged(
                f"the RocksDB database at {path} is corrupted (its CURRENT file is missing); {_repair_hint(path)}"
            )
        if entries:
            raise ConfigurationError(
                f"cannot open a RocksDB database at {path}: the directory is not empty and holds no RocksDB "
                "database; point the URL at a new path or an existing database"
            )


def require_rocksdict() -> None:
    """Raise ``invalid-config`` with the install line when rocksdict (the RocksDB binding) is missing."""
    if ROCKSDICT_MISSING is not None:
        raise ConfigurationError(
            f"the rocksdb backend needs the Python module 'rocksdict', which is not installed ({ROCKSDICT_MISSING}); "
            "install it with: pip install 'rocksdict>=0.3.23' (wheels exist for Linux, macOS and Windows)"
        )


def _open_db(path: str, options: RocksDBOptions, mode: str) -> Any:
    require_rocksdict()
    _use_engine(path)
    engine = _engine_options(options)
    families = {name: _engine_options(options) for name in COLUMN_FAMILIES}
    if mode == READ_ONLY:
        if not os.path.exists(os.path.join(path, "CURRENT")):
            raise ConfigurationError(
                f"cannot open the RocksDB database at {path} read-only: no database there (mode=read-only "
                "never creates one); check the path"
            )
        try:
            return rocksdict.Rdict(path, engine, families, rocksdict.AccessType.read_only(False))
        except Exception as exc:
            raise _error(path, "open (read-only)", exc) from None
    _check_location(path)
    try:
        make_private_dirs(path)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the RocksDB database directory {path}: {exc.strerror or exc}; "
            "check the permissions of its parent directory"
        ) from None
    try:
        return rocksdict.Rdict(path, engine, families)
    except Exception as exc:
        message = _message(exc)
        if "lock hold by current process" in message:
            raise _in_use(path, this_process=True) from None
        if "while lock file" in message.lower():
            raise _in_use(path, this_process=False) from None
        raise _error(path, "open", exc) from None


def _in_use(path: str, this_process: bool) -> StorageError:
    """The error for a database another handle writes (never reported as damage)."""
    real = os.path.realpath(path)
    if real in _forked_paths:
        return InternalError(_forked_message(path))
    if this_process:
        return InternalError(
            f"the RocksDB database at {path} is in use by another handle in this process; RocksDB allows "
            f"one writer per database: share one StorageManager ({_READ_ONLY_HINT})"
        )
    return InternalError(
        f"the RocksDB database at {path} is in use by another process; RocksDB allows one writer process per "
        f"database ({_READ_ONLY_HINT}), and {SQL_HINT}"
    )


def _refuse_if_in_use(path: str) -> None:
    """Raise :func:`_in_use` when a handle in this or another process holds *path*'s lock file."""
    real = os.path.realpath(path)
    with _open_paths_lock:
        mine = real in _open_paths or real in _forked_paths
    if mine:
        raise _in_use(path, this_process=True)
    if not os.path.exists(os.path.join(path, "LOCK")):
        return
    try:
        with _exclusive(path, "open"):
            pass
    except ConfigurationError:
        raise _in_use(path, this_process=False) from None


def _check_schema(db: Any, path: str, mode: str) -> None:
    try:
        meta = db.get_column_family(META_CF)
        raw = meta.get(SCHEMA_KEY)
        if raw is None:
            with contextlib.suppress(StopIteration):
                next(iter(db.keys()))
                raise ConfigurationError(
                    f"the RocksDB database at {path} was not written by airssys-storage (it has no schema "
                    "version); refusing to use it: point the URL at a new path"
                )
            if mode == READ_WRITE:
                meta.put(SCHEMA_KEY, str(SCHEMA_VERSION).encode(), _write_options(None))
            return
    except StorageError:
        raise
    except Exception as exc:
        raise _error(path, "open", exc) from None
    if not raw.isdigit() or int(raw) < 1:
        raise StoreDamaged(
            f"the RocksDB database at {path} has a corrupted schema version {raw!r}; {_repair_hint(path)}"
        )
    if int(raw) > SCHEMA_VERSION:
        raise ConfigurationError(
            f"the RocksDB database at {path} has schema version {int(raw)}, newer than version {SCHEMA_VERSION} "
            "that this airssys-storage-rocksdb understands; upgrade airssys-storage-rocksdb"
        )


@contextlib.contextmanager
def _exclusive(path: str, action: str = "repair") -> Iterator[None]:
    """Hold RocksDB's own lock file (while RepairDB runs, which takes no lock itself)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: RocksDB uses another locking scheme there
        yield
        return
    fd = os.open(os.path.join(path, "LOCK"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigurationError(
                f"cannot {action} the RocksDB database at {path}: it is in use by another process; stop it first"
            ) from None
        yield
    finally:
        os.close(fd)
