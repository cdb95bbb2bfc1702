"""The ``airssys-storage`` operator command line (click; rich for progress bars and tables).

``main`` is the root command group: tests may pass it to
:class:`click.testing.CliRunner`. The console script calls :func:`run`,
which imports ``main`` only once it can turn Ctrl-C into the one-line
``interrupted`` message and exit code 130, so an interrupt while the
command line is still loading is no traceback. See ``docs/cli.md``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from .app import cli as main

#: What every command prints on Ctrl-C (exit code 130), whenever it comes.
INTERRUPTED_MESSAGE = "interrupted; work done so far stays (every batch is atomic)"
INTERRUPTED_EXIT_CODE = 130


def run() -> NoReturn:
    """The console script: run ``main``; Ctrl-C at any moment prints one line and exits 130."""
    try:
        from .app import cli

        code = cli.main(standalone_mode=False)  # reports Ctrl-C itself once it runs
    except KeyboardInterrupt:
        sys.stderr.write(f"airssys-storage: error: {INTERRUPTED_MESSAGE}\n")
        code = INTERRUPTED_EXIT_CODE
    sys.exit(code)


def __getattr__(name: str) -> Any:
    if name == "main":
        from .app import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["INTERRUPTED_EXIT_CODE", "INTERRUPTED_MESSAGE", "main", "run"]
