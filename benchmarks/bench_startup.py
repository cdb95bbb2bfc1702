"""Start-up time: ``import airssys_storage`` and a one-key CLI read, against ``python -c pass``, interleaved.

Each round runs every command once in a fresh interpreter, in turn, so that
machine noise hits them alike; the table shows the median wall time of each
over the rounds, in milliseconds, and its excess over ``python -c pass``
(the interpreter's own start), and the median CPU time (user + system) the
command used, which a busy machine disturbs less than the wall time. Targets (issue 9): import <= 80 ms, a one-key
CLI read on SQLite (``airssys-storage get``, the console script) <= 150 ms.

Children may write bytecode caches (``PYTHONDONTWRITEBYTECODE`` is dropped
for them) and one untimed round runs first: an installed package has its
``.pyc`` files, and recompiling the sources on every start would measure
the compiler, not the start. The header says which interpreter and whether
the package is an editable install (its import hook costs a few ms).
``--python LABEL=PATH`` (repeatable) measures other installations in the
same rounds, e.g. before and after a change, editable and regular.

    python benchmarks/bench_startup.py [--rounds R] [--python LABEL=PATH ...]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS_MS = {"import airssys_storage": 80.0, "airssys-storage get (SQLite)": 150.0}


def _script(python: str) -> list[str]:
    """The console script next to *python* (else ``python -m``)."""
    beside = Path(python).parent / "airssys-storage"
    return [str(beside)] if beside.exists() else [python, "-m", "airssys_storage.cli"]


def _describe_install(python: str, env: dict[str, str]) -> str:
    code = (
        "import sys, airssys_storage\n"
        "editable = any(m.startswith('__editable__') for m in sys.modules)\n"
        "print(airssys_storage.__file__, '(editable install)' if editable else '(regular install)')\n"
    )
    done = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _commands(python: str, cli: list[str]) -> dict[str, list[str]]:
    return {
        "python -c pass": [python, "-c", "pass"],
        "import airssys_storage": [python, "-c", "import airssys_storage"],
        "airssys-storage get (SQLite)": [*cli, "get", "-c", "app", "key"],
        "import + StorageSettings()": [python, "-c", "from airssys_storage import StorageSettings; StorageSettings()"],
        "import pydantic_settings (for scale)": [python, "-c", "import pydantic_settings"],
    }


def _children_cpu() -> float:
    """User + system CPU seconds of the finished children: steadier than wall time on a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--python",
        action="append",
        metavar="LABEL=PATH",
        help="Measure this interpreter's installation too, interleaved (e.g. before=/venvs/main/bin/python); "
        "repeatable. Default: this interpreter only.",
    )
    args = parser.parse_args()
    pythons = dict(item.split("=", 1) for item in args.python) if args.python else {"": sys.executable}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "AIRSSYS_STORAGE_URL": f"sqlite:///{tmp}/store.sqlite3"}
        env.pop("AIRSSYS_STORAGE_CONFIG_FILE", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        commands: dict[tuple[str, str], list[str]] = {}
        for label, python in pythons.items():
            cli = _script(python)
            subprocess.run([*cli, "set", "-c", "app", "key", "value"], env=env, check=True, cwd=tmp)
            read = subprocess.run([*cli, "get", "-c", "app", "key"], env=env, cwd=tmp, capture_output=True, check=True)
            assert read.stdout == b"value", read.stdout
            print(f"{label or 'this'}: {_describe_install(python, env)}; console script {' '.join(cli)}")
            commands.update({(label, name): command for name, command in _commands(python, cli).items()})
        times: dict[tuple[str, str], list[float]] = {key: [] for key in commands}
        cpu: dict[tuple[str, str], list[float]] = {key: [] for key in commands}
        for round_ in range(args.rounds + 1):
            for key, command in commands.items():
                start, used = time.perf_counter(), _children_cpu()
                subprocess.run(command, env=env, cwd=tmp, capture_output=True, check=True)
                if round_:  # round 0 warms the caches (bytecode, file system) untimed
                    times[key].append((time.perf_counter() - start) * 1000)
                    cpu[key].append((_children_cpu() - used) * 1000)
    print(f"python {sys.version.split()[0]}; {args.rounds} rounds, every command once per round, interleaved")
    print(f"{'command':48} {'median ms':>10} {'over python -c pass':>20} {'target ms':>10} {'cpu ms':>8}")
    for label in pythons:
        base = statistics.median(times[label, "python -c pass"])
        for (row_label, name), samples in times.items():
            if row_label != label:
                continue
            median = statistics.median(samples)
            target = TARGETS_MS.get(name)
            shown = f"{target:10.0f}" if target is not None else f"{'':10}"
            title = f"{label}: {name}" if label else name
            print(f"{title:48} {median:10.1f} {median - base:20.1f} {shown} {statistics.median(cpu[label, name]):8.1f}")


if __name__ == "__main__":
    main()
