"""The root command group: lazy subcommands, plugin subcommands and one-line errors.

Built-in subcommands are imported only when invoked or listed, and plugin
subcommands (hook ``register_commands``) only when the root help is shown or
a name is not a built-in, so ``airssys-storage get --help`` loads no plugin.
Errors become one line on stderr and an exit code (see :data:`EXIT_CODES`);
``--debug`` adds the traceback.
"""

from __future__ import annotations

import enum
import importlib
import logging
import re
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click

from ..errors import StorageError, StoreUnreachable
from . import INTERRUPTED_EXIT_CODE, INTERRUPTED_MESSAGE

__all__ = ["RootGroup", "Failure", "ExitCode", "EXIT_CODES", "PROG_NAME"]

PROG_NAME = "airssys-storage"

#: name -> "module:attribute" of the built-in subcommands.
BUILTIN_COMMANDS = {
    "config": "airssys_storage.cli.info:config",
    "plugins": "airssys_storage.cli.info:plugins",
    "manifest": "airssys_storage.cli.info:manifest",
    "get": "airssys_storage.cli.data:get",
    "set": "airssys_storage.cli.data:set_",
    "delete": "airssys_storage.cli.data:delete",
    "keys": "airssys_storage.cli.data:keys",
    "size": "airssys_storage.cli.data:size",
    "clear": "airssys_storage.cli.data:clear",
    "watch": "airssys_storage.cli.data:watch",
    "export": "airssys_storage.cli.transfer:export",
    "import": "airssys_storage.cli.transfer:import_",
    "migrate": "airssys_storage.cli.transfer:migrate",
    "stats": "airssys_storage.cli.ops:stats",
    "bench": "airssys_storage.cli.ops:bench",
    "verify": "airssys_storage.cli.ops:verify",
    "repair": "airssys_storage.cli.ops:repair",
    "serve": "airssys_storage.cli.serve:serve",
}


# Raised by click >= 8.2 for a group called without a subcommand; its message is the whole help.
_NO_ARGS_IS_HELP = tuple(t for t in (getattr(click.exceptions, "NoArgsIsHelpError", None),) if t is not None)


class ExitCode(enum.IntEnum):
    OK = 0
    NOT_FOUND = 1
    USAGE = 2
    CONFIG = 3
    REFUSED = 4
    BACKEND = 5
    VERIFICATION = 6
    SOFTWARE = 70
    INTERRUPTED = INTERRUPTED_EXIT_CODE


#: StorageError code -> exit code; codes not listed (plugin-defined ones) exit with BACKEND.
EXIT_CODES = {
    "key-not-found": ExitCode.NOT_FOUND,
    "invalid-key": ExitCode.USAGE,
    "invalid-argument": ExitCode.USAGE,
    "invalid-export-file": ExitCode.USAGE,
    "invalid-config": ExitCode.CONFIG,
    "invalid-manifest": ExitCode.CONFIG,
    "plugin-error": ExitCode.CONFIG,
    "permission-denied": ExitCode.REFUSED,
    "quota-exceeded": ExitCode.REFUSED,
    "value-too-large": ExitCode.REFUSED,
    "too-many-keys": ExitCode.REFUSED,
    "gap": ExitCode.REFUSED,
    "internal-error": ExitCode.BACKEND,
    "verification-failed": ExitCode.VERIFICATION,
}

# Fixes for errors whose core message names the problem but cannot know the command line.
_HINTS = {
    "invalid-export-file": "nothing was written",
}
#: Added to StoreUnreachable only: in-use, damaged and read-only errors already name their own fix.
_UNREACHABLE_HINT = (
    "check that the store is reachable and the URL is right (--url, AIRSSYS_STORAGE_URL "
    "or the settings file); rerun with --debug for details"
)


class Failure(click.ClickException):
    """A command failed in a way the user can fix; *message* names the problem and the fix."""

    def __init__(self, message: str, exit_code: int = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # a class variable in click >= 8.2 stubs


class _StderrHandler(logging.Handler):
    """Log records as one line each on the *current* stderr (CliRunner swaps it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Audit records are for the host's log (the CLI reports the error itself, on one line).
        return not record.name.startswith("airssys_storage.audit")

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"{PROG_NAME}: {record.levelname.lower()}: {_one_line(record.getMessage())}", err=True)


def _one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", text.strip())


class RootGroup(click.Group):
    """The ``airssys-storage`` group; calling it (or :meth:`main`) runs the command line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.debug = False
        self._plugin_commands: dict[str, click.Command] | None = None

    # -- lazy subcommands ------------------------------------------------------

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*BUILTIN_COMMANDS, *self.plugin_commands()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = BUILTIN_COMMANDS.get(cmd_name)
        if target is not None:
            module, attribute = target.split(":")
            command: click.Command = getattr(importlib.import_module(module), attribute)
            return command
        return self.plugin_commands().get(cmd_name)

    def plugin_commands(self) -> dict[str, click.Command]:
        """Subcommands added by plugins; a broken plugin costs a warning, never the CLI."""
        if self._plugin_commands is None:
            self._plugin_commands = {}
            staging = click.Group(PROG_NAME)
            try:
                from ..plugins import PluginRegistry

                PluginRegistry.load(blocked=_blocked_plugins()).register_commands(staging)
            except Exception as exc:
                logging.getLogger("airssys_storage").warning(
                    "plugin subcommands are unavailable: %s: %s; `airssys-storage plugins` lists the plugins",
                    type(exc).__name__,
                    exc,
                )
            for name, command in staging.commands.items():
                if name in BUILTIN_COMMANDS:
                    logging.getLogger("airssys_storage").warning(
                        "a plugin's command %r is ignored: a built-in command has that name", name
                    )
                else:
                    self._plugin_commands[name] = command
        return self._plugin_commands

    # -- running and errors ----------------------------------------------------

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        self.debug = False
        self._plugin_commands = None  # settings (blocked plugins) may differ from the last call
        logger = logging.getLogger("airssys_storage")
        handler = _StderrHandler(logging.WARNING)
        propagate, level = logger.propagate, logger.level
        logger.addHandler(handler)
        logger.propagate = False
        try:
            try:
                result = super().main(args, prog_name or PROG_NAME, complete_var, standalone_mode=False, **extra)
            except SystemExit:
                raise
            except BaseException as exc:  # every failure becomes one line and an exit code
                code = self.report(exc)
            else:
                code = result if isinstance(result, int) else ExitCode.OK
        finally:
            logger.removeHandler(handler)
            logger.propagate = propagate
            logger.setLevel(level)
        if standalone_mode:
            sys.exit(int(code))
        return int(code)

    def report(self, exc: BaseException) -> int:
        """Print *exc* as one line on stderr (and the traceback with ``--debug``); return the exit code."""
        if isinstance(exc, _NO_ARGS_IS_HELP) and isinstance(exc, click.UsageError) and exc.ctx is not None:
            click.echo(exc.ctx.get_help(), err=True)  # a group run without a command: its help, as click does
            return ExitCode.USAGE
        code, message = _describe(exc)
        if self.debug and not isinstance(exc, click.UsageError):
            traceback.print_exception(exc, file=sys.stderr)
        click.echo(f"{PROG_NAME}: error: {_one_line(message)}", err=True)
        return code


def _describe(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, click.UsageError):
        where = exc.ctx.command_path if exc.ctx is not None else PROG_NAME
        return ExitCode.USAGE, f"{exc.format_message()} (see `{where} --help`)"
    if isinstance(exc, click.ClickException):
        return exc.exit_code, exc.format_message()
    if isinstance(exc, click.Abort) or isinstance(exc, KeyboardInterrupt):
        if isinstance(exc, KeyboardInterrupt) or isinstance(exc.__cause__, KeyboardInterrupt):
            return ExitCode.INTERRUPTED, INTERRUPTED_MESSAGE
        return ExitCode.NOT_FOUND, "aborted; nothing was changed"
    if isinstance(exc, StorageError):
        hint = _UNREACHABLE_HINT if isinstance(exc, StoreUnreachable) else _HINTS.get(exc.code)
        return EXIT_CODES.get(exc.code, ExitCode.BACKEND), exc.message + (f"; {hint}" if hint else "")
    if isinstance(exc, OSError):
        where = f" {exc.filename!r}" if exc.filename else ""
        return ExitCode.USAGE, f"cannot access{where}: {exc.strerror or exc}; check the path and its permissions"
    return (
        ExitCode.SOFTWARE,
        f"unexpected {type(exc).__name__}: {exc}; this is a bug in airssys-storage or a plugin: "
        "rerun with --debug and report the traceback",
    )


def _blocked_plugins() -> list[str]:
    # Settings errors surface when a command reads the settings; here they only cost the block list.
    try:
        from .._settings_fast import read_plain

        plain = read_plain()  # the root help and plugin commands need no pydantic either
        if plain is not None:
            return list(plain.blocked_plugins)
        from ..settings import StorageSettings

        return list(StorageSettings().blocked_plugins)
    except Exception:
        return []


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    root = ctx.find_root().command
    if isinstance(root, RootGroup):
        root.debug = value
        if value:
            logging.getLogger("airssys_storage").setLevel(logging.DEBUG)


@click.group(cls=RootGroup, name=PROG_NAME, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_debug,
    help="On error, print the traceback as well.",
)
@click.version_option(package_name="airssys-storage", prog_name=PROG_NAME)
def cli() -> None:
    """Inspect and move the data of airssys-storage components.

    Commands work on the configured backend (AIRSSYS_STORAGE_URL, the
    settings file, or --url). Exit codes: 0 ok, 1 not found or aborted,
    2 bad command line or input file, 3 configuration, 4 refused (quota,
    limits), 5 storage failure, 6 verification failed, 70 bug, 130
    interrupted.

    \b
    Shell completion (zsh_source, fish_source for other shells):
      eval "$(_AIRSSYS_STORAGE_COMPLETE=bash_source airssys-storage)"
    """
