"""The ``airssys-storage`` operator command line (click; rich for progress bars and tables).

``main`` is the root command group: the console script calls it, and tests
may pass it to :class:`click.testing.CliRunner`. See ``docs/cli.md``.
"""

from __future__ import annotations

from .app import cli as main

__all__ = ["main"]
