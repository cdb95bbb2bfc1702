"""Plugin discovery and the typed registry: the only code that calls ``pm.hook``.

Loading order: the core's own default plugin (built-in policies and quota
strategies), then every entry point of the ``airssys_storage`` group that is
not blocked. A plugin that fails to import is logged and remembered; it
becomes fatal only when configuration selects something it would provide.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pluggy

from . import default_plugins, hookspecs
from .backend import StorageBackend
from .errors import PluginError
from .policies import PermissionPolicy, QuotaStrategy

__all__ = ["PluginRegistry", "RegisteredClass", "backend_scheme", "redact_url"]

log = logging.getLogger("airssys_storage")

BUILTIN_PLUGIN = "builtin"

# Where the plugins of this project live, for install hints: directories of a clone of the
# repository (the packages are not on PyPI yet).
KNOWN_SCHEME_DISTRIBUTIONS = {
    "memory": "./plugins/airssys-storage-memory",
    "sqlite": "./plugins/airssys-storage-sql",
    "postgresql": "./plugins/airssys-storage-sql[postgresql]",
    "postgres": "./plugins/airssys-storage-sql[postgresql]",
    "mysql": "./plugins/airssys-storage-sql[mysql]",
    "mariadb": "./plugins/airssys-storage-sql[mysql]",
    "leveldb": "./plugins/airssys-storage-leveldb",
}

T = TypeVar("T")


@dataclass(frozen=True)
class RegisteredClass(Generic[T]):
    """One class a plugin registered, with where it came from."""

    kind: str
    name: str
    cls: type[T]
    plugin: str
    distribution: str | None
    version: str | None

    def describe(self) -> str:
        origin = f"plugin {self.plugin!r}"
        if self.distribution:
            origin += f" (distribution {self.distribution} {self.version})"
        return origin

    def as_dict(self) -> dict[str, Any]:
        schemes = list(getattr(self.cls, "url_schemes", ())) if self.kind == "backend" else []
        return {
            "name": self.name,
            "kind": self.kind,
            "plugin": self.plugin,
            "distribution": self.distribution,
            "version": self.version,
            "url_schemes": schemes,
        }


_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def backend_scheme(url: str) -> str:
    """The scheme a backend is chosen by: ``postgresql+psycopg://`` -> ``postgresql``; ``""`` if none.

    Reads only the scheme (RFC 3986), so it never raises, whatever follows it.
    """
    match = _SCHEME.match(url)
    return match.group(1).split("+", 1)[0].lower() if match else ""


class _Kind(Generic[T]):
    def __init__(self, kind: str, base: type[T]) -> None:
        self.kind = kind
        self.base = base
        self.by_name: dict[str, RegisteredClass[T]] = {}

    def add(self, item: RegisteredClass[T]) -> None:
        cls = item.cls
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise PluginError(
                f"{item.describe()} registered {cls!r} as a {self.kind}, but it is not a "
                f"subclass of {self.base.__name__}"
            )
        previous = self.by_name.get(item.name)
        if previous is not None and previous.cls is not cls:
            raise PluginError(
                f"{self.kind} name {item.name!r} is registered twice: by {previous.describe()} "
                f"and by {item.describe()}; uninstall one of them or add one plugin to "
                "blocked_plugins"
            )
        self.by_name[item.name] = item


class PluginRegistry:
    """Every plugin class known to this process, by kind and name."""

    def __init__(self) -> None:
        self.backends: _Kind[StorageBackend] = _Kind("backend", StorageBackend)  # type: ignore[type-abstract]
        self.policies: _Kind[PermissionPolicy] = _Kind("permission policy", PermissionPolicy)
        self.quota_strategies: _Kind[QuotaStrategy] = _Kind("quota strategy", QuotaStrategy)
        #: plugin name -> "ExceptionType: message" for plugins that failed to load.
        self.failures: dict[str, str] = {}
        self._schemes: dict[str, RegisteredClass[StorageBackend]] = {}
        self._pm: pluggy.PluginManager | None = None
        self._origins: dict[str, tuple[str | None, str | None]] = {}

    @classmethod
    def load(
        cls,
        blocked: Iterable[str] = (),
        entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
    ) -> PluginRegistry:
        """Discover plugins (entry points of group ``airssys_storage`` unless given) and register their classes."""
        blocked = set(blocked)
        pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        pm.add_hookspecs(hookspecs)
        registry = cls()
        origins: dict[str, tuple[str | None, str | None]] = {}
        if BUILTIN_PLUGIN not in blocked:
            pm.register(default_plugins, name=BUILTIN_PLUGIN)
            origins[BUILTIN_PLUGIN] = ("airssys-storage", _version("airssys-storage"))
        if entry_points is None:
            entry_points = importlib.metadata.entry_points(group=hookspecs.PROJECT_NAME)
        for ep in entry_points:
            if ep.name in blocked or pm.get_plugin(ep.name) is not None:
                continue
            try:
                module = ep.load()
                pm.register(module, name=ep.name)
            except Exception as exc:  # a broken plugin must not take the host down
                registry.failures[ep.name] = f"{type(exc).__name__}: {exc}"
                log.warning("airssys-storage plugin %r (%s) failed to load: %s", ep.name, ep.value, exc)
                continue
            dist = ep.dist
            origins[ep.name] = (dist.name, dist.version) if dist is not None else (None, None)
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"a plugin implements an unknown hook: {exc}") from None
        registry._collect(pm, origins)
        registry._pm = pm
        registry._origins = origins
        return registry

    def _collect(self, pm: pluggy.PluginManager, origins: dict[str, tuple[str | None, str | None]]) -> None:
        hooks: list[tuple[Any, _Kind[Any]]] = [
            (pm.hook.register_backends, self.backends),
            (pm.hook.register_permission_policies, self.policies),
            (pm.hook.register_quota_strategies, self.quota_strategies),
        ]
        for hook, kind in hooks:
            # Called impl by impl (not through hook()) so that every class is
            # attributed to its plugin: duplicate-name errors name both.
            for impl in reversed(hook.get_hookimpls()):
                distribution, version = origins.get(impl.plugin_name, (None, None))
                try:
                    provided = impl.function() or ()
                except Exception as exc:
                    raise PluginError(
                        f"plugin {impl.plugin_name!r} failed in {hook.name}: {type(exc).__name__}: {exc}"
                    ) from exc
                for registered in provided:
                    name = getattr(registered, "name", None)
                    if not isinstance(name, str) or not name:
                        raise PluginError(
                            f"plugin {impl.plugin_name!r} registered {registered!r} as a {kind.kind} "
                            "without a name: set the class attribute name = '...'"
                        )
                    kind.add(RegisteredClass(kind.kind, name, registered, impl.plugin_name, distribution, version))
        for item in self.backends.by_name.values():
            for scheme in getattr(item.cls, "url_schemes", ()):
                previous = self._schemes.get(scheme)
                if previous is not None and previous.cls is not item.cls:
                    raise PluginError(
                        f"URL scheme {scheme!r} is served twice: by backend {previous.name!r} of "
                        f"{previous.describe()} and by backend {item.name!r} of {item.describe()}; "
                        "uninstall one of them or add one plugin to blocked_plugins"
                    )
                self._schemes[scheme] = item

    def register_commands(self, cli: Any) -> None:
        """Let plugins add subcommands to the command line *cli* (a click group).

        Each plugin is called on its own: one that raises is recorded in
        :attr:`failures` and logged, and the others' commands still appear.
        """
        if self._pm is None:
            return
        for impl in self._pm.hook.register_commands.get_hookimpls():
            try:
                impl.function(cli=cli)
            except Exception as exc:
                self.failures[impl.plugin_name] = f"register_commands: {type(exc).__name__}: {exc}"
                log.warning("airssys-storage plugin %r failed to add commands: %s", impl.plugin_name, exc)

    # -- lookups used at start-up -------------------------------------------

    def backend_for_url(self, url: str) -> type[StorageBackend]:
        """The backend class serving *url*'s scheme."""
        scheme = backend_scheme(url)
        item = self._schemes.get(scheme)
        if item is None:
            known = KNOWN_SCHEME_DISTRIBUTIONS.get(scheme)
            how = (
                f"pip install '{known}' in the root of a clone of airssys-storage (not on PyPI yet)"
                if known is not None
                else f"pip install the plugin that serves it (e.g. airssys-storage-{scheme or 'NAME'})"
            )
            installed = ", ".join(sorted(self._schemes)) or "none"
            raise PluginError(
                f"no installed backend serves URL scheme {scheme!r} (url {redact_url(url)!r}); "
                f"installed schemes: {installed}. Install one with: {how}" + self._failure_note()
            )
        return item.cls

    def policy(self, name: str) -> type[PermissionPolicy]:
        """The permission policy class called *name*."""
        return self._lookup(self.policies, name)

    def quota_strategy(self, name: str) -> type[QuotaStrategy]:
        """The quota strategy class called *name*."""
        return self._lookup(self.quota_strategies, name)

    def _lookup(self, kind: _Kind[T], name: str) -> type[T]:
        item = kind.by_name.get(name)
        if item is None:
            installed = ", ".join(sorted(kind.by_name)) or "none"
            raise PluginError(
                f"no {kind.kind} named {name!r} is installed; installed: {installed}. "
                f"Install one with: pip install airssys-storage-{name}" + self._failure_note()
            )
        return item.cls

    def _failure_note(self) -> str:
        if not self.failures:
            return ""
        return (
            " (plugins that failed to load: "
            + "; ".join(f"{name}: {error}" for name, error in sorted(self.failures.items()))
            + ")"
        )

    def describe(self) -> list[dict[str, Any]]:
        """Every registered class, and every plugin that adds commands, as a dict (for ``airssys-storage plugins``)."""
        rows = [
            item.as_dict()
            for kind in (self.backends, self.policies, self.quota_strategies)
            for item in kind.by_name.values()
        ]
        if self._pm is not None:
            for impl in self._pm.hook.register_commands.get_hookimpls():
                distribution, version = self._origins.get(impl.plugin_name, (None, None))
                rows.append(
                    {
                        "name": impl.plugin_name,
                        "kind": "commands",
                        "plugin": impl.plugin_name,
                        "distribution": distribution,
                        "version": version,
                        "url_schemes": [],
                    }
                )
        return sorted(rows, key=lambda row: (row["kind"], row["name"]))


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


_URL_PASSWORD = re.compile(r"^([^:/?#]+://[^/?#:@]*:)[^/?#]*@")
_QUERY_SECRET = re.compile(r"([?&](?:password|passwd|sslpassword|secret|token|api_key)=)[^&#]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """*url* with its password (``user:PASSWORD@``, ``?password=``) replaced by ``***``, for messages and listings.

    Never raises, whatever the text.
    """
    return _QUERY_SECRET.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", url, count=1))
