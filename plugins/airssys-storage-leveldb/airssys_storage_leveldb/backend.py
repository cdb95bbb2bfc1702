"""The LevelDB backend: ``leveldb:///absolute/path``, one process per database.

Atomicity: every commit is one LevelDB write batch holding the data changes
*and* the namespace's new usage counter, written with ``wb.write()`` only
after every change has been added, so a failure while building the batch
writes nothing (plyvel's ``with db.write_batch():`` would write the partial
batch when the block raises). LevelDB applies a batch all-or-nothing, also
across a crash: its log replay drops a batch whose record is incomplete.

Serialisation: one lock around every read-modify-write (the old value is read
to compute the quota delta), the size cache and the reused write batch. The
core takes no lock of its own (see :mod:`airssys_storage.backend`), so this
lock is what makes each commit atomic for every component and thread sharing
the backend; taken with acquire/release it costs about 0.1 µs per write.

Usage counters are cached in memory after their first read, and so are the
value sizes of recently written keys (so that a write need not read the old
value to charge its quota): LevelDB's lock file guarantees that no other
process writes this database while it is open, so neither cache can go stale.

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
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit

try:
    import plyvel
except ImportError as _exc:  # the plugin still registers; opening a store names the fix
    PLYVEL_MISSING: ImportError | None = _exc
else:
    PLYVEL_MISSING = None

from airssys_storage import (
    Capabilities,
    Change,
    ConfigurationError,
    InternalError,
    StorageBackend,
    StorageError,
    StoreDamaged,
    Usage,
    VerifyReport,
    quota_exceeded,
)
from airssys_storage.backend import BadKey, key_problems, operator_command, verify_report
from airssys_storage.files import PRIVATE_FILE_MODE, make_private_dirs
from airssys_storage.forking import ForkAware, track
from airssys_storage.plugins import backend_scheme

from .layout import (
    DATA_END,
    DATA_TAG,
    SCHEMA_KEY,
    SCHEMA_VERSION,
    USAGE,
    USAGE_PREFIX,
    namespace_of_usage_key,
    namespace_prefix,
    usage_key,
)
from .options import LevelDBOptions

__all__ = ["LevelDBBackend", "path_from_url"]

_pack_usage = USAGE.pack
#: What :meth:`LevelDBBackend.verify` checks (shown in its report).
_VERIFY_CHECKS = ("usage counters", "block checksums of every record")
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
    return os.path.normpath(path)


class _Space:
    """One namespace: its key prefix, a prefixed view for listings and its cached counter."""

    __slots__ = ("prefix", "usage", "usage_key", "view")

    def __init__(self, namespace: str, db: Any) -> None:
        self.prefix = namespace_prefix(namespace)
        self.usage_key = usage_key(namespace)
        self.bind(db)

    def bind(self, db: Any) -> None:
        """Use *db* from now on and forget the cached counter (a holder of this object reloads it)."""
        # A prefixed view strips the prefix from listed keys in C.
        self.view: Any = db if isinstance(db, _Closed) else db.prefixed_db(self.prefix)
        #: (bytes, keys), or None until first read from the database (under the write lock).
        self.usage: tuple[int, int] | None = None


class _NoSizes(dict[bytes, int]):
    """The size cache when it is switched off (``size_cache_keys = 0``): it never holds anything."""

    def __setitem__(self, key: bytes, value: int) -> None:
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
    """Namespaced keys in one LevelDB database, usage counters in the same write batches."""

    name = "leveldb"
    url_schemes = ("leveldb",)
    capabilities = Capabilities(persistent=True, multi_process=False, repair=True)

    def __init__(self, path: str, db: Any, options: LevelDBOptions) -> None:
        self.path = path
        self.options = options
        self._lock = threading.Lock()
        self._spaces: dict[str, _Space] = {}
        # Value sizes of recently written keys (-1: known absent), so that a
        # write can charge its quota delta without reading the old value.
        # Exact because no other process can write this database while it is open.
        self._sizes: dict[bytes, int] = {} if options.size_cache_keys else _NoSizes()
        self._size_limit = options.size_cache_keys
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
        self._sizes.clear()

    # -- opening ---------------------------------------------------------------

    @classmethod
    def open(cls, url: str, options: Mapping[str, Any]) -> LevelDBBackend:
        opts = LevelDBOptions.parse(options)
        path = path_from_url(url)
        db = _open_db(path, opts)
        try:
            _check_schema(db, path)
        except BaseException:
            db.close()
            raise
        return cls(path, db, opts)

    @classmethod
    def exists(cls, url: str, options: Mapping[str, Any]) -> bool | None:
        """Whether the database directory exists and holds anything (an empty directory is no store yet)."""
        path = path_from_url(url)
        try:
            return any(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            return False

    @classmethod
    def repair_url(cls, url: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Repair the database at *url*, which must not be open anywhere, and recount its usage.

        Runs LevelDB's ``RepairDB`` (plyvel's ``repair_db``): it salvages every
        readable record from the log and table files, and drops what it
        cannot read. RepairDB keeps table files whose blocks fail their
        checksum, so the records of such blocks are dropped next (and counted
        in ``records_dropped``). A file RepairDB cannot read at all is moved to
        ``PATH/lost/``: its records cannot be counted, so the report names it in
        ``files_lost`` and adds a ``warning``. Then every usage counter is
        recomputed from the data. Returns what the recount found (see :meth:`recount`).
        """
        opts = LevelDBOptions.parse(options or {})
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
        # RepairDB moves a table or log it cannot read at all into PATH/lost/: every record in it is gone.
        lost = sorted(_lost_files(path) - lost_before)
        backend = cls.open(url, options or {})
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
            value: bytes | None = self._db.get(prefix + key)
        except plyvel.Error as exc:
            self._fail("read from", exc)
        return value

    def _get_verified(self, namespace: str, key: bytes) -> bytes | None:
        """:meth:`get` when ``verify_checksums`` is on (installed on the instance at open)."""
        prefix = self._space(namespace).prefix
        try:
            value: bytes | None = self._db.get(prefix + key, verify_checksums=True)
        except plyvel.Error as exc:
            self._fail("read from", exc)
        return value

    def get_many(self, namespace: str, keys: Sequence[bytes]) -> list[bytes | None]:
        prefix = self._space(namespace).prefix
        verify = self.options.verify_checksums
        try:
            # One snapshot: every value from the same moment, never half of a concurrent batch.
            with self._db.snapshot() as snapshot:
                get = snapshot.get
                return [get(prefix + key, verify_checksums=verify) for key in keys]
        except plyvel.Error as exc:
            self._fail("read from", exc)

    def has(self, namespace: str, key: bytes) -> bool:
        return self.get(namespace, key) is not None

    def items(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        view = self._space(namespace).view
        try:
            iterator = view.iterator(start=start, stop=end, verify_checksums=self.options.verify_checksums)
            return list(islice(iterator, limit))
        except plyvel.Error as exc:
            self._fail("read from", exc)

    def keys(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[bytes]:
        view = self._space(namespace).view
        try:
            iterator = view.iterator(
                start=start, stop=end, include_value=False, verify_checksums=self.options.verify_checksums
            )
            return list(islice(iterator, limit))
        except plyvel.Error as exc:
            self._fail("read from", exc)

    def usage(self, namespace: str) -> Usage:
        space = self._space(namespace)
        counter = space.usage
        if counter is None:
            with self._lock:
                counter = self._load_usage(space)
        return Usage(*counter)

    def _load_usage(self, space: _Space) -> tuple[int, int]:
        """The counter of *space*, read from the database on first use. Call under the lock."""
        counter = space.usage
        if counter is None:
            try:
                raw = self._db.get(space.usage_key)
            except plyvel.Error as exc:
                self._fail("read from", exc)
            counter = (0, 0) if raw is None else self._unpack_usage(space.usage_key, raw)
            space.usage = counter
        return counter

    def _unpack_usage(self, key: bytes, raw: bytes) -> tuple[int, int]:
        if len(raw) != USAGE.size:
            raise StoreDamaged(
                f"the usage counter of namespace {namespace_of_usage_key(key)!r} in the LevelDB database at "
                f"{self.path} is corrupted ({len(raw)} bytes); {_repair_hint(self.path)}"
            )
        used, count = USAGE.unpack(raw)
        return used, count

    # -- writes ------------------------------------------------------------------

    def commit_one(self, namespace: str, key: bytes, value: bytes | None, limit: int | None) -> bool:
        # The hot path of set() and delete(). The lock is taken with
        # acquire() and released in ``finally``: about 0.1 µs cheaper than
        # ``with``. The size cache is updated in place, and its eviction is
        # only checked when it gains an entry.
        try:
            space = self._spaces[namespace]
        except KeyError:
            space = self._space(namespace)
        data_key = space.prefix + key
        sizes = self._sizes
        self._lock.acquire()
        try:
            cached = old_size = sizes.get(data_key)
            if old_size is None:
                old = self._db.get(data_key)
                old_size = -1 if old is None else len(old)
            if value is not None:
                new_size = len(value)
                if new_size == old_size:
                    # Same-size overwrite: the counter is unchanged, so the data
                    # record alone is the whole (atomic) commit. (Called through
                    # a local: 3.11 does not specialise a call through an
                    # instance attribute holding a bound method.)
                    put = self._put
                    put(data_key, value)
                    if cached is None:
                        self._remember(data_key, new_size)
                    return True
                if old_size < 0:
                    delta = len(key) + new_size
                    added = 1
                else:
                    delta = new_size - old_size
                    added = 0
            elif old_size < 0:
                return False
            else:
                new_size = -1
                delta = -len(key) - old_size
                added = -1
            used, count = space.usage or self._load_usage(space)
            if delta > 0 and limit is not None and used + delta > limit:
                raise quota_exceeded(namespace, used, delta, limit)
            used += delta
            count += added
            batch = self._batch
            batch.clear()
            if value is None:
                batch.delete(data_key)
            else:
                batch.put(data_key, value)
            batch.put(space.usage_key, _pack_usage(used, count))
            batch.write()
            space.usage = (used, count)
            if cached is None:
                self._remember(data_key, new_size)
            else:
                sizes[data_key] = new_size  # replaces an entry: the cache does not grow
        except plyvel.Error as exc:
            self._fail("write to", exc)
        finally:
            self._lock.release()
        return old_size >= 0

    def commit(self, namespace: str, changes: Sequence[Change], limit: int | None) -> int:
        try:
            space = self._spaces[namespace]
        except KeyError:
            space = self._space(namespace)
        prefix = space.prefix
        sizes = self._sizes
        self._lock.acquire()
        try:
            if len(sizes) + len(changes) > self._size_limit:
                sizes.clear()  # crude but O(1) per write on average, and never wrong
            get = self._db.get
            used, count = space.usage or self._load_usage(space)
            batch = self._batch
            batch.clear()
            put, delete = batch.put, batch.delete
            # The batch is only written once the guard passed: until then it
            # is scratch. The size cache learns each change as it is added
            # (cheaper than a second pass) and forgets them if anything fails.
            delta = existed = added = 0
            for key, value in changes:
                data_key = prefix + key
                old_size = sizes.get(data_key)
                if old_size is None:
                    old = get(data_key)
                    old_size = -1 if old is None else len(old)
                if value is not None:
                    size = len(value)
                    put(data_key, value)
                    if old_size < 0:
                        added += 1
                        delta += len(key) + size
                    else:
                        existed += 1
                        delta += size - old_size
                elif old_size < 0:
                    continue  # deleting a missing key changes nothing
                else:
                    size = -1
                    delete(data_key)
                    existed += 1
                    added -= 1
                    delta -= len(key) + old_size
                sizes[data_key] = size
            if not existed and not added:
                return 0
            if delta > 0 and limit is not None and used + delta > limit:
                batch.clear()
                raise quota_exceeded(namespace, used, delta, limit)
            if delta or added:
                used += delta
                count += added
                batch.put(space.usage_key, _pack_usage(used, count))
            batch.write()
            space.usage = (used, count)
        except BaseException as exc:
            for key, _ in changes:
                sizes.pop(prefix + key, None)
            if isinstance(exc, plyvel.Error):
                self._fail("write to", exc)
            raise
        finally:
            self._lock.release()
        return existed

    def _remember(self, data_key: bytes, size: int) -> None:
        """Cache the size of a value just written (-1: deleted). Call under the lock, after the write."""
        sizes = self._sizes
        if len(sizes) >= self._size_limit:
            sizes.clear()  # crude but O(1) per write on average, and never wrong
        sizes[data_key] = size

    def clear(self, namespace: str) -> None:
        space = self._space(namespace)
        prefix = space.prefix
        with self._lock:
            try:
                batch = self._batch
                batch.clear()
                for key in space.view.iterator(include_value=False):
                    batch.delete(prefix + key)
                batch.delete(space.usage_key)
                batch.write()
                batch.clear()  # do not keep a large batch alive
            except plyvel.Error as exc:
                self._fail("write to", exc)
            space.usage = (0, 0)
            self._sizes.clear()

    # -- administration ----------------------------------------------------------

    def namespaces(self) -> list[str]:
        return sorted(ns for ns, (_, count) in self._counters().items() if count > 0)

    def _counters(self) -> dict[str, tuple[int, int]]:
        try:
            return {
                namespace_of_usage_key(key): self._unpack_usage(key, raw)
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
            "namespaces": sum(1 for _, count in counters.values() if count > 0),
            "keys": sum(count for _, count in counters.values()),
            "bytes": sum(used for used, _ in counters.values()),
            "approximate_disk_bytes": disk,
            "approximate_memory_bytes": int(memory) if memory else None,
            "options": self.options.as_dict(),
        }

    def verify(self, repair: bool = False, progress: Callable[[int], None] | None = None) -> VerifyReport:
        """Read every record with its block checksum verified, recount usage, compare with the counters.

        Reads one snapshot, so writers are not held up: the data and the
        counters of a snapshot always agree (each commit writes both in one
        batch). With *repair*, each wrong counter is corrected by the
        difference the snapshot showed, under the write lock, in one synced
        batch; a correction is exact even if commits happened since the
        snapshot, since each of them changed the data and the counter alike.
        A checksum failure is reported in ``problems`` with the repair
        command (``airssys-storage repair``: LevelDB's RepairDB); a recount
        cannot fix it. A counter record that cannot be decoded shows as
        ``Usage(-1, -1)``.
        """
        while True:
            with self._lock:
                generation = self._repairs
                snapshot = self._db.snapshot()
            try:
                found = self._recount(snapshot, progress)
            finally:
                snapshot.close()
            if isinstance(found, str):
                return VerifyReport(store=self.path, problems=(found,), checks=_VERIFY_CHECKS, recounted=False)
            stored, actual, bad = found
            report = verify_report(self.path, stored, actual, bad_keys=bad, repaired=repair, checks=_VERIFY_CHECKS)
            if not (repair and (report.mismatches or report.bad_keys)):
                return report
            with self._lock:
                if self._repairs != generation:
                    continue  # another repair corrected counters since the snapshot: look again
                self._repairs += 1
                self._correct(report)
            return report

    def _recount(
        self, snapshot: Any, progress: Callable[[int], None] | None
    ) -> tuple[dict[str, Usage], dict[str, Usage], list[BadKey]] | str:
        """Stored counters, recounted usage and keys breaking the key rules in *snapshot*, or the damage found."""
        actual: dict[str, list[int]] = {}
        stored: dict[str, Usage] = {}
        bad: list[BadKey] = []
        # The keys read since the last check, (namespace, key, bytes) each: checked a chunk at a time.
        chunk: list[tuple[str, bytes, int]] = []

        def check() -> None:
            for index, problem in key_problems([key for _, key, _ in chunk]):
                bad.append(BadKey(*chunk[index], problem))
            chunk.clear()

        pending = 0
        try:
            for key, value in snapshot.iterator(start=DATA_TAG, stop=DATA_END, verify_checksums=True, fill_cache=False):
                size = key[1]
                namespace = key[2 : 2 + size].decode("ascii", "replace")
                entry = actual.setdefault(namespace, [0, 0])
                used = len(key) - 2 - size + len(value)
                entry[0] += used
                entry[1] += 1
                chunk.append((namespace, key[2 + size :], used))
                pending += 1
                if pending == _PROGRESS_STEP:
                    check()
                    if progress is not None:
                        progress(pending)
                    pending = 0
            check()
            for key, raw in snapshot.iterator(prefix=USAGE_PREFIX, verify_checksums=True, fill_cache=False):
                stored[namespace_of_usage_key(key)] = Usage(*USAGE.unpack(raw)) if len(raw) == USAGE.size else _BAD
        except plyvel.CorruptionError as exc:
            return str(_error(self.path, "verify", exc))
        except plyvel.Error as exc:
            self._fail("verify", exc)
        if pending and progress is not None:
            progress(pending)
        return stored, {ns: Usage(used, count) for ns, (used, count) in actual.items()}, bad

    def _correct(self, report: VerifyReport) -> None:
        """Delete the bad keys and add each mismatch's (actual - stored) to its live counter, in one synced batch.

        Call under the lock.
        """
        batch = self._db.write_batch(sync=True)
        corrected: list[tuple[_Space, tuple[int, int]]] = []
        removed = [self._space(found.namespace).prefix + found.key for found in report.bad_keys]
        try:
            for data_key in removed:
                batch.delete(data_key)
            for mismatch in report.mismatches:
                space = self._space(mismatch.namespace)
                if mismatch.stored == _BAD:
                    space.usage = (0, 0)  # unreadable: the snapshot's recount is the whole truth
                    base = (0, 0)
                else:
                    base = self._load_usage(space)
                    base = (base[0] - mismatch.stored.bytes, base[1] - mismatch.stored.keys)
                counter = (base[0] + mismatch.actual.bytes, base[1] + mismatch.actual.keys)
                if counter == (0, 0):
                    batch.delete(space.usage_key)
                else:
                    batch.put(space.usage_key, _pack_usage(*counter))
                corrected.append((space, counter))
            batch.write()
        except plyvel.Error as exc:
            for space, _ in corrected:
                space.usage = None
            self._fail("write to", exc)
        for data_key in removed:
            self._remember(data_key, -1)
        for space, counter in corrected:
            space.usage = counter

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
        batch.put(SCHEMA_KEY, str(SCHEMA_VERSION).encode())  # even if its own block was the damaged one
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
    if not raw.isdigit():
        raise StoreDamaged(
            f"the LevelDB database at {path} has a corrupted schema version {raw!r}; {_repair_hint(path)}"
        )
    version = int(raw)
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"the LevelDB database at {path} has schema version {version}, newer than version {SCHEMA_VERSION} "
            "that this airssys-storage-leveldb understands; upgrade airssys-storage-leveldb"
        )


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
