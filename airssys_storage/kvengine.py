"""The shared core of the embedded ordered key-value backends (LevelDB, RocksDB): one rule, one place.

A plugin supplies an engine adapter (:class:`Engine`: reads, single puts,
write batches, iterators and a snapshot over its own key layout) and the
engine-specific parts (options, open, errors, repair, stats); this module
holds everything else once: the row record (:mod:`airssys_storage.rowformat`),
the counter record (bytes, rows, version floor, rows with an expiry), the
recorded op ids and their retention index, the apply path calling
:func:`airssys_storage.planner.plan`, the single-key fast paths
(``put_one``, ``compare_and_swap_one``, ``increment_one``, ``delete_one``),
the row cache, ``delete_range``, ``clear``, ``verify`` (recount and repair)
and fork handling (:mod:`airssys_storage.forking`).

Commits: :meth:`OrderedKVBackend.apply` reads the old rows, the counter record
and the recorded op ids under one lock, plans, and writes rows, counter and
op records as one engine write batch, written only after every change has
been added, so a failure while building it writes nothing. Both engines
apply a batch all-or-nothing, also across a crash.

Serialisation: one lock around every read-plan-write and the row cache; the
core takes no lock of its own, so this lock makes each commit atomic for
every component and thread sharing the backend. It is taken with
acquire/release (about 0.1 µs cheaper than ``with``).

Caches: counter records are kept in memory after their first read, and so are
the rows (size, version, expiry — not the value) of recently written keys, so
that an overwrite learns the old state without reading it: the engines' lock
file guarantees that no other process writes the database while it is open,
so neither cache can go stale. A miss costs one ``get`` of the row.

Fork: a forked child must not use the parent's handle (two processes writing
one database lose acknowledged writes and break the counters). The at-fork
hook swaps every handle in the child for a stand-in whose every method raises
a clear error, so there is no per-operation process check.

Change feed (:mod:`airssys_storage.changes`): a namespace with the feed on
keeps its events as change records keyed ``change prefix | seq`` (big-endian,
so a range read of ``seq > since`` is one iterator; format:
:func:`encode_change`), added to the commit's own write batch, so an event is
written exactly when its data is. The log's (oldest, last, last time) is
read once per namespace and then kept in memory, like the counter record
(one process per database), and updated after each batch under the lock:
so ``last`` read under the lock never runs ahead of the data (a scan after
:meth:`OrderedKVBackend.change_bounds` sees every event up to it). Trimming
removes a prefix of the log in the same batch. Namespaces without the feed
take none of this: the routing of ``StorageBackend.enable_changes`` leaves
their hot paths untouched, and the general paths test one empty mapping.

Nothing here imports an engine binding: the adapters do.
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import functools
import operator
import os
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from itertools import repeat
from time import time_ns as _time_ns
from typing import Any, ClassVar, NamedTuple, NoReturn, TypeAlias

from .backend import (
    BadKey,
    BadRow,
    Capabilities,
    StorageBackend,
    Usage,
    VerifyReport,
    expiry_problem,
    key_problems,
    operator_command,
    verify_report,
    version_problem,
    wall_clock_ms,
)
from .changes import (
    TRIM_STEP,
    ChangeBatch,
    ChangeRecord,
    FeedConfig,
    Pending,
    clear_record,
    plan_records,
    range_records,
)
from .errors import ConfigurationError, InternalError, StorageError, StoreDamaged
from .forking import ForkAware, track
from .planner import (
    MAX_VERSION,
    KeyState,
    Plan,
    Put,
    SpaceState,
    Write,
    WriteKind,
    add_to_counter,
    plan,
    set_events,
)
from .rowformat import decode_header, encode_row
from .storeid import MARKER

__all__ = [
    "CHANGE",
    "CHANGE_SEQ",
    "COUNTER",
    "OP_RESULT",
    "OP_TIME",
    "Closed",
    "Counter",
    "Engine",
    "OpenPaths",
    "OrderedKVBackend",
    "RecountSnapshot",
    "Space",
    "check_location",
    "decode_change",
    "encode_change",
    "refuse_if_in_use",
    "exclusive_lock",
    "local_path_from_url",
    "recorded_results",
]

#: Counter value: bytes used, number of rows, version floor, rows with an expiry (little-endian u64 each).
COUNTER = struct.Struct("<QQQQ")
#: A recorded operation's time (ms, little-endian u64), followed by :data:`OP_RESULT` bytes of its result.
OP_TIME = struct.Struct("<Q")
#: Bytes of a recorded result: signed little-endian, wide enough for a u64 version and an i64 counter.
OP_RESULT = 9
_TIME = struct.Struct(">Q")
#: A row's expiry (rowformat: 8 bytes, little-endian ms) read in place from its record at an offset.
_EXPIRES_AT = struct.Struct("<Q").unpack_from
#: The seq that ends a change record's key (big-endian u64, so that keys sort by seq).
CHANGE_SEQ = struct.Struct(">Q")
#: A change record's head: op (its index in :data:`_OPS`, ``| _TAIL`` when a value or an end follows the key),
#: version, time (ms), key length (little-endian); then the key, then the value (``"set"``) or end (``"delete-range"``).
CHANGE = struct.Struct("<BQQI")
_OPS = ("set", "delete", "expire", "clear", "delete-range")
_OP_CODES = {op: code for code, op in enumerate(_OPS)}
_SET = _OP_CODES["set"]
#: Above the key of every change record of a namespace (after its change prefix): seqs stay below 2**64 - 1.
_SEQ_END = CHANGE_SEQ.pack(2**64 - 1)
_TAIL = 0x80

#: A namespace's counter record: bytes used, rows, version floor, rows with an expiry.
Counter: TypeAlias = tuple[int, int, int, int]
#: What the row cache holds for a data key: its row without the value, or ``None`` for no row.
Cached: TypeAlias = "KeyState | None"

#: What :meth:`OrderedKVBackend.verify` checks (shown in its report).
VERIFY_CHECKS = ("usage counters", "counts of rows with an expiry", "row headers", "block checksums of every record")
#: How a counter record that cannot be decoded shows in a verify report.
_BAD = Usage(-1, -1)
#: Keys recounted between two progress reports.
PROGRESS_STEP = 10_000
#: Recorded operations older than the retention dropped per commit that records one (bounds its cost).
_OP_GC_STEP = 64

# Not in the row cache (``None`` there means "no row").
_MISS: Any = object()
_new = tuple.__new__
#: Runs an iterator to its end in C (``deque(iterator, 0)``): the batch's puts without a Python loop.
_consume = deque
_PUT, _DELETE, _INCREMENT, _TOUCH, _SWEEP, _RECORD = WriteKind  # in definition order
#: The header of a row without expiry whose version is below 256, by version (rowformat: width 1).
_SHORT_HEADERS = [bytes((1, version)) for version in range(256)]  # never used for version 0
#: Whether :meth:`OrderedKVBackend.apply` may decide plain-put batches itself (tests turn it off to compare
#: that path with the planner's).
_FAST_BATCH = True
#: What the plain-put path (:meth:`OrderedKVBackend._put_rows_locked`) reads of writes and rows, as C calls.
_PLAIN_FIELDS = operator.itemgetter(1, 3, 4, 6)  # kind, expires_at, if_version, op_id
_PLAIN_PUT = (WriteKind.PUT, None, None, None)  # compared with ==, never hashed
_KEY_OF = operator.itemgetter(0)
_VALUE_OF = operator.itemgetter(2)
_SIZE_OF = operator.itemgetter(0)
_VERSION_OF = operator.itemgetter(1)
_ADD = operator.add
_NEW_ROW = functools.partial(tuple.__new__, KeyState)
_NEW_PUT = functools.partial(tuple.__new__, Put)


def op_time_key(time_prefix: bytes, time_ms: int, op_id: str) -> bytes:
    """The retention-index entry of *op_id* recorded at *time_ms* (under the namespace's time prefix)."""
    return time_prefix + _TIME.pack(time_ms) + op_id.encode()


def encode_change(key: bytes, op: str, version: int, at: int, value: bytes | None, end: bytes | None) -> bytes:
    """A change record (:data:`CHANGE`): op, version, time (ms), the key, and a ``"set"``'s value or a range's end."""
    tail = value if op == "set" else end
    head = CHANGE.pack(_OP_CODES[op] | (0 if tail is None else _TAIL), version, at, len(key))
    return head + key if tail is None else head + key + tail


def decode_change(change_key: bytes, seq_at: int, raw: bytes, namespace: str, store: str) -> ChangeRecord:
    """The :class:`~airssys_storage.changes.ChangeRecord` stored as *raw* (:func:`encode_change`) under *change_key*.

    Its seq is the big-endian u64 at offset *seq_at* of *change_key*. A record
    that cannot be decoded raises :class:`~airssys_storage.StoreDamaged`
    naming component *namespace* and *store* (e.g. "the LMDB store at /x").
    """
    try:
        (seq,) = CHANGE_SEQ.unpack_from(change_key, seq_at)
        code, version, at, size = CHANGE.unpack_from(raw)
        start = CHANGE.size
        key = raw[start : start + size]
        if len(key) != size or (code & ~_TAIL) >= len(_OPS):
            raise ValueError(f"{len(raw)} bytes that hold no event")
    except (ValueError, struct.error) as exc:
        raise StoreDamaged(
            f"a change record of component {namespace!r} in {store} is corrupted ({exc}); restore a backup, "
            "or read the component's state with resync()"
        ) from None
    op = _OPS[code & ~_TAIL]
    tail = raw[start + size :] if code & _TAIL else None
    return _new(ChangeRecord, (seq, key, op, version, at, tail if op == "set" else None, tail if op != "set" else None))


def recorded_results(
    get: Callable[[bytes], bytes | None],
    space: Any,
    writes: Sequence[Write],
    horizon: int,
    stale: dict[str, int],
    store: str,
    repair_hint: str,
) -> dict[str, int]:
    """The recorded results of the op ids of *writes* in namespace *space* recorded after *horizon* (ms).

    *get* reads a record (``op_prefix | op_id`` -> ``OP_TIME | result``);
    *space* has ``namespace`` and ``op_prefix``. Records at or before the
    horizon go to *stale* (op id -> recorded time), so that the commit re-using
    one drops its old index entry. A record of another size raises
    :class:`~airssys_storage.StoreDamaged` naming *store* and ending in *repair_hint*.
    """
    done: dict[str, int] = {}
    for write in writes:
        if write.op_id is None:
            continue
        raw = get(space.op_prefix + write.op_id.encode())
        if raw is None:
            continue
        if len(raw) != OP_TIME.size + OP_RESULT:
            raise StoreDamaged(
                f"the recorded operation {write.op_id!r} of component {space.namespace!r} in {store} is "
                f"corrupted ({len(raw)} bytes); {repair_hint}"
            )
        (recorded,) = OP_TIME.unpack_from(raw)
        if recorded > horizon:
            done[write.op_id] = int.from_bytes(raw[OP_TIME.size :], "little", signed=True)
        else:
            stale[write.op_id] = recorded
    return done


class Space:
    """One namespace: its key prefixes, the engine's view of its rows and its cached counter record."""

    __slots__ = (
        "change_prefix",
        "counter",
        "counter_key",
        "end",
        "feed",
        "namespace",
        "op_prefix",
        "op_time_prefix",
        "prefix",
        "view",
    )

    def __init__(
        self,
        namespace: str,
        prefix: bytes,
        end: bytes,
        counter_key: bytes,
        op_prefix: bytes,
        op_time_prefix: bytes,
        change_prefix: bytes = b"",
    ) -> None:
        self.namespace = namespace
        #: The prefix of every data key of the namespace.
        self.prefix = prefix
        #: The first data key after every data key of the namespace (exclusive bound of a full listing).
        self.end = end
        self.counter_key = counter_key
        #: Prefix of the namespace's op records, and of its retention-index entries.
        self.op_prefix = op_prefix
        self.op_time_prefix = op_time_prefix
        #: What the engine lists the namespace's rows through (see :meth:`Engine.view`).
        self.view: Any = None
        #: (bytes, keys, floor, expiring), or None until first read from the database (under the write lock).
        self.counter: Counter | None = None
        #: The prefix of the namespace's change records (``change_prefix | seq``, :data:`CHANGE_SEQ`).
        self.change_prefix = change_prefix
        #: The change log's (oldest retained seq, last seq, last event's time), or None until first read
        #: (under the write lock; kept equal to what the database holds whenever the lock is free).
        self.feed: tuple[int, int, int] | None = None


class RecountSnapshot(abc.ABC):
    """One consistent view of the data and the counters for :meth:`OrderedKVBackend.verify`."""

    @abc.abstractmethod
    def rows(self) -> Iterable[tuple[bytes, bytes]]:
        """Every ``(data key, record)``, block checksums verified, in key order."""

    @abc.abstractmethod
    def counters(self) -> Iterable[tuple[bytes, bytes]]:
        """Every ``(counter key, counter record)``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the snapshot."""


class Engine(abc.ABC):
    """The adapter of one open database: the engine calls the shared backend makes, over the plugin's layout.

    Every method may raise the engine's own exceptions; the backend turns them
    into :class:`~airssys_storage.StorageError` with :meth:`error` (those
    :meth:`is_error` accepts). ``db`` is the engine handle whose ``get(key)``
    reads a data record (the hot paths call it directly).
    """

    #: The engine's name in messages ("LevelDB").
    product: ClassVar[str] = ""
    #: The URL scheme ("leveldb").
    scheme: ClassVar[str] = ""
    #: Bytes of a data key before its namespace's length byte.
    data_offset: int = 0
    db: Any

    def __init__(self, path: str) -> None:
        self.path = path

    # -- layout ------------------------------------------------------------------

    @abc.abstractmethod
    def space(self, namespace: str) -> Space:
        """The prefixes and keys of *namespace* (raise ``InvalidArgument`` for an impossible name)."""

    def view(self, space: Space) -> Any:
        """What :meth:`items` and :meth:`keys` list *space*'s rows through (kept on the space)."""
        return None

    @abc.abstractmethod
    def namespace_of_counter(self, key: bytes) -> str:
        """The namespace of counter key *key*."""

    # -- reads ---------------------------------------------------------------------

    @abc.abstractmethod
    def read(self, data_key: bytes) -> bytes | None:
        """One data record (checksums verified where the options ask), or ``None``."""

    @abc.abstractmethod
    def read_many(self, data_keys: list[bytes]) -> list[bytes | None]:
        """Data records from one moment (a snapshot), in order."""

    def read_rows(self, data_keys: list[bytes]) -> list[bytes | None]:
        """Data records as a commit reads its old rows under the backend's lock (no snapshot needed), in order.

        The default reads them one ``db.get`` at a time, as the other write
        paths do; an engine with a multi-get overrides it with one call.
        """
        get = self.db.get
        return [get(data_key) for data_key in data_keys]

    @abc.abstractmethod
    def items(self, space: Space, start: bytes, end: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        """``(key, record)`` of *space* with ``start <= key < end`` (keys without the prefix), in key order."""

    @abc.abstractmethod
    def keys(self, space: Space, start: bytes, end: bytes | None, limit: int | None) -> list[bytes]:
        """At most *limit* (``None``: all) keys of *space* with ``start <= key < end`` (no prefix), in order."""

    @abc.abstractmethod
    def get_counter(self, key: bytes) -> bytes | None:
        """A counter record."""

    @abc.abstractmethod
    def counters(self) -> Iterable[tuple[bytes, bytes]]:
        """Every ``(counter key, counter record)``."""

    @abc.abstractmethod
    def get_op(self, key: bytes) -> bytes | None:
        """A recorded operation."""

    @abc.abstractmethod
    def op_times(self, start: bytes, stop: bytes, limit: int) -> list[bytes]:
        """At most *limit* retention-index keys with ``start <= key < stop``, in order."""

    @abc.abstractmethod
    def changes(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        """``(key, record)`` of the change records with ``start <= key < stop``, in key order (one snapshot)."""

    @abc.abstractmethod
    def last_change(self, start: bytes, stop: bytes) -> tuple[bytes, bytes] | None:
        """The last change record (``(key, record)``) with ``start <= key < stop``, or ``None``."""

    @abc.abstractmethod
    def snapshot(self) -> RecountSnapshot:
        """A consistent view for a recount (taken under the backend's lock)."""

    # -- writes --------------------------------------------------------------------

    @abc.abstractmethod
    def put(self, data_key: bytes, record: bytes) -> None:
        """Write one data record on its own (synced as the options say)."""

    @abc.abstractmethod
    def batch(self, sync: bool = False) -> Any:
        """An empty write batch whose ``put(key, record)`` and ``delete(key)`` change data records.

        *sync*: the batch is written with fsync whatever the options say (repairs).
        """

    @abc.abstractmethod
    def put_counter(self, batch: Any, key: bytes, record: bytes) -> None:
        """Add a counter record to *batch*."""

    @abc.abstractmethod
    def delete_counter(self, batch: Any, key: bytes) -> None:
        """Remove a counter record in *batch*."""

    @abc.abstractmethod
    def put_op(self, batch: Any, key: bytes, record: bytes, time_key: bytes) -> None:
        """Add an op record and its retention-index entry to *batch*."""

    @abc.abstractmethod
    def delete_op(self, batch: Any, key: bytes | None, time_key: bytes) -> None:
        """Remove an op record (``None``: only its index entry) and its retention-index entry in *batch*."""

    @abc.abstractmethod
    def put_change(self, batch: Any, key: bytes, record: bytes) -> None:
        """Add a change record to *batch*."""

    @abc.abstractmethod
    def delete_change(self, batch: Any, key: bytes) -> None:
        """Remove a change record in *batch*."""

    def put_with_change(self, data_key: bytes, record: bytes, change_key: bytes, change: bytes) -> None:
        """Write one data record and one change record as one batch (a logged ``set``'s usual commit).

        Exactly :meth:`batch`, ``put``, :meth:`put_change` and :meth:`write`
        (nothing written if it raises); an engine may do it in fewer calls.
        """
        batch = self.batch()
        try:
            batch.put(data_key, record)
            self.put_change(batch, change_key, change)
            self.write(batch)
        except BaseException:
            self.discard(batch)
            raise

    @abc.abstractmethod
    def write(self, batch: Any, sync: bool = False) -> None:
        """Write *batch* atomically (fsync when *sync* or the options say so)."""

    def discard(self, batch: Any) -> None:  # noqa: B027 - optional hook
        """Forget *batch* (after a failure, or a large one after writing)."""

    # -- errors, fork, close ---------------------------------------------------------

    @abc.abstractmethod
    def is_error(self, exc: BaseException) -> bool:
        """Whether *exc* comes from the engine."""

    @abc.abstractmethod
    def is_corruption(self, exc: BaseException) -> bool:
        """Whether engine error *exc* reports damage."""

    @abc.abstractmethod
    def error(self, action: str, exc: BaseException) -> StorageError:
        """The :class:`~airssys_storage.StorageError` for engine error *exc* while trying to *action*."""

    @abc.abstractmethod
    def repair_hint(self) -> str:
        """What to run to repair the database (ends a message)."""

    @abc.abstractmethod
    def forked_message(self) -> str:
        """The error of any use of the database in a forked child."""

    def handles(self) -> Sequence[Any]:
        """The engine objects a forked child must never free."""
        return (self.db,)

    @abc.abstractmethod
    def close(self) -> None:
        """Close the database."""


class Closed:
    """Stands in for an engine (and its handle) that must not be used: any use raises *message*, at no cost before."""

    def __init__(self, message: str, path: str = "") -> None:
        self._message = message
        self.path = path
        self.db = self

    def __getattr__(self, name: str) -> Callable[..., NoReturn]:
        return self._fail

    def view(self, space: Space) -> Closed:
        """Listings through the stand-in fail too."""
        return self

    def _fail(self, *args: object, **kwargs: object) -> NoReturn:
        raise InternalError(self._message)


class OpenPaths:
    """The real paths of one engine's databases open in this process, and those a forked child inherited.

    ``repair_url`` refuses a path open here (RepairDB takes no lock); an open
    of a path the parent held at the fork gets the forked error.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: set[str] = set()
        self.forked: set[str] = set()
        #: Handles inherited by a forked child: never closed nor freed there.
        self.inherited: list[Any] = []

    def add(self, real: str) -> None:
        with self.lock:
            self.open.add(real)

    def discard(self, real: str) -> None:
        with self.lock:
            self.open.discard(real)

    def mine(self, real: str) -> bool:
        """Whether this process holds (or inherited) the lock of *real*."""
        with self.lock:
            return real in self.open or real in self.forked

    def inherit(self, real: str | None, handles: Sequence[Any]) -> None:
        """In a forked child: keep *handles* alive forever and note that *real* (if any) is the parent's."""
        for handle in handles:
            # Never close or free them here: the engine's destructor would wait for background
            # threads that do not exist in the child, and unlock the parent's files. One extra
            # reference keeps even interpreter shutdown from freeing them.
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(handle))
            self.inherited.append(handle)
        self.lock = threading.Lock()  # another thread may have held it at fork time
        if real is not None:
            self.forked.add(real)
            self.open.discard(real)


class _NoRows(dict[bytes, Cached]):
    """The row cache when it is switched off (``size_cache_keys = 0``): it never holds anything."""

    def __setitem__(self, key: bytes, value: Cached) -> None:
        pass


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


def _record(version: int, value: bytes) -> bytes:
    """The record of a row without expiry (rowformat's header inlined)."""
    if version < 256:
        return _SHORT_HEADERS[version] + value
    width = (version.bit_length() + 7) >> 3
    return ((version << 8) | width).to_bytes(width + 1, "little") + value


class OrderedKVBackend(StorageBackend, ForkAware):
    """Namespaced rows, counters and operation ids in one ordered key-value engine (see the module docs).

    A plugin subclasses it for its name, options, ``open`` and repair, and
    builds it with its :class:`Engine`, its :class:`OpenPaths` and whether it
    writes (a read-only instance registers no path).
    """

    capabilities = Capabilities(persistent=True, multi_process=False, repair=True, change_feed=True)

    def __init__(self, path: str, engine: Engine, options: Any, paths: OpenPaths, *, register: bool = True) -> None:
        self.path = path
        self.options = options
        self._paths = paths
        self._registered = register
        self._lock = threading.Lock()
        self._spaces: dict[str, Space] = {}
        # Rows (size, version, expiry; no value) of recently written keys, None for "no row".
        self._rows: dict[bytes, Cached] = {} if options.size_cache_keys else _NoRows()
        self._row_limit: int = options.size_cache_keys
        #: Bumped by every counter repair, so that a repair based on an older snapshot starts again.
        self._repairs = 0
        self._product = engine.product
        self._url = f"{engine.scheme}://{path}"
        self._data_offset = engine.data_offset
        self._bind(engine)
        self._real_path = os.path.realpath(path)
        if register:
            paths.add(self._real_path)
        track(self)

    def after_fork_in_child(self) -> None:
        """Swap the inherited handle for the refusing stand-in (see the module docs)."""
        engine = self._engine
        if not isinstance(engine, Closed):
            self._paths.inherit(self._real_path if self._registered else None, engine.handles())
        self._lock = threading.Lock()
        self._bind(Closed(engine.forked_message() if not isinstance(engine, Closed) else engine._message, self.path))

    def _bind(self, engine: Engine | Closed) -> None:
        """Point every handle at *engine* (or a stand-in); forget the caches."""
        # Hot paths call self._db.get() rather than a bound method kept on the
        # instance: Python 3.11 specialises the method call on the database
        # object but not a call through an instance attribute (~10 ns).
        self._engine: Any = engine
        self._db: Any = engine.db
        self._put: Any = engine.put
        # Rebound rather than dropped: a writer that fetched a space before
        # taking the lock must not use a counter cached before a repair.
        for space in self._spaces.values():
            space.counter = None
            space.feed = None
            space.view = engine.view(space)
        self._rows.clear()

    def _closed(self) -> Closed:
        return Closed(f"the {self._product} database at {self.path} is closed", self.path)

    def _fail(self, action: str, exc: Exception) -> NoReturn:
        """Raise the :class:`StorageError` for an engine error *exc*; anything else passes unchanged."""
        if isinstance(exc, StorageError) or not self._engine.is_error(exc):
            raise exc
        raise self._engine.error(action, exc) from exc

    def _repair_hint(self) -> str:
        return str(self._engine.repair_hint())

    # -- reads -------------------------------------------------------------------

    def _space(self, namespace: str) -> Space:
        space = self._spaces.get(namespace)
        if space is None:
            fresh = self._engine.space(namespace)
            fresh.view = self._engine.view(fresh)
            space = self._spaces.setdefault(namespace, fresh)
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
        # The hot path: a row without expiry is one byte test and one slice (see rowformat).
        if 0 < head < 9:
            return raw[head + 1 :]
        if 16 < head < 25 and len(raw) > head - 8:  # EXPIRES | width 1..8, the header complete
            # A row with an expiry, its header read inline: expires_at follows the version.
            start = head - 15  # 1 + width
            (expires_at,) = _EXPIRES_AT(raw, start)  # no slice to build: ~70 ns less than int.from_bytes
            # The wall clock read inline: expires_at <= time_ns() // 10**6 exactly when
            # expires_at * 10**6 <= time_ns() (integers), at a third of a clock() call's cost.
            if self.clock is wall_clock_ms:
                return None if expires_at * 1_000_000 <= _time_ns() else raw[start + 8 :]
            return None if expires_at <= self.clock() else raw[start + 8 :]
        return self._value(prefix + key, raw, None)

    def _get_verified(self, namespace: str, key: bytes) -> bytes | None:
        """:meth:`get` through :meth:`Engine.read` (installed on the instance by engines that verify checksums)."""
        data_key = self._space(namespace).prefix + key
        raw = self._read(data_key)
        return None if raw is None else self._value(data_key, raw, None)

    def _decode(self, data_key: bytes, raw: bytes) -> tuple[int, int, int | None]:
        """``(value offset, version, expires_at)`` of the record *raw* of *data_key*; damage is an error."""
        try:
            return decode_header(raw)
        except ValueError as exc:
            at = self._data_offset
            namespace = data_key[at + 1 : at + 1 + data_key[at]].decode("ascii", "replace")
            key = data_key[at + 1 + data_key[at] :]
            raise StoreDamaged(
                f"the row of key {key.decode(errors='replace')!r} of component {namespace!r} in the {self._product} "
                f"database at {self.path} is corrupted ({exc}): run "
                f"`{operator_command('verify --repair', self._url)}` to remove it"
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
            raw: bytes | None = self._engine.read(data_key)
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
            # One snapshot: every value from the same moment, never half of a concurrent batch.
            raws = self._engine.read_many([prefix + key for key in keys])
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

    def items(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        space = self._space(namespace)
        found: list[tuple[bytes, bytes]] = []
        if limit <= 0 or (end is not None and end <= start):
            return found
        now: int | None = None
        prefix = space.prefix
        try:
            for key, raw in self._engine.items(space, start, end):
                if 0 < (head := raw[0] if raw else 0) < 9:
                    found.append((key, raw[head + 1 :]))
                else:
                    offset, _, expires_at = self._decode(prefix + key, raw)
                    if expires_at is not None:
                        now = self.clock() if now is None else now
                        if expires_at <= now:
                            continue
                    found.append((key, raw[offset:]))
                if len(found) == limit:
                    break
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
        try:  # no row has an expiry: list keys without reading a value
            keys: list[bytes] = self._engine.keys(space, start, end, limit if counter[1] > limit else None)
        except Exception as exc:
            self._fail("read from", exc)
        return keys

    def usage(self, namespace: str) -> Usage:
        space = self._space(namespace)
        used, count, _, _ = space.counter or self._counter(space)
        return Usage(used, count)

    def _counter(self, space: Space) -> Counter:
        """The counter of *space*, read from the database on first use (under the lock)."""
        with self._lock:
            return self._load_counter(space)

    def _load_counter(self, space: Space) -> Counter:
        """The counter of *space*, read from the database on first use. Call under the lock."""
        counter = space.counter
        if counter is None:
            try:
                raw = self._engine.get_counter(space.counter_key)
            except Exception as exc:
                self._fail("read from", exc)
            counter = (0, 0, 0, 0) if raw is None else self._unpack_counter(space.counter_key, raw)
            space.counter = counter
        return counter

    def _unpack_counter(self, key: bytes, raw: bytes) -> Counter:
        if len(raw) != COUNTER.size:
            raise StoreDamaged(
                f"the usage counter of namespace {self._engine.namespace_of_counter(key)!r} in the {self._product} "
                f"database at {self.path} is corrupted ({len(raw)} bytes); {self._repair_hint()}"
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
            decided = None
            if len(writes) > 1 and _FAST_BATCH and not (self.feeds and space.namespace in self.feeds):
                count = len(writes)
                # Plain puts only? list.count compares by identity first: no hash of a WriteKind
                # (an Enum hashes in Python).
                if list(map(_PLAIN_FIELDS, writes)).count(_PLAIN_PUT) == count:
                    keys: list[bytes] = list(map(_KEY_OF, writes))
                    values: list[bytes] = list(map(_VALUE_OF, writes))
                    done = self._put_rows_locked(space, keys, values, limit)
                    if done is not None:
                        versions, existed, after, changed = done
                        puts: list[Put] = list(map(_NEW_PUT, zip(keys, values, versions, repeat(None))))
                        decided = _new(Plan, (puts, [], after, changed, versions, existed, set_events(puts), []))
            if decided is None:
                decided = self._apply_locked(space, writes, limit)
        except Exception as exc:
            self._fail("write to", exc)
        finally:
            self._lock.release()
        return decided

    def put_many(self, namespace: str, keys: Sequence[bytes], values: Sequence[bytes], limit: int | None) -> list[int]:
        # The hot path of set_many(): the plain-put commit of _put_rows_locked without building
        # writes or a plan; anything it does not take goes to apply() (and so to the planner).
        try:
            space = self._spaces[namespace]
        except KeyError:
            space = self._space(namespace)
        if len(keys) > 1 and _FAST_BATCH:
            self._lock.acquire()
            try:
                done = self._put_rows_locked(space, keys, values, limit)
            except Exception as exc:
                self._fail("write to", exc)
            finally:
                self._lock.release()
            if done is not None:
                return done[0]
        return StorageBackend.put_many(self, namespace, keys, values, limit)

    def _put_rows_locked(
        self, space: Space, keys: Sequence[bytes], values: Sequence[bytes], limit: int | None
    ) -> tuple[list[int], list[bool], SpaceState, bool] | None:
        """A commit of plain puts of distinct *keys* decided and written here; ``None``: take the planner's path.

        Returns what :func:`plan` returns for the commit: the new versions, which
        keys existed, the counter after it and whether it changed. Only a
        namespace where no row has an expiry (the counter's ``expiring`` is 0,
        so every old row is live and has none) qualifies. The old rows come
        from the row cache, the misses from one :meth:`Engine.read_rows`; each
        put gets the planner's version (``row.version + 1``, or ``floor + 1``
        for a new key) and size delta. A key named twice, a write the quota
        would refuse or a version at the end of the range returns ``None``
        before anything is written (the planner then decides, and raises,
        exactly as always); the plugins' tests compare both paths on random
        batches. The per-key work is done by ``map()`` and friends (C loops)
        rather than a Python loop, which cost more than the engine's write.
        Call under the lock.
        """
        counter = space.counter or self._load_counter(space)
        if counter[3]:
            return None  # a row may have an expiry: the general path counts them
        count = len(keys)
        data_keys = list(map(space.prefix.__add__, keys))
        if len(set(data_keys)) != count or len(values) != count:
            return None  # the planner refuses a key named twice
        rows = self._rows
        old: list[Any] = list(map(rows.get, data_keys))  # None: not cached, or cached as "no row"
        if None in old:
            missed = [index for index, row in enumerate(old) if row is None and data_keys[index] not in rows]
            if missed:
                raws = self._engine.read_rows([data_keys[index] for index in missed])
                for index, raw in zip(missed, raws, strict=True):
                    if raw is not None:
                        row = self._row(data_keys[index], raw)
                        if row.expires_at is not None:
                            return None  # the counter says no row has an expiry: let the general path decide
                        old[index] = row
        floor = counter[2]
        if None in old:  # new keys: floor + 1 and their whole size (a loop, but a rarer case)
            versions: list[int] = []
            existed: list[bool] = []
            delta = key_delta = 0
            for key, value, row in zip(keys, values, old):  # noqa: B905 - lengths checked above
                if row is None:
                    versions.append(floor + 1)
                    existed.append(False)
                    key_delta += 1
                    delta += len(key) + len(value)
                else:
                    versions.append(row[1] + 1)
                    existed.append(True)
                    delta += len(value) - row[0]
        else:  # overwrites only: every row live (no expiry), the next version of each
            versions = list(map(_ADD, map(_VERSION_OF, old), repeat(1, count)))
            existed = [True] * count
            key_delta = 0
            delta = sum(map(len, values)) - sum(map(_SIZE_OF, old))
        highest = max(versions)
        if highest > MAX_VERSION:
            return None  # the planner refuses it
        if limit is not None and delta > 0 and counter[0] + delta > limit:
            return None  # the planner refuses it (and the core sweeps expired keys and retries)
        if highest < 256:
            records = list(map(bytes.__add__, map(_SHORT_HEADERS.__getitem__, versions), values))
        else:
            records = list(map(_record, versions, values))
        if delta or key_delta:
            after = _new(SpaceState, (counter[0] + delta, counter[1] + key_delta, floor))
            new: Counter = (after.bytes, after.keys, floor, 0)
        else:
            after, new = _new(SpaceState, counter[:3]), counter
        engine = self._engine
        batch = engine.batch()
        try:
            _consume(map(batch.put, data_keys, records), 0)
            if new is not counter:
                engine.put_counter(batch, space.counter_key, COUNTER.pack(*new))
            engine.write(batch)
        except BaseException:
            engine.discard(batch)  # a reused batch must carry nothing of a failed commit
            for data_key in data_keys:  # read again after a failed write, whatever it did
                rows.pop(data_key, None)
            raise
        space.counter = new
        if len(rows) + count > self._row_limit:
            rows.clear()  # crude but O(1) per write on average, and never wrong
        cached = map(_NEW_ROW, zip(map(len, values), versions, repeat(None), repeat(None)))
        rows.update(zip(data_keys, cached))  # noqa: B905 - one per key
        return versions, existed, after, new is not counter

    def _apply_locked(self, space: Space, writes: Sequence[Write], limit: int | None) -> Plan:
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
        feeds = self.feeds
        if feeds and space.namespace in feeds:
            log = plan_records(decided, feeds[space.namespace])
            self._write(space, counter, decided, writes, old, now, stale, log=log)
        else:
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
            if kind is _RECORD:  # records an op id only: the planner reads no row for it
                old.append(None)
                continue
            row = rows.get(data_key, _MISS)
            if row is _MISS:
                raw = get(data_key)
                row = None if raw is None else self._row(data_key, raw)
            old.append(row)
        return old

    def _done_ops(self, space: Space, writes: Sequence[Write], now: int, stale: dict[str, int]) -> dict[str, int]:
        """The recorded results of the writes' op ids younger than the retention; older ones go to *stale*."""
        store = f"the {self._product} database at {self.path}"
        horizon = now - self.op_retention_ms
        return recorded_results(self._engine.get_op, space, writes, horizon, stale, store, self._repair_hint())

    def _write(
        self,
        space: Space,
        counter: Counter,
        decided: Plan,
        writes: Sequence[Write],
        old: Sequence[KeyState | None],
        now: int,
        stale: Mapping[str, int],
        *,
        reset: bool = False,
        log: Sequence[Pending] | None = None,
    ) -> None:
        """Write plan *decided* (rows, counter, op records) in one batch. Call under the lock.

        *old* are the rows :func:`plan` saw for *writes*. With *reset* (clear), the
        counter becomes zero rows and bytes whatever it said, keeping the plan's floor.
        *log*: the events to append to the namespace's change log in the same batch
        (its feed is on; see :meth:`_append_changes`).
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
        if len(puts) != len(old) and len(deletes) != len(old):  # (a RECORD, which changes no row, names none)
            before = {write[0]: row for write, row in zip(writes, old, strict=True) if write[1] is not _RECORD}
            put_rows = [before[put[0]] for put in puts]
            delete_rows = [before[key] for key in deletes]
        if len(puts) == 1 and not (deletes or decided.space_changed or decided.op_records or reset or log):
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
                record = _record(version, value) if expires_at is None else encode_row(version, expires_at, value)
                self._put(data_key, record)
                self._remember(data_key, _new(KeyState, (len(value), version, expires_at, None)))
                return
        expiring = counter[3]
        rows = self._rows
        if len(rows) + len(puts) + len(deletes) > self._row_limit:
            rows.clear()  # crude but O(1) per write on average, and never wrong
        engine = self._engine
        batch = engine.batch()
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
                    put(data_key, _record(version, value))
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
                engine.put_counter(batch, space.counter_key, COUNTER.pack(*new))
            if decided.op_records:
                self._record_ops(batch, space, decided.op_records, now, stale)
            if log:
                feed = self._append_changes(batch, space, log)
            engine.write(batch)
        except BaseException:
            engine.discard(batch)  # a reused batch must carry nothing of a failed commit
            for key, _, _, _ in puts:
                rows.pop(prefix + key, None)
            for key in deletes:
                rows.pop(prefix + key, None)
            raise
        space.counter = new
        if log:
            space.feed = feed
            self.notify_changes(space.namespace)

    def _remember(self, data_key: bytes, row: KeyState | None) -> None:
        """Cache the row just written under *data_key* (``None``: removed). Call under the lock, after the write."""
        rows = self._rows
        if len(rows) >= self._row_limit:
            rows.clear()  # crude but O(1) per write on average, and never wrong
        rows[data_key] = row

    def _record_ops(
        self, batch: Any, space: Space, records: Sequence[tuple[str, int]], now: int, stale: Mapping[str, int]
    ) -> None:
        """Add the op records of a commit to *batch*, and drop some older than the retention first."""
        engine = self._engine
        time_prefix = space.op_time_prefix
        horizon = now - self.op_retention_ms
        if horizon >= 0:
            start = len(time_prefix) + OP_TIME.size
            for index_key in engine.op_times(time_prefix, op_time_key(time_prefix, horizon + 1, ""), _OP_GC_STEP):
                engine.delete_op(batch, space.op_prefix + index_key[start:], index_key)
        for op_id, result in records:
            if op_id in stale:  # its old record is re-used: drop its index entry, or a sweep would drop the new one
                engine.delete_op(batch, None, op_time_key(time_prefix, stale[op_id], op_id))
            record = OP_TIME.pack(now) + result.to_bytes(OP_RESULT, "little", signed=True)
            engine.put_op(batch, space.op_prefix + op_id.encode(), record, op_time_key(time_prefix, now, op_id))

    def put_one(
        self, namespace: str, key: bytes, value: bytes, limit: int | None, if_version: int | None = None
    ) -> int:
        # The hot path of set(): apply() without its generality. The planner
        # decides as always; a row without expiry needs no clock (``now`` only
        # tells live from expired rows), and a commit that leaves the counter
        # as it is (a same-size overwrite) is the row record alone, written
        # with one put instead of a batch. *if_version* is
        # compare_and_swap_one's condition, decided by the planner like any
        # other (the same-size shortcut only when it holds).
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
                    # accepts), so the row record alone is the commit (the plugins' tests check it
                    # equals the planner's).
                    version: int = row.version + 1
                    rows.pop(data_key, None)  # stays out if the put fails
                    put = self._put  # a local: 3.11 does not specialise a call through an instance attribute
                    put(data_key, _SHORT_HEADERS[version] + value if version < 256 else _record(version, value))
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
            after = decided.space  # a new row or another size: the counter changes
            new = (after.bytes, after.keys, after.floor, counter[3])
            engine = self._engine
            batch = engine.batch()
            try:
                batch.put(data_key, _record(version, value))
                engine.put_counter(batch, space.counter_key, COUNTER.pack(*new))
                engine.write(batch)
            except BaseException:
                engine.discard(batch)
                rows.pop(data_key, None)
                raise
            space.counter = new
            rows[data_key] = _new(KeyState, (len(value), version, None, None))
        except Exception as exc:
            self._fail("write to", exc)
        finally:
            self._lock.release()
        return version

    def put_one_logged(self, namespace: str, key: bytes, value: bytes, limit: int | None) -> int:
        """:meth:`put_one` of a namespace with the change feed on (``StorageBackend.enable_changes`` routes to it).

        As :meth:`put_one` (the same-size overwrite decided here, anything else
        by the planner from the cached row), and the ``"set"`` event goes in
        the batch of the row (and the counter, when it changes).
        """
        space = self._spaces.get(namespace) or self._space(namespace)
        rows = self._rows
        data_key = space.prefix + key
        self._lock.acquire()
        try:
            row = rows.get(data_key, _MISS)
            if row is _MISS:
                row = self._cached_row(data_key)
            if row is not None and row.expires_at is not None:  # the general path counts rows with an expiry
                write = _new(Write, (key, _PUT, value, None, None, 0, None))
                return self._apply_locked(space, (write,), limit).results[0]
            new: Counter | None = None
            if row is not None and row.size == len(value) and row.version < MAX_VERSION:
                version: int = row.version + 1  # the planner's answer, as in put_one
            else:
                counter = space.counter or self._load_counter(space)
                write = _new(Write, (key, _PUT, value, None, None, 0, None))
                after = plan(namespace, (write,), (row,), _new(SpaceState, counter[:3]), limit, 0)
                version = after.results[0]
                new = (after.space.bytes, after.space.keys, after.space.floor, counter[3])
            # _append_changes for one "set", written out (the hot path of a logged set).
            feed = self.feeds[namespace]
            oldest, last, at = space.feed or self._load_feed(space)
            # The wall clock read inline, as get() does (a third of a call's cost).
            now = _time_ns() // 1_000_000 if self.clock is wall_clock_ms else self.clock()
            if now > at:  # never below the previous event's time: age trims a prefix
                at = now
            seq = last + 1
            if feed.capture_values and len(value) <= feed.max_value_bytes:
                head = CHANGE.pack(_SET | _TAIL, version, at, len(key)) + key + value
            else:
                head = CHANGE.pack(_SET, version, at, len(key)) + key
            engine = self._engine
            record = _SHORT_HEADERS[version] + value if version < 256 else _record(version, value)
            change_key = space.change_prefix + CHANGE_SEQ.pack(seq)
            rows.pop(data_key, None)  # stays out if the write fails
            if new is None and seq - oldest < feed.retain_events and seq % TRIM_STEP:
                engine.put_with_change(data_key, record, change_key, head)  # the usual commit: row and event
            else:
                batch = engine.batch()
                try:
                    batch.put(data_key, record)
                    if new is not None:
                        engine.put_counter(batch, space.counter_key, COUNTER.pack(*new))
                    engine.put_change(batch, change_key, head)
                    if seq - oldest >= feed.retain_events or not seq % TRIM_STEP:
                        oldest = self._trim_changes(batch, space, feed, oldest, last, seq, at)
                    engine.write(batch)
                except BaseException:
                    engine.discard(batch)
                    raise
                if new is not None:
                    space.counter = new
            space.feed = (oldest, seq, at)
            if len(rows) >= self._row_limit:
                rows.clear()  # crude but O(1) per write on average, and never wrong
            rows[data_key] = _new(KeyState, (len(value), version, None, None))
        except Exception as exc:
            self._fail("write to", exc)
        finally:
            self._lock.release()
        signal = self._change_signal  # notify_changes(), one call less
        if signal is not None:
            signal.notify()
        return version

    def _cached_row(self, data_key: bytes) -> KeyState | None:
        """The row of *data_key* (no value) from the row cache, else read. Call under the lock."""
        row = self._rows.get(data_key, _MISS)
        if row is _MISS:
            raw = self._db.get(data_key)
            row = None if raw is None else self._row(data_key, raw)
        return row  # type: ignore[no-any-return]

    def compare_and_swap_one(self, namespace: str, key: bytes, value: bytes, version: int, limit: int | None) -> int:
        # put_one with the condition: the planner decides it (this class's put_one, whatever a
        # subclass makes of its own).
        return OrderedKVBackend.put_one(self, namespace, key, value, limit, version)

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
                    self._rows.pop(data_key, None)  # stays out if the put fails
                    self._put(data_key, _record(version, value))
                    self._remember(data_key, _new(KeyState, (len(value), version, None, None)))
                    return number
            write = _new(Write, (key, _INCREMENT, b"", None, None, delta, None))
            return self._apply_locked(space, (write,), limit).results[0]
        except Exception as exc:
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
                log = None
                if self.feeds and namespace in self.feeds and decided.events:
                    log = range_records(decided, start, end, expired_only)
                self._write(space, counter, decided, writes, old, now, {}, log=log)
            except Exception as exc:
                self._fail("write to", exc)
        return decided

    def _range_rows(
        self,
        space: Space,
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
        prefix = space.prefix
        for key, raw in self._engine.items(space, start, end):
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
                log = clear_record(decided.space.floor) if writes and namespace in self.feeds else None
                self._write(space, counter, decided, writes, old, 0, {}, reset=True, log=log)
                self._engine.discard(None)  # do not keep a large batch alive
            except Exception as exc:
                self._fail("write to", exc)

    # -- change feed (airssys_storage.changes) --------------------------------------

    def _append_changes(self, batch: Any, space: Space, pending: Sequence[Pending]) -> tuple[int, int, int]:
        """Add *pending* to *batch* as the change records ``last + 1 …``, trim the log; its new state.

        Call under the lock, in the commit's batch (so the events are written
        with the data or not at all). The count limit removes a prefix by seq
        (also of this commit's records, for a tiny retention: a delete after
        a put in one batch wins); every :data:`TRIM_STEP` seqs the records
        older than the age limit go too, oldest first (their times never
        decrease). The newest event always stays, so the seq never restarts.
        """
        feed = self.feeds[space.namespace]
        oldest, last, last_at = space.feed or self._load_feed(space)
        at = self.clock()
        if at < last_at:  # never below the previous event's time: age trims a prefix
            at = last_at
        put_change = self._engine.put_change
        prefix = space.change_prefix
        pack = CHANGE_SEQ.pack
        seq = last
        for key, op, version, value, end in pending:
            seq += 1
            put_change(batch, prefix + pack(seq), encode_change(key, op, version, at, value, end))
        if seq - oldest >= feed.retain_events or seq // TRIM_STEP != last // TRIM_STEP:
            oldest = self._trim_changes(batch, space, feed, oldest, last, seq, at)
        return oldest, seq, at

    def _trim_changes(
        self, batch: Any, space: Space, feed: FeedConfig, oldest: int, last: int, seq: int, at: int
    ) -> int:
        """Remove in *batch* the log's records the retention drops; the new oldest seq.

        The log held *oldest* .. *last* and the batch adds up to *seq* at time
        *at*. Call when it holds at least ``retain_events`` or a multiple of
        :data:`TRIM_STEP` was passed (the age limit is checked then).
        """
        engine = self._engine
        prefix = space.change_prefix
        pack = CHANGE_SEQ.pack
        keep = feed.keep_from(oldest, seq)
        for gone in range(oldest, keep):
            engine.delete_change(batch, prefix + pack(gone))
        oldest = max(oldest, keep)
        if oldest <= last and (seq // TRIM_STEP != last // TRIM_STEP or feed.retain_events < TRIM_STEP):
            cutoff = feed.age_cutoff(at)
            if cutoff is not None:
                for key, raw in engine.changes(prefix + pack(oldest), prefix + pack(last + 1)):
                    if len(raw) < CHANGE.size or CHANGE.unpack_from(raw)[2] >= cutoff:
                        break
                    engine.delete_change(batch, key)
                    oldest += 1
        return oldest

    def _load_feed(self, space: Space) -> tuple[int, int, int]:
        """The change log's (oldest, last, last time) of *space*, read on first use. Call under the lock."""
        state = space.feed
        if state is None:
            engine = self._engine
            prefix = space.change_prefix
            stop = prefix + _SEQ_END
            try:
                found = engine.last_change(prefix, stop)
                first = None if found is None else next(iter(engine.changes(prefix, stop)), None)
                if found is None or first is None:
                    state = (1, 0, 0)
                else:
                    last = self._decode_change(space, *found)
                    state = (CHANGE_SEQ.unpack_from(first[0], len(prefix))[0], last.seq, last.at)
            except Exception as exc:
                self._fail("read from", exc)
            space.feed = state
        return state

    def _decode_change(self, space: Space, key: bytes, raw: bytes) -> ChangeRecord:
        """The event stored as *raw* under change key *key*; damage is an error."""
        store = f"the {self._product} database at {self.path}"
        return decode_change(key, len(space.change_prefix), raw, space.namespace, store)

    def read_changes(self, namespace: str, since: int, limit: int) -> ChangeBatch:
        """The records after *since* from one iterator (one implicit snapshot), then the bounds.

        The bounds are read after the records (under the lock, where they equal
        what the database holds), so ``last`` is at least the newest record
        returned, and a trim that ran meanwhile shows as a higher ``oldest``
        (a gap), never as records silently skipped.
        """
        space = self._space(namespace)
        prefix = space.change_prefix
        records: list[ChangeRecord] = []
        if limit > 0:
            try:
                found = self._engine.changes(prefix + CHANGE_SEQ.pack(since + 1), prefix + _SEQ_END)
                for key, raw in found:
                    records.append(self._decode_change(space, key, raw))
                    if len(records) == limit:
                        break
            except Exception as exc:
                self._fail("read from", exc)
        oldest, last = self.change_bounds(namespace)
        return ChangeBatch(records, oldest, last)

    def change_bounds(self, namespace: str) -> tuple[int, int]:
        space = self._space(namespace)
        with self._lock:
            oldest, last, _ = space.feed or self._load_feed(space)
        return oldest, last

    # -- administration ----------------------------------------------------------

    def namespaces(self) -> list[str]:
        return sorted(ns for ns, counter in self._counters().items() if counter[1] > 0)

    def _counters(self) -> dict[str, Counter]:
        engine = self._engine
        try:
            return {engine.namespace_of_counter(key): self._unpack_counter(key, raw) for key, raw in engine.counters()}
        except Exception as exc:
            self._fail("read from", exc)

    def counter_totals(self) -> dict[str, int]:
        """Totals over the counters: ``namespaces`` (holding a key), ``keys``, ``bytes``, ``keys_with_expiry``."""
        counters = self._counters().values()
        return {
            "namespaces": sum(1 for counter in counters if counter[1] > 0),
            "keys": sum(counter[1] for counter in counters),
            "bytes": sum(counter[0] for counter in counters),
            "keys_with_expiry": sum(counter[3] for counter in counters),
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
        keys that break the key rules. Damage the engine reports while
        reading is in ``problems`` with the repair command; a recount cannot
        fix it. A counter record that cannot be decoded shows as
        ``Usage(-1, -1)``. Rows whose version or expiry is 0 (decodable, but
        out of range) are reported in ``bad_rows`` and fixed as
        :class:`BadRow` says; since a fresh version must be above every
        version of the namespace, that repair recounts once more holding the
        write lock, so nothing changes between the recount and the fix.
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
            try:
                snapshot = self._engine.snapshot()
            except Exception as exc:
                self._fail("verify", exc)
        try:
            found = self._recount(snapshot, progress)
        finally:
            snapshot.close()
        if isinstance(found, str):
            return VerifyReport(store=self.path, problems=(found,), checks=VERIFY_CHECKS, recounted=False)
        stored, actual, bad, expiring, fixes = found
        rows = [fix.row for fix in fixes]
        report = verify_report(
            self.path, stored, actual, bad_keys=bad, bad_rows=rows, repaired=repair, checks=VERIFY_CHECKS
        )
        if not repair and expiring:
            report = replace(
                report,
                problems=(
                    *report.problems,
                    *(
                        f"the counter of component {ns!r} says {was} rows have an expiry, a recount finds "
                        f"{now}: run `{operator_command('verify --repair', self._url)}`"
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
        self, snapshot: RecountSnapshot, progress: Callable[[int], None] | None
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

        at = self._data_offset
        pending = 0
        try:
            for key, raw in snapshot.rows():
                size = key[at]
                skip = at + 1 + size
                namespace = key[at + 1 : skip].decode("ascii", "replace")
                entry = actual.setdefault(namespace, [0, 0, 0, 0])
                try:
                    offset, version, expires_at = decode_header(raw)
                except ValueError as exc:
                    # Charged as a whole record: removing it takes off what it counts here.
                    used = len(key) - skip + len(raw)
                    bad.append(BadKey(namespace, key[skip:], used, f"a malformed row header: {exc}"))
                    entry[0] += used
                    entry[1] += 1
                    continue
                used = len(key) - skip + len(raw) - offset
                entry[0] += used
                entry[1] += 1
                if expires_at is not None:
                    entry[2] += 1
                if version > entry[3]:
                    entry[3] = version
                if version == 0 or expires_at == 0:
                    damaged.append((namespace, key, used, version, expires_at, raw[offset:]))
                chunk.append((namespace, key[skip:], used))
                pending += 1
                if pending == PROGRESS_STEP:
                    check()
                    if progress is not None:
                        progress(pending)
                    pending = 0
            check()
            for key, raw in snapshot.counters():
                namespace = self._engine.namespace_of_counter(key)
                if len(raw) == COUNTER.size:
                    used, count, floor, rows_expiring = COUNTER.unpack(raw)
                    stored[namespace] = Usage(used, count)
                    floors[namespace] = floor
                    stored_expiring[namespace] = rows_expiring
                else:
                    stored[namespace] = _BAD
        except Exception as exc:
            if self._engine.is_error(exc) and self._engine.is_corruption(exc):
                return str(self._engine.error("verify", exc))
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
            key = data_key[at + 1 + data_key[at] :]
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
        engine = self._engine
        batch = engine.batch(sync=True)
        corrected: list[tuple[Space, Counter]] = []
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
                    engine.delete_counter(batch, space.counter_key)
                else:
                    engine.put_counter(batch, space.counter_key, COUNTER.pack(*counter))
                corrected.append((space, counter))
            engine.write(batch, sync=True)
        except Exception as exc:
            engine.discard(batch)
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
        (the shape ``repair_url`` reports). :meth:`verify` with
        ``repair=True`` does the work; damage it finds raises
        :class:`~airssys_storage.StoreDamaged`.
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

    def close(self) -> None:
        with self._lock:
            engine = self._engine
            self._bind(self._closed())
            try:
                if not isinstance(engine, Closed):
                    engine.close()
            except Exception as exc:
                if isinstance(exc, StorageError) or not engine.is_error(exc):
                    raise
                raise engine.error("close", exc) from exc
            finally:
                if self._registered:
                    self._paths.discard(self._real_path)


# -- helpers shared by the plugins' open and repair paths ------------------------------


def local_path_from_url(url: str, scheme: str, parts: Any, path: str) -> str:
    """The absolute directory path of an embedded store's ``SCHEME:///absolute/path`` URL (split as *parts*).

    *path* is the unquoted path part. Raises :class:`~airssys_storage.ConfigurationError`
    for a host, a NUL character or a relative path, naming the fix.
    """
    if parts.netloc:
        raise ConfigurationError(
            f"{scheme} URL {url!r} names a host ({parts.netloc!r}); write {scheme}:///absolute/path with three slashes"
        )
    if "\x00" in path:
        raise ConfigurationError(f"{scheme} URL {url!r} holds a NUL character; write {scheme}:///absolute/path")
    if not path.startswith("/") or path.rstrip("/") == "":
        raise ConfigurationError(
            f"{scheme} URL {url!r} must name an absolute directory path: {scheme}:///absolute/path"
        )
    # normpath keeps a leading "//" (POSIX leaves its meaning to the system; Linux reads it as "/"):
    # SCHEME:////data/x names /data/x, and messages should say so.
    return "/" + os.path.normpath(path).lstrip("/")


@contextlib.contextmanager
def exclusive_lock(path: str, product: str, action: str = "repair") -> Iterator[None]:
    """Hold the engine's own ``LOCK`` file of the database at *path* (while RepairDB runs, which takes none).

    Raises :class:`~airssys_storage.ConfigurationError` when another process holds it.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: the engines use another locking scheme there
        yield
        return
    fd = os.open(os.path.join(path, "LOCK"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigurationError(
                f"cannot {action} the {product} database at {path}: it is in use by another process; stop it first"
            ) from None
        yield
    finally:
        os.close(fd)


def refuse_if_in_use(path: str, product: str, paths: OpenPaths, in_use: Callable[[str, bool], StorageError]) -> None:
    """Raise ``in_use(path, this_process)`` when a handle in this or another process holds *path*'s lock file."""
    if paths.mine(os.path.realpath(path)):
        # Never probe a lock this process holds: closing the probe's descriptor would drop it.
        raise in_use(path, True)
    if not os.path.exists(os.path.join(path, "LOCK")):
        return  # the engines create their lock file first: no one has this directory open
    try:
        with exclusive_lock(path, product, "open"):
            pass
    except ConfigurationError:
        raise in_use(path, False) from None


def check_location(
    path: str,
    product: str,
    ignored: Callable[[str], bool],
    refuse_if_in_use: Callable[[str], None],
    repair_hint: str,
) -> None:
    """Clear errors for locations the engine would reject with a cryptic message (or accept wrongly).

    *ignored* tells the files an engine writes before ``CURRENT`` that hold no
    data (its lock, its logs); a directory holding anything else but no
    ``CURRENT`` is in use (*refuse_if_in_use* raises), damaged (table or log
    files: :class:`~airssys_storage.StoreDamaged` ending in *repair_hint*),
    or no database (:class:`~airssys_storage.ConfigurationError`).
    """
    parent = os.path.dirname(path)
    if not os.path.exists(parent):
        raise ConfigurationError(
            f"cannot open the {product} database at {path}: its parent directory {parent} does not exist; "
            "create it first (the backend creates only the database directory itself)"
        )
    if not os.path.isdir(parent):
        raise ConfigurationError(f"cannot open the {product} database at {path}: {parent} is not a directory")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigurationError(
            f"cannot open the {product} database at {path}: it is a file, not a {product} database directory"
        )
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "CURRENT")):
        entries = {name for name in os.listdir(path) if not ignored(name) and not name.startswith(MARKER)}
        if entries:
            # Another process may be creating the database right now (it writes the MANIFEST
            # before CURRENT): that is "in use", never "damaged" or "not a database".
            refuse_if_in_use(path)
            if os.path.exists(os.path.join(path, "CURRENT")):
                return  # it was being created and is complete now
        if any(name.endswith((".ldb", ".log", ".sst")) or name.startswith("MANIFEST-") for name in entries):
            raise StoreDamaged(
                f"the {product} database at {path} is corrupted (its CURRENT file is missing); {repair_hint}"
            )
        if entries:
            raise ConfigurationError(
                f"cannot open a {product} database at {path}: the directory is not empty and holds no {product} "
                "database; point the URL at a new path or an existing database"
            )
