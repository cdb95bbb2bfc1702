"""Run WebAssembly components against a component's storage.

::

    host = Host()                                   # engine + compile cache
    guest = host.load("counter.wasm")               # compile (or load from cache), check imports
    with host.instantiate(guest, storage) as instance:   # one Store
        print(instance.call("run"))

The imports of ``airssys:wasm/storage@0.1.0`` (and of the extension
interfaces) are served by the given :class:`~airssys_storage.ComponentStorage`.
Storage errors reach the guest as ``storage-error`` values; they never trap
it. A trap, or a failure of the host while serving the guest, raises
:class:`~.GuestTrap` naming the guest and the export, and discards the
instance.

Every call into a guest runs within :class:`~.SandboxLimits` (the host's, or
a component's lower ones): a time limit (wasmtime epoch interruption, checked
every :data:`TICK_SECONDS`; past it :class:`~.GuestTimeout`), limits on
linear memory, tables and instances (the store's limiter), and a cap on the
bytes one storage call moves (past it the call returns ``value-too-large`` to
the guest). A SIGINT (Ctrl-C) delivered to the main thread stops a guest
running there within one tick: the call raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from airssys_storage import InvalidArgument, InvalidKey, StorageError, ValueTooLarge

from . import _compat
from ._calls import Case
from .errors import GuestError, GuestLimitExceeded, GuestTimeout, GuestTrap, InvalidGuest
from .limits import DEFAULT_LIMITS, SandboxLimits, format_bytes

if TYPE_CHECKING:
    from airssys_storage import Transaction

    from ._cache import CompileCache
    from .subscriptions import DeliveryReport

__all__ = ["CACHE_DIR_ENV", "TICK_SECONDS", "Guest", "GuestInstance", "Host", "default_cache_dir"]

log = logging.getLogger(__name__)

#: Environment variable that overrides the compile cache directory.
CACHE_DIR_ENV = "AIRSSYS_STORAGE_WASMTIME_CACHE_DIR"

#: How often the engine's epoch advances while a guest runs: the resolution of
#: time limits and of Ctrl-C.
TICK_SECONDS = 0.01
#: wasmtime's per-call budget for values lifted out of a guest (``Store::set_hostcall_fuel``,
#: not reachable through the C API wasmtime-py uses), and what one byte of a ``list<u8>`` costs of it.
HOSTCALL_FUEL = 128 * 1024 * 1024
HOSTCALL_FUEL_PER_BYTE = 48
_HOSTCALL_FUEL_MESSAGE = "fuel allocated for hostcalls has been exhausted"

#: The WASI 0.2 packages a guest may import: those ``Linker.add_wasip2`` links (wasmtime-wasi's
#: command world; its ``WasiConfig`` grants no preopened directory and no socket address).
#: wasi:http is not linked: a guest gets no network.
WASI_PACKAGES = ("wasi:cli/", "wasi:clocks/", "wasi:filesystem/", "wasi:io/", "wasi:random/", "wasi:sockets/")

_CORE_MODULE_HEADER = b"\x00asm\x01\x00\x00\x00"
_COMPONENT_HEADER = b"\x00asm\x0d\x00\x01\x00"


def default_cache_dir() -> Path:
    """``$AIRSSYS_STORAGE_WASMTIME_CACHE_DIR``, else ``wasmtime/`` in the user cache directory."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit)
    import platformdirs

    return Path(platformdirs.user_cache_dir("airssys-storage")) / "wasmtime"


def _summary(error: BaseException) -> str:
    """The cause of a wasmtime error in one line (wasmtime puts it after 'Caused by:')."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if "Caused by:" in lines:
        lines = lines[lines.index("Caused by:") + 1 :]
    return "; ".join(lines[:3]) if lines else type(error).__name__


@dataclass(frozen=True)
class Guest:
    """A compiled component and what it imports and exports."""

    name: str
    sha256: str
    component: Any = field(repr=False)
    #: The host functions it imports, as ``interface#function``.
    imports: tuple[str, ...]
    #: Whether it imports WASI (componentize-py guests do).
    needs_wasi: bool
    #: Exported functions (``name`` or ``interface#name``) and their types in WIT syntax.
    exports: dict[str, str]
    #: The same functions' wasmtime ``FuncType`` objects.
    export_types: dict[str, Any] = field(repr=False)


class Host:
    """Compiles guests, caching compiled code on disk, and instantiates them.

    One wasmtime ``Engine`` per host; every :meth:`instantiate` creates its own
    ``Store``. *cache_dir* defaults to :func:`default_cache_dir`; compiled
    code is kept under ``wasmtime-<version>/<sha256 of the guest>.cwasm``.
    Pass ``cache=False`` to compile every time.

    *limits* (default :data:`~.DEFAULT_LIMITS`) bound every call into a
    guest of this host; :meth:`instantiate` can lower them per component.
    ``engine`` has epoch interruption enabled: a ``Store`` made on it
    elsewhere must set its own epoch deadline (``store.set_epoch_deadline``).

    The cache holds native code, so it is used only when its directory is
    private to the user running the host (created with mode 0700 when
    missing; otherwise the host compiles without it and logs a warning), and
    an entry is run only when its HMAC under the cache's secret key verifies
    (otherwise the guest is compiled again, with a warning). See
    :mod:`airssys_storage_wasmtime._cache`.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        cache: bool = True,
        limits: SandboxLimits | None = None,
    ) -> None:
        _compat.ensure_ready()
        from wasmtime import Config, Engine

        config = Config()
        config.epoch_interruption = True
        self.engine = Engine(config)
        self.limits = limits or DEFAULT_LIMITS
        self._ticker = _EpochTicker(self.engine)
        self.wasmtime_version = _compat.wasmtime_version()
        from ._cache import CompileCache

        self._cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.cache_dir: Path | None = (
            CompileCache.directory_for(self._cache_root, self.wasmtime_version) if cache else None
        )
        self._cache: CompileCache | None = None
        self._cache_opened = self.cache_dir is None
        self._cache_lock = threading.Lock()

    # -- loading ---------------------------------------------------------------

    def load(self, source: str | os.PathLike[str] | bytes, name: str | None = None) -> Guest:
        """Compile the component at path *source* (or given as bytes): binary or component text."""
        if isinstance(source, (bytes, bytearray)):
            data = bytes(source)
            name = name or "<bytes>"
        else:
            path = Path(source)
            name = name or path.name
            data = _read(path)
        sha256 = hashlib.sha256(data).hexdigest()
        component = self._compile(data, sha256, name)
        imports, needs_wasi = self._check_imports(component, name)
        export_types = self._export_types(component)
        from ._codec import describe

        return Guest(
            name=name,
            sha256=sha256,
            component=component,
            imports=imports,
            needs_wasi=needs_wasi,
            exports={export: describe(ty) for export, ty in export_types.items()},
            export_types=export_types,
        )

    def _compile(self, data: bytes, sha256: str, name: str) -> Any:
        from wasmtime import WasmtimeError
        from wasmtime.component import Component

        if data.startswith(_CORE_MODULE_HEADER):
            raise InvalidGuest(
                f"guest {name!r} is a core WebAssembly module, not a component: "
                "make a component of it (e.g. wasm-tools component new)"
            )
        if not data.startswith(_COMPONENT_HEADER) and not _looks_like_text(data):
            raise InvalidGuest(f"guest {name!r} is neither a WebAssembly component nor component text (.wat)")
        cache = self._compile_cache()
        if cache is not None:
            cached = cache.load(self.engine, sha256)
            if cached is not None:
                return cached
        try:
            component = Component(self.engine, data)
        except WasmtimeError as exc:
            raise InvalidGuest(f"guest {name!r} is not a valid WebAssembly component: {_summary(exc)}") from None
        if cache is not None:
            cache.store(sha256, component)
        return component

    def _compile_cache(self) -> CompileCache | None:
        """The compile cache, opened (and its directory checked) on first use; ``None`` when not used."""
        if not self._cache_opened:
            with self._cache_lock:
                if not self._cache_opened:
                    from ._cache import CompileCache

                    self._cache = CompileCache.open(self._cache_root, self.wasmtime_version)
                    self._cache_opened = True
        return self._cache

    def _check_imports(self, component: Any, name: str) -> tuple[tuple[str, ...], bool]:
        from wasmtime.component import ComponentInstanceType, FuncType

        from ._codec import describe
        from ._interfaces import BY_INTERFACE

        used: list[str] = []
        needs_wasi = False
        for import_name, item in component.type.imports(self.engine).items():
            provided = BY_INTERFACE.get(import_name)
            if provided is None and import_name.startswith(WASI_PACKAGES):
                needs_wasi = True
                continue
            ty = item.ty
            if provided is None or not isinstance(ty, ComponentInstanceType):
                hint = (
                    ": guests get no network (a ComponentizeJS guest imports wasi:http unless built with "
                    "`componentize-js --disable http fetch-event`)"
                    if import_name.startswith("wasi:http/")
                    else ""
                )
                raise InvalidGuest(
                    f"guest {name!r} imports {import_name!r}, which this host does not provide "
                    f"(it provides {', '.join(sorted(BY_INTERFACE))} and WASI 0.2's "
                    f"{', '.join(package.rstrip('/') for package in WASI_PACKAGES)}){hint}"
                )
            for function_name, export in ty.exports(self.engine).items():
                function_type = export.ty
                if not isinstance(function_type, FuncType):
                    continue  # a type or resource export (storage-error, bucket); checked through the functions
                function = provided.get(function_name)
                if function is None:
                    raise InvalidGuest(
                        f"guest {name!r} imports {import_name}#{function_name}, which this host does not "
                        f"provide (it provides {', '.join(provided) or 'only types'} there)"
                    )
                found = describe(function_type)
                if found != function.wit:
                    raise InvalidGuest(
                        f"guest {name!r} imports {function.qualified_name} with type {found}, but the host "
                        f"provides {function.wit}: rebuild the guest against the shipped WIT"
                    )
                used.append(function.qualified_name)
        return tuple(used), needs_wasi

    def _export_types(self, component: Any) -> dict[str, Any]:
        from wasmtime.component import ComponentInstanceType, FuncType

        exports: dict[str, Any] = {}
        for export_name, item in component.type.exports(self.engine).items():
            ty = item.ty
            if isinstance(ty, FuncType):
                exports[export_name] = ty
            elif isinstance(ty, ComponentInstanceType):
                for function_name, inner in ty.exports(self.engine).items():
                    if isinstance(inner.ty, FuncType):
                        exports[f"{export_name}#{function_name}"] = inner.ty
        return exports

    # -- running ---------------------------------------------------------------

    def instantiate(
        self, guest: Guest, storage: Any, *, inherit_stdio: bool = False, limits: SandboxLimits | None = None
    ) -> GuestInstance:
        """A new instance of *guest* in a new Store, its storage imports served by *storage*.

        *storage* is a :class:`~airssys_storage.ComponentStorage` (or any object
        with its methods). With *inherit_stdio*, a WASI guest's stdout and
        stderr are the host process's; otherwise its output is discarded.
        *limits* (e.g. from the component's manifest,
        :meth:`.SandboxLimits.from_manifest_file`) apply where lower than the
        host's. Instantiation runs within them too: it raises
        :class:`~.GuestTimeout` or :class:`~.GuestTrap` like :meth:`GuestInstance.call`.
        """
        effective = self.limits if limits is None else limits.capped_by(self.limits)
        return GuestInstance(self, guest, storage, inherit_stdio=inherit_stdio, limits=effective)

    def deliver_changes(
        self,
        guest: Guest,
        storage: Any,
        metadata: Any,
        *,
        limits: SandboxLimits | None = None,
        batch_size: int | None = None,
        max_attempts: int | None = None,
        max_batches: int | None = None,
    ) -> DeliveryReport:
        """Deliver the pending changes of *storage*'s subscriptions (manifest ``subscribe``) to ``on-changes``.

        One pass, at least once and in order per subscription, from a cursor
        kept in host metadata: *metadata* is the
        :class:`~airssys_storage.StorageManager` that opened *storage* (its
        ``host_metadata("wasmtime")`` is used) or a
        :class:`~airssys_storage.hostmeta.HostMetadata`. A failing handler
        gets the same batch again, up to *max_attempts* (default 5), then the
        batch is dead-lettered. Call it after commits, or from a loop over
        ``storage.watch()``. See :mod:`airssys_storage_wasmtime.subscriptions`.
        Errors: ``invalid-config`` (no feed, no handler export),
        ``permission-denied``, ``invalid-argument`` (*batch_size*, *max_attempts*).
        """
        from . import subscriptions

        if hasattr(metadata, "host_metadata"):
            metadata = metadata.host_metadata(subscriptions.METADATA_OWNER)
        return subscriptions.deliver_changes(
            self,
            guest,
            storage,
            metadata,
            limits=limits,
            batch_size=subscriptions.DEFAULT_BATCH_SIZE if batch_size is None else batch_size,
            max_attempts=subscriptions.DEFAULT_MAX_ATTEMPTS if max_attempts is None else max_attempts,
            max_batches=max_batches,
        )

    def serve_changes(
        self,
        guest: Guest,
        storage: Any,
        metadata: Any,
        *,
        stop: threading.Event | None = None,
        idle_timeout: float | None = None,
        **options: Any,
    ) -> DeliveryReport:
        """:meth:`deliver_changes` in a loop woken by ``storage.watch()``, until *stop* or *idle_timeout* s idle.

        Returns the passes' reports summed; *options* are :meth:`deliver_changes`'s keyword arguments.
        """
        from . import subscriptions

        if hasattr(metadata, "host_metadata"):
            metadata = metadata.host_metadata(subscriptions.METADATA_OWNER)
        return subscriptions.serve_changes(
            self, guest, storage, metadata, stop=stop, idle_timeout=idle_timeout, **options
        )

    def run(self, source: str | os.PathLike[str] | bytes, storage: Any, export: str = "run", *args: Any) -> Any:
        """Load, instantiate, call *export* once and discard the instance."""
        with self.instantiate(self.load(source), storage) as instance:
            return instance.call(export, *args)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InvalidGuest(f"no such guest file: {str(path)!r}") from None
    except PermissionError:
        raise InvalidGuest(f"permission denied reading guest {str(path)!r}") from None
    except OSError as exc:
        raise InvalidGuest(f"cannot read guest {str(path)!r}: {exc.strerror or exc}") from None


def _looks_like_text(data: bytes) -> bool:
    try:
        text = data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return text.lstrip().startswith(("(", ";;", "(;"))


class _EpochTicker:
    """Advances an engine's epoch every :data:`TICK_SECONDS` while at least one call into a guest runs.

    The thread starts with the first call and ends after a second without any.
    """

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._active = 0
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None

    def enter(self) -> None:
        with self._condition:
            self._active += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="airssys-wasmtime-epoch", daemon=True)
                self._thread.start()
            self._condition.notify()

    def leave(self) -> None:
        with self._condition:
            self._active -= 1

    def _run(self) -> None:
        while True:
            with self._condition:
                if not self._active and not self._condition.wait_for(lambda: self._active > 0, timeout=1.0):
                    self._thread = None
                    return
            time.sleep(TICK_SECONDS)
            self._engine.increment_epoch()


_check_signals = ctypes.pythonapi.PyErr_CheckSignals
_check_signals.restype = ctypes.c_int
_check_signals.argtypes = []


class GuestInstance:
    """One instance of a guest in its own Store. Not thread-safe; close it (or use ``with``).

    After a trap (or a host failure while serving the guest, or a limit) the
    instance is discarded: :meth:`call` then raises :class:`~.GuestError`.

    When *storage*'s manifest says ``transactional = true``, the imports are
    served by :attr:`transaction` (``storage.transaction()`` bounded by the
    limits' ``max_transaction_writes`` and ``max_transaction_bytes``), and
    instantiation and every :meth:`call` commit or discard it.
    """

    def __init__(
        self,
        host: Host,
        guest: Guest,
        storage: Any,
        *,
        inherit_stdio: bool = False,
        limits: SandboxLimits | None = None,
    ) -> None:
        from wasmtime import Store, WasiConfig, WasmtimeError
        from wasmtime import _ffi as ffi
        from wasmtime.component import Linker

        self.guest = guest
        self.storage = storage
        self.limits = limits or host.limits
        manifest = getattr(storage, "manifest", None)
        #: The invocation transaction of a ``transactional`` component (its imports are served by it), else None.
        self.transaction: Transaction | None = None
        if getattr(manifest, "transactional", False):
            self.transaction = storage.transaction(
                max_writes=self.limits.max_transaction_writes, max_bytes=self.limits.max_transaction_bytes
            )
        self._ticker = host._ticker
        self._failure: BaseException | None = None
        self._failed_in = ""
        self._discarded = ""
        self._funcs: dict[str, Any] = {}
        self._deadline = 0.0
        self._timed_out = False
        self._interrupt: BaseException | None = None
        self._store: Any = Store(host.engine)
        limits = self.limits
        self._store.set_limits(
            memory_size=limits.max_memory,
            table_elements=limits.max_table_elements,
            instances=limits.max_instances,
            tables=limits.max_tables,
            memories=limits.max_memories,
        )
        _warn_about_the_transfer_ceiling(storage)
        self._on_tick, no_finalizer = _deadline_callback(self._tick)
        ffi.wasmtime_store_epoch_deadline_callback(self._store.ptr(), self._on_tick, None, no_finalizer)
        linker = Linker(host.engine)
        if guest.needs_wasi:
            wasi = WasiConfig()
            if inherit_stdio:
                wasi.inherit_stdout()
                wasi.inherit_stderr()
            self._store.set_wasi(wasi)
            linker.add_wasip2()
        # ctypes callbacks must outlive every call into the instance: kept here.
        self._callbacks = self._define_imports(linker)
        self._linker = linker
        try:
            with self._invocation():
                self._instance: Any = linker.instantiate(self._store, guest.component)
        except WasmtimeError as exc:
            if self._failure is not None or self._timed_out or self._interrupt is not None:
                self._trapped("instantiation", exc)
            self._discard("instantiation failed")
            summary = _summary(exc)
            error = GuestLimitExceeded if "limit" in summary else InvalidGuest
            raise error(
                f"cannot instantiate guest {guest.name!r}: {summary} (its limits: {self.limits.describe()})"
            ) from None
        except BaseException:
            self._discard("instantiation failed")
            raise
        self._commit("instantiation")

    # -- limits ------------------------------------------------------------------

    @contextlib.contextmanager
    def _invocation(self) -> Iterator[None]:
        """Run one call into the guest under the time limit, Ctrl-C stopping it.

        Python runs signal handlers only between bytecodes of the main thread,
        i.e. in the epoch callback while a guest runs; Python's own SIGINT
        handler would raise ``KeyboardInterrupt`` there, where ctypes can only
        print it. So while the main thread is in a guest, SIGINT (when its
        handler is Python's default) only records the interrupt; the next tick
        stops the guest and the call raises ``KeyboardInterrupt``.
        """
        self._timed_out = False
        self._interrupt = None
        self._deadline = time.monotonic() + self.limits.timeout
        self._store.set_epoch_deadline(1)
        previous = None
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                previous = signal.signal(signal.SIGINT, self._on_sigint)
        self._ticker.enter()
        try:
            yield
        finally:
            self._ticker.leave()
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if self._interrupt is not None:  # Ctrl-C as the guest returned: still an interrupt
            raise self._interrupt

    def _on_sigint(self, _signum: int, _frame: Any) -> None:
        self._interrupt = KeyboardInterrupt()

    def _tick(self, _context: Any, _data: Any, delta: Any, kind: Any) -> int:
        """Epoch deadline callback (each tick while the guest runs): Ctrl-C and the time limit."""
        delta[0] = 1
        kind[0] = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
        try:
            _check_signals()  # runs pending Python signal handlers now (main thread only)
        except BaseException as exc:  # a handler of the embedding application raised
            self._interrupt = exc
        if self._interrupt is not None:
            return _wasmtime_error(f"interrupted: {type(self._interrupt).__name__}")
        if time.monotonic() >= self._deadline:
            self._timed_out = True
            return _wasmtime_error(f"time limit of {self.limits.timeout:g} s exceeded")
        return 0

    def _define_imports(self, linker: Any) -> list[Any]:
        from wasmtime.component import ResourceType

        from ._calls import ChangeCalls, StateCalls
        from ._interfaces import BY_INTERFACE
        from ._keyvalue import RESOURCES, KeyValueCalls

        served = self.storage if self.transaction is None else self.transaction
        keyvalue = self._keyvalue = KeyValueCalls(served)
        targets = {
            "storage": served,
            "state": StateCalls(served),
            "keyvalue": keyvalue,
            "changes": ChangeCalls(self.storage, self.limits.max_call_bytes),
        }
        drops = {"bucket": keyvalue.drop_bucket, "store": keyvalue.drop_bucket, "cas": keyvalue.drop_cas}
        callbacks = []
        with linker.root() as root:
            for interface, functions in BY_INTERFACE.items():
                with root.add_instance(interface) as instance:
                    for resource, type_id in RESOURCES.get(interface, ()):
                        drop = drops[resource]
                        instance.add_resource(resource, ResourceType.host(type_id), lambda _store, rep, d=drop: d(rep))
                    for function in functions.values():
                        method = getattr(targets[function.target], function.method)
                        callback = self._callback(function, method)
                        _add_func(instance, function.name, callback)
                        callbacks.append(callback)
        return callbacks

    def _callback(self, function: Any, method: Callable[..., Any]) -> Any:
        """The C callback serving one import: lift the arguments, call storage, lower the result.

        Its pointer arguments arrive as plain addresses (see :func:`_raw_callbacks`):
        ctypes then builds no pointer objects per call.
        """
        from ._codec import enter_call
        from ._compat import VAL_SIZE
        from ._keyvalue import RESERVED, hide_bucket_prefixes

        # Everything a call needs is looked up here, once per import and instance.
        params = function.params
        count = len(params)
        lift_args = _args_lifter(tuple(param.lift_at for param in params), VAL_SIZE)
        lower_ok = function.result.lower_ok_at
        lower_err = function.result.lower_err_at
        cap = self.limits.max_call_bytes
        # Only lists (of bytes, pairs, keys) can be large; the other calls skip the measuring.
        measure_request = _request_measure(function)
        measure_response = _response_measure(function)
        name = function.name
        resources = function.uses_resources
        # The string arguments (keys, prefixes, bounds) that must stay out of the bucket area.
        reserved = _reserved_check(function, RESERVED)

        def serve(_data: Any, _context: Any, _type: Any, args: int, nargs: int, results: int, nresults: int) -> int:
            try:
                if nargs != count or nresults != 1:
                    raise TypeError(f"called with {nargs} arguments and {nresults} results")
                if resources:
                    enter_call(_context)
                values = lift_args(args)
                try:
                    if reserved is not None and reserved(values):
                        raise _reserved_key(name)
                    if measure_request is not None and measure_request(values) > cap:
                        raise _too_many_bytes(name, "to", measure_request(values), cap)
                    value = method(*values)
                    if measure_response is not None and measure_response(value) > cap:
                        raise _too_many_bytes(name, "from", measure_response(value), cap)
                except StorageError as error:  # the guest's business, never a trap
                    if RESERVED in error.message or "\\U0010ffff" in error.message:
                        error.message = hide_bucket_prefixes(error.message)
                    lower_err(error, results)
                else:
                    lower_ok(value, results)
                return 0
            except BaseException as exc:  # anything else is a host failure: trap the guest
                return self._host_failure(function.name, exc)

        return _raw_callbacks()[0](serve)

    def _host_failure(self, function_name: str, exc: BaseException) -> int:
        if self._failure is None:
            self._failure, self._failed_in = exc, function_name
        return _wasmtime_error(f"host failure in {function_name}: {type(exc).__name__}: {exc}")

    # -- calls -------------------------------------------------------------------

    @property
    def discarded(self) -> bool:
        """Whether the instance was discarded (closed, or after a trap or a limit): :meth:`call` then fails."""
        return bool(self._discarded)

    @property
    def exports(self) -> dict[str, str]:
        """The guest's exported functions and their types."""
        return self.guest.exports

    def call(self, export: str, *args: Any) -> Any:
        """Call the exported function *export* (``name`` or ``interface#name``) and return its result.

        Results use wasmtime-py's conventions (with the tagging fix described
        in ``_compat``): e.g. ``result<u64, string>`` gives the ok int or the
        err str, ``result<option<…>, e>`` gives ``Variant("ok"|"err", …)``.

        For a ``transactional`` component (manifest), the call's storage
        writes commit in one atomic step when it returns anything but an
        ``err`` result; an ``err`` result, a trap or a limit discards them.
        A refused commit raises the storage error
        (:class:`~airssys_storage.QuotaExceeded`,
        :class:`~airssys_storage.PreconditionFailed` when another writer
        changed a key the call read for an atomic operation) naming the guest
        and the export, and discards the instance (its memory may assume the
        writes happened).
        """
        from wasmtime import WasmtimeError

        if self._discarded:
            raise GuestError(
                f"the instance of guest {self.guest.name!r} was discarded ({self._discarded}); instantiate it again"
            )
        func = self._func(export)
        try:
            with self._invocation():
                result = func(self._store, *args)
                func.post_return(self._store)
        except WasmtimeError as exc:
            self._trapped(export, exc)
        except (TypeError, ValueError, OverflowError) as exc:  # arguments rejected before the guest ran
            self._rollback()
            raise InvalidArgument(
                f"export {export!r} of guest {self.guest.name!r} is {self.guest.exports[export]}; "
                f"the {len(args)} argument(s) given do not fit: {exc}"
            ) from None
        except BaseException:  # Ctrl-C as the guest returned, …: nothing of the call may stay buffered
            self._rollback()
            raise
        if self.transaction is not None:
            from ._codec import split_result

            result_type = self.guest.export_types[export].result
            if result_type is None or split_result(result_type, result)[0]:
                self._commit(f"export {export!r}")
            else:
                self._rollback()
        return result

    def _commit(self, where: str) -> None:
        """Commit the invocation transaction (if any); a refused commit discards the instance and is raised."""
        transaction = self.transaction
        if transaction is None:
            return
        try:
            transaction.commit()
        except StorageError as exc:
            self._discard(f"the commit of {where} was refused")
            exc.message = (
                f"guest {self.guest.name!r}, {where}: its storage writes were not committed (nothing was "
                f"written; the instance was discarded): {exc.message}"
            )
            raise

    def _rollback(self) -> None:
        if self.transaction is not None:
            self.transaction.rollback()

    def _func(self, export: str) -> Any:
        func = self._funcs.get(export)
        if func is not None:
            return func
        if export not in self.guest.exports:
            available = ", ".join(sorted(self.guest.exports)) or "none"
            raise InvalidGuest(f"guest {self.guest.name!r} has no export {export!r} (its exports: {available})")
        interface, _, name = export.rpartition("#")
        index = None
        if interface:
            index = self._instance.get_export_index(self._store, interface)
        index = self._instance.get_export_index(self._store, name, index)
        func = self._instance.get_func(self._store, index) if index is not None else None
        if func is None:
            raise InvalidGuest(f"guest {self.guest.name!r} has no function export {export!r}")
        self._funcs[export] = func
        return func

    def _trapped(self, where: str, exc: BaseException) -> NoReturn:
        """Discard the instance after *exc* ended a call into it, and raise what the caller should see."""
        failure = self._interrupt or self._failure
        where = where if where == "instantiation" else f"export {where!r}"
        self._discard(f"{where} trapped")
        if failure is not None and not isinstance(failure, Exception):
            raise failure  # KeyboardInterrupt, SystemExit: propagate as they are
        if self._timed_out:
            raise GuestTimeout(
                f"guest {self.guest.name!r}, {where}: stopped at its time limit of {self.limits.timeout:g} s "
                "(raise it with --timeout or the host's limits, or the manifest's [limits] timeout); "
                "the instance was discarded",
                details=str(exc),
            ) from None
        if failure is None and _HOSTCALL_FUEL_MESSAGE in str(exc):
            ceiling = HOSTCALL_FUEL // HOSTCALL_FUEL_PER_BYTE
            raise GuestLimitExceeded(
                f"guest {self.guest.name!r}, {where}: the guest passed the host more data in one call (a "
                "storage call's arguments, or the export's result) than wasmtime-py can take from a guest "
                f"(about {ceiling / 2**20:.1f} MiB: wasmtime's {format_bytes(HOSTCALL_FUEL)} hostcall budget at "
                f"{HOSTCALL_FUEL_PER_BYTE} bytes per byte of a list<u8>, which its C API cannot raise); "
                "split the value or the batch; the instance was discarded",
                details=str(exc),
            ) from None
        raise self._trap_error(where, exc) from failure

    def _trap_error(self, where: str, exc: BaseException) -> GuestTrap:
        failure = self._failure
        if failure is not None:
            message = (
                f"guest {self.guest.name!r}, {where}: the host failed while serving {self._failed_in} "
                f"({type(failure).__name__}: {failure}); the instance was discarded"
            )
        else:
            message = (
                f"guest {self.guest.name!r} trapped in {where}: {_summary(exc)}; the instance was discarded "
                f"(its limits: {self.limits.describe()}: a guest refused memory usually traps)"
            )
        return GuestTrap(message, details=str(exc))

    def _discard(self, why: str) -> None:
        self._rollback()
        self._discarded = why
        self._funcs.clear()
        self._instance = None
        self._store = None

    def close(self) -> None:
        """Drop the instance and its Store. Idempotent."""
        if not self._discarded:
            self._discard("closed")

    def __enter__(self) -> GuestInstance:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f" discarded: {self._discarded}" if self._discarded else ""
        return f"<GuestInstance {self.guest.name!r}{state}>"


def _deadline_callback(tick: Callable[..., int]) -> tuple[Any, Any]:
    """*tick* as an epoch deadline callback, and a NULL finalizer (with the ctypes types the bindings declare)."""
    from wasmtime import _bindings

    _store, callback_t, _data, finalizer_t = _bindings._wasmtime_store_epoch_deadline_callback.argtypes
    return callback_t(tick), finalizer_t()


def _wasmtime_error(message: str) -> int:
    """A new ``wasmtime_error_t`` (owned by wasmtime once returned from a callback), as an address."""
    from wasmtime import _ffi as ffi

    error = ffi.wasmtime_error_new(message.replace("\0", " ").encode("utf-8", "replace"))
    return ctypes.cast(error, ctypes.c_void_p).value or 0


def _payload_bytes(value: Any) -> int:
    """Bytes of the keys and values in *value* (bytes, str, and lists, tuples, options and variant cases of them)."""
    if isinstance(value, (bytes, str)):
        return len(value)
    if isinstance(value, (list, tuple)):
        return sum(_payload_bytes(item) for item in value)
    if isinstance(value, Case):  # a variant's payload (storage-commit's mutations), not its case name
        return _payload_bytes(value.payload)
    if isinstance(value, dict):  # a record (storage-changes' change-event)
        return sum(_payload_bytes(item) for item in value.values())
    return 0


_warned_ceiling: set[int] = set()


def _warn_about_the_transfer_ceiling(storage: Any) -> None:
    """Log once per ``max_value_bytes`` above what a guest can pass the host in one call (see :data:`HOSTCALL_FUEL`)."""
    settings = getattr(storage, "settings", None)
    max_value = getattr(settings, "max_value_bytes", 0)
    ceiling = HOSTCALL_FUEL // HOSTCALL_FUEL_PER_BYTE
    if isinstance(max_value, int) and max_value > ceiling and max_value not in _warned_ceiling:
        _warned_ceiling.add(max_value)
        log.warning(
            "max_value_bytes is %d, but a WebAssembly guest can pass the host at most about %.1f MiB in one call "
            "through wasmtime-py (its hostcall budget cannot be raised from Python): larger storage-set calls trap "
            "with GuestLimitExceeded; guests can still read such values",
            max_value,
            ceiling / 2**20,
        )


def _args_lifter(lifts: tuple[Callable[[int], Any], ...], step: int) -> Callable[[int], tuple[Any, ...]]:
    """A function lifting the arguments at an address with *lifts* (unrolled for the common arities)."""
    if len(lifts) == 1:
        (first,) = lifts
        return lambda args: (first(args),)
    if len(lifts) == 2:
        first, second = lifts
        return lambda args: (first(args), second(args + step))
    if len(lifts) == 3:
        first, second, third = lifts
        return lambda args: (first(args), second(args + step), third(args + 2 * step))
    return lambda args: tuple(lift(args + step * i) for i, lift in enumerate(lifts))


def _request_measure(function: Any) -> Callable[[tuple[Any, ...]], int] | None:
    """Bytes of keys and values in a call's arguments (``None``: it has no list, so nothing to measure)."""
    from ._codec import BYTES, STRING

    params = function.params
    if not any(param.wit.startswith("list<") for param in params):
        return None
    # Keys and values as such (e.g. storage-set's, bucket.set's); the other arguments (handles, numbers) hold none.
    sized = tuple(i for i, param in enumerate(params) if param is STRING or param is BYTES)
    if all(i in sized or not ("list<" in param.wit or "string" in param.wit) for i, param in enumerate(params)):
        if len(sized) == 2:
            first, second = sized
            return lambda values: len(values[first]) + len(values[second])
        return lambda values: sum(len(values[i]) for i in sized)
    return _payload_bytes


def _response_measure(function: Any) -> Callable[[Any], int] | None:
    """Bytes of keys and values in a call's ok result (``None``: it holds no list)."""
    from ._codec import BYTES, OptionOf

    ok = function.result.ok
    if ok is None or "list<" not in ok.wit:
        return None
    if ok is BYTES or (isinstance(ok, OptionOf) and ok.inner is BYTES):
        return lambda value: 0 if value is None else len(value)  # e.g. storage-get's value
    return _payload_bytes


def _reserved_check(function: Any, reserved: str) -> Callable[[tuple[Any, ...]], bool] | None:
    """Whether a call's keys, prefixes or bounds enter the bucket area (``None``: nothing to check).

    wasi:keyvalue and Spin own the area and are not checked.
    """
    from ._codec import STRING

    if not function.guards_reserved_keys:
        return None
    positions = tuple(i for i, param in enumerate(function.params) if "string" in param.wit)
    if positions == (0,) and function.params[0] is STRING:
        return lambda values: values[0][:1] == reserved  # a key: most calls
    return lambda values: any(_reserved(values[position], reserved) for position in positions)


def _reserved(value: Any, reserved: str) -> bool:
    """Whether a key, prefix or bound in *value* (str, and lists, tuples and options of them) starts with *reserved*."""
    if type(value) is str:
        return value[:1] == reserved
    if isinstance(value, (list, tuple)):
        return any(_reserved(item, reserved) for item in value)
    if isinstance(value, Case):
        return _reserved(value.payload, reserved)
    return False


def _reserved_key(function: str) -> InvalidKey:
    return InvalidKey(
        f"{function}: keys, prefixes and bounds starting with U+10FFFF are reserved for the component's "
        "wasi:keyvalue buckets (use wasi:keyvalue to reach them)"
    )


def _too_many_bytes(function: str, direction: str, size: int, cap: int) -> ValueTooLarge:
    return ValueTooLarge(
        f"{function} would move {size} bytes {direction} the guest, over the host's limit of "
        f"{format_bytes(cap)} per storage call (max-call-bytes): split the call"
    )


@functools.cache
def _raw_callbacks() -> tuple[Any, Any]:
    """A host function callback type whose pointers are plain addresses, and ``add_func`` taking it.

    wasmtime-py declares the callback's pointer parameters as ctypes pointers,
    which ctypes builds as objects on every call (about a microsecond per
    storage call). The same C function, declared with ``void *`` parameters,
    takes the same callbacks.
    """
    from wasmtime import _bindings
    from wasmtime._ffi import dll

    declared = _bindings._wasmtime_component_linker_instance_add_func
    callback_t = ctypes.CFUNCTYPE(
        ctypes.c_size_t,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_void_p,
        ctypes.c_size_t,
    )
    add_func = ctypes.CFUNCTYPE(declared.restype, *declared.argtypes[:3], callback_t, *declared.argtypes[4:])(
        ("wasmtime_component_linker_instance_add_func", dll)
    )
    return callback_t, add_func


def _add_func(instance: Any, name: str, callback: Any) -> None:
    """``LinkerInstance.add_func`` with our own C callback instead of wasmtime-py's reflective one."""
    from wasmtime import WasmtimeError

    raw = name.encode()
    no_finalizer = ctypes.CFUNCTYPE(None, ctypes.c_void_p)()  # NULL: the callback is owned by the instance
    error = _raw_callbacks()[1](
        instance.ptr(), ctypes.create_string_buffer(raw), len(raw), callback, None, no_finalizer
    )
    if error:
        raise WasmtimeError._from_ptr(error)
