"""Draw the results of bench_backends.py and bench_scale.py (their ``--json`` files) as PNGs for the README.

    pip install -e '.[bench]'
    cd /tmp && python /path/to/benchmarks/bench_backends.py --json backends.json
    python /path/to/benchmarks/bench_scale.py --json scale.json
    python /path/to/benchmarks/plot.py --backends backends.json --scale scale.json --out /path/to/docs/benchmarks

Writes ``backends.png`` (per backend: µs per get, set and 100-key batch, ours beside the raw engine, with
ours/raw in operations per second over each pair; the raw bar is drawn at ours x that ratio, so the two
agree) and ``scale.png`` (µs per get and set against keys per component, log-log, and the 1,000-component
point). *--note* is added to each caption (e.g. the machine).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogFormatter

#: Log axes labelled 0.5, 3, 40, 2,000 rather than 5x10^-1 …
PLAIN = FuncFormatter(lambda value, _: f"{value:,g}")

#: The workloads of bench_backends.py drawn, and their axis labels.
DRAWN = {"get": "get (µs per get)", "set": "set (µs per set)", "100-key batch": "100-key batch (µs per batch)"}
LABELS = {
    "memory": "memory",
    "sqlite": "SQLite",
    "leveldb": "LevelDB",
    "rocksdb": "RocksDB",
    "lmdb": "LMDB",
    "postgresql": "PostgreSQL",
    "mariadb": "MariaDB",
    "redis": "Redis",
}
OURS, RAW = "#1f6fb4", "#b8b8b8"


def _caption(data: dict[str, Any], note: str) -> str:
    """The run's date, cores, Python and 1-minute load average before → after, then *note*."""
    before, after = data["load"]
    machine = (
        f"Run {data['started']} · {data['cores']} cores · Python {data['python']} · "
        f"1-minute load average {before:.1f} → {after:.1f}"
    )
    return f"{machine}. {note}".strip(" .") if note else machine


def _save(fig: Any, data: dict[str, Any], note: str, path: Path) -> Path:
    """Caption *fig* with the run's machine and *note*, write it to *path* (PNG) and close it."""
    for ax in fig.axes:
        if ax.get_yscale() == "log":
            ax.yaxis.set_major_formatter(PLAIN)
            ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))
    fig.text(0.5, 0.01, _caption(data, note), ha="center", fontsize=9, color="#333")
    fig.tight_layout(rect=(0, 0.04, 1, 0.93))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_backends(data: dict[str, Any], out: Path, note: str) -> Path:
    """Three panels (get, set, batch); in each, per backend a bar for ours and one for the raw engine."""
    engines = list(data["engines"])
    fig, axes = plt.subplots(1, len(DRAWN), figsize=(15, 5.6))
    width = 0.38
    for ax, (workload, label) in zip(axes, DRAWN.items(), strict=True):
        ours = [data["engines"][e]["workloads"][workload]["ours_us"] for e in engines]
        # The raw bar at ours x the paired ratio, so bar heights and the ratio above them agree; the paired
        # ratio (median over rounds of back-to-back runs) is steadier on a loaded machine than two medians.
        raw = [data["engines"][e]["workloads"][workload]["ratio"] * o for e, o in zip(engines, ours, strict=True)]
        xs = range(len(engines))
        bars = ax.bar([x - width / 2 for x in xs], ours, width, color=OURS, label="airssys-storage")
        ax.bar([x + width / 2 for x in xs], raw, width, color=RAW, label="raw engine client")
        ax.set_yscale("log")
        ax.set_title(label, fontsize=12)
        ax.set_ylabel("µs per operation (log scale, lower is faster)")
        ax.set_xticks(list(xs), [LABELS.get(e, e) for e in engines], rotation=30, ha="right")
        ax.grid(axis="y", which="major", alpha=0.3)
        for bar, engine, value, other in zip(bars, engines, ours, raw, strict=True):
            ratio = data["engines"][engine]["workloads"][workload]["ratio"]
            top = max(value, other)
            ax.annotate(
                f"{value:,.0f}" if value >= 10 else f"{value:.1f}",
                (bar.get_x() + bar.get_width() / 2, value),
                ha="center",
                va="bottom",
                fontsize=7,
            )
            ax.annotate(
                f"{ratio:.2f}x",
                (bar.get_x() + width, top * 1.9),
                ha="center",
                va="bottom",
                fontsize=8,
                color="#444",
            )
        low, high = ax.get_ylim()
        ax.set_ylim(low, high * 6)  # room for the ratios
    axes[0].legend(loc="upper left", fontsize=9)
    fig.suptitle(
        "airssys-storage vs each engine's raw client: median µs per operation; above each pair, ours/raw in\n"
        "operations per second (median over rounds of back-to-back runs; 1.00x = as fast, 0.50x = half as fast)",
        fontsize=12,
    )
    return _save(fig, data, note, out / "backends.png")


def plot_scale(data: dict[str, Any], out: Path, note: str) -> Path:
    """µs per get and per set against keys in the component (log-log), and the 1,000-component bars."""
    engines = list(data["engines"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    for ax, op in zip(axes[:2], ("get", "set"), strict=True):
        for engine in engines:
            curve = data["engines"][engine]["curve"]
            ax.plot(
                [p["keys"] for p in curve],
                [p[f"{op}_us"] for p in curve],
                marker="o",
                label=LABELS.get(engine, engine),
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("keys in the component")
        ax.set_ylabel(f"µs per {op} (log scale)")
        ax.set_title(f"{op} of a random key vs component size", fontsize=12)
        ax.grid(which="major", alpha=0.3)
    axes[0].legend(fontsize=9)
    ax = axes[2]
    width = 0.38
    xs = range(len(engines))
    gets = [data["engines"][e]["components"]["get_us"] for e in engines]
    sets = [data["engines"][e]["components"]["set_us"] for e in engines]
    for offset, values, label, color in ((-width / 2, gets, "get", OURS), (width / 2, sets, "set", "#e07b39")):
        bars = ax.bar([x + offset for x in xs], values, width, label=label, color=color)
        for bar, value in zip(bars, values, strict=True):
            text = f"{value:,.0f}" if value >= 10 else f"{value:.1f}"
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom", fontsize=7)
    first = next(iter(data["engines"].values()))["components"]
    ax.set_yscale("log")
    ax.set_ylabel("µs per operation (log scale)")
    ax.set_title(f"{first['components']:,} components x {first['keys_per_component']} keys", fontsize=12)
    ax.set_xticks(list(xs), [LABELS.get(e, e) for e in engines], rotation=30, ha="right")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=9)
    fig.suptitle("airssys-storage at scale: median µs per get and set (64-byte values, one commit per set)")
    return _save(fig, data, note, out / "scale.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", type=Path, help="bench_backends.py --json output")
    parser.add_argument("--scale", type=Path, help="bench_scale.py --json output")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"), help="directory of the PNGs")
    parser.add_argument("--note", default="", help="added to each caption (e.g. the machine)")
    args = parser.parse_args()
    if args.backends is None and args.scale is None:
        parser.error("give --backends and/or --scale")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.backends is not None:
        print(plot_backends(json.loads(args.backends.read_text()), args.out, args.note))
    if args.scale is not None:
        print(plot_scale(json.loads(args.scale.read_text()), args.out, args.note))


if __name__ == "__main__":
    main()
