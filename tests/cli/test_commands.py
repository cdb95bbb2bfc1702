"""Every command through the real entry point: click's runner on ``main``, or the installed console script."""

from __future__ import annotations

import importlib.metadata
import json
import os
import pty
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from cli_helpers import ADVERSARIAL, SCRIPT, Completed, Run, Store

import airssys_storage.cli.data
from airssys_storage import hookimpl, register_plugin, unregister_plugin

PERSISTENT = ["leveldb", "sqlite"]
MakeStore = Callable[[str], Store]


def one_error_line(stderr: str) -> str:
    """The stderr of a failed command: exactly one line, no traceback.

    (After Ctrl-C click first ends the terminal's ``^C`` line with an empty one.)
    """
    assert "Traceback" not in stderr
    lines = stderr.removeprefix("\n").splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("airssys-storage: error: ")
    return lines[0]


# -- start-up, help, completion, plugins -------------------------------------------


def test_help_lists_every_command(cli: Run) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for name in ("config", "plugins", "manifest", "get", "set", "delete", "keys", "size", "clear", "export", "import"):
        assert f"  {name} " in result.stdout
    for name in ("migrate", "stats", "bench", "repair", "watch"):
        assert f"  {name} " in result.stdout


def test_no_command_prints_the_help(cli: Run) -> None:
    result = cli()
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("Usage: airssys-storage [OPTIONS] COMMAND")
    result = cli("manifest")
    assert result.exit_code == 2 and "check" in result.stderr


def test_subcommand_help_loads_no_plugin_and_no_rich() -> None:
    code = (
        "import sys\n"
        "from airssys_storage.cli import main\n"
        "main(['get', '--help'], standalone_mode=False)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('airssys_storage_', 'rich'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "[]"
    assert "--component" in done.stdout


def test_version(cli: Run) -> None:
    result = cli("--version")
    assert result.exit_code == 0 and importlib.metadata.version("airssys-storage") in result.stdout


def test_shell_completion() -> None:
    env = {**os.environ, "_AIRSSYS_STORAGE_COMPLETE": "bash_source"}
    script = subprocess.run(SCRIPT, env=env, capture_output=True, text=True, check=False)
    assert script.returncode == 0 and "_airssys_storage_completion" in script.stdout
    env = {
        **os.environ,
        "_AIRSSYS_STORAGE_COMPLETE": "bash_complete",
        "COMP_WORDS": "airssys-storage ex",
        "COMP_CWORD": "1",
    }
    words = subprocess.run(SCRIPT, env=env, capture_output=True, text=True, check=False)
    assert "plain,export" in words.stdout.splitlines()


def test_plugins_json_lists_classes_with_their_distribution(cli: Run) -> None:
    result = cli("plugins", "--json")
    assert result.exit_code == 0
    listing = json.loads(result.stdout)
    rows = {(row["kind"], row["name"]): row for row in listing["plugins"]}
    memory = rows[("backend", "memory")]
    assert memory["distribution"] == "airssys-storage-memory"
    assert memory["version"] == importlib.metadata.version("airssys-storage-memory")
    assert memory["url_schemes"] == ["memory"]
    assert ("permission policy", "manifest") in rows and ("quota strategy", "fixed") in rows
    assert listing["failed"] == [] and listing["blocked"] == []


def test_plugins_table(cli: Run) -> None:
    result = cli("plugins")
    assert result.exit_code == 0 and "memory" in result.stdout and "quota strategy" in result.stdout


@pytest.fixture
def fake_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Register plugin modules in-process (register_plugin); ``None`` is an entry point whose import fails."""
    registered: list[str] = []

    def install(**modules: types.ModuleType | None) -> None:
        missing = []
        for name, module in modules.items():
            if module is None:
                missing.append(importlib.metadata.EntryPoint(name, f"fake_airssys_missing_{name}", "airssys_storage"))
            else:
                registered.append(register_plugin(module, name=name))
        if missing:
            real = list(importlib.metadata.entry_points(group="airssys_storage"))
            monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_: [*real, *missing])

    yield install
    for name in registered:
        unregister_plugin(name)


def plugin_module(register: Callable[[click.Group], None]) -> types.ModuleType:
    module = types.ModuleType("fake")

    @hookimpl
    def register_commands(cli: click.Group) -> None:
        register(cli)

    module.register_commands = register_commands  # type: ignore[attr-defined]
    return module


def add_hello(cli: click.Group) -> None:
    @cli.command()
    def hello() -> None:
        """Say hello (from a plugin)."""
        click.echo("hello from a plugin")


def test_plugin_commands_are_added_and_broken_plugins_do_not_break_the_cli(
    cli: Run, fake_plugins: Callable[..., None]
) -> None:
    def clash(group: click.Group) -> None:
        @group.command(name="get")
        def evil() -> None:
            click.echo("hijacked")

    fake_plugins(hello=plugin_module(add_hello), clash=plugin_module(clash), broken=None)
    result = cli("--help")
    assert result.exit_code == 0 and "hello" in result.stdout
    assert "ignored" in result.stderr  # the clashing command, one warning line
    result = cli("hello")
    assert result.exit_code == 0 and result.stdout == "hello from a plugin\n"
    assert cli("get", "--help").exit_code == 0  # the built-in wins
    listing = json.loads(cli("plugins", "--json").stdout)
    assert [f["plugin"] for f in listing["failed"]] == ["broken"]
    assert "ModuleNotFoundError" in listing["failed"][0]["error"]


def test_a_plugin_whose_hook_raises_does_not_break_the_cli(cli: Run, fake_plugins: Callable[..., None]) -> None:
    def explode(group: click.Group) -> None:
        raise RuntimeError("boom")

    fake_plugins(explode=plugin_module(explode), hello=plugin_module(add_hello))
    result = cli("--help")
    assert result.exit_code == 0 and "  get " in result.stdout
    assert "hello" in result.stdout  # the other plugin's command survives
    assert "plugin 'explode' failed to add commands: boom" in result.stderr
    assert cli("plugins", "--json").exit_code == 0
    result = cli("nosuchcommand")
    assert result.exit_code == 2
    assert "No such command" in one_error_line(result.stderr.splitlines()[-1])


def test_blocked_plugins_are_not_loaded(cli: Run, fake_plugins: Callable[..., None]) -> None:
    fake_plugins(hello=plugin_module(add_hello))
    result = cli("--help", env={"AIRSSYS_STORAGE_BLOCKED_PLUGINS": '["hello"]'})
    assert "hello" not in result.stdout
    listing = json.loads(cli("plugins", "--json", env={"AIRSSYS_STORAGE_BLOCKED_PLUGINS": '["hello"]'}).stdout)
    assert listing["blocked"] == ["hello"]


def test_plugins_lists_a_broken_plugin_and_everything_else(cli: Run, fake_plugins: Callable[..., None]) -> None:
    """Issue 9 §3: a plugin whose register_backends() returns junk made `plugins --json` exit 3 listing nothing."""
    junk = types.ModuleType("junk")
    junk.register_backends = hookimpl(lambda: "memory")  # type: ignore[attr-defined]
    exits = types.ModuleType("exits")

    def leave() -> list[type]:
        raise SystemExit(0)

    exits.register_quota_strategies = hookimpl(leave)  # type: ignore[attr-defined]
    exits.register_quota_strategies.__name__ = "register_quota_strategies"
    fake_plugins(junk=junk, exits=exits)
    result = cli("plugins", "--json")
    assert result.exit_code == 0, result.stderr
    listing = json.loads(result.stdout)
    assert {row["name"] for row in listing["plugins"]} >= {"memory", "manifest", "fixed"}
    failed = {f["plugin"]: f["error"] for f in listing["failed"]}
    assert failed == {
        "junk": "register_backends() returned 'memory', not a list of classes",
        "exits": "register_quota_strategies() raised SystemExit: 0",
    }
    table = cli("plugins")
    assert table.exit_code == 0 and "junk" in table.stdout and "broken" in table.stdout
    store = cli("set", "--url", "memory://", "-c", "app", "k", "v")
    assert store.exit_code == 0, store.stderr
    assert "'junk' is broken and is skipped" in store.stderr and "blocked_plugins" in store.stderr
    quiet = cli(
        "set", "--url", "memory://", "-c", "app", "k", "v", env={"AIRSSYS_STORAGE_BLOCKED_PLUGINS": '["junk", "exits"]'}
    )
    assert quiet.exit_code == 0 and quiet.stderr == ""


# -- config and manifests ----------------------------------------------------


def config_json(cli: Run, *args: str, env: dict[str, str] | None = None) -> dict[str, dict[str, object]]:
    result = cli("config", "--json", *args, env=env)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_config_shows_plugin_options_and_their_source(cli: Run, tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text('quota_strategy = "fixed"\n[plugin_options.fixed]\nlimit = 5\npassword = "hunter2"\n')
    shown = config_json(cli, env={"AIRSSYS_STORAGE_CONFIG_FILE": str(settings_file)})["settings"]["plugin_options"]
    assert shown == {"value": {"fixed": {"limit": 5, "password": "***"}}, "source": f"settings file {settings_file}"}


def test_config_shows_where_each_value_comes_from(cli: Run, tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text('max_batch_ops = 50\nquota_strategy = "fixed"\nurl = "memory://"\n')
    env = {"AIRSSYS_STORAGE_CONFIG_FILE": str(settings_file), "AIRSSYS_STORAGE_MAX_KEY_BYTES": "128"}
    shown = config_json(cli, env=env)
    assert shown["settings_file"] == str(settings_file)
    settings = shown["settings"]
    assert settings["max_batch_ops"] == {"value": 50, "source": f"settings file {settings_file}"}
    assert settings["max_key_bytes"] == {"value": 128, "source": "environment variable AIRSSYS_STORAGE_MAX_KEY_BYTES"}
    assert settings["url"] == {"value": "memory://", "source": f"settings file {settings_file}"}
    assert settings["max_value_bytes"] == {"value": 1024 * 1024, "source": "default"}
    argument = config_json(cli, "--url", "leveldb:///tmp/x", env=env)["settings"]["url"]
    assert argument == {"value": "leveldb:///tmp/x", "source": "argument (--url)"}


def test_config_default_url_and_password_redaction(cli: Run) -> None:
    shown = config_json(cli)
    assert shown["settings_file"] is None
    assert shown["settings"]["url"]["source"].startswith("default")
    assert str(shown["settings"]["url"]["value"]).startswith("sqlite:///")
    secret = config_json(
        cli, "--url", "postgresql+psycopg://user:hunter2@db/x", "--backend-options", '{"password": "p"}'
    )
    assert "hunter2" not in json.dumps(secret) and '"p"' not in json.dumps(secret)
    assert secret["settings"]["backend_options"]["source"] == "argument (--backend-options)"


def test_config_masks_exact_secret_names_only(cli: Run) -> None:
    """Issue 9: `config` masked LevelDB's size_cache_keys as *** (any name containing "key")."""
    shown = config_json(cli, "--url", "leveldb:///tmp/x", "--backend-options", '{"size_cache_keys": 5000}')
    assert shown["settings"]["backend_options"]["value"] == {"size_cache_keys": 5000}
    options = {
        "connect_args": {"password": "pw1", "sslPassword": "pw2", "sslmode": "require", "keepalives": 1},
        "token": "t0k3n-value",
        "api-key": "k3y",
        "table_prefix": "secret_keys_",
        "mirror": "postgresql://user:pw4@db/x?password=pw5",
        "hosts": ["mysql://root:pw6@h/db", "plain"],
    }
    shown = config_json(cli, "--url", "postgresql+psycopg://u@db/x", "--backend-options", json.dumps(options))
    value = shown["settings"]["backend_options"]["value"]
    for secret in ("pw1", "pw2", "t0k3n-value", "k3y", "pw4", "pw5", "pw6"):
        assert secret not in json.dumps(shown)
    assert value["connect_args"] == {"password": "***", "sslPassword": "***", "sslmode": "require", "keepalives": 1}
    assert value["table_prefix"] == "secret_keys_" and value["hosts"][1] == "plain"
    assert value["mirror"] == "postgresql://user:***@db/x?password=***"


@pytest.mark.parametrize(
    "variable, value, named",
    [
        ("AIRSSYS_STORAGE_POLICIES", '["manifest", "nosuch-policy"]', "no permission policy named 'nosuch-policy'"),
        ("AIRSSYS_STORAGE_QUOTA_STRATEGY", "nosuch-strategy", "no quota strategy named 'nosuch-strategy'"),
        ("AIRSSYS_STORAGE_URL", "nosuch://x", "no installed backend serves URL scheme 'nosuch'"),
    ],
)
def test_config_check_fails_on_unknown_names(cli: Run, variable: str, value: str, named: str) -> None:
    """Issue 9: `config` exited 0 with an unknown policy, quota strategy or URL scheme."""
    env = {"AIRSSYS_STORAGE_URL": "memory://", variable: value}
    result = cli("config", "--check", env=env)
    assert result.exit_code == 3, result.stderr
    assert named in one_error_line(result.stderr)
    # Without --check the table still shows, with the problem as a warning.
    result = cli("config", env=env)
    assert result.exit_code == 0 and f"warning: {named}" in result.stderr
    assert config_json(cli, env=env)["problems"][0].startswith(named)


def test_config_check_passes_on_good_settings(cli: Run) -> None:
    result = cli(
        "config", "--check", env={"AIRSSYS_STORAGE_URL": "memory://", "AIRSSYS_STORAGE_QUOTA_STRATEGY": "fixed"}
    )
    assert result.exit_code == 0, result.stderr
    assert "check: the policies, the quota strategy and the URL's backend are installed" in result.stderr
    assert config_json(cli, env={"AIRSSYS_STORAGE_URL": "memory://"})["problems"] == []


def test_config_table_and_a_bad_setting(cli: Run) -> None:
    result = cli("config", env={"AIRSSYS_STORAGE_URL": "memory://"})
    assert result.exit_code == 0 and "environment variable AIRSSYS_STORAGE_URL" in result.stdout
    result = cli("config", env={"AIRSSYS_STORAGE_MAX_BATCH_OPS": "zero"})
    assert result.exit_code == 3
    assert "max_batch_ops" in one_error_line(result.stderr)


def write_manifest(path: Path, component: str, access: str, max_size: str | None = None) -> Path:
    size = f', max-size = "{max_size}"' if max_size else ""
    path.write_text(f'[component]\nid = "{component}"\n[permissions]\nstorage = {{ access = "{access}"{size} }}\n')
    return path


def test_manifest_check(cli: Run, tmp_path: Path) -> None:
    good = write_manifest(tmp_path / "good.toml", "app", "read-write", "1MB")
    result = cli("manifest", "check", str(good))
    assert result.exit_code == 0 and "quota 1048576 bytes" in result.stdout
    summary = json.loads(cli("manifest", "check", "--json", str(good)).stdout)
    assert summary["quota_bytes"] == 1048576 and "clear" not in summary["operations"]
    bad = write_manifest(tmp_path / "bad.toml", "app", "rw")
    result = cli("manifest", "check", str(bad))
    assert result.exit_code == 3 and result.stdout == ""
    line = one_error_line(result.stderr)
    assert "permissions.storage.access 'rw' is invalid: use one of" in line
    too_big = write_manifest(tmp_path / "big.toml", "app", "read-write", "1GB")
    assert "above the maximum" in one_error_line(cli("manifest", "check", str(too_big)).stderr)
    result = cli("manifest", "check", str(tmp_path / "missing.toml"))
    assert result.exit_code == 2 and "does not exist" in one_error_line(result.stderr)


@pytest.mark.parametrize("table", ["timeout = -1", "timeout = 1e400", 'max-memory = "abc"', "bogus = 1"])
def test_manifest_check_validates_the_limits_table(cli: Run, tmp_path: Path, table: str) -> None:
    # the same [limits] rules `airssys-storage run` (wasmtime host) applies: both read Manifest.limits
    manifest = tmp_path / "m.toml"
    manifest.write_text(f'[component]\nid = "app"\n[limits]\n{table}\n')
    result = cli("manifest", "check", str(manifest))
    assert result.exit_code == 3 and result.stdout == ""
    assert "[limits]" in one_error_line(result.stderr) and str(manifest) in result.stderr


def test_manifest_check_shows_the_limits(cli: Run, tmp_path: Path) -> None:
    manifest = tmp_path / "m.toml"
    manifest.write_text('[component]\nid = "app"\n[limits]\ntimeout = 5\nmax-memory = "64MiB"\n')
    result = cli("manifest", "check", str(manifest))
    assert result.exit_code == 0 and "limits: timeout 5.0, max-memory 67108864" in result.stdout
    limits = json.loads(cli("manifest", "check", "--json", str(manifest)).stdout)["limits"]
    assert limits["timeout"] == 5.0 and limits["max-memory"] == 64 * 1024 * 1024 and limits["max-call-bytes"] is None


# -- data commands -----------------------------------------------------------


@pytest.fixture(params=PERSISTENT)
def store(request: pytest.FixtureRequest, make_store: MakeStore) -> Store:
    return make_store(request.param)


def test_set_get_keys_size_delete(cli: Run, store: Store, tmp_path: Path) -> None:
    url = ["--url", store.url, "-c", "app"]
    assert cli("set", *url, "greeting", "héllo").exit_code == 0
    assert cli("set", *url, "bin", "-", input=b"\x00\xff\n").exit_code == 0
    (tmp_path / "v").write_bytes(b"from a file")
    assert cli("set", *url, "file", "--file", str(tmp_path / "v")).exit_code == 0
    data = {"greeting": "héllo".encode(), "bin": b"\x00\xff\n", "file": b"from a file"}
    assert store.read("app") == data

    assert cli("get", *url, "bin").stdout_bytes == b"\x00\xff\n"
    assert cli("get", *url, "greeting", "-o", str(tmp_path / "out")).stdout_bytes == b""
    assert (tmp_path / "out").read_bytes() == "héllo".encode()
    assert cli("keys", *url).stdout == "bin\nfile\ngreeting\n"
    assert cli("keys", *url, "f").stdout == "file\n"
    assert json.loads(cli("keys", *url, "--json").stdout) == ["bin", "file", "greeting"]
    assert json.loads(cli("keys", *url, "nothing", "--json").stdout) == []
    expected = sum(len(k.encode()) + len(v) for k, v in data.items())
    assert cli("size", *url).stdout == f"{expected}\n"
    assert json.loads(cli("size", *url, "--json").stdout) == {"component": "app", "bytes": expected, "keys": 3}

    assert cli("delete", *url, "bin").exit_code == 0
    result = cli("delete", *url, "bin")
    assert result.exit_code == 1 and "not found" in one_error_line(result.stderr)
    assert cli("delete", *url, "bin", "--missing-ok").exit_code == 0
    assert cli("keys", *url).stdout == "file\ngreeting\n"


def test_get_of_a_missing_key_exits_1_with_nothing_on_stdout(cli: Run, store: Store) -> None:
    result = cli("get", "--url", store.url, "-c", "app", "nope")
    assert result.exit_code == 1 and result.stdout_bytes == b""
    assert "key 'nope' not found in component 'app'" in one_error_line(result.stderr)


def test_not_found_hint_lists_the_keys_of_the_same_store(cli: Run, tmp_path: Path) -> None:
    """The hint carries --url and the options that select the store (here a table prefix), so it works as printed."""
    url = f"sqlite:///{tmp_path}/s.db"
    options = '{"table_prefix":"t2x_"}'
    assert cli("set", "--url", url, "--backend-options", options, "-c", "app", "k", "v").exit_code == 0
    for command in ("get", "delete"):
        result = cli(command, "--url", url, "--backend-options", options, "-c", "app", "nope")
        assert result.exit_code == 1
        hint = one_error_line(result.stderr).split("list its keys with: ", 1)[1]
        assert hint == f"airssys-storage keys --component app --url {url} --backend-options '{options}'"


def test_set_takes_the_value_exactly_once(cli: Run, store: Store) -> None:
    for args in ((), ("v", "--file", __file__)):
        result = cli("set", "--url", store.url, "-c", "app", "k", *args)
        assert result.exit_code == 2 and "exactly once" in one_error_line(result.stderr)


def test_invalid_keys_and_values_are_refused(cli: Run, store: Store) -> None:
    result = cli("set", "--url", store.url, "-c", "app", "a\tb", "v")
    assert result.exit_code == 2 and "control character" in one_error_line(result.stderr)
    result = cli("set", "--url", store.url, "-c", "app", "big", "-", input=bytes(1024 * 1024 + 1))
    assert result.exit_code == 4 and "maximum is 1048576 bytes" in one_error_line(result.stderr)


def test_operators_ignore_quota_unless_a_manifest_is_given(cli: Run, store: Store, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.toml", "app", "read-write", "100")
    args = ["set", "--url", store.url, "-c", "app", "k", "-"]
    result = cli(*args, "--manifest", str(manifest), input=bytes(200))
    line = one_error_line(result.stderr)
    assert result.exit_code == 4 and "quota exceeded" in line
    # The limit is the manifest's (not the operator manager's internal fixed quota).
    assert "permissions.storage.max-size in the manifest of 'app' (quota strategy 'manifest'): raise it" in line
    assert f"(--manifest {str(manifest)!r})" in line and "fixed_quota_bytes" not in line
    assert store.read("app") == {}
    assert cli(*args, input=bytes(200)).exit_code == 0  # an operator may go past it
    other = write_manifest(tmp_path / "o.toml", "other", "read-write")
    result = cli(*args, "--manifest", str(other), input=b"x")
    assert result.exit_code == 2 and "describes component 'other'" in one_error_line(result.stderr)


def test_watch_tails_the_change_feed(cli: Run, make_store: MakeStore) -> None:
    """watch prints the feed from --since (human and JSON Lines), filters by --prefix, ends after --timeout."""
    store = make_store("sqlite")
    url = ["--url", store.url, "-c", "app"]
    feed = {"AIRSSYS_STORAGE_CHANGES_DEFAULT": "true"}
    assert cli("set", *url, "a/1", "x", env=feed).exit_code == 0
    assert cli("set", *url, "b", "y", env=feed).exit_code == 0
    assert cli("delete", *url, "a/1", env=feed).exit_code == 0
    result = cli("watch", *url, "--since", "0", "--timeout", "0")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["1\tset\ta/1\tv1", "2\tset\tb\tv1", "3\tdelete\ta/1\tv1"]
    result = cli("watch", *url, "--since", "1", "--prefix", "a/", "--json", "--timeout", "0")
    assert [json.loads(line)["seq"] for line in result.stdout.splitlines()] == [3]
    assert cli("watch", *url, "--timeout", "0").stdout == ""  # by default only changes after now
    result = cli("watch", *url, "--since", "9", "--timeout", "0")
    assert result.exit_code == 2 and "beyond the last change" in one_error_line(result.stderr)
    result = cli("watch", *url, "--since", str(2**63), "--timeout", "0")  # SQLite once raised internal-error
    assert result.exit_code == 2 and "beyond the last change" in one_error_line(result.stderr)
    assert cli("set", *url[:2], "-c", "quiet", "k", "v").exit_code == 0  # written with the feed off
    result = cli("watch", *url[:2], "-c", "quiet", "--since", "0", "--timeout", "0")
    assert result.exit_code == 0 and result.stdout == "" and "has no change in its feed yet" in result.stderr


def test_clear_asks_unless_yes(cli: Run, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store.write("app", {"a": b"1", "b": b"2"})
    url = ["--url", store.url, "-c", "app"]
    result = cli("clear", *url)  # no terminal to ask on
    assert result.exit_code == 2 and "--yes" in one_error_line(result.stderr)
    monkeypatch.setattr(airssys_storage.cli.data, "stdin_is_terminal", lambda: True)
    result = cli("clear", *url, input="n\n")
    assert result.exit_code == 1 and "aborted" in result.stderr
    assert store.read("app") == {"a": b"1", "b": b"2"}
    assert cli("clear", *url, input="y\n").exit_code == 0
    assert store.read("app") == {}
    store.write("app", {"a": b"1"})
    result = cli("clear", *url, "--yes")
    assert result.exit_code == 0 and "1 keys, 2 bytes deleted" in result.stderr
    assert store.read("app") == {}


def test_keys_pages_past_the_per_query_maximum(cli: Run, make_store: MakeStore) -> None:
    store = make_store("leveldb")
    count = 10_050
    store.write("app", {f"k{i:05d}": b"" for i in range(count)})
    result = cli("keys", "--url", store.url, "-c", "app")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [f"k{i:05d}" for i in range(count)]
    small = cli("keys", "--url", store.url, "-c", "app", "k0000", env={"AIRSSYS_STORAGE_MAX_KEYS_PER_QUERY": "3"})
    assert small.stdout.splitlines() == [f"k{i:05d}" for i in range(10)]


# -- errors ------------------------------------------------------------------


def test_unknown_backend_scheme(cli: Run) -> None:
    result = cli("get", "--url", "nosuch://x", "-c", "app", "k")
    assert result.exit_code == 3 and result.stdout == ""
    line = one_error_line(result.stderr)
    assert "no installed backend serves URL scheme 'nosuch'" in line and "installed schemes:" in line
    assert "pip install" not in line  # no distribution of this project serves nosuch://


def test_unreachable_server(cli: Run, make_store: MakeStore) -> None:
    make_store("sqlite")  # skips unless the SQL plugin is installed
    result = cli("size", "--url", "postgresql+psycopg://postgres@127.0.0.1:9/test", "-c", "app")
    assert result.exit_code == 5
    line = one_error_line(result.stderr)
    assert "127.0.0.1" in line and "check that the store is reachable" in line


def test_invalid_component_id(cli: Run) -> None:
    for bad in ("App", "a:b", "1abc", "", "a" * 64):
        result = cli("get", "--url", "memory://", "--component", bad, "k")
        assert result.exit_code == 2
        assert "is not a component id" in one_error_line(result.stderr)


def test_usage_errors_are_one_line(cli: Run) -> None:
    result = cli("get", "k")
    assert result.exit_code == 2 and "Missing option '--component'" in one_error_line(result.stderr)
    result = cli("get", "-c", "app", "k", "--backend-options", "[1]")
    assert result.exit_code == 2 and "not a JSON object" in one_error_line(result.stderr)


def test_debug_adds_the_traceback(cli: Run) -> None:
    result = cli("--debug", "get", "--url", "nosuch://x", "-c", "app", "k")
    assert result.exit_code == 3
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("airssys-storage: error: no installed backend")


def test_unexpected_errors_and_interrupts(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("surprise")

    monkeypatch.setattr(airssys_storage.cli.data, "open_component", fail)
    result = cli("size", "-c", "app")
    assert result.exit_code == 70 and "RuntimeError: surprise" in one_error_line(result.stderr)

    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(airssys_storage.cli.data, "open_component", interrupt)
    result = cli("size", "-c", "app")
    assert result.exit_code == 130 and "interrupted" in one_error_line(result.stderr)


def test_the_console_script_reports_errors_in_one_line(cli_process: Callable[..., Completed]) -> None:
    done = cli_process("get", "--url", "memory://", "-c", "app", "nope")
    assert done.returncode == 1 and done.stdout == b""
    assert "not found" in one_error_line(done.stderr)
    done = cli_process("get", "--url", "nosuch://", "-c", "app", "nope")
    assert done.returncode == 3 and "installed schemes:" in one_error_line(done.stderr)


# -- export / import errors, progress ----------------------------------------------


def test_bad_import_file_is_rejected_with_the_line_before_writing(cli: Run, store: Store, tmp_path: Path) -> None:
    store.write("app", {"k": b"v"})
    good = tmp_path / "good.jsonl"
    assert cli("export", "--url", store.url, "-c", "app", "-o", str(good)).exit_code == 0
    lines = good.read_bytes().splitlines(keepends=True)
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_bytes(b"".join(lines[:-1]))
    result = cli("import", str(truncated), "--url", store.url, "-c", "fresh")
    assert result.exit_code == 2
    assert "line 3: the file ends without its end line" in one_error_line(result.stderr)
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("id,name\n1,x\n")
    result = cli("import", str(foreign), "--url", store.url)
    assert result.exit_code == 2 and "line 1: not valid JSON" in one_error_line(result.stderr)
    assert store.read("fresh") == {}
    result = cli("import", str(tmp_path / "missing.jsonl"), "--url", store.url)
    assert result.exit_code == 2 and "missing.jsonl" in one_error_line(result.stderr)


def test_import_from_stdin_and_into_another_component(cli: Run, store: Store) -> None:
    store.write("app", ADVERSARIAL)
    exported = cli("export", "--url", store.url, "-c", "app")
    assert exported.exit_code == 0 and "exported 15 keys" in exported.stderr
    result = cli("import", "-", "--url", store.url, "-c", "copy", input=exported.stdout_bytes)
    assert result.exit_code == 0, result.stderr
    assert store.read("copy") == ADVERSARIAL
    again = cli("import", "-", "--url", store.url, "-c", "copy", input=exported.stdout_bytes)
    assert "0 written, 15 already identical" in again.stderr


def test_import_respects_the_manifest_quota(cli: Run, store: Store, tmp_path: Path) -> None:
    store.write("app", {"k": bytes(500)})
    file = tmp_path / "app.jsonl"
    cli("export", "--url", store.url, "-c", "app", "-o", str(file))
    manifest = write_manifest(tmp_path / "m.toml", "small", "read-write", "100")
    result = cli("import", str(file), "--url", store.url, "-c", "small", "--manifest", str(manifest))
    line = one_error_line(result.stderr)
    assert result.exit_code == 4 and "nothing was written" in line
    assert "permissions.storage.max-size in the manifest of 'small'" in line and "fixed_quota_bytes" not in line
    assert store.read("small") == {}


def test_export_writes_no_partial_file(cli: Run, tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    result = cli("export", "--url", "nosuch://", "-c", "app", "-o", str(target))
    assert result.exit_code == 3
    assert list(tmp_path.iterdir()) == []
    result = cli("export", "--url", "memory://", "-c", "app", "-o", str(target))
    assert result.exit_code == 0 and "holds no keys" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    result = cli("export", "--url", "memory://", "-c", "app", "-o", str(tmp_path / "missing" / "out.jsonl"))
    assert result.exit_code == 2 and "does not exist; create it first" in one_error_line(result.stderr)


def test_progress_is_quiet_when_piped_and_shown_on_a_terminal(make_store: MakeStore) -> None:
    store = make_store("leveldb")
    store.write("app", {f"k{i:05d}": bytes(100) for i in range(20_000)})
    args = [*SCRIPT, "export", "--url", store.url, "-c", "app"]
    piped = subprocess.run(args, capture_output=True, check=True)
    assert piped.stderr.decode() == "exported 20000 keys (2120000 bytes) of component 'app' to stdout\n"
    assert piped.stdout.count(b"\n") == 20_002
    # stderr on a terminal: the bar is drawn there, stdout stays clean.
    leader, follower = pty.openpty()
    on_tty = subprocess.run(
        args, stdout=subprocess.PIPE, stderr=follower, check=True, env={**os.environ, "COLUMNS": "100"}
    )
    os.close(follower)
    drawn = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    os.close(leader)
    assert b"exporting app" in drawn
    assert on_tty.stdout == piped.stdout


# -- stats, bench, repair ----------------------------------------------------


def test_stats(cli: Run, store: Store, tmp_path: Path) -> None:
    store.write("app", {"k": b"12345"})
    store.write("big", {"a": b"1", "b": b"2"})
    manifests = tmp_path / "manifests"
    (manifests / "app").mkdir(parents=True)
    write_manifest(manifests / "app" / "component-manifest.toml", "app", "read-write", "600")
    write_manifest(manifests / "idle.toml", "idle", "read-only")
    shown = json.loads(cli("stats", "--url", store.url, "--manifest", str(manifests), "--json").stdout)
    components = {c["component"]: c for c in shown["components"]}
    assert components["app"] == {
        "component": "app",
        "keys": 1,
        "bytes": 6,
        "quota_known": True,
        "quota_bytes": 600,
        "used_percent": 1.0,
    }
    assert components["big"]["quota_known"] is False and components["big"]["keys"] == 2
    assert components["idle"]["keys"] == 0 and components["idle"]["quota_bytes"] == 0
    assert shown["backend"]["url"] == store.url
    table = cli("stats", "--url", store.url, "--manifest", str(manifests)).stdout
    assert "unknown" in table and "app" in table


def test_bench_reports_every_operation_and_leaves_no_data(cli: Run, store: Store) -> None:
    result = cli("bench", "--url", store.url, "--ops", "120", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    names = [op["operation"] for op in report["operations"]]
    assert names[:3] == ["set (new key)", "get", "set (overwrite)"] and "delete" in names
    for op in report["operations"]:
        assert op["calls"] >= 1 and op["ops_per_s"] > 0 and 0 < op["p50_us"] <= op["p99_us"]
    assert json.loads(cli("stats", "--url", store.url, "--json").stdout)["components"] == []
    table = cli("bench", "--url", "memory://", "--ops", "10")
    assert table.exit_code == 0 and "p99 µs" in table.stdout


@pytest.mark.parametrize("value_size", [1, 100])
def test_bench_overwrites_every_key_with_other_bytes_of_the_same_size(value_size: int) -> None:
    """bench's overwrite phase must not rewrite identical bytes, which is nearly free on SQLite/InnoDB (issue 9, 8)."""
    from airssys_storage import Access, Manifest, StorageManager, StorageSettings
    from airssys_storage.cli.ops import _workload

    with StorageManager.from_settings(StorageSettings(url="memory://")) as manager:
        storage = manager.component(Manifest("bench-test", Access.ADMIN))
        phases = {phase.name: phase for phase in _workload(storage, 50, value_size, 10, 10)}
        for call in phases["set (new key)"].calls:
            call()
        before = dict(storage.range("bench/0", "bench/1"))
        for call in phases["set (overwrite)"].calls:
            call()
        after = dict(storage.range("bench/0", "bench/1"))
    assert len(before) == 50 and before.keys() == after.keys()
    assert all(len(after[key]) == value_size and after[key] != before[key] for key in before)


def test_repair(cli: Run, make_store: MakeStore) -> None:
    result = cli("repair", "--url", "memory://")
    assert result.exit_code == 2 and "cannot repair" in one_error_line(result.stderr)
    store = make_store("leveldb")
    store.write("app", {"k": b"v"})
    result = cli("repair", "--url", store.url, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["backend"] == "leveldb"
    assert store.read("app") == {"k": b"v"}


@pytest.mark.parametrize(
    ("url", "options", "named"),
    [
        ("memory://", '{"x": 1}', "backend_options.x: the backend 'memory' takes no options"),
        ("sqlite:///{tmp}/s.db", '{"pool_size": 0}', "backend_options.pool_size=0"),
        ("sqlite:///{tmp}/s.db", '{"tablE_prefix": "a_"}', "did you mean 'table_prefix'?"),
        # out of range for the engine: refused here, not at open as "store unreachable"
        ("postgresql://u@127.0.0.1:1/db", '{"lock_timeout": 1e12}', "backend_options.lock_timeout=1000000000000.0"),
        ("postgresql://u@127.0.0.1:1/db", '{"lock_timeout": 1e-4}', "backend_options.lock_timeout=0.0001"),
        ("mysql+pymysql://u@127.0.0.1:1/db", '{"connect_timeout": 1e12}', "backend_options.connect_timeout="),
        ("sqlite:///{tmp}/s.db", '{"db_password": "hunter2"}', "backend_options.db_password: the backend 'sql'"),
        ("sqlite:///{tmp}/s.db", '{"connect_args": "password=hunter2"}', "backend_options.connect_args (a string)"),
        ("sqlite:///{tmp}/s.db", '{"connect_args": ["hunter2"]}', "backend_options.connect_args (a list)"),
    ],
)
def test_config_check_validates_backend_options(cli: Run, tmp_path: Path, url: str, options: str, named: str) -> None:
    """Issue 9 leftover: `config --check` refused bad backend_options only when a data command opened the store."""
    args = ("config", "--url", url.format(tmp=tmp_path), "--backend-options", options)
    result = cli(*args, "--check")
    assert result.exit_code == 3, result.stderr
    assert named in one_error_line(result.stderr) and "hunter2" not in result.stderr
    assert "1 problem(s) in the settings" in result.stderr
    assert not (tmp_path / "s.db").exists()  # checked without opening anything
    result = cli(*args)
    assert result.exit_code == 0 and "warning: invalid backend_options for the backend" in result.stderr


def test_config_check_reports_every_bad_option_at_once_with_their_count(cli: Run, tmp_path: Path) -> None:
    """Field problems and __post_init__ problems (synchronous) together; the header counts what it lists."""
    options = '{"pool_size": 0, "lock_timeout": 1e-4, "synchronous": "OFF", "nope": 1}'
    result = cli("config", "--url", f"sqlite:///{tmp_path}/s.db", "--backend-options", options, "--check")
    assert result.exit_code == 3, result.stderr
    line = one_error_line(result.stderr)
    assert "4 problem(s) in the settings" in line
    for name in ("pool_size", "lock_timeout", "synchronous", "nope"):
        assert f"backend_options.{name}" in line


def test_config_shows_the_backends_options_with_defaults_and_descriptions(cli: Run, tmp_path: Path) -> None:
    """`config` lists every option the URL's backend declares: value in force, default, type, meaning."""
    url = f"sqlite:///{tmp_path}/s.db"
    args = ("--url", url, "--backend-options", '{"pool_size": 3, "connect_args": {"password": "hunter2"}}')
    shown = config_json(cli, *args)["backend"]
    assert shown["name"] == "sql" and shown["declared"] is True
    options = {option["name"]: option for option in shown["options"]}
    assert options["pool_size"] == {
        "name": "pool_size",
        "value": 3,
        "given": True,
        "default": 8,
        "type": "integer >= 1",
        "description": "most connections this backend opens (one per concurrently busy thread)",
    }
    assert options["lock_timeout"]["value"] == 10.0 and options["lock_timeout"]["given"] is False
    assert "seconds" in options["lock_timeout"]["description"]
    assert options["connect_args"]["value"] == {"password": "***"}  # secrets stay masked
    table = cli("config", *args)
    assert table.exit_code == 0
    assert "options of the backend 'sql'" in table.stdout
    assert "^(?:[a-z][a-z0-9_]{0,39})?$" in table.stdout  # a value's brackets are shown, not read as markup
    assert "hunter2" not in table.stdout
    assert {o["name"] for o in config_json(cli, "--url", "memory://")["backend"]["options"]} == set()
