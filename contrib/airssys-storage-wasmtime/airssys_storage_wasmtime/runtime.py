"""Hosting API for long-running hosts: components loaded once, one instance each, one message at a time.

::

    with StorageManager.from_settings() as manager, ComponentRuntime(manager) as runtime:
        counter = runtime.add("counter.wasm", "component-manifest.toml")   # compile once, instantiate once
        runtime.invoke(counter, "run")                                      # 1
        runtime.invoke(counter, "run")                                      # 2: the same instance

This is the seed's actor model: each component has one instance, and the
exports of one instance are invoked one at a time (a lock per instance;
different components run in parallel from different threads). Every
invocation runs within the component's :class:`~.SandboxLimits` (its
manifest's ``[limits]``, capped by the host's). After a trap or a limit the
instance is discarded and the next invocation gets a fresh one. What storage
keeps of a failed invocation depends on the manifest: by default every
completed storage call stays written; with ``permissions.storage.transactional
= true`` the invocation is one transaction (:mod:`airssys_storage.transaction`)
— its writes commit together when the export returns anything but ``err`` and
vanish on a trap, a limit or an ``err`` result (see :meth:`.GuestInstance.call`).
``airssys-storage run`` is one :meth:`~ComponentRuntime.add` and one
:meth:`~ComponentRuntime.invoke`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from airssys_storage import InvalidArgument, Manifest, StorageManager

from .host import Guest, GuestInstance, Host
from .limits import SandboxLimits
from .subscriptions import DeliveryReport

__all__ = ["ComponentRuntime"]


@dataclass
class _Component:
    guest: Guest
    storage: Any
    limits: SandboxLimits
    inherit_stdio: bool
    instance: GuestInstance | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class ComponentRuntime:
    """Components of one :class:`~airssys_storage.StorageManager`, each with one instance of its guest.

    *host* (default ``Host()``: default limits, the on-disk compile cache)
    compiles the guests and sets the ceiling of every component's limits.
    Thread-safe. Close it (or use ``with``) to drop the instances; the
    manager stays open (it belongs to the caller).
    """

    def __init__(self, manager: StorageManager, host: Host | None = None) -> None:
        self.manager = manager
        self.host = host or Host()
        self._components: dict[str, _Component] = {}
        self._lock = threading.Lock()

    def add(
        self,
        guest: str | os.PathLike[str] | bytes | Guest,
        manifest: Manifest | str | os.PathLike[str],
        *,
        limits: SandboxLimits | None = None,
        inherit_stdio: bool = False,
    ) -> str:
        """Load *guest* (a path, bytes, or an already loaded :class:`~.Guest`) as the component of *manifest*.

        *manifest* is a :class:`~airssys_storage.Manifest` or the path of a
        ``component-manifest.toml``, whose ``[limits]`` table then applies.
        *limits* (if given) replace the manifest's; the host's limits cap
        both. The guest is compiled and instantiated now, so an invalid guest
        fails here (:class:`~.InvalidGuest`, :class:`~.GuestTrap` from its
        start functions). Returns the component id. Raises
        :class:`~airssys_storage.InvalidArgument` if the id is already added.
        """
        if isinstance(manifest, Manifest):
            parsed = manifest
            asked = limits or self.host.limits
        else:
            parsed = Manifest.from_file(Path(manifest))
            asked = limits or SandboxLimits.from_manifest_file(Path(manifest), self.host.limits)
        loaded = guest if isinstance(guest, Guest) else self.host.load(guest)
        storage = self.manager.component(parsed)
        entry = _Component(loaded, storage, asked.capped_by(self.host.limits), inherit_stdio)
        with self._lock:
            if parsed.id in self._components:
                raise InvalidArgument(
                    f"component {parsed.id!r} is already added to this runtime: remove() it first to replace it"
                )
            self._components[parsed.id] = entry
        try:
            with entry.lock:
                self._instance(entry)
        except BaseException:
            with self._lock:
                self._components.pop(parsed.id, None)
            raise
        return parsed.id

    def invoke(self, component: str, export: str, *args: Any) -> Any:
        """Call *export* of *component*'s instance with *args*, after any invocation of it still running.

        Returns what :meth:`.GuestInstance.call` returns and raises what it
        raises (:class:`~.GuestTrap`, :class:`~.GuestTimeout`, …, and for a
        transactional component the storage error of a refused commit:
        :class:`~airssys_storage.QuotaExceeded`,
        :class:`~airssys_storage.PreconditionFailed`); after such a failure
        the next invocation runs in a fresh instance.
        """
        entry = self._entry(component)
        with entry.lock:
            return self._instance(entry).call(export, *args)

    def deliver_changes(self, component: str, **options: Any) -> DeliveryReport:
        """Deliver *component*'s pending changes (manifest ``subscribe``) to its ``on-changes``, in its instance.

        One pass of :func:`~.subscriptions.deliver_changes` (at least once,
        in order, from cursors in the manager's host metadata; retries, then
        dead letters), holding the component's lock: the deliveries are
        invocations like any other. *options*: ``batch_size``,
        ``max_attempts``, ``max_batches``. Call it after commits, or from a
        loop over the component's ``storage.watch()``.
        """
        from .subscriptions import METADATA_OWNER, deliver_changes

        entry = self._entry(component)
        with entry.lock:
            return deliver_changes(
                self.host,
                entry.guest,
                entry.storage,
                self.manager.host_metadata(METADATA_OWNER),
                limits=entry.limits,
                instance=lambda: self._instance(entry),
                **options,
            )

    def storage(self, component: str) -> Any:
        """The :class:`~airssys_storage.ComponentStorage` *component*'s guest runs against."""
        return self._entry(component).storage

    def exports(self, component: str) -> dict[str, str]:
        """The exported functions of *component*'s guest and their WIT types."""
        return dict(self._entry(component).guest.exports)

    @property
    def components(self) -> list[str]:
        """The ids of the components added, sorted."""
        with self._lock:
            return sorted(self._components)

    def remove(self, component: str) -> None:
        """Drop *component*'s instance (after its running invocation) and forget it."""
        entry = self._entry(component)
        with self._lock:
            self._components.pop(component, None)
        with entry.lock:
            if entry.instance is not None:
                entry.instance.close()
                entry.instance = None

    def close(self) -> None:
        """Drop every instance. Idempotent."""
        for component in self.components:
            self.remove(component)

    def __enter__(self) -> ComponentRuntime:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _entry(self, component: str) -> _Component:
        with self._lock:
            entry = self._components.get(component)
            if entry is None:
                added = ", ".join(sorted(self._components)) or "none"
                raise InvalidArgument(f"no component {component!r} in this runtime (added: {added}); add() it first")
            return entry

    def _instance(self, entry: _Component) -> GuestInstance:
        """*entry*'s live instance, instantiated anew if there is none or it was discarded. Under entry.lock."""
        instance = entry.instance
        if instance is None or instance.discarded:
            entry.instance = None
            instance = self.host.instantiate(
                entry.guest, entry.storage, inherit_stdio=entry.inherit_stdio, limits=entry.limits
            )
            entry.instance = instance
        return instance
