"""Operating a store: stats, bench, verify, repair."""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import click

from ..backend import Usage, VerifyReport, operator_command
from ..errors import StoreDamaged
from ..exchange import operator_storage
from ..hostmeta import is_host_namespace
from ..manifest import COMPONENT_ID_PATTERN, Manifest
from ..plugins import PluginRegistry
from ..storage import ComponentStorage
from .common import (
    ExitCode,
    Failure,
    FilePath,
    Progress,
    StoreSpec,
    echo_json,
    human_bytes,
    info,
    json_option,
    manifest_quota,
    open_manager,
    print_table,
    redact_url,
    store_options,
)

# -- stats -------------------------------------------------------------------


def _manifests(paths: Iterable[Path]) -> list[Manifest]:
    """The manifests at *paths*: files, or directories searched recursively for ``*.toml``."""
    found: list[Manifest] = []
    for path in paths:
        files = sorted(path.rglob("*.toml")) if path.is_dir() else [path]
        found.extend(Manifest.from_file(file) for file in files)
    return found


@click.command()
@store_options
@click.option(
    "--manifest",
    "manifest_paths",
    multiple=True,
    type=FilePath(exists=True, path_type=Path),
    help="A manifest, or a directory of *.toml manifests (repeatable): gives those components' quotas.",
)
@json_option
def stats(store: StoreSpec, manifest_paths: tuple[Path, ...], as_json: bool) -> None:
    """Per component: keys and bytes used against its quota; then the backend's own statistics.

    Quotas come from manifests (--manifest) under the configured quota
    strategy; without a manifest a component's quota is unknown.
    """
    settings = store.settings()
    registry = PluginRegistry.load(blocked=settings.blocked_plugins)
    quotas = {m.id: manifest_quota(settings, registry, m) for m in _manifests(manifest_paths)}
    with open_manager(settings, registry=registry, existing=True) as manager:
        ids = sorted(set(manager.backend.namespaces()) | set(quotas))
        components: list[dict[str, Any]] = []
        for cid in ids:
            if is_host_namespace(cid):  # host metadata (airssys_storage.hostmeta): no component's
                continue
            if COMPONENT_ID_PATTERN.fullmatch(cid) is None:  # written around the core: no component owns it
                info(
                    f"airssys-storage: warning: the store holds namespace {cid!r}, which is no valid component id; "
                    "left out (see airssys-storage verify)"
                )
                continue
            components.append(usage_row(cid, operator_storage(manager, cid).usage(), quotas))
        backend = {"name": manager.backend.name, "url": redact_url(settings.resolved_url), **manager.backend.stats()}
    if as_json:
        echo_json({"components": components, "backend": backend})
        return
    rows = [
        [
            c["component"],
            c["keys"],
            human_bytes(c["bytes"]),
            _quota_text(c),
            None if c["used_percent"] is None else f"{c['used_percent']:.1f} %",
        ]
        for c in components
    ]
    print_table("components", ["component", "keys", "used", "quota", "used %"], rows, right=frozenset({1, 2, 3, 4}))
    print_table("backend", ["statistic", "value"], [[name, value] for name, value in backend.items()])


def usage_row(component: str, usage: Usage, quotas: Mapping[str, int | None]) -> dict[str, Any]:
    """One component's line of ``stats --json`` (and of the explorer's ``/api/components``).

    ``quota_known``: *quotas* (component id -> bytes, ``None`` = unlimited)
    has the component; ``used_percent`` is ``None`` without a finite quota.
    """
    quota = quotas.get(component)
    return {
        "component": component,
        "keys": usage.keys,
        "bytes": usage.bytes,
        "quota_known": component in quotas,
        "quota_bytes": quota,
        "used_percent": round(100 * usage.bytes / quota, 2) if quota else None,
    }


def _quota_text(component: dict[str, Any]) -> str:
    if not component["quota_known"]:
        return "unknown"
    quota = component["quota_bytes"]
    return "unlimited" if quota is None else human_bytes(quota)


# -- bench -------------------------------------------------------------------


@dataclass
class _Phase:
    name: str
    keys_per_call: int
    calls: list[Callable[[], object]]


def _percentile(ordered: list[int], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] / 1000


#: Maps every byte to its complement: ``value.translate(_INVERT)`` differs from *value* in every byte.
_INVERT = bytes(range(255, -1, -1))


def _workload(storage: ComponentStorage, ops: int, value_size: int, batch: int, page: int) -> list[_Phase]:
    """The standard workload: single-key writes and reads, batches, a paginated scan, deletes.

    The overwrite phase writes other bytes of the same size than the keys hold
    (rewriting identical bytes is nearly free on some engines, e.g. SQLite and InnoDB).
    """
    rng = random.Random(42)
    value = rng.randbytes(value_size)
    overwrite = value.translate(_INVERT)
    keys = [f"bench/{i:09d}" for i in range(ops)]
    shuffled = rng.sample(keys, len(keys))
    batches = [[f"bench/batch/{c:06d}/{i:04d}" for i in range(batch)] for c in range(max(1, ops // batch))]
    scan_pages = max(1, (ops + len(batches) * batch) // page)
    cursor: list[str | None] = [None]

    def scan_page() -> None:
        _, cursor[0] = storage.scan(None, cursor[0], page)

    return [
        _Phase("set (new key)", 1, [partial(storage.set, k, value) for k in keys]),
        _Phase("get", 1, [partial(storage.get, k) for k in shuffled]),
        _Phase("set (overwrite)", 1, [partial(storage.set, k, overwrite) for k in shuffled]),
        _Phase("has (missing key)", 1, [partial(storage.has, k + "/missing") for k in shuffled]),
        _Phase(
            f"set_many ({batch} keys)", batch, [partial(storage.set_many, [(k, value) for k in b]) for b in batches]
        ),
        _Phase(f"get_many ({batch} keys)", batch, [partial(storage.get_many, b) for b in batches]),
        _Phase(f"scan (page of {page})", page, [scan_page] * scan_pages),
        _Phase("delete", 1, [partial(storage.delete, k) for k in shuffled]),
    ]


@click.command()
@store_options
@click.option(
    "--ops",
    "-n",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="Calls per single-key operation.",
)
@click.option("--value-size", type=click.IntRange(0), default=100, show_default=True, help="Bytes per value.")
@json_option
def bench(store: StoreSpec, ops: int, value_size: int, as_json: bool) -> None:
    """Run a standard workload on the configured backend and print ops/s and µs p50/p99 per operation.

    Works in a fresh component named bench-XXXXXXXX, deleted at the end.
    """
    settings = store.settings()
    with open_manager(settings) as manager:
        taken = set(manager.backend.namespaces())
        component = f"bench-{secrets.token_hex(4)}"
        while component in taken:
            component = f"bench-{secrets.token_hex(4)}"
        storage = operator_storage(manager, component)
        page = min(100, settings.max_keys_per_query)
        phases = _workload(storage, ops, value_size, settings.max_batch_ops, page)
        results: list[dict[str, Any]] = []
        try:
            with Progress("benchmarking", sum(len(p.calls) for p in phases)) as progress:
                for phase in phases:
                    results.append(_run(phase, progress))
        finally:
            storage.clear()
    if as_json:
        echo_json({"backend": manager.backend.name, "url": redact_url(settings.resolved_url), "operations": results})
        return
    print_table(
        f"{manager.backend.name} ({redact_url(settings.resolved_url)}), {value_size}-byte values",
        ["operation", "calls", "ops/s", "keys/s", "p50 µs", "p99 µs"],
        [
            [
                r["operation"],
                r["calls"],
                f"{r['ops_per_s']:,.0f}",
                f"{r['keys_per_s']:,.0f}",
                f"{r['p50_us']:.1f}",
                f"{r['p99_us']:.1f}",
            ]
            for r in results
        ],
        right=frozenset({1, 2, 3, 4, 5}),
    )


def _run(phase: _Phase, progress: Progress) -> dict[str, Any]:
    timings: list[int] = []
    clock = time.perf_counter_ns
    for done, call in enumerate(phase.calls, 1):
        start = clock()
        call()
        timings.append(clock() - start)
        if done % 64 == 0:
            progress(64)
    progress(len(phase.calls) % 64)
    total = sum(timings) / 1e9 or 1e-9
    timings.sort()
    return {
        "operation": phase.name,
        "calls": len(timings),
        "keys_per_call": phase.keys_per_call,
        "ops_per_s": len(timings) / total,
        "keys_per_s": len(timings) * phase.keys_per_call / total,
        "p50_us": _percentile(timings, 0.50),
        "p99_us": _percentile(timings, 0.99),
    }


# -- verify ------------------------------------------------------------------


@click.command()
@store_options
@click.option(
    "--repair", is_flag=True, help="Rewrite wrong usage counters, remove bad keys, fix bad versions and expiries."
)
@json_option
def verify(store: StoreSpec, repair: bool, as_json: bool) -> None:
    """Recount usage from the data, compare it with the counters, and run the engine's integrity check.

    Exits 6 whenever it finds the store damaged, also when the damage stops
    the open or the recount (exit 5 is left for a store it cannot read at
    all, e.g. an unreachable server): a counter disagrees with the data
    (unless --repair rewrote it), a stored key breaks the key rules (not
    UTF-8, a control character: unreachable through the API; --repair
    removes it and lists it), a row's version or expiry is out of range
    (--repair gives a bad version a fresh one above every version of the
    component, and removes a row whose expiry is bad as expired), or the engine found damage (which --repair
    does not fix; the message names what does). Safe while other processes use the
    store: a verify reads one snapshot, a repair holds the write lock briefly.
    """
    settings = store.settings()
    url = redact_url(settings.resolved_url)
    registry = PluginRegistry.load(blocked=settings.blocked_plugins)
    name = registry.backend_for_url(settings.resolved_url).name
    try:
        with open_manager(settings, registry=registry, existing=True) as manager:
            backend = manager.backend
            total = backend.stats().get("keys")
            with Progress("verifying", total if isinstance(total, int) else None) as progress:
                report = backend.verify(repair=repair, progress=progress)
    except StoreDamaged as exc:  # found at open or by the recount: damage all the same (exit 6, not 5)
        if as_json:
            damaged = VerifyReport(store=url, problems=(exc.message,), checks=(), recounted=False)
            echo_json({"backend": name, "url": url, **damaged.as_dict()})
        raise Failure(exc.message, ExitCode.VERIFICATION) from exc
    again = operator_command(
        "verify --repair", settings.resolved_url, backend.selecting_options(settings.backend_options)
    )
    if as_json:
        echo_json({"backend": name, "url": url, **report.as_dict()})
    else:
        fixed = "rewritten" if report.repaired else "wrong"
        totals = (
            f"{report.keys} keys, {report.bytes} bytes in {report.namespaces} components"
            if report.recounted
            else "damage stopped the recount (totals unknown)"
        )
        info(f"verified the {name} store at {url}: {totals}; checked {', '.join(report.checks)}")
        if report.mismatches:
            rows = [
                [m.namespace, m.stored.keys, m.actual.keys, m.stored.bytes, m.actual.bytes] for m in report.mismatches
            ]
            columns = ["component", "counted keys", "real keys", "counted bytes", "real bytes"]
            print_table(f"usage counters {fixed}", columns, rows, right=frozenset({1, 2, 3, 4}))
        if report.bad_keys:
            rows = [[b.namespace, b.key.hex(), b.size, b.problem] for b in report.bad_keys]
            title = "keys breaking the key rules " + ("(removed)" if report.repaired else "(unreachable)")
            print_table(title, ["component", "key (hex)", "bytes", "problem"], rows, right=frozenset({2}))
        if report.bad_rows:
            rows = [[r.namespace, r.key.hex(), r.problem, r.fix] for r in report.bad_rows]
            title = "rows with a bad version or expiry " + ("(fixed)" if report.repaired else "(what --repair does)")
            print_table(title, ["component", "key (hex)", "problem", "fix"], rows)
    if report.ok:
        if report.mismatches:
            info(f"rewrote {len(report.mismatches)} usage counter(s) from the data")
        if report.bad_keys:
            info(f"removed {len(report.bad_keys)} key(s) breaking the key rules")
        if report.bad_rows:
            info(f"fixed {len(report.bad_rows)} row(s) with a bad version or expiry")
        return
    problems = list(report.problems)
    if report.mismatches and not report.repaired:
        problems.append(
            f"{len(report.mismatches)} usage counter(s) disagree with the data; rewrite them with `{again}`"
        )
    if report.bad_keys and not report.repaired:
        problems.append(
            f"{len(report.bad_keys)} stored key(s) break the key rules (no API call can read or delete them), "
            f"e.g. {report.bad_keys[0].describe()}; remove them with `{again}`"
        )
    if report.bad_rows and not report.repaired:
        problems.append(
            f"{len(report.bad_rows)} row(s) have a version or expiry out of range, "
            f"e.g. {report.bad_rows[0].describe()}; fix them with `{again}`"
        )
    raise Failure("; ".join(problems), ExitCode.VERIFICATION)


# -- repair ------------------------------------------------------------------


@click.command()
@store_options
@json_option
def repair(store: StoreSpec, as_json: bool) -> None:
    """Repair a damaged store and recount its usage counters (backends with the repair capability, e.g. LevelDB).

    Stop every process using the store first.
    """
    settings = store.settings()
    registry = PluginRegistry.load(blocked=settings.blocked_plugins)
    backend_cls = registry.backend_for_url(settings.resolved_url)
    if not backend_cls.capabilities.repair:
        raise Failure(
            f"backend {backend_cls.name!r} ({redact_url(settings.resolved_url)}) cannot repair: only backends "
            "declaring the repair capability can (e.g. leveldb:// ); use the database's own tools",
            ExitCode.USAGE,
        )
    # A classmethod: a store too damaged to open can still be repaired.
    report = backend_cls.repair_url(settings.resolved_url, backend_cls.parse_options(settings.backend_options))
    if as_json:
        echo_json({"backend": backend_cls.name, "url": redact_url(settings.resolved_url), "report": report})
    else:
        info(f"repaired the {backend_cls.name} store at {redact_url(settings.resolved_url)}")
        if isinstance(report, dict):
            warning = report.get("warning")
            rows = [[key, value] for key, value in report.items() if key != "warning"]
            print_table(None, ["result", "value"], rows)
            if warning:
                info(f"airssys-storage: warning: {warning}")
