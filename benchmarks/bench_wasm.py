"""Cost of one storage call made by a WebAssembly guest, against a direct Python call, in one run.

Three contenders do the same storage calls on the same ComponentStorage:

- ``direct``: Python calls ``storage.has/get/set`` in a loop;
- ``guest``: a component (``contrib/airssys-storage-wasmtime/tests/fixtures/bench.wat``)
  calls ``storage-has/get/set`` in a loop inside the guest, served by
  airssys-storage-wasmtime (typed C callbacks, the list<u8> workaround);
- ``stock``: the same guest served through wasmtime-py 50's own
  ``LinkerInstance.add_func`` with its own value conversion (the workarounds
  switched off while it runs), which is what a naive host gets.

Per-call cost is (time of an export call doing n storage calls - time of the
same call doing none) / n, so entering the guest is not counted. Consecutive
sets write different bytes (the guest flips the value's first byte on every
other call) and the direct contender writes the same sequence of values. Rounds are
interleaved and the table shows medians (and the guest's best round): the
machine is shared and noisy.
The targets are issue 12's: <= 10 µs per small call, <= 2 ms per MiB set or get.

A second table gives the host's memory growth for one 1 MiB call (peak RSS
after the call minus before it, each in a fresh process), and for a hostile
``storage-get-many`` of 40 x 1 MiB, which the host refuses (``max-call-bytes``)
before converting the response.

    python benchmarks/bench_wasm.py [--rounds 5] [--url memory://] [--no-stock] [--no-memory]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from airssys_storage_wasmtime import Host, _compat
from airssys_storage_wasmtime._interfaces import STORAGE

from airssys_storage import Access, ComponentStorage, Manifest, StorageManager, StorageSettings

FIXTURES = Path(__file__).resolve().parents[1] / "contrib/airssys-storage-wasmtime/tests/fixtures"
GUEST = FIXTURES / "bench.wat"
ECHO = FIXTURES / "echo.wat"
KiB = 1024
MiB = 1024 * KiB
SMALL, LARGE, HUGE = 8, 64 * KiB, MiB
#: workload -> (storage method, value size, calls per round for direct/guest, calls per round for stock)
WORKLOADS = {
    "has (8 B value)": ("has", SMALL, 4000, 400),
    "get 8 B": ("get", SMALL, 4000, 400),
    "set 8 B": ("set", SMALL, 4000, 400),
    "get 64 KiB": ("get", LARGE, 60, 2),
    "set 64 KiB": ("set", LARGE, 60, 2),
    "get 1 MiB": ("get", HUGE, 4, 1),
    "set 1 MiB": ("set", HUGE, 4, 1),
}
TARGETS = {SMALL: 10e-6, LARGE: 2e-3 * LARGE / MiB, HUGE: 2e-3}


@contextlib.contextmanager
def stock_wasmtime() -> Iterator[None]:
    """wasmtime-py's own conversion, without this package's workarounds, for the duration."""
    from wasmtime.component import _types

    patched = {
        (_types.VariantLikeType, "_tagged"): _compat.ORIGINALS["VariantLikeType._tagged"],
        (_types.ListType, "convert_to_c"): _compat.ORIGINALS["ListType.convert_to_c"],
        (_types.ListType, "convert_from_c"): _compat.ORIGINALS["ListType.convert_from_c"],
    }
    saved = {target: getattr(*target) for target in patched}
    for (owner, name), original in patched.items():
        setattr(owner, name, original)
    try:
        yield
    finally:
        for (owner, name), current in saved.items():
            setattr(owner, name, current)


class StockInstance:
    """The bench guest with its imports served through wasmtime-py's ``add_func`` (reflective conversion)."""

    def __init__(self, host: Host, guest: Any, storage: ComponentStorage) -> None:
        from wasmtime import Store
        from wasmtime.component import Linker

        linker = Linker(host.engine)
        with linker.root() as root, root.add_instance(STORAGE) as instance:
            # Stock result conversion is untagged here: ok values are returned as they are.
            instance.add_func("storage-get", lambda _store, key: storage.get(key))
            # set returns the new version; storage-set's ok case has no payload.
            instance.add_func("storage-set", lambda _store, key, value: storage.set(key, value) and None)
            instance.add_func("storage-has", lambda _store, key: storage.has(key))
        self._linker = linker
        self._store = Store(host.engine)
        self._store.set_epoch_deadline(1 << 62)  # the host's engine interrupts at epoch deadlines: none here
        with stock_wasmtime():
            self._instance = linker.instantiate(self._store, guest.component)

    def call(self, export: str, *args: Any) -> Any:
        with stock_wasmtime():
            func = self._instance.get_func(self._store, export)
            assert func is not None, export
            result = func(self._store, *args)
            func.post_return(self._store)
        return result


def guest_workload(instance: Any, method: str, value: bytes, calls: int) -> Callable[[], float]:
    """Seconds per storage call made by the guest, its own entry cost subtracted."""
    args = ("k", value) if method == "set" else ("k",)

    def run() -> float:
        start = time.perf_counter()
        done = instance.call(f"bench-{method}", calls, *args)
        middle = time.perf_counter()
        instance.call(f"bench-{method}", 0, *args)
        end = time.perf_counter()
        instance.call("reset")
        assert done == calls, f"{method}: only {done} of {calls} calls returned ok"
        return ((middle - start) - (end - middle)) / calls

    return run


def set_sequence(value: bytes, calls: int) -> list[bytes]:
    """The values the bench guest's ``bench-set`` writes, in order: the first byte flipped on every other call."""
    if not value:
        return [value] * calls
    flipped = bytes([value[0] ^ 1]) + value[1:]
    return [flipped if (calls - i - 1) & 1 else value for i in range(calls)]


def direct_workload(storage: ComponentStorage, method: str, value: bytes, calls: int) -> Callable[[], float]:
    operation = getattr(storage, method)
    if method == "set":
        sequence = set_sequence(value, calls)

        def run_set() -> float:
            start = time.perf_counter()
            for each in sequence:
                operation("k", each)
            return (time.perf_counter() - start) / calls

        return run_set

    def run() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            operation("k")
        return (time.perf_counter() - start) / calls

    return run


def _settings(url: str) -> StorageSettings:
    return StorageSettings(url=url, max_value_bytes=2 * MiB)


def peak_growth(contender: str, method: str, size: int, url: str) -> int:
    """Bytes the peak RSS of this process grew by during one guest call (run in a child process)."""
    host = Host(cache=False)
    guest = host.load(GUEST if method != "get-many" else ECHO)
    with StorageManager.from_settings(_settings(url)) as manager:
        storage = manager.component(Manifest(id="bench-wasm", access=Access.READ_WRITE, max_size="100MB"))
        value = bytes(size)
        storage.set("k", value)
        stock = contender == "stock"
        instance: Any = StockInstance(host, guest, storage) if stock else host.instantiate(guest, storage)
        if method == "get-many":
            call = lambda: instance.call("get-many", ["k"] * 40)  # noqa: E731
        else:
            args = ("k", value) if method == "set" else ("k",)
            instance.call(f"bench-{method}", 0, *args)  # warm: the export's own arguments
            instance.call("reset")
            call = lambda: instance.call(f"bench-{method}", 1, *args)  # noqa: E731
        before = _reset_peak_rss()
        try:
            call()
        except Exception as exc:  # e.g. a trap: report it, the table shows the growth until then
            print(f"{contender} {method}: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return _peak_rss() - before


def _reset_peak_rss() -> int:
    """Reset this process's peak RSS to the current RSS (Linux: /proc/self/clear_refs) and return it, in bytes."""
    with open("/proc/self/clear_refs", "w") as stream:
        stream.write("5")
    return _peak_rss()


def _peak_rss() -> int:
    with open("/proc/self/status") as stream:
        for line in stream:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


MEMORY_WORKLOADS = {
    "get 1 MiB": ("get", HUGE),
    "set 1 MiB": ("set", HUGE),
    "get-many 40 x 1 MiB": ("get-many", HUGE),
}


def memory_table(url: str, stock: bool) -> None:
    contenders = ["guest"] + (["stock"] if stock else [])
    print(f"\nHost peak memory growth during one call ({url}; fresh process each)")
    header = f"{'call':<22}" + "".join(f"{name:>14}" for name in contenders) + f"{'payload':>12}"
    print(header)
    print("-" * len(header))
    notes: list[str] = []
    for workload, (method, size) in MEMORY_WORKLOADS.items():
        line = f"{workload:<22}"
        for contender in contenders:
            if method == "get-many" and contender == "stock":
                line += f"{'-':>14}"  # the stock bench instance serves only get/set/has
                continue
            child = [sys.executable, __file__, "--child", json.dumps([contender, method, size, url])]
            finished = subprocess.run(child, capture_output=True, text=True, check=True)
            line += f"{int(finished.stdout) / MiB:>11.1f} MB"
            notes.extend(finished.stderr.strip().splitlines())
        payload = size * (40 if method == "get-many" else 1)
        print(line + f"{payload / MiB:>9.0f} MiB")
    for note in notes:
        print(f"  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--url", default="memory://", help="backend URL (default memory://: the host's own cost)")
    parser.add_argument("--no-stock", action="store_true", help="skip stock wasmtime-py (slow: ~1 s per MiB)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory growth table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        print(peak_growth(*json.loads(options.child)))
        return

    host = Host(cache=False)
    guest = host.load(GUEST)
    with StorageManager.from_settings(_settings(options.url)) as manager:
        storage = manager.component(Manifest(id="bench-wasm", access=Access.READ_WRITE, max_size="100MB"))
        ours = host.instantiate(guest, storage)
        stock = None if options.no_stock else StockInstance(host, guest, storage)
        rows = []
        for workload, (method, size, calls, stock_calls) in WORKLOADS.items():
            value = bytes(i % 251 for i in range(size))
            storage.set("k", value)
            contenders = {
                "direct": direct_workload(storage, method, value, calls),
                "guest": guest_workload(ours, method, value, calls),
            }
            if stock is not None:
                contenders["stock"] = guest_workload(stock, method, value, stock_calls)
            samples: dict[str, list[float]] = {name: [] for name in contenders}
            for run in contenders.values():  # warm-up
                run()
            for _ in range(options.rounds):
                for name, run in contenders.items():
                    samples[name].append(run())
            result = {name: statistics.median(values) for name, values in samples.items()}
            result["guest best"] = min(samples["guest"])
            rows.append((workload, size, result))
        ours.close()

    print(f"\nStorage calls from a WebAssembly guest ({options.url}, median of {options.rounds} rounds)")
    names = ["direct", "guest", "guest best"] + ([] if options.no_stock else ["stock"])
    header = f"{'call':<18}" + "".join(f"{name:>14}" for name in names) + f"{'guest-direct':>15}{'target':>10}{'':>6}"
    if not options.no_stock:
        header += f"{'stock/guest':>13}"
    print(header)
    print("-" * len(header))
    for workload, size, result in rows:
        target = TARGETS[size]
        line = f"{workload:<18}" + "".join(f"{_duration(result[name]):>14}" for name in names)
        line += f"{_duration(result['guest'] - result['direct']):>15}{_duration(target):>10}"
        line += f"{'ok' if result['guest'] <= target else 'MISS':>6}"
        if not options.no_stock:
            line += f"{result['stock'] / result['guest']:>12.1f}x"
        print(line)
    if not options.no_memory:
        memory_table(options.url, not options.no_stock)


def _duration(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f} µs"


if __name__ == "__main__":
    main()
