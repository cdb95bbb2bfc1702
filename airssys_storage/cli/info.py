"""Commands that inspect the installation: config, plugins, manifest check."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigurationError, StorageError
from ..manifest import LIMITS_FIELDS, Manifest
from ..options import describe_options, redact_options
from ..plugins import PluginRegistry
from ..policies import ACCESS_OPERATIONS
from ..settings import CONFIG_FILE_ENV, StorageSettings, config_file_path
from ..storage import check_settings
from .common import (
    FilePath,
    StoreSpec,
    echo_json,
    human_bytes,
    info,
    json_option,
    print_table,
    redact_url,
    store_options,
)


def settings_provenance(store: StoreSpec) -> tuple[StorageSettings, Path | None, dict[str, str]]:
    """The effective settings, the settings file in use and, per field, where its value came from.

    Mirrors the precedence of :class:`StorageSettings`: arguments, then
    ``AIRSSYS_STORAGE_*`` environment variables (case-insensitive), then the
    settings file, then the defaults.
    """
    settings = store.settings()
    given = (("url", "--url", store.url), ("backend_options", "--backend-options", store.options))
    arguments = {field: option for field, option, value in given if value is not None}
    path = config_file_path()
    in_file: dict[str, Any] = {}
    if path is not None:
        try:
            in_file = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"invalid settings file {path}: {exc}") from None
    environment = {name.lower() for name in os.environ}
    prefix = str(StorageSettings.model_config.get("env_prefix", ""))
    sources: dict[str, str] = {}
    for field in StorageSettings.model_fields:
        variable = f"{prefix}{field}".upper()
        if field in arguments:
            sources[field] = f"argument ({arguments[field]})"
        elif variable.lower() in environment:
            sources[field] = f"environment variable {variable}"
        elif field in in_file:
            sources[field] = f"settings file {path}"
        else:
            sources[field] = "default"
    dropped = "backend_options" not in arguments and sources["backend_options"] != "default"
    if "url" in arguments and dropped and not settings.backend_options:
        sources["backend_options"] = "dropped: --url names another kind of backend than the configured one"
    return settings, path, sources


def _display(settings: StorageSettings, field: str) -> Any:
    value = getattr(settings, field)
    if field == "url":
        return redact_url(settings.resolved_url)
    if field == "backend_options":
        return redact_options(value)
    if field == "plugin_options":
        return {name: redact_options(options) for name, options in value.items()}
    return value


@click.command()
@store_options
@json_option
@click.option(
    "--check",
    is_flag=True,
    help="Exit 3 if a policy, the quota strategy or the URL's backend is not installed, "
    "or backend_options or plugin_options is invalid (always reported).",
)
def config(store: StoreSpec, as_json: bool, check: bool) -> None:
    """Show the effective settings, where each value came from, and the backend's options.

    Precedence: --url, then AIRSSYS_STORAGE_* environment variables, then the
    settings file (AIRSSYS_STORAGE_CONFIG_FILE, else ./airssys-storage.toml,
    else the user's config.toml), then the defaults. Policies, the quota
    strategy and the URL's scheme are checked against the installed plugins,
    and backend_options and plugin_options as every data command checks them:
    a problem is a warning on stderr, and with --check an error (exit code 3).
    The URL's backend's options follow, each with its value, default and meaning.
    """
    settings, path, sources = settings_provenance(store)
    registry = PluginRegistry.load(blocked=settings.blocked_plugins)
    problems = check_settings(settings, registry)
    backend = _backend_options(registry, settings)
    if check and problems:
        raise ConfigurationError(
            f"{sum(getattr(p, 'count', 1) for p in problems)} problem(s) in the settings: "
            + "; ".join(p.message for p in problems)
        )
    for problem in problems:
        info(f"warning: {problem.message}")
    if settings.url is None:
        sources["url"] = "default (a SQLite file in the user's data directory)"
    if as_json:
        echo_json(
            {
                "settings_file": None if path is None else str(path),
                "problems": [problem.message for problem in problems],
                "settings": {
                    field: {"value": _display(settings, field), "source": sources[field]} for field in sources
                },
                "backend": backend,
            }
        )
        return
    rows = [[field, _display(settings, field), sources[field]] for field in sources]
    print_table(None, ["setting", "value", "source"], rows)
    if backend is not None:
        print_table(
            f"options of the backend {backend['name']!r} (backend_options)",
            ["option", "value", "default", "type", "description"],
            [[o["name"], o["value"], o["default"], o["type"], o["description"]] for o in backend["options"]],
        )
    if path is not None:
        info(f"settings file: {path}")
    else:
        info(f"no settings file (set {CONFIG_FILE_ENV}, or create ./airssys-storage.toml or the user's config.toml)")
    if check:
        info(
            "check: the policies, the quota strategy and the URL's backend are installed; "
            "backend_options and plugin_options are valid"
        )


def _backend_options(registry: PluginRegistry, settings: StorageSettings) -> dict[str, Any] | None:
    """The URL's backend and its declared options (value in force, default, type, description).

    ``None`` when no installed backend serves the URL.
    """
    try:
        backend_cls = registry.backend_for_url(settings.resolved_url)
    except StorageError:
        return None  # reported among the problems
    given = settings.backend_options
    declared = describe_options(backend_cls.Options)
    shown = redact_options({o.name: given.get(o.name, o.default) for o in declared})
    return {
        "name": backend_cls.name,
        "declared": backend_cls.Options is not None,
        "options": [
            {
                "name": o.name,
                "value": shown[o.name],
                "given": o.name in given,
                "default": o.default,
                "type": o.kind,
                "description": o.description,
            }
            for o in declared
        ],
    }


@click.command()
@json_option
def plugins(as_json: bool) -> None:
    """List every plugin class (name, kind, distribution and version, URL schemes), broken and blocked plugins.

    Exits 0 when the listing itself worked, broken plugins included: they are
    skipped by every other command until configuration selects what they
    provide, and this command is how to find out why.
    """
    try:
        blocked = StorageSettings().blocked_plugins
    except ConfigurationError as exc:
        info(f"warning: the settings are invalid ({exc.message}); listing with no plugin blocked")
        blocked = []
    registry = PluginRegistry.load(blocked=blocked)
    rows = registry.describe()
    failures = [{"plugin": name, "error": error} for name, error in sorted(registry.failures.items())]
    if as_json:
        echo_json({"plugins": rows, "failed": failures, "blocked": sorted(blocked)})
        return
    print_table(
        "plugins",
        ["name", "kind", "plugin", "distribution", "version", "URL schemes"],
        [
            [r["name"], r["kind"], r["plugin"], r["distribution"], r["version"], ", ".join(r["url_schemes"])]
            for r in rows
        ],
    )
    if failures:
        print_table(
            "broken plugins (skipped; fix them, or add them to blocked_plugins)",
            ["plugin", "error"],
            [[f["plugin"], f["error"]] for f in failures],
        )
    if blocked:
        info("blocked by settings: " + ", ".join(sorted(blocked)))


@click.group()
def manifest() -> None:
    """Component manifests (component-manifest.toml)."""


@manifest.command()
@click.argument("file", type=FilePath(exists=True, dir_okay=False, path_type=Path))
@json_option
def check(file: Path, as_json: bool) -> None:
    """Validate a manifest, its [limits] table included; a problem is reported with the field and the fix (exit 3)."""
    parsed = Manifest.from_file(file)
    operations = sorted(op.value for op in ACCESS_OPERATIONS[parsed.access])
    summary = {
        "id": parsed.id,
        "name": parsed.name,
        "version": parsed.version,
        "access": parsed.access.value,
        "max_size": parsed.max_size,
        "quota_bytes": parsed.quota,
        "operations": operations,
        "transactional": parsed.transactional,
        "limits": {key: getattr(parsed.limits, attribute) for key, attribute in LIMITS_FIELDS.items()},
    }
    if as_json:
        echo_json(summary)
        return
    quota = f"{parsed.quota} bytes ({human_bytes(parsed.quota)})"
    origin = "max-size" if parsed.max_size is not None else f"default for {parsed.access.value}"
    click.echo(f"ok: component {parsed.id!r}, access {parsed.access.value!r}, quota {quota} ({origin})")
    click.echo("operations: " + (", ".join(operations) or "none"))
    if parsed.transactional:
        click.echo("transactional: each invocation's writes commit together or not at all")
    asked = parsed.limits.asked()
    if asked:
        click.echo("limits: " + ", ".join(f"{key} {asked[a]!r}" for key, a in LIMITS_FIELDS.items() if a in asked))
