"""A connection lost while a write commits: the error says the outcome is unknown.

Issue 9: a lost connection during commit was reported as a plain failure,
yet on MariaDB 8 of 106 such writes had committed. Faults are injected from
the server side (``pg_terminate_backend`` / ``KILL CONNECTION`` of the
writer's session, never stopping the server) and, for the instant around
``COMMIT``, at the driver: the error must be :class:`OutcomeUnknown` ("may have
been applied; read back before retrying") exactly when the server may have
committed, and a plain ``internal-error`` when it cannot have.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlsupport import Server, commit

from airssys_storage import InternalError, OutcomeUnknown

OpenBackend = Callable[..., Any]
UNKNOWN = "may have been applied: read back before retrying"


def session_id(server: Server, cursor: Any) -> int:
    if server.engine == "postgresql":
        return int(cursor.connection.info.backend_pid)
    return int(cursor.connection.thread_id())


def kill(server: Server, session: int) -> None:
    if server.engine == "postgresql":
        server.execute("SELECT pg_terminate_backend(:pid)", {"pid": session})
    else:
        server.execute(f"KILL CONNECTION {session}")


def waiting_session(server: Server, table: str, exclude: int) -> int:
    """The id of the session blocked on a lock in a statement on *table* (waits up to 10 s)."""
    if server.engine == "postgresql":
        sql = (
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE :q AND pid <> :me "
            "AND datname = current_database()"
        )
    else:
        sql = (
            "SELECT trx_mysql_thread_id FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT' "
            "AND trx_query LIKE :q AND trx_mysql_thread_id <> :me"
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = server.execute(sql, {"q": f"%{table}%", "me": exclude})
        if rows:
            return int(rows[0][0])
        time.sleep(0.02)
    raise AssertionError(f"no session waited on {table}")


@pytest.mark.engines("postgresql", "mariadb")
@pytest.mark.parametrize("hot", [True, False], ids=["put_one", "apply"])
def test_writer_killed_by_the_server_while_its_write_waits(
    server: Server, open_backend: OpenBackend, hot: bool
) -> None:
    """Killed inside the write: a hot path's one statement or call is unknown; an open transaction is not."""
    backend = open_backend(lock_timeout=30)
    backend.put_one("ns", b"seed", b"s", None)  # the usage row exists, so the writer will wait on its lock
    locker = open_backend()
    cursor = locker._take()
    cursor.execute("BEGIN" if server.engine == "postgresql" else "START TRANSACTION")
    cursor.execute(f"SELECT used_bytes FROM {locker._tables.usage} WHERE ns = %s FOR UPDATE", ("ns",))
    cursor.fetchall()
    caught: list[BaseException] = []

    def write() -> None:
        try:
            if hot:
                backend.put_one("ns", b"k", b"value", None)
            else:
                commit(backend, "ns", [(b"k", b"value")], None)
        except BaseException as exc:
            caught.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(0.5)  # MariaDB's innodb_trx can miss a wait that just began
        assert not caught, caught
        kill(server, waiting_session(server, locker._tables.usage, session_id(server, cursor)))
        writer.join(30)
    finally:
        cursor.connection.rollback()
        locker._release(cursor)
    [error] = caught
    assert isinstance(error, InternalError) and "lost the connection to" in str(error)
    if hot:  # one autocommit statement (PostgreSQL) or CALL (MariaDB), which commits inside: unknown
        assert isinstance(error, OutcomeUnknown) and UNKNOWN in str(error)
    else:  # killed before COMMIT: the server rolled the transaction back
        assert not isinstance(error, OutcomeUnknown), error
    assert backend.get("ns", b"k") is None  # here the statement did not commit: reading back tells
    backend.put_one("ns", b"k", b"again", None)  # the backend reconnects
    assert backend.get("ns", b"k") == b"again" and backend.usage("ns").bytes == len(b"seedskagain")


class _KillAround:
    """Wraps the pooled cursor: kills the session just before or just after the commit happens on the server."""

    def __init__(self, server: Server, cursor: Any, after: bool) -> None:
        self._server, self._cursor, self._after = server, cursor, after
        self._pipelined_commit = False  # a COMMIT queued in a PostgreSQL pipeline, not yet run
        self._in_pipeline = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    @property
    def connection(self) -> Any:
        return _PipelineAround(self)

    def _kill(self) -> None:
        kill(self._server, session_id(self._server, self._cursor))

    def execute(self, sql: str | bytes, params: Any = None) -> Any:
        """A commit point: a hot-path statement (PostgreSQL) or CALL (MariaDB), or a COMMIT (alone, last of
        MariaDB's multi-statement of a commit's writes, or queued in PostgreSQL's pipeline of them).

        MariaDB sends the statements of a batch with values as bytes; their ends are ASCII."""
        text = sql.strip()  # strip before cutting: PostgreSQL's statements start with a newline and indentation
        head, tail = text[:16], text[-16:]
        if isinstance(head, bytes) and isinstance(tail, bytes):
            head, tail = head.decode(errors="replace"), tail.decode(errors="replace")
        if not (head.startswith(("WITH", "COMMIT", "CALL")) or tail.endswith(";COMMIT")):
            return self._cursor.execute(sql, params)
        if not self._after:
            self._kill()
        result = self._cursor.execute(sql, params)
        if self._after:
            if self._in_pipeline:  # it runs when the pipeline ends: kill after that
                self._pipelined_commit = True
                return result
            self._kill()
            self._cursor.execute("SELECT 1")  # the driver learns the connection is gone
        return result


class _PipelineAround:
    """The wrapped cursor's connection, whose ``pipeline()`` lets :class:`_KillAround` kill after it ran."""

    def __init__(self, around: _KillAround) -> None:
        self._around = around

    def __getattr__(self, name: str) -> Any:
        return getattr(self._around._cursor.connection, name)

    @contextlib.contextmanager
    def pipeline(self) -> Iterator[Any]:
        around = self._around
        around._in_pipeline = True
        try:
            with around._cursor.connection.pipeline() as pipeline:
                yield pipeline
        finally:
            around._in_pipeline = False
        if around._pipelined_commit:  # committed; now the connection dies before the caller hears back
            around._pipelined_commit = False
            around._kill()
            around._cursor.execute("SELECT 1")


@pytest.mark.engines("postgresql", "mariadb")
@pytest.mark.parametrize("after", [False, True], ids=["killed-before-commit", "killed-after-commit"])
def test_connection_lost_at_commit_is_outcome_unknown(server: Server, open_backend: OpenBackend, after: bool) -> None:
    backend = open_backend()
    backend.put_one("ns", b"seed", b"s", None)
    backend._release(_KillAround(server, backend._take(), after))
    for write in (
        lambda: backend.put_one("ns", b"k", b"value", None),
        lambda: commit(backend, "ns", [(b"a", b"1"), (b"b", b"2")], None),
    ):
        with pytest.raises(OutcomeUnknown, match=UNKNOWN) as lost:
            write()
        assert "lost the connection to" in str(lost.value) and lost.value.code == "internal-error"
        cursor = backend._take()
        backend._release(_KillAround(server, cursor, after))
    # Either outcome happens, which is why the error cannot say more: after the commit the data is there.
    assert (backend.get("ns", b"k") == b"value") is after
    assert (backend.get_many("ns", [b"a", b"b"]) == [b"1", b"2"]) is after
    expected = len(b"seeds") + (len(b"kvalue") + len(b"a1b2") if after else 0)
    assert backend.usage("ns").bytes == expected
