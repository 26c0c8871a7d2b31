"""Helpers for the browser tests of the web UI: a real agent process and headless Chromium.

The agent is started the way a user starts it (`python3 dkron.py agent --server ...`) on free
127.0.0.1 ports with its own data folder. Chromium is Debian's `/usr/bin/chromium` (installed
by `.ci/install-system-deps`), driven by Playwright's sync API without downloading browsers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT = 30.0
ZERO_TIME = "0001-01-01T00:00:00Z"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_path() -> str:
    """Debian's Chromium; a clear failure (not a skip) when the system package is missing."""
    found = os.environ.get("DKRON_TEST_CHROMIUM") or next(
        (p for p in CHROMIUM_CANDIDATES if os.path.exists(p)), shutil.which("chromium")
    )
    if not found:
        raise RuntimeError(
            "Chromium is not installed: run .ci/install-system-deps (Debian packages "
            "'chromium' and 'chromium-driver') before the browser tests"
        )
    return found


class ApiCallError(Exception):
    """A non-2xx answer from the agent, with its status and body."""

    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class Agent:
    """One `dkron.py agent --server --bootstrap-expect 1` process on free local ports."""

    def __init__(self, workdir: Path, token: str = "", name: str = "ui-node"):
        self.workdir = workdir
        self.token = token
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "agent.log"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            str(REPO / "dkron.py"),
            "agent",
            "--server",
            "--bootstrap-expect",
            "1",
            "--node-name",
            self.name,
            "--http-addr",
            f"127.0.0.1:{self.port}",
            "--bind-addr",
            f"127.0.0.1:{free_port()}",
            "--rpc-port",
            str(free_port()),
            "--data-dir",
            str(self.workdir / "data"),
        ]
        if self.token:
            cmd += ["--api-token", self.token]
        return cmd

    def start(self) -> Agent:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("DKRON_API_TOKEN", None)
        self.proc = subprocess.Popen(
            self.command(),
            cwd=str(self.workdir),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self._healthy() and self._leader_known():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"agent not serving after {START_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/health", timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def _leader_known(self) -> bool:
        try:
            self.call("GET", "/v1/leader")
            return True
        except (ApiCallError, OSError):
            return False

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """JSON API call with the agent's token; raises ApiCallError on non-2xx."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                text = r.read().decode()
        except urllib.error.HTTPError as e:
            raise ApiCallError(e.code, e.read().decode(errors="replace")) from None
        return json.loads(text) if text.strip() else None

    def create_job(self, name: str, command: str = "echo hi", **fields: Any) -> dict:
        job = {
            "name": name,
            "schedule": "@every 1h",
            "executor": "shell",
            "executor_config": {"command": command, "shell": "true"},
        }
        job.update(fields)
        return self.call("POST", "/v1/jobs", job)

    def executions(self, name: str) -> list[dict]:
        return self.call("GET", f"/v1/jobs/{name}/executions") or []

    def wait_for(self, predicate: Any, timeout: float = 15.0, what: str = "condition") -> Any:
        """Poll predicate() until it returns something truthy; bounded by timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Browser:
    """Headless Debian Chromium through Playwright with a fresh profile per instance."""

    def __init__(self, profile_dir: Path):
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        try:
            self.context = self._pw.chromium.launch_persistent_context(
                str(profile_dir),
                executable_path=chromium_path(),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 900},
                timezone_id="America/New_York",
            )
        except Exception:
            self._pw.stop()
            raise
        self.context.set_default_timeout(15_000)
        self.page_errors: list[str] = []

    def new_page(self) -> Any:
        page = self.context.new_page()
        page.on("pageerror", lambda err: self.page_errors.append(str(err)))
        page.on("console", self._on_console)
        return page

    def _on_console(self, message: Any) -> None:
        """Console errors fail the test, except API answers the UI handles (401, 404, 400)."""
        if message.type != "error":
            return
        if "/v1/" in (message.location or {}).get("url", ""):
            return
        self.page_errors.append(f"console: {message.text} at {message.location}")

    def close(self) -> None:
        try:
            self.context.close()
        finally:
            self._pw.stop()


# ----- fixture bodies (each test module wraps them in its own pytest fixtures) -------------------


def agent_fixture(workdir: Path, token: str = "") -> Any:
    """Yield a running single-node agent; stop it afterwards."""
    running = Agent(workdir, token=token).start()
    try:
        yield running
    finally:
        running.stop()


def browser_fixture(profile_dir: Path) -> Any:
    """Yield headless Chromium with a fresh profile; close it afterwards."""
    opened = Browser(profile_dir)
    try:
        yield opened
    finally:
        opened.close()


def page_fixture(browser: Browser, tmp_path: Path) -> Any:
    """Yield a new tab; its last state is saved as tmp_path/final.png and script errors fail."""
    tab = browser.new_page()
    browser.page_errors.clear()
    try:
        yield tab
    finally:
        tab.screenshot(path=str(tmp_path / "final.png"), full_page=True)
        tab.close()
    assert not browser.page_errors, f"JavaScript errors in the page: {browser.page_errors}"


def screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    """Save a full-page screenshot under the test's tmp_path and return its path."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    return path
