"""Misconfiguration is said, not silent (real processes on 127.0.0.1): each case gets a log
line and shows in /health's "problems" (the UI's Nodes page lists them from there)."""

from __future__ import annotations

from agent_support import (
    AgentProcess,
    Client,
    free_port,
    gossip_seed,
    peers_of,
    shell_job,
    stop_together,
)

OTHER_KEY = "YW5vdGhlci1rZXktMDEyMw=="  # base64 of b"another-key-0123"


def problems(node: AgentProcess, kind: str) -> list[str]:
    r = node.client.get("/health")
    assert r.status == 200
    return [p["message"] for p in r.json()["problems"] if p["kind"] == kind]


def test_a_server_with_another_bootstrap_expect_joins_and_says_so(tmp_path):
    first = AgentProcess(tmp_path / "s1", node="s1").start()
    second = None
    try:
        assert first.client.post("/v1/jobs", shell_job("before", "true")).status == 201
        second = AgentProcess(
            tmp_path / "s2", "--join", gossip_seed(first), node="s2", expect=3
        ).start()
        # It joins the existing cluster instead of waiting for two more servers ...
        second.client.wait_for(lambda: peers_of(second) == {"s1": True, "s2": True}, timeout=45)
        second.client.wait_for(lambda: second.client.get("/v1/jobs/before").status == 200)
        # ... and both servers say their --bootstrap-expect disagree.
        said = second.client.wait_for(lambda: problems(second, "bootstrap-expect"), timeout=30)
        assert "server s1 was started with --bootstrap-expect 1 and this server with 3" in said[0]
        said = first.client.wait_for(lambda: problems(first, "bootstrap-expect"), timeout=30)
        assert "server s2 was started with --bootstrap-expect 3 and this server with 1" in said[0]
        assert "problem: server s1 was started with --bootstrap-expect 1" in second.log()
    finally:
        stop_together([second, first])


def test_a_server_that_cannot_reach_the_leaders_rpc_port_says_so(tmp_path):
    """The leader advertises an RPC port nobody listens on: the joining server says it cannot
    reach it, stays a non-voter (so the cluster keeps its quorum) and the leader, which
    keeps taking writes, says the newcomer does not catch up."""
    closed = free_port()
    first = AgentProcess(tmp_path / "s1", "--advertise-rpc-port", str(closed), node="s1").start()
    second = None
    try:
        second = AgentProcess(tmp_path / "s2", "--join", gossip_seed(first), node="s2").start()
        said = second.client.wait_for(lambda: problems(second, "rpc"), timeout=45)
        assert f"cannot reach the leader s1's RPC port at 127.0.0.1:{closed}" in said[0]
        assert "problem: cannot reach the leader s1's RPC port" in second.log()
        assert peers_of(first) == {"s1": True, "s2": False}
        assert first.client.post("/v1/jobs", shell_job("still-writable", "true")).status == 201
        said = first.client.wait_for(lambda: problems(first, "learner"), timeout=45)
        assert "server s2 has not answered this leader for" in said[0]
        assert f"this leader's RPC port at 127.0.0.1:{closed}" in said[0]
    finally:
        stop_together([second, first])


def test_a_node_gossiping_under_another_cluster_key_is_named(tmp_path):
    first = AgentProcess(tmp_path / "s1", "--api-token", "s3cret", node="s1")
    first.client.token = "s3cret"
    first.start()
    stranger = None
    try:
        stranger = AgentProcess(
            tmp_path / "x1", "--join", gossip_seed(first), node="x1", server=False, key=OTHER_KEY
        ).start()
        said = first.client.wait_for(lambda: problems(first, "gossip-key"), timeout=45)
        assert said[0].startswith("a node at 127.0.0.1 sends gossip under another cluster key")
        assert "problem: a node at 127.0.0.1 sends gossip under another cluster key" in (
            first.log()
        )
        names = {m["Name"] for m in first.client.get("/v1/members").json()}
        assert names == {"s1"}  # refused, not admitted
        anonymous = Client(first.client.base).get("/health").json()["problems"]
        assert anonymous == [
            {"kind": "gossip-key", "message": "details are shown with the API token"}
        ]
        said = stranger.client.wait_for(lambda: problems(stranger, "gossip-join"), timeout=45)
        assert f"gossip join to {gossip_seed(first)} has had no answer" in said[0]
        assert "does this node have the cluster's key?" in said[0]
    finally:
        stop_together([stranger, first])


def test_a_server_of_another_raft_group_is_not_added_and_both_say_so(tmp_path):
    """Two lone servers, each with its own jobs; the second is restarted with --join to the
    first. Adding it would make it drop its own log: neither leader adds the other, both
    keep their jobs, and both name the other group."""
    first = AgentProcess(tmp_path / "s1", node="s1").start()
    second = AgentProcess(tmp_path / "s2", node="s2").start()
    nodes = [first, second]
    try:
        assert first.client.post("/v1/jobs", shell_job("of-s1", "true")).status == 201
        assert second.client.post("/v1/jobs", shell_job("of-s2", "true")).status == 201
        second.stop()
        second = AgentProcess(tmp_path / "s2", "--join", gossip_seed(first), node="s2").start()
        nodes.append(second)
        said = first.client.wait_for(lambda: problems(first, "raft-group"), timeout=45)
        assert said[0].startswith("server s2 belongs to another Raft group (voters: s2)")
        said = second.client.wait_for(lambda: problems(second, "raft-group"), timeout=45)
        assert said[0].startswith("server s1 belongs to another Raft group (voters: s1)")
        assert "problem: server s2 belongs to another Raft group" in first.log()
        assert peers_of(first) == {"s1": True} and peers_of(second) == {"s2": True}
        for node, name in ((first, "of-s1"), (second, "of-s2")):
            assert [j["name"] for j in node.client.get("/v1/jobs").json()] == [name]
    finally:
        stop_together(nodes)
