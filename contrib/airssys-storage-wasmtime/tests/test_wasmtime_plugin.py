"""The package as a plugin: found through its entry point, cheap to import."""

from __future__ import annotations

import subprocess
import sys

import click

from airssys_storage import PluginRegistry


def test_importing_the_plugin_loads_neither_wasmtime_nor_click() -> None:
    code = (
        "import sys, airssys_storage_wasmtime\n"
        "loaded = sorted(m for m in ('wasmtime', 'click') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
        "assert airssys_storage_wasmtime.Host.__name__ == 'Host'  # resolved on first use\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_registry_loads_it_and_it_adds_run() -> None:
    registry = PluginRegistry.load()
    assert "wasmtime" not in registry.failures
    group = click.Group("airssys-storage")
    registry.register_commands(group)
    assert "run" in group.commands
