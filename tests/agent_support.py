"""Helpers for tests that talk to a real agent over HTTP on 127.0.0.1."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dkron_pkg.agent import Agent
from dkron_pkg.config import Config

ROOT = Path(__file__).resolve().parent.parent
# The cluster key every AgentProcess gets unless a test gives its own (or key=None: a lone
# server then makes its own key, an agent without one refuses to start).
TEST_KEY = "dGVzdC1jbHVzdGVyLWtleQ=="  # base64 of b"test-cluster-key"
KEY_FLAGS = ("--encrypt", "--encrypt-file", "--dev-insecure")
RUNNING_AGENTS: weakref.WeakSet[AgentProcess] = weakref.WeakSet()  # logs shown on a failed wait
API_LINE = re.compile(r"API on http://[^\s:]+:(\d+), gossip on [^\s:]+:(\d+), RPC on [^\s:]+:(\d+)")


@dataclass
class Reply:
    status: int
    body: bytes
    headers: Any

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


class Client:
    """A tiny HTTP client that returns status, body and headers for every answer."""

    def __init__(self, base: str, token: str = ""):
        self.base = base.rstrip("/")
        self.token = token

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        data = raw
        hdrs = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if self.token:
            hdrs.setdefault("Authorization", f"Bearer {self.token}")
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                return Reply(resp.status, resp.read(), resp.headers)
        except urllib.error.HTTPError as e:
            return Reply(e.code, e.read(), e.headers)

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("PUT", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Reply:
        return self.request("DELETE", path, **kw)

    def wait_for(self, predicate, timeout: float = 15.0, interval: float = 0.05) -> Any:
        """Poll until predicate() is truthy; return its value or fail after `timeout`."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(
            f"condition not met within {timeout}s (last value: {last!r})\n{thread_stacks()}"
        )


def thread_stacks() -> str:
    """Where every thread of this process stands (an in-process agent that stopped launching
    shows here which of its threads waits on what), then the last lines of every agent process
    this test process has running."""
    names = {t.ident: t.name for t in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():
        stack = "".join(traceback.format_stack(frame, limit=8))
        parts.append(f"--- thread {names.get(ident, ident)}\n{stack}")
    for agent in list(RUNNING_AGENTS):
        if agent.proc is not None and agent.proc.poll() is None:
            tail = "\n".join(agent.log().splitlines()[-40:])
            parts.append(f"--- agent process {agent.node} (log {agent.log_path})\n{tail}\n")
    return "".join(parts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_config(data_dir: Path, **overrides: Any) -> Config:
    values = {
        "server": True,
        "bootstrap_expect": 1,
        "data_dir": str(data_dir),
        "node_name": "node1",
        "http_addr": "127.0.0.1:0",
        "bind_addr": "127.0.0.1:0",
        "rpc_port": 0,
        "profile": "local",
        "shutdown_timeout": "5s",
    }
    values.update(overrides)
    return Config(**values)


def start_agent(data_dir: Path, **overrides: Any) -> tuple[Agent, Client]:
    agent = Agent(make_config(data_dir, **overrides))
    agent.start()
    client = Client(f"http://127.0.0.1:{agent.http_port}", overrides.get("api_token", ""))
    return agent, client


def shell_job(name: str, command: str, **fields: Any) -> dict:
    return {
        "name": name,
        "schedule": fields.pop("schedule", "@manually"),
        "executor": "shell",
        "executor_config": {"command": command, "shell": "true", **fields.pop("config", {})},
        **fields,
    }


class AgentProcess:
    """`python3 dkron.py agent ...` as a real child process.

    The first start binds every port to 0 and learns what the agent got from its start-up log
    line, so parallel tests never race for a port; restarts reuse those ports, so
    a restarted node keeps its addresses as it would in production.
    """

    _serial = itertools.count(1)

    def __init__(
        self,
        data_dir: Path,
        *extra: str,
        node: str = "node1",
        env=None,
        server: bool = True,
        expect: int = 1,
        key: str | None = TEST_KEY,
    ):
        self.port = 0
        self.gossip_port = 0
        self.rpc_port = 0
        self.node = node
        self.data_dir = data_dir
        self.extra = extra
        self.server = server
        self.expect = expect
        self.key = key
        self.env = {**os.environ, **(env or {})}
        self.log_path = data_dir.parent / f"{node}-{next(self._serial)}.log"
        self.proc: subprocess.Popen | None = None
        self.client = Client("http://127.0.0.1:0")

    @property
    def args(self) -> list[str]:
        return [
            sys.executable,
            str(ROOT / "dkron.py"),
            "agent",
            *(("--server", "--bootstrap-expect", str(self.expect)) if self.server else ()),
            "--node-name",
            self.node,
            "--data-dir",
            str(self.data_dir),
            "--http-addr",
            f"127.0.0.1:{self.port}",
            "--bind-addr",
            f"127.0.0.1:{self.gossip_port}",
            "--rpc-port",
            str(self.rpc_port),
            "--profile",
            "local",
            *self._key_flags(),
            *self.extra,
        ]

    def _key_flags(self) -> tuple[str, ...]:
        """The shared test key, unless the test chose how this node gets its key."""
        if self.key is None or any(a.split("=")[0] in KEY_FLAGS for a in self.extra):
            return ()
        return ("--encrypt", self.key)

    def start(self, timeout: float = 30.0) -> AgentProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(
            self.args, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir.parent, env=self.env
        )
        log.close()
        RUNNING_AGENTS.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited early:\n{self.log()}")
            if not self.port:
                found = API_LINE.search(self.log()[offset:])
                if found:
                    self.port = int(found.group(1))
                    self.gossip_port, self.rpc_port = int(found.group(2)), int(found.group(3))
                    self.client.base = f"http://127.0.0.1:{self.port}"
            if self.port:
                try:
                    r = self.client.get("/health")
                    if r.status == 200 and r.headers.get("X-Whom") == self.node:
                        return self
                except OSError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"agent did not answer /health:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


def stop_together(nodes: list[AgentProcess | None]) -> None:
    """SIGTERM every running node at once, then wait for each (a cluster's teardown takes as
    long as its slowest node, not the sum)."""
    running = [n for n in nodes if n is not None and n.proc is not None and n.proc.poll() is None]
    for node in running:
        node.signal(signal.SIGTERM)
    for node in running:
        node.stop()


def gossip_seed(node: AgentProcess) -> str:
    """The address a node joining `node` gives to --join."""
    return f"127.0.0.1:{node.gossip_port}"


def peers_of(node: AgentProcess) -> dict[str, bool]:
    """{name: voter} as the node's /v1/raft/peers shows it ({} while it cannot answer)."""
    r = node.client.get("/v1/raft/peers")
    return {p["id"]: p["voter"] for p in r.json()} if r.status == 200 else {}


def job_names(node: AgentProcess) -> set[str]:
    """The names in the node's /v1/jobs (empty while it cannot answer)."""
    r = node.client.get("/v1/jobs")
    return {j["name"] for j in r.json()} if r.status == 200 else set()
