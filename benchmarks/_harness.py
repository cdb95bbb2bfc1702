"""Side-by-side timing: interleaved rounds, median per-op time, printed as ratios.

Benchmarks print ratios measured in one run; they never assert timings (the
machine is shared and noisy).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Workload = Callable[[], int]  # runs a batch of operations, returns how many


@dataclass
class Side:
    """What one contender (ours, or an engine's raw client) can do; each workload is built from these.

    Keys are ``str``, or ``bytes`` when *bytes_keys* is set (raw clients handed
    pre-encoded keys, as a caller of the raw library would hold them); the
    benchmark encodes them outside the timing.
    """

    get: Callable[[list[Any]], None]  # read every key
    set: Callable[[list[Any], bytes], None]  # one write (one commit) per key, all of the same value
    batch: Callable[[list[Any], list[bytes]], None] | None = None  # one atomic batch of these pairs
    keys: Callable[[Any], list[Any]] | None = None  # the keys under a prefix
    increment: Callable[[list[Any]], None] | None = None  # add one to every counter
    has: Callable[[list[Any]], None] | None = None  # ask for every key
    bytes_keys: bool = False


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with *prefix* (its last byte plus one; *prefix* not all 0xff)."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def measure(
    contenders: dict[str, Workload],
    rounds: int = 9,
    clock: Callable[[], float] = time.perf_counter,
    samples: dict[str, list[float]] | None = None,
) -> dict[str, float]:
    """Median seconds per operation for each contender, rounds interleaved.

    *clock*: elapsed time by default; ``time.process_time`` (this process's
    CPU time) is steadier on a loaded machine for single-threaded work.
    *samples*, when given, receives every round's seconds per operation of each
    contender (for per-round ratios, see :func:`median_round_ratio`).
    """
    if samples is None:
        samples = {}
    samples.update({name: [] for name in contenders})
    for run in contenders.values():  # warm-up
        run()
    for _ in range(rounds):
        for name, run in contenders.items():
            start = clock()
            ops = run()
            samples[name].append((clock() - start) / ops)
    return {name: statistics.median(values) for name, values in samples.items()}


def median_round_ratio(samples: dict[str, list[float]], ours: str, baseline: str) -> float:
    """Median over rounds of ours/baseline in operations per second, each round's two runs taken back to back.

    Steadier than the ratio of the medians on a loaded machine: a slow spell
    that hits both runs of a round cancels out.
    """
    return statistics.median(b / o for o, b in zip(samples[ours], samples[baseline], strict=True))


def print_table(title: str, rows: Sequence[tuple[str, dict[str, float]]], ours: str, baselines: Sequence[str]) -> None:
    """One row per workload: µs/op of each contender, then ours/baseline in ops/s (higher is better)."""
    names = [ours, *baselines]
    print(f"\n{title}")
    header = f"{'workload':<28}" + "".join(f"{name + ' µs/op':>22}" for name in names)
    header += "".join(f"{'ours/' + name:>16}" for name in baselines)
    print(header)
    print("-" * len(header))
    for workload, result in rows:
        line = f"{workload:<28}" + "".join(f"{result[name] * 1e6:>22.2f}" for name in names)
        line += "".join(f"{format_ratio(result[name] / result[ours]):>15}x" for name in baselines)
        print(line)


def format_ratio(value: float) -> str:
    """Two decimals, or two significant digits below 0.1 (so a 1000x slowdown does not print as 0.00)."""
    return f"{value:.2f}" if value >= 0.1 or value != value else f"{value:.2g}"
