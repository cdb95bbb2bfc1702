"""airssys-storage-wasmtime: real WebAssembly components call the storage API through wasmtime.

The host serves the imports of ``airssys:wasm/storage@0.1.0`` (and of the
batch and range interfaces) from a :class:`airssys_storage.ComponentStorage`;
see :mod:`airssys_storage_wasmtime.host`. The ``run`` subcommand of
``airssys-storage`` is added through the ``register_commands`` hook.

Importing this package loads neither wasmtime nor click: the plugin registry
imports it whenever plugins are loaded, so the host's names are resolved on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airssys_storage import hookimpl

from .errors import GuestError, GuestLimitExceeded, GuestTimeout, GuestTrap, InvalidGuest, UnsupportedRuntime
from .limits import DEFAULT_LIMITS, SandboxLimits

if TYPE_CHECKING:
    from .host import Guest, GuestInstance, Host, default_cache_dir
    from .runtime import ComponentRuntime
    from .subscriptions import DeadLetter, DeliveryReport

__all__ = [
    "DEFAULT_LIMITS",
    "ComponentRuntime",
    "DeadLetter",
    "DeliveryReport",
    "Guest",
    "GuestError",
    "GuestInstance",
    "GuestLimitExceeded",
    "GuestTimeout",
    "GuestTrap",
    "Host",
    "InvalidGuest",
    "SandboxLimits",
    "UnsupportedRuntime",
    "default_cache_dir",
    "register_commands",
]

_LAZY = {"Guest", "GuestInstance", "Host", "default_cache_dir"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import host

        return getattr(host, name)
    if name in ("DeadLetter", "DeliveryReport"):
        from . import subscriptions

        return getattr(subscriptions, name)
    if name == "ComponentRuntime":
        from .runtime import ComponentRuntime

        return ComponentRuntime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``run`` to the ``airssys-storage`` command line."""
    from .cli import run_command

    cli.add_command(run_command)
