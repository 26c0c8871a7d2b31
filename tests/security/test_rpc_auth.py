"""Finding 1: RPC ran commands and committed jobs for any client, without the cluster key.

Every node now has a key (given, or made by a lone server at first start) and the RPC proof
is checked always, with or without TLS: a client without the key is refused at the
handshake (logged, counted), the connection is closed, nothing runs and nothing commits."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from agent_support import AgentProcess, shell_job

from dkron_pkg import rpc
from security.rpc_attacker import keyless_call, run_args

REFUSED = "handshake without the cluster key"


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def test_keyless_agent_run_on_a_default_lone_node_runs_nothing(tmp_path):
    """`dkron agent --server --bootstrap-expect 1`, nothing else: agent.run without the key."""
    marker = tmp_path / "pwned"
    node = AgentProcess(tmp_path / "data", key=None).start()
    try:
        job = shell_job("pwn", f"touch {marker}")
        answers = [keyless_call(node.rpc_port, "agent.run", run_args(job)) for _ in range(3)]
        assert answers == [None, None, None]  # closed on us, no reply
        time.sleep(1.0)  # a run that was started would have touched the file by now
        assert not marker.exists()
        assert wait_for(lambda: node.log().count(REFUSED) >= 1)
        refused = node.client.get("/debug/vars").json()["rpc_refused"]
        assert refused.get(REFUSED, 0) >= 3
        assert node.client.get("/v1/jobs").json() == []
    finally:
        node.stop()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "node.pem", folder / "node.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=node"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


def test_tls_without_a_ca_still_needs_the_cluster_key(tmp_path):
    """TLS without --rpc-tls-ca encrypts but does not authenticate the peer: the key must."""
    cert, key = _self_signed(tmp_path)
    marker = tmp_path / "pwned-over-tls"
    node = AgentProcess(
        tmp_path / "data", "--rpc-tls-cert", str(cert), "--rpc-tls-key", str(key), key=None
    ).start()
    try:
        job = shell_job("pwn", f"touch {marker}")
        assert keyless_call(node.rpc_port, "agent.run", run_args(job), tls=True) is None
        time.sleep(1.0)
        assert not marker.exists()
        assert wait_for(lambda: REFUSED in node.log())
        # The node's own key, over the same TLS, is accepted (the refusal is about the key).
        kept = base64.b64decode((tmp_path / "data" / "cluster.key").read_text().strip())
        from dkron_pkg.rpc_tls import load_tls

        friend = rpc.RpcClient(kept, tls=load_tls(str(cert), str(key), ""))
        try:
            assert friend.call(f"127.0.0.1:{node.rpc_port}", "node.ping") == {"name": "node1"}
        finally:
            friend.close()
    finally:
        node.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Three servers that take their key from DKRON_ENCRYPT_FILE (so none is on any command
    line); the test below sends what a stranger without the file can send."""
    base = tmp_path_factory.mktemp("keyed-cluster")
    key_file = base / "cluster.key"
    key_file.write_text(base64.b64encode(b"0123456789abcdef").decode() + "\n")
    key_file.chmod(0o600)
    env = {"DKRON_ENCRYPT_FILE": str(key_file)}
    first = AgentProcess(base / "s1", node="s1", expect=3, env=env, key=None).start()
    seed = f"127.0.0.1:{first.gossip_port}"
    nodes = [first] + [
        AgentProcess(
            base / f"s{i}", "--join", seed, node=f"s{i}", expect=3, env=env, key=None
        ).start()
        for i in (2, 3)
    ]
    try:
        for node in nodes:
            node.client.wait_for(lambda n=node: n.client.get("/v1/leader").status == 200, 30)
        yield nodes, key_file
    finally:
        for node in nodes:  # all at once: each graceful stop takes a few seconds
            if node.proc is not None and node.proc.poll() is None:
                node.signal(signal.SIGTERM)
        for node in nodes:
            node.stop()


def _leader_and_follower(nodes):
    name = nodes[0].client.get("/v1/leader").json()["Name"]
    leader = next(n for n in nodes if n.node == name)
    return leader, next(n for n in nodes if n.node != name)


def _submit_args(name: str) -> dict:
    job = {**shell_job(name, "true"), "schedule": "@every 1h"}
    return {"commands": [{"op": "set_job", "job": job, "now_ns": time.time_ns()}], "timeout": 5}


def test_keyless_raft_submit_on_a_follower_commits_nothing(cluster):
    nodes, key_file = cluster
    leader, follower = _leader_and_follower(nodes)
    for method in ("raft.submit", "raft.propose"):
        assert keyless_call(follower.rpc_port, method, _submit_args(f"forged-{method}")) is None
    assert wait_for(lambda: REFUSED in follower.log())
    # With the key the same call commits: the refusal above is the key's doing.
    key = base64.b64decode(key_file.read_text().strip())
    friend = rpc.RpcClient(key)
    try:
        reply = friend.call(f"127.0.0.1:{follower.rpc_port}", "raft.submit", _submit_args("ok"))
        assert "index" in reply, reply
    finally:
        friend.close()
    leader.client.wait_for(lambda: leader.client.get("/v1/jobs/ok").status == 200)
    for node in nodes:
        names = {j["name"] for j in node.client.get("/v1/jobs").json()}
        assert not any(n.startswith("forged") for n in names), (node.node, names)
    assert json.loads(leader.client.get("/debug/vars").body)["security"] == "key"
