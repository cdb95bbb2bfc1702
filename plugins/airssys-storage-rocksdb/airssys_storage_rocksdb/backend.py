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
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, NoReturn
from urllib.parse import parse_qsl, unquote, urlsplit

try:
    import rocksdict
except ImportError as _exc:  # the plugin still registers; opening a store names the fix
    ROCKSDICT_MISSING: ImportError | None = _exc
else:
    ROCKSDICT_MISSING = None

from airssys_storage import Capabilities, ConfigurationError, InternalError, StorageError, StoreDamaged, VerifyReport
from airssys_storage.backend import key_successor, operator_command
from airssys_storage.files import make_private_dirs
from airssys_storage.kvengine import (
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
from airssys_storage.storeid import MARKER, detect_engine, require_engine, write_marker

from .layout import (
    COLUMN_FAMILIES,
    COUNTERS_CF,
    META_CF,
    OP_TIMES_CF,
    OPS_CF,
    SCHEMA_KEY,
    SCHEMA_VERSION,
    change_prefix,
    encode_namespace,
)
from .options import RocksDBOptions

__all__ = ["RocksDBBackend", "parse_url", "path_from_url"]

#: The values of the URL's ``mode`` query parameter.
READ_WRITE = "read-write"
READ_ONLY = "read-only"

SQL_HINT = "multi-process hosts should use the SQL backend (sqlite:////ABSOLUTE/PATH or postgresql+psycopg://…)"
_READ_ONLY_HINT = "operator commands can read it meanwhile with --url 'rocksdb:///PATH?mode=read-only'"

# The databases open read-write in this process (repair_url() must not pull one out from
# under a live handle), and those a forked child inherited from its parent.
_PATHS = OpenPaths()
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
    return local_path_from_url(url, "rocksdb", parts, unquote(parts.path)), mode


def path_from_url(url: str) -> str:
    """The absolute filesystem path of a ``rocksdb:///absolute/path`` URL."""
    return parse_url(url)[0]


class _Snapshot(RecountSnapshot):
    """The data and the counters at one sequence number (taken together under the write lock)."""

    def __init__(self, db: Any, counters: Any) -> None:
        self._data = db.snapshot()
        self._counters = counters.snapshot()
        self._read = rocksdict.ReadOptions()
        self._read.set_verify_checksums(True)

    def rows(self) -> Iterable[tuple[bytes, bytes]]:
        return self._data.items(read_opt=self._read)  # type: ignore[no-any-return]

    def counters(self) -> Iterable[tuple[bytes, bytes]]:
        return self._counters.items(read_opt=self._read)  # type: ignore[no-any-return]

    def close(self) -> None:
        del self._data, self._counters


def _bounded(lower: bytes, upper: bytes) -> Any:
    """Read options limiting an iterator to ``lower <= key < upper`` (keep them referenced while it iterates)."""
    read = rocksdict.ReadOptions()
    read.set_iterate_lower_bound(lower)
    read.set_iterate_upper_bound(upper)
    return read


class RocksDBEngine(Engine):
    """The :class:`~airssys_storage.kvengine.Engine` of one ``rocksdict.Rdict`` (column families: :mod:`.layout`)."""

    product = "RocksDB"
    scheme = "rocksdb"
    data_offset = 0

    def __init__(self, path: str, db: Any, options: RocksDBOptions) -> None:
        super().__init__(path)
        self.db = db
        self.write_options = _write_options(options)
        self._synced = _write_options(None)
        db.set_write_options(self.write_options)
        self.put = db.put  # type: ignore[method-assign]
        self.cfs: dict[str, Any] = {name: db.get_column_family(name) for name in COLUMN_FAMILIES}
        handles = {name: db.get_column_family_handle(name) for name in COLUMN_FAMILIES}
        self._counters_cf = self.cfs[COUNTERS_CF]
        self._counters, self._ops, self._times = handles[COUNTERS_CF], handles[OPS_CF], handles[OP_TIMES_CF]
        self._meta_cf, self._meta = self.cfs[META_CF], handles[META_CF]

    def space(self, namespace: str) -> Space:
        prefix = encode_namespace(namespace)
        # Op records and retention-index entries live under the same prefix, each in its column family.
        end = key_successor(prefix) or b""
        return Space(namespace, prefix, end, namespace.encode("ascii"), prefix, prefix, change_prefix(namespace))

    def namespace_of_counter(self, key: bytes) -> str:
        return key.decode("ascii", "replace")

    def read(self, data_key: bytes) -> bytes | None:
        return self.db.get(data_key)  # type: ignore[no-any-return]

    def read_many(self, data_keys: list[bytes]) -> list[bytes | None]:
        # One MultiGet: every value at one sequence number, never half of a concurrent batch.
        return self.db.get(data_keys)  # type: ignore[no-any-return]

    def read_rows(self, data_keys: list[bytes]) -> list[bytes | None]:
        return self.db.get(data_keys)  # type: ignore[no-any-return]  # one MultiGet

    def items(self, space: Space, start: bytes, end: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        lower = space.prefix + start
        read = _bounded(lower, space.end if end is None else space.prefix + end)
        cut = slice(len(space.prefix), None)  # built once: a slice per key costs a third of the stripping
        for data_key, raw in self.db.items(from_key=lower, read_opt=read):
            yield data_key[cut], raw

    def keys(self, space: Space, start: bytes, end: bytes | None, limit: int | None) -> list[bytes]:
        lower = space.prefix + start
        read = _bounded(lower, space.end if end is None else space.prefix + end)
        keys = self.db.keys(from_key=lower, read_opt=read)
        cut = slice(len(space.prefix), None)  # built once (see items)
        return [data_key[cut] for data_key in (keys if limit is None else islice(keys, limit))]

    def get_counter(self, key: bytes) -> bytes | None:
        return self._counters_cf.get(key)  # type: ignore[no-any-return]

    def counters(self) -> Iterable[tuple[bytes, bytes]]:
        return self._counters_cf.items()  # type: ignore[no-any-return]

    def get_op(self, key: bytes) -> bytes | None:
        return self.cfs[OPS_CF].get(key)  # type: ignore[no-any-return]

    def op_times(self, start: bytes, stop: bytes, limit: int) -> list[bytes]:
        read = _bounded(start, stop)
        return list(islice(self.cfs[OP_TIMES_CF].keys(from_key=start, read_opt=read), limit))

    def changes(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        read = _bounded(start, stop)  # referenced by the generator while it iterates
        yield from self._meta_cf.items(from_key=start, read_opt=read)

    def last_change(self, start: bytes, stop: bytes) -> tuple[bytes, bytes] | None:
        read = _bounded(start, stop)
        # Backwards, rocksdict honours the upper bound but not the lower one: check it here.
        for key, record in self._meta_cf.items(backwards=True, from_key=stop, read_opt=read):
            return (key, record) if start <= key < stop else None
        return None

    def snapshot(self) -> RecountSnapshot:
        return _Snapshot(self.db, self._counters_cf)

    def put(self, data_key: bytes, record: bytes) -> None:  # replaced per instance in __init__
        self.db.put(data_key, record)

    def batch(self, sync: bool = False) -> Any:
        return rocksdict.WriteBatch(raw_mode=True)

    def put_counter(self, batch: Any, key: bytes, record: bytes) -> None:
        batch.put(key, record, self._counters)

    def delete_counter(self, batch: Any, key: bytes) -> None:
        batch.delete(key, self._counters)

    def put_op(self, batch: Any, key: bytes, record: bytes, time_key: bytes) -> None:
        batch.put(key, record, self._ops)
        batch.put(time_key, b"", self._times)

    def delete_op(self, batch: Any, key: bytes | None, time_key: bytes) -> None:
        batch.delete(time_key, self._times)
        if key is not None:
            batch.delete(key, self._ops)

    def put_change(self, batch: Any, key: bytes, record: bytes) -> None:
        batch.put(key, record, self._meta)

    def delete_change(self, batch: Any, key: bytes) -> None:
        batch.delete(key, self._meta)

    def put_with_change(self, data_key: bytes, record: bytes, change_key: bytes, change: bytes) -> None:
        batch = rocksdict.WriteBatch(raw_mode=True)  # what batch() gives, in one call instead of four
        batch.put(data_key, record)
        batch.put(change_key, change, self._meta)
        self.db.write(batch, self.write_options)

    def write(self, batch: Any, sync: bool = False) -> None:
        self.db.write(batch, self._synced if sync else self.write_options)

    def is_error(self, exc: BaseException) -> bool:
        return _is_engine_error(exc)

    def is_corruption(self, exc: BaseException) -> bool:
        return _message(exc).startswith("Corruption")

    def error(self, action: str, exc: BaseException) -> StorageError:
        return _error(self.path, action, exc)

    def repair_hint(self) -> str:
        return _repair_hint(self.path)

    def forked_message(self) -> str:
        return _forked_message(self.path)

    def handles(self) -> Sequence[Any]:
        return (self.db, *self.cfs.values())

    def close(self) -> None:
        self.db.close()


class RocksDBBackend(OrderedKVBackend):
    """Namespaced rows in one RocksDB database; counters and operation ids in column families of their own."""

    name = "rocksdb"
    url_schemes = ("rocksdb",)
    capabilities = Capabilities(persistent=True, multi_process=False, repair=True, change_feed=True)
    Options = RocksDBOptions

    def __init__(self, path: str, db: Any, options: RocksDBOptions, mode: str = READ_WRITE) -> None:
        self.mode = mode
        super().__init__(path, RocksDBEngine(path, db, options), options, _PATHS, register=mode == READ_WRITE)
        if mode == READ_ONLY:
            for name in (
                "apply",
                "put_one",
                "put_one_logged",
                "put_many",
                "compare_and_swap_one",
                "increment_one",
                "delete_one",
                "delete_range",
                "clear",
                "repair",
            ):
                setattr(self, name, self._refuse_write)

    def _refuse_write(self, *args: object, **kwargs: object) -> NoReturn:
        raise InternalError(
            f"the RocksDB database at {self.path} is open read-only (mode=read-only in its URL): it cannot be "
            "written; drop ?mode=read-only from the URL to write (only one process can write at a time)"
        )

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
            if mode == READ_WRITE:
                write_marker(path, "rocksdb")
        except BaseException:
            db.close()
            raise
        return cls(path, db, opts, mode)

    @classmethod
    def exists(cls, url: str, options: Any) -> bool | None:
        """Whether the database directory exists and holds anything (an empty directory is no store yet)."""
        path = path_from_url(url)
        require_engine(path, "rocksdb")
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
        require_engine(path, "rocksdb")
        real = os.path.realpath(path)
        with _PATHS.lock:
            if real in _PATHS.open:
                raise ConfigurationError(
                    f"cannot repair the RocksDB database at {path} while this process has it open; "
                    "call repair() on the open backend, or close it first"
                )
        with exclusive_lock(path, "RocksDB"):
            _repair_files(path, opts)
            _restore_schema(path, opts)
        backend = cls.open(url.split("?", 1)[0], opts)
        try:
            return backend.recount()
        finally:
            backend.close()

    def stats(self) -> dict[str, Any]:
        """Usage totals, the options in force and RocksDB's own properties of the data column family.

        ``estimated_keys`` (``rocksdb.estimate-num-keys``: records, including
        metadata-free overwrites not yet compacted away), ``sst_files_bytes``
        (``rocksdb.total-sst-files-size``), ``live_sst_files_bytes``,
        ``pending_compaction_bytes`` (``rocksdb.estimate-pending-compaction-bytes``),
        ``memtable_bytes`` (``rocksdb.cur-size-all-mem-tables``), ``running_compactions``.
        """
        totals = self.counter_totals()
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
            **totals,
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
            for cf in self._engine.cfs.values():
                cf.compact_range(None, None)
        except Exception as exc:
            self._fail("compact", exc)
        return {"path": self.path, "sst_files_bytes_before": before, **self.stats()["rocksdb"]}

    def verify(self, repair: bool = False, progress: Callable[[int], None] | None = None) -> VerifyReport:
        """As :meth:`OrderedKVBackend.verify`; a read-only instance refuses *repair*."""
        if repair and self.mode == READ_ONLY:
            self._refuse_write()
        return super().verify(repair, progress)

    def repair(self) -> dict[str, Any]:
        """Close, repair the files as :meth:`repair_url` does, reopen and recount the usage counters."""
        with self._lock:
            engine = self._engine
            self._bind(self._closed())
            engine.close()
            _repair_files(self.path, self.options)
            _restore_schema(self.path, self.options)
            self._bind(RocksDBEngine(self.path, _open_db(self.path, self.options, READ_WRITE), self.options))
        return self.recount()


# -- helpers --------------------------------------------------------------------


def _forked_message(path: str) -> str:
    return (
        f"the RocksDB database at {path} was opened by the parent of this forked process, and a forked "
        "child cannot use it (RocksDB allows one writer process per database, and its background threads "
        "do not exist in the child): open the store only in the process that uses it, in a process that did "
        f"not inherit it (e.g. multiprocessing's 'spawn' start method), or {SQL_HINT}"
    )


def _is_engine_error(exc: BaseException) -> bool:
    """Whether *exc* comes from RocksDB (rocksdict raises plain ``Exception`` and ``DbClosedError``)."""
    return type(exc) is Exception or (ROCKSDICT_MISSING is None and isinstance(exc, rocksdict.DbClosedError))


def _message(exc: BaseException) -> str:
    return str(exc.args[0]) if exc.args else str(exc)


def _error(path: str, action: str, exc: BaseException) -> StorageError:
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


def _restore_schema(path: str, options: RocksDBOptions) -> None:
    """After RepairDB: give a store of ours whose schema record was lost its schema version back."""
    db = _open_db(path, options, READ_WRITE)
    try:
        _check_schema(db, path, READ_WRITE, repairing=True)
    finally:
        db.close()


def _check_location(path: str) -> None:
    """Clear errors for locations RocksDB would reject with a cryptic message (or accept wrongly)."""

    def ignored(name: str) -> bool:
        return name in {"LOCK", "LOG", "IDENTITY", "rocksdict-config.json"} or name.startswith(("LOG.old", "OPTIONS-"))

    check_location(path, "RocksDB", ignored, _refuse_if_in_use, _repair_hint(path))


def require_rocksdict() -> None:
    """Raise ``invalid-config`` with the install line when rocksdict (the RocksDB binding) is missing."""
    if ROCKSDICT_MISSING is not None:
        raise ConfigurationError(
            f"the rocksdb backend needs the Python module 'rocksdict', which is not installed ({ROCKSDICT_MISSING}); "
            "install it with: pip install 'rocksdict>=0.3.23' (wheels exist for Linux, macOS and Windows)"
        )


def _open_db(path: str, options: RocksDBOptions, mode: str) -> Any:
    require_rocksdict()
    require_engine(path, "rocksdb")
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
    if real in _PATHS.forked:
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
    refuse_if_in_use(path, "RocksDB", _PATHS, _in_use)


def _check_schema(db: Any, path: str, mode: str, repairing: bool = False) -> None:
    """Check (or, on a new store, write) the schema version.

    *repairing*: RepairDB may have moved the metadata column family's only
    table to ``lost/`` while the data rows survived; a store whose marker file
    names RocksDB then gets its schema version back (the recount that follows
    rebuilds the counters), instead of being refused as not ours.
    """
    try:
        meta = db.get_column_family(META_CF)
        raw = meta.get(SCHEMA_KEY)
        if raw is None:
            with contextlib.suppress(StopIteration):
                next(iter(db.keys()))
                if repairing and detect_engine(path) == "rocksdb" and os.path.exists(os.path.join(path, MARKER)):
                    meta.put(SCHEMA_KEY, str(SCHEMA_VERSION).encode(), _write_options(None))
                    return
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
