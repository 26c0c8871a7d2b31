"""First commands: `dkron crontab import/check` read a file as cron would, the clients find the
API where the agent was configured, and every option says what it does."""

from __future__ import annotations

import argparse
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from test_crontab_cli import FakeDkron

import dkron_pkg.cli as dkron_cli
from crontab_compat.cli import build_parser as crontab_parser
from crontab_compat.cli import main as crontab_main
from crontab_compat.users import current_user, fake_lookup

ME = current_user()
USERS = fake_lookup({ME: "/home/me", "root": "/root", "alice": "/home/alice"})
PERSONAL = "MAILTO=me@example.org\n*/5 * * * * echo hello from my crontab\n"


def crontab(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = crontab_main(list(argv), stdout=out, stderr=err, lookup=USERS)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def api():
    with FakeDkron() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _no_agent_settings(monkeypatch, tmp_path):
    """No DKRON_* variables or config files of the machine running the tests."""
    for name in ("DKRON_HTTP_ADDR", "DKRON_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


# ----- whose crontab a file is ------------------------------------------------------------


def test_a_personal_crontab_file_is_the_invoking_users(api, tmp_path) -> None:
    tab = tmp_path / "mycrontab"
    tab.write_text(PERSONAL)
    code, out, err = crontab("check", str(tab))
    assert code == 0, out + err
    assert "1 usable entries, 0 error(s)" in out
    code, out, err = crontab("import", str(tab), "--api", api.url)
    assert code == 0, out + err
    (job,) = api.jobs.values()
    assert job["executor_config"]["command"] == "echo hello from my crontab"
    assert job["metadata"]["crontab_user"] == ME


def test_cron_places_decide_the_kind(api, tmp_path) -> None:
    (tmp_path / "etc" / "cron.d").mkdir(parents=True)
    (tmp_path / "etc" / "crontab").write_text("0 1 * * * root nightly\n")
    (tmp_path / "etc" / "cron.d" / "app").write_text("0 2 * * * alice app-job\n")
    (tmp_path / "spool" / "crontabs").mkdir(parents=True)
    (tmp_path / "spool" / "crontabs" / "alice").write_text("0 3 * * * alice-own\n")
    paths = [
        tmp_path / "etc" / "crontab",
        tmp_path / "etc" / "cron.d",
        tmp_path / "spool" / "crontabs",
    ]
    code, out, err = crontab("import", *map(str, paths), "--api", api.url)
    assert code == 0, out + err
    found = {
        j["executor_config"]["command"]: j["metadata"]["crontab_user"] for j in api.jobs.values()
    }
    assert found == {"nightly": "root", "app-job": "alice", "alice-own": "alice"}


def test_system_and_user_flags_override_the_place(api, tmp_path) -> None:
    tab = tmp_path / "copied-from-a-server"
    tab.write_text("0 1 * * * root nightly\n")
    code, out, _ = crontab("check", "--system", str(tab))
    assert code == 0 and "0 error(s)" in out
    code, out, _ = crontab("check", "--user", "alice", str(tab))
    assert code == 0, out  # alice's crontab whose command starts with "root"
    code, _, err = crontab("check", "--user", "alice", "--system", str(tab))
    assert code == 2 and "not allowed with argument" in err


def test_a_system_crontab_read_as_personal_warns(tmp_path) -> None:
    tab = tmp_path / "server-crontab"
    tab.write_text("0 1 * * * root nightly\n")
    code, out, _ = crontab("check", str(tab))
    assert code == 0  # cron would run "root nightly": a warning, not an error
    assert "user name as command: 'root' is a user, not a command" in out
    assert "give --system" in out


def test_a_personal_crontab_read_as_system_says_so(tmp_path) -> None:
    (tmp_path / "cron.d").mkdir()
    tab = tmp_path / "cron.d" / "mine"
    tab.write_text(PERSONAL)
    code, out, _ = crontab("check", str(tab))
    assert code == 1
    assert "bad username: no such user 'echo'; 'echo' looks like a command" in out
    assert "personal crontab" in out and "--user NAME" in out


# ----- finding the API --------------------------------------------------------------------


def test_crontab_finds_the_api_in_dkron_http_addr(api, tmp_path, monkeypatch) -> None:
    tab = tmp_path / "mycrontab"
    tab.write_text(PERSONAL)
    monkeypatch.setenv("DKRON_HTTP_ADDR", api.url.removeprefix("http://"))
    code, out, err = crontab("import", str(tab))
    assert code == 0, out + err
    assert len(api.jobs) == 1


def test_crontab_finds_the_api_and_token_in_the_agents_config_file(tmp_path) -> None:
    tab = tmp_path / "mycrontab"
    tab.write_text(PERSONAL)
    with FakeDkron(token="s3cret") as api:
        conf = tmp_path / "dkron.yml"
        conf.write_text(f"http-addr: {api.url.removeprefix('http://')}\napi-token: s3cret\n")
        code, out, err = crontab("import", str(tab), "--config", str(conf))
        assert code == 0, out + err
        assert len(api.jobs) == 1
        # The agent's own search path: ./config/dkron.yml
        (tmp_path / "config").mkdir()
        (tmp_path / "config" / "dkron.yml").write_text(conf.read_text())
        code, out, err = crontab("export")
        assert code == 0, err
        assert "echo hello from my crontab" in out


def test_an_unreachable_api_says_where_its_address_came_from(tmp_path, monkeypatch) -> None:
    tab = tmp_path / "mycrontab"
    tab.write_text(PERSONAL)
    code, _, err = crontab("import", str(tab))
    assert code == 1
    assert "cannot reach the Dkron API at http://127.0.0.1:8080" in err
    assert "address from the default address; give --api" in err
    monkeypatch.setenv("DKRON_HTTP_ADDR", "127.0.0.1:9")
    code, _, err = crontab("import", str(tab))
    assert code == 1 and "http://127.0.0.1:9" in err and "from DKRON_HTTP_ADDR" in err


class _Leave(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str]]] = []

    def do_POST(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization", "")))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


def test_dkron_leave_finds_the_agent_through_its_config_file(tmp_path, capsys) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Leave)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        conf = tmp_path / "agent.json"
        conf.write_text(
            json.dumps({"http-addr": f"0.0.0.0:{server.server_address[1]}", "api-token": "t0k"})
        )
        code = dkron_cli.main(["leave", "--config", str(conf)])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert code == 0, capsys.readouterr().err
    assert _Leave.seen == [("/v1/leave", "Bearer t0k")]


# ----- help -------------------------------------------------------------------------------


def _parsers(parser: argparse.ArgumentParser, path: str):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if name != "crontab":  # handed to the crontab parser, checked below
                    yield from _parsers(sub, f"{path} {name}")


@pytest.mark.parametrize(
    "parser", [dkron_cli.build_parser(), crontab_parser()], ids=["dkron", "dkron crontab"]
)
def test_every_option_of_every_command_has_help(parser) -> None:
    missing = []
    for path, sub in _parsers(parser, parser.prog):
        text = sub.format_help()
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            name = action.option_strings[-1] if action.option_strings else action.dest
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {name}")
            elif action.help.split()[0] not in text:
                missing.append(f"{path} {name} (not shown in --help)")
    assert missing == []
