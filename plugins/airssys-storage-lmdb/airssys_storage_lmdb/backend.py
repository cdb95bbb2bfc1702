"""The LMDB backend: ``lmdb:///absolute/path``, several processes on one store.

Commits: every write is decided by :func:`airssys_storage.planner.plan` (the
guard rule, versions, expiry, conditions, counters, op ids; see
:mod:`airssys_storage.backend`). A commit is one LMDB write transaction:
it reads the old rows, the usage record and the recorded op ids, plans, and
writes rows, usage record, op records and expiry index entries; LMDB commits
it all or nothing, also across a crash (copy-on-write pages, then the meta
page). LMDB allows one write transaction at a time across every process
that has the environment open (a robust mutex in ``lock.mdb``, released by
the kernel's robust-futex machinery when its holder dies), so the guard is
exact across processes: the 8-process quota race never overshoots. Within a
process, a lock serialises this process's write transactions (LMDB forbids
two in one environment).

Change feed (:mod:`airssys_storage.changes`): a commit of a namespace with
the feed on appends its events to the ``changes`` database in its own write
transaction, numbered from the newest record's seq read in that transaction:
LMDB's one writer at a time makes the seqs dense across processes. Readers
read the records and the log's bounds in one read transaction. Other
processes' commits wake a watcher by polling the newest seq every
``changes_poll_seconds`` (a read transaction and two cursor seeks, no
syscall); this process's commits wake it at once.

Reads run in read-only transactions, each on its own snapshot (MVCC): a
reader never waits for a writer and a writer never waits for readers, in
this or another process. Nothing is cached between calls: another process
may commit at any moment.

Map size: LMDB maps the data file into memory with a fixed size. A commit
that runs out of it (``MDB_MAP_FULL``) is aborted, the map is doubled (up
to ``max_map_size``) and the commit runs again, from the start, in a new
write transaction, so the caller never sees it; at the ceiling it is an
``internal-error`` naming the option. Changing the map size needs no
transaction of this process open, so every read registers in a deque that a
resize waits to drain (an append and a pop: atomic under the GIL, and unlike
a list's, allocating nothing). Another process that sees the data outgrow its own map
(``MDB_MAP_RESIZED``) adopts the new size the same way and retries.

Stale readers: a process killed while reading leaves its slot in the reader
table, which would pin old pages forever (the file grows) and, once every
slot is taken, refuse every read. :meth:`LMDBBackend.open` runs LMDB's
``reader_check`` (which frees the slots of dead processes) and so does any
read that finds the table full, before it retries.

Fork: LMDB forbids using an environment in a forked child (its locks belong
to the parent, and the child would share the parent's reader slots), and
the binding refuses to open the same files twice in one process, so a
forked child cannot reopen the store either. An at-fork hook
(:mod:`airssys_storage.forking`) swaps the inherited environment for a
stand-in that refuses every call with a clear error; start workers with
multiprocessing's ``spawn`` method, or open the store after forking.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar
from urllib.parse import unquote, urlsplit

try:
    import lmdb
except ImportError as _exc:  # the plugin still registers; opening a store names the fix
    LMDB_MISSING: ImportError | None = _exc
else:
    LMDB_MISSING = None

import airssys_storage.changes as changelog
from airssys_storage import (
    Capabilities,
    ConfigurationError,
    InternalError,
    InvalidArgument,
    StorageBackend,
    StorageError,
    StoreDamaged,
    Usage,
    VerifyReport,
)
from airssys_storage.backend import BadKey, BadRow, key_problems, operator_command, verify_report
from airssys_storage.changes import (
    TRIM_STEP,
    ChangeBatch,
    ChangeRecord,
    Pending,
)
from airssys_storage.files import make_private_dirs
from airssys_storage.forking import ForkAware, track
from airssys_storage.kvengine import (
    CHANGE,
    Closed,
    OpenPaths,
    decode_change,
    encode_change,
    local_path_from_url,
    recorded_results,
)
from airssys_storage.planner import MAX_VERSION, KeyState, Plan, SpaceState, Write, WriteKind, plan
from airssys_storage.plugins import backend_scheme
from airssys_storage.storeid import MARKER, require_engine, write_marker

from .layout import (
    COUNTER,
    DATABASES,
    NO_EXPIRY,
    OP_RESULT,
    OP_TIME,
    ROW,
    SCHEMA_KEY,
    SCHEMA_VERSION,
    TIME,
    namespace_prefix,
)
from .options import LMDBOptions

__all__ = ["LMDBBackend", "path_from_url"]

T = TypeVar("T")

#: What :meth:`LMDBBackend.verify` checks (shown in its report).
_VERIFY_CHECKS = ("usage counters", "row headers", "expiry index", "every record read through LMDB's B-trees")
#: How a usage record that cannot be decoded shows in a verify report.
_BAD = Usage(-1, -1)
#: Keys recounted between two progress reports.
_PROGRESS_STEP = 10_000
#: Recorded operations older than the retention dropped per commit that records one (bounds its cost).
_OP_GC_STEP = 64
#: The longest component id (``COMPONENT_ID_PATTERN``): 63 ASCII characters.
_MAX_COMPONENT_ID = 63
_HEADER = ROW.size
_new = tuple.__new__
#: The expiry field of a row (bytes 8..16 of its header), to compare with NO_EXPIRY.
_EXPIRY = slice(8, _HEADER)
#: A read that must take the slow path (a resize in progress, an LMDB error to handle).
_SLOW: Any = object()
_PUT, _DELETE, _INCREMENT, _TOUCH, _SWEEP, _RECORD = WriteKind  # in definition order

# The environments open in this process, by real path: the binding refuses to open the same files
# twice in one process (LMDB's locks belong to the process), so every backend on a path shares one.
_open: dict[str, _Environment] = {}
# The lock of _open, and the paths (and environments) a forked child inherited from its parent.
_PATHS = OpenPaths()


def path_from_url(url: str) -> str:
    """The absolute filesystem path (the environment's directory) of a ``lmdb:///absolute/path`` URL."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigurationError(f"lmdb URL {url!r} is invalid ({exc}); write lmdb:///absolute/path") from None
    if backend_scheme(url) != "lmdb":
        raise ConfigurationError(f"{url!r} is not a lmdb:// URL")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"lmdb URL {url!r} has a query or fragment; put options in backend_options instead")
    return local_path_from_url(url, "lmdb", parts, unquote(parts.path))


def require_lmdb() -> None:
    """Raise ``invalid-config`` with the install line when the ``lmdb`` binding is missing."""
    if LMDB_MISSING is not None:
        raise ConfigurationError(
            f"the lmdb backend needs the Python module 'lmdb', which is not installed ({LMDB_MISSING}); "
            "install it with: pip install 'lmdb>=1.4'"
        )


def _closed(path: str) -> Closed:
    """The stand-in for the environment after close(): any use is a clear error, at no cost before."""
    return Closed(f"the LMDB store at {path} is closed", path)


def _forked_message(path: str) -> str:
    return (
        f"the LMDB store at {path} was opened by the parent of this forked process, and a forked child can "
        "neither use nor reopen it (LMDB's locks and reader slots belong to the process that opened it): "
        "open the store only in a process that did not inherit it (e.g. multiprocessing's 'spawn' start "
        "method), or open it after forking"
    )


class _Environment(ForkAware):
    """One LMDB environment of this process, shared by every backend open on its path."""

    def __init__(self, path: str, real: str, env: Any, options: LMDBOptions, cleared: int) -> None:
        self.path = path
        self.real = real
        self.env: Any = env
        self.options = options
        self.data, self.usage, self.ops, self.op_times, self.expiry, self.meta, self.changes = _open_databases(
            env, path
        )
        #: One write transaction at a time in this process; held while the map is resized.
        self.lock = threading.Lock()
        #: One entry per read transaction running now (append and pop are atomic under the GIL; a
        #: deque, unlike a list, allocates nothing when it goes from empty to one entry and back).
        self.active: deque[None] = deque()
        #: Set while the map is resized: new reads wait for the lock.
        self.resizing = False
        #: Backends holding this environment.
        self.refs = 1
        #: Stale reader slots freed by reader_check since the open.
        self.cleared = cleared
        #: Map growths done by this process.
        self.growths = 0
        #: Map sizes this process adopted from another one (after ``MDB_MAP_RESIZED``).
        self.adopted = 0
        track(self)

    def after_fork_in_child(self) -> None:
        """Swap the inherited environment for the refusing stand-in (see the module docs)."""
        env = self.env
        # Never close or free it here: closing would abort the parent's transactions, whose
        # reader slots live in shared memory (the extra reference keeps even shutdown from it).
        _PATHS.inherit(self.real, () if isinstance(env, Closed) else (env,))
        _open.pop(self.real, None)
        self.lock = threading.Lock()
        self.active = deque()
        self.resizing = False
        self.env = Closed(_forked_message(self.path), self.path)


def _open_databases(env: Any, path: str) -> tuple[Any, ...]:
    """Open (creating) the named databases and check the schema version, in one write transaction."""
    with env.begin(write=True) as txn:
        dbs = tuple(env.open_db(name, txn=txn, create=True) for name in DATABASES)
        meta, data = dbs[DATABASES.index(b"meta")], dbs[0]
        raw = txn.get(SCHEMA_KEY, db=meta)
        if raw is None:
            with txn.cursor(db=data) as cursor:
                if cursor.first():
                    raise ConfigurationError(
                        f"the LMDB store at {path} was not written by airssys-storage (it has no schema "
                        "version); refusing to use it: point the URL at a new path"
                    )
            txn.put(SCHEMA_KEY, str(SCHEMA_VERSION).encode(), db=meta)
        elif not raw.isdigit():
            raise StoreDamaged(f"the LMDB store at {path} has a corrupted schema version {raw!r}; restore a backup")
        elif int(raw) > SCHEMA_VERSION:
            raise ConfigurationError(
                f"the LMDB store at {path} has schema version {int(raw)}, newer than version {SCHEMA_VERSION} "
                "that this airssys-storage-lmdb understands; upgrade airssys-storage-lmdb"
            )
    return dbs


def _acquire(path: str, options: LMDBOptions) -> _Environment:
    """The environment of *path* in this process, opened on first use (see :data:`_open`)."""
    require_lmdb()
    real = os.path.realpath(path)
    with _PATHS.lock:
        if real in _PATHS.forked:
            raise InternalError(_forked_message(path))
        shared = _open.get(real)
        if shared is not None:
            if shared.options != options:
                raise ConfigurationError(
                    f"the LMDB store at {path} is already open in this process with other backend_options "
                    f"({shared.options.as_dict()}); LMDB allows one environment per process: open it with the "
                    "same options, or share one StorageManager"
                )
            shared.refs += 1
            return shared
        require_engine(path, "lmdb")
        _check_location(path)
        try:
            make_private_dirs(path)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the LMDB store directory {path}: {exc.strerror or exc}; "
                "check the permissions of its parent directory"
            ) from None
        try:
            env = lmdb.open(path, subdir=True, max_dbs=len(DATABASES), mode=0o600, **options.environment_kwargs())
        except lmdb.Error as exc:
            message = _message(exc)
            if isinstance(exc, lmdb.ReadersFullError):
                raise InternalError(
                    f"cannot open the LMDB store at {path}: every reader slot is taken ({message}); processes "
                    "that still have the store open free the slots of dead ones on their next read that needs "
                    f"a slot, and a store no process has open starts with a fresh table: raise max_readers "
                    f"(now {options.max_readers}) and restart the processes using {path}"
                ) from None
            if "already open in this process" in message:
                raise ConfigurationError(
                    f"the LMDB store at {path} is already open in this process outside airssys-storage; "
                    "close that environment first (LMDB allows one per process)"
                ) from None
            raise _error(path, "open", exc) from None
        try:
            cleared = env.reader_check()
            shared = _Environment(path, real, env, options, cleared)
            write_marker(path, "lmdb")
        except lmdb.Error as exc:
            env.close()
            raise _error(path, "open", exc) from None
        except BaseException:
            env.close()
            raise
        _open[real] = shared
        return shared


def _release(shared: _Environment) -> None:
    """Drop one backend's hold of *shared*; the last one closes the environment."""
    with _PATHS.lock:
        shared.refs -= 1
        if shared.refs > 0:
            return
        if _open.get(shared.real) is shared:
            del _open[shared.real]
    with shared.lock:
        env = shared.env
        shared.env = _closed(shared.path)
        if not isinstance(env, Closed):
            env.close()


def _check_location(path: str) -> None:
    """Clear errors for locations LMDB would reject with a cryptic message (or accept wrongly)."""
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise ConfigurationError(
            f"cannot open the LMDB store at {path}: its parent directory {parent} does not exist or is not a "
            "directory; create it first (the backend creates only the store's own directory)"
        )
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigurationError(f"cannot open the LMDB store at {path}: it is a file, not an LMDB store directory")
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "data.mdb")):
        if {name for name in os.listdir(path) if not name.startswith(MARKER)} - {"lock.mdb"}:
            raise ConfigurationError(
                f"cannot open an LMDB store at {path}: the directory is not empty and holds no LMDB store; "
                "point the URL at a new path or an existing store"
            )


class _Space:
    """One namespace: its key prefix in the data and index databases, its usage key and listing bound."""

    __slots__ = ("name", "namespace", "op_prefix", "prefix", "stop")

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.prefix = namespace_prefix(namespace)
        #: The prefix of its op records (in ``ops``): the same.
        self.op_prefix = self.prefix
        #: The key of its usage record.
        self.name = namespace.encode("ascii")
        #: The first key after every key of the namespace (the prefix's last byte is ASCII).
        self.stop = self.prefix[:-1] + bytes([self.prefix[-1] + 1])


class LMDBBackend(StorageBackend):
    """Namespaced rows in one LMDB environment; usage, op ids and expiry index in the same write transactions."""

    name = "lmdb"
    url_schemes = ("lmdb",)
    capabilities = Capabilities(persistent=True, multi_process=True, repair=True, change_feed=True)
    Options = LMDBOptions

    def __init__(self, path: str, shared: _Environment, options: LMDBOptions) -> None:
        self.path = path
        self.options = options
        self._shared = shared
        self._spaces: dict[str, _Space] = {}
        self._closed = False

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(cls, url: str, options: LMDBOptions | Mapping[str, Any]) -> LMDBBackend:
        """Open (creating) the store at *url*; *options* as :meth:`parse_options` gives them (a mapping is parsed).

        Frees the reader slots of dead processes (``reader_check``). A second
        open of the same path in this process shares the first one's
        environment (LMDB allows one per process) and must use the same options.
        """
        opts: LMDBOptions = cls.parse_options(options)
        path = path_from_url(url)
        return cls(path, _acquire(path, opts), opts)

    @classmethod
    def exists(cls, url: str, options: Any) -> bool | None:
        """Whether the store's data file exists."""
        path = path_from_url(url)
        require_engine(path, "lmdb")
        return os.path.isfile(os.path.join(path, "data.mdb"))

    @classmethod
    def repair_url(cls, url: str, options: LMDBOptions | Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Recount every usage counter and rebuild the expiry index of the store at *url* (see :meth:`recount`).

        LMDB has no salvage tool for a damaged data file (its copy-on-write
        B-trees are never damaged by a crash; only a disk or a tool writing
        around LMDB can damage them): a store that cannot be read is
        reported with the advice to restore a backup.
        """
        backend = cls.open(url, options or {})
        try:
            return backend.recount()
        finally:
            backend.close()

    def check_limits(self, max_key_bytes: int, max_value_bytes: int) -> None:
        """Refuse a ``max_key_bytes`` above what LMDB's key size limit leaves after the prefixes."""
        try:
            limit = self._shared.env.max_key_size() - 1 - _MAX_COMPONENT_ID - TIME.size
        except lmdb.Error as exc:
            self._fail("read from", exc)
        if max_key_bytes > limit:
            raise ConfigurationError(
                f"max_key_bytes = {max_key_bytes} is more than the lmdb backend can store: LMDB keys hold at "
                f"most {limit + 1 + _MAX_COMPONENT_ID + TIME.size} bytes, of which the component id and an expiry "
                f"take up to {1 + _MAX_COMPONENT_ID + TIME.size}; set max_key_bytes to {limit} or less"
            )

    # -- transactions --------------------------------------------------------------

    def _space(self, namespace: str) -> _Space:
        space = self._spaces.get(namespace)
        if space is None:
            space = self._spaces.setdefault(namespace, _Space(namespace))
        return space

    def _read(self, body: Callable[[Any], T]) -> T:
        """``body(txn)`` in a read-only transaction (registered, so that a resize waits for it)."""
        shared = self._shared
        full = False
        while True:
            active = shared.active
            active.append(None)
            resized = False
            try:
                if not shared.resizing:
                    txn = shared.env.begin()
                    try:
                        return body(txn)
                    finally:
                        txn.abort()
            except lmdb.MapResizedError:
                resized = True  # another process grew the map beyond ours: adopt its size (below), retry
            except lmdb.ReadersFullError as exc:
                if full:
                    raise self._readers_full(exc) from None
                full = True
                self._reader_check()  # free the slots of dead processes, retry
                continue
            except lmdb.Error as exc:
                self._fail("read from", exc)
            finally:
                active.pop()
            if resized:
                self._adopt()
            else:  # a resize of this process is running: wait for it to end
                with shared.lock:
                    pass

    def _commit(self, body: Callable[[Any], T]) -> T:
        """``body(txn)`` in a write transaction, committed; retried from the start when the map must grow."""
        shared = self._shared
        shared.lock.acquire()
        try:
            full = False
            while True:
                try:
                    txn = shared.env.begin(write=True)
                except lmdb.MapResizedError:
                    self._resize(0)
                    continue
                except lmdb.ReadersFullError as exc:
                    if full:
                        raise self._readers_full(exc) from None
                    full = True
                    self._cleared(shared.env.reader_check())
                    continue
                try:
                    result = body(txn)
                    txn.commit()
                except lmdb.MapFullError:
                    txn.abort()
                    self._grow()
                    continue
                except BaseException:
                    txn.abort()
                    raise
                return result
        except lmdb.BadValsizeError as exc:
            raise InvalidArgument(
                f"a key is too long for LMDB's key size limit ({_message(exc)}); lower max_key_bytes"
            ) from None
        except lmdb.Error as exc:
            self._fail("write to", exc)
        finally:
            shared.lock.release()

    def _grow(self) -> None:
        """Double the map (up to ``max_map_size``) after ``MDB_MAP_FULL``. Call under the lock."""
        shared = self._shared
        current = shared.env.info()["map_size"]
        ceiling = self.options.max_map_size
        if current >= ceiling:
            raise InternalError(
                f"the LMDB store at {self.path} is full: its map reached max_map_size = {ceiling} bytes; raise "
                "max_map_size in backend_options (the data file grows only as data is written), or remove data"
            )
        self._resize(min(current * 2, ceiling))
        shared.growths += 1

    def _resize(self, size: int) -> None:
        """Set the map size (0: adopt the size another process set), with no read of this process running.

        Call under the lock (so no write transaction of this process is open).
        """
        shared = self._shared
        shared.resizing = True
        try:
            while shared.active:
                time.sleep(0.0001)
            shared.env.set_mapsize(size)
            if not size:
                shared.adopted += 1
        finally:
            shared.resizing = False

    def _adopt(self) -> None:
        """For a reader: wait for a resize in progress, or adopt the map size another process set."""
        shared = self._shared
        with shared.lock:
            self._resize(0)

    def _reader_check(self) -> None:
        try:
            self._cleared(self._shared.env.reader_check())
        except lmdb.Error as exc:
            self._fail("read from", exc)

    def _cleared(self, count: int) -> None:
        self._shared.cleared += count

    def _readers_full(self, exc: Exception) -> StorageError:
        return InternalError(
            f"the LMDB store at {self.path} has no free reader slot ({_message(exc)}), even after freeing those "
            f"of dead processes: raise max_readers (now {self.options.max_readers}; it takes effect when no "
            "process has the store open)"
        )

    def _fail(self, action: str, exc: Exception) -> NoReturn:
        if not isinstance(exc, lmdb.MapResizedError | lmdb.MapFullError | lmdb.ReadersFullError):
            try:
                self._reader_check()  # an error may come from a reader slot a dead process left behind
            except StorageError:
                pass
        raise _error(self.path, action, exc) from exc

    # -- reads -------------------------------------------------------------------

    def get(self, namespace: str, key: bytes) -> bytes | None:
        try:
            prefix = self._spaces[namespace].prefix
        except KeyError:
            prefix = self._space(namespace).prefix
        shared = self._shared
        active = shared.active
        active.append(None)
        try:
            # The hot path: one read transaction; anything unusual takes _read's path.
            raw: Any = _SLOW if shared.resizing else shared.env.begin(shared.data).get(prefix + key)
        except lmdb.Error:
            raw = _SLOW
        finally:
            active.pop()
        if raw is _SLOW:
            raw = self._read_row(prefix + key)
        if raw is None:
            return None
        if raw[_EXPIRY] == NO_EXPIRY:
            value: bytes = raw[_HEADER:]
            return value
        return self._value(prefix + key, raw, None)

    def _read_row(self, data_key: bytes) -> bytes | None:
        """The record of *data_key* (or ``None``) through :meth:`_read` (get's path when its own failed)."""
        return self._read(functools.partial(_get_row, data_key, self._shared.data))

    def _decode(self, data_key: bytes, raw: bytes) -> tuple[int, int | None]:
        """``(version, expires_at)`` of the record *raw* of *data_key*; damage is an error."""
        if len(raw) < _HEADER:
            namespace = data_key[1 : 1 + data_key[0]].decode("ascii", "replace")
            key = data_key[1 + data_key[0] :]
            raise StoreDamaged(
                f"the row of key {key.decode(errors='replace')!r} of component {namespace!r} in the LMDB store at "
                f"{self.path} is corrupted ({len(raw)} bytes): run "
                f"`{operator_command('verify --repair', f'lmdb://{self.path}')}` to remove it"
            )
        version, expires_at = ROW.unpack_from(raw)
        return version, expires_at or None

    def _value(self, data_key: bytes, raw: bytes, now: int | None) -> bytes | None:
        """The value of record *raw*, ``None`` if it expired (at *now*; read the clock if ``None`` and needed)."""
        _, expires_at = self._decode(data_key, raw)
        if expires_at is not None and expires_at <= (self.clock() if now is None else now):
            return None
        return raw[_HEADER:]

    def _row(self, data_key: bytes, raw: bytes, with_value: bool = False) -> KeyState:
        """The row in record *raw* (live or expired), with its value if *with_value*."""
        version, expires_at = self._decode(data_key, raw)
        return _new(KeyState, (len(raw) - _HEADER, version, expires_at, raw[_HEADER:] if with_value else None))

    def get_entry(self, namespace: str, key: bytes) -> KeyState | None:
        data_key = self._space(namespace).prefix + key
        raw = self._read(lambda txn: txn.get(data_key, db=self._shared.data))
        if raw is None:
            return None
        row = self._row(data_key, raw, with_value=True)
        if row.expires_at is not None and row.expires_at <= self.clock():
            return None
        return row

    def get_many(self, namespace: str, keys: Sequence[bytes]) -> list[bytes | None]:
        prefix = self._space(namespace).prefix

        def body(txn: Any) -> list[bytes | None]:  # one snapshot: never half of a concurrent commit
            get = txn.get
            db = self._shared.data
            return [get(prefix + key, db=db) for key in keys]

        values: list[bytes | None] = []
        now: int | None = None  # one clock reading for the whole call, taken only if a row has an expiry
        for key, raw in zip(keys, self._read(body), strict=True):
            if raw is None or raw[8:_HEADER] == NO_EXPIRY:
                values.append(None if raw is None else raw[_HEADER:])
                continue
            if now is None:
                now = self.clock()
            values.append(self._value(prefix + key, raw, now))
        return values

    def has(self, namespace: str, key: bytes) -> bool:
        return self.get(namespace, key) is not None

    def items(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        space = self._space(namespace)
        if limit <= 0:
            return []
        prefix = space.prefix
        stop = space.stop if end is None else prefix + end
        cut = len(prefix)

        def body(txn: Any) -> list[tuple[bytes, bytes]]:
            found: list[tuple[bytes, bytes]] = []
            now: int | None = None
            with txn.cursor(db=self._shared.data) as cursor:
                if not cursor.set_range(prefix + start):
                    return found
                for data_key, raw in cursor.iternext():
                    if data_key >= stop:
                        break
                    if raw[8:_HEADER] != NO_EXPIRY:
                        if now is None:
                            now = self.clock()
                        if self._value(data_key, raw, now) is None:
                            continue
                    elif len(raw) < _HEADER:
                        self._decode(data_key, raw)  # raises StoreDamaged
                    found.append((data_key[cut:], raw[_HEADER:]))
                    if len(found) == limit:
                        break
            return found

        return self._read(body)

    def keys(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[bytes]:
        space = self._space(namespace)
        if limit <= 0:
            return []
        prefix = space.prefix
        stop = space.stop if end is None else prefix + end
        cut = len(prefix)

        def body(txn: Any) -> list[bytes] | None:
            shared = self._shared
            with txn.cursor(db=shared.expiry) as index:
                if index.set_range(prefix) and index.key().startswith(prefix):
                    return None  # a row has an expiry: read the values (below)
            found: list[bytes] = []
            with txn.cursor(db=shared.data) as cursor:
                if not cursor.set_range(prefix + start):
                    return found
                for data_key in cursor.iternext(values=False):
                    if data_key >= stop:
                        break
                    found.append(data_key[cut:])
                    if len(found) == limit:
                        break
            return found

        keys = self._read(body)
        if keys is None:
            return [key for key, _ in self.items(namespace, start, end, limit)]
        return keys

    def usage(self, namespace: str) -> Usage:
        space = self._space(namespace)
        raw = self._read(lambda txn: txn.get(space.name, db=self._shared.usage))
        used, count, _ = self._unpack_counter(space.name, raw)
        return Usage(used, count)

    def _unpack_counter(self, name: bytes, raw: bytes | None) -> tuple[int, int, int]:
        if raw is None:
            return 0, 0, 0
        if len(raw) != COUNTER.size:
            raise StoreDamaged(
                f"the usage counter of component {name.decode('ascii', 'replace')!r} in the LMDB store at "
                f"{self.path} is corrupted ({len(raw)} bytes); {_repair_hint(self.path)}"
            )
        used, count, floor = COUNTER.unpack(raw)
        return used, count, floor

    # -- writes ------------------------------------------------------------------

    def apply(self, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        space = self._space(namespace)
        decided = self._commit(lambda txn: self._apply_in(txn, space, writes, limit))
        if self.feeds and decided.events and namespace in self.feeds:
            self.notify_changes(namespace)
        return decided

    def _apply_in(self, txn: Any, space: _Space, writes: Sequence[Write], limit: int | None) -> Plan:
        """Read, plan and write one commit in write transaction *txn*."""
        shared = self._shared
        counter = self._unpack_counter(space.name, txn.get(space.name, db=shared.usage))
        prefix = space.prefix
        get = txn.get
        data = shared.data
        old: list[KeyState | None] = []
        for write in writes:
            kind = write.kind
            if kind is _RECORD:  # records an op id only: the planner reads no row for it
                old.append(None)
                continue
            data_key = prefix + write.key
            raw = get(data_key, db=data)
            old.append(None if raw is None else self._row(data_key, raw, kind is _INCREMENT or kind is _TOUCH))
        now = self.clock()
        done: dict[str, int] | None = None
        stale: dict[str, int] = {}
        for write in writes:
            if write.op_id is not None:
                done = self._done_ops(txn, space, writes, now, stale)
                break
        decided = plan(space.namespace, writes, old, _new(SpaceState, counter), limit, now, done)
        self._write(txn, space, counter, decided, writes, old, now, stale)
        feeds = self.feeds
        if feeds and space.namespace in feeds and decided.events:
            self._append_changes(txn, space, changelog.plan_records(decided, feeds[space.namespace]), now)
        return decided

    def put_one(self, namespace: str, key: bytes, value: bytes, limit: int | None) -> int:
        # The hot path of set(): apply() without its generality (see _put_in), in a write
        # transaction begun and committed here. Anything LMDB refuses on the way (a full map, a
        # map another process grew, no reader slot, damage) aborts it, and the whole commit runs
        # again through _commit, which handles each case: nothing was written.
        try:
            space = self._spaces[namespace]
        except KeyError:
            space = self._space(namespace)
        shared = self._shared
        lock = shared.lock
        lock.acquire()
        try:
            txn = shared.env.begin(None, None, True)  # (db, parent, write): positional, no keyword dict
            try:
                version = self._put_in(space, key, value, limit, txn)
                txn.commit()
            except BaseException:
                txn.abort()
                raise
            return version
        except lmdb.Error:
            pass
        finally:
            lock.release()
        return self._commit(functools.partial(self._put_in, space, key, value, limit))

    def _put_in(self, space: _Space, key: bytes, value: bytes, limit: int | None, txn: Any) -> int:
        """:meth:`put_one` in write transaction *txn*; returns the new version.

        A row without expiry needs no clock (``now`` only tells live from
        expired rows) and has no expiry index entry, so the commit is the row
        and, if its size changed, the usage record. The usual cases are
        decided here as :func:`~airssys_storage.planner.plan` decides them
        (the conformance suite's differential test compares the two): an
        overwrite of a row without expiry gets the next version, and a new
        row the floor's; the usage record changes by the size difference
        (and one more row for a new one), and a same-size overwrite leaves it
        alone, so it is not even read. Anything else (a row with an expiry, a
        write the quota refuses, a version at its end) goes to the planner.
        The binding's calls take their arguments by position (a keyword
        argument costs it a dict per call).
        """
        shared = self._shared
        data = shared.data
        data_key = space.prefix + key
        raw = txn.get(data_key, None, data)
        expires_at = 0
        if raw is not None:
            if len(raw) < _HEADER:
                self._decode(data_key, raw)  # raises StoreDamaged
            old_version, expires_at = ROW.unpack_from(raw)
            size = len(raw) - _HEADER
            if not expires_at and size == len(value) and old_version < MAX_VERSION:
                # The planner's answer: the next version, no change of usage (a delta of 0,
                # which any quota accepts).
                txn.put(data_key, ROW.pack(old_version + 1, 0) + value, True, True, False, data)
                return old_version + 1  # type: ignore[no-any-return]
        name, usage = space.name, shared.usage
        used, count, floor = self._unpack_counter(name, txn.get(name, None, usage))
        if raw is None:
            version, delta, count = floor + 1, len(key) + len(value), count + 1
        else:
            version, delta = old_version + 1, len(value) - size
        if expires_at or version > MAX_VERSION or (limit is not None and delta > 0 and used + delta > limit):
            write = _new(Write, (key, _PUT, value, None, None, 0, None))
            return self._apply_in(txn, space, (write,), limit).results[0]
        txn.put(data_key, ROW.pack(version, 0) + value, True, True, False, data)
        txn.put(name, COUNTER.pack(used + delta, count, floor), True, True, False, usage)
        return version

    def _done_ops(
        self, txn: Any, space: _Space, writes: Sequence[Write], now: int, stale: dict[str, int]
    ) -> dict[str, int]:
        """The recorded results of the writes' op ids younger than the retention; older ones go to *stale*."""
        get = functools.partial(txn.get, db=self._shared.ops)
        horizon = now - self.op_retention_ms
        store = f"the LMDB store at {self.path}"
        return recorded_results(get, space, writes, horizon, stale, store, _repair_hint(self.path))

    def _write(
        self,
        txn: Any,
        space: _Space,
        counter: tuple[int, int, int],
        decided: Plan,
        writes: Sequence[Write],
        old: Sequence[KeyState | None],
        now: int,
        stale: Mapping[str, int],
        *,
        reset: bool = False,
    ) -> None:
        """Write plan *decided* (rows, expiry index, usage record, op records) in *txn*.

        *old* are the rows :func:`plan` saw for *writes*. With *reset* (clear),
        the usage record becomes zero rows and bytes whatever it said, keeping
        the plan's floor.
        """
        puts, deletes = decided.puts, decided.deletes
        if not (puts or deletes or decided.space_changed or decided.op_records or reset):
            return  # nothing changes (a delete of a missing key, a replayed op id, a failed TOUCH)
        shared = self._shared
        data, expiry = shared.data, shared.expiry
        prefix = space.prefix
        put = txn.put
        delete = txn.delete
        # The old row of each written key (a RECORD, which changes no row, names none).
        before = (
            {write.key: row for write, row in zip(writes, old, strict=True) if write.kind is not _RECORD}
            if len(writes) > 1
            else None
        )
        for key, value, version, expires_at in puts:
            row = old[0] if before is None else before[key]
            if value is None:  # TOUCH: the stored value under a new header
                assert row is not None and row.value is not None
                value = row.value
            if row is not None and row.expires_at is not None and row.expires_at != expires_at:
                delete(prefix + TIME.pack(row.expires_at) + key, db=expiry)
            if expires_at is not None and (row is None or row.expires_at != expires_at):
                put(prefix + TIME.pack(expires_at) + key, b"", db=expiry)
            put(prefix + key, ROW.pack(version, expires_at or 0) + value, db=data)
        for key in deletes:
            row = old[0] if before is None else before[key]
            if row is not None and row.expires_at is not None:
                delete(prefix + TIME.pack(row.expires_at) + key, db=expiry)
            delete(prefix + key, db=data)
        after = decided.space
        new = (0, 0, after.floor) if reset else (after.bytes, after.keys, after.floor)
        if new != counter:
            if new == (0, 0, 0):
                delete(space.name, db=shared.usage)
            else:
                put(space.name, COUNTER.pack(*new), db=shared.usage)
        if decided.op_records:
            self._record_ops(txn, space, decided.op_records, now, stale)

    def _record_ops(
        self, txn: Any, space: _Space, records: Sequence[tuple[str, int]], now: int, stale: Mapping[str, int]
    ) -> None:
        """Write the op records of a commit, and drop some older than the retention first."""
        shared = self._shared
        prefix = space.prefix
        horizon = now - self.op_retention_ms
        if horizon >= 0:
            bound = prefix + TIME.pack(horizon + 1)
            start = len(prefix) + TIME.size
            gone: list[bytes] = []
            with txn.cursor(db=shared.op_times) as cursor:
                if cursor.set_range(prefix):
                    for index_key in cursor.iternext(values=False):
                        if index_key >= bound or len(gone) == _OP_GC_STEP:
                            break
                        gone.append(index_key)
            for index_key in gone:
                txn.delete(index_key, db=shared.op_times)
                txn.delete(prefix + index_key[start:], db=shared.ops)
        for op_id, result in records:
            encoded = op_id.encode()
            if op_id in stale:  # its old record is re-used: drop its index entry, or a sweep would drop the new one
                txn.delete(prefix + TIME.pack(stale[op_id]) + encoded, db=shared.op_times)
            record = OP_TIME.pack(now) + result.to_bytes(OP_RESULT, "little", signed=True)
            txn.put(prefix + encoded, record, db=shared.ops)
            txn.put(prefix + TIME.pack(now) + encoded, b"", db=shared.op_times)

    def delete_range(
        self, namespace: str, start: bytes, end: bytes | None, *, expired_only: bool = False, limit: int | None = None
    ) -> Plan:
        space = self._space(namespace)

        def body(txn: Any) -> Plan:
            counter = self._unpack_counter(space.name, txn.get(space.name, db=self._shared.usage))
            now = self.clock()
            if expired_only:
                writes, old = self._expired_rows(txn, space, start, end, now, limit)
            else:
                writes, old = self._range_rows(txn, space, start, end, limit)
            decided = plan(namespace, writes, old, _new(SpaceState, counter), None, now)
            self._write(txn, space, counter, decided, writes, old, now, {})
            if decided.events and namespace in self.feeds:
                self._append_changes(txn, space, changelog.range_records(decided, start, end, expired_only), now)
            return decided

        decided = self._commit(body)
        if decided.events and namespace in self.feeds:
            self.notify_changes(namespace)
        return decided

    def _range_rows(
        self, txn: Any, space: _Space, start: bytes, end: bytes | None, limit: int | None
    ) -> tuple[list[Write], list[KeyState | None]]:
        """A DELETE per row with ``start <= key < end`` (at most *limit*, in key order) and the rows."""
        writes: list[Write] = []
        old: list[KeyState | None] = []
        if limit is not None and limit <= 0:
            return writes, old
        prefix = space.prefix
        stop = space.stop if end is None else prefix + end
        cut = len(prefix)
        with txn.cursor(db=self._shared.data) as cursor:
            if cursor.set_range(prefix + start):
                for data_key, raw in cursor.iternext():
                    if data_key >= stop:
                        break
                    writes.append(_new(Write, (data_key[cut:], _DELETE, b"", None, None, 0, None)))
                    old.append(self._row(data_key, raw))
                    if len(writes) == limit:
                        break
        return writes, old

    def _expired_rows(
        self, txn: Any, space: _Space, start: bytes, end: bytes | None, now: int, limit: int | None
    ) -> tuple[list[Write], list[KeyState | None]]:
        """A SWEEP per row in the range expired at *now* (at most *limit*, in key order), from the expiry index."""
        prefix = space.prefix
        cut = len(prefix) + TIME.size
        bound = prefix + TIME.pack(now + 1)
        keys: list[bytes] = []
        with txn.cursor(db=self._shared.expiry) as cursor:
            if cursor.set_range(prefix):
                for index_key in cursor.iternext(values=False):
                    if index_key >= bound:
                        break
                    key = index_key[cut:]
                    if start <= key and (end is None or key < end):
                        keys.append(key)
        keys.sort()
        if limit is not None:
            keys = keys[: max(limit, 0)]
        writes: list[Write] = []
        old: list[KeyState | None] = []
        for key in keys:
            raw = txn.get(prefix + key, db=self._shared.data)
            if raw is None:
                continue  # an index entry without its row: verify reports it, and repair removes it
            writes.append(_new(Write, (key, _SWEEP, b"", None, None, 0, None)))
            old.append(self._row(prefix + key, raw))
        return writes, old

    def clear(self, namespace: str) -> None:
        space = self._space(namespace)

        def body(txn: Any) -> bool:
            counter = self._unpack_counter(space.name, txn.get(space.name, db=self._shared.usage))
            writes, old = self._range_rows(txn, space, b"", None, None)
            # The planner raises the floor to the highest removed version; the counter becomes zero.
            decided = plan(namespace, writes, old, _new(SpaceState, counter), None, 0)
            self._write(txn, space, counter, decided, writes, old, 0, {}, reset=True)
            logged = bool(writes) and namespace in self.feeds
            if logged:
                self._append_changes(txn, space, changelog.clear_record(decided.space.floor), self.clock())
            return logged

        if self._commit(body):
            self.notify_changes(namespace)

    # -- change feed (airssys_storage.changes) ------------------------------------

    def _bounds_in(self, txn: Any, space: _Space) -> tuple[int, int, int]:
        """The change log's (oldest retained seq, last seq, last event's time) of *space* in *txn*."""
        prefix = space.prefix
        with txn.cursor(db=self._shared.changes) as cursor:
            if not ((cursor.set_range(space.stop) and cursor.prev()) or cursor.last()):
                return 1, 0, 0
            key = cursor.key()
            if not key.startswith(prefix):
                return 1, 0, 0
            newest = self._decode_change(space, key, cursor.value())
            cursor.set_range(prefix)
            return TIME.unpack_from(cursor.key(), len(prefix))[0], newest.seq, newest.at

    def _append_changes(self, txn: Any, space: _Space, pending: Sequence[Pending], now: int) -> None:
        """Append *pending* to the namespace's change log in write transaction *txn*, and trim it.

        LMDB's one write transaction at a time (across processes) makes the
        seqs dense: the last seq is read and the next ones written in the
        same transaction. Trims as :meth:`OrderedKVBackend._append_changes`
        (a prefix by count; every :data:`TRIM_STEP` seqs, the records older
        than the age limit), never the newest record.
        """
        if not pending:
            return
        feed = self.feeds[space.namespace]
        oldest, last, last_at = self._bounds_in(txn, space)
        at = max(now, last_at)
        prefix = space.prefix
        changes = self._shared.changes
        put, delete, pack = txn.put, txn.delete, TIME.pack
        seq = last
        for key, op, version, value, end in pending:
            seq += 1
            put(prefix + pack(seq), encode_change(key, op, version, at, value, end), db=changes)
        keep = feed.keep_from(oldest, seq)
        for gone in range(oldest, keep):
            delete(prefix + pack(gone), db=changes)
        oldest = max(oldest, keep)
        if oldest <= last and (seq // TRIM_STEP != last // TRIM_STEP or feed.retain_events < TRIM_STEP):
            cutoff = feed.age_cutoff(at)
            if cutoff is not None:
                bound = prefix + pack(last + 1)
                with txn.cursor(db=changes) as cursor:
                    found = cursor.set_range(prefix + pack(oldest))
                    while found and cursor.key() < bound and CHANGE.unpack_from(cursor.value())[2] < cutoff:
                        found = cursor.delete() and bool(cursor.key())  # delete moves to the next record

    def _decode_change(self, space: _Space, key: bytes, raw: bytes) -> ChangeRecord:
        return decode_change(key, len(space.prefix), raw, space.namespace, f"the LMDB store at {self.path}")

    def read_changes(self, namespace: str, since: int, limit: int) -> ChangeBatch:
        """The records after *since* and the bounds, all in one read transaction (one snapshot)."""
        space = self._space(namespace)
        prefix = space.prefix

        def body(txn: Any) -> ChangeBatch:
            records: list[ChangeRecord] = []
            if limit > 0:
                with txn.cursor(db=self._shared.changes) as cursor:
                    if cursor.set_range(prefix + TIME.pack(since + 1)):
                        for key, raw in cursor.iternext():
                            if not key.startswith(prefix):
                                break
                            records.append(self._decode_change(space, key, raw))
                            if len(records) == limit:
                                break
            oldest, last, _ = self._bounds_in(txn, space)
            return ChangeBatch(records, oldest, last)

        return self._read(body)

    def change_bounds(self, namespace: str) -> tuple[int, int]:
        space = self._space(namespace)
        oldest, last, _ = self._read(lambda txn: self._bounds_in(txn, space))
        return oldest, last

    # -- administration ----------------------------------------------------------

    def namespaces(self) -> list[str]:
        return sorted(ns for ns, (_, count, _) in self._counters().items() if count > 0)

    def _counters(self) -> dict[str, tuple[int, int, int]]:
        def body(txn: Any) -> dict[str, tuple[int, int, int]]:
            with txn.cursor(db=self._shared.usage) as cursor:
                return {name.decode("ascii", "replace"): self._unpack_counter(name, raw) for name, raw in cursor}

        return self._read(body)

    def stats(self) -> dict[str, Any]:
        counters = self._counters()
        shared = self._shared
        try:
            info = shared.env.info()
            stat = shared.env.stat()
            readers = shared.env.readers()
        except lmdb.Error as exc:
            self._fail("read from", exc)
        return {
            "path": self.path,
            "schema_version": SCHEMA_VERSION,
            "namespaces": sum(1 for counter in counters.values() if counter[1] > 0),
            "keys": sum(counter[1] for counter in counters.values()),
            "bytes": sum(counter[0] for counter in counters.values()),
            "map_size": info["map_size"],
            "used_pages": info["last_pgno"] + 1,
            "page_size": stat["psize"],
            "file_bytes": os.path.getsize(os.path.join(self.path, "data.mdb")),
            "reader_slots_in_use": max(0, len(readers.splitlines()) - 1),
            "max_readers": info["max_readers"],
            "stale_readers_cleared": shared.cleared,
            "map_growths": shared.growths,
            "map_sizes_adopted": shared.adopted,
            "options": self.options.as_dict(),
        }

    def verify(self, repair: bool = False, progress: Callable[[int], None] | None = None) -> VerifyReport:
        """Read every record, recount usage, check row headers and the expiry index; compare with the counters.

        Without *repair* the recount reads one snapshot, so writers are not
        held up (a snapshot's data and counters always agree: each commit
        writes both in one transaction). With *repair* it runs in one write
        transaction (every process's writers wait for it), which fixes what
        it found in the same transaction, so the fix is exact: wrong usage
        records are rewritten (the floor is kept), stored keys that break the
        key rules and rows whose header cannot be decoded are removed, rows
        with version 0 get a fresh version, and the expiry index is rebuilt
        where it disagrees with the rows. Damage LMDB reports while reading
        (a bad page) is reported in ``problems``: restore a backup.
        """
        try:
            if repair:
                return self._commit(lambda txn: self._verify_in(txn, True, progress))
            return self._read(lambda txn: self._verify_in(txn, False, progress))
        except StoreDamaged as exc:
            return VerifyReport(store=self.path, problems=(exc.message,), checks=_VERIFY_CHECKS, recounted=False)

    def _verify_in(self, txn: Any, repair: bool, progress: Callable[[int], None] | None) -> VerifyReport:
        """Recount in *txn* (a write transaction with *repair*) and fix what was found."""
        shared = self._shared
        # namespace -> [bytes, rows, highest version]
        actual: dict[str, list[int]] = {}
        bad: list[BadKey] = []
        fixes: list[tuple[BadRow, bytes, bytes]] = []  # (row, data key, new record)
        version_zero: list[tuple[str, bytes, bytes, int]] = []  # (namespace, data key, raw, bytes)
        expected_index: set[bytes] = set()
        chunk: list[tuple[str, bytes, int]] = []

        def check() -> None:
            for index, problem in key_problems([key for _, key, _ in chunk]):
                bad.append(BadKey(*chunk[index], problem))
            chunk.clear()

        pending = 0
        try:
            with txn.cursor(db=shared.data) as cursor:
                for data_key, raw in cursor:
                    size = data_key[0]
                    namespace = data_key[1 : 1 + size].decode("ascii", "replace")
                    key = data_key[1 + size :]
                    entry = actual.setdefault(namespace, [0, 0, 0])
                    if len(raw) < _HEADER:
                        used = len(key) + len(raw)
                        bad.append(BadKey(namespace, key, used, f"a malformed row header ({len(raw)} bytes)"))
                        entry[0] += used
                        entry[1] += 1
                        continue
                    version, expires_at = ROW.unpack_from(raw)
                    used = len(key) + len(raw) - _HEADER
                    entry[0] += used
                    entry[1] += 1
                    entry[2] = max(entry[2], version)
                    if expires_at:
                        expected_index.add(data_key[: 1 + size] + TIME.pack(expires_at) + key)
                    if version == 0:
                        version_zero.append((namespace, data_key, raw, used))
                    chunk.append((namespace, key, used))
                    pending += 1
                    if pending == _PROGRESS_STEP:
                        check()
                        if progress is not None:
                            progress(pending)
                        pending = 0
            check()
            if pending and progress is not None:
                progress(pending)
            stored: dict[str, Usage] = {}
            floors: dict[str, int] = {}
            with txn.cursor(db=shared.usage) as cursor:
                for name, raw in cursor:
                    namespace = name.decode("ascii", "replace")
                    if len(raw) == COUNTER.size:
                        used, count, floor = COUNTER.unpack(raw)
                        stored[namespace] = Usage(used, count)
                        floors[namespace] = floor
                    else:
                        stored[namespace] = _BAD
            with txn.cursor(db=shared.expiry) as cursor:
                indexed = set(cursor.iternext(values=False))
        except lmdb.Error as exc:
            raise StoreDamaged(str(_error(self.path, "verify", exc))) from None
        removed = {(found.namespace, found.key) for found in bad}
        for namespace, data_key, raw, used in version_zero:
            key = data_key[1 + data_key[0] :]
            if (namespace, key) in removed:
                continue
            fresh = max(actual[namespace][2], floors.get(namespace, 0)) + 1
            if fresh > MAX_VERSION:
                raise StoreDamaged(f"component {namespace!r} has no version left to give key {key!r}: restore a backup")
            actual[namespace][2] = fresh
            problem = f"version 0 is not an integer in 1..{MAX_VERSION}"
            row = BadRow(namespace, key, used, problem, f"given version {fresh}", False)
            fixes.append((row, data_key, ROW.pack(fresh, ROW.unpack_from(raw)[1]) + raw[_HEADER:]))
        # Index entries of removed rows go with them; those are not index damage.
        gone = {self._space(found.namespace).prefix + found.key for found in bad}
        missing = sorted(expected_index - indexed)
        extra = sorted(indexed - expected_index)
        problems: list[str] = []
        if (missing or extra) and not repair:
            problems.append(
                f"the expiry index of the LMDB store at {self.path} disagrees with the rows ({len(missing)} missing, "
                f"{len(extra)} extra entries): run `{operator_command('verify --repair', f'lmdb://{self.path}')}`"
            )
        usage = {ns: Usage(used, count) for ns, (used, count, _) in actual.items()}
        report = verify_report(
            self.path,
            stored,
            usage,
            problems=problems,
            bad_keys=bad,
            bad_rows=[fix[0] for fix in fixes],
            repaired=repair,
            checks=_VERIFY_CHECKS,
        )
        if not repair:
            return report
        for data_key in gone:
            txn.delete(data_key, db=shared.data)
        for _, data_key, record in fixes:
            txn.put(data_key, record, db=shared.data)
        for index_key in missing:
            txn.put(index_key, b"", db=shared.expiry)
        for index_key in extra:
            txn.delete(index_key, db=shared.expiry)
        for mismatch in report.mismatches:  # the recount, without the rows removed above; the floor is kept
            new = (mismatch.actual.bytes, mismatch.actual.keys, floors.get(mismatch.namespace, 0))
            name = mismatch.namespace.encode("ascii", "replace")
            if new == (0, 0, 0):
                txn.delete(name, db=shared.usage)
            else:
                txn.put(name, COUNTER.pack(*new), db=shared.usage)
        return report

    def recount(self) -> dict[str, Any]:
        """Recompute every usage counter and the expiry index from the rows, and write the corrected ones.

        Returns the totals and the namespaces whose stored counter was wrong
        (the shape :meth:`repair_url` reports). :meth:`verify` with
        ``repair=True`` does the work; damage it finds raises ``StoreDamaged``.
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
            "rows_fixed": [row.describe() for row in report.bad_rows],
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        shared = self._shared
        self._shared = _closed_environment(self.path)
        _release(shared)


class _ClosedEnvironment:
    """What a closed backend holds instead of its environment: every use is a clear error."""

    def __init__(self, path: str) -> None:
        self.env = _closed(path)
        self.active: deque[None] = deque()
        self.resizing = False
        self.lock = threading.Lock()
        self.data = self.usage = self.ops = self.op_times = self.expiry = self.meta = self.changes = None
        self.cleared = self.growths = self.adopted = 0


def _get_row(data_key: bytes, data: Any, txn: Any) -> bytes | None:
    """The record of *data_key* in database *data* of *txn*, or ``None``."""
    return txn.get(data_key, None, data)  # type: ignore[no-any-return]


def _closed_environment(path: str) -> Any:
    return _ClosedEnvironment(path)


# -- helpers --------------------------------------------------------------------


def _message(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


def _error(path: str, action: str, exc: Exception) -> StorageError:
    message = _message(exc)
    if isinstance(exc, lmdb.CorruptedError | lmdb.PageNotFoundError | lmdb.PanicError | lmdb.InvalidError):
        return StoreDamaged(f"the LMDB store at {path} is damaged ({message}); restore it from a backup")
    if isinstance(exc, lmdb.DiskError) or "No space left" in message:
        return InternalError(f"cannot {action} the LMDB store at {path}: the disk is full or failing ({message})")
    return InternalError(f"cannot {action} the LMDB store at {path}: {message}")


def _repair_hint(path: str) -> str:
    return (
        f"run `{operator_command('verify --repair', f'lmdb://{path}')}` (or LMDBBackend.repair_url('lmdb://{path}')); "
        "see the airssys-storage-lmdb README"
    )
