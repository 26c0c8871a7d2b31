"""Three servers as real processes on 127.0.0.1: they bootstrap a Raft group through gossip,
replicate every acknowledged write, survive kill -9 of the leader, and a new leader serves
writes and schedules without launching the same (job, scheduled time) twice."""

from __future__ import annotations

import subprocess
import sys

from agent_support import ROOT, AgentProcess, shell_job


def seed_of(node) -> str:
    me = next(m for m in node.client.get("/v1/members").json() if m["Name"] == "s1")
    return f"127.0.0.1:{me['Port']}"


def leader_of(node):
    r = node.client.get("/v1/leader")
    return r.json()["Name"] if r.status == 200 else None


def start_cluster(tmp_path, count=3):
    first = AgentProcess(tmp_path / "s1", "--enable-prometheus", node="s1", expect=count).start()
    seed = seed_of(first)
    nodes = [first]
    for i in range(2, count + 1):
        nodes.append(
            AgentProcess(tmp_path / f"s{i}", "--join", seed, node=f"s{i}", expect=count).start()
        )
    for node in nodes:
        node.client.wait_for(lambda n=node: leader_of(n), timeout=30)
    leaders = {leader_of(n) for n in nodes}
    assert len(leaders) == 1
    return nodes


def test_three_servers_replicate_and_survive_the_leader_dying(tmp_path):
    nodes = start_cluster(tmp_path)
    try:
        by_name = {n.client.get("/v1/").json()["agent"]["name"]: n for n in nodes}
        leader = by_name[leader_of(nodes[0])]
        acknowledged = []
        for i in range(30):
            node = nodes[i % 3]  # writes through followers are forwarded to the leader
            r = node.client.post("/v1/jobs", shell_job(f"rep-{i}", "true", schedule="@every 1h"))
            assert r.status == 201, r.text
            acknowledged.append(f"rep-{i}")
            # Read your write on the node that acknowledged it (Dkron #1080).
            assert node.client.get(f"/v1/jobs/rep-{i}").status == 200
        metrics = nodes[0].client.get("/metrics").text
        commits = [
            ln
            for ln in metrics.splitlines()
            if ln.startswith("dkron_raft_commit_latency_seconds_count")
        ]
        assert commits and float(commits[0].split()[-1]) >= 10  # s1 took 10 of the writes
        for node in nodes:
            node.client.wait_for(
                lambda n=node: (
                    {j["name"] for j in n.client.get("/v1/jobs").json()} >= set(acknowledged)
                )
            )
        peers = subprocess.run(
            [
                sys.executable,
                str(ROOT / "dkron.py"),
                "raft",
                "list-peers",
                "--http-addr",
                f"127.0.0.1:{nodes[1].port}",
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert peers.returncode == 0 and all(f"s{i}" in peers.stdout for i in (1, 2, 3))

        leader.kill9()
        rest = [n for n in nodes if n is not leader]
        old_name = leader_of_name(leader)
        new = rest[0].client.wait_for(
            lambda: leader_of(rest[0]) not in (None, old_name) and leader_of(rest[0]),
            timeout=30,
        )
        assert new in {n.client.get("/v1/").json()["agent"]["name"] for n in rest}
        r = rest[1].client.post("/v1/jobs", shell_job("after-failover", "true"))
        assert r.status == 201, r.text
        for node in rest:
            names = {j["name"] for j in node.client.get("/v1/jobs").json()}
            assert set(acknowledged) <= names

        leader.start()  # the old leader comes back as a follower and catches up
        leader.client.wait_for(
            lambda: (
                {j["name"] for j in leader.client.get("/v1/jobs").json()}
                >= {*acknowledged, "after-failover"}
            ),
            timeout=30,
        )
    finally:
        for node in nodes:
            node.stop()


def leader_of_name(node) -> str:
    return node.args[node.args.index("--node-name") + 1]


def test_scheduling_moves_to_the_new_leader_without_double_launches(tmp_path):
    nodes = start_cluster(tmp_path)
    try:
        c = nodes[0].client
        job = shell_job("ticker", "true", schedule="@every 1s", tags={"role": "dkron:1"})
        assert c.post("/v1/jobs", job).status == 201
        c.wait_for(lambda: len(c.get("/v1/jobs/ticker/executions").json()) >= 3, timeout=20)
        name = leader_of(nodes[0])
        old = next(n for n in nodes if leader_of_name(n) == name)
        old.kill9()
        rest = [n for n in nodes if n is not old]
        before = len(rest[0].client.get("/v1/jobs/ticker/executions").json())
        rest[0].client.wait_for(
            lambda: len(rest[0].client.get("/v1/jobs/ticker/executions").json()) >= before + 3,
            timeout=40,
        )
        exs = rest[0].client.get("/v1/jobs/ticker/executions").json()
        # Runs on the surviving servers succeed (one cut short on the killed leader fails).
        survivors = [e for e in exs if e["node_name"] != name]
        assert all(e["success"] for e in survivors if not e["finished_at"].startswith("0001"))
        scheduled = [e["scheduled_at"] for e in exs if e["scheduled_at"]]
        assert len(scheduled) == len(set(scheduled)), "a scheduled time was launched twice"
    finally:
        for node in nodes:
            node.stop()


def test_every_server_can_lead_again_after_restarts(tmp_path):
    """Kill the leader three times in a row, restarting each victim: the restarted servers
    still know their voters and elect a leader among themselves."""
    nodes = start_cluster(tmp_path)
    try:
        seen = set()
        for _ in range(3):
            name = leader_of(nodes[0]) or leader_of(nodes[1])
            victim = next(n for n in nodes if leader_of_name(n) == name)
            seen.add(name)
            victim.kill9()
            rest = [n for n in nodes if n is not victim]
            rest[0].client.wait_for(
                lambda r=rest[0], old=name: leader_of(r) not in (None, old), timeout=30
            )
            victim.start()
        r = nodes[0].client.post("/v1/jobs", shell_job("still-writable", "true"))
        assert r.status == 201, r.text
        assert len(seen) >= 2
    finally:
        for node in nodes:
            node.stop()


def test_five_servers_lose_two_and_keep_serving(tmp_path):
    nodes = start_cluster(tmp_path, count=5)
    try:
        c = nodes[0].client
        for i in range(10):
            assert c.post("/v1/jobs", shell_job(f"five-{i}", "true")).status == 201
        leader = leader_of(nodes[0])
        victims = [n for n in nodes if leader_of_name(n) == leader]
        victims.append(next(n for n in nodes if n not in victims))
        for v in victims:
            v.kill9()
        rest = [n for n in nodes if n not in victims]
        rest[0].client.wait_for(lambda: leader_of(rest[0]) not in (None, leader), timeout=30)
        r = rest[1].client.post("/v1/jobs", shell_job("five-after", "true"))
        assert r.status == 201, r.text
        wanted = {f"five-{i}" for i in range(10)} | {"five-after"}
        for node in rest:  # followers apply a moment later than the server that answered
            node.client.wait_for(
                lambda n=node: wanted <= {j["name"] for j in n.client.get("/v1/jobs").json()}
            )
    finally:
        for node in nodes:
            node.stop()


def test_run_now_through_a_follower_is_launched_by_the_leader(tmp_path):
    nodes = start_cluster(tmp_path)
    try:
        name = leader_of(nodes[0])
        follower = next(n for n in nodes if leader_of_name(n) != name)
        c = follower.client
        job = shell_job("manual-via-follower", "echo ran", tags={"role": "dkron:1"})
        assert c.post("/v1/jobs", job).status == 201
        assert c.post("/v1/jobs/manual-via-follower/run").status == 202
        done = c.wait_for(
            lambda: [
                e
                for e in c.get("/v1/jobs/manual-via-follower/executions").json()
                if not e["finished_at"].startswith("0001")
            ],
            timeout=30,
        )
        assert len(done) == 1 and done[0]["success"] is True

        # The leader recorded the launch and dispatched it; the follower only passed it on.
        # (Under heavy load leadership may move meanwhile: any server but the follower counts.)
        def launched(node) -> bool:
            return any(
                "event=launch" in ln and "manual-via-follower" in ln
                for ln in node.log().splitlines()
            )

        assert any(launched(n) for n in nodes if n is not follower), "no leader launched it"
        assert not launched(follower) or leader_of(follower) == leader_of_name(follower)
    finally:
        for node in nodes:
            node.stop()
