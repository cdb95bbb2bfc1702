"""``airssys-storage serve``: the storage explorer (web pages and a JSON API) over one store."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import socket
from pathlib import Path
from typing import Any

import click

from ..plugins import PluginRegistry
from .common import Failure, FilePath, StoreSpec, info, redact_url, store_options
from .ops import _manifests

#: Shortest accepted --token: guessing it must be out of reach (16 characters of a random token).
MIN_TOKEN_LENGTH = 16
TOKEN_ENV = "AIRSSYS_STORAGE_EXPLORER_TOKEN"


def _missing_extra(exc: ImportError) -> Failure:
    return Failure(
        f"the explorer needs the optional extra 'explorer' (missing module {exc.name!r}): "
        "pip install 'airssys-storage[explorer]' (from a clone: pip install -e '.[explorer]')",
        exit_code=3,
    )


#: The ``Host`` names of loopback, answered by a server bound to loopback or to a wildcard address.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def allowed_hosts(host: str, extra: tuple[str, ...] = ()) -> list[str]:
    """The ``Host`` names (no port) to answer for a server bound to *host*, plus *extra* (``--allow-host``).

    A wildcard bind (``0.0.0.0``, ``::``) answers the loopback names and the
    machine's own host name, fully qualified name and their addresses; any
    other name is refused (400), so a web page cannot reach the explorer by
    DNS rebinding (a name of the attacker's that resolves to this machine).
    """
    names = list(LOOPBACK_HOSTS) if _loopback(host) or _wildcard(host) else []
    added = [*(_own_names() if _wildcard(host) else [host]), *(name.lower() for name in extra)]
    return list(dict.fromkeys([*names, *added]))  # each once, in order


def _wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def _own_names() -> list[str]:
    """This machine's host name, fully qualified name, and the addresses they resolve to."""
    import socket

    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    for name in list(names):
        with contextlib.suppress(OSError, UnicodeError):
            for *_, sockaddr in socket.getaddrinfo(name, None):
                address = str(sockaddr[0]).split("%")[0]
                names.add(f"[{address}]" if ":" in address else address)
    names.discard("")
    return sorted(names)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@store_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option("--port", default=8470, show_default=True, type=click.IntRange(0, 65535), help="TCP port (0: any).")
@click.option(
    "--manifest",
    "manifest_paths",
    multiple=True,
    type=FilePath(exists=True, path_type=Path),
    help="A manifest, or a directory of *.toml manifests (repeatable): shows those components' quotas, "
    "and writes to them obey those quotas; a manifest with permissions.storage.changes = true shows its change "
    "feed's tail.",
)
@click.option(
    "--allow-writes",
    is_flag=True,
    help="Accept writes (set, delete, clear, import) from holders of --token; without it the explorer is read-only.",
)
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    metavar="TOKEN",
    help=f"The bearer token writes need (at least {MIN_TOKEN_LENGTH} characters; also ${TOKEN_ENV}, "
    "which keeps it out of the process list).",
)
@click.option(
    "--allow-host",
    "allow_host",
    multiple=True,
    metavar="NAME",
    help="Also answer requests whose Host header is NAME (repeatable), e.g. the name a proxy or a LAN uses; "
    "by default the explorer answers only its bound address (with --host 0.0.0.0: loopback and this "
    "machine's own names and addresses).",
)
@click.option(
    "--sample-interval",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds between the metrics samples the charts draw.",
)
def serve(
    store: StoreSpec,
    host: str,
    port: int,
    manifest_paths: tuple[Path, ...],
    allow_writes: bool,
    token: str | None,
    allow_host: tuple[str, ...],
    sample_interval: float,
) -> None:
    """Serve the storage explorer: components, keys, values, export, charts, and a JSON API.

    Read-only and bound to 127.0.0.1 by default. With --allow-writes and
    --token, requests carrying the token (``Authorization: Bearer TOKEN``, or
    the token field of a page's form) may set, delete, clear and import, as
    the operator commands do (admin rights; no quota, except the quota of a
    component whose manifest is given with --manifest); each write is logged
    as a JSON audit record (logger airssys_storage.audit). Needs the extra
    ``airssys-storage[explorer]``. Stop it with Ctrl-C.
    """
    if token is not None:
        _check_token(token)
    if allow_writes and not token:
        raise Failure(f"--allow-writes needs --token TOKEN (or ${TOKEN_ENV}): writes are accepted only with it")
    if allow_writes and token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise Failure(
            f"--token is {len(token)} characters long: use at least {MIN_TOKEN_LENGTH}, e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe())'`"
        )
    if token and not allow_writes:
        info("airssys-storage: warning: --token has no effect without --allow-writes; the explorer is read-only")
    try:
        import uvicorn

        from ..explorer.app import ExplorerConfig, create_app
        from ..explorer.store import ServedQuota, open_store
    except ImportError as exc:
        raise _missing_extra(exc) from None
    address = _resolve(host, port)
    hosts = allowed_hosts(host, allow_host)
    if not _loopback(host):
        info(
            f"airssys-storage: warning: listening on {host}, not on loopback: anyone who reaches it reads every "
            "component's data (there is no TLS); prefer 127.0.0.1 behind an SSH tunnel or a TLS proxy. "
            f"Requests are answered only for the Host names {', '.join(hosts)} (add one with --allow-host NAME)"
        )
    settings = store.settings()
    if "metrics" in type(settings).model_fields:  # the core's counters, in versions that have them
        settings = settings.model_copy(update={"metrics": True})
    quotas: dict[str, ServedQuota] = {}
    changes: dict[str, bool] = {}  # a manifest's permissions.storage.changes: its feed on or off in the explorer
    if manifest_paths:
        # The configured strategy (maybe a plugin's) gives each manifest's quota, as `set --manifest` does.
        strategy = PluginRegistry.load(blocked=settings.blocked_plugins).create_quota_strategy(settings)
        for found in _manifests(manifest_paths):
            source = f"{strategy.describe_limit(found)} (serve --manifest)"
            quotas[found.id] = ServedQuota(limit=strategy.limit_for(found), source=source)
            if found.changes is not None:
                changes[found.id] = found.changes
    config = ExplorerConfig(
        allow_writes=allow_writes,
        token=token if allow_writes else None,
        quotas={cid: quota.limit for cid, quota in quotas.items()},
        changes=changes,
        store_label=redact_url(settings.resolved_url),
        sample_interval=sample_interval,
        allowed_hosts=hosts,
    )
    audit = logging.getLogger("airssys_storage.audit")
    audit.setLevel(logging.INFO)
    sock = _bind(address, host, port)
    with sock, open_store(settings, quotas) as manager:
        app = create_app(manager, config)
        mode = "writes allowed with the token" if allow_writes else "read-only"
        bound_port = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        info(
            f"airssys-storage explorer on http://{shown}:{bound_port}/ ({mode}) for {config.store_label}; "
            "Ctrl-C stops it"
        )
        log_config: dict[str, Any] = {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
            "loggers": {
                "uvicorn": {"handlers": ["stderr"], "level": "INFO"},
                "airssys_storage.audit": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            },
        }
        server = uvicorn.Server(uvicorn.Config(app, log_config=log_config, server_header=False))
        server.run(sockets=[sock])


def _check_token(token: str) -> None:
    """Refuse a --token that no request could present: blank, padded with whitespace, or with control characters."""
    if not token.strip() or token != token.strip():
        raise Failure(
            "--token is blank or starts or ends with whitespace, which a bearer header cannot carry: use e.g. "
            "the output of `python -c 'import secrets; print(secrets.token_urlsafe())'`"
        )
    if any(not ch.isprintable() for ch in token):
        raise Failure(
            "--token contains control characters, which an HTTP header cannot carry: use printable characters, "
            "e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe())'`"
        )


def _resolve(host: str, port: int) -> tuple[Any, ...]:
    """The first ``getaddrinfo`` entry to listen on *host*:*port*; :class:`Failure` (exit 3) if it does not resolve."""
    try:
        return socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (OSError, UnicodeError) as exc:
        raise Failure(
            f"--host {host!r} is not an address of this machine nor a name that resolves ({exc}): "
            "use e.g. 127.0.0.1, ::1 or 0.0.0.0",
            exit_code=3,
        ) from None


def _bind(found: tuple[Any, ...], host: str, port: int) -> socket.socket:
    """A listening TCP socket on *found* (from :func:`_resolve`); :class:`Failure` (exit 3) if it cannot listen."""
    family, kind, proto, _, address = found
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        fix = (
            "stop the other server or pick another --port (0: any free one)"
            if exc.errno == errno.EADDRINUSE
            else "use an address of this machine (127.0.0.1, ::1, 0.0.0.0) and a port you may bind"
        )
        raise Failure(f"cannot listen on {host}:{port}: {reason}; {fix}", exit_code=3) from None
    sock.set_inheritable(True)
    return sock
