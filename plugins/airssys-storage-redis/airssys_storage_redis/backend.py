"""The ``redis`` backend: layout, connections, errors, reads, and the one Lua commit.

Layout (every key of one component shares the hash tag ``{<component>}``, so
on Redis Cluster they live in one slot and a Lua script may touch them all)::

    <prefix>{<component>}:d   hash        key -> "<version>[,<expires_at>]:<value>"
    <prefix>{<component>}:i   sorted set  every key, score 0: bytewise order (ZRANGEBYLEX)
    <prefix>{<component>}:e   sorted set  keys with an expiry, score = expires_at (ms)
    <prefix>{<component>}:s   hash        the counter row: b (bytes), k (keys), f (version floor)
    <prefix>{<component>}:o   hash        recorded operation ids -> result
    <prefix>{<component>}:t   sorted set  recorded operation ids, score = time recorded (ms)
    <prefix>{<component>}:c   stream      the change log (feed on only), entry id "<seq>-0"; the last
                                          seq and its time are the counter row's fields q and a

The change feed (:mod:`airssys_storage.changes`): a commit of a component
with the feed on passes its settings to the commit script, which appends the
commit's events to the log in the same atomic step (the seq is the counter
row's, bumped inside the script: dense and strictly increasing across every
client), trims it, and ``PUBLISH``es the log's key name on the store's
channel; a listener thread (started by the first watcher) turns that into
same-process wake-ups, and the watcher pulls. Without the feed the script
gets an empty argument and does exactly what it did before.

Why Lua: a commit reads the old rows and the counter row, applies the quota
guard, bumps versions, checks conditions and writes rows, indexes and
counter, and nothing may come between the read and the write, across every
client of the server. ``WATCH``/``MULTI`` would need two round trips and a
retry loop under contention; a Lua script is atomic on the server (no other
command runs while it does) and costs one round trip, like a plain ``SET``.
The script (``commit.lua``) is therefore a second implementation of the
planner's rules for this engine; the backend re-runs
:func:`airssys_storage.planner.plan` on the old state the script returns,
which builds the :class:`~airssys_storage.planner.Plan` and every error
message and checks that both agree (a disagreement is an ``internal-error``).

Redis's own key expiry is not used: it would drop a row without taking its
bytes off the counter. Expired rows stay (invisible to reads, still charged)
until a sweep (``delete_range(expired_only=True)``, ``purge_expired``) or a
write removes them, exactly as on every other backend.

Connections: :class:`redis.Connection` objects (never a ``redis.Redis``
client, whose automatic retries could apply a commit twice) kept in a plain
list used as a stack; at most ``pool_size`` exist. A read that meets a lost
connection is repeated on a fresh one (``read_retries``); a commit never is:
a connection lost after the script was sent raises
:class:`~airssys_storage.OutcomeUnknown`.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airssys_storage import (
    Capabilities,
    ConfigurationError,
    InternalError,
    OutcomeUnknown,
    StorageBackend,
    StorageError,
    StoreUnreachable,
    Usage,
    VerifyReport,
)
from airssys_storage.backend import (
    BadKey,
    BadRow,
    expiry_problem,
    key_problems,
    verify_report,
    version_problem,
)
from airssys_storage.changes import ChangeBatch, ChangeRecord, FeedConfig
from airssys_storage.forking import ForkAware, track
from airssys_storage.planner import MAX_VERSION, KeyState, Plan, SpaceState, Write, WriteKind, plan

from .options import RedisOptions

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["RedisBackend", "KIND_CODES", "commit_arguments", "parse_row", "redact"]

#: The one-letter code of each write kind in the commit script's arguments.
KIND_CODES = {
    WriteKind.PUT: b"p",
    WriteKind.DELETE: b"d",
    WriteKind.INCREMENT: b"i",
    WriteKind.TOUCH: b"t",
    WriteKind.SWEEP: b"s",
    WriteKind.RECORD: b"r",
}
_PUT_CODE = KIND_CODES[WriteKind.PUT]
# Redis refuses a bulk string above proto-max-bulk-len (512 MB by default); the row adds its meta.
_MAX_VALUE_BYTES = 512 * 1024 * 1024 - 64


def redact(url: str) -> str:
    """*url* with its password replaced by ``***`` (the core's one rule)."""
    from airssys_storage.plugins import redact_url

    return redact_url(url)


class _NotRedis(Exception):
    """Raised by a connection whose peer does not speak RESP (or TLS, for rediss://); carries the message."""


#: Sent first on every new connection: an inline PING, then an empty line. Redis answers the PING
#: (``+PONG`` or ``-NOAUTH ...``) and ignores the empty line; an HTTP server takes the empty line as
#: the end of a request's headers and answers at once instead of waiting out socket_timeout.
_PROBE = b"PING\r\n\r\n"


def _first_line(sock: Any, timeout: float | None) -> bytes:
    """The first line *sock* answers to :data:`_PROBE` within *timeout* seconds (b"" if it closed)."""
    sock.settimeout(timeout)
    sock.sendall(_PROBE)
    answer = b""
    while b"\n" not in answer and len(answer) < 256:
        chunk = sock.recv(256)
        if not chunk:
            break
        answer += chunk
    return answer.split(b"\n", 1)[0].rstrip(b"\r")


def _not_redis(where: str, answer: bytes) -> str | None:
    """The complaint about *answer* (the first line a peer sent), or None when it is a Redis reply."""
    if answer[:1] in (b"+", b"-"):
        return None
    if answer.startswith(b"HTTP/"):
        return f"{where} is not a Redis server (it answered HTTP: {answer[:40]!r}): check the host and port in the URL"
    if not answer:
        return f"{where} closed the connection without a Redis reply: check the host and port in the URL"
    return f"{where} is not a Redis server (it answered {answer[:40]!r}): check the host and port in the URL"


def _probe_plain(host: str, port: int, timeout: float | None) -> bytes | None:
    """The first line a plain TCP peer at *host*:*port* answers to :data:`_PROBE`; None if none came."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            return _first_line(sock, timeout)
    except OSError:
        return None


@functools.cache
def _connection_classes() -> tuple[type, type]:
    """redis-py connection classes that check, on each new connection, that the peer speaks RESP (and TLS).

    A server that is not Redis (an HTTP port, a proxy) or a plain Redis behind
    a ``rediss://`` URL would otherwise hang until ``socket_timeout`` or leak
    redis-py's protocol errors. The check costs one round trip per new
    connection; the TLS handshake is bounded by ``connect_timeout``.
    Raises :class:`_NotRedis` with the message.
    """
    import redis

    def where(connection: Any) -> str:
        return f"the server at {connection.host}:{connection.port}"

    def checked(connection: Any, sock: Any) -> Any:
        """*sock* once its peer answered the probe as Redis does; closed, raising, otherwise."""
        try:
            problem = _not_redis(where(connection), _first_line(sock, connection.socket_connect_timeout))
        except (OSError, TimeoutError):
            sock.close()
            raise
        if problem is not None:
            sock.close()
            raise _NotRedis(problem)
        sock.settimeout(connection.socket_timeout)
        return sock

    class Checked(redis.Connection):
        def _connect(self) -> Any:
            return checked(self, super()._connect())  # type: ignore[no-untyped-call]

    class CheckedTLS(redis.SSLConnection):
        def _connect(self) -> Any:
            sock = redis.Connection._connect(self)  # type: ignore[no-untyped-call]
            sock.settimeout(self.socket_connect_timeout)  # the handshake waits connect_timeout, not socket_timeout
            try:
                tls = self._wrap_socket_with_ssl(sock)  # type: ignore[no-untyped-call]
            except (OSError, redis.RedisError) as exc:
                sock.close()
                answer = _probe_plain(self.host, self.port, self.socket_connect_timeout)
                if answer:  # something answers in plain text: say what it is
                    raise _NotRedis(
                        _not_redis(where(self), answer)
                        or f"{where(self)} does not speak TLS: use redis:// or enable TLS on the server (the TLS "
                        f"handshake failed with {type(exc).__name__}, and it answers plain Redis commands)"
                    ) from None
                raise
            return checked(self, tls)

    return Checked, CheckedTLS


def parse_row(raw: bytes) -> tuple[int, int | None, int]:
    """``(version, expires_at, offset of the value)`` of a stored row ``b"<version>[,<expires_at>]:<value>"``."""
    colon = raw.index(b":")
    meta = raw[:colon]
    comma = meta.find(b",")
    if comma < 0:
        return int(meta), None, colon + 1
    return int(meta[:comma]), int(meta[comma + 1 :]), colon + 1


def _pack(args: Sequence[Any]) -> bytes:
    """One command in RESP (the arguments: bytes, or int), built in one join (cheaper than redis-py's packer)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if type(arg) is not bytes:
            arg = str(arg).encode()
        parts += (b"$%d\r\n" % len(arg), arg, b"\r\n")
    return b"".join(parts)


def _number(value: int | None) -> bytes:
    return b"" if value is None else str(value).encode()


def commit_arguments(writes: Sequence[Write]) -> list[bytes]:
    """The commit script's per-write arguments (7 each) for *writes*, derived from the planner's :class:`Write`."""
    args: list[bytes] = []
    for key, kind, value, expires_at, if_version, delta, op_id in writes:
        args += (
            key,
            KIND_CODES[kind],
            value,
            _number(expires_at),
            _number(if_version),
            str(delta).encode(),
            b"" if op_id is None else op_id.encode(),
        )
    return args


def decode_reply(
    reply: list[Any], writes: Sequence[Write]
) -> tuple[str, SpaceState, list[KeyState | None], dict[str, int], list[bytes]]:
    """The commit script's reply: status, the counter row and old rows it read, recorded op results, its results."""
    status = reply[0].decode()
    space = SpaceState(int(reply[1]), int(reply[2]), int(reply[3]))
    old: list[KeyState | None] = []
    done: dict[str, int] = {}
    results: list[bytes] = []
    values = iter(reply[6:])
    for write, row in zip(writes, reply[5].split(b";") if writes else (), strict=True):
        has, size, version, expires_at, recorded, result = row.split(b",")
        value = next(values) if write.kind is WriteKind.INCREMENT else None
        if has == b"1":
            old.append(KeyState(int(size), int(version), int(expires_at) if expires_at else None, value))
        else:
            old.append(None)
        if recorded and write.op_id is not None:
            done[write.op_id] = int(recorded)
        results.append(result)
    return status, space, old, done, results


def _scripts() -> dict[str, bytes]:
    folder = resources.files(__package__ or "airssys_storage_redis")
    return {name: folder.joinpath(f"{name}.lua").read_bytes() for name in ("commit", "read", "admin", "changes")}


def feed_argument(feed: FeedConfig | None, now: int, channel: bytes) -> bytes:
    """The commit script's change-feed argument (ARGV 5): ``b""`` off, else retention, age cutoff, cap, channel."""
    if feed is None:
        return b""
    cutoff = feed.age_cutoff(now)
    cap = feed.max_value_bytes if feed.capture_values else -1
    return b"%d,%s,%d,%s" % (feed.retain_events, b"" if cutoff is None else b"%d" % cutoff, cap, channel)


def parse_entries(entries: list[Any]) -> list[ChangeRecord]:
    """Change records from stream entries ``[id, [field, value, ...]]`` (see commit.lua)."""
    records = []
    for entry_id, flat in entries:
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        records.append(
            ChangeRecord(
                int(entry_id.split(b"-", 1)[0]),
                fields[b"k"],
                fields[b"o"].decode(),
                int(fields[b"v"]),
                int(fields[b"t"]),
                fields.get(b"x"),
                fields.get(b"e"),
            )
        )
    return records


class RedisBackend(StorageBackend, ForkAware):
    """Redis or Valkey: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS.

    Shared by many hosts at once (``multi_process``): every commit is one
    Lua script, atomic across every client. Durability is the server's:
    see the README (``appendonly yes`` with ``appendfsync always`` loses no
    acknowledged write).
    """

    name = "redis"
    url_schemes = ("redis", "rediss")
    capabilities = Capabilities(persistent=True, multi_process=True, change_feed=True)
    Options = RedisOptions

    def __init__(self, url: str, options: RedisOptions, connection_kwargs: dict[str, Any], where: str) -> None:
        self.url = url
        self.options = options
        #: Names the server in messages: "Redis at host:port/db".
        self.where = where
        self._connection_kwargs = connection_kwargs
        self._idle: list[Any] = []
        self._created = 0
        self._gate = threading.Condition(threading.Lock())
        self._closed = False
        prefix = options.key_prefix.encode()
        self._prefix = prefix
        self._keys: dict[str, tuple[bytes, ...]] = {}
        self._logged_keys: dict[str, tuple[bytes, ...]] = {}
        self._listener: Any = None  # the change feed's pub/sub listener, once a watcher waits
        self._sources = _scripts()
        import hashlib

        self._sha = {name: hashlib.sha1(text).hexdigest().encode() for name, text in self._sources.items()}
        self.retries = {"reconnect": 0}
        track(self)

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(cls, url: str, options: Any) -> RedisBackend:
        options = cls.parse_options(options)
        try:
            from redis.backoff import NoBackoff
            from redis.connection import parse_url
            from redis.retry import Retry
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise ConfigurationError(
                f"the redis backend needs redis-py ({exc}): pip install ./plugins/airssys-storage-redis"
            ) from None
        try:
            path = urlsplit(url).path
            if path not in ("", "/") and not path[1:].isdigit():
                raise ValueError(f"the database must be a number (/0, /13), not {path!r}")
            kwargs: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise ConfigurationError(
                f"invalid Redis URL {redact(url)!r}: {exc}; use redis://[[user]:password@]host[:port][/db] "
                "or rediss:// for TLS"
            ) from None
        tls = url.startswith("rediss:")
        kwargs.pop("connection_class", None)
        if not tls and (options.tls_ca_file is not None or not options.tls_verify):
            raise ConfigurationError(
                f"backend_options.tls_ca_file and tls_verify apply to rediss:// URLs only, not {redact(url)!r}"
            )
        kwargs.update(
            socket_timeout=options.socket_timeout,
            socket_connect_timeout=options.connect_timeout,
            health_check_interval=options.health_check_interval,
            retry=Retry(NoBackoff(), 0),
            protocol=2,  # RESP2 on every server version (redis-py 8 defaults to RESP3, whose replies differ)
        )
        if tls:
            kwargs.update(
                connection_class=_connection_classes()[1],
                ssl_ca_certs=options.tls_ca_file,
                ssl_cert_reqs="required" if options.tls_verify else "none",
                ssl_check_hostname=options.tls_verify,
            )
        else:
            kwargs["connection_class"] = _connection_classes()[0]
        if "path" in kwargs:
            raise ConfigurationError(f"unix socket URLs are not supported: {redact(url)!r}; use redis://host:port/db")
        where = f"Redis at {kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
        backend = cls(url, options, kwargs, where)
        backend._call("open", True, b"PING")  # fail at start-up, naming the server, when it is away
        return backend

    @classmethod
    def selecting_options(cls, options: Any) -> dict[str, Any]:
        return {"key_prefix": options["key_prefix"]} if "key_prefix" in options else {}

    def check_limits(self, max_key_bytes: int, max_value_bytes: int) -> None:
        if max_value_bytes > _MAX_VALUE_BYTES:
            raise ConfigurationError(
                f"max_value_bytes {max_value_bytes} is above what one Redis bulk string holds with the row's "
                f"header ({_MAX_VALUE_BYTES} bytes, proto-max-bulk-len 512 MB): lower max_value_bytes"
            )

    # -- keys --------------------------------------------------------------------------

    def _names(self, namespace: str) -> tuple[bytes, ...]:
        """The six Redis keys of *namespace* (rows, index, expiry, counter, op ids, op times)."""
        names = self._keys.get(namespace)
        if names is None:
            base = self._prefix + b"{" + namespace.encode() + b"}:"
            names = tuple(base + suffix for suffix in (b"d", b"i", b"e", b"s", b"o", b"t"))
            self._keys[namespace] = names
        return names

    def _logged_names(self, namespace: str) -> tuple[bytes, ...]:
        """:meth:`_names` and the change log's key (``<prefix>{<component>}:c``)."""
        names = self._logged_keys.get(namespace)
        if names is None:
            names = self._logged_keys[namespace] = (*self._names(namespace), self._names(namespace)[0][:-1] + b"c")
        return names

    @functools.cached_property
    def channel(self) -> bytes:
        """The pub/sub channel of this store's change feeds (pub/sub ignores the db number: it is in the name)."""
        db = self._connection_kwargs.get("db", 0)
        return b"%sairssys-storage-changes:%d" % (self._prefix, int(db))

    # -- connections ---------------------------------------------------------------------

    def _acquire(self) -> Any:
        """A new connection, or an idle one given back while waiting; at most ``pool_size`` exist."""
        deadline = None
        with self._gate:
            while True:
                if self._closed:
                    raise InternalError(f"the redis backend for {self.where} is closed")
                if self._idle:
                    return self._idle.pop()
                if self._created < self.options.pool_size:
                    self._created += 1
                    break
                if deadline is None:
                    deadline = time.monotonic() + self.options.pool_timeout
                left = deadline - time.monotonic()
                if left <= 0:
                    raise InternalError(
                        f"all {self.options.pool_size} connections to {self.where} stayed busy for "
                        f"{self.options.pool_timeout} s: raise backend_options.pool_size or pool_timeout"
                    )
                self._gate.wait(left)
        try:
            return self._connection_kwargs["connection_class"](
                **{k: v for k, v in self._connection_kwargs.items() if k != "connection_class"}
            )
        except BaseException:
            with self._gate:
                self._created -= 1
                self._gate.notify()
            raise

    def _release(self, connection: Any) -> None:
        if self._closed:
            self._discard(connection)
            return
        self._idle.append(connection)
        if self._created >= self.options.pool_size:
            with self._gate:
                self._gate.notify()

    def _discard(self, connection: Any) -> None:
        try:
            connection.disconnect()
        except Exception:  # it is being thrown away
            pass
        with self._gate:
            self._created -= 1
            self._gate.notify()

    def _discard_idle(self) -> None:
        """Drop every idle connection: after a lost one they most likely all died with the server."""
        while True:
            try:
                connection = self._idle.pop()
            except IndexError:
                return
            self._discard(connection)

    def _call(self, action: str, write: bool, *args: Any) -> Any:
        """Send one command and return its raw reply, with the backend's error rules.

        A read (*write* false) that meets a lost connection is repeated on a
        fresh one up to ``read_retries`` times. A write never is: a connection
        lost after the command was sent raises
        :class:`~airssys_storage.OutcomeUnknown`. A ``NOSCRIPT`` answer (the
        server restarted or its script cache was flushed) loads the scripts
        and repeats the command: the server ran nothing.
        """
        from redis.exceptions import (
            AuthenticationError,
            AuthorizationError,
            ConnectionError,
            InvalidResponse,
            NoScriptError,
            RedisError,
            ResponseError,
            TimeoutError,
        )

        attempt = 0
        while True:
            try:
                connection = self._idle.pop()
            except IndexError:
                connection = self._acquire()
            sent = False
            try:
                if write and connection._sock is not None and connection.can_read():
                    # the server closed this idle connection (restart, timeout): nothing was sent yet
                    raise ConnectionError("the server closed the idle connection")
                connection.send_packed_command((_pack(args),))
                sent = True
                reply = connection.read_response()
            except ResponseError as exc:
                self._release(connection)  # an error reply leaves the connection in order
                if isinstance(exc, NoScriptError) and attempt < 2:
                    attempt += 1
                    self._load_scripts()
                    continue
                raise self._server_error(exc, action) from None
            except _NotRedis as exc:  # the URL points at something else: no retry helps
                self._discard(connection)
                raise ConfigurationError(f"{exc} ({redact(self.url)!r})") from None
            except (AuthenticationError, AuthorizationError) as exc:  # ConnectionErrors to redis-py; no retry helps
                self._discard(connection)
                raise ConfigurationError(
                    f"{self.where} refused the login during {action} ({redact(str(exc))}): set the user and "
                    "password in the URL (redis://user:PASSWORD@host:port/db), or none if the server has none"
                ) from None
            except (ConnectionError, TimeoutError, OSError) as exc:
                self._discard(connection)
                self._discard_idle()
                if not write and attempt < self.options.read_retries:
                    attempt += 1
                    self.retries["reconnect"] += 1
                    continue
                if write and not sent and attempt < 1:
                    attempt += 1  # never reached the server: safe to send on a fresh connection
                    continue
                raise self._connection_error(exc, action, write and sent) from None
            except RedisError as exc:  # InvalidResponse, DataError and any other: the one mapping of the rest
                self._discard(connection)
                if isinstance(exc, InvalidResponse):
                    raise ConfigurationError(
                        f"{self.where} sent a reply that is not Redis protocol during {action} ({redact(str(exc))}): "
                        f"it is not a Redis server, or a proxy is in the way; check the URL {redact(self.url)!r}"
                    ) from None
                raise InternalError(
                    f"{self.where} failed {action} ({type(exc).__name__}: {redact(str(exc))})"
                ) from None
            except BaseException:
                self._discard(connection)
                raise
            self._release(connection)
            return reply

    def _load_scripts(self) -> None:
        for name, text in self._sources.items():
            self._call(f"loading the {name} script", False, b"SCRIPT", b"LOAD", text)

    def _connection_error(self, exc: Exception, action: str, unknown: bool) -> StorageError:
        detail = f"{type(exc).__name__}: {redact(str(exc))}"
        if unknown:
            return OutcomeUnknown(
                f"lost the connection to {self.where} while committing the {action} ({detail}); the {action} may "
                "have been applied: read back before retrying (the backend reconnects on the next operation)"
            )
        return StoreUnreachable(
            f"cannot reach {self.where} during {action} ({detail}): start the server or check the URL and "
            "backend_options (connect_timeout, socket_timeout); the backend reconnects on the next operation"
        )

    def _server_error(self, exc: Exception, action: str) -> StorageError:
        text = redact(str(exc))
        if text.startswith("OOM"):
            return InternalError(
                f"{self.where} is out of memory (maxmemory) during {action}: nothing was written; raise "
                "maxmemory, delete data, or use a noeviction policy with more memory"
            )
        if text.startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
            return ConfigurationError(
                f"{self.where} refused the credentials during {action} ({text}): set user and password in the URL "
                "(redis://user:PASSWORD@host:port/db)"
            )
        if text.startswith("READONLY"):
            return InternalError(f"{self.where} is a read-only replica ({text}): point the URL at the primary")
        return InternalError(f"{self.where} refused {action}: {text}")

    def _script(self, name: str, action: str, write: bool, keys: Sequence[bytes], args: Sequence[Any]) -> Any:
        return self._call(action, write, b"EVALSHA", self._sha[name], len(keys), *keys, *args)

    # -- fork ---------------------------------------------------------------------------

    def after_fork_in_child(self) -> None:
        # The parent's sockets, its lock state and its listener thread are not ours: start with none.
        self._idle = []
        self._created = 0
        self._gate = threading.Condition(threading.Lock())
        self._listener = None

    # -- reads ------------------------------------------------------------------------

    def _live(self, raw: bytes | None) -> tuple[int, int | None, int] | None:
        if raw is None:
            return None
        row = parse_row(raw)
        if row[1] is not None and row[1] <= self.clock():
            return None
        return row

    def get(self, namespace: str, key: bytes) -> bytes | None:
        raw = self._call("get", False, b"HGET", self._names(namespace)[0], key)
        row = self._live(raw)
        return None if row is None else raw[row[2] :]

    def has(self, namespace: str, key: bytes) -> bool:
        return self.get(namespace, key) is not None

    def get_entry(self, namespace: str, key: bytes) -> KeyState | None:
        raw = self._call("get_entry", False, b"HGET", self._names(namespace)[0], key)
        row = self._live(raw)
        if row is None:
            return None
        value = raw[row[2] :]
        return KeyState(len(value), row[0], row[1], value)

    def get_many(self, namespace: str, keys: Sequence[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        raws = self._call("get_many", False, b"HMGET", self._names(namespace)[0], *keys)
        now: int | None = None
        out: list[bytes | None] = []
        for raw in raws:
            if raw is None:
                out.append(None)
                continue
            _, expires_at, offset = parse_row(raw)
            if expires_at is not None:
                if now is None:
                    now = self.clock()  # one moment for the whole batch
                if expires_at <= now:
                    out.append(None)
                    continue
            out.append(raw[offset:])
        return out

    def _listing(self, namespace: str, start: bytes, end: bytes | None, limit: int, values: bool) -> list[Any]:
        if limit <= 0:
            return []
        names = self._names(namespace)
        args = (start, b"" if end is None else end, limit, self.clock(), b"1" if values else b"0")
        return self._script("read", "items" if values else "keys", False, names[:3], args)  # type: ignore[no-any-return]

    def items(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        flat = self._listing(namespace, start, end, limit, True)
        return list(zip(flat[::2], flat[1::2], strict=True))

    def keys(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[bytes]:
        return self._listing(namespace, start, end, limit, False)

    def usage(self, namespace: str) -> Usage:
        used, count = self._call("usage", False, b"HMGET", self._names(namespace)[3], b"b", b"k")
        return Usage(int(used or 0), int(count or 0))

    # -- writes ---------------------------------------------------------------------------

    def _commit(
        self, namespace: str, action: str, args: list[Any], writes: Sequence[Write] | None, limit: int | None
    ) -> Plan:
        """Run the commit script and check its decision against the planner (see the module docs)."""
        now = self.clock()
        cutoff = now - self.op_retention_ms
        feed = self.feeds.get(namespace)
        if feed is None:
            head = [args[0], now, b"" if limit is None else limit, cutoff, b""]
            reply = self._script("commit", action, True, self._names(namespace), head + args[1:])
        else:
            head = [args[0], now, b"" if limit is None else limit, cutoff, feed_argument(feed, now, self.channel)]
            reply = self._script("commit", action, True, self._logged_names(namespace), head + args[1:])
        if writes is None:  # a range: the script chose the rows
            removed = reply[6:]
            kind = WriteKind.SWEEP if args[3] == b"1" else WriteKind.DELETE
            writes = [Write(key, kind) for key in removed]
        status, space, old, done, results = decode_reply(reply, writes)
        decided = plan(namespace, writes, old, space, limit, now, done)  # raises the refusal the script found
        if status != "ok" or [str(result).encode() for result in decided.results] != results:
            raise InternalError(
                f"the commit script on {self.where} and the planner disagree on a commit of component "
                f"{namespace!r} (script: {status}, {results!r}; planner: {decided.results!r}); this is a bug, "
                "please report it with the store's verify output"
            )
        if feed is not None and decided.events:
            self.notify_changes(namespace)
        return decided

    def apply(self, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        return self._commit(namespace, "commit", [b"c", *commit_arguments(writes)], writes, limit)

    def put_one(self, namespace: str, key: bytes, value: bytes, limit: int | None) -> int:
        # The hot path: the script answers only the version when it applied the put (mode "q"), and the
        # planner is consulted only for a refusal (its message). tests/test_redis_lua_planner.py shows the
        # script decides as the planner does.
        now = self.clock()
        head = [b"q", now, b"" if limit is None else limit, now - self.op_retention_ms, b""]
        args = (*head, key, _PUT_CODE, value, b"", b"", b"0", b"")
        reply = self._script("commit", "set", True, self._names(namespace), args)
        if len(reply) == 2:
            return int(reply[1])
        return self._refused_put(namespace, key, value, limit, now, reply)

    def put_one_logged(self, namespace: str, key: bytes, value: bytes, limit: int | None) -> int:
        """:meth:`put_one` of a namespace with the change feed on: the same one script, which appends the event."""
        now = self.clock()
        feed = feed_argument(self.feeds[namespace], now, self.channel)
        head = [b"q", now, b"" if limit is None else limit, now - self.op_retention_ms, feed]
        args = (*head, key, _PUT_CODE, value, b"", b"", b"0", b"")
        reply = self._script("commit", "set", True, self._logged_names(namespace), args)
        if len(reply) == 2:
            self.notify_changes(namespace)
            return int(reply[1])
        return self._refused_put(namespace, key, value, limit, now, reply)

    def _refused_put(self, namespace: str, key: bytes, value: bytes, limit: int | None, now: int, reply: Any) -> int:
        """Raise the planner's refusal of a put the script refused (an internal error if the planner accepts it)."""
        write = Write(key, WriteKind.PUT, value)
        status, space, old, done, _ = decode_reply(reply, (write,))
        plan(namespace, (write,), old, space, limit, now, done)  # raises the refusal
        raise InternalError(
            f"the commit script on {self.where} refused a set of component {namespace!r} ({status}) that the "
            "planner accepts; this is a bug, please report it"
        )

    def delete_range(
        self, namespace: str, start: bytes, end: bytes | None, *, expired_only: bool = False, limit: int | None = None
    ) -> Plan:
        args = [
            b"r",
            start,
            b"" if end is None else end,
            b"1" if expired_only else b"0",
            b"" if limit is None else limit,
        ]
        return self._commit(namespace, "range delete", args, None, None)

    def clear(self, namespace: str) -> None:
        now = self.clock()
        feed = self.feeds.get(namespace)
        if feed is None:
            self._script("commit", "clear", True, self._names(namespace), [b"x", now, b"", b"", b""])
            return
        argument = feed_argument(feed, now, self.channel)
        names = self._logged_names(namespace)
        if self._script("commit", "clear", True, names, [b"x", now, b"", b"", argument]) == b"1":
            self.notify_changes(namespace)

    # -- change feed (airssys_storage.changes; appended by commit.lua, read by changes.lua) -------------

    def read_changes(self, namespace: str, since: int, limit: int) -> ChangeBatch:
        names = self._logged_names(namespace)
        since = min(since, 2**53)  # exact in the script's doubles; above any seq either way
        last, oldest, entries = self._script("changes", "changes", False, (names[3], names[6]), (since, limit))
        return ChangeBatch(parse_entries(entries), int(oldest), int(last))

    def change_bounds(self, namespace: str) -> tuple[int, int]:
        names = self._logged_names(namespace)
        last, oldest, _ = self._script("changes", "changes", False, (names[3], names[6]), (0, 0))
        return int(oldest), int(last)

    def wait_for_changes(self, namespace: str, after: int, timeout: float) -> bool:
        """As the base class; a pub/sub listener thread (started here once) turns commits' PUBLISH into wake-ups."""
        if self._listener is None:
            self._start_listener()
        return super().wait_for_changes(namespace, after, timeout)

    def _start_listener(self) -> None:
        from ._listener import ChangeListener

        with self._gate:
            if self._listener is not None or self._closed:
                return
            self._listener = listener = ChangeListener(self, self._connection_kwargs, self.channel)
        listener.start()

    # -- administration ---------------------------------------------------------------------

    def namespaces(self) -> list[str]:
        found: list[str] = []
        head = len(self._prefix) + 1
        for name in self._counter_rows():
            if int(self._call("namespaces", False, b"HGET", name, b"k") or 0) > 0:
                found.append(name[head:-3].decode())
        return sorted(found)

    def _counter_rows(self) -> list[bytes]:
        """The counter-row keys of this prefix (a SCAN: admin only, never on a request path)."""
        pattern = self._prefix + b"{*}:s"
        cursor: bytes | int = b"0"
        names: set[bytes] = set()
        while True:
            cursor, page = self._call("namespaces", False, b"SCAN", cursor, b"MATCH", pattern, b"COUNT", 1000)
            names.update(page)
            if int(cursor) == 0:
                return sorted(names)

    def stats(self) -> dict[str, Any]:
        info = self._call("stats", False, b"INFO", b"persistence")
        text = info.decode() if isinstance(info, bytes) else str(info)
        wanted = ("aof_enabled", "rdb_last_bgsave_status", "aof_last_write_status", "rdb_changes_since_last_save")
        persistence = {}
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name in wanted:
                persistence[name] = value.strip()
        try:
            fsync = self._call("stats", False, b"CONFIG", b"GET", b"appendfsync")
        except InternalError:  # managed services often refuse CONFIG; the rest of the stats stand
            fsync = []
        if len(fsync) == 2:
            persistence["appendfsync"] = fsync[1].decode()
        options = self.options.as_dict()
        return {"server": self.where, "options": options, "persistence": persistence, "retries": dict(self.retries)}

    def verify(self, repair: bool = False, progress: Callable[[int], None] | None = None) -> VerifyReport:
        stored: dict[str, Usage] = {}
        actual: dict[str, Usage] = {}
        bad_keys: list[BadKey] = []
        bad_rows: list[BadRow] = []
        head = len(self._prefix) + 1
        for counter in self._counter_rows():
            namespace = counter[head:-3].decode()
            names = self._names(namespace)
            flat = self._script("admin", "verify", False, names[:4], [b"count"])
            stored[namespace] = Usage(int(flat[0]), int(flat[1]))
            floor = int(flat[2])
            keys = flat[3::3]
            sizes = [int(size) for size in flat[4::3]]
            metas = flat[5::3]
            used = sum(len(key) + size for key, size in zip(keys, sizes, strict=True))
            actual[namespace] = Usage(used, len(keys))
            found_bad = {index for index, _ in key_problems(keys)}
            for index, why in key_problems(keys):
                bad_keys.append(BadKey(namespace, keys[index], len(keys[index]) + sizes[index], why))
            rows = [(keys[i], sizes[i], metas[i]) for i in range(len(keys)) if i not in found_bad]
            top = max([floor, *(_meta_version(meta) or 0 for _, _, meta in rows)])
            removals = [keys[i] for i in sorted(found_bad)]
            rewrites: list[bytes] = []
            for key, size, meta in rows:
                problem, _, expires_at = _meta_problem(meta)
                if problem is None:
                    continue
                if expires_at is _BAD:
                    bad_rows.append(BadRow(namespace, key, len(key) + size, problem, "removed as expired", True))
                    removals.append(key)
                else:
                    top += 1
                    bad_rows.append(BadRow(namespace, key, len(key) + size, problem, f"given version {top}", False))
                    new_meta = str(top) if expires_at is None else f"{top},{expires_at}"
                    rewrites += (key, new_meta.encode())
            if progress is not None and keys:
                progress(len(keys))
            if repair and (stored[namespace] != actual[namespace] or removals or rewrites):
                fix_args = [b"fix", len(removals), *removals, *rewrites, str(top).encode()]
                self._script("admin", "verify --repair", True, names[:4], fix_args)
        report = verify_report(self.where, stored, actual, bad_keys=bad_keys, bad_rows=bad_rows)
        if not repair:
            return report
        after = self.verify()
        return VerifyReport(
            store=report.store,
            namespaces=after.namespaces,
            keys=after.keys,
            bytes=after.bytes,
            mismatches=report.mismatches,
            problems=after.problems,
            bad_keys=report.bad_keys,
            bad_rows=report.bad_rows,
            repaired=True,
            checks=report.checks,
        )

    def close(self) -> None:
        with self._gate:
            self._closed = True
            self._gate.notify_all()
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        self._discard_idle()


_BAD = object()


def _meta_version(meta: bytes) -> int | None:
    text = meta.split(b",", 1)[0]
    if text.isdigit() and len(text) <= 20:
        number = int(text)
        if 1 <= number <= MAX_VERSION:
            return number
    return None


def _meta_problem(meta: bytes) -> tuple[str | None, int | None, Any]:
    """``(problem, version, expires_at)`` of a row's meta; expires_at is ``_BAD`` when it cannot be read."""
    version_text, comma, expiry_text = meta.partition(b",")
    version: Any = (
        int(version_text)
        if version_text.isdigit() and len(version_text) <= 20
        else version_text.decode(errors="replace")
    )
    expires_at: Any = None
    if comma:
        expires_at = (
            int(expiry_text)
            if expiry_text.isdigit() and len(expiry_text) <= 20
            else expiry_text.decode(errors="replace")
        )
    if expiry_problem(expires_at) is not None:
        return expiry_problem(expires_at), None, _BAD
    problem = version_problem(version, MAX_VERSION)
    return problem, version if problem is None else None, expires_at
