"""``airssys-storage serve``: the storage explorer (web pages and a JSON API) over one store."""

from __future__ import annotations

import ipaddress
import logging
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


def allowed_hosts(host: str) -> list[str] | None:
    """The ``Host`` names to answer for a server bound to *host*; ``None`` (any) for a wildcard address."""
    if _loopback(host):
        return ["127.0.0.1", "localhost", "::1", "[::1]", host]
    if host in ("0.0.0.0", "::", ""):
        return None
    return [host]


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
    "and writes to them obey those quotas.",
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
    if not _loopback(host):
        info(
            f"airssys-storage: warning: listening on {host}, not on loopback: anyone who reaches it reads every "
            "component's data (there is no TLS); prefer 127.0.0.1 behind an SSH tunnel or a TLS proxy"
        )
    settings = store.settings()
    if "metrics" in type(settings).model_fields:  # the core's counters, in versions that have them
        settings = settings.model_copy(update={"metrics": True})
    quotas: dict[str, ServedQuota] = {}
    if manifest_paths:
        # The configured strategy (maybe a plugin's) gives each manifest's quota, as `set --manifest` does.
        strategy = PluginRegistry.load(blocked=settings.blocked_plugins).create_quota_strategy(settings)
        for found in _manifests(manifest_paths):
            source = f"{strategy.describe_limit(found)} (serve --manifest)"
            quotas[found.id] = ServedQuota(limit=strategy.limit_for(found), source=source)
    config = ExplorerConfig(
        allow_writes=allow_writes,
        token=token if allow_writes else None,
        quotas={cid: quota.limit for cid, quota in quotas.items()},
        store_label=redact_url(settings.resolved_url),
        sample_interval=sample_interval,
        allowed_hosts=allowed_hosts(host),
    )
    audit = logging.getLogger("airssys_storage.audit")
    audit.setLevel(logging.INFO)
    with open_store(settings, quotas) as manager:
        app = create_app(manager, config)
        mode = "writes allowed with the token" if allow_writes else "read-only"
        info(f"airssys-storage explorer on http://{host}:{port}/ ({mode}) for {config.store_label}; Ctrl-C stops it")
        log_config: dict[str, Any] = {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
            "loggers": {
                "uvicorn": {"handlers": ["stderr"], "level": "INFO"},
                "airssys_storage.audit": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            },
        }
        uvicorn.run(app, host=host, port=port, log_config=log_config, server_header=False)
