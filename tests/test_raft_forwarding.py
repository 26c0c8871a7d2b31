"""Writes through a follower: placed on the leader by "raft.propose" (answered by the Raft
loop without blocking any thread), applied on the follower before the submit returns, and still
working when the leader is of the previous version, which only knows "raft.submit"."""

from __future__ import annotations

import time

import pytest
from test_raftnode import Cluster, job_cmd, submit_retrying

from dkron_pkg.rpc import RpcError


@pytest.fixture
def three(tmp_path):
    c = Cluster(tmp_path, 3).start()
    yield c
    c.stop()


def test_follower_writes_are_applied_there_with_the_leaders_results(three):
    c = three
    follower = c.followers()[0]
    for i in range(20):
        results = submit_retrying(
            follower, [job_cmd(f"f-{i}"), {"op": "delete_job", "name": f"missing-{i}"}]
        )
        assert [r.status for r in results] == [201, 404]
        assert f"f-{i}" in follower.job_names()  # read-your-writes on the follower


def test_a_leader_without_raft_propose_still_takes_forwarded_writes(three):
    c = three
    leader = c.leader()
    seen: list[str] = []
    newer = leader.server.handler

    def previous_version(method, args, peer):
        seen.append(method)
        if method == "raft.propose":
            raise RpcError("unknown Raft method 'raft.propose'")
        return newer(method, args, peer)

    for server in c.running():
        server.server.handler = previous_version if server is leader else server.server.handler
    follower = c.followers()[0]
    results = submit_retrying(follower, [job_cmd("via-old-leader")])
    assert results[0].ok and "via-old-leader" in follower.job_names()
    assert "raft.propose" in seen and "raft.submit" in seen
    assert seen.index("raft.propose") < seen.index("raft.submit")


def test_an_idle_cluster_after_a_forwarded_write_exchanges_only_heartbeats(three):
    """The leader tells followers each new commit index once; the acknowledgements of those
    notices must not set off new ones (that ping-pong kept every server busy for the ten
    seconds a forwarded write keeps notices on)."""
    c = three
    follower = c.followers()[0]
    leader = c.leader()
    assert submit_retrying(follower, [job_cmd("once")])[0].ok
    time.sleep(0.2)
    sent_before = leader.raft._sender.sent
    time.sleep(1.0)
    heartbeat_s = leader.raft.config.heartbeat_ms / 1000
    heartbeats = 2 * (1.0 / heartbeat_s)  # two peers
    assert leader.raft._sender.sent - sent_before <= 3 * heartbeats
