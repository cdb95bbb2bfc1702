"""The backend contract (v2): small primitives plus one atomic apply of a planned commit.

A backend stores rows (value, version, expiry) under (namespace, key) pairs. It never sees a
concatenated string: the namespace (a validated component id, ASCII) and the
key (1..max bytes of UTF-8) arrive separately and the backend keeps them apart
in its physical layout. Validation, permissions and the choice of the quota
limit happen once, in the core; what a write does (quota, versions, expiry,
conditions, counters) is decided once, by :func:`airssys_storage.planner.plan`;
the backend's job is to read the old rows inside its atomic section and apply
the plan together with the namespace's counter row.

Usage is the seed's measure: the sum over stored rows of ``len(key) + len(value)``
(both in bytes), kept as a counter so that reading it is O(1).

Threads and atomicity: backend objects are shared by every component and
thread of a host, and the core takes no lock of its own. Each method call must
be atomic: a reader sees a commit entirely or not at all, and the read of old
sizes, the guard and the write of a commit cannot interleave with another
commit of the same namespace. That makes the operations of one component
behave as if they ran one at a time (the seed's actor model). Backends shared
by several processes (SQL) must make each commit atomic and its guard exact
across processes too.

Any exception other than :class:`~airssys_storage.StorageError` that escapes a
backend method is wrapped by the core in an ``internal-error``; backends
should raise :class:`~airssys_storage.InternalError` with a helpful message
themselves where they can name the cause. A write whose outcome the backend
cannot know (the connection to a server was lost while it committed) raises
:class:`~airssys_storage.OutcomeUnknown`, so that the caller reads back before
retrying; any other error from a write means nothing was written.
"""

from __future__ import annotations

import abc
import json
import re
import shlex
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import ConfigurationError, QuotaExceeded, StoreDamaged

if TYPE_CHECKING:
    from .changes import ChangeBatch, ChangeSignal, FeedConfig
    from .planner import KeyState, Plan, Write

__all__ = [
    "StorageBackend",
    "Capabilities",
    "Usage",
    "Change",
    "CounterMismatch",
    "BadKey",
    "key_problem",
    "key_problems",
    "bad_key_error",
    "BadRow",
    "version_problem",
    "expiry_problem",
    "VerifyReport",
    "compare_usage",
    "verify_report",
    "key_successor",
    "operator_command",
    "quota_exceeded",
    "wall_clock_ms",
    "DEFAULT_OP_RETENTION_MS",
]

#: How long a recorded operation id's result is kept by default: 10 minutes, in milliseconds.
DEFAULT_OP_RETENTION_MS = 600_000


def _routed(feeds: Mapping[str, Any], fast: Callable[..., Any], general: Callable[..., Any]) -> Callable[..., Any]:
    """A hot path handing namespaces with the change feed on to *general* (:meth:`StorageBackend.enable_changes`)."""

    def routed(namespace: str, *args: Any) -> Any:
        return (general if namespace in feeds else fast)(namespace, *args)

    return routed


def _routed3(feeds: Mapping[str, Any], fast: Callable[..., Any], general: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`_routed` for a hot path taking three arguments after the namespace (``*args`` costs ~0.1 µs a call)."""

    def routed(namespace: str, first: Any, second: Any, third: Any) -> Any:
        return (general if namespace in feeds else fast)(namespace, first, second, third)

    return routed


#: The hot paths :func:`_routed3` routes (three arguments after the namespace).
_THREE_ARGUMENTS = frozenset({"put_one", "put_many", "increment_one"})


def wall_clock_ms() -> int:
    """The wall-clock time in whole milliseconds since the Unix epoch (the default backend clock)."""
    return time.time_ns() // 1_000_000


#: A key and its new value (``None``: delete), as the core's batch paths build them.
Change = tuple[bytes, "bytes | None"]
"""A key and its new value (``None`` deletes it). Keys are ``bytes`` of valid UTF-8 (1 to ``max_key_bytes``)."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend promises beyond the contract; declare only what holds.

    The conformance suite (:mod:`airssys_storage.testing`) reads these and
    runs the matching tests, and operator commands rely on them:

    ``persistent``
        Every write that returned, and the usage counters, are there after
        closing and reopening the same URL (in this or another process).
        How much survives a crash (power loss, ``kill -9``) is the backend's
        to document in its README. Tested by reopening the store.
    ``multi_process``
        Several processes may open the same URL at once: each commit is
        atomic and its guard exact across processes (no quota overshoot, no
        torn batch, counters equal to a recount). Without it, processes are
        either kept apart (``memory://``: each has its own store) or a second
        one opening the store gets a clear
        :class:`~airssys_storage.InternalError` ("in use by another
        process"), never silent damage. Tested by 8 processes racing for one
        exact quota.
    ``native_atomics``
        A single increment or compare-and-swap is one engine statement or
        one native engine call (informational: :meth:`ComponentStorage.limits`
        reports it; every backend is exact either way).
    ``repair``
        The backend implements :meth:`StorageBackend.repair_url`: it works on a
        closed store, even one too damaged to open, keeps every readable
        record, recounts the usage counters from the data, and returns a
        JSON-serialisable report. ``airssys-storage repair`` refuses backends
        without it. Tested by repairing a (optionally damaged) store.
    ``change_feed``
        The backend keeps change logs (:mod:`airssys_storage.changes`): it
        appends a commit's events in the commit's atomic step with dense,
        strictly increasing per-namespace seqs (across processes too, with
        ``multi_process``) and implements :meth:`StorageBackend.read_changes`
        and :meth:`StorageBackend.change_bounds`. The core refuses
        ``changes = true`` on a backend without it. Tested by the change-feed
        conformance tests (replay equals state, gaps, range events, expiry).
    """

    #: Writes and counters survive closing and reopening the same URL.
    persistent: bool = False
    #: Several processes may open the same URL at once, with exact quota and atomic batches.
    multi_process: bool = False
    #: The backend implements :meth:`StorageBackend.repair_url`.
    repair: bool = False
    #: Increment and compare-and-swap run as one engine statement (no read-modify-write round trips).
    native_atomics: bool = False
    #: The backend keeps per-namespace change logs (:mod:`airssys_storage.changes`).
    change_feed: bool = False


@dataclass(frozen=True)
class Usage:
    """A namespace's usage counter: bytes (keys + values) and number of keys."""

    bytes: int = 0
    keys: int = 0


@dataclass(frozen=True)
class CounterMismatch:
    """A namespace whose stored usage counter disagrees with its data."""

    namespace: str
    #: What the counter says.
    stored: Usage
    #: What a recount of the data gives.
    actual: Usage


#: Characters no key may contain (the core's key rule; see :data:`Change`).
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")


def key_problem(key: bytes) -> str | None:
    """Why stored *key* breaks the key rules (not UTF-8, empty, a control character), or ``None``.

    The length limit is a setting of the core, not of the store, so it is not
    checked here. Verify calls this on every stored key; keys it refuses are
    unreachable through the API (:class:`BadKey`).
    """
    try:
        text = key.decode()
    except UnicodeDecodeError:
        return "not valid UTF-8"
    if not key:
        return "empty"
    if CONTROL_CHARACTERS.search(text) is not None:
        return "contains a control character"
    return None


def key_problems(keys: Sequence[bytes]) -> list[tuple[int, str]]:
    """``(index, problem)`` for each of *keys* that :func:`key_problem` refuses; one pass for sound keys.

    Sound keys (nearly always all of them) are checked together: joined by
    ``/`` they decode as UTF-8 exactly when each does (no ASCII byte
    completes a multi-byte sequence) and hold a control character exactly
    when one does. Only when that finds something is each key checked.
    """
    if not keys:
        return []
    try:
        text = b"/".join(keys).decode()
    except UnicodeDecodeError:
        pass
    else:
        if min(map(len, keys)) > 0 and CONTROL_CHARACTERS.search(text) is None:
            return []
    return [(index, problem) for index, key in enumerate(keys) if (problem := key_problem(key)) is not None]


@dataclass(frozen=True)
class BadKey:
    """A stored key that breaks the key rules: no API call can read, list or delete it.

    Only written around the core (a tool editing the files or tables, or
    damage). Verify reports it as damage; ``verify(repair=True)`` removes it.
    """

    namespace: str
    #: The raw stored key.
    key: bytes
    #: The bytes it takes in its namespace's usage: ``len(key) + len(value)``.
    size: int
    #: Why it is refused (see :func:`key_problem`).
    problem: str

    def describe(self) -> str:
        """``component 'app', key x'ff00' (not valid UTF-8)``."""
        return f"component {self.namespace!r}, key x'{self.key.hex()}' ({self.problem})"


def bad_key_error(namespace: str, key: bytes, url: str, options: Mapping[str, Any]) -> StoreDamaged:
    """The error of a read that met a stored key breaking the key rules (the core's decode paths raise it).

    *url* and *options* (those selecting the store) name the store in the commands the message gives.
    """
    problem = key_problem(key) or "breaks the key rules"
    return StoreDamaged(
        f"component {namespace!r} holds a stored key that is {problem}: x'{key.hex()}' (hex); no API call can "
        "read or delete it (it was written around airssys-storage, or the store is damaged): run "
        f"`{operator_command('verify', url, options)}` to find every such key and "
        f"`{operator_command('verify --repair', url, options)}` to remove them"
    )


def version_problem(version: object, maximum: int) -> str | None:
    """Why a stored *version* is no version (not an integer in ``1..maximum``), or ``None``.

    *maximum* is the highest version the backend stores: the contract's
    :data:`airssys_storage.planner.MAX_VERSION` (2**64 - 1), or less (SQL: 2**63 - 1).
    """
    if type(version) is int and 1 <= version <= maximum:
        return None
    return f"version {version!r} is not an integer in 1..{maximum}"


def expiry_problem(expires_at: object) -> str | None:
    """Why a stored *expires_at* is no expiry (neither ``None`` nor an integer >= 1 ms), or ``None``."""
    if expires_at is None or (type(expires_at) is int and expires_at >= 1):
        return None
    return f"expiry {expires_at!r} is neither NULL nor an integer >= 1 (ms since the epoch)"


@dataclass(frozen=True)
class BadRow:
    """A row whose version or expiry is out of range (:func:`version_problem`, :func:`expiry_problem`).

    Only written around the core (a tool editing the tables, or damage):
    reads of it fail or misjudge its expiry, and writes would continue from
    a wrong version. ``verify(repair=True)`` fixes it deterministically, as
    :attr:`fix` says: a row with a bad expiry is removed as expired (an
    expiry that cannot be read is taken as past, so data meant to expire
    never comes back; its version, or a fresh one if that is bad too,
    raises the namespace's floor); a row with only a bad version gets a
    fresh version above every version of its namespace and the floor, so
    versions keep increasing and no stale compare-and-swap can succeed.
    """

    namespace: str
    #: The raw stored key.
    key: bytes
    #: The bytes it takes in its namespace's usage: ``len(key) + len(value)``.
    size: int
    #: What is wrong, e.g. ``version -5 is not an integer in 1..9223372036854775807``.
    problem: str
    #: What a repair does (or did): ``removed as expired`` or ``given version 12``.
    fix: str
    #: Whether the fix removes the row (its bytes then leave the usage counters).
    removed: bool

    def describe(self) -> str:
        """``component 'app', key 'b' (version -5 is not ...; given version 12)``."""
        key = self.key.decode(errors="backslashreplace")
        return f"component {self.namespace!r}, key {key!r} ({self.problem}; {self.fix})"


@dataclass(frozen=True)
class VerifyReport:
    """What :meth:`StorageBackend.verify` found (and, with ``repair=True``, fixed).

    Totals (``namespaces``, ``keys``, ``bytes``) come from the recount of the
    data, not from the counters. ``mismatches`` are the counters that
    disagreed with the data; ``repaired`` says they were rewritten.
    ``problems`` are damage found by the engine's own integrity check, one
    sentence each naming the fix; a recount cannot fix those. ``bad_keys`` are
    stored keys that break the key rules (unreachable through the API); they
    are not counted in the totals, and ``repaired`` says they were removed.
    ``bad_rows`` are rows whose version or expiry is out of range
    (:class:`BadRow`); ``repaired`` says their fix was applied, and rows the
    fix removes are not counted in the totals.
    """

    #: The store, as its messages name it (a path, "PostgreSQL at host:port/db", ...).
    store: str
    #: Namespaces that hold at least one key.
    namespaces: int = 0
    keys: int = 0
    #: Sum of ``len(key) + len(value)`` over every key, in bytes.
    bytes: int = 0
    mismatches: tuple[CounterMismatch, ...] = ()
    problems: tuple[str, ...] = ()
    #: Stored keys that break the key rules (removed when ``repaired``).
    bad_keys: tuple[BadKey, ...] = ()
    #: Rows whose version or expiry is out of range (fixed when ``repaired``).
    bad_rows: tuple[BadRow, ...] = ()
    repaired: bool = False
    #: What was checked, e.g. ``("usage counters", "PRAGMA integrity_check")``.
    checks: tuple[str, ...] = field(default=("usage counters",))
    #: False when damage stopped the recount: the totals are then unknown (``None`` in :meth:`as_dict`).
    recounted: bool = True

    @property
    def ok(self) -> bool:
        """Whether the store is sound now: no engine damage, and every counter right (or rewritten)."""
        return not self.problems and (self.repaired or not (self.mismatches or self.bad_keys or self.bad_rows))

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-serialisable data (the shape of ``airssys-storage verify --json``)."""
        return {
            "store": self.store,
            "ok": self.ok,
            "recounted": self.recounted,
            "namespaces": self.namespaces if self.recounted else None,
            "keys": self.keys if self.recounted else None,
            "bytes": self.bytes if self.recounted else None,
            "checks": list(self.checks),
            "problems": list(self.problems),
            "repaired": self.repaired,
            "bad_keys": [
                {"namespace": b.namespace, "key_hex": b.key.hex(), "bytes": b.size, "problem": b.problem}
                for b in self.bad_keys
            ],
            "bad_rows": [
                {
                    "namespace": r.namespace,
                    "key_hex": r.key.hex(),
                    "bytes": r.size,
                    "problem": r.problem,
                    "fix": r.fix,
                    "removed": r.removed,
                }
                for r in self.bad_rows
            ],
            "mismatches": [
                {
                    "namespace": m.namespace,
                    "stored": {"bytes": m.stored.bytes, "keys": m.stored.keys},
                    "actual": {"bytes": m.actual.bytes, "keys": m.actual.keys},
                }
                for m in self.mismatches
            ],
        }


def compare_usage(stored: Mapping[str, Usage], actual: Mapping[str, Usage]) -> tuple[CounterMismatch, ...]:
    """The namespaces whose *stored* counter differs from the *actual* recount, sorted.

    A namespace missing from either side counts as ``Usage()`` there (a
    cleared namespace may keep a zero counter, and that is right).
    """
    empty = Usage()
    return tuple(
        CounterMismatch(ns, stored.get(ns, empty), actual.get(ns, empty))
        for ns in sorted(set(stored) | set(actual))
        if stored.get(ns, empty) != actual.get(ns, empty)
    )


def verify_report(
    store: str,
    stored: Mapping[str, Usage],
    actual: Mapping[str, Usage],
    *,
    problems: Iterable[str] = (),
    bad_keys: Iterable[BadKey] = (),
    bad_rows: Iterable[BadRow] = (),
    repaired: bool = False,
    checks: Iterable[str] = ("usage counters",),
    recounted: bool = True,
) -> VerifyReport:
    """The :class:`VerifyReport` for a recount: the one place that turns counters into a report.

    *actual* is the recount of every stored record, *bad_keys* included: their
    sizes are taken off here, since the counters must not count them (a
    repair removes them); so are those of the *bad_rows* whose fix removes them.
    """
    bad = tuple(bad_keys)
    rows = tuple(bad_rows)
    gone: list[BadKey | BadRow] = [*bad, *(row for row in rows if row.removed)]
    if gone:
        recount = {ns: [usage.bytes, usage.keys] for ns, usage in actual.items()}
        for found in gone:
            entry = recount.setdefault(found.namespace, [0, 0])
            entry[0] -= found.size
            entry[1] -= 1
        actual = {ns: Usage(used, count) for ns, (used, count) in recount.items()}
    live = [usage for usage in actual.values() if usage.keys]
    from .hostmeta import is_host_namespace  # light modules; not at import (plugins import this one)
    from .manifest import COMPONENT_ID_PATTERN

    foreign = sorted(
        ns for ns in {*stored, *actual} if COMPONENT_ID_PATTERN.fullmatch(ns) is None and not is_host_namespace(ns)
    )
    problems = [
        *problems,
        *(
            f"{store} holds namespace {ns!r}, which is no valid component id (written around airssys-storage): "
            "no component can reach its data and operator commands refuse it; remove it with the engine's own "
            "tools, or restore a backup"
            for ns in foreign
        ),
    ]
    return VerifyReport(
        store=store,
        namespaces=len(live),
        keys=sum(usage.keys for usage in live),
        bytes=sum(usage.bytes for usage in live),
        mismatches=compare_usage(stored, actual),
        problems=tuple(problems),
        bad_keys=bad,
        bad_rows=rows,
        repaired=repaired,
        checks=tuple(checks),
        recounted=recounted,
    )


def operator_command(command: str, url: str, options: Mapping[str, Any] | None = None) -> str:
    """``airssys-storage COMMAND --url URL [--backend-options JSON]``, quoted for a POSIX shell.

    The one way messages name a command on a store (verify, repair, ...), so
    that running it reaches the same store: *options* are the backend options
    that select it (see :meth:`StorageBackend.selecting_options`; never
    secrets), and *url* is shown with its password redacted.
    """
    from .plugins import redact_url  # plugins imports this module

    parts = ["airssys-storage", *command.split(), "--url", shlex.quote(redact_url(url))]
    if options:
        text = json.dumps(dict(options), separators=(",", ":"), sort_keys=True)
        parts += ["--backend-options", shlex.quote(text)]
    return " ".join(parts)


def key_successor(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with *prefix*.

    ``None`` when there is none (the prefix is empty or all ``0xff``), meaning
    the range is unbounded above. Prefix queries are ``key >= prefix AND key <
    key_successor(prefix)``: index range scans, never ``LIKE``.
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def quota_exceeded(namespace: str, used: int, delta: int, limit: int) -> QuotaExceeded:
    """The one error for a refused write, so every backend says the same.

    The backend does not know what set *limit*: the core completes the message
    with the quota strategy's :meth:`~airssys_storage.QuotaStrategy.describe_limit`
    (see :meth:`QuotaExceeded.with_source`) when the error passes through it.
    """
    detail = (
        f"quota exceeded for component {namespace!r}: the write needs {delta} more bytes, "
        f"{used} of {limit} bytes are used"
    )
    return QuotaExceeded(f"{detail}; delete data or raise the component's quota", detail=detail)


class StorageBackend(abc.ABC):
    """Base class of storage backends: the contract every backend plugin implements (contract v2).

    Subclasses set :attr:`name`, :attr:`url_schemes`, :attr:`capabilities`
    and (if they take options) :attr:`Options`, implement :meth:`open` and the
    abstract primitives, and may override the others for speed. :class:`airssys_storage.testing.BackendConformance`
    checks every rule below.

    Data model: a namespace (a validated component id, ASCII) and a key
    (``bytes``, see :data:`Change`) arrive separately and must stay apart in
    the physical layout: no ``"<namespace>:<key>"`` strings, no ``LIKE``.
    Listings are ordered bytewise by key and use half-open ranges
    (``start <= key < end``, ``end=None`` unbounded; see :func:`key_successor`).
    Values are opaque ``bytes``. Validation, permissions and the choice of the
    limit happen in the core, never in the backend.

    Rows: every stored key is a *row* holding its value, its **version** (an
    unsigned 64-bit number) and its **expiry** (``expires_at``: milliseconds
    since the Unix epoch, or ``None``). Each namespace has one counter row:
    usage (bytes and keys, expired rows included until removed) and the
    version *floor* (:class:`~airssys_storage.planner.SpaceState`). A row with
    ``expires_at <= self.clock()`` is expired: every read (:meth:`get`,
    :meth:`get_entry`, :meth:`get_many`, :meth:`has`, :meth:`items`,
    :meth:`keys`) treats it as absent, exactly, while it stays charged in
    :meth:`usage` until a write removes it. Only rows that have an expiry
    need the clock: a read of a row without one must not call it.

    Writes, one rule in one place: every write goes through
    :func:`airssys_storage.planner.plan`, which decides the guard rule
    (quota), versions, expiry, conditions (compare-and-swap), counters and
    operation ids. A backend's :meth:`apply` is: open the atomic section,
    read the old row of each written key (:class:`~airssys_storage.planner.KeyState`,
    with the value where :attr:`~airssys_storage.planner.Write.needs_value`;
    a :attr:`~airssys_storage.planner.WriteKind.RECORD` changes no row and may
    name a key another write of the commit writes: its old state is ignored,
    so pass ``None``), the namespace's counter row and the recorded results of
    the writes' ``op_id`` s (a RECORD's too), call ``plan(namespace, writes, old, space, limit,
    self.clock(), done_ops)``, write the plan's ``puts`` and ``deletes``, the
    counter row (when ``space_changed``) and the ``op_records`` (with the
    time, for retention), close the section, return the plan. When ``plan``
    raises, nothing is written. A specialised hot path (:meth:`put_one`,
    :meth:`compare_and_swap_one`, :meth:`increment_one`, :meth:`delete_one`)
    may skip the planner only where a benchmark shows it pays, and must give
    exactly what the planner gives (the conformance suite's differential
    tests check it).

    Thread safety: one backend object serves every component and thread of
    a host, and the core takes no lock. Every method may be called from
    several threads at once and each call must be atomic: a reader sees a
    commit entirely or not at all, and the read of old rows, the plan and
    the write of a commit cannot interleave with another commit of the same
    namespace. Across processes the same holds only with
    ``capabilities.multi_process`` (see :class:`Capabilities`); a handle must
    never be shared silently with a forked child.

    Errors, which the core passes on to callers unchanged:

    - the planner refuses a write: :class:`~airssys_storage.QuotaExceeded`,
      :class:`~airssys_storage.PreconditionFailed`,
      :class:`~airssys_storage.InvalidArgument` (a counter that holds no
      integer, or overflows) — raised by :func:`~airssys_storage.planner.plan`,
      passed on as they are;
    - :meth:`open` gets a URL or *options* it cannot use (missing driver, an
      option that does not apply to this URL; unknown options, wrong types and
      ranges are refused earlier, by :meth:`parse_options` against
      :attr:`Options`): :class:`~airssys_storage.ConfigurationError` naming
      the setting and the fix;
    - the store fails (unreachable server, I/O error, damaged files, in use by
      another process): :class:`~airssys_storage.InternalError` naming the
      path or URL (password redacted) and the command or setting that helps;
      when a commit's outcome is unknown (connection lost during it),
      :class:`~airssys_storage.OutcomeUnknown`.

    Any other exception escaping a method is wrapped by the core in an
    ``internal-error`` with the exception's type, which names no fix: raise
    the errors above instead. Never raise :class:`~airssys_storage.InvalidKey`
    or :class:`~airssys_storage.PermissionDenied`; the core has checked those.
    """

    #: Unique backend name (shown by ``airssys-storage plugins``).
    name: ClassVar[str]
    #: URL schemes served, without ``+driver`` suffixes.
    url_schemes: ClassVar[tuple[str, ...]] = ()
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: This backend's ``backend_options``: a class pydantic validates with unknown keys refused (a
    #: pydantic model with ``model_config = ConfigDict(extra="forbid")``, or a stdlib dataclass with
    #: ``__pydantic_config__ = FORBID_EXTRA`` and :func:`~airssys_storage.options.option` fields), every
    #: field with a default, a description and its unit. ``None``: the options reach :meth:`open` as given
    #: (a mapping), unchecked. See :meth:`parse_options`.
    Options: ClassVar[type[Any] | None] = None

    #: The time in milliseconds since the Unix epoch. The core sets it on the
    #: open backend (the manager's clock, injectable for tests); backends call
    #: it only when a row has an expiry, and once per :meth:`apply`.
    clock: Callable[[], int] = staticmethod(wall_clock_ms)
    #: How long a recorded ``op_id`` result is kept, in milliseconds (the core
    #: sets it from the settings; at least 10 minutes by default). A backend
    #: may drop records older than ``clock() - op_retention_ms``, and must keep
    #: younger ones.
    op_retention_ms: int = DEFAULT_OP_RETENTION_MS

    @classmethod
    def parse_options(cls, options: Any) -> Any:
        """*options* (``backend_options``) validated against :attr:`Options`: an instance of it.

        The core calls it once, before :meth:`exists`, :meth:`open` and
        :meth:`repair_url` (and ``airssys-storage config --check`` without
        opening anything), and passes them the result. An instance of
        :attr:`Options` passes through unchanged, so a backend whose
        classmethods may also be called directly with a plain mapping (tests,
        scripts) starts them with ``options = cls.parse_options(options)``
        at no cost. Unknown keys, wrong types and values out of range raise
        :class:`~airssys_storage.ConfigurationError` naming the option, the
        problem and the fix. Without :attr:`Options`, *options* is returned as
        given (it must be a mapping). Empty options become ``Options()``
        without importing pydantic when :attr:`Options` is a dataclass. Do
        not override: this is the one rule every backend's options follow.
        """
        from .options import parse_options

        return parse_options(cls.Options, options, table="backend_options", owner=f"backend {cls.name!r}")

    @classmethod
    @abc.abstractmethod
    def open(cls, url: str, options: Any) -> StorageBackend:
        """Open (creating if needed) the store at *url* with its validated *options*.

        *options* is what :meth:`parse_options` returns: an instance of
        :attr:`Options`, or, for a backend that declares none, the
        ``backend_options`` mapping as given (``Mapping[str, Any]``). A problem
        only the URL reveals (an option that does not apply to this engine)
        is a :class:`~airssys_storage.ConfigurationError` naming the option.
        Callers that must not create a store (read-only operator commands)
        ask :meth:`exists` first; implement it if the backend can tell.
        """

    # -- reads (expired rows are absent; see the class docs) ---------------

    @abc.abstractmethod
    def get(self, namespace: str, key: bytes) -> bytes | None:
        """The value of live *key*, or ``None`` (missing or expired)."""

    @abc.abstractmethod
    def get_entry(self, namespace: str, key: bytes) -> KeyState | None:
        """The live row of *key* with its value (``KeyState(size, version, expires_at, value)``), or ``None``."""

    def get_many(self, namespace: str, keys: Sequence[bytes]) -> list[bytes | None]:
        """The values of *keys*, in order, ``None`` for missing or expired ones, all from one moment."""
        return [self.get(namespace, key) for key in keys]

    def has(self, namespace: str, key: bytes) -> bool:
        """Whether *key* is live."""
        return self.get(namespace, key) is not None

    @abc.abstractmethod
    def items(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        """At most *limit* live ``(key, value)`` pairs with ``start <= key < end``, ordered bytewise.

        ``end=None`` means no upper bound. Expired rows are skipped and do
        not count towards *limit*.
        """

    def keys(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[bytes]:
        """Like :meth:`items` but keys only (override to avoid reading values)."""
        return [key for key, _ in self.items(namespace, start, end, limit)]

    @abc.abstractmethod
    def usage(self, namespace: str) -> Usage:
        """The namespace's usage counter (O(1), expired rows included until removed); zeros when empty."""

    # -- writes (all decided by airssys_storage.planner.plan) --------------

    @abc.abstractmethod
    def apply(self, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        """Apply *writes* (distinct keys) atomically as :func:`~airssys_storage.planner.plan` decides.

        *limit* is the quota in bytes (``None``: unlimited). Returns the plan
        that was applied (its ``results`` answer the writes in order).
        Nothing is applied when it raises. See the class docs for the shape.
        """

    def put_one(self, namespace: str, key: bytes, value: bytes, limit: int | None) -> int:
        """A plain put of one key (no expiry, no condition); returns the new version.

        Exactly ``apply(namespace, [Write(key, WriteKind.PUT, value)], limit).results[0]``;
        override for a faster single-key path (the semantics must not change).
        """
        from .planner import Write, WriteKind

        return self.apply(namespace, (Write(key, WriteKind.PUT, value),), limit).results[0]

    def put_many(self, namespace: str, keys: Sequence[bytes], values: Sequence[bytes], limit: int | None) -> list[int]:
        """Plain puts of distinct *keys* (no expiry, no condition) in one commit; returns their new versions.

        ``values[i]`` is the value of ``keys[i]``. Exactly
        ``apply(namespace, [Write(key, WriteKind.PUT, value) for ...], limit).results``;
        override for a faster path (the semantics must not change; the
        conformance suite's differential test compares it with :meth:`apply`).
        """
        from .planner import Write, WriteKind

        put = WriteKind.PUT
        writes = [Write(key, put, value) for key, value in zip(keys, values, strict=True)]
        return self.apply(namespace, writes, limit).results

    def compare_and_swap_one(self, namespace: str, key: bytes, value: bytes, version: int, limit: int | None) -> int:
        """A put of one key (no expiry) only if it is at *version* now (``0``: absent); returns the new version.

        Exactly ``apply(namespace, [Write(key, WriteKind.PUT, value, if_version=version)], limit).results[0]``
        (so a failed condition raises :class:`~airssys_storage.PreconditionFailed` and writes
        nothing); override for a faster single-key path (the semantics must not change; the
        conformance suite's differential test compares it with :meth:`apply`).
        """
        from .planner import Write, WriteKind

        return self.apply(namespace, (Write(key, WriteKind.PUT, value, None, version),), limit).results[0]

    def increment_one(self, namespace: str, key: bytes, delta: int, limit: int | None) -> int:
        """Add *delta* to the counter under one key (no operation id); returns the counter's new value.

        Exactly ``apply(namespace, [Write(key, WriteKind.INCREMENT, delta=delta)], limit).results[0]``
        (the rule: :func:`~airssys_storage.planner.add_to_counter`); override for a faster
        single-key path (the semantics must not change; the conformance suite's differential
        test compares it with :meth:`apply`).
        """
        from .planner import Write, WriteKind

        return self.apply(namespace, (Write(key, WriteKind.INCREMENT, b"", None, None, delta),), limit).results[0]

    def delete_one(self, namespace: str, key: bytes) -> bool:
        """Delete one key; returns whether a live key was removed (an expired row is removed too).

        Exactly ``apply(namespace, [Write(key, WriteKind.DELETE)], None).results[0] == 1``;
        override for a faster path (the semantics must not change).
        """
        from .planner import Write, WriteKind

        return self.apply(namespace, (Write(key, WriteKind.DELETE),), None).results[0] == 1

    @abc.abstractmethod
    def delete_range(
        self, namespace: str, start: bytes, end: bytes | None, *, expired_only: bool = False, limit: int | None = None
    ) -> Plan:
        """Remove every row with ``start <= key < end`` (``end=None``: unbounded) in one atomic step.

        Read the rows in the range (size, version, expiry) inside the atomic
        section and apply the plan of one ``WriteKind.DELETE`` write per row
        (``WriteKind.SWEEP`` with *expired_only*: only rows expired at the
        plan's ``now`` go). At most *limit* rows are removed (the first in key
        order; ``None``: all), so a sweep can be done in bounded steps. The
        plan gets no quota limit: removing never grows usage. ``sum(plan.results)`` is the number of live keys removed
        (with *expired_only*, of expired rows swept). A backend with an
        expiry index may read only the expired rows for *expired_only*.
        """

    @abc.abstractmethod
    def clear(self, namespace: str) -> None:
        """Delete every row of *namespace* and reset its usage to zero, atomically.

        The version floor is kept and raised to the highest removed version
        (a key written after a clear gets a version above any it had before).
        """

    # -- change feed (capabilities.change_feed; see airssys_storage.changes) ------

    #: Namespaces whose commits append to their change log, with how the log is kept. Empty (and
    #: shared, read-only) until :meth:`enable_changes` gives the instance its own.
    feeds: Mapping[str, FeedConfig] = MappingProxyType({})
    #: Seconds between checks of :meth:`change_bounds` while :meth:`wait_for_changes` waits, for
    #: writers in other processes (multi-process backends); ``None``: same-process wake-ups only.
    change_poll_seconds: float | None = None
    _change_signal: ChangeSignal | None = None

    def enable_changes(self, namespace: str, feed: FeedConfig | None) -> None:
        """Log the commits of *namespace* as *feed* says (``None``: stop logging). The core calls it.

        The first call routes the hot paths (:meth:`put_one`, :meth:`put_many`,
        :meth:`compare_and_swap_one`, :meth:`increment_one`,
        :meth:`delete_one`) of namespaces in :attr:`feeds` to this base
        class's versions, which commit through :meth:`apply`: a backend then
        appends events in :meth:`apply`, :meth:`delete_range` and :meth:`clear`
        only, and a store where no component enabled the feed runs its hot
        paths untouched. A backend with a faster logged variant of one of
        them defines it as ``<name>_logged`` (e.g. ``put_one_logged``, same
        arguments and result), which is then routed to instead. Backends that need storage for the log (tables)
        extend this to create it. Without ``capabilities.change_feed`` it
        raises :class:`~airssys_storage.ConfigurationError`.
        """
        if not self.capabilities.change_feed:
            raise ConfigurationError(
                f"backend {self.name!r} keeps no change feed, so component {namespace!r} cannot set "
                "permissions.storage.changes = true: remove it (or the setting changes_default), or use a backend "
                "whose capabilities include change_feed "
                "(memory://, sqlite, postgresql, mysql, leveldb, rocksdb, lmdb, redis)"
            )
        feeds = vars(self).get("feeds")
        if feeds is None:
            from .changes import ChangeSignal

            feeds = {}
            self.feeds = feeds
            self._change_signal = ChangeSignal()
            for name in ("put_one", "put_many", "compare_and_swap_one", "increment_one", "delete_one"):
                fast = getattr(self, name)
                general = getattr(self, f"{name}_logged", None) or getattr(StorageBackend, name).__get__(self)
                setattr(self, name, (_routed3 if name in _THREE_ARGUMENTS else _routed)(feeds, fast, general))
        if feed is None:
            feeds.pop(namespace, None)
        else:
            feeds[namespace] = feed

    def read_changes(self, namespace: str, since: int, limit: int) -> ChangeBatch:
        """The namespace's records with ``seq > since`` (at most *limit*, in order), its oldest retained and last seq.

        All from one moment (one read transaction). Only with ``capabilities.change_feed``.
        """
        raise ConfigurationError(f"backend {self.name!r} keeps no change feed")

    def change_bounds(self, namespace: str) -> tuple[int, int]:
        """``(oldest retained seq, last seq)`` of the namespace's change log, cheaply (``(1, 0)``: none yet)."""
        raise ConfigurationError(f"backend {self.name!r} keeps no change feed")

    def notify_changes(self, namespace: str) -> None:
        """Wake this process's readers of *namespace*: call it after a commit that appended events."""
        signal = self._change_signal
        if signal is not None:
            signal.notify()

    def wait_for_changes(self, namespace: str, after: int, timeout: float) -> bool:
        """Wait up to *timeout* seconds until the namespace's last seq passes *after*; returns whether it did.

        Same-process commits wake it at once (:meth:`notify_changes`);
        commits of other processes are seen by checking :meth:`change_bounds`
        every :attr:`change_poll_seconds`. Backends with a push channel
        (PostgreSQL ``LISTEN``) call :meth:`notify_changes` from it.
        """
        from .changes import ChangeSignal, monotonic

        if self._change_signal is None:
            self._change_signal = ChangeSignal()
        signal = self._change_signal
        deadline = monotonic() + timeout
        poll = self.change_poll_seconds
        while True:
            generation = signal.generation
            if self.change_bounds(namespace)[1] > after:
                return True
            remaining = deadline - monotonic()
            if remaining <= 0:
                return False
            signal.wait(generation, remaining if poll is None else min(poll, remaining))

    # -- administration ------------------------------------------------------

    @abc.abstractmethod
    def namespaces(self) -> list[str]:
        """The namespaces that hold at least one key, sorted."""

    def check_limits(self, max_key_bytes: int, max_value_bytes: int) -> None:  # noqa: B027 - optional hook
        """Refuse limits this store cannot hold: raise :class:`~airssys_storage.ConfigurationError`.

        The core calls it once, right after :meth:`open`, with the settings'
        ``max_key_bytes`` and ``max_value_bytes`` (bytes). A backend whose engine
        cannot store a key or value that large (a column width, a server's
        packet size) raises naming the setting, the engine's limit and the fix,
        so that the problem shows at start-up rather than as a failed write.
        The default accepts any limits.
        """

    @classmethod
    def exists(cls, url: str, options: Any) -> bool | None:
        """Whether a store exists at *url*, without creating or changing anything; ``None`` if unknown.

        *options* as :meth:`open` gets them.

        :meth:`open` creates a missing store. Operator commands that only read
        (``verify``, ``export``, ``migrate --from``, ``keys``, ``get``,
        ``size``) ask first (:meth:`StorageManager.from_settings` with
        ``existing=True``) and refuse a URL where this returns ``False``, so
        a mistyped path is an error naming it instead of a new, empty store.
        Answer from the file system only (a file, a directory); return
        ``None`` (the default) when that cannot tell, e.g. for a database
        server, whose missing tables a read command then creates.
        """
        return None

    @classmethod
    def selecting_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """Those of *options* (``backend_options`` as given, not parsed) that choose which store a URL opens.

        E.g. the SQL backend's ``table_prefix``.

        Commands named in messages (:func:`operator_command`) carry them, so
        that following a hint reaches the same store. Never return secrets.
        The default: none.
        """
        return {}

    def stats(self) -> dict[str, Any]:
        """Backend-specific statistics for operators (JSON-serialisable)."""
        return {}

    @classmethod
    def repair_url(cls, url: str, options: Any) -> dict[str, Any]:
        """Repair the damaged store at *url* (not open anywhere) and recount its usage.

        *options* as :meth:`open` gets them.

        Only for backends declaring ``capabilities.repair``; returns a report
        for operators (JSON-serialisable). A classmethod, because a store too
        damaged to open must still be repairable.
        """
        raise NotImplementedError(f"backend {cls.name!r} cannot repair")

    def verify(self, repair: bool = False, progress: Callable[[int], None] | None = None) -> VerifyReport:
        """Recount usage from the data, compare it with the counters, and run the engine's integrity check.

        With *repair*, counters that disagree with the data are rewritten in
        one atomic step (what a recount can fix), and stored keys that break
        the key rules (:func:`key_problem`: not UTF-8, a control character;
        unreachable through the API) are removed and listed in the report's
        ``bad_keys``; without it they are reported there, and the report is
        not ``ok``. Damage found by the
        engine's integrity check is reported in ``problems``, never fixed
        here. *progress*, if given, is called with the number of keys
        recounted since its last call (for progress bars).

        A method of the open store, not a classmethod: a recount needs the
        store readable. A store too damaged to open is the job of
        :meth:`repair_url` (backends declaring ``capabilities.repair``).

        Backends override this. The default reads through the public
        primitives: it cannot repair counters (``repair=True`` raises
        :class:`~airssys_storage.ConfigurationError` when a counter is
        wrong; it removes bad keys with :meth:`apply`), has no integrity check, is exact only while no one
        writes, and sees only live rows (a backend holding expired rows must override it).
        """
        stored: dict[str, Usage] = {}
        actual: dict[str, Usage] = {}
        bad: list[BadKey] = []
        for namespace in self.namespaces():
            stored[namespace] = self.usage(namespace)
            used = count = 0
            start = b""
            while True:
                page = self.items(namespace, start, None, 1000)
                for key, value in page:
                    used += len(key) + len(value)
                    problem = key_problem(key)
                    if problem is not None:
                        bad.append(BadKey(namespace, key, len(key) + len(value), problem))
                count += len(page)
                if progress is not None and page:
                    progress(len(page))
                if len(page) < 1000:
                    break
                start = page[-1][0] + b"\x00"
            actual[namespace] = Usage(used, count)
        report = verify_report(type(self).__name__, stored, actual, bad_keys=bad)
        if not repair:
            return report
        if report.bad_keys:  # removable through the primitives: commit deletes them and their bytes
            from .planner import Write, WriteKind

            for found in report.bad_keys:
                self.apply(found.namespace, (Write(found.key, WriteKind.DELETE),), None)
            report = replace(self.verify(), bad_keys=report.bad_keys)
        if report.mismatches:
            raise ConfigurationError(
                f"backend {self.name!r} cannot repair its usage counters: it does not implement verify(repair=True)"
            )
        return replace(report, repaired=True)

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release every resource; the backend is unusable afterwards."""
