"""Connection loss and server restarts, on a private ``redis-server`` this test starts (never the shared one).

The server runs in a temporary directory on a free port with ``appendonly yes``
and ``appendfsync always``. It is killed with SIGKILL (a crash, not a clean
shutdown) and started again on the same port and files: every acknowledged
write is there, the counters are exact, operations while it is down fail with
an ``internal-error`` naming the server, a commit cut off in flight raises
``OutcomeUnknown``, and the next operation after the restart works.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redissupport import skip_or_fail

from airssys_storage import Access, InternalError, Manifest, OutcomeUnknown, StorageManager, StorageSettings, Usage


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateServer:
    """A redis-server of this test: started, SIGKILLed and started again on the same port and directory."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server") or shutil.which("valkey-server")
        if binary is None:
            skip_or_fail("the restart tests start their own server: install redis-server (or valkey-server)")
        self.binary = str(binary)
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateServer]:
    private = PrivateServer(tmp_path)
    private.start()
    try:
        yield private
    finally:
        if private.process is not None:
            private.kill()


def _manager(url: str, **options: object) -> StorageManager:
    return StorageManager.from_settings(StorageSettings(url=url, backend_options=options))


def test_crash_and_restart_lose_no_acknowledged_write_and_the_next_operation_works(server: PrivateServer) -> None:
    """appendfsync always: after SIGKILL every acknowledged write and the counters are back; errors name the server."""
    manager = _manager(server.url)
    storage = manager.component(Manifest("app", Access.ADMIN, None))
    written = {f"k{i}": str(i).encode() * 3 for i in range(200)}
    for key, value in written.items():
        storage.set(key, value)
    storage.increment("counter", 5)
    expected = storage.usage()
    server.kill()
    for operation in (lambda: storage.get("k1"), lambda: storage.set("x", b"1"), storage.keys):
        with pytest.raises(InternalError) as caught:
            operation()
        assert not isinstance(caught.value, OutcomeUnknown), "nothing was sent: the outcome is known"
        assert f"Redis at 127.0.0.1:{server.port}/0" in str(caught.value)
    server.start()
    assert storage.get("k1") == written["k1"], "the next operation after the restart works"
    assert all(storage.get(key) == value for key, value in written.items())
    assert storage.usage() == expected
    assert storage.increment("counter", 1) == 6
    assert manager.backend.verify().ok
    manager.close()


def test_a_commit_cut_off_in_flight_raises_outcome_unknown(server: PrivateServer) -> None:
    """A commit sent but unanswered when the connection dies: OutcomeUnknown (code internal-error), then reconnect."""
    manager = _manager(server.url)
    storage = manager.component(Manifest("app", Access.ADMIN, None))
    storage.set("before", b"1")
    import redis

    admin = redis.Redis(host="127.0.0.1", port=server.port)
    admin.execute_command("CLIENT", "PAUSE", 30000, "WRITE")  # the commit waits on the server, unanswered
    errors: list[BaseException] = []

    def commit() -> None:
        try:
            storage.set("during", b"2")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=commit)
    thread.start()
    while not any(c.get("cmd") == "evalsha" for c in admin.client_list()):  # the commit reached the server
        time.sleep(0.01)
    admin.close()
    server.kill()
    thread.join(30)
    [error] = errors
    assert isinstance(error, OutcomeUnknown) and error.code == "internal-error"
    assert f"Redis at 127.0.0.1:{server.port}/0" in str(error) and "read back" in str(error)
    server.start()
    assert storage.get("before") == b"1"
    assert storage.get("during") is None  # killed before it ran: the caller had to read back to know
    storage.set("after", b"3")
    assert storage.usage() == Usage(len("before") + 1 + len("after") + 1, 2)
    manager.close()


def test_unreachable_server_at_open_names_it_without_the_password() -> None:
    """Opening a store on a dead port: an internal-error naming the server, the password redacted."""
    port = _free_port()
    with pytest.raises(InternalError) as caught:
        _manager(f"redis://user:s3cret@127.0.0.1:{port}/2", connect_timeout=1)
    message = str(caught.value)
    assert f"Redis at 127.0.0.1:{port}/2" in message and "s3cret" not in message
