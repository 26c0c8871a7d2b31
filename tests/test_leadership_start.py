"""A lone server that wins its election before its Raft group is fully wired still schedules:
the leadership callback must not see a half-started cluster (a core left unarmed launched
manual runs but never a scheduled time or a retry)."""

from __future__ import annotations

import time

from agent_support import shell_job, start_agent

from dkron_pkg import cluster as cluster_module


class SlowToWire(cluster_module.RaftReplicator):
    """Starts, then returns only after it leads and its leadership callback had time to run:
    the widest form of the window between `start()` and the cluster knowing its replicator."""

    def start(self) -> None:
        super().start()
        deadline = time.monotonic() + 10
        while not self.is_leader() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)


def test_scheduled_runs_and_retries_follow_an_early_leadership(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster_module, "RaftReplicator", SlowToWire)
    agent, client = start_agent(tmp_path)
    try:
        client.wait_for(lambda: client.get("/v1/leader").status == 200, timeout=20)
        r = client.post("/v1/jobs", shell_job("tick", "echo tick", schedule="@every 1s"))
        assert r.status == 201, r.text
        cmd = 'echo "attempt $DKRON_ATTEMPT"; [ "$DKRON_ATTEMPT" = 2 ]'
        r = client.post("/v1/jobs", shell_job("again", cmd, retries=1))
        assert r.status == 201, r.text
        assert client.post("/v1/jobs/again/run").status == 202

        def ended(name: str, count: int) -> list[dict] | None:
            runs = client.get(f"/v1/jobs/{name}/executions").json()
            done = [e for e in runs if not e["finished_at"].startswith("0001")]
            return done if len(done) >= count else None

        assert len(client.wait_for(lambda: ended("tick", 2), timeout=20)) >= 2
        attempts = sorted(e["attempt"] for e in client.wait_for(lambda: ended("again", 2)))
        assert attempts == [1, 2]
        # The launch leader fences its run requests with the Raft term it leads: a core that
        # took up "term 0" would be refused by every node that heard a real leader.
        assert agent.launch.core.term == agent.cluster.replicator.term() > 0
    finally:
        agent.stop()
