"""Cost of one storage call made by a WebAssembly guest, against a direct Python call, in one run.

Three contenders do the same storage calls on the same ComponentStorage:

- ``direct``: Python calls ``storage.has/get/set`` in a loop;
- ``guest``: a component (``contrib/airssys-storage-wasmtime/tests/fixtures/bench.wat``)
  calls ``storage-has/get/set`` in a loop inside the guest, served by
  airssys-storage-wasmtime (typed C callbacks, the list<u8> workaround);
- ``stock``: the same guest served through wasmtime-py 50's own
  ``LinkerInstance.add_func`` with its own value conversion (the workarounds
  switched off while it runs), which is what a naive host gets.

The small calls are also made through the two standard interfaces the host
serves, by WAT guests of the same shape (``bench_keyvalue.wat``,
``bench_spin.wat``: a bucket or store opened once, then n calls in a loop), so
the numbers are the host's, without a guest language runtime:

- ``wasi:kv``: ``wasi:keyvalue/store@0.2.0-draft2`` (bucket.get/set/exists);
- ``spin``: ``fermyon:spin/key-value@2.0.0`` (store.get/set/exists).

Per-call cost is (time of an export call doing n storage calls - time of the
same call doing none) / n, so entering the guest is not counted. Each is
measured as wall-clock time and as the CPU time of the calling thread (the
guest and the host's callbacks run on it): on a loaded machine the wall clock
includes waiting for a core, the CPU time does not. Consecutive
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
#: the standard interfaces' bench guests: contender -> (guest, what its "open" export opens)
STANDARD_GUESTS = {
    "wasi:kv": (FIXTURES / "bench_keyvalue.wat", "default"),
    "spin": (FIXTURES / "bench_spin.wat", "default"),
}
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


#: A workload's measurement: seconds per call, (wall clock, CPU time of the thread).
Sample = tuple[float, float]


def _now() -> Sample:
    return time.perf_counter(), time.thread_time()


def guest_workload(instance: Any, method: str, value: bytes, calls: int) -> Callable[[], Sample]:
    """Seconds per storage call made by the guest, its own entry cost subtracted."""
    args = ("k", value) if method == "set" else ("k",)

    def run() -> Sample:
        start = _now()
        done = instance.call(f"bench-{method}", calls, *args)
        middle = _now()
        instance.call(f"bench-{method}", 0, *args)
        end = _now()
        instance.call("reset")
        assert done == calls, f"{method}: only {done} of {calls} calls returned ok"
        wall, cpu = (((middle[i] - start[i]) - (end[i] - middle[i])) / calls for i in (0, 1))
        return wall, cpu

    return run


def set_sequence(value: bytes, calls: int) -> list[bytes]:
    """The values the bench guest's ``bench-set`` writes, in order: the first byte flipped on every other call."""
    if not value:
        return [value] * calls
    flipped = bytes([value[0] ^ 1]) + value[1:]
    return [flipped if (calls - i - 1) & 1 else value for i in range(calls)]


def direct_workload(storage: ComponentStorage, method: str, value: bytes, calls: int) -> Callable[[], Sample]:
    operation = getattr(storage, method)
    if method == "set":
        sequence = set_sequence(value, calls)

        def run_set() -> Sample:
            start = _now()
            for each in sequence:
                operation("k", each)
            end = _now()
            return (end[0] - start[0]) / calls, (end[1] - start[1]) / calls

        return run_set

    def run() -> Sample:
        start = _now()
        for _ in range(calls):
            operation("k")
        end = _now()
        return (end[0] - start[0]) / calls, (end[1] - start[1]) / calls

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
        standard = {}
        for name, (path, bucket) in STANDARD_GUESTS.items():
            standard[name] = host.instantiate(host.load(path), storage)
            assert standard[name].call("open", bucket) == 0, f"{name}: open({bucket!r}) failed"
        stock = None if options.no_stock else StockInstance(host, guest, storage)
        rows = []
        for workload, (method, size, calls, stock_calls) in WORKLOADS.items():
            value = bytes(i % 251 for i in range(size))
            storage.set("k", value)
            contenders = {
                "direct": direct_workload(storage, method, value, calls),
                "guest": guest_workload(ours, method, value, calls),
            }
            if size == SMALL:  # bytes cost the same through every interface: the small calls tell them apart
                for name, instance in standard.items():
                    contenders[name] = guest_workload(instance, method, value, calls)
            if stock is not None:
                contenders["stock"] = guest_workload(stock, method, value, stock_calls)
            samples: dict[str, list[Sample]] = {name: [] for name in contenders}
            for run in contenders.values():  # warm-up
                run()
            for _ in range(options.rounds):
                for name, run in contenders.items():
                    samples[name].append(run())
            result = {name: statistics.median(wall for wall, _ in values) for name, values in samples.items()}
            cpu = {name: statistics.median(time for _, time in values) for name, values in samples.items()}
            result["guest best"] = min(wall for wall, _ in samples["guest"])
            rows.append((workload, size, result, cpu))
        for instance in (ours, *standard.values()):
            instance.close()

    print(f"\nStorage calls from a WebAssembly guest ({options.url}, median of {options.rounds} rounds, wall clock)")
    names = ["direct", "guest", "guest best"] + ([] if options.no_stock else ["stock"])
    header = f"{'call':<18}" + "".join(f"{name:>14}" for name in names) + f"{'guest-direct':>15}{'target':>10}{'':>6}"
    header += f"{'guest CPU':>12}{'':>6}"
    if not options.no_stock:
        header += f"{'stock/guest':>13}"
    print(header)
    print("-" * len(header))
    for workload, size, result, cpu in rows:
        target = TARGETS[size]
        line = f"{workload:<18}" + "".join(f"{_duration(result[name]):>14}" for name in names)
        line += f"{_duration(result['guest'] - result['direct']):>15}{_duration(target):>10}"
        line += f"{'ok' if result['guest'] <= target else 'MISS':>6}"
        line += f"{_duration(cpu['guest']):>12}{'ok' if cpu['guest'] <= target else 'MISS':>6}"
        if not options.no_stock:
            line += f"{result['stock'] / result['guest']:>12.1f}x"
        print(line)

    target = _duration(TARGETS[SMALL])
    print(f"\nOne small call through each interface (µs per call, median wall clock / CPU time; target {target})")
    interfaces = {"direct": "direct", "guest": "airssys:wasm", **{name: name for name in STANDARD_GUESTS}}
    if not options.no_stock:
        interfaces["stock"] = "stock"
    header = f"{'call':<18}" + "".join(f"{label:>17}" for label in interfaces.values())
    print(header)
    print("-" * len(header))
    for workload, size, result, cpu in rows:
        if size == SMALL:
            cells = (f"{result[name] * 1e6:.1f} / {cpu[name] * 1e6:.1f}" for name in interfaces)
            print(f"{workload:<18}" + "".join(f"{cell:>17}" for cell in cells))
    if not options.no_memory:
        memory_table(options.url, not options.no_stock)


def _duration(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f} µs"


if __name__ == "__main__":
    main()
