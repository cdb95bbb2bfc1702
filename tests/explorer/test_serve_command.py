"""``airssys-storage serve``: refusals on the command line, and the real command serving a store over HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from explorer_helpers import TOKEN

from airssys_storage.audit import key_for_audit
from airssys_storage.cli import main
from airssys_storage.cli.app import ExitCode


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_allow_writes_without_a_token_is_refused() -> None:
    code, output = invoke("serve", "--url", "memory://", "--allow-writes")
    assert code == ExitCode.USAGE
    assert "--allow-writes needs --token" in output


def test_a_short_token_is_refused() -> None:
    code, output = invoke("serve", "--url", "memory://", "--allow-writes", "--token", "short")
    assert code == ExitCode.USAGE
    assert "at least 16" in output


@pytest.mark.parametrize(
    "token", ["", "   ", " padded-token-0123456789 ", "bad\x00token-0123456789", "tab\ttoken-0123456789ab"]
)
def test_a_blank_or_control_character_token_is_refused(token: str) -> None:
    code, output = invoke("serve", "--url", "memory://", "--allow-writes", "--token", token)
    assert code == ExitCode.USAGE
    assert output.startswith("airssys-storage: error: ") and "--token" in output


def test_a_port_in_use_or_a_bad_host_is_one_line_and_exit_3() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = invoke("serve", "--url", "memory://", "--port", str(port))
    assert code == 3, output
    assert output.startswith("airssys-storage: error: cannot listen on 127.0.0.1:") and "--port" in output
    assert "[Errno" not in output and len(output.strip().splitlines()) == 1
    code, output = invoke("serve", "--url", "memory://", "--host", "no-such-host.invalid", "--port", "0")
    assert code == 3 and output.startswith("airssys-storage: error: --host 'no-such-host.invalid'"), output


def test_serve_is_listed_in_the_help() -> None:
    code, output = invoke("--help")
    assert code == 0 and "serve" in output
    code, output = invoke("serve", "--help")
    assert code == 0 and "--allow-writes" in output and "127.0.0.1" in output


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _request(url: str, method: str = "GET", data: bytes | None = None, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_serve_runs_the_explorer_over_a_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    code, output = invoke("set", "--url", url, "--component", "app", "greeting", "hello")
    assert code == 0, output
    manifest = tmp_path / "app.toml"
    manifest.write_text(
        '[component]\nid = "app"\n\n[permissions.storage]\naccess = "read-write"\nmax-size = "1KB"\nchanges = true\n'
    )
    port = _free_port()
    command = [sys.executable, "-m", "airssys_storage.cli", "serve", "--url", url, "--port", str(port)]
    command += ["--manifest", str(manifest)]
    process = subprocess.Popen(
        [*command, "--allow-writes"],
        env={"AIRSSYS_STORAGE_EXPLORER_TOKEN": TOKEN, "PATH": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                status, body = _request(base + "/api/components")
                break
            except OSError:
                if process.poll() is not None:
                    raise AssertionError(process.stderr.read().decode() if process.stderr else "exited") from None
                time.sleep(0.05)
        else:
            raise AssertionError("the explorer did not answer")
        assert status == 200
        row = json.loads(body)["components"][0]
        assert (row["component"], row["quota_bytes"]) == ("app", 1024)
        assert _request(base + "/api/components/app/keys/greeting")[1] == b"hello"
        assert _request(base + "/api/components/app/keys/new", "PUT", b"v")[0] == 401
        assert _request(base + "/api/components/app/keys/new", "PUT", b"v", TOKEN)[0] == 200
        assert _request(base + "/api/components/app/keys/new")[1] == b"v"
        status, body = _request(base + "/api/components/app/keys/big", "PUT", b"x" * 1100, TOKEN)
        assert status == 507  # the manifest's quota (max-size 1KB) holds for the explorer's writes
        assert "max-size in the manifest of 'app'" in json.loads(body)["error"]["message"]
        # The manifest turns the change feed on: the explorer's own write is its first event.
        feed = json.loads(_request(base + "/api/components/app/changes")[1])
        assert feed["enabled"] is True
        assert [(e["seq"], e["op"], e["key"]) for e in feed["events"]] == [(1, "set", "new")]
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    log = stderr.decode()
    assert "airssys-storage explorer on http://127.0.0.1:" in log and "writes allowed" in log
    audit = [json.loads(line) for line in log.splitlines() if line.startswith('{"event": "explorer-write"')]
    # keys appear as the setting audit_keys says (default: hashed)
    assert [(r["operation"], r["key"], r["outcome"]) for r in audit] == [
        ("set", key_for_audit("new", "hash"), "refused"),
        ("set", key_for_audit("new", "hash"), "ok"),
        ("set", key_for_audit("big", "hash"), "refused"),
    ]
    assert audit[-1]["code"] == "quota-exceeded"
    assert TOKEN not in log  # the token is never logged
