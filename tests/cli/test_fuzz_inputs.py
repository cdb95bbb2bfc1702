"""Fuzzing every input that reaches a URL or path parser: only StorageError subclasses come out.

Issue 9: ``StorageSettings(url="memory://[")`` went on to raise a raw
``ValueError`` (the CLI exited 70, "bug"). The inputs fuzzed here are the
settings' ``url`` and ``backend_options`` (which ``--url``, ``--backend-options``,
``migrate --from/--to`` and their ``-options`` become), ``sqlite:///`` and
``leveldb:///`` paths, export/import file paths and manifest paths. Stores
are only ever created under the test's temporary directory: fuzzed paths are
appended to it and never hold ``..``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airssys_storage import ConfigurationError, Manifest, StorageError, StorageManager, StorageSettings
from airssys_storage.cli import main
from airssys_storage.plugins import backend_scheme, redact_url

# Characters that parsers treat specially, plus some that file systems and drivers reject.
SPECIAL = "[]@:/?#%+&=;., \\\x00\n\t\x7f\u00e9\u2028\ud800\U0001f600~*'\""
TEXT = st.text(alphabet=st.sampled_from(SPECIAL) | st.characters(codec="utf-8"), max_size=40)
#: Text that cannot climb out of the temporary directory once appended to it.
SAFE_PATH = TEXT.filter(lambda t: ".." not in t and ".." not in unquote(t) and "%2" not in t.lower())
SCHEMES = ["memory", "sqlite", "leveldb", "postgresql+psycopg", "mysql+pymysql", "mariadb", "nosuch", "SQLITE", ""]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="airssys-fuzz-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def open_and_close(**values: Any) -> None:
    """Settings, then a manager on them: either works or raises a StorageError."""
    try:
        manager = StorageManager.from_settings(StorageSettings(**values))
    except StorageError:
        return
    manager.close()


@FUZZ
@given(url=TEXT)
def test_any_url_text_gives_settings_or_a_configuration_error(url: str) -> None:
    try:
        StorageSettings(url=url)
    except ConfigurationError:
        pass
    backend_scheme(url)  # never raises
    assert "***" in redact_url(url) or redact_url(url) == url or "@" in url or "=" in url


@FUZZ
@given(scheme=st.sampled_from(["memory", "nosuch", "", "1x", "a b"]), rest=TEXT)
def test_urls_of_backends_without_files(scheme: str, rest: str) -> None:
    open_and_close(url=f"{scheme}://{rest}")


@pytest.mark.skipif(not installed("airssys_storage_sql"), reason="airssys-storage-sql is not installed")
@FUZZ
@given(rest=SAFE_PATH, query=st.sampled_from(["", "?", "?mode=ro", "?timeout=x", "?uri=true", "?%zz=1", "#f"]))
def test_sqlite_paths(rest: str, query: str) -> None:
    with scratch() as tmp:
        open_and_close(url=f"sqlite:///{tmp}/{rest}{query}")


@pytest.mark.skipif(not installed("airssys_storage_leveldb"), reason="airssys-storage-leveldb is not installed")
@FUZZ
@given(rest=SAFE_PATH, host=st.sampled_from(["", "h", "[", "[::1]", "a:b@"]))
def test_leveldb_paths(rest: str, host: str) -> None:
    with scratch() as tmp:
        open_and_close(url=f"leveldb://{host}{tmp}/{rest}")


@pytest.mark.skipif(not installed("airssys_storage_sql"), reason="airssys-storage-sql is not installed")
@FUZZ
@given(scheme=st.sampled_from(["postgresql+psycopg", "postgres", "mysql+pymysql", "mariadb", "mysql+x"]), rest=TEXT)
def test_server_urls_parse_without_connecting(scheme: str, rest: str) -> None:
    """The server URL parsers (and engine creation, which does no I/O) raise StorageError only."""
    from airssys_storage_sql.backend import SQLOptions, parse_url

    try:
        sa_url, engine = parse_url(f"{scheme}://{rest}")
        if engine == "postgresql":
            from airssys_storage_sql._postgresql import PostgreSQLDialect as impl
        else:
            from airssys_storage_sql._mariadb import MariaDBDialect as impl
        impl.create(sa_url, SQLOptions()).close()
    except StorageError:
        pass


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=6,
)
OPTION_NAMES = [
    "table_prefix", "pool_size", "pool_timeout", "lock_timeout", "connect_timeout", "synchronous", "connect_args",
    "sync", "block_cache_size", "write_buffer_size", "compression", "bloom_filter_bits", "size_cache_keys",
]  # fmt: skip


@FUZZ
@given(
    scheme=st.sampled_from(["memory", "sqlite", "leveldb"]),
    options=st.dictionaries(st.sampled_from(OPTION_NAMES) | TEXT, JSON, max_size=3),
)
def test_backend_options(scheme: str, options: dict[str, Any]) -> None:
    if scheme != "memory" and not installed(f"airssys_storage_{'sql' if scheme == 'sqlite' else scheme}"):
        return
    with scratch() as tmp:
        open_and_close(url="memory://" if scheme == "memory" else f"{scheme}:///{tmp}/store", backend_options=options)


@FUZZ
@given(path=TEXT)
def test_manifest_paths(path: str) -> None:
    with scratch() as tmp:
        try:
            Manifest.from_file(str(tmp / path) if path else path)
        except StorageError:
            pass


@FUZZ
@given(path=SAFE_PATH)
def test_cli_file_arguments_exit_with_a_one_line_error(path: str) -> None:
    """export -o, import FILE, manifest check FILE and set --manifest: never exit 70 (a bug)."""
    with scratch() as tmp:
        target = str(tmp / path)
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            for args in (
                ["export", "--url", "memory://", "-c", "app", "-o", target],
                ["import", target, "--url", "memory://"],
                ["manifest", "check", target],
                ["set", "--url", "memory://", "-c", "app", "--manifest", target, "k", "v"],
                ["stats", "--url", "memory://", "--manifest", target],
                ["set", "--url", "memory://", "-c", "app", "--file", target, "k"],
            ):
                code = _run_cli(args)
                assert code != 70, args
        finally:
            os.chdir(cwd)


def _run_cli(args: list[str]) -> int:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main.main(args, prog_name="airssys-storage", standalone_mode=False)
    assert "unexpected" not in err.getvalue(), (args, err.getvalue())
    return int(code)


def test_a_backend_missing_a_module_is_a_configuration_error(tmp_path: Path) -> None:
    """The core's sibling of the missing-driver fix: any backend's ModuleNotFoundError is invalid-config."""
    import importlib.metadata
    import sys
    import types

    from airssys_storage import StorageBackend, hookimpl
    from airssys_storage.plugins import PluginRegistry

    class NeedsDriver(StorageBackend):
        name = "needsdriver"
        url_schemes = ("needsdriver",)

        @classmethod
        def open(cls, url: str, options: Any) -> StorageBackend:
            import airssys_no_such_driver  # type: ignore[import-not-found]  # noqa: F401

            raise AssertionError("unreachable")

    module = types.ModuleType("fake_needsdriver")
    module.register_backends = hookimpl(lambda: [NeedsDriver])  # type: ignore[attr-defined]
    sys.modules["fake_needsdriver"] = module
    try:
        ep = importlib.metadata.EntryPoint(name="needsdriver", value="fake_needsdriver", group="airssys_storage")
        registry = PluginRegistry.load(entry_points=[ep])
        with pytest.raises(ConfigurationError, match="'airssys_no_such_driver' it needs is not installed"):
            StorageManager.from_settings(StorageSettings(url="needsdriver://x"), registry=registry)
    finally:
        del sys.modules["fake_needsdriver"]


@pytest.mark.parametrize("url", ["memory://[", "sqlite://[::1/x", "leveldb://[/x", "postgresql+psycopg://u@[::1/db"])
def test_an_unparsable_url_is_invalid_config_naming_the_field(url: str) -> None:
    """Issue 9: ``StorageSettings(url="memory://[")`` led to a raw ValueError (the CLI exited 70)."""
    with pytest.raises(ConfigurationError, match=r"url=.*is not a valid URL \(Invalid IPv6 URL\)"):
        StorageSettings(url=url)
    for args in (["keys", "-c", "x", "--url", url], ["migrate", "--from", url, "--to", "memory://"]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main.main(args, prog_name="airssys-storage", standalone_mode=False)
        assert code == 3 and "is not a valid URL" in err.getvalue(), err.getvalue()
