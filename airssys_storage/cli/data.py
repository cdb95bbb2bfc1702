"""Data commands on one component, with operator (admin) rights: get, set, delete, keys, size, clear, watch."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO

import click

from ..backend import operator_command
from ..exchange import pages
from ..storage import ComponentStorage
from .common import (
    ExitCode,
    Failure,
    InputFile,
    StoreSpec,
    component_option,
    echo_json,
    info,
    json_option,
    manifest_option,
    open_component,
    output_file,
    stdin_is_terminal,
    store_options,
)


def _missing(key: str, component: str, storage: ComponentStorage) -> Failure:
    """Not found, with a hint that lists the keys of the same store (its URL and selecting options)."""
    settings = storage.settings
    listing = operator_command(
        f"keys --component {component}",
        settings.resolved_url,
        type(storage._backend).selecting_options(settings.backend_options),  # same package: the handle's backend
    )
    return Failure(
        f"key {key!r} not found in component {component!r}; list its keys with: {listing}", ExitCode.NOT_FOUND
    )


@click.command()
@component_option
@store_options
@click.option("--output", "-o", metavar="FILE", help="Write the value to FILE instead of stdout.")
@click.argument("key")
def get(component: str, store: StoreSpec, output: str | None, key: str) -> None:
    """Print the value of KEY, byte for byte (exit code 1 if it does not exist)."""
    with open_component(store, component, existing=True) as storage:
        value = storage.get(key)
        if value is None:
            raise _missing(key, component, storage)
    with output_file(output or "-") as stream:
        stream.write(value)


@click.command(name="set")
@component_option
@store_options
@manifest_option
@click.option("--file", "-f", "file", type=InputFile("rb"), help="Read the value from this file.")
@click.argument("key")
@click.argument("value", required=False)
def set_(
    component: str,
    store: StoreSpec,
    manifest_path: Path | None,
    file: IO[bytes] | None,
    key: str,
    value: str | None,
) -> None:
    """Store VALUE (its bytes as given), the content of --file, or stdin (VALUE '-') under KEY."""
    if (value is None) == (file is None):
        raise Failure("give the value exactly once: as an argument, with --file FILE, or - to read stdin")
    if file is not None:
        data = file.read()
    elif value == "-":
        data = sys.stdin.buffer.read()
    else:
        assert value is not None
        data = os.fsencode(value)  # the argument's original bytes, even if not UTF-8
    with open_component(store, component, manifest_path) as storage:
        storage.set(key, data)


@click.command()
@component_option
@store_options
@click.option("--missing-ok", is_flag=True, help="Exit 0 even if KEY does not exist.")
@click.argument("key")
def delete(component: str, store: StoreSpec, missing_ok: bool, key: str) -> None:
    """Delete KEY (exit code 1 if it does not exist, unless --missing-ok)."""
    with open_component(store, component) as storage:
        existed = storage.delete(key)
        if not existed and not missing_ok:
            raise _missing(key, component, storage)


@click.command()
@component_option
@store_options
@json_option
@click.argument("prefix", required=False, default="")
def keys(component: str, store: StoreSpec, as_json: bool, prefix: str) -> None:
    """List the keys starting with PREFIX (all keys without it), one per line, in bytewise order.

    Pages through the component with scan(), so it works for any number of keys.
    """
    with open_component(store, component, existing=True) as storage:
        count = 0
        if as_json:
            click.echo("[", nl=False)
        for page in pages(storage, prefix or None):
            for item_key, _ in page:
                if as_json:
                    click.echo(("," if count else "") + "\n  " + json.dumps(item_key, ensure_ascii=False), nl=False)
                else:
                    click.echo(item_key)  # keys hold no control characters, so one per line is unambiguous
                count += 1
        if as_json:
            click.echo("\n]" if count else "]")


@click.command()
@component_option
@store_options
@json_option
def size(component: str, store: StoreSpec, as_json: bool) -> None:
    """Print the bytes the component uses (UTF-8 key bytes plus value bytes)."""
    with open_component(store, component, existing=True) as storage:
        usage = storage.usage()
    if as_json:
        echo_json({"component": component, "bytes": usage.bytes, "keys": usage.keys})
    else:
        click.echo(usage.bytes)


@click.command()
@component_option
@store_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def clear(component: str, store: StoreSpec, yes: bool) -> None:
    """Delete every key of the component (asks first, unless --yes)."""
    if not yes and not stdin_is_terminal():
        raise Failure(f"clear deletes every key of component {component!r}: confirm with --yes")
    with open_component(store, component) as storage:
        usage = storage.usage()
        if not yes:
            click.confirm(
                f"Delete all {usage.keys} keys ({usage.bytes} bytes) of component {component!r}?", abort=True, err=True
            )
        storage.clear()
    info(f"cleared component {component!r}: {usage.keys} keys, {usage.bytes} bytes deleted")


@click.command()
@component_option
@store_options
@json_option
@click.option("--prefix", default=None, metavar="P", help="Only changes of keys starting with P (and clears).")
@click.option(
    "--since",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Start after seq N (0: the oldest retained change). Default: the last seq now (only new changes).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Stop after SECONDS without a change (default: run until interrupted).",
)
def watch(
    component: str, store: StoreSpec, as_json: bool, prefix: str | None, since: int | None, timeout: float | None
) -> None:
    """Print the component's changes as they are committed: seq, operation, key and version, one per line.

    With --json, one JSON object per line (JSON Lines) with seq, op, key, version, at (ms since the
    epoch), end (delete-range) and value (base64, when the store captures values). The component
    must keep a change feed (its manifest's permissions.storage.changes = true); exit code 4 when
    --since is older than the retained changes (the gap error names the oldest seq).
    """
    import base64

    with open_component(store, component, existing=True, changes=True) as storage:
        start = storage.snapshot_seq() if since is None else since
        if storage.change_bounds()[1] == 0:  # watching works, but nothing will come unless the writers log
            click.echo(
                f"note: component {component!r} has no change in its feed yet; events appear only when the "
                "processes writing it open it with permissions.storage.changes = true (or changes_default = true)",
                err=True,
            )
        for event in storage.watch(start, prefix, timeout):
            if as_json:
                record = event._asdict()
                record["value"] = None if event.value is None else base64.b64encode(event.value).decode("ascii")
                click.echo(json.dumps(record, ensure_ascii=False))
            else:
                end = "" if event.op != "delete-range" else f"\tend={event.end!r}"
                click.echo(f"{event.seq}\t{event.op}\t{event.key}\tv{event.version}{end}")
