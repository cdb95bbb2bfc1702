"""A URL pointing at something that is not Redis (an HTTP port, a proxy, garbage, plain Redis behind rediss://)
fails fast with a StorageError naming the server and the fix; no redis-py exception leaks."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator

import pytest
from airssys_storage_redis import RedisBackend

from airssys_storage import ConfigurationError, StorageError

_ANSWERS = {
    "http": b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    "garbage": b"\x00\x01garbage that is no protocol at all\r\n",
    "silent-close": b"",
    "pong-then-garbage": b"+PONG\r\n",  # passes the connection check, then answers the next command with garbage
}


@pytest.fixture(params=sorted(_ANSWERS))
def fake_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    """A local TCP server that reads what the client sends, answers one canned reply, and closes."""
    answer = _ANSWERS[request.param]

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(4096)
            if answer:
                self.request.sendall(answer)
            if answer == b"+PONG\r\n":
                self.request.recv(4096)
                self.request.sendall(b"?not RESP\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield request.param, server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_a_server_that_is_not_redis_is_named_as_such(fake_server: tuple[str, int], scheme: str) -> None:
    kind, port = fake_server
    with pytest.raises(StorageError) as caught:
        RedisBackend.open(f"{scheme}://127.0.0.1:{port}/14", {"connect_timeout": 5, "socket_timeout": 5})
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message, message
    assert type(caught.value).__module__ == "airssys_storage.errors"  # no redis-py exception leaks
    if kind == "http":
        assert isinstance(caught.value, ConfigurationError)
        assert "is not a Redis server (it answered HTTP" in message
    elif kind == "garbage":
        assert isinstance(caught.value, ConfigurationError)
        assert "is not a Redis server" in message and "garbage" in message
    elif kind == "pong-then-garbage" and scheme == "redis":
        assert isinstance(caught.value, ConfigurationError)
        assert "sent a reply that is not Redis protocol" in message


def test_rediss_against_a_plain_redis_says_it_does_not_speak_tls(redis_url: str) -> None:
    """The tester's case: rediss:// on a plain server; the handshake waits connect_timeout at most, not 60 s."""
    plain = redis_url.replace("redis://", "rediss://", 1)
    with pytest.raises(ConfigurationError) as caught:
        RedisBackend.open(plain, {"connect_timeout": 1, "tls_verify": False})
    assert "does not speak TLS: use redis:// or enable TLS on the server" in str(caught.value)
