"""Plugin discovery and the typed registry: the only code that calls ``pm.hook``.

Loading order: the core's own default plugin (built-in policies and quota
strategies), then plugins registered in-process (:func:`register_plugin`, or
the ``plugins`` argument of :meth:`PluginRegistry.load`), then every entry
point of the ``airssys_storage`` group. Plugins named in ``blocked_plugins``
are not imported.

A plugin is *broken* when importing it raises (``SystemExit`` included), when
it implements a hook that does not exist, or when a registration hook raises
or returns anything but a list of named subclasses of the right base class.
A broken plugin is logged, remembered in :attr:`PluginRegistry.failures` and
skipped as a whole (none of its classes is registered); it becomes an error
only when configuration selects something it would provide, and that error
names the plugin, the reason, and ``blocked_plugins``. Two plugins claiming
the same name or URL scheme are likewise an error only for that name.

Hooks are called through pluggy (``pm.hook.<name>(**kwargs)``, one plugin at
a time so each result and failure is attributed), so an implementation may
accept any subset of a hook's arguments.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pluggy

from . import default_plugins, hookspecs
from .backend import StorageBackend
from .errors import ConfigurationError, PluginError, StorageError
from .options import parse_options
from .policies import PermissionPolicy, QuotaStrategy

if TYPE_CHECKING:
    from .settings import StorageSettings

__all__ = [
    "PluginRegistry",
    "RegisteredClass",
    "backend_scheme",
    "redact_url",
    "register_plugin",
    "unregister_plugin",
]

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

# The registration hooks: hook name -> the PluginRegistry attribute (a _Kind) its classes go to.
_REGISTRATION_HOOKS = {
    "register_backends": "backends",
    "register_permission_policies": "policies",
    "register_quota_strategies": "quota_strategies",
}

#: Plugins registered in-process with :func:`register_plugin`: name -> plugin object.
_IN_PROCESS: dict[str, object] = {}

T = TypeVar("T")


def _distribution_of(requirement: str) -> str:
    """``./plugins/airssys-storage-sql[mysql]`` -> ``airssys-storage-sql``."""
    return requirement.split("[", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register *plugin* for every :class:`PluginRegistry` loaded afterwards in this process.

    *plugin* is anything pluggy accepts: a module, class or instance whose
    hook functions carry the :data:`~airssys_storage.hookimpl` marker. *name*
    (default: the module's ``__name__``, else the object's class name) is the
    plugin name shown by ``airssys-storage plugins`` and matched by
    ``blocked_plugins``; it takes precedence over an installed entry point of
    the same name. Registering another object under a taken name replaces it.
    Returns the name. Nothing is imported or called until a registry loads.
    Undo with :func:`unregister_plugin`.
    """
    if name is None:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
    if not isinstance(name, str) or not name:
        raise PluginError(f"register_plugin() needs a non-empty plugin name, got {name!r}")
    _IN_PROCESS[name] = plugin
    return name


def unregister_plugin(name: str) -> None:
    """Forget the plugin registered in-process as *name* (no error if there is none)."""
    _IN_PROCESS.pop(name, None)


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
        #: name -> message, for names two plugins claim (an error only when selected).
        self.conflicts: dict[str, str] = {}

    def check(self, item: object) -> str | None:
        """Why *item* cannot be registered as this kind, or ``None``."""
        if not isinstance(item, type):
            return f"{item!r} is not a class"
        if not issubclass(item, self.base):
            return f"{item!r} is not a subclass of {self.base.__name__}"
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            return f"{item.__name__} has no name: set the class attribute name = '...'"
        return None

    def add(self, item: RegisteredClass[T]) -> None:
        previous = self.by_name.get(item.name)
        if previous is not None and previous.cls is not item.cls:
            self.conflicts[item.name] = (
                f"{self.kind} name {item.name!r} is registered twice: by {previous.describe()} "
                f"and by {item.describe()}; uninstall one of them or add one plugin to blocked_plugins"
            )
            return
        self.by_name[item.name] = item


class PluginRegistry:
    """Every plugin class known to this process, by kind and name."""

    def __init__(self) -> None:
        self.backends: _Kind[StorageBackend] = _Kind("backend", StorageBackend)  # type: ignore[type-abstract]
        self.policies: _Kind[PermissionPolicy] = _Kind("permission policy", PermissionPolicy)
        self.quota_strategies: _Kind[QuotaStrategy] = _Kind("quota strategy", QuotaStrategy)
        #: plugin name -> why it is broken ("ExceptionType: message", or what a hook returned).
        self.failures: dict[str, str] = {}
        #: plugin names not loaded because ``blocked_plugins`` names them.
        self.blocked: frozenset[str] = frozenset()
        self._schemes: dict[str, RegisteredClass[StorageBackend]] = {}
        self._scheme_conflicts: dict[str, str] = {}
        self._pm: pluggy.PluginManager | None = None
        self._origins: dict[str, tuple[str | None, str | None]] = {}
        # (kind, name) -> plugin: what broken plugins' working hooks offered, for precise errors.
        self._broken_offers: dict[tuple[str, str], str] = {}
        # plugin name -> distribution, for blocked entry points (never imported).
        self._blocked_distributions: dict[str, str | None] = {}

    @classmethod
    def load(
        cls,
        blocked: Iterable[str] = (),
        entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
        plugins: Mapping[str, object] | None = None,
    ) -> PluginRegistry:
        """Discover plugins and register their classes; a broken plugin is recorded, never raised.

        *entry_points* replaces the installed entry points of group
        ``airssys_storage``; *plugins* (name -> module or object) adds
        plugins in-process for this registry only, on top of those given to
        :func:`register_plugin`. Names in *blocked* are not loaded.
        """
        registry = cls()
        registry.blocked = frozenset(blocked)
        pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        pm.add_hookspecs(hookspecs)
        registry._pm = pm
        sources: list[tuple[str, Any]] = [(BUILTIN_PLUGIN, default_plugins)]
        sources += list({**_IN_PROCESS, **(plugins or {})}.items())
        if entry_points is None:
            entry_points = importlib.metadata.entry_points(group=hookspecs.PROJECT_NAME)
        sources += [(ep.name, ep) for ep in entry_points]
        for name, source in sources:
            registry._add_plugin(name, source)
        registry._collect()
        return registry

    def _add_plugin(self, name: str, source: Any) -> None:
        pm = self._pm
        assert pm is not None
        is_entry_point = isinstance(source, importlib.metadata.EntryPoint)
        if is_entry_point and source.dist is not None:
            origin: tuple[str | None, str | None] = (source.dist.name, source.dist.version)
        elif name == BUILTIN_PLUGIN:
            origin = ("airssys-storage", _version("airssys-storage"))
        else:
            origin = (None, None)
        if name in self.blocked:
            self._blocked_distributions.setdefault(name, origin[0])
            return
        if pm.has_plugin(name) or name in self.failures:
            return  # an in-process plugin overrides an entry point of the same name
        try:
            plugin = source.load() if is_entry_point else source
            hash(plugin)  # pluggy keeps plugins in sets: an unhashable one would break every hook call
            if pm.is_registered(plugin):
                return
            pm.register(plugin, name=name)
        except (Exception, SystemExit) as exc:  # a broken plugin must not take the host down
            self._broken(name, f"{type(exc).__name__}: {exc}", "failed to load")
            return
        unknown = sorted(caller.name for caller in pm.get_hookcallers(plugin) or () if not caller.has_spec())
        if unknown:
            pm.unregister(plugin)
            self._broken(name, f"implements unknown hook(s) {', '.join(unknown)} (a typo?)", "is broken")
            return
        self._origins[name] = origin

    def _broken(self, name: str, reason: str, what: str) -> None:
        if name in self.failures:
            return  # the first reason is the one reported
        self.failures[name] = reason
        log.warning(
            "airssys-storage plugin %r %s and is skipped: %s; fix or reinstall it, "
            "or add %r to blocked_plugins to stop loading it",
            name,
            what,
            reason,
            name,
        )

    def _call(self, hook_name: str, plugin_name: str, **kwargs: Any) -> list[Any]:
        """Call one plugin's implementation of *hook_name* through pluggy (argument matching holds)."""
        pm = self._pm
        assert pm is not None
        target = pm.get_plugin(plugin_name)
        others = [plugin for plugin in pm.get_plugins() if plugin is not target]
        caller = pm.subset_hook_caller(hook_name, remove_plugins=others)
        return list(caller(**kwargs))

    def _collect(self) -> None:
        pm = self._pm
        assert pm is not None
        offers: dict[str, list[tuple[_Kind[Any], type[Any]]]] = {}
        for hook_name, attribute in _REGISTRATION_HOOKS.items():
            kind: _Kind[Any] = getattr(self, attribute)
            for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
                plugin = impl.plugin_name  # called even when broken: what it offers makes errors precise
                problem = None
                try:
                    results = self._call(hook_name, plugin)
                except (Exception, SystemExit) as exc:
                    problem = f"{hook_name}() raised {type(exc).__name__}: {exc}"
                    results = []
                for provided in results:  # None (nothing to register) is dropped by pluggy
                    if not isinstance(provided, (list, tuple)):
                        problem = f"{hook_name}() returned {provided!r}, not a list of classes"
                        break
                    for item in provided:
                        why = kind.check(item)
                        if why is not None:
                            problem = f"{hook_name}() returned {why}"
                            break
                        offers.setdefault(plugin, []).append((kind, item))
                if problem is not None:
                    self._broken(plugin, problem, "is broken")
        for plugin, items in offers.items():
            if plugin in self.failures:
                for kind, item in items:
                    self._broken_offers[(kind.kind, item.name)] = plugin
                    for scheme in getattr(item, "url_schemes", ()) if kind is self.backends else ():
                        self._broken_offers[("scheme", scheme)] = plugin
                continue
            distribution, version = self._origins.get(plugin, (None, None))
            for kind, item in items:
                kind.add(RegisteredClass(kind.kind, item.name, item, plugin, distribution, version))
        for entry in self.backends.by_name.values():
            for scheme in getattr(entry.cls, "url_schemes", ()):
                previous = self._schemes.get(scheme)
                if previous is not None and previous.cls is not entry.cls:
                    self._scheme_conflicts[scheme] = (
                        f"URL scheme {scheme!r} is served twice: by backend {previous.name!r} of "
                        f"{previous.describe()} and by backend {entry.name!r} of {entry.describe()}; "
                        "uninstall one of them or add one plugin to blocked_plugins"
                    )
                else:
                    self._schemes[scheme] = entry

    def register_commands(self, cli: Any) -> None:
        """Let plugins add subcommands to the command line *cli* (a click group).

        Each plugin is called on its own, through pluggy with ``cli=cli`` (an
        implementation that takes no argument works): one that raises is
        recorded in :attr:`failures` and logged, and the others' commands
        still appear.
        """
        if self._pm is None:
            return
        for impl in self._pm.hook.register_commands.get_hookimpls():
            try:
                self._call("register_commands", impl.plugin_name, cli=cli)
            except (Exception, SystemExit) as exc:
                self.failures[impl.plugin_name] = f"register_commands() raised {type(exc).__name__}: {exc}"
                log.warning("airssys-storage plugin %r failed to add commands: %s", impl.plugin_name, exc)

    # -- lookups used at start-up -------------------------------------------

    def backend_for_url(self, url: str) -> type[StorageBackend]:
        """The backend class serving *url*'s scheme; :class:`PluginError` says why there is none."""
        scheme = backend_scheme(url)
        if scheme in self._scheme_conflicts:
            raise PluginError(self._scheme_conflicts[scheme])
        item = self._schemes.get(scheme)
        if item is None:
            installed = ", ".join(sorted(self._schemes)) or "none"
            what = f"no installed backend serves URL scheme {scheme!r} (url {redact_url(url)!r})"
            dist = KNOWN_SCHEME_DISTRIBUTIONS.get(scheme)
            raise PluginError(
                self._unavailable(what, "scheme", scheme, _distribution_of(dist) if dist else None)
                or f"{what}; installed schemes: {installed}. "
                + (
                    f"Install it with: pip install '{dist}' in the root of a clone of airssys-storage (not on PyPI yet)"
                    if dist
                    else "No distribution of this project provides it: install the plugin that does"
                )
                + self._failure_note()
            )
        if item.name in self.backends.conflicts:
            raise PluginError(self.backends.conflicts[item.name])
        return item.cls

    def policy(self, name: str) -> type[PermissionPolicy]:
        """The permission policy class called *name*."""
        return self._lookup(self.policies, name)

    def quota_strategy(self, name: str) -> type[QuotaStrategy]:
        """The quota strategy class called *name*."""
        return self._lookup(self.quota_strategies, name)

    def _lookup(self, kind: _Kind[T], name: str) -> type[T]:
        if name in kind.conflicts:
            raise PluginError(kind.conflicts[name])
        item = kind.by_name.get(name)
        if item is None:
            what = f"no {kind.kind} named {name!r} is installed"
            installed = ", ".join(sorted(kind.by_name)) or "none"
            raise PluginError(
                self._unavailable(what, kind.kind, name, None)
                or f"{what}; installed: {installed}. No distribution of this project provides it: "
                "install the plugin that does (`airssys-storage plugins` lists what is installed)"
                + self._failure_note()
            )
        return item.cls

    def _unavailable(self, what: str, kind: str, name: str, distribution: str | None) -> str | None:
        """The message when *name* is known to come from a blocked or broken plugin, else ``None``."""
        broken = self._broken_offers.get((kind, name))
        provides = "which provides it"
        if broken is None and name in self.failures:
            broken, provides = name, "which may provide it"  # an entry point named like what it provides
        if broken is not None:
            return (
                f"{what}: plugin {broken!r}, {provides}, is broken ({self.failures[broken]}); "
                f"fix or reinstall it, or select something else and add {broken!r} to blocked_plugins"
            )
        blocked = [
            plugin
            for plugin, dist in sorted(self._blocked_distributions.items())
            if plugin == name
            or (distribution is not None and dist == distribution)
            or _provided_by_builtin(plugin, kind, name)
        ]
        if blocked:
            names = ", ".join(repr(plugin) for plugin in blocked)
            return (
                f"{what}: plugin {names}, which provides it, is blocked by settings (blocked_plugins); "
                "remove it from blocked_plugins to use it"
            )
        return None

    def _failure_note(self) -> str:
        notes = []
        if self.failures:
            notes.append(
                "broken plugins, which may provide it: "
                + "; ".join(f"{name}: {error}" for name, error in sorted(self.failures.items()))
                + " (fix or reinstall them, or add them to blocked_plugins)"
            )
        if self._blocked_distributions:
            notes.append("blocked by settings (blocked_plugins): " + ", ".join(sorted(self._blocked_distributions)))
        return "".join(f" ({note})" for note in notes)

    # -- instances, with their validated options ----------------------------

    def create_policies(self, settings: StorageSettings) -> list[PermissionPolicy]:
        """The configured permission policies (``settings.policies``), each with its options."""
        check_plugin_options(self, settings)
        return [_instantiate(self.policy(name), POLICY_KIND, settings) for name in settings.policies]

    def create_quota_strategy(self, settings: StorageSettings) -> QuotaStrategy:
        """The configured quota strategy (``settings.quota_strategy``), with its options."""
        check_plugin_options(self, settings)
        return _instantiate(self.quota_strategy(settings.quota_strategy), STRATEGY_KIND, settings)

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


def _provided_by_builtin(plugin: str, kind: str, name: str) -> bool:
    """Whether the (blocked) built-in plugin provides *kind* *name*: its contents are known without loading."""
    if plugin != BUILTIN_PLUGIN:
        return False
    provided: list[type[Any]] = []
    if kind == "permission policy":
        provided += default_plugins.register_permission_policies()
    elif kind == "quota strategy":
        provided += default_plugins.register_quota_strategies()
    return any(cls.name == name for cls in provided)


POLICY_KIND = "permission policy"
STRATEGY_KIND = "quota strategy"


def check_plugin_options(registry: PluginRegistry, settings: StorageSettings) -> None:
    """Validate ``settings.plugin_options``: what the manager checks when it opens, and ``config --check``.

    Every table must name a configured policy or the quota strategy, and
    each configured class that is installed must accept its table (its
    ``Options`` model; a class without ``Options`` takes no table). Classes
    that are not installed are skipped: looking them up reports that.
    Raises :class:`ConfigurationError` naming the table and the fix.
    """
    configured = {*settings.policies, settings.quota_strategy}
    for name in settings.plugin_options:
        if name not in configured:
            raise ConfigurationError(
                f"plugin_options names {name!r}, which is neither a configured policy "
                f"(policies = {settings.policies!r}) nor the quota strategy ({settings.quota_strategy!r}): "
                "fix the name or remove the table"
            )
    lookups: list[tuple[str, str, Callable[[str], type[Any]]]] = [
        *((name, POLICY_KIND, registry.policy) for name in settings.policies),
        (settings.quota_strategy, STRATEGY_KIND, registry.quota_strategy),
    ]
    for name, kind, lookup in lookups:
        try:
            cls = lookup(name)
        except StorageError:
            continue  # not installed (or blocked, broken): the lookup's own error says so where it matters
        _options(cls, kind, settings)


def _options(cls: type[Any], kind: str, settings: StorageSettings) -> Any:
    """*cls*'s options from ``settings.plugin_options``, validated against ``cls.Options`` (``None`` if it has none)."""
    name: str = getattr(cls, "name", cls.__name__)
    raw = settings.plugin_options.get(name)
    model = getattr(cls, "Options", None)
    if model is None:
        if raw:
            raise ConfigurationError(f"plugin_options.{name}: the {kind} {name!r} takes no options; remove the table")
        return None
    return parse_options(model, raw or {}, table=f"plugin_options.{name}", owner=f"{kind} {name!r}")


def _instantiate(cls: type[T], kind: str, settings: StorageSettings) -> T:
    """*cls*(settings), given its options validated against ``cls.Options`` when it declares them."""
    options = _options(cls, kind, settings)
    if options is None and getattr(cls, "Options", None) is None:
        return cls(settings)  # type: ignore[call-arg]
    return cls(settings, options)  # type: ignore[call-arg]


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
