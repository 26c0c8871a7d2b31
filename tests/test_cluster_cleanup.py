"""Dead-server clean-up (real processes on 127.0.0.1): a voter failed in gossip longer than
--dead-server-cleanup is removed while the others keep a quorum, a server that left is
removed at once, and a removed server that comes back rejoins as a voter with every job."""

from __future__ import annotations

from agent_support import AgentProcess, job_names, peers_of, shell_job, stop_together


def test_dead_voter_is_removed_and_rejoins_cleanly_and_a_leaver_goes_at_once(tmp_path):
    cleanup = ("--dead-server-cleanup", "2s")
    first = AgentProcess(tmp_path / "s1", *cleanup, node="s1").start()
    seed = ("--join", f"127.0.0.1:{first.gossip_port}")
    nodes = [first]
    try:
        for name in ("s2", "s3"):
            nodes.append(AgentProcess(tmp_path / name, *cleanup, *seed, node=name).start())
        three = {"s1": True, "s2": True, "s3": True}
        first.client.wait_for(lambda: peers_of(first) == three, timeout=20)
        second, third = nodes[1], nodes[2]

        third.kill9()
        first.client.wait_for(lambda: peers_of(first) == {"s1": True, "s2": True}, timeout=20)
        assert "removing server s3 from the Raft group: down for" in first.log()
        assert first.client.post("/v1/jobs", shell_job("while-away", "true")).status == 201

        third.start()  # the same data folder: it still thinks it is a voter of three
        first.client.wait_for(lambda: peers_of(first) == three, timeout=20)
        third.client.wait_for(lambda: "while-away" in job_names(third), timeout=10)
        assert third.client.post("/v1/jobs", shell_job("from-s3", "true")).status == 201

        second.stop()  # a graceful leave: removed without waiting for the clean-up delay
        first.client.wait_for(lambda: peers_of(first) == {"s1": True, "s3": True}, timeout=8)
        assert "removing server s2 from the Raft group: it left the cluster" in first.log()
        assert first.client.post("/v1/jobs", shell_job("after-leave", "true")).status == 201
        third.client.wait_for(lambda: "after-leave" in job_names(third), timeout=10)
    finally:
        stop_together(nodes)
