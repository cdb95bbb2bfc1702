"""Start-up time: ``import airssys_storage`` and a one-key CLI read, against ``python -c pass``, interleaved.

Each round runs every command once in a fresh interpreter, in turn, so that
machine noise hits them alike; the table shows the median wall time of each
over the rounds, in milliseconds, and its excess over ``python -c pass``
(the interpreter's own start). Targets (issue 9): import <= 80 ms, a one-key
CLI read on SQLite <= 150 ms.

    python benchmarks/bench_startup.py [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "AIRSSYS_STORAGE_URL": f"sqlite:///{tmp}/store.sqlite3"}
        env.pop("AIRSSYS_STORAGE_CONFIG_FILE", None)
        cli = [sys.executable, "-m", "airssys_storage.cli"]
        subprocess.run([*cli, "set", "-c", "app", "key", "value"], env=env, check=True, cwd=tmp)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "import airssys_storage": [sys.executable, "-c", "import airssys_storage"],
            "import + StorageSettings()": [
                sys.executable,
                "-c",
                "from airssys_storage import StorageSettings; StorageSettings()",
            ],
            "airssys-storage get (SQLite)": [*cli, "get", "-c", "app", "key"],
            "import sqlalchemy (for scale)": [sys.executable, "-c", "import sqlalchemy.engine"],
            "import pydantic_settings (for scale)": [sys.executable, "-c", "import pydantic_settings"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, command in commands.items():
                start = time.perf_counter()
                subprocess.run(command, env=env, check=True, cwd=tmp, stdout=subprocess.DEVNULL)
                times[name].append((time.perf_counter() - start) * 1000)
    base = statistics.median(times["python -c pass"])
    print(f"{'command':40} {'median ms':>10} {'over python -c pass':>20}")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:40} {median:10.1f} {median - base:20.1f}")


if __name__ == "__main__":
    main()
