"""CLI tests against an in-test fake of the agent's job endpoints (real HTTP on 127.0.0.1).

The fake validates what Dkron validates for these calls (slug-valid name, string-only
executor_config) and can be told to fail a chosen write, to exercise the importer's rollback.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import pytest

from crontab_compat.cli import main
from crontab_compat.users import current_user, fake_lookup

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "crontab")
USERS = fake_lookup({"root": "/root", "alice": "/home/alice", "nobody": "/nonexistent"})
NAME_OK = re.compile(r"^[a-z0-9_-]+$")


class FakeDkron:
    def __init__(self, token: str | None = None) -> None:
        self.jobs: dict[str, dict] = {}
        self.token = token
        self.calls: list[tuple[str, str]] = []
        self.fail: Callable[[str, str], bool] = lambda method, name: False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, code: int, body) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if fake.token and self.headers.get("Authorization") != f"Bearer {fake.token}":
                    self._send(401, {"error": "unauthorized"})
                    return False
                return True

            def do_GET(self) -> None:
                fake.calls.append(("GET", self.path))
                if self._authorized() and self.path.split("?")[0] == "/v1/jobs":
                    self._send(200, [dict(job, id=name) for name, job in fake.jobs.items()])
                elif self.path.split("?")[0] != "/v1/jobs":
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                if not self._authorized():
                    return
                length = int(self.headers.get("Content-Length") or 0)
                job = json.loads(self.rfile.read(length))
                name = job.get("name", "")
                fake.calls.append(("POST", name))
                if fake.fail("POST", name):
                    self._send(500, {"error": "injected failure"})
                    return
                if not NAME_OK.match(name):
                    self._send(400, {"error": f"Job validation failed: name {name!r}"})
                    return
                config = job.get("executor_config") or {}
                if not all(isinstance(v, str) for v in config.values()):
                    self._send(400, {"error": "executor_config values must be strings"})
                    return
                fake.jobs[name] = job
                self._send(201, job)

            def do_DELETE(self) -> None:
                if not self._authorized():
                    return
                name = urllib.parse.unquote(self.path.rsplit("/", 1)[-1])
                fake.calls.append(("DELETE", name))
                if fake.fail("DELETE", name):
                    self._send(500, {"error": "injected failure"})
                    return
                if name not in fake.jobs:
                    self._send(404, {"error": "job not found"})
                    return
                self._send(200, fake.jobs.pop(name))

        return Handler


@pytest.fixture
def api():
    with FakeDkron() as fake:
        yield fake


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, lookup=USERS)
    return code, out.getvalue(), err.getvalue()


def imported(api: FakeDkron, path: str) -> list[dict]:
    return [j for j in api.jobs.values() if j["metadata"]["crontab_file"] == path]


def test_import_debian_default_crontab(api: FakeDkron) -> None:
    path = os.path.join(FIXTURES, "debian-etc-crontab")
    code, out, err = run(
        "import", "--system", path, "--api", api.url, "--host", "web1", "--timezone", "UTC"
    )
    assert code == 0, out + err
    assert "4 to create" in out and "applied" in out
    assert "runs at 06:25 every day" in out
    jobs = sorted(api.jobs.values(), key=lambda j: int(j["metadata"]["crontab_line"]))
    assert [j["schedule"] for j in jobs] == [
        "@crontab 17 * * * *",
        "@crontab 25 6 * * *",
        "@crontab 47 6 * * 7",
        "@crontab 52 6 1 * *",
    ]
    hourly = jobs[0]
    assert hourly["executor"] == "shell"
    config = hourly["executor_config"]
    assert config["command"] == "cd / && run-parts --report /etc/cron.hourly"
    assert config["shell"] == "true" and config["cwd"] == "/root"
    assert json.loads(config["env_json"])["PATH"].startswith("/usr/local/sbin")
    assert hourly["metadata"]["crontab_user"] == "root"
    assert hourly["timezone"] == "UTC"
    assert all(NAME_OK.match(name) for name in api.jobs)


def test_reimport_changes_nothing_and_edits_update_or_delete(api: FakeDkron, tmp_path) -> None:
    path = tmp_path / "app"
    path.write_text("MAILTO=a@example.org\n0 1 * * * root one\n0 2 * * * root two\n")
    assert run("import", "--system", str(path), "--api", api.url, "--host", "h")[0] == 0
    names = set(api.jobs)
    code, out, _ = run("import", "--system", str(path), "--api", api.url, "--host", "h")
    assert code == 0 and "0 to create, 0 to update, 0 to delete, 2 unchanged" in out
    assert set(api.jobs) == names
    # Changing the environment updates in place; removing a line deletes its job.
    path.write_text("MAILTO=b@example.org\n0 1 * * * root one\n")
    code, out, _ = run("import", "--system", str(path), "--api", api.url, "--host", "h")
    assert code == 0 and "0 to create, 1 to update, 1 to delete" in out
    (job,) = api.jobs.values()
    assert job["owner_email"] == "b@example.org" and job["name"] in names


def test_jobs_of_other_files_and_hosts_are_left_alone(api: FakeDkron, tmp_path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text("0 1 * * * root one\n")
    second.write_text("0 2 * * * root two\n")
    run("import", "--system", str(first), str(second), "--api", api.url, "--host", "h")
    run("import", "--system", str(first), "--api", api.url, "--host", "other")
    assert len(api.jobs) == 3
    first.write_text("# emptied\n")
    code, out, _ = run("import", "--system", str(first), "--api", api.url, "--host", "h")
    assert code == 0 and "1 to delete" in out and len(api.jobs) == 2


def test_dry_run_changes_nothing(api: FakeDkron) -> None:
    code, out, _ = run("import", os.path.join(FIXTURES, "cron.d"), "--dry-run", "--api", api.url)
    assert code == 0
    assert "dry run: nothing changed" in out and "8 to create" in out
    assert "file skipped" in out  # backup.dpkg-dist has a dot in its name
    assert api.jobs == {} and [c[0] for c in api.calls] == ["GET"]


def test_strict_mode_imports_nothing_if_anything_is_rejected(api: FakeDkron, tmp_path) -> None:
    good = tmp_path / "good"
    good.write_text("0 1 * * * root fine\n")
    bad = tmp_path / "bad"
    bad.write_text("0 1 * * * root fine\n0 1 * * * mallory evil\n")
    code, out, _ = run("import", "--system", str(good), str(bad), "--api", api.url)
    assert code == 1
    assert f"{bad}:2: bad username: no such user 'mallory'" in out
    assert "nothing applied" in out
    assert api.jobs == {}


def test_cronie_dialect_skips_bad_lines_and_imports_the_rest(api: FakeDkron, tmp_path) -> None:
    tab = tmp_path / "tab"
    tab.write_text("CRON_TZ=Asia/Tokyo\n0 9 * * fri-sun root ok\n61 * * * * root bad\n")
    code, out, _ = run("import", "--system", str(tab), "--dialect", "cronie", "--api", api.url)
    assert code == 1  # something was rejected, the rest is imported
    assert "bad minute" in out
    (job,) = api.jobs.values()
    assert job["schedule"] == "@crontab 0 9 * * 5-7"
    assert job["timezone"] == "Asia/Tokyo"


@pytest.mark.parametrize(
    "content",
    [b"\x00\x01garbage\xff", b"total garbage here\n", b"* * * * * root x"],
    ids=["binary", "garbage", "no-final-newline"],
)
def test_bad_files_import_nothing(api: FakeDkron, tmp_path, content: bytes) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    code, out, err = run("import", "--system", str(path), "--api", api.url)
    assert code == 1 and api.jobs == {}
    assert str(path) in out and "Traceback" not in out + err


def test_rollback_when_a_write_fails_midway(api: FakeDkron, tmp_path) -> None:
    tab = tmp_path / "tab"
    tab.write_text("0 1 * * * root one\n0 2 * * * root two\n")
    run("import", "--system", str(tab), "--api", api.url, "--host", "h")
    before = json.loads(json.dumps(api.jobs))
    tab.write_text("MAILTO=x@example.org\n0 1 * * * root one\n0 3 * * * root three\n")
    calls = {"n": 0}

    def fail_second_write(method: str, name: str) -> bool:
        calls["n"] += 1
        return calls["n"] == 2

    api.fail = fail_second_write
    code, out, err = run("import", "--system", str(tab), "--api", api.url, "--host", "h")
    assert code == 1 and "applied" not in out.splitlines()[-1]
    assert "rolled back" in err and "injected failure" in err
    assert api.jobs == before


def test_api_unreachable_and_token(tmp_path) -> None:
    tab = tmp_path / "tab"
    tab.write_text("0 1 * * * root one\n")
    code, _, err = run("import", "--system", str(tab), "--api", "http://127.0.0.1:9")
    assert code == 1 and "cannot reach the Dkron API" in err
    with FakeDkron(token="s3cret") as api:
        code, _, err = run("import", "--system", str(tab), "--api", api.url)
        assert code == 1 and "HTTP 401" in err
        code, _, _ = run("import", "--system", str(tab), "--api", api.url, "--token", "s3cret")
        assert code == 0 and len(api.jobs) == 1


def test_pin_node_and_tags(api: FakeDkron, tmp_path) -> None:
    tab = tmp_path / "tab"
    tab.write_text("0 1 * * * root one\n")
    run("import", "--system", str(tab), "--api", api.url, "--pin-node", "web1")
    (job,) = api.jobs.values()
    assert job["tags"] == {"node": "web1:1"}
    assert job["metadata"]["crontab_host"] == "web1"
    code, _, err = run(
        "import", "--system", str(tab), "--api", api.url, "--tags", "role=web:2", "--host", "x"
    )
    assert code == 0
    assert any(j["tags"] == {"role": "web:2"} for j in api.jobs.values())
    code, _, err = run("import", "--system", str(tab), "--api", api.url, "--tags", "role")
    assert code == 2 and "bad tag" in err


def test_user_crontab_stdin_su_and_shell(api: FakeDkron) -> None:
    path = os.path.join(FIXTURES, "spool", "alice")
    code, out, _ = run("import", path, "--user", "alice", "--api", api.url)
    assert code == 0, out
    jobs = {j["metadata"]["crontab_line"]: j for j in imported(api, path)}
    mail = jobs["12"]["executor_config"]
    assert base64.b64decode(mail["payload"]).decode() == "line one\nline two\n"
    assert mail["command"] == 'echo "weekly" '
    assert jobs["11"]["executor_config"]["command"] == "date +%Y-%m-%d"
    assert jobs["9"]["schedule"] == "@reboot"
    assert jobs["4"]["owner_email"] == "alice@example.org"
    if current_user() != "alice":
        assert all(j["executor_config"]["su"] == "alice" for j in jobs.values())
    assert all(j["executor_config"]["cwd"] == "/home/alice" for j in jobs.values())


def test_check_command(tmp_path) -> None:
    code, out, _ = run("check", "--system", os.path.join(FIXTURES, "system-corpus"))
    assert code == 0 and "0 error(s)" in out and "star rule" in out
    bad = tmp_path / "bad"
    bad.write_text("* * * * * root ok\n*/0 * * * * root x\n")
    code, out, _ = run("check", "--system", str(bad))
    assert code == 1 and f"{bad}:2: bad minute" in out


def test_usage_errors() -> None:
    assert run("frobnicate")[0] == 2
    assert run("import")[0] == 2
    code, _, err = run("import", "--system", "x", "--dialect", "bsd")
    assert code == 2 and "invalid choice" in err


def test_export_round_trip(api: FakeDkron, tmp_path) -> None:
    corpus = os.path.join(FIXTURES, "system-corpus")
    assert run("import", "--system", corpus, "--api", api.url, "--host", "h")[0] == 0
    api.jobs["native"] = {
        "name": "native",
        "schedule": "@every 10m",
        "executor": "shell",
        "executor_config": {"command": "x"},
    }
    api.jobs["six"] = {
        "name": "six",
        "schedule": "0 30 4 * * *",
        "executor": "shell",
        "executor_config": {"command": "nightly", "su": "nobody"},
    }
    out_file = tmp_path / "exported"
    code, _, err = run("export", "--api", api.url, "--output", str(out_file))
    assert code == 0 and "1 job(s) have no crontab form" in err
    text = out_file.read_text()
    assert "30 4 * * * nobody nightly" in text
    assert "# not exported, no crontab form: native" in text
    # Importing the export gives the same schedules and commands back.
    fresh = FakeDkron()
    with fresh:
        assert (
            run("import", "--system", str(out_file), "--api", fresh.url, "--dialect", "cronie")[0]
            == 0
        )
        again = {(j["schedule"], j["executor_config"]["command"]) for j in fresh.jobs.values()}
    original = {(j["schedule"], j["executor_config"]["command"]) for j in api.jobs.values()}
    original.discard(("@every 10m", "x"))
    original.discard(("0 30 4 * * *", "nightly"))
    original.add(("@crontab 30 4 * * *", "nightly"))  # a native spec comes back as crontab
    assert again == original


def test_export_user_crontab_is_valid_for_debian(api: FakeDkron, tmp_path) -> None:
    path = os.path.join(FIXTURES, "spool", "alice")
    run("import", path, "--user", "alice", "--api", api.url)
    code, out, _ = run("export", "--api", api.url, "--user", "alice")
    assert code == 0
    assert "@daily date +\\%Y-\\%m-\\%d" in out
    assert 'echo "weekly" %line one%line two' in out
    tab = tmp_path / "tab"
    tab.write_text(out.replace("CRON_TZ=", "# CRON_TZ="))
    code, check_out, _ = run("check", str(tab), "--user", "alice")
    assert code == 0, check_out
    if shutil.which("crontab"):
        done = subprocess.run(
            ["crontab", "-n", str(tab)], capture_output=True, timeout=10, check=False
        )
        assert done.returncode == 0, done.stderr
