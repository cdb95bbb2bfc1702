"""Side-by-side timing: interleaved rounds, median per-op time, printed as ratios.

Benchmarks print ratios measured in one run; they never assert timings (the
machine is shared and noisy).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

Workload = Callable[[], int]  # runs a batch of operations, returns how many


def measure(
    contenders: dict[str, Workload], rounds: int = 9, clock: Callable[[], float] = time.perf_counter
) -> dict[str, float]:
    """Median seconds per operation for each contender, rounds interleaved.

    *clock*: elapsed time by default; ``time.process_time`` (this process's
    CPU time) is steadier on a loaded machine for single-threaded work.
    """
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for run in contenders.values():  # warm-up
        run()
    for _ in range(rounds):
        for name, run in contenders.items():
            start = clock()
            ops = run()
            samples[name].append((clock() - start) / ops)
    return {name: statistics.median(values) for name, values in samples.items()}


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
        line += "".join(f"{_ratio(result[name] / result[ours]):>15}x" for name in baselines)
        print(line)


def _ratio(value: float) -> str:
    """Two decimals, or two significant digits below 0.1 (so a 1000x slowdown does not print as 0.00)."""
    return f"{value:.2f}" if value >= 0.1 or value != value else f"{value:.2g}"
