"""MariaDB writes against raw PyMySQL: wall time, and the CPU time each side costs the client and the server.

Wall-clock ratios on a shared, loaded machine move by ±0.3 between runs. The
CPU time a write costs is steadier: this process's (``time.process_time``)
plus that of the server thread serving each side's connection (one thread per
connection in MariaDB's default ``thread_handling``; its TID from
``information_schema.PROCESSLIST``, its CPU time from
``/proc/<mariadbd pid>/task/<TID>/schedstat``). Run it on the machine of the
server (it reads the server's ``/proc``; without it only wall and client times
are printed).

Workloads (bench_sql.py's, each run writing other bytes than the one before):
``set_many`` of 100 x 4 KiB (1,000 keys a run) and 100 x 64 KiB (200 keys a
run), and single ``set`` of 64/80-byte values (300 keys a run). Ours is
ComponentStorage with its quota; raw is ``bench_sql.open_raw_mariadb``.
Rounds interleave the sides; ratios are the median and range over rounds of
raw/ours in time per key (>= 1.0: ours at least as fast).

    cd /tmp && python /path/to/benchmarks/bench_mariadb_cpu.py [--rounds 9] [--mariadb URL] [--only 4k,64k,set]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

from _harness import Side
from bench_sql import BATCH, Values, keyset, open_ours, open_raw_mariadb, ours


def _server_pid() -> int | None:
    """The pid of the local mariadbd, or ``None`` when there is none to read."""
    try:
        found = subprocess.run(["pgrep", "-x", "mariadbd"], capture_output=True, text=True, check=False).stdout.split()
    except OSError:
        return None
    return int(found[0]) if found and os.path.isdir(f"/proc/{found[0]}/task") else None


def _thread_of(conn: Any) -> int:
    cursor = conn.cursor()
    cursor.execute("SELECT TID FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()")
    return int(cursor.fetchone()[0])


def _server_cpu_ns(pid: int | None, threads: list[int]) -> int:
    """CPU nanoseconds the server threads *threads* have run so far (0 without the server's /proc)."""
    total = 0
    for tid in threads if pid is not None else ():
        with open(f"/proc/{pid}/task/{tid}/schedstat") as stat:
            total += int(stat.read().split()[0])
    return total


def _workloads(side: Side, only: set[str]) -> dict[str, Callable[[], int]]:
    runs: dict[str, Callable[[], int]] = {}

    def batches(keys: list[str], values: Values) -> Callable[[], int]:
        def run() -> int:
            assert side.batch is not None
            new = values.next_many(len(keys))
            for start in range(0, len(keys), BATCH):
                side.batch(keys[start : start + BATCH], new[start : start + BATCH])
            return len(keys)

        return run

    def point(keys: list[str], values: Values) -> Callable[[], int]:
        def run() -> int:
            side.set(keys, values.next())
            return len(keys)

        return run

    if "4k" in only:
        runs["set_many 100 x 4 KiB"] = batches(keyset(1000, "cpu4k_"), Values((4096,), 4096))
    if "64k" in only:
        runs["set_many 100 x 64 KiB"] = batches(keyset(200, "cpu64k_"), Values((65536,), 65536))
    if "set" in only:
        runs["set (size changes)"] = point(keyset(300, "cpuset_"), Values((64, 80), 1))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--mariadb", default="mysql+pymysql://root@127.0.0.1:3306/test")
    parser.add_argument("--only", default="4k,64k,set", help="comma-separated: 4k, 64k, set")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    prefix = f"cpubench{os.getpid()}_"
    manager, store = open_ours(args.mariadb, {"table_prefix": prefix})
    raw, raw_side, drop = open_raw_mariadb(args.mariadb, prefix)
    pid = _server_pid()
    try:
        sides = {"ours": _workloads(ours(store), only), "raw": _workloads(raw_side, only)}
        print(f"MariaDB vs raw PyMySQL, {args.rounds} rounds; µs per key (server CPU: {'read' if pid else 'not read'})")
        for name in sides["ours"]:
            runs = {side: workloads[name] for side, workloads in sides.items()}
            for run in runs.values():
                run()  # warm-up; opens the connections whose threads are measured
            threads = {
                "ours": [_thread_of(item.connection) for item in store._backend._idle],
                "raw": [_thread_of(raw)],
            }
            wall: dict[str, list[float]] = {side: [] for side in runs}
            client: dict[str, list[float]] = {side: [] for side in runs}
            server: dict[str, list[float]] = {side: [] for side in runs}
            for _ in range(args.rounds):
                for side, run in runs.items():
                    served, used, began = _server_cpu_ns(pid, threads[side]), time.process_time(), time.perf_counter()
                    keys = run()
                    wall[side].append((time.perf_counter() - began) / keys * 1e6)
                    client[side].append((time.process_time() - used) / keys * 1e6)
                    server[side].append((_server_cpu_ns(pid, threads[side]) - served) / keys / 1e3)
            ratios = sorted(r / o for r, o in zip(wall["raw"], wall["ours"], strict=True))
            median = statistics.median
            print(
                f"{name:22s} wall ours {median(wall['ours']):8.1f} raw {median(wall['raw']):8.1f} "
                f"raw/ours {median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f}) | CPU client+server "
                f"ours {median(client['ours']):.1f}+{median(server['ours']):.1f} "
                f"raw {median(client['raw']):.1f}+{median(server['raw']):.1f}"
            )
    finally:
        manager.close()
        drop()
        cursor = raw.cursor()
        for procedure in ("put", "delete", "incr"):  # the sql backend's hot-path procedures
            cursor.execute(f"DROP PROCEDURE IF EXISTS {prefix}{procedure}")
        raw.close()


if __name__ == "__main__":
    main()
