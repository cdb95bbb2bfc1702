"""Issue 9 on the SQL engines: racing first opens in real processes, damaged SQLite files.

Fork and verify are clauses of the shared conformance suite (airssys_storage.testing).
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from airssys_storage_sql import SQLBackend
from sqlsupport import Server, commit

from airssys_storage import StorageError, Usage


def _race_open(url: str, options: dict[str, Any], barrier: Any, results: Any, index: int) -> None:
    barrier.wait()
    try:
        backend = SQLBackend.open(url, options)
        try:
            backend.put_one("race", b"k%d" % index, b"v", None)
        finally:
            backend.close()
    except StorageError as exc:
        results.put(f"{exc.code}: {exc}")
        return
    results.put("opened")


def test_processes_racing_to_create_the_schema_all_open(
    store_url: str, server: Server | None, fresh_prefix: str, tmp_path: Path
) -> None:
    """N processes opening one new store at once (schema creation racing): every one opens, none sees damage."""
    ctx = multiprocessing.get_context("fork")
    for round_ in range(3):
        url = f"sqlite:///{tmp_path}/race-{round_}.sqlite3" if server is None else store_url
        prefix = f"{fresh_prefix}{round_}"
        options = {} if server is None else {"table_prefix": prefix}
        barrier = ctx.Barrier(6)
        results = ctx.Queue()
        processes = [ctx.Process(target=_race_open, args=(url, options, barrier, results, i)) for i in range(6)]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(60)
        assert outcomes == ["opened"] * 6, outcomes
        backend = SQLBackend.open(url, options)
        try:
            assert backend.usage("race") == Usage(6 * 3, 6)
            assert backend.verify().ok
        finally:
            backend.close()
            if server is not None:
                server.drop(prefix)


@pytest.mark.engines("sqlite")
@pytest.mark.parametrize("options", [{}, {"table_prefix": "p_"}], ids=["default", "prefix"])
def test_sqlite_damage_is_reported_with_the_path_and_the_fix(tmp_path: Path, options: dict[str, Any]) -> None:
    """A damaged SQLite file: verify (or any read that hits the damage) names the file and the rebuild command,
    with the options that select the same tables (the issue's table_prefix 'p_')."""
    url = f"sqlite:///{tmp_path}/damaged.sqlite3"
    backend = SQLBackend.open(url, options)
    try:
        commit(backend, "ns", [(b"k%05d" % i, b"v" * 200) for i in range(500)], None)
    finally:
        backend.close()  # the last connection checkpoints the log into the file
    path = tmp_path / "damaged.sqlite3"
    data = bytearray(path.read_bytes())
    data[4096 * 20 + 8 : 4096 * 20 + 60] = b"\xff" * 52  # scribble over a data page's header and cells
    path.write_bytes(bytes(data))
    backend = SQLBackend.open(url, options)
    try:
        try:
            report = backend.verify()
        except StorageError as exc:
            problem = str(exc)
        else:
            assert not report.ok
            problem = report.problems[0]
        assert str(path) in problem and "is damaged" in problem
        assert ".recover" in problem and f"airssys-storage verify --repair --url {url}" in problem
        assert ('--backend-options \'{"table_prefix":"p_"}\'' in problem) == bool(options)
    finally:
        backend.close()
