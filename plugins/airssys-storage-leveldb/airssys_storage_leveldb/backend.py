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
import functools
import os
import stat
import time
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any
from urllib.parse import unquote, urlsplit

try:
    import plyvel
except ImportError as _exc:  # the plugin still registers; opening a store names the fix
    PLYVEL_MISSING: ImportError | None = _exc
else:
    PLYVEL_MISSING = None

from airssys_storage import Capabilities, ConfigurationError, InternalError, StorageError, StoreDamaged
from airssys_storage.backend import operator_command
from airssys_storage.files import make_private_dirs
from airssys_storage.kvengine import (
    PROGRESS_STEP,
    Engine,
    OpenPaths,
    OrderedKVBackend,
    RecountSnapshot,
    Space,
    check_location,
    exclusive_lock,
    local_path_from_url,
    refuse_if_in_use,
)
from airssys_storage.plugins import backend_scheme
from airssys_storage.storeid import require_engine, write_marker

from .layout import (
    COUNTER,
    DATA_END,
    DATA_TAG,
    MIGRATING_KEY,
    SCHEMA_KEY,
    SCHEMA_VERSION,
    USAGE_PREFIX,
    V1_USAGE,
    change_prefix,
    counter_key,
    encode_row,
    namespace_of_counter_key,
    namespace_prefix,
    op_key,
    op_time_prefix,
)
from .options import LevelDBOptions

__all__ = ["LevelDBBackend", "path_from_url"]

SQL_HINT = "multi-process hosts should use the SQL backend (sqlite:////ABSOLUTE/PATH or postgresql+psycopg://…)"

# The databases open in this process (repair_url() must not pull one out from under a live
# handle: RepairDB takes no lock), and those a forked child inherited from its parent.
_PATHS = OpenPaths()
#: Records per synced batch of a migration or a salvaging copy.
_PROGRESS_STEP = PROGRESS_STEP


def path_from_url(url: str) -> str:
    """The absolute filesystem path of a ``leveldb:///absolute/path`` URL."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigurationError(f"leveldb URL {url!r} is invalid ({exc}); write leveldb:///absolute/path") from None
    if backend_scheme(url) != "leveldb":
        raise ConfigurationError(f"{url!r} is not a leveldb:// URL")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"leveldb URL {url!r} has a query or fragment; put options in backend_options instead")
    return local_path_from_url(url, "leveldb", parts, unquote(parts.path))


class _Snapshot(RecountSnapshot):
    """A LevelDB snapshot: the data and the counters of one moment."""

    def __init__(self, db: Any) -> None:
        self._snapshot = db.snapshot()

    def rows(self) -> Iterable[tuple[bytes, bytes]]:
        return self._snapshot.iterator(start=DATA_TAG, stop=DATA_END, verify_checksums=True, fill_cache=False)  # type: ignore[no-any-return]

    def counters(self) -> Iterable[tuple[bytes, bytes]]:
        return self._snapshot.iterator(prefix=USAGE_PREFIX, verify_checksums=True, fill_cache=False)  # type: ignore[no-any-return]

    def close(self) -> None:
        self._snapshot.close()


class LevelDBEngine(Engine):
    """The :class:`~airssys_storage.kvengine.Engine` of one ``plyvel.DB`` (the layout: :mod:`.layout`)."""

    product = "LevelDB"
    scheme = "leveldb"
    data_offset = len(DATA_TAG)

    def __init__(self, path: str, db: Any, options: LevelDBOptions) -> None:
        super().__init__(path)
        self.db = db
        self.options = options
        self._verify = options.verify_checksums
        if options.sync:
            self.put = functools.partial(db.put, sync=True)  # type: ignore[method-assign]
            self._batch: Any = db.write_batch(sync=True)
        else:
            self.put = db.put  # type: ignore[method-assign]
            # One batch, cleared and reused per commit (under the lock): saves an allocation per write.
            self._batch = db.write_batch()

    def space(self, namespace: str) -> Space:
        prefix = namespace_prefix(namespace)
        return Space(
            namespace,
            prefix,
            b"",
            counter_key(namespace),
            op_key(namespace, ""),
            op_time_prefix(namespace),
            change_prefix(namespace),
        )

    def view(self, space: Space) -> Any:
        # A prefixed view strips the prefix from listed keys in C.
        return self.db.prefixed_db(space.prefix)

    def namespace_of_counter(self, key: bytes) -> str:
        return namespace_of_counter_key(key)

    def read(self, data_key: bytes) -> bytes | None:
        return self.db.get(data_key, verify_checksums=self._verify)  # type: ignore[no-any-return]

    def read_many(self, data_keys: list[bytes]) -> list[bytes | None]:
        verify = self._verify
        with self.db.snapshot() as snapshot:
            get = snapshot.get
            return [get(key, verify_checksums=verify) for key in data_keys]

    def items(self, space: Space, start: bytes, end: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        return space.view.iterator(start=start, stop=end, verify_checksums=self._verify)  # type: ignore[no-any-return]

    def keys(self, space: Space, start: bytes, end: bytes | None, limit: int | None) -> list[bytes]:
        keys = space.view.iterator(start=start, stop=end, include_value=False, verify_checksums=self._verify)
        return list(keys if limit is None else islice(keys, limit))

    def get_counter(self, key: bytes) -> bytes | None:
        return self.db.get(key)  # type: ignore[no-any-return]

    def counters(self) -> Iterable[tuple[bytes, bytes]]:
        return self.db.iterator(prefix=USAGE_PREFIX)  # type: ignore[no-any-return]

    def get_op(self, key: bytes) -> bytes | None:
        return self.db.get(key)  # type: ignore[no-any-return]

    def op_times(self, start: bytes, stop: bytes, limit: int) -> list[bytes]:
        with contextlib.closing(self.db.iterator(start=start, stop=stop, include_value=False)) as keys:
            return list(islice(keys, limit))

    def changes(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self.db.iterator(start=start, stop=stop, verify_checksums=self._verify)  # type: ignore[no-any-return]

    def last_change(self, start: bytes, stop: bytes) -> tuple[bytes, bytes] | None:
        with contextlib.closing(self.db.iterator(start=start, stop=stop, reverse=True)) as found:
            return next(found, None)

    def snapshot(self) -> RecountSnapshot:
        return _Snapshot(self.db)

    def put(self, data_key: bytes, record: bytes) -> None:  # replaced per instance in __init__
        self.db.put(data_key, record)

    def batch(self, sync: bool = False) -> Any:
        if sync:
            return self.db.write_batch(sync=True)
        batch = self._batch
        batch.clear()
        return batch

    def put_counter(self, batch: Any, key: bytes, record: bytes) -> None:
        batch.put(key, record)

    def delete_counter(self, batch: Any, key: bytes) -> None:
        batch.delete(key)

    def put_op(self, batch: Any, key: bytes, record: bytes, time_key: bytes) -> None:
        batch.put(key, record)
        batch.put(time_key, b"")

    def delete_op(self, batch: Any, key: bytes | None, time_key: bytes) -> None:
        batch.delete(time_key)
        if key is not None:
            batch.delete(key)

    def put_change(self, batch: Any, key: bytes, record: bytes) -> None:
        batch.put(key, record)

    def delete_change(self, batch: Any, key: bytes) -> None:
        batch.delete(key)

    def put_with_change(self, data_key: bytes, record: bytes, change_key: bytes, change: bytes) -> None:
        batch = self._batch  # what batch() gives, in one call instead of four
        batch.clear()
        try:
            batch.put(data_key, record)
            batch.put(change_key, change)
            batch.write()
        except BaseException:
            batch.clear()
            raise

    def write(self, batch: Any, sync: bool = False) -> None:
        batch.write()  # a synced batch was made synced (see batch())

    def discard(self, batch: Any) -> None:
        self._batch.clear()

    def is_error(self, exc: BaseException) -> bool:
        return isinstance(exc, plyvel.Error)

    def is_corruption(self, exc: BaseException) -> bool:
        return isinstance(exc, plyvel.CorruptionError)

    def error(self, action: str, exc: BaseException) -> StorageError:
        return _error(self.path, action, exc)

    def repair_hint(self) -> str:
        return _repair_hint(self.path)

    def forked_message(self) -> str:
        return _forked_message(self.path)

    def close(self) -> None:
        self.db.close()


class LevelDBBackend(OrderedKVBackend):
    """Namespaced rows in one LevelDB database, counters and operation ids in the same write batches."""

    name = "leveldb"
    url_schemes = ("leveldb",)
    capabilities = Capabilities(persistent=True, multi_process=False, repair=True, change_feed=True)
    Options = LevelDBOptions

    def __init__(self, path: str, db: Any, options: LevelDBOptions) -> None:
        super().__init__(path, LevelDBEngine(path, db, options), options, _PATHS)
        if options.verify_checksums:
            self.get = self._get_verified  # type: ignore[method-assign]

    # -- opening ---------------------------------------------------------------
    @classmethod
    def open(cls, url: str, options: LevelDBOptions | Mapping[str, Any]) -> LevelDBBackend:
        """Open the database at *url*; *options* as :meth:`parse_options` gives them (a plain mapping is parsed)."""
        opts: LevelDBOptions = cls.parse_options(options)
        path = path_from_url(url)
        db = _open_db(path, opts)
        try:
            _check_schema(db, path)
            write_marker(path, "leveldb")
        except BaseException:
            db.close()
            raise
        return cls(path, db, opts)

    @classmethod
    def exists(cls, url: str, options: Any) -> bool | None:
        """Whether the database directory exists and holds anything (an empty directory is no store yet)."""
        path = path_from_url(url)
        require_engine(path, "leveldb")
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
        require_engine(path, "leveldb")
        real = os.path.realpath(path)
        with _PATHS.lock:
            if real in _PATHS.open:
                raise ConfigurationError(
                    f"cannot repair the LevelDB database at {path} while this process has it open; "
                    "call repair() on the open backend, or close it first"
                )
        lost_before = _lost_files(path)
        with exclusive_lock(path, "LevelDB"):
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

    def stats(self) -> dict[str, Any]:
        totals = self.counter_totals()
        try:
            disk = self._db.approximate_size(b"", DATA_END)
            memory = self._db.get_property(b"leveldb.approximate-memory-usage")
        except Exception as exc:
            self._fail("read from", exc)
        return {
            "path": self.path,
            "schema_version": SCHEMA_VERSION,
            **totals,
            "approximate_disk_bytes": disk,
            "approximate_memory_bytes": int(memory) if memory else None,
            "options": self.options.as_dict(),
        }

    def repair(self) -> dict[str, Any]:
        """Close, repair the files as :meth:`repair_url` does, reopen and recount the usage counters."""
        with self._lock:
            self._engine.close()
            self._bind(self._closed())
            dropped = _repair_files(self.path, self.options)
            self._bind(LevelDBEngine(self.path, _open_db(self.path, self.options), self.options))
        return {**self.recount(), "records_dropped": dropped}


# -- helpers --------------------------------------------------------------------


def _forked_message(path: str) -> str:
    return (
        f"the LevelDB database at {path} was opened by the parent of this forked process, and a forked "
        "child cannot use it (LevelDB allows one process per database, and this process inherited the "
        "parent's lock): open the store only in the process that uses it, in a process that did not inherit "
        f"it (e.g. multiprocessing's 'spawn' start method), or {SQL_HINT}"
    )


def _message(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


def _error(path: str, action: str, exc: BaseException) -> StorageError:
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
    check_location(path, "LevelDB", {"LOCK", "LOG", "LOG.old"}.__contains__, _refuse_if_in_use, _repair_hint(path))


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
    require_engine(path, "leveldb")
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
    if real in _PATHS.forked:
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
    refuse_if_in_use(path, "LevelDB", _PATHS, _in_use)


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
