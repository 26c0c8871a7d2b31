"""A lone server grows into a cluster (real processes on 127.0.0.1): servers that join later
are added by the leader, catch up, become voters; the first server can then die and the others
go on with every job. A data folder of a lone server without Raft starts as a one-voter Raft."""

from __future__ import annotations

import shutil
import sqlite3
import time

from agent_support import AgentProcess, gossip_seed, job_names, peers_of, shell_job, stop_together


def leader_of(node: AgentProcess) -> str | None:
    r = node.client.get("/v1/leader")
    return r.json()["Name"] if r.status == 200 and r.json() else None


def test_a_lone_server_grows_into_three_voters_that_survive_its_death(tmp_path):
    first = AgentProcess(tmp_path / "s1", node="s1").start()
    nodes = [first]
    try:
        created = [f"grow-{i}" for i in range(3)]
        for name in created:
            r = first.client.post("/v1/jobs", shell_job(name, "true", schedule="@every 1h"))
            assert r.status == 201, r.text
        assert peers_of(first) == {"s1": True}
        for name in ("s2", "s3"):
            node = AgentProcess(tmp_path / name, "--join", gossip_seed(first), node=name)
            nodes.append(node.start())
        everyone = {"s1": True, "s2": True, "s3": True}
        for node in nodes:
            node.client.wait_for(lambda n=node: peers_of(n) == everyone, timeout=25)
            node.client.wait_for(lambda n=node: job_names(n) >= set(created), timeout=10)
        assert {leader_of(n) for n in nodes} == {"s1"}

        first.kill9()
        rest = nodes[1:]
        for node in rest:
            node.client.wait_for(lambda n=node: leader_of(n) in ("s2", "s3"), timeout=20)
        assert len({leader_of(n) for n in rest}) == 1
        r = rest[0].client.post("/v1/jobs", shell_job("after-s1", "true"))
        assert r.status == 201, r.text
        for node in rest:
            node.client.wait_for(lambda n=node: job_names(n) >= {*created, "after-s1"}, timeout=10)
    finally:
        stop_together(nodes)


def test_servers_beyond_the_voter_cap_replicate_as_non_voters(tmp_path):
    first = AgentProcess(tmp_path / "s1", "--raft-max-voters", "1", node="s1").start()
    nodes = [first]
    try:
        assert first.client.post("/v1/jobs", shell_job("capped", "true")).status == 201
        second = AgentProcess(tmp_path / "s2", "--join", gossip_seed(first), node="s2").start()
        nodes.append(second)
        second.client.wait_for(lambda: peers_of(second) == {"s1": True, "s2": False}, timeout=20)
        second.client.wait_for(lambda: "capped" in job_names(second), timeout=10)
        assert first.client.post("/v1/jobs", shell_job("later", "true")).status == 201
        second.client.wait_for(lambda: "later" in job_names(second), timeout=10)
        # A write through the non-voter goes to the leader like any other.
        assert second.client.post("/v1/jobs", shell_job("via-s2", "true")).status == 201
        first.client.wait_for(lambda: "via-s2" in job_names(first), timeout=10)
        time.sleep(2.5)  # two more rounds of the leader's reconciliation: still not a voter
        assert peers_of(first) == {"s1": True, "s2": False}
    finally:
        stop_together(nodes)


def test_a_data_folder_of_a_lone_server_without_raft_starts_as_a_one_voter_raft(tmp_path):
    """The layout a lone server wrote before it ran Raft: state.db (jobs, executions, no
    applied position) and no raft/ folder. It starts as a one-voter Raft with everything,
    and a server that joins gets it all by snapshot."""
    first = AgentProcess(tmp_path / "s1", node="s1").start()
    nodes = [first]
    try:
        for name in ("old-1", "old-2"):
            assert first.client.post("/v1/jobs", shell_job(name, "echo ran")).status == 201
        assert first.client.post("/v1/jobs/old-1").status == 202
        first.client.wait_for(
            lambda: any(e["success"] for e in first.client.get("/v1/jobs/old-1/executions").json())
        )
        executions = first.client.get("/v1/jobs/old-1/executions").json()
        first.stop()
        shutil.rmtree(tmp_path / "s1" / "raft", ignore_errors=True)
        with sqlite3.connect(tmp_path / "s1" / "state.db") as db:
            db.execute("DELETE FROM meta WHERE key='last_applied'")

        first.start()
        assert job_names(first) == {"old-1", "old-2"}
        assert first.client.get("/v1/jobs/old-1/executions").json() == executions
        assert peers_of(first) == {"s1": True}
        assert first.client.post("/v1/jobs", shell_job("new-1", "true")).status == 201

        second = AgentProcess(tmp_path / "s2", "--join", gossip_seed(first), node="s2").start()
        nodes.append(second)
        second.client.wait_for(lambda: peers_of(second) == {"s1": True, "s2": True}, timeout=20)
        second.client.wait_for(lambda: job_names(second) == {"old-1", "old-2", "new-1"})
        got = second.client.get("/v1/jobs/old-1/executions").json()
        assert [e["id"] for e in got] == [e["id"] for e in executions]
    finally:
        stop_together(nodes)
