"""A fixture that keeps tests away from the developer's settings, data and caches."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads the developer's settings file, AIRSSYS_STORAGE_* variables, data or cache directories.

    ``AIRSSYS_STORAGE_TEST_*`` variables (test configuration) are kept. Import
    it into a ``conftest.py`` to apply it to every test below::

        from airssys_storage.testing import isolated_environment  # noqa: F401
    """
    for name in list(os.environ):
        if name.startswith("AIRSSYS_STORAGE_") and not name.startswith("AIRSSYS_STORAGE_TEST_"):
            monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local/share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.chdir(home)
