"""A server dispatching runs to another node over RPC: targets by tags, live output and stop
through the server's API, and a node killed mid-run fails its execution instead of leaving it
"running" forever."""

from __future__ import annotations

import base64
import time

import pytest
from agent_support import TEST_KEY, AgentProcess, shell_job

from dkron_pkg.rpc import RpcClient, RpcError

KEY = base64.b64decode(TEST_KEY)  # the cluster key every AgentProcess gets


def seed_of(node) -> str:
    me = node.client.get("/v1/members").json()[0]
    return f"127.0.0.1:{me['Port']}"


def start_pair(tmp_path):
    server = AgentProcess(tmp_path / "srv", node="srv").start()
    worker = AgentProcess(
        tmp_path / "wrk",
        "--join",
        seed_of(server),
        "--tag",
        "pool=workers",
        node="wrk",
        server=False,
    ).start()
    server.client.wait_for(lambda: len(server.client.get("/v1/members").json()) == 2, timeout=20)
    return server, worker


def test_job_runs_on_the_node_its_tags_select_and_reports_back(tmp_path):
    server, worker = start_pair(tmp_path)
    c = server.client
    try:
        job = shell_job("on-worker", "echo from $(hostname) pid $$", tags={"pool": "workers:1"})
        assert c.post("/v1/jobs", job).status == 201
        assert c.post("/v1/jobs/on-worker/run").status == 202
        exs = c.wait_for(
            lambda: [
                e
                for e in c.get("/v1/jobs/on-worker/executions").json()
                if not e["finished_at"].startswith("0001")
            ]
        )
        assert exs[0]["node_name"] == "wrk" and exs[0]["success"] is True
        assert exs[0]["output"].startswith("from ")
        assert c.get("/v1/jobs/on-worker").json()["status"] == "success"
        # The worker is not a server: it keeps no jobs and serves no job API.
        r = worker.client.get("/v1/jobs/on-worker")
        assert r.status == 404 and "not a server" in r.text
    finally:
        worker.stop()
        server.stop()


def test_live_output_and_stop_of_a_remote_run(tmp_path):
    server, worker = start_pair(tmp_path)
    c = server.client
    try:
        job = shell_job("remote-long", "echo started; sleep 60", tags={"pool": "workers"})
        c.post("/v1/jobs", job)
        c.post("/v1/jobs/remote-long/run")

        def live():
            runs = [e for e in c.get("/v1/busy").json() if e["job_name"] == "remote-long"]
            return runs if runs and "started" in runs[0]["output"] else None

        run = c.wait_for(live, timeout=20)[0]
        assert run["node_name"] == "wrk"
        t0 = time.monotonic()
        assert c.delete(f"/v1/jobs/remote-long/executions/{run['id']}").status == 202
        done = c.wait_for(
            lambda: [
                e
                for e in c.get("/v1/jobs/remote-long/executions").json()
                if not e["finished_at"].startswith("0001")
            ],
            timeout=20,
        )
        assert time.monotonic() - t0 < 15
        assert done[0]["success"] is False and "stopped" in done[0]["output"]
    finally:
        worker.stop()
        server.stop()


def test_a_node_killed_mid_run_fails_its_execution_and_the_retry_goes_elsewhere(tmp_path):
    server, worker = start_pair(tmp_path)
    c = server.client
    try:
        # Tagged for any node of the region, one at a time; retried once.
        job = shell_job("survivor", "sleep 30", retries=1, retry_delay="0s")
        job["tags"] = {"region": "global:1"}
        c.post("/v1/jobs", job)
        # Run until the first attempt lands on the worker.
        for _ in range(20):
            c.post("/v1/jobs/survivor/run")
            busy = c.wait_for(
                lambda: [e for e in c.get("/v1/busy").json() if e["job_name"] == "survivor"]
            )
            if busy[0]["node_name"] == "wrk":
                break
            c.delete(f"/v1/jobs/survivor/executions/{busy[0]['id']}")
            c.wait_for(
                lambda: not [e for e in c.get("/v1/busy").json() if e["job_name"] == "survivor"]
            )
        else:
            raise AssertionError("the job never landed on the worker")
        worker.kill9()

        def lost():
            return [
                e
                for e in c.get("/v1/jobs/survivor/executions").json()
                if e["node_name"] == "wrk" and not e["finished_at"].startswith("0001")
            ]

        failed = c.wait_for(lost, timeout=40)
        assert failed[0]["success"] is False and "failed" in failed[0]["output"]
        # The retry runs on the node that is still alive.
        retry = c.wait_for(
            lambda: [
                e
                for e in c.get("/v1/busy").json()
                if e["job_name"] == "survivor" and e["attempt"] == 2
            ]
        )
        assert retry[0]["node_name"] == "srv"
    finally:
        worker.stop()
        server.stop()


def test_a_worker_that_restarts_mid_run_does_not_leave_a_phantom_running_record(tmp_path):
    server, worker = start_pair(tmp_path)
    c = server.client
    try:
        job = shell_job("phantom", "sleep 60", tags={"pool": "workers"}, concurrency="forbid")
        c.post("/v1/jobs", job)
        c.post("/v1/jobs/phantom/run")
        c.wait_for(lambda: c.get("/v1/jobs/phantom").json()["running"], timeout=20)
        worker.kill9()
        worker.start()  # back before the failure detector would call it dead
        exs = c.wait_for(
            lambda: [
                e
                for e in c.get("/v1/jobs/phantom/executions").json()
                if not e["finished_at"].startswith("0001")
            ],
            timeout=75,  # the leader's reconciliation rounds, on a loaded machine
        )
        assert exs[0]["success"] is False and "lost" in exs[0]["output"]
        assert c.get("/v1/jobs/phantom").json()["running"] is False
        assert c.post("/v1/jobs/phantom/run").status == 202  # forbid no longer blocked
    finally:
        worker.stop()
        server.stop()


def test_a_node_refuses_runs_from_a_leader_older_than_one_that_asked_it(tmp_path):
    """Fencing: once a new leader (term 7) has asked a node which launches it has, a run
    request from the deposed leader (term 6) is refused, so it cannot start a launch the new
    leader is settling; the node also says when it started, for the lost-run rule."""
    worker = AgentProcess(tmp_path / "wrk", node="wrk", server=False).start()
    client = RpcClient(KEY)
    addr = f"127.0.0.1:{worker.rpc_port}"
    job = shell_job("fenced", "echo ran")
    request = {"job": job, "attempt": 1, "scheduled_ns": None, "report_to": "127.0.0.1:9"}
    try:
        before = time.time_ns()
        answer = client.call(addr, "agent.launches", {"term": 7}, timeout=10)
        assert answer["groups"] == [] and 0 < answer["up_since_ns"] < before
        with pytest.raises(RpcError, match="newer leader"):
            client.call(addr, "agent.run", {**request, "group": 1, "term": 6}, timeout=10)
        assert 1 not in client.call(addr, "agent.launches", {"term": 7}, timeout=10)["groups"]
        execution = client.call(addr, "agent.run", {**request, "group": 2, "term": 7}, timeout=10)
        assert execution["node_name"] == "wrk" and execution["group"] == 2
        assert 2 in client.call(addr, "agent.launches", {"term": 7}, timeout=10)["groups"]
    finally:
        client.close()
        worker.stop()


def test_a_restarted_node_still_refuses_the_deposed_leader(tmp_path):
    """A node killed and restarted while a deposed leader was paused keeps the newest term it
    saw (on disk), so that leader cannot start a launch there that the new leader settles."""
    worker = AgentProcess(tmp_path / "wrk", node="wrk", server=False).start()
    client = RpcClient(KEY)
    job = shell_job("fenced", "echo ran")
    request = {"job": job, "attempt": 1, "scheduled_ns": None, "report_to": "127.0.0.1:9"}
    try:
        addr = f"127.0.0.1:{worker.rpc_port}"
        client.call(addr, "agent.launches", {"term": 7}, timeout=10)
        worker.kill9()
        worker.start()
        client.close()
        client = RpcClient(KEY)
        addr = f"127.0.0.1:{worker.rpc_port}"
        with pytest.raises(RpcError, match="newer leader"):
            client.call(addr, "agent.run", {**request, "group": 1, "term": 6}, timeout=10)
        execution = client.call(addr, "agent.run", {**request, "group": 2, "term": 8}, timeout=10)
        assert execution["group"] == 2
    finally:
        client.close()
        worker.stop()
