"""The explorer's Starlette application: pages, the JSON API, writes behind a token, the audit trail.

:func:`create_app` builds the application over an operator
:class:`~airssys_storage.StorageManager` (see
:func:`airssys_storage.exchange.operator_settings`); the caller owns and
closes the manager. Routes (all reads work read-only; writes need
``allow_writes`` and the token):

Pages: ``GET /`` (components: usage against quota, key counts),
``GET /components/{id}`` (keys: ``prefix``, ``cursor``, ``limit``),
``GET /components/{id}/keys/{key}`` (a value: text, pretty JSON, hex; ``view``),
``GET /components/{id}/export`` (download), ``GET /components/{id}/changes``
(the change feed's tail: ``since``, ``limit``), ``GET /charts`` (metrics over
time), and the forms ``POST /components/{id}/set|delete|clear|import``
(token field and CSRF token).

JSON API: ``GET /api/components``, ``GET /api/components/{id}``,
``GET /api/components/{id}/keys``, ``GET|PUT|DELETE
/api/components/{id}/keys/{key}`` (PUT takes the raw body; ``?ttl=`` seconds),
``GET /api/components/{id}/export``, ``GET /api/components/{id}/changes``, ``POST /api/components/{id}/clear``,
``POST /api/components/{id}/import`` (raw body, at most ``max_import_bytes``; ``?replace=`` true, false, 1 or 0),
``GET /api/metrics``; writes take ``Authorization: Bearer TOKEN``.
``GET /metrics``: Prometheus exposition when the core's exporter and
``prometheus_client`` are installed, else 404 with the fix.

Errors are JSON ``{"error": {"code": ..., "message": ...}}`` on the API (an
error page on pages) with the HTTP status of :data:`HTTP_STATUS`, unknown routes
included (``not-found``, ``method-not-allowed``); a path whose percent-encoding
is no UTF-8 is ``invalid-key``. A ``PUT`` body is capped at ``max_value_bytes``
and an import at ``max_import_bytes`` (``value-too-large``/``request-too-large``,
413, refused by ``Content-Length`` before reading or once a chunked body passes
the cap). Every response carries :data:`SECURITY_HEADERS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from typing import IO, Any, ClassVar
from urllib.parse import quote, unquote_to_bytes, urlencode, urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..audit import AUDIT_LOGGER
from ..changes import ChangeEvent
from ..cli.common import human_bytes
from ..cli.ops import usage_row
from ..errors import ChangeGap, ConfigurationError, InternalError, ManifestError, StorageError
from ..exchange import export_component, import_component, operator_storage
from ..manifest import COMPONENT_ID_PATTERN, validate_component_id
from ..storage import ComponentStorage, StorageManager
from .sampler import MetricsSampler, metrics_snapshot

__all__ = ["AUDIT_LOGGER", "HTTP_STATUS", "ComponentNotFound", "ExplorerConfig", "create_app"]


#: StorageError code (and the explorer's own codes) -> HTTP status; any other code is 500.
HTTP_STATUS = {
    "key-not-found": 404,
    "component-not-found": 404,
    "invalid-key": 400,
    "invalid-argument": 400,
    "invalid-export-file": 400,
    "invalid-manifest": 404,  # a path segment that is no component id: no such component
    "too-many-keys": 400,
    "permission-denied": 403,
    "read-only": 403,
    "csrf-failed": 403,
    "unauthorized": 401,
    "value-too-large": 413,
    "request-too-large": 413,
    "not-found": 404,
    "method-not-allowed": 405,
    "quota-exceeded": 507,
    "gap": 410,  # the change feed's events after ``since`` are no longer retained
}

#: Keys per page by default, and at most (the core's scan limit may be lower).
PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
#: Change-feed events on the changes page (and the API) by default, and on a component's keys page.
CHANGES_PAGE = 50
CHANGES_ON_KEYS_PAGE = 10
#: Bytes of a value shown on its page (the whole value is in the download and the API).
SHOWN_BYTES = 64 * 1024
#: Exports up to this size are spooled in memory, larger ones in a temporary file.
SPOOL_BYTES = 8 * 1024 * 1024
CSRF_COOKIE = "airssys_csrf"
#: Largest import upload (API body or form file) by default: 1 GiB (``ExplorerConfig.max_import_bytes``).
MAX_IMPORT_BYTES = 1024**3
#: Headers of every response: no framing (clickjacking), no inline or foreign scripts, no MIME sniffing.
SECURITY_HEADERS = (
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; object-src 'none'; "
        b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)


class ComponentNotFound(StorageError):
    """No key of the component is in the store and no manifest names it."""

    code: ClassVar[str] = "component-not-found"


class _Refused(Exception):
    """A write refused before it reached the storage: read-only mode, a missing token, a failed CSRF check."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class ExplorerConfig:
    """How the explorer serves one store.

    *quotas*: component id -> byte quota (``None``: unlimited) of the
    components whose manifests were given, for display; other components'
    quotas are shown as unknown. The quota that writes obey is the manager's
    (see :func:`airssys_storage.explorer.store.open_store`).
    *sample_interval*: seconds between metrics samples; *history*: samples kept.
    *changes*: component id -> its manifest's ``permissions.storage.changes``
    (components whose manifests were given and set it): the explorer opens
    those components with their change feed on (or off) as the manifest says,
    so its pages show the feed's tail and its writes are logged; other
    components follow the setting ``changes_default``.
    """

    allow_writes: bool = False
    token: str | None = None
    quotas: dict[str, int | None] = field(default_factory=dict)
    changes: dict[str, bool] = field(default_factory=dict)
    store_label: str = ""
    sample_interval: float = 5.0
    history: int = 360
    #: Host names the explorer answers to (the ``Host`` header, without the port); ``None``: any.
    #: Serving only the bound name keeps a web page from reading the store by DNS rebinding.
    allowed_hosts: list[str] | None = None
    #: Largest import (the API's body or the form's whole request) in bytes; larger ones get 413.
    max_import_bytes: int = MAX_IMPORT_BYTES

    def __post_init__(self) -> None:
        if self.allow_writes and not self.token:
            raise ConfigurationError("allow_writes needs a token: writes are accepted only with it; pass token=...")


def _resource_dir(name: str) -> str:
    return str(files("airssys_storage.explorer").joinpath(name))


def create_app(manager: StorageManager, config: ExplorerConfig | None = None) -> Starlette:
    """The explorer over *manager* (an operator manager the caller closes); see the module docs."""
    config = config or ExplorerConfig()
    explorer = _Explorer(manager, config)
    templates = Jinja2Templates(directory=_resource_dir("templates"))
    templates.env.filters["quote_key"] = lambda key: quote(key, safe="")
    templates.env.filters["bytes"] = lambda n: "-" if n is None else human_bytes(n)
    explorer.templates = templates

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        explorer.sampler.sample()
        task = asyncio.create_task(explorer.sample_forever())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    routes = [
        Route("/", explorer.page_components),
        Route("/charts", explorer.page_charts),
        Route("/components/{component}", explorer.page_keys),
        Route("/components/{component}/export", explorer.export),
        Route("/components/{component}/changes", explorer.page_changes),
        Route("/components/{component}/keys/{key:path}", explorer.page_value),
        Route("/components/{component}/set", explorer.form_set, methods=["POST"]),
        Route("/components/{component}/delete", explorer.form_delete, methods=["POST"]),
        Route("/components/{component}/clear", explorer.form_clear, methods=["POST"]),
        Route("/components/{component}/import", explorer.form_import, methods=["POST"]),
        Route("/api/components", explorer.api_components),
        Route("/api/components/{component}", explorer.api_component),
        Route("/api/components/{component}/keys", explorer.api_keys),
        Route("/api/components/{component}/keys/{key:path}", explorer.api_get, methods=["GET"]),
        Route("/api/components/{component}/keys/{key:path}", explorer.api_put, methods=["PUT"]),
        Route("/api/components/{component}/keys/{key:path}", explorer.api_delete, methods=["DELETE"]),
        Route("/api/components/{component}/export", explorer.export),
        Route("/api/components/{component}/changes", explorer.api_changes),
        Route("/api/components/{component}/clear", explorer.api_clear, methods=["POST"]),
        Route("/api/components/{component}/import", explorer.api_import, methods=["POST"]),
        Route("/api/metrics", explorer.api_metrics),
        Route("/metrics", explorer.prometheus),
        Mount("/static", StaticFiles(directory=_resource_dir("static")), name="static"),
    ]
    middleware = [Middleware(_Guard, explorer=explorer)]
    if config.allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=config.allowed_hosts))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            StorageError: explorer.on_error,
            _Refused: explorer.on_error,
            HTTPException: explorer.on_http_error,
        },
    )
    app.state.explorer = explorer
    return app


class _Explorer:
    """The handlers; one per application."""

    templates: Jinja2Templates

    def __init__(self, manager: StorageManager, config: ExplorerConfig) -> None:
        self.manager = manager
        self.config = config
        self.sampler = MetricsSampler(manager, config.history)
        self._handles: dict[str, ComponentStorage] = {}
        self._csrf_key = secrets.token_bytes(32)
        self._prometheus: Callable[[Request], Awaitable[Response]] | None = None

    # -- the store -------------------------------------------------------------

    def storage(self, component: str, *, must_exist: bool = True) -> ComponentStorage:
        """An operator handle on *component*; :class:`ComponentNotFound` if it holds nothing and is unknown."""
        try:
            validate_component_id(component)
        except ManifestError:
            raise ComponentNotFound(
                f"{component!r} is not a component id (a lower-case ASCII letter, then up to 62 of a-z 0-9 _ -): "
                "see / for the components"
            ) from None
        handle = self._handles.get(component)
        if handle is not None:
            return handle
        # A backend without a change feed: every component's feed off (a manifest or changes_default asking
        # for one must not make the component unreadable here).
        feed = self.config.changes.get(component) if self.manager.backend.capabilities.change_feed else False
        handle = operator_storage(self.manager, component, changes=feed)
        if component not in self.config.quotas and handle.usage().keys == 0:
            if must_exist:
                raise ComponentNotFound(
                    f"component {component!r} holds no keys in this store and no --manifest names it: "
                    "see / for the components"
                )
            return handle  # not kept: a stream of made-up ids must not grow the cache
        self._handles[component] = handle
        return handle

    def component_ids(self) -> list[str]:
        try:
            found = self.manager.backend.namespaces()
        except StorageError:
            raise
        except Exception as exc:
            raise InternalError(f"cannot list the components: {type(exc).__name__}: {exc}") from exc
        # A namespace that is no component id was written around the core (`airssys-storage verify`).
        valid = {name for name in found if COMPONENT_ID_PATTERN.fullmatch(name)}
        return sorted(valid | set(self.config.quotas))

    def describe(self, component: str) -> dict[str, Any]:
        return usage_row(component, self.storage(component, must_exist=False).usage(), self.config.quotas)

    def key_page(self, request: Request, component: str) -> dict[str, Any]:
        storage = self.storage(component)
        prefix = request.query_params.get("prefix", "")
        cursor = request.query_params.get("cursor") or None
        limit = _page_size(request.query_params.get("limit"))
        items, next_cursor = storage.scan(prefix or None, cursor, limit)
        return {
            "component": component,
            "prefix": prefix,
            "cursor": cursor,
            "limit": limit,
            "next_cursor": next_cursor,
            "keys": [{"key": key, "bytes": len(value)} for key, value in items],
        }

    def change_tail(
        self, component: str, since_text: str | None, limit_text: str | None, default: int
    ) -> dict[str, Any]:
        """The change feed's events of *component*: the last *limit*, or those after ``since`` when given.

        ``enabled`` is false (with a ``note`` on how to turn it on) when the
        component's feed is off. Events are in seq order; ``next_since`` is the
        cursor to ask for newer ones with; ``last_seq`` the component's last seq.
        Errors: ``invalid-argument`` for a bad ``since``/``limit`` (or a ``since``
        beyond the last seq), ``gap`` (410) when the events after ``since`` are
        no longer retained.
        """
        storage = self.storage(component)
        limit = _page_size(limit_text, default)
        since = _since_argument(since_text)
        try:
            last = storage.snapshot_seq()
        except ConfigurationError:
            note = (
                f"the change feed of component {component!r} is off: set permissions.storage.changes = true "
                "in its manifest and pass it to `airssys-storage serve --manifest`, or set changes_default = "
                "true (the feed records changes made while it is on, not earlier ones)"
            )
            if not self.manager.backend.capabilities.change_feed:
                note = (
                    f"the change feed of component {component!r} is off: backend {self.manager.backend.name!r} "
                    'keeps no change feed (see the README\'s "Change feed" for the backends that do)'
                )
            return {"component": component, "enabled": False, "note": note, "events": []}
        if since is None:
            start = max(0, last - limit)
            try:
                events, next_since = storage.changes(start, None, limit)
            except ChangeGap as gap:  # fewer than *limit* retained: from the oldest on
                events, next_since = storage.changes(max(start, gap.oldest - 1), None, limit)
        else:
            events, next_since = storage.changes(since, None, limit)
        return {
            "component": component,
            "enabled": True,
            "last_seq": last,
            "since": since,
            "limit": limit,
            "next_since": next_since,
            "events": [_event_json(event) for event in events],
        }

    async def sample_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.sample_interval)
            try:
                self.sampler.sample()
            except StorageError as exc:  # the next interval tries again
                logging.getLogger(__name__).warning("metrics sample failed: %s", exc)

    # -- writes: token, CSRF, audit ------------------------------------------------

    def check_token(self, presented: str | None) -> None:
        if not self.config.allow_writes:
            raise _Refused(
                "read-only",
                "the explorer is read-only: restart `airssys-storage serve` with --allow-writes --token TOKEN",
            )
        token = self.config.token or ""
        if not presented or not hmac.compare_digest(presented.encode(), token.encode()):
            raise _Refused(
                "unauthorized",
                "writes need the explorer's token: send `Authorization: Bearer TOKEN` (the --token given to "
                "`airssys-storage serve`), or type it into the form's token field",
            )

    def who(self, request: Request, *, token_ok: bool) -> str:
        """Who wrote, for the audit record: the token holder, or ``anonymous`` when the token check failed."""
        host = request.client.host if request.client else "unknown"
        return f"{'explorer token holder' if token_ok else 'anonymous'} from {host}"

    def write(
        self,
        request: Request,
        component: str,
        operation: str,
        key: str | None,
        presented: str | None,
        action: Callable[[ComponentStorage], Any],
    ) -> Any:
        """Run *action* on an operator handle after the token check; log the audit record either way.

        The record is the core's (:func:`airssys_storage.audit.audit`, event ``explorer-write``), so
        the key follows the setting ``audit_keys`` like every other audit record.
        """
        from ..audit import audit

        fields: dict[str, Any] = {"key": key, "key_mode": self.manager.settings.audit_keys}
        token_ok = False
        try:
            self.check_token(presented)
            token_ok = True
            result = action(self.storage(component, must_exist=operation not in ("set", "import")))
        except (StorageError, _Refused) as exc:
            audit(
                "explorer-write",
                component,
                operation,
                outcome="refused",
                code=exc.code,
                level=logging.WARNING,
                who=self.who(request, token_ok=token_ok),
                **fields,
            )
            raise
        audit("explorer-write", component, operation, outcome="ok", who=self.who(request, token_ok=True), **fields)
        return result

    def csrf_token(self, request: Request) -> str:
        session = request.cookies.get(CSRF_COOKIE) or ""
        return hmac.new(self._csrf_key, session.encode(), hashlib.sha256).hexdigest() if session else ""

    async def form(self, request: Request, limit: int | None = None) -> Any:
        """The posted form after the CSRF check: a cookie-bound token, and the Origin (else the Referer) when sent.

        *limit*: the most bytes the request may carry (default: three times
        ``max_value_bytes``, room for a URL-encoded value, plus 64 KiB);
        beyond it ``request-too-large`` (413).
        """
        own = f"{request.url.scheme}://{request.url.netloc}"
        origin = request.headers.get("origin")
        if origin is None and (referer := request.headers.get("referer")):
            parts = urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}"
        if origin is not None and origin != own:
            raise _Refused("csrf-failed", f"a form posted from {origin!r} is refused: use the explorer's own pages")
        if limit is None:
            limit = 3 * self.manager.settings.max_value_bytes + 64 * 1024
        form = await _capped(request, limit, "request-too-large", "the form").form()
        expected = self.csrf_token(request)
        given = str(form.get("csrf", ""))
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise _Refused("csrf-failed", "the form's CSRF token is missing or stale: reload the page and resubmit")
        return form

    # -- pages ---------------------------------------------------------------------

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        session = request.cookies.get(CSRF_COOKIE)
        fresh = session is None
        if session is None:
            session = secrets.token_urlsafe(32)
            request.cookies[CSRF_COOKIE] = session  # so csrf_token() below sees it
        context.update(
            request=request,
            store=self.config.store_label,
            allow_writes=self.config.allow_writes,
            csrf=self.csrf_token(request),
            notice=request.query_params.get("notice", ""),
        )
        response = self.templates.TemplateResponse(request, template, context, status_code=status)
        if fresh:
            response.set_cookie(CSRF_COOKIE, session, httponly=True, samesite="strict")
        return response

    async def page_components(self, request: Request) -> Response:
        components = [self.describe(cid) for cid in self.component_ids()]
        return self.render(request, "components.html", components=components)

    async def page_keys(self, request: Request) -> Response:
        component = request.path_params["component"]
        page = self.key_page(request, component)
        tail = self.change_tail(component, None, None, CHANGES_ON_KEYS_PAGE)
        return self.render(request, "keys.html", summary=self.describe(component), feed=tail, **page)

    async def page_changes(self, request: Request) -> Response:
        component = request.path_params["component"]
        params = request.query_params
        tail = self.change_tail(component, params.get("since"), params.get("limit"), CHANGES_PAGE)
        return self.render(request, "changes.html", feed=tail, summary=self.describe(component))

    async def page_value(self, request: Request) -> Response:
        component, key = request.path_params["component"], request.path_params["key"]
        entry = self.storage(component).get_entry(key)
        if entry is None:
            return self.render(
                request,
                "error.html",
                404,
                code="key-not-found",
                message=f"key {key!r} not found in component {component!r}",
            )
        views = _views(entry.value)
        view = request.query_params.get("view") or views["default"]
        if view not in ("text", "json", "hex") or views.get(view) is None:
            view = "hex"
        return self.render(
            request,
            "value.html",
            component=component,
            key=key,
            size=len(entry.value),
            version=entry.version,
            expires_at=entry.expires_at,
            ttl=_ttl(self.manager, entry.expires_at),
            views=views,
            view=view,
            truncated=len(entry.value) > SHOWN_BYTES,
        )

    async def page_charts(self, request: Request) -> Response:
        component = request.query_params.get("component") or None
        return self.render(
            request,
            "charts.html",
            component=component,
            available=self.sampler.available,
            interval=self.config.sample_interval,
            components=self.component_ids(),
        )

    async def export(self, request: Request) -> Response:
        component = request.path_params["component"]
        storage = self.storage(component)
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # closed by the stream
        export_component(storage, spool)
        spool.seek(0)
        return StreamingResponse(
            _chunks(spool),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="{component}.jsonl"'},
        )

    # -- forms -------------------------------------------------------------------------

    def _back(self, request: Request, notice: str, path: str | None = None) -> Response:
        target = path or f"/components/{quote(request.path_params['component'], safe='')}"
        return RedirectResponse(f"{target}?{urlencode({'notice': notice})}", status_code=303)

    async def form_set(self, request: Request) -> Response:
        component = request.path_params["component"]
        form = await self.form(request)
        key, value = str(form.get("key", "")), str(form.get("value", "")).encode()
        ttl = _ttl_argument(str(form.get("ttl", "")))
        version = self.write(
            request, component, "set", key, str(form.get("token", "")), lambda s: s.set(key, value, ttl=ttl)
        )
        path = f"/components/{quote(component, safe='')}/keys/{quote(key, safe='')}"
        return self._back(request, f"stored {key!r} (version {version})", path)

    async def form_delete(self, request: Request) -> Response:
        component = request.path_params["component"]
        form = await self.form(request)
        key = str(form.get("key", ""))
        existed = self.write(request, component, "delete", key, str(form.get("token", "")), lambda s: s.delete(key))
        return self._back(request, f"deleted {key!r}" if existed else f"{key!r} did not exist")

    async def form_clear(self, request: Request) -> Response:
        component = request.path_params["component"]
        form = await self.form(request)
        self.write(request, component, "clear", None, str(form.get("token", "")), lambda s: s.clear())
        return self._back(request, f"cleared component {component!r}", "/")

    async def form_import(self, request: Request) -> Response:
        component = request.path_params["component"]
        form = await self.form(request, self.config.max_import_bytes)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise _Refused("invalid-argument", "choose an export file (JSON Lines, from `airssys-storage export`)")
        replace = form.get("replace") == "on"
        result = self.write(
            request,
            component,
            "import",
            None,
            str(form.get("token", "")),
            lambda s: import_component(s, upload.file, replace=replace),
        )
        return self._back(request, f"imported {result.records} keys ({result.written} written)")

    # -- API -------------------------------------------------------------------------

    async def api_components(self, request: Request) -> Response:
        return JSONResponse({"components": [self.describe(cid) for cid in self.component_ids()]})

    async def api_component(self, request: Request) -> Response:
        component = request.path_params["component"]
        self.storage(component)
        return JSONResponse(self.describe(component))

    async def api_keys(self, request: Request) -> Response:
        return JSONResponse(self.key_page(request, request.path_params["component"]))

    async def api_changes(self, request: Request) -> Response:
        params = request.query_params
        component = request.path_params["component"]
        return JSONResponse(self.change_tail(component, params.get("since"), params.get("limit"), CHANGES_PAGE))

    async def api_get(self, request: Request) -> Response:
        component, key = request.path_params["component"], request.path_params["key"]
        entry = self.storage(component).get_entry(key)
        if entry is None:
            return _error_json("key-not-found", f"key {key!r} not found in component {component!r}")
        headers = {"X-Version": str(entry.version)}
        if entry.expires_at is not None:
            headers["X-Expires-At"] = repr(entry.expires_at)
            headers["X-TTL-Seconds"] = repr(_ttl(self.manager, entry.expires_at))
        return Response(entry.value, media_type="application/octet-stream", headers=headers)

    async def api_put(self, request: Request) -> Response:
        component, key = request.path_params["component"], request.path_params["key"]
        limit = self.manager.settings.max_value_bytes
        body = await _capped(request, limit, "value-too-large", "the value").body()
        ttl = _ttl_argument(request.query_params.get("ttl", ""))
        version = self.write(request, component, "set", key, _bearer(request), lambda s: s.set(key, body, ttl=ttl))
        return JSONResponse({"component": component, "key": key, "version": version, "bytes": len(body)})

    async def api_delete(self, request: Request) -> Response:
        component, key = request.path_params["component"], request.path_params["key"]
        existed = self.write(request, component, "delete", key, _bearer(request), lambda s: s.delete(key))
        if not existed:
            return _error_json("key-not-found", f"key {key!r} not found in component {component!r}")
        return JSONResponse({"component": component, "key": key, "deleted": True})

    async def api_clear(self, request: Request) -> Response:
        component = request.path_params["component"]
        self.write(request, component, "clear", None, _bearer(request), lambda s: s.clear())
        return JSONResponse({"component": component, "cleared": True})

    async def api_import(self, request: Request) -> Response:
        component = request.path_params["component"]
        replace = _flag(request.query_params.get("replace", "false"), "replace")
        body = _capped(request, self.config.max_import_bytes, "request-too-large", "the import")
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # closed below
        with spool:
            async for chunk in body.stream():
                spool.write(chunk)
            spool.seek(0)
            result = self.write(
                request,
                component,
                "import",
                None,
                _bearer(request),
                lambda s: import_component(s, spool, replace=replace),
            )
        return JSONResponse(
            {
                "component": component,
                "records": result.records,
                "bytes": result.bytes,
                "written": result.written,
                "expired": result.expired,
            }
        )

    async def api_metrics(self, request: Request) -> Response:
        component = request.query_params.get("component") or None
        return JSONResponse(
            {"snapshot": metrics_snapshot(self.manager), **self.sampler.history(component)},
        )

    async def prometheus(self, request: Request) -> Response:
        if self._prometheus is None:  # built once: an exporter may register its collectors when made
            self._prometheus = _prometheus_exporter(self.manager)
        exporter = self._prometheus
        if exporter is None:
            return Response(
                "Prometheus metrics are not available: they need prometheus-client (pip install "
                "'airssys-storage[metrics]') and the setting metrics = true (`airssys-storage serve` sets it), "
                "then a restart; /api/metrics has the JSON snapshot\n",
                status_code=404,
                media_type="text/plain",
            )
        return await exporter(request)

    # -- errors ----------------------------------------------------------------------

    async def on_http_error(self, request: Request, exc: Exception) -> Response:
        """A route not found (404) or a method not allowed (405): JSON on the API, the error page elsewhere."""
        assert isinstance(exc, HTTPException)
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "invalid-argument")
        message = (
            f"no such page: {request.url.path!r} (a component id has no '/'; a key's '/' may stay as it is)"
            if exc.status_code == 404
            else f"{request.method} is not allowed on {request.url.path!r}"
            if exc.status_code == 405
            else str(exc.detail)
        )
        return await self.on_error(request, _Refused(code, message))

    async def on_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, (StorageError, _Refused))
        code = exc.code
        message = exc.message
        if request.url.path.startswith("/api/"):
            return _error_json(code, message)
        return self.render(request, "error.html", HTTP_STATUS.get(code, 500), code=code, message=message)


class _Guard:
    """ASGI middleware: the security headers on every response, and paths that are no valid UTF-8 refused.

    A key or component id percent-encoded as bytes that are no UTF-8
    (``%ff%fe``) would otherwise arrive as U+FFFD characters and name another
    key: it gets ``invalid-key`` (400).
    """

    def __init__(self, app: ASGIApp, explorer: _Explorer) -> None:
        self.app = app
        self.explorer = explorer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in SECURITY_HEADERS if name not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        raw_path = scope.get("raw_path")
        if raw_path:
            try:
                unquote_to_bytes(raw_path.split(b"?", 1)[0]).decode("utf-8")
            except UnicodeDecodeError:
                refused = _Refused(
                    "invalid-key",
                    "the path's percent-encoding is no valid UTF-8 (a key and a component id are UTF-8 text): "
                    "encode the key's UTF-8 bytes, e.g. urllib.parse.quote(key, safe='')",
                )
                response = await self.explorer.on_error(Request(scope, receive), refused)
                await response(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)


def _capped(request: Request, limit: int, code: str, what: str) -> Request:
    """*request* whose body may be read only up to *limit* bytes; beyond, :class:`_Refused` *code* (413).

    A ``Content-Length`` above *limit* is refused before any byte is read; a
    chunked body is refused as soon as it passes *limit*, so at most *limit*
    plus one chunk is ever held.
    """

    def refuse(size: str) -> _Refused:
        return _Refused(code, f"{what} is {size} bytes, above the explorer's limit of {limit} bytes")

    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise refuse(length)
    received = 0
    receive = request.receive

    async def capped() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise refuse(f"more than {limit}")
        return message

    return Request(request.scope, capped)


def _flag(text: str, name: str) -> bool:
    """A boolean query argument: ``true``/``1`` or ``false``/``0`` (any case); else ``invalid-argument``."""
    value = text.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise _Refused("invalid-argument", f"{name} must be true, false, 1 or 0, got {text!r}")


def _error_json(code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=HTTP_STATUS.get(code, 500))


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _page_size(text: str | None, default: int = PAGE_SIZE) -> int:
    if not text:
        return default
    try:
        size = int(text)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise _Refused("invalid-argument", f"limit must be an integer from 1 to {MAX_PAGE_SIZE}, got {text!r}")
    return size


def _since_argument(text: str | None) -> int | None:
    """``?since=``: a seq (an int >= 0), or ``None`` when absent or empty (the tail)."""
    if text is None or not text.strip():
        return None
    if not text.strip().isdigit():
        raise _Refused("invalid-argument", f"since must be a seq (an integer >= 0), got {text!r}")
    return int(text)


def _event_json(event: ChangeEvent) -> dict[str, Any]:
    """One change-feed event for the page and the API (``at`` in ms since the epoch; the value's size only)."""
    record: dict[str, Any] = event._asdict()
    value = record.pop("value")
    record["at_iso"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event.at / 1000)) + f".{event.at % 1000:03d}Z"
    record["value_bytes"] = None if value is None else len(value)
    return record


def _ttl_argument(text: str) -> float | None:
    """A TTL in seconds from a form field or ``?ttl=`` (empty: none)."""
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise _Refused("invalid-argument", f"ttl must be a number of seconds, got {text!r}") from None


def _ttl(manager: StorageManager, expires_at: float | None) -> float | None:
    """Seconds until *expires_at* (seconds since the epoch) by the store's clock; ``None``: never."""
    if expires_at is None:
        return None
    return round(max(0.0, expires_at - manager.clock() / 1000), 3)


def _views(value: bytes) -> dict[str, Any]:
    """The renderings of *value* (first :data:`SHOWN_BYTES`): text, pretty JSON, hex; and the default."""
    shown = value[:SHOWN_BYTES]
    text: str | None
    try:
        text = shown.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and not all(ch.isprintable() or ch in "\n\r\t" for ch in text):
        text = None
    pretty: str | None = None
    if text is not None and len(value) <= SHOWN_BYTES:
        try:
            pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            pretty = None
    views: dict[str, Any] = {"text": text, "json": pretty, "hex": _hex_dump(shown)}
    views["default"] = "json" if pretty is not None else "text" if text is not None else "hex"
    return views


def _hex_dump(data: bytes) -> str:
    lines = []
    for offset in range(0, len(data), 16):
        row = data[offset : offset + 16]
        ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{offset:08x}  {row.hex(' '):<47}  {ascii_}")
    return "\n".join(lines)


def _chunks(spool: IO[bytes]) -> Iterator[bytes]:
    with spool:
        while chunk := spool.read(64 * 1024):
            yield chunk


def _prometheus_exporter(manager: StorageManager) -> Callable[[Request], Awaitable[Response]] | None:
    """The core's Prometheus exposition (:func:`airssys_storage.metrics.prometheus_app`) as a handler, or ``None``.

    ``None`` when prometheus-client is not installed or the manager's metrics are off.
    """
    try:
        import prometheus_client  # noqa: F401 - only whether it is installed
    except ImportError:
        return None
    if not manager.metrics()["enabled"]:
        return None
    from ..metrics import prometheus_app

    exporter = prometheus_app(manager)

    async def handle(request: Request) -> Response:
        # An ASGI application (prometheus_client.make_asgi_app): run it and capture its response.
        start: dict[str, Any] = {}
        body: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))

        await exporter(request.scope, request.receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", [])}
        headers.pop("content-length", None)
        return Response(b"".join(body), status_code=start.get("status", 200), headers=headers)

    return handle
