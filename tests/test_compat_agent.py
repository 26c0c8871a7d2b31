"""A newcomer's first start: reserved tags and busy ports stop the agent with a message that
says what to do (real processes); shutdown logs say what happens in plain words."""

from __future__ import annotations

import logging
import re
import socket
import subprocess

import pytest
from agent_support import AgentProcess, start_agent


def run_to_exit(agent: AgentProcess, timeout: float = 30) -> tuple[int, str]:
    """Start the agent process and wait for it to stop by itself."""
    agent.data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        agent.args,
        cwd=agent.data_dir.parent,
        env=agent.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, proc.stdout


@pytest.mark.parametrize(
    ("args", "env", "key", "advice"),
    [
        (("--tag", "role=worker"), {}, "role", "--tag kind=worker"),
        ((), {"DKRON_TAGS": "zone=a,dc=paris"}, "dc", "--datacenter"),
    ],
)
def test_a_reserved_tag_stops_the_agent(tmp_path, args, env, key, advice) -> None:
    agent = AgentProcess(tmp_path / "data", *args, env=env)
    code, out = run_to_exit(agent)
    assert code == 2, out
    assert f'tag "{key}" is reserved: the agent sets it itself' in out
    assert advice in out
    assert "Traceback" not in out


def _taken(kind: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        sock.listen()
    return sock


@pytest.mark.parametrize(
    ("attribute", "kind", "message"),
    [
        ("port", socket.SOCK_STREAM, "the HTTP API port {p} is already in use"),
        ("rpc_port", socket.SOCK_STREAM, "the RPC port {p} is already in use"),
        ("gossip_port", socket.SOCK_DGRAM, "the gossip port {p} (TCP and UDP) is already in use"),
        ("gossip_port", socket.SOCK_STREAM, "the gossip port {p} (TCP and UDP) is already in use"),
    ],
)
def test_a_busy_port_stops_the_agent_naming_it_and_its_flag(
    tmp_path, attribute, kind, message
) -> None:
    flags = {"port": "--http-addr", "rpc_port": "--rpc-port", "gossip_port": "--bind-addr"}
    with _taken(kind) as other:
        port = other.getsockname()[1]
        agent = AgentProcess(tmp_path / "data")
        setattr(agent, attribute, port)
        code, out = run_to_exit(agent)
    assert code == 1, out
    assert message.format(p=port) in out
    assert f"move it with {flags[attribute]}" in out
    assert "Traceback" not in out and "Errno" not in out
    assert "agent node1 started" not in out  # stopped before any part ran


def test_shutdown_logs_say_what_is_left_undone_in_plain_words(tmp_path, caplog) -> None:
    agent, _ = start_agent(tmp_path / "data")
    agent.stop()
    with caplog.at_level(logging.INFO, logger="dkron.agent"):
        agent.on_leadership(True)  # a leadership change that arrives while shutting down
    (line,) = [r.getMessage() for r in caplog.records if "shutting down" in r.getMessage()]
    assert line == "shutting down: taking up the leadership is left to the next leader"
    assert not re.search(r"\b_\w+", line)  # no internal (underscored) names
