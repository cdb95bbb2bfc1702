"""``airssys-storage run``: instantiate a component against the configured backend and call one export.

Added to the core command line by the ``register_commands`` hook; also
available as ``python -m airssys_storage_wasmtime run …``.

Every failure is one line on stderr and an exit status (``--debug`` adds the
traceback), following the core command line's codes: 1 the export returned
``err`` (printed), 2 bad command line or guest (no such file, not a
component, no such export, arguments that do not fit), 3 configuration
(manifest invalid, settings, wasmtime version), 4 refused (permission
denied, quota; for a transactional component also a refused commit: quota,
or a conflicting writer), 5 storage failure, 70 the guest trapped, hit a sandbox limit
or the host failed, 124 the guest ran past its time limit (``--timeout``),
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import IO, Any

import click

from airssys_storage import ConfigurationError, Manifest, StorageError, StorageManager
from airssys_storage.cli.common import StoreSpec, store_options

from ._codec import split_result
from .errors import GuestError, GuestTimeout, InvalidGuest
from .limits import DEFAULT_LIMITS, SandboxLimits

__all__ = ["RunError", "format_value", "main", "parse_argument", "run_command", "split_result"]

PROG_NAME = "airssys-storage"
EXIT_GUEST_ERR = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_BACKEND = 5
EXIT_SOFTWARE = 70
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130


class RunError(click.ClickException):
    """A failure of ``run``: one line on stderr and an exit status."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(" ".join(message.split()))
        self.exit_code = exit_code  # type: ignore[misc]  # a class variable in click >= 8.2 stubs

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"{PROG_NAME}: error: {self.format_message()}", err=True)


class _Failure(Exception):
    """A command-line argument that does not fit the export."""


@click.command(
    "run",
    context_settings={"ignore_unknown_options": True, "help_option_names": ["-h", "--help"]},
)
@click.argument("guest")
@click.option("--manifest", "-m", "manifest_path", required=True, help="The component's component-manifest.toml.")
@click.option("--invoke", "-i", "export", default="run", show_default=True,
              help="Exported function to call (name, or interface#name).")  # fmt: skip
@click.option("--cache-dir", default=None, help="Compile cache directory (default: the user cache directory).")
@click.option("--no-cache", is_flag=True, help="Compile the guest without the on-disk cache.")
@store_options
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help=f"Seconds one call into the guest may run [default: {DEFAULT_LIMITS.timeout:g}].",
)
@click.option(
    "--max-memory",
    default=None,
    metavar="SIZE",
    help="Bytes of each linear memory of the guest, e.g. 64MiB [default: 256MiB].",
)
@click.option(
    "--max-call-bytes",
    default=None,
    metavar="SIZE",
    help="Bytes one storage call may move each way, e.g. 1MiB [default: 2MiB].",
)
@click.option("--debug", is_flag=True, help="On error, print the traceback as well.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run_command(
    ctx: click.Context,
    guest: str,
    manifest_path: str,
    export: str,
    cache_dir: str | None,
    no_cache: bool,
    store: StoreSpec,
    timeout: float | None,
    max_memory: str | None,
    max_call_bytes: str | None,
    debug: bool,
    args: tuple[str, ...],
) -> None:
    """Run the WebAssembly component GUEST (binary or .wat) with the storage of its manifest.

    Calls the export with ARGS (converted to its parameter types) and prints
    its result. Storage is --url (with --backend-options), else the configured
    backend: AIRSSYS_STORAGE_URL or the settings file, else the embedded
    SQLite default.

    The call runs within sandbox limits: the options', else the
    AIRSSYS_STORAGE_WASMTIME_TIMEOUT / _MAX_MEMORY / _MAX_CALL_BYTES variables',
    else the defaults; lowered by the manifest's [limits] table where it asks
    for less.
    """
    try:
        limits = _host_limits(timeout, max_memory, max_call_bytes)
        ok, text = _run(guest, manifest_path, export, cache_dir, not no_cache, args, limits, store)
    except KeyboardInterrupt:
        raise RunError(f"interrupted (Ctrl-C): guest {guest!r} was stopped", EXIT_INTERRUPTED) from None
    except Exception as exc:
        if debug:
            root = ctx.find_root().command
            if hasattr(root, "debug"):  # the core's root group prints the traceback (and its causes)
                root.debug = True
            else:
                traceback.print_exception(exc, file=sys.stderr)
        raise _as_run_error(exc) from exc
    if not ok:
        raise RunError(f"{export} returned an error: {text}", EXIT_GUEST_ERR)
    if text is not None:
        click.echo(text)


def _as_run_error(exc: Exception) -> RunError:
    if isinstance(exc, _Failure | InvalidGuest):
        return RunError(str(exc), EXIT_USAGE)
    if isinstance(exc, GuestTimeout):
        return RunError(str(exc), EXIT_TIMEOUT)
    if isinstance(exc, GuestError):
        return RunError(str(exc), EXIT_SOFTWARE)
    if isinstance(exc, StorageError):
        return RunError(str(exc), _exit_code(exc))
    if isinstance(exc, OSError):
        where = f" {exc.filename!r}" if exc.filename else ""
        return RunError(f"cannot access{where}: {exc.strerror or exc}", EXIT_USAGE)
    return RunError(f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", EXIT_SOFTWARE)


def _exit_code(exc: StorageError) -> int:
    """The core command line's exit status for *exc*'s code (configuration or backend for others)."""
    from airssys_storage.cli.app import EXIT_CODES

    codes = {code: int(status) for code, status in EXIT_CODES.items()}
    return codes.get(exc.code, EXIT_CONFIG if isinstance(exc, ConfigurationError) else EXIT_BACKEND)


def _host_limits(timeout: float | None, max_memory: str | None, max_call_bytes: str | None) -> SandboxLimits:
    """The defaults, then the AIRSSYS_STORAGE_WASMTIME_* variables, then the options."""
    from airssys_storage.manifest import parse_size

    def size(value: str | None, option: str) -> int | None:
        if value is None:
            return None
        try:
            return parse_size(value.strip(), option)
        except ConfigurationError as exc:
            raise _Failure(str(exc)) from None

    base = SandboxLimits.from_environment()  # a bad variable is a configuration error (exit 3)
    try:
        return base.with_overrides(
            timeout=timeout,
            max_memory=size(max_memory, "--max-memory"),
            max_call_bytes=size(max_call_bytes, "--max-call-bytes"),
        )
    except ConfigurationError as exc:
        raise _Failure(str(exc)) from None


def _run(
    guest_path: str,
    manifest_path: str,
    export: str,
    cache_dir: str | None,
    cache: bool,
    args: tuple[str, ...],
    limits: SandboxLimits = DEFAULT_LIMITS,
    store: StoreSpec | None = None,
) -> tuple[bool, str | None]:
    from ._codec import describe
    from .host import Host
    from .runtime import ComponentRuntime

    manifest = Manifest.from_file(manifest_path)
    component_limits = SandboxLimits.from_manifest_file(manifest_path, limits)
    host = Host(cache_dir, cache=cache, limits=limits)
    guest = host.load(guest_path)
    if export not in guest.exports:
        available = ", ".join(sorted(guest.exports)) or "none"
        raise InvalidGuest(f"guest {guest.name!r} has no export {export!r} (its exports: {available})")
    func_type = guest.export_types[export]
    params = func_type.params
    if len(args) != len(params):
        signature = ", ".join(f"{name}: {describe(ty)}" for name, ty in params)
        raise _Failure(f"{export} takes {len(params)} argument(s) ({signature}), got {len(args)}")
    values = [parse_argument(ty, text, name) for (name, ty), text in zip(params, args, strict=True)]
    with StorageManager.from_settings((store or StoreSpec()).settings()) as manager:
        with ComponentRuntime(manager, host) as runtime:
            component = runtime.add(guest, manifest, limits=component_limits, inherit_stdio=True)
            result = runtime.invoke(component, export, *values)
    if func_type.result is None:
        return True, None
    ok, payload = split_result(func_type.result, result)
    return ok, format_value(payload)


def parse_argument(ty: Any, text: str, name: str = "argument") -> Any:
    """Convert the command-line word *text* to a value of the wasmtime component type *ty*."""
    from wasmtime import component as wc

    from ._codec import describe

    if isinstance(ty, wc.String):
        return text
    if isinstance(ty, wc.ListType) and isinstance(ty.element, wc.U8):
        return text.encode()
    if isinstance(ty, wc.Bool):
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise _Failure(f"{name} must be true or false, got {text!r}")
    if isinstance(ty, wc.Char):
        if len(text) == 1:
            return text
        raise _Failure(f"{name} must be one character, got {text!r}")
    bits = {wc.U8: 8, wc.U16: 16, wc.U32: 32, wc.U64: 64, wc.S8: 8, wc.S16: 16, wc.S32: 32, wc.S64: 64}
    for cls, width in bits.items():
        if isinstance(ty, cls):
            signed = cls.__name__.startswith("S")
            low, high = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
            try:
                number = int(text, 0)
            except ValueError:
                raise _Failure(f"{name} must be an integer ({describe(ty)}), got {text!r}") from None
            if not low <= number <= high:  # wasmtime-py would truncate silently
                raise _Failure(f"{name} must be from {low} to {high} ({describe(ty)}), got {number}")
            return number
    if isinstance(ty, (wc.F32, wc.F64)):
        try:
            return float(text)
        except ValueError:
            raise _Failure(f"{name} must be a number, got {text!r}") from None
    raise _Failure(f"{name} has type {describe(ty)}, which cannot be given on the command line")


def format_value(value: Any) -> str | None:
    """The text printed for a result: scalars plainly, bytes as UTF-8 (else hex), the rest as JSON."""
    from wasmtime.component import Record, Variant

    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return "0x" + value.hex()
    if isinstance(value, Variant):
        return value.tag if value.payload is None else f"{value.tag}({format_value(value.payload)})"

    def plain(item: Any) -> Any:
        if isinstance(item, bytes):
            return format_value(item)
        if isinstance(item, Variant):
            return {item.tag: item.payload}
        if isinstance(item, Record):
            return vars(item)
        if isinstance(item, (set, tuple)):
            return list(item)
        raise TypeError(f"cannot print {type(item).__name__}")

    return json.dumps(value, default=plain, ensure_ascii=False)


def main(argv: list[str] | None = None) -> None:
    """The fallback command line: a group holding the commands this package registers."""
    from . import register_commands

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    def cli() -> None:
        """airssys-storage (commands of airssys-storage-wasmtime)."""

    register_commands(cli)
    try:
        result = cli.main(args=argv, prog_name=f"python -m {__package__}", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.Abort):  # Ctrl-C outside a guest call: one line, as in airssys-storage
        RunError("interrupted (Ctrl-C)", EXIT_INTERRUPTED).show()
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(result if isinstance(result, int) else 0)  # click's ctx.exit(code) returns the code here
