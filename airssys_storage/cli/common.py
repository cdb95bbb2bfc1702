"""What the subcommands share: options, opening stores with operator rights, output and progress."""

from __future__ import annotations

import functools
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar, cast

import click

from .._settings_fast import read_plain
from ..errors import ConfigurationError, ManifestError, PermissionDenied, QuotaExceeded
from ..exchange import operator_settings, operator_storage
from ..files import atomic_private_file
from ..manifest import COMPONENT_ID_PATTERN, Manifest, validate_component_id
from ..operations import WRITE_OPERATIONS
from ..plugins import PluginRegistry, backend_scheme, check_plugin_options, redact_url
from ..policies import ACCESS_OPERATIONS
from ..storage import ComponentStorage, StorageManager
from .app import ExitCode, Failure

if TYPE_CHECKING:
    from ..settings import StorageSettings  # imported when needed: pydantic costs more than a whole `get`

F = TypeVar("F", bound=Callable[..., Any])


# -- options -----------------------------------------------------------------


class ComponentId(click.ParamType):  # type: ignore[type-arg]  # generic only since click 8.2
    name = "ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return validate_component_id(value)
        except ManifestError:
            self.fail(
                f"{value!r} is not a component id: use a lower-case ASCII letter, then up to 62 of "
                f"a-z 0-9 _ - (^{COMPONENT_ID_PATTERN.pattern}$)",
                param,
                ctx,
            )


class JsonObject(click.ParamType):  # type: ignore[type-arg]
    name = "JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            self.fail(f"{value!r} is not JSON ({exc.msg}): write an object such as '{{\"name\": 1}}'", param, ctx)
        if not isinstance(parsed, dict):
            self.fail(f"{value!r} is not a JSON object: write an object such as '{{\"name\": 1}}'", param, ctx)
        return parsed


def _refuse_nul(
    param_type: click.ParamType,  # type: ignore[type-arg]
    value: Any,
    param: click.Parameter | None,
    ctx: click.Context | None,
) -> None:
    # os.stat and open() raise ValueError (not OSError) for a NUL, which click does not catch.
    if isinstance(value, str) and "\x00" in value:
        param_type.fail(f"{value!r} is not a usable file name: it contains a NUL character", param, ctx)


class FilePath(click.Path):
    """``click.Path`` that refuses a NUL in the name as a usage error."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        _refuse_nul(self, value, param, ctx)
        return super().convert(value, param, ctx)


class InputFile(click.File):
    """``click.File`` that refuses a NUL in the name as a usage error."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        _refuse_nul(self, value, param, ctx)
        return super().convert(value, param, ctx)


@dataclass(frozen=True)
class StoreSpec:
    """A store named on the command line: a URL and backend options, either of which may be left to the settings."""

    url: str | None = None
    options: dict[str, Any] | None = None
    #: The command-line options that gave *url* and *options*, for error messages.
    flags: tuple[str, str] = ("--url", "--backend-options")

    def settings(self, *, plain: bool = False) -> StorageSettings:
        """The configured settings with this URL and options in place of the configured ones.

        Without explicit options, the configured ``backend_options`` are kept
        only if the URL is served by the same kind of backend (same scheme):
        options of one backend mean nothing to another. *plain*: as for
        :func:`load_configured_settings`.
        """
        settings = load_configured_settings(plain=plain)
        if self.url is None and self.options is None:
            return settings
        url = self.url if self.url is not None else settings.url
        options = self.options
        if options is None:
            same = self.url is None or backend_scheme(self.url) == backend_scheme(settings.resolved_url)
            options = settings.backend_options if same else {}
        # The configured values passed above, so a problem now is in what the command line gave.
        given = " and ".join(
            flag for flag, value in zip(self.flags, (self.url, self.options), strict=True) if value is not None
        )
        return load_configured_settings(given=given or None, plain=plain, url=url, backend_options=options)


def load_configured_settings(*, given: str | None = None, plain: bool = False, **arguments: Any) -> StorageSettings:
    """``StorageSettings(**arguments)``; an invalid value's error says where to fix it.

    *given* names the command-line options that supplied *arguments* (``"--url"``);
    without it the value is a configured one (environment or settings file).

    *plain*: the caller reads only the fields, ``resolved_url`` and
    ``model_copy`` of the result (and hands it to no third-party policy or
    strategy), so plainly valid settings may come as a pydantic-free
    :class:`~airssys_storage._settings_fast.PlainSettings` with equal values
    (start-up time, issue 9); anything else takes the full path, errors included.
    """
    if plain:
        quick = read_plain(**arguments)
        if quick is not None:
            # Duck-typed: equal field values (tests/cli/test_fast_settings.py); the plain caller needs no more.
            return cast("StorageSettings", quick)
    from ..settings import StorageSettings

    try:
        return StorageSettings(**arguments)
    except ConfigurationError as exc:
        where = (
            f"fix {given} on the command line"
            if given
            else "fix the value where it is set: an AIRSSYS_STORAGE_* environment variable or the "
            "settings file (`airssys-storage config --help` says where it is looked for)"
        )
        raise ConfigurationError(f"{exc.message}; {where}") from exc


def store_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add --url and --backend-options; the command receives them as ``store: StoreSpec``."""

    @functools.wraps(f)
    def command(*args: Any, url: str | None, backend_options: dict[str, Any] | None, **kwargs: Any) -> Any:
        return f(*args, store=StoreSpec(url, backend_options), **kwargs)

    command = click.option(
        "--backend-options",
        type=JsonObject(),
        help="Backend options as a JSON object; replace the configured backend_options.",
    )(command)
    return click.option(
        "--url",
        metavar="URL",
        help="Backend URL (memory://, sqlite:////ABSOLUTE/PATH, leveldb:///ABSOLUTE/PATH, postgresql+psycopg://…); "
        "overrides AIRSSYS_STORAGE_URL and the settings file.",
    )(command)


def component_option(f: F) -> F:
    return click.option("--component", "-c", type=ComponentId(), required=True, help="The component's id.")(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(f)


def manifest_option(f: F) -> F:
    return click.option(
        "--manifest",
        "manifest_path",
        type=FilePath(exists=True, dir_okay=False, path_type=Path),
        help="The component's manifest: enforce its quota (by default operators are not quota-limited).",
    )(f)


# -- settings and stores -----------------------------------------------------


def manifest_quota(settings: StorageSettings, registry: PluginRegistry, manifest: Manifest) -> int | None:
    """The quota the configured strategy gives the component *manifest* describes."""
    return registry.create_quota_strategy(settings).limit_for(manifest)


@contextmanager
def open_manager(
    settings: StorageSettings,
    *,
    quota: int | None = None,
    registry: PluginRegistry | None = None,
    existing: bool = False,
) -> Iterator[StorageManager]:
    """A manager for operator handles (admin, *quota* or unlimited) on *settings*' backend.

    *settings*' own ``plugin_options`` are validated first (as ``config
    --check`` does), though operator access uses none of those plugins.
    *existing*: the command only reads, so a missing store is an error, never created
    (see :meth:`StorageManager.from_settings`).
    """
    if registry is None:
        registry = PluginRegistry.load(blocked=settings.blocked_plugins)
    check_plugin_options(registry, settings)
    operator = operator_settings(settings, quota=quota)
    with StorageManager.from_settings(operator, registry=registry, existing=existing) as manager:
        yield manager


@contextmanager
def open_component(
    store: StoreSpec,
    component: str,
    manifest_path: Path | None = None,
    *,
    existing: bool = False,
    changes: bool | None = None,
) -> Iterator[ComponentStorage]:
    """An operator handle on *component*: admin rights; the manifest's quota if one is given, else none.

    *existing*: as for :func:`open_manager` (read-only commands pass ``True``). *changes*: as for
    :func:`~airssys_storage.exchange.operator_storage` (``watch`` passes ``True``).

    Operators are not quota-limited by default because they fix and move
    data; ``--manifest`` makes a write obey the quota the component itself
    would have.
    """
    # With a manifest, the configured quota strategy (maybe a plugin's) is given the settings: the real model.
    settings = store.settings(plain=manifest_path is None)
    registry = PluginRegistry.load(blocked=settings.blocked_plugins)
    quota = None
    source = ""
    if manifest_path is not None:
        manifest = Manifest.from_file(manifest_path)
        if manifest.id != component:
            raise Failure(
                f"manifest {str(manifest_path)!r} describes component {manifest.id!r}, not {component!r}: "
                f"pass that component's manifest or --component {manifest.id}"
            )
        if not ACCESS_OPERATIONS[manifest.access] & WRITE_OPERATIONS:
            # --manifest is given only to writing commands: a quota hint would send the user the wrong way.
            raise PermissionDenied(
                f"manifest {str(manifest_path)!r} gives component {manifest.id!r} access "
                f"{manifest.access.value!r}, which cannot write: set permissions.storage.access = "
                '"read-write" (or "admin") in it, or leave out --manifest to write as an operator'
            )
        strategy = registry.create_quota_strategy(settings)
        quota = strategy.limit_for(manifest)
        source = f"{strategy.describe_limit(manifest)} (--manifest {str(manifest_path)!r})"
    with open_manager(settings, quota=quota, registry=registry, existing=existing) as manager:
        try:
            yield operator_storage(manager, component, changes=changes)
        except QuotaExceeded as exc:
            if not source:
                raise
            # The operator handle's limit is the manifest's, not the operator manager's own setting.
            raise exc.with_source(source) from None


# -- output ------------------------------------------------------------------


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def info(message: str) -> None:
    """A human-readable status line; on stderr so stdout carries only data."""
    click.echo(message, err=True)


def print_table(
    title: str | None, columns: list[str], rows: list[list[Any]], right: frozenset[int] = frozenset()
) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="right" if index in right else "left", overflow="fold")
    for row in rows:
        table.add_row(*(Text(_cell(cell)) for cell in row))  # Text: a value's "[x]" is no markup
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped: no terminal width to fit, so do not wrap at 80 columns
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


class Progress:
    """A progress bar on stderr when it is a terminal; silent otherwise (piped, redirected, tests)."""

    def __init__(self, description: str, total: int | None) -> None:
        self._description = description
        self._total = total
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        from rich.console import Console

        console = Console(stderr=True)
        if console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self._description, total=self._total)
        return self

    def set_total(self, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def __call__(self, advance: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, advance)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


# -- files -------------------------------------------------------------------


def usable_path(path: str) -> str:
    """*path*, or a usage error if no file system accepts it (a NUL character)."""
    if "\x00" in path:
        raise Failure(f"{path!r} is not a usable file name: it contains a NUL character")
    return path


@contextmanager
def output_file(path: str) -> Iterator[IO[bytes]]:
    """Binary output to *path* (``-`` = stdout), written to a temporary file and renamed when complete.

    An interrupted command therefore never leaves a half-written file under
    the requested name. The file is readable by its owner only (exports hold
    the components' data).
    """
    if path == "-":
        stream = sys.stdout.buffer
        yield stream
        stream.flush()
        return
    target = Path(usable_path(path))
    if target.is_dir():
        raise Failure(f"cannot write {path!r}: it is a directory; name a file, e.g. {str(target / 'NAME')!r}")
    if not target.parent.is_dir():
        raise Failure(f"cannot write {path!r}: directory {str(target.parent)!r} does not exist; create it first")
    with atomic_private_file(target) as stream:
        yield stream


@contextmanager
def input_file(path: str) -> Iterator[IO[bytes]]:
    """A seekable binary reader of *path*; ``-`` spools stdin to a temporary file first."""
    if path != "-":
        with open(usable_path(path), "rb") as stream:
            yield stream
        return
    with tempfile.TemporaryFile() as spool:
        source = sys.stdin.buffer
        while chunk := source.read(1 << 20):
            spool.write(chunk)
        spool.seek(0)
        yield spool


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


__all__ = [
    "ComponentId",
    "ExitCode",
    "Failure",
    "FilePath",
    "InputFile",
    "Progress",
    "component_option",
    "echo_json",
    "human_bytes",
    "info",
    "input_file",
    "json_option",
    "manifest_option",
    "manifest_quota",
    "open_component",
    "open_manager",
    "output_file",
    "print_table",
    "redact_url",
    "stdin_is_terminal",
    "store_options",
    "StoreSpec",
    "JsonObject",
]
