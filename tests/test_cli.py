"""The `dkron` command line: Dkron's commands and flags, one-line errors, talking to an agent."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

import dkron_pkg
from dkron_pkg.cli import main
from dkron_pkg.config import Config, load_config

REPO = Path(__file__).resolve().parent.parent


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_version_prints_name_version_codename_and_protocol(capsys) -> None:
    code, out, _ = run(["version"], capsys)
    lines = out.splitlines()
    assert code == 0
    assert lines[:3] == [
        f"Name: {dkron_pkg.NAME}",
        f"Version: {dkron_pkg.__version__}",
        f"Codename: {dkron_pkg.CODENAME}",
    ]
    assert lines[3].startswith("Agent Protocol: ") and "(Understands back to: " in lines[3]


def test_keygen_prints_a_usable_16_byte_key(capsys) -> None:
    _, first, _ = run(["keygen"], capsys)
    _, second, _ = run(["keygen"], capsys)
    key = first.strip()
    assert len(base64.b64decode(key, validate=True)) == 16
    assert key != second.strip()
    assert load_config({"encrypt": key}, {}, None, search_dirs=[]).encrypt == key


def test_no_command_prints_help(capsys) -> None:
    code, out, _ = run([], capsys)
    assert code == 0
    for command in ("agent", "keygen", "version", "leave", "raft", "crontab"):
        assert command in out
    assert "selfcheck" not in out


def test_agent_help_lists_dkron_flags(capsys) -> None:
    code, out, _ = run(["agent", "--help"], capsys)
    assert code == 0
    for flag in (
        "--server",
        "--bootstrap-expect",
        "--data-dir",
        "--http-addr",
        "--retry-join",
        "--raft-multiplier",
        "--tag",
        "--encrypt",
        "--serf-reconnect-timeout",
        "--mail-host",
        "--webhook-endpoint",
        "--dog-statsd-addr",
        "--enable-prometheus",
        "--config",
        "--api-token",
        "--log-json",
        "--notify-on",
        "--crontab-sync",
    ):
        assert flag in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["agent", "--bogus"], "unrecognized arguments: --bogus"),
        (["agent", "--rpc-port", "x"], 'flag --rpc-port: expected an integer, got "x"'),
        (["agent", "--server=maybe"], "flag --server: expected true or false"),
        (["agent", "--raft-multiplier", "0"], "must be from 1 to 10"),
        (["agent", "--tag", "novalue"], 'tag "novalue" must be written key=value'),
        (["agent", "--rpc"], "unrecognized arguments: --rpc"),  # no abbreviations
        (["agent", "--config", "/nonexistent/dkron.yml"], "no such file"),
        (["raft"], "required"),
        (["raft", "remove-peer"], "--peer-id"),
        (["leave", "--http-addr", "nohost"], "--http-addr"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(argv: list[str], words: str, capsys) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("dkron: error: ")
    assert words in err
    assert "selfcheck" not in err


def test_real_process_errors_never_show_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "dkron.yml"
    bad.write_text("server: true\nrpc-port: [\n")
    for argv in (["agent", "--config", str(bad)], ["agent", "--http-addr", "x"], ["nope"]):
        proc = subprocess.run(
            [sys.executable, str(REPO / "dkron.py"), *argv],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.stderr.startswith("dkron: error: ") and proc.stderr.count("\n") == 1
    proc = subprocess.run(
        [sys.executable, str(REPO / "dkron.py"), "agent", "--config", str(bad)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert f"config file {bad}:2: " in proc.stderr


# -- agent -------------------------------------------------------------------------------------


@pytest.fixture
def fake_agent(monkeypatch) -> Iterator[dict]:
    """Replace dkron_pkg.agent with a stub that records what the CLI hands it."""
    seen: dict = {}

    def run_agent(config: Config, reload=None) -> int:
        seen["config"] = config
        seen["reload"] = reload
        return 7

    module = types.ModuleType("dkron_pkg.agent")
    module.run_agent = run_agent  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dkron_pkg.agent", module)
    for name in list(__import__("os").environ):
        if name.startswith("DKRON_"):
            monkeypatch.delenv(name)
    yield seen


def test_agent_flags_override_only_when_given(tmp_path: Path, fake_agent, monkeypatch, capsys):
    conf = tmp_path / "dkron.yml"
    conf.write_text("server: true\nrpc-port: 7001\nregion: file\njoin: [a:1]\nui: false\n")
    monkeypatch.setenv("DKRON_REGION", "env")
    monkeypatch.setenv("DKRON_DATACENTER", "env-dc")
    argv = [
        "agent",
        "--config",
        str(conf),
        "--datacenter",
        "flag-dc",
        "--tag",
        "tier=web",
        "--tag",
        "zone=a",
        "--join",
        "b:2",
        "--join",
        "c:3",
        "--bootstrap-expect=1",
        "--enable-prometheus",
        "--http-addr",
        ":8080",
    ]
    code, _, err = run(argv, capsys)
    assert code == 7
    cfg = fake_agent["config"]
    assert cfg.server is True and cfg.ui is False  # from the file: no flag given
    assert cfg.rpc_port == 7001
    assert cfg.region == "env"  # environment over file
    assert cfg.datacenter == "flag-dc"  # flag over environment
    assert cfg.tags == {"tier": "web", "zone": "a"}
    assert cfg.join == ["b:2", "c:3"]
    assert (cfg.bootstrap_expect, cfg.enable_prometheus) == (1, True)
    assert cfg.http_listen() == ("0.0.0.0", 8080)
    assert cfg.config_file == str(conf)
    assert err == ""


def test_agent_bool_flag_can_be_turned_off(tmp_path: Path, fake_agent, capsys) -> None:
    conf = tmp_path / "dkron.json"
    conf.write_text('{"server": true}')
    run(["agent", "--config", str(conf), "--server=false", "--ui", "false"], capsys)
    assert fake_agent["config"].server is False
    assert fake_agent["config"].ui is False


def test_agent_reload_rereads_the_file_keeping_the_flags(tmp_path: Path, fake_agent, capsys):
    conf = tmp_path / "dkron.yml"
    conf.write_text("tags: {tier: old}\nregion: r1\n")
    run(["agent", "--config", str(conf), "--region", "flag"], capsys)
    conf.write_text("tags: {tier: new}\nregion: r2\n")
    fresh = fake_agent["reload"]()
    assert fresh is not fake_agent["config"]
    assert fresh.tags == {"tier": "new"}
    assert fresh.region == "flag"


def test_agent_prints_config_warnings(tmp_path: Path, fake_agent, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DKRON_SERVR", "true")
    code, _, err = run(["agent", "--data-dir", str(tmp_path)], capsys)
    assert code == 7
    assert err.startswith("dkron: warning: environment variable DKRON_SERVR")
    assert "DKRON_SERVER" in err


def test_agent_missing_from_the_build_is_a_clear_error(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "dkron_pkg.agent", None)
    code, _, err = run(["agent", "--data-dir", "x"], capsys)
    assert code == 1
    assert (
        err == "dkron: error: the agent is not part of this build (dkron_pkg/agent.py is missing)\n"
    )


def test_agent_crash_is_one_line(fake_agent, capsys) -> None:
    def broken(config, reload=None):
        raise RuntimeError("boom\nsecond line")

    sys.modules["dkron_pkg.agent"].run_agent = broken  # type: ignore[attr-defined]
    code, _, err = run(["agent"], capsys)
    assert (code, err) == (1, "dkron: error: RuntimeError: boom\n")


# -- crontab -----------------------------------------------------------------------------------


def test_crontab_hands_the_rest_of_argv_over(monkeypatch, capsys) -> None:
    seen = {}
    module = types.ModuleType("crontab_compat.cli")
    module.main = lambda argv: seen.setdefault("argv", argv) and 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "crontab_compat.cli", module)
    code = main(["crontab", "import", "/etc/crontab", "--dry-run", "--tag", "x"])
    assert seen["argv"] == ["import", "/etc/crontab", "--dry-run", "--tag", "x"]
    assert code == 3


def test_crontab_missing_from_the_build(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "crontab_compat.cli", None)
    code, _, err = run(["crontab", "check", "x"], capsys)
    assert (code, err) == (1, "dkron: error: the crontab commands are not part of this build\n")


# -- leave and raft, against a stand-in agent API ----------------------------------------------


class _FakeAgent(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, str, str]]] = []
    answers: ClassVar[dict[tuple[str, str], tuple[int, bytes]]] = {}

    def _answer(self) -> None:
        type(self).requests.append((self.command, self.path, self.headers.get("Authorization", "")))
        status, body = self.answers.get((self.command, self.path), (404, b'{"error":"no route"}'))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def agent_api() -> Iterator[tuple[str, type[_FakeAgent]]]:
    handler = type("Handler", (_FakeAgent,), {"requests": [], "answers": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


PEERS = [
    {
        "node": "node-a",
        "id": "node-a",
        "address": "10.0.0.1:6868",
        "state": "leader",
        "voter": True,
    },
    {"node": "b", "id": "b", "address": "10.0.0.22:6868", "state": "follower", "voter": False},
]


def test_raft_list_peers_prints_dkrons_table(agent_api, capsys) -> None:
    addr, handler = agent_api
    handler.answers[("GET", "/v1/raft/peers")] = (200, json.dumps(PEERS).encode())
    code, out, _ = run(["raft", "list-peers", "--http-addr", addr, "--api-token", "s3"], capsys)
    assert code == 0
    assert out.splitlines() == [
        "Node    ID      Address         State     Voter",
        "node-a  node-a  10.0.0.1:6868   leader    true",
        "b       b       10.0.0.22:6868  follower  false",
    ]
    assert handler.requests == [("GET", "/v1/raft/peers", "Bearer s3")]


def test_raft_remove_peer_and_leave(agent_api, capsys) -> None:
    addr, handler = agent_api
    handler.answers[("DELETE", "/v1/raft/peers/node%2F1")] = (200, b"")
    handler.answers[("POST", "/v1/leave")] = (200, b"{}")
    code, out, _ = run(["raft", "remove-peer", "--peer-id", "node/1", "--http-addr", addr], capsys)
    assert (code, out) == (0, "Removed peer with id node/1\n")
    code, out, err = run(["leave", "--http-addr", addr, "--rpc-addr", "10.0.0.1:6868"], capsys)
    assert code == 0 and "leave" in out.lower()
    assert "--rpc-addr is accepted for compatibility" in err
    assert [r[:2] for r in handler.requests] == [
        ("DELETE", "/v1/raft/peers/node%2F1"),
        ("POST", "/v1/leave"),
    ]
    assert handler.requests[0][2] == ""  # no token given, none sent


def test_api_token_comes_from_the_environment(agent_api, monkeypatch, capsys) -> None:
    addr, handler = agent_api
    handler.answers[("GET", "/v1/raft/peers")] = (200, b"[]")
    monkeypatch.setenv("DKRON_API_TOKEN", "from-env")
    code, out, _ = run(["raft", "list-peers", "--http-addr", addr], capsys)
    assert code == 0 and out.startswith("Node")
    assert handler.requests[0][2] == "Bearer from-env"


def test_agent_refusal_is_one_line_with_the_reason(agent_api, capsys) -> None:
    addr, handler = agent_api
    handler.answers[("GET", "/v1/raft/peers")] = (401, b'{"error":"missing or bad token"}')
    code, _, err = run(["raft", "list-peers", "--http-addr", addr], capsys)
    assert code == 1
    assert err.startswith("dkron: error: GET http://") and err.count("\n") == 1
    assert "401" in err and "missing or bad token" in err and "--api-token" in err
    code, _, err = run(["raft", "remove-peer", "--peer-id", "zz", "--http-addr", addr], capsys)
    assert code == 1 and "404" in err and "no route" in err


def test_unreachable_agent(capsys) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        code, _, err = run(["leave", "--http-addr", f"127.0.0.1:{port}"], capsys)
    assert code == 1
    assert err.startswith(
        f"dkron: error: cannot reach the agent at http://127.0.0.1:{port}/v1/leave"
    )


def test_wildcard_http_addr_means_this_host() -> None:
    from dkron_pkg.cli import api_base_url

    assert api_base_url(":8080") == "http://127.0.0.1:8080"
    assert api_base_url("0.0.0.0:1") == "http://127.0.0.1:1"
    assert api_base_url("[::1]:2") == "http://[::1]:2"
    assert api_base_url("https://dkron.example/") == "https://dkron.example"


def test_missing_dependency_names_it_and_the_way_out(fake_agent, capsys) -> None:
    def needs_croniter(config, reload=None):
        raise ModuleNotFoundError("No module named 'croniter'", name="croniter")

    sys.modules["dkron_pkg.agent"].run_agent = needs_croniter  # type: ignore[attr-defined]
    code, _, err = run(["agent"], capsys)
    assert code == 1
    assert err.startswith("dkron: error: missing Python module 'croniter': install")
    assert "dkron.pyz" in err and err.count("\n") == 1
