"""Moving data: export, import (the JSON Lines format of :mod:`airssys_storage.exchange`) and migrate."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from ..exchange import ExportInfo, MigrationPlan, export_component, import_component, read_export_component
from ..exchange import migrate as migrate_components
from .common import (
    ComponentId,
    Failure,
    JsonObject,
    Progress,
    StoreSpec,
    component_option,
    info,
    input_file,
    manifest_option,
    open_component,
    open_manager,
    output_file,
    redact_url,
    store_options,
)


@click.command()
@component_option
@store_options
@click.option(
    "--output", "-o", metavar="FILE", default="-", show_default=True, help="Where to write the export (- = stdout)."
)
def export(component: str, store: StoreSpec, output: str) -> None:
    """Write every key of a component to a portable JSON Lines file (see docs/cli.md for the format)."""
    with open_component(store, component, existing=True) as storage:
        total = storage.usage().keys
        with Progress(f"exporting {component}", total) as progress, output_file(output) as stream:
            result = export_component(storage, stream, progress=progress)
    where = "stdout" if output == "-" else repr(output)
    info(f"exported {result.records} keys ({result.bytes} bytes) of component {component!r} to {where}")
    if result.records == 0:
        info(f"warning: component {component!r} holds no keys; check the id and the URL")


@click.command(name="import")
@click.argument("file", metavar="FILE")
@click.option("--component", "-c", type=ComponentId(), help="Import into this component (default: the file's).")
@store_options
@manifest_option
@click.option("--replace", is_flag=True, help="Clear the component first, so it holds exactly the file's keys.")
def import_(file: str, component: str | None, store: StoreSpec, manifest_path: Path | None, replace: bool) -> None:
    """Import an export FILE (- = stdin) in atomic batches; a bad file is rejected before anything is written.

    Keys already holding the same value are not rewritten, so re-running an
    interrupted import finishes it. Without --replace, the component's other
    keys stay.
    """
    with input_file(file) as source:
        start = source.tell()
        target = component or read_export_component(source)
        source.seek(start)
        with open_component(store, target, manifest_path) as storage, Progress(f"importing {target}", None) as progress:

            def started(found: ExportInfo) -> None:
                progress.set_total(found.records)

            result = import_component(storage, source, replace=replace, progress=progress, on_validated=started)
    identical = result.records - result.written - result.expired
    expired = f", {result.expired} skipped (already expired)" if result.expired else ""
    info(
        f"read {result.records} keys ({result.bytes} bytes) for component {result.component!r}: "
        f"{result.written} written, {identical} already identical{expired}"
    )


@click.command()
@click.option("--from", "source_url", metavar="URL", required=True, help="The backend to copy from.")
@click.option("--from-options", type=JsonObject(), help="Backend options of --from, as a JSON object.")
@click.option("--to", "target_url", metavar="URL", required=True, help="The backend to copy to.")
@click.option("--to-options", type=JsonObject(), help="Backend options of --to, as a JSON object.")
@click.option(
    "--component", "-c", "components", type=ComponentId(), multiple=True, help="Copy only this component (repeatable)."
)
@click.option("--prune", is_flag=True, help="Also delete keys the source lacks, so the target mirrors the source.")
@click.option("--json", "as_json", is_flag=True, help="Print the per-component result as JSON.")
def migrate(
    source_url: str,
    from_options: dict[str, Any] | None,
    target_url: str,
    to_options: dict[str, Any] | None,
    components: tuple[str, ...],
    prune: bool,
    as_json: bool,
) -> None:
    """Copy one or every component from one backend to another, then verify key counts and bytes.

    Identical values are not rewritten, so re-running after an interruption
    finishes the copy. Stop the writers of the source first: the verification
    compares the source and the target at the end.
    """
    source_settings = StoreSpec(source_url, from_options, ("--from", "--from-options")).settings()
    target_settings = StoreSpec(target_url, to_options, ("--to", "--to-options")).settings()
    if (_store_identity(source_settings.resolved_url), source_settings.backend_options) == (
        _store_identity(target_settings.resolved_url),
        target_settings.backend_options,
    ):
        raise Failure("--from and --to name the same store: give two different URLs (or backend options)")
    with open_manager(source_settings, existing=True) as source, open_manager(target_settings) as target:
        with Progress("migrating", None) as progress:

            def planned(plan: MigrationPlan) -> None:
                progress.set_total(plan.keys)

            results = migrate_components(
                source, target, components or None, prune=prune, progress=progress, on_planned=planned
            )
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "component": r.component,
                        "keys": r.target.keys,
                        "bytes": r.target.bytes,
                        "written": r.written,
                        "unchanged": r.unchanged,
                        "deleted": r.deleted,
                        "expired": r.expired,
                        "verified": r.verified,
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    written = sum(r.written for r in results)
    total = sum(r.source.keys for r in results)
    info(
        f"migrated {len(results)} components ({total} keys, {written} written) from {redact_url(source_url)} "
        f"to {redact_url(target_url)}; key counts and bytes verified"
    )


#: Schemes whose URL names a file or directory on this machine (two spellings of one path are one store).
_FILE_SCHEMES = ("sqlite", "leveldb", "rocksdb", "lmdb")


def _store_identity(url: str) -> str:
    """*url* with a file store's path resolved, so that two spellings of one file compare equal.

    ``sqlite:////a/../a/x.db`` and ``sqlite+pysqlite:////a/x.db`` name one database (an outside
    trial migrated a store onto itself); so do ``leveldb:``, ``rocksdb:`` and ``lmdb:`` directory paths
    (``lmdb:///a/../a/x`` is ``lmdb:///a/x``); server URLs are compared as written.
    ``rocksdb:///x?mode=read-only`` is the store ``rocksdb:///x`` (the mode only says how it is opened).
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    scheme = parts.scheme.split("+", 1)[0]
    file_store = scheme in _FILE_SCHEMES and (not parts.query or scheme == "rocksdb")
    if file_store and not parts.netloc and parts.path.startswith("/"):
        path = parts.path[1:] if scheme == "sqlite" else parts.path  # sqlite:////abs: the path is after "///"
        if path.startswith("/"):
            return f"{scheme}://{os.path.realpath(path)}"
    return url
