"""``airssys-storage run``: the main job, through the core command line and the fallback."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import airssys_storage_wasmtime
import click
import pytest
from airssys_storage_wasmtime.cli import format_value, main
from click.testing import CliRunner, Result
from wasmtime.component import Record, Variant
from wasmtime_helpers import COUNTER, FIXTURES

MANIFEST = COUNTER / "component-manifest.toml"
COUNTER_WASM = COUNTER / "counter.wasm"


def core_cli() -> click.Command:
    cli = pytest.importorskip("airssys_storage.cli")
    return cli.main  # type: ignore[no-any-return]


def fallback_cli() -> click.Group:
    group = click.Group("airssys-storage")
    airssys_storage_wasmtime.register_commands(group)
    return group


def run(*args: str, url: str | None = "memory://", cli: click.Command | None = None) -> Result:
    env = {"AIRSSYS_STORAGE_URL": url} if url is not None else {}
    return CliRunner().invoke(cli or core_cli(), ["run", *args], env=env, catch_exceptions=True)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def one_line_error(result: Result, code: int, fragment: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("airssys-storage: error: ")
    assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# -- registration ------------------------------------------------------------------


def test_the_package_announces_itself_as_a_plugin() -> None:
    entry_points = importlib.metadata.entry_points(group="airssys_storage")
    assert entry_points["wasmtime"].value == "airssys_storage_wasmtime"


def test_register_commands_adds_run() -> None:
    assert set(fallback_cli().commands) == {"run"}


def test_the_core_command_line_offers_run() -> None:
    result = CliRunner().invoke(core_cli(), ["run", "--help"])
    assert result.exit_code == 0, result.output
    assert "GUEST" in result.output and "--manifest" in result.output and "--invoke" in result.output


# -- the main job --------------------------------------------------------------------


def test_the_counter_counts_across_runs_with_the_embedded_default(tmp_path: Path) -> None:
    pytest.importorskip("airssys_storage_sql", reason="the embedded default is the SQL plugin's SQLite")
    outputs = [run(str(COUNTER_WASM), "--manifest", str(MANIFEST), url=None) for _ in range(2)]
    assert [(r.exit_code, r.stdout) for r in outputs] == [(0, "1\n"), (0, "2\n")], outputs[-1].stderr


def test_the_count_survives_restarts_of_the_process(tmp_path: Path) -> None:
    pytest.importorskip("airssys_storage_sql")
    env = {**os.environ, "AIRSSYS_STORAGE_URL": f"sqlite:///{tmp_path / 'counter.db'}"}
    command = [sys.executable, "-m", "airssys_storage_wasmtime", "run", str(COUNTER_WASM), "-m", str(MANIFEST)]
    outputs = [subprocess.run(command, capture_output=True, text=True, env=env, timeout=120) for _ in range(2)]
    assert [(o.returncode, o.stdout, o.stderr) for o in outputs] == [(0, "1\n", ""), (0, "2\n", "")]


def test_component_text_runs_too() -> None:
    result = run(str(COUNTER / "counter.wat"), "-m", str(MANIFEST))
    assert (result.exit_code, result.stdout) == (0, "1\n"), result.stderr


def test_the_fallback_group_runs_the_same_command() -> None:
    result = run(str(COUNTER_WASM), "-m", str(MANIFEST), cli=fallback_cli())
    assert (result.exit_code, result.stdout) == (0, "1\n"), result.stderr


def test_a_cache_directory_others_can_write_is_not_used_and_says_how_to_fix_it(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    result = run(str(COUNTER_WASM), "-m", str(MANIFEST), "--cache-dir", str(shared))
    assert (result.exit_code, result.stdout) == (0, "1\n"), result.stderr
    assert result.stderr.startswith("airssys-storage: warning: not using the compile cache "), result.stderr
    assert f"chmod go-w {shared}" in result.stderr and result.stderr.count("\n") == 1
    assert not any(shared.rglob("*.cwasm"))


def test_arguments_are_converted_to_the_parameter_types() -> None:
    bench = str(FIXTURES / "bench.wat")
    result = run(bench, "-m", str(MANIFEST), "--invoke", "bench-set", "3", "key", "value")
    assert (result.exit_code, result.stdout) == (0, "3\n"), result.stderr
    trap = str(FIXTURES / "trap.wat")
    result = run(trap, "-m", str(MANIFEST), "--invoke", "echo-set", "k", "v")
    assert (result.exit_code, result.stdout) == (0, ""), result.stderr


def test_an_err_result_is_printed_on_stderr(tmp_path: Path) -> None:
    manifest = write(tmp_path / "m.toml", '[component]\nid = "counter"\n[permissions.storage]\naccess = "read-only"\n')
    one_line_error(run(str(COUNTER_WASM), "-m", str(manifest)), 1, "run returned an error: permission-denied")


# -- failures: one line, an exit status, no traceback --------------------------------


def test_no_such_guest_file() -> None:
    one_line_error(run("missing.wasm", "-m", str(MANIFEST)), 2, "no such guest file: 'missing.wasm'")


def test_not_a_component(tmp_path: Path) -> None:
    core = tmp_path / "core.wasm"
    core.write_bytes(b"\x00asm\x01\x00\x00\x00")
    one_line_error(run(str(core), "-m", str(MANIFEST)), 2, "is a core WebAssembly module, not a component")
    text = write(tmp_path / "notes.txt", "hello\nworld\n")
    one_line_error(run(str(text), "-m", str(MANIFEST)), 2, "is neither a WebAssembly component nor component text")


def test_missing_export() -> None:
    one_line_error(
        run(str(COUNTER_WASM), "-m", str(MANIFEST), "--invoke", "nope"),
        2,
        "guest 'counter.wasm' has no export 'nope' (its exports: run)",
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not toml [", "manifest is not valid TOML"),
        ('[component]\nid = "Bad Id"\n', "component.id 'Bad Id' is invalid"),
        ('[component]\nid = "c"\n[permissions.storage]\naccess = "root"\n', "access 'root' is invalid"),
    ],
)
def test_invalid_manifest(tmp_path: Path, text: str, fragment: str) -> None:
    manifest = write(tmp_path / "component-manifest.toml", text)
    one_line_error(run(str(COUNTER_WASM), "-m", str(manifest)), 3, fragment)


def test_missing_manifest() -> None:
    one_line_error(run(str(COUNTER_WASM), "-m", "nowhere.toml"), 3, "cannot read manifest 'nowhere.toml'")


def test_permission_denied_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # as root, chmod would not stop the read
    one_line_error(run(str(COUNTER_WASM), "-m", str(MANIFEST)), 2, "permission denied reading guest")


def test_storage_that_cannot_be_opened() -> None:
    result = run(str(COUNTER_WASM), "-m", str(MANIFEST), url="nosuchscheme://x")
    one_line_error(result, 3, "no installed backend serves URL scheme 'nosuchscheme'")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--invoke", "bench-has", "3"], "bench-has takes 2 argument(s) (n: u32, key: string), got 1"),
        (["--invoke", "bench-has", "three", "k"], "n must be an integer (u32), got 'three'"),
        (["--invoke", "bench-has", "-1", "k"], "n must be from 0 to 4294967295 (u32), got -1"),
    ],
)
def test_arguments_that_do_not_fit(args: list[str], fragment: str) -> None:
    one_line_error(run(str(FIXTURES / "bench.wat"), "-m", str(MANIFEST), *args), 2, fragment)


def test_a_trap_is_reported_with_the_guest_and_the_export() -> None:
    result = run(str(FIXTURES / "trap.wat"), "-m", str(MANIFEST), "--invoke", "trap")
    one_line_error(result, 70, "guest 'trap.wat' trapped in export 'trap': wasm trap: wasm `unreachable`")


def test_debug_shows_the_traceback() -> None:
    result = run("missing.wasm", "-m", str(MANIFEST), "--debug")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "InvalidGuest" in result.stderr
    fallback = run("missing.wasm", "-m", str(MANIFEST), "--debug", cli=fallback_cli())
    assert fallback.exit_code == 2
    assert "Traceback" in fallback.stderr and "InvalidGuest" in fallback.stderr


def test_python_m_fallback_errors_are_one_line() -> None:
    command = [sys.executable, "-m", "airssys_storage_wasmtime", "run", "missing.wasm", "-m", str(MANIFEST)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 2
    assert finished.stderr == "airssys-storage: error: no such guest file: 'missing.wasm'\n"


# -- printing results ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        (True, "true"),
        (42, "42"),
        ("text", "text"),
        (b"utf-8 \xc3\xa9", "utf-8 é"),
        (b"\xff\x00", "0xff00"),
        (Variant("quota-exceeded"), "quota-exceeded"),
        (Variant("internal-error", "disk"), "internal-error(disk)"),
        ([("k", b"v"), ("x", b"\xff")], '[["k", "v"], ["x", "0xff"]]'),
        ((["a"], None), '[["a"], null]'),
    ],
)
def test_format_value(value: Any, text: str | None) -> None:
    assert format_value(value) == text


def test_format_records() -> None:
    record = Record()
    record.name = "n"  # type: ignore[attr-defined]
    assert format_value([record]) == '[{"name": "n"}]'


def test_main_is_the_fallback_entry_point(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert "run" in capsys.readouterr().out


def test_fallback_turns_ctrl_c_anywhere_into_one_line_and_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def register(cli: click.Group) -> None:
        @cli.command()
        def stop() -> None:
            raise KeyboardInterrupt  # outside a guest call, where run's own handler does not reach

    monkeypatch.setattr(airssys_storage_wasmtime, "register_commands", register)
    with pytest.raises(SystemExit) as exited:
        main(["stop"])
    assert exited.value.code == 130
    # (click first ends the terminal's ^C line with an empty one, as in airssys-storage)
    assert capsys.readouterr().err.removeprefix("\n") == "airssys-storage: error: interrupted (Ctrl-C)\n"
    with pytest.raises(SystemExit) as exited:
        main(["nosuch"])
    assert exited.value.code == 2


def test_url_and_backend_options_choose_the_store(tmp_path: Path) -> None:
    database = tmp_path / "counter.db"
    for expected in ("1", "2"):
        result = run(str(COUNTER_WASM), "--manifest", str(MANIFEST), "--url", f"sqlite:///{database}", url=None)
        assert result.exit_code == 0, result.stderr
        assert result.stdout.strip() == expected
    assert database.exists()
    one_line_error(run(str(COUNTER_WASM), "--manifest", str(MANIFEST), "--backend-options", "[1]"), 2, "JSON object")
    one_line_error(run(str(COUNTER_WASM), "--manifest", str(MANIFEST), "--backend-options", "{"), 2, "is not JSON")
