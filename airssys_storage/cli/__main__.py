"""``python -m airssys_storage.cli`` runs the command line."""

from __future__ import annotations

from . import run

run()
