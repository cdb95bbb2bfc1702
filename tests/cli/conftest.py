"""Fixtures for the CLI tests: running the command line, and fresh stores on the installed backends."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from cli_helpers import SCRIPT, Completed, Run, Store, use_backend
from click.testing import CliRunner, Result

from airssys_storage.cli import main


@pytest.fixture
def cli() -> Run:
    """Run the command line in-process through click's runner on the real entry point object."""
    runner = CliRunner()

    def run(*args: str, input: bytes | str | None = None, env: Mapping[str, str] | None = None) -> Result:
        return runner.invoke(main, list(args), input=input, env=dict(env) if env else None)

    return run


@pytest.fixture
def cli_process() -> Callable[..., Completed]:
    """Run the installed ``airssys-storage`` console script in a subprocess."""

    def run(*args: str, input: bytes | None = None) -> Completed:
        done = subprocess.run([*SCRIPT, *args], input=input, capture_output=True, timeout=120, check=False)
        return Completed(done.returncode, done.stdout, done.stderr.decode("utf-8", "replace"))

    return run


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[Callable[[str], Store]]:
    """``make_store(backend_name)`` gives a fresh store, skipping if that backend is unavailable."""
    stores: list[Store] = []

    def make(name: str) -> Store:
        where = tmp_path / f"{name}-{len(stores)}"
        where.mkdir()
        backend = use_backend(name, where)
        options = {}
        if backend.shared:
            prefix = f"cli_{'ab'[sum(s.backend is backend for s in stores)]}_"
            if backend.prefix_option == "key_prefix":  # Redis: a prefix of this test's own, deleted after it
                prefix += f"{secrets.token_hex(4)}:"
            options[backend.prefix_option] = prefix
        store = Store(backend, backend.make(where), options)
        stores.append(store)
        return store

    yield make
    for store in stores:
        if store.backend.shared:
            store.cleanup()
