"""The agent as a real process: durability across kill -9, no phantom "running" executions,
graceful SIGTERM, SIGHUP reload, and one agent per data folder."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from agent_support import ROOT, AgentProcess, Client, shell_job

from dkron_pkg.timefmt import parse_rfc3339


def test_acknowledged_jobs_survive_kill_9(tmp_path):
    node = AgentProcess(tmp_path / "data").start()
    acknowledged = []
    for i in range(40):
        r = node.client.post("/v1/jobs", shell_job(f"durable-{i}", "true", schedule="@every 1h"))
        assert r.status == 201
        acknowledged.append(f"durable-{i}")
    node.kill9()
    node.start()
    try:
        names = {j["name"] for j in node.client.get("/v1/jobs").json()}
        assert set(acknowledged) <= names
    finally:
        node.stop()


def test_run_interrupted_by_kill_9_is_failed_after_restart_and_does_not_block(tmp_path):
    node = AgentProcess(tmp_path / "data").start()
    c = node.client
    c.post("/v1/jobs", shell_job("stuck", "echo begin; sleep 60", concurrency="forbid"))
    assert c.post("/v1/jobs/stuck/run").status == 202
    c.wait_for(lambda: c.get("/v1/jobs/stuck").json()["running"])
    node.kill9()
    node.start()
    try:
        # The restarted node fails its interrupted run as soon as it leads again.
        c.wait_for(
            lambda: (
                not c.get("/v1/jobs/stuck/executions").json()[0]["finished_at"].startswith("0001")
            )
        )
        exs = c.get("/v1/jobs/stuck/executions").json()
        assert len(exs) == 1
        assert exs[0]["success"] is False
        assert not exs[0]["finished_at"].startswith("0001")
        assert "restarted" in exs[0]["output"]
        job = c.get("/v1/jobs/stuck").json()
        assert job["running"] is False and job["status"] == "failed"
        # A forbid job is not blocked forever by the lost run (Dkron #1939).
        c.put("/v1/jobs/stuck", shell_job("stuck", "echo again", concurrency="forbid"))
        assert c.post("/v1/jobs/stuck/run").status == 202
        c.wait_for(lambda: any(e["success"] for e in c.get("/v1/jobs/stuck/executions").json()))
    finally:
        node.stop()


def test_sigterm_waits_for_running_jobs_then_exits(tmp_path):
    node = AgentProcess(tmp_path / "data").start()
    c = node.client
    c.post("/v1/jobs", shell_job("finishing", "sleep 1; echo finished-cleanly"))
    c.post("/v1/jobs/finishing/run")
    c.wait_for(lambda: c.get("/v1/jobs/finishing").json()["running"])
    node.signal(signal.SIGTERM)
    assert node.proc.wait(timeout=20) == 0
    node.start()
    try:
        exs = c.get("/v1/jobs/finishing/executions").json()
        assert exs[0]["success"] is True and "finished-cleanly" in exs[0]["output"]
    finally:
        node.stop()


def test_sighup_reloads_the_api_token_from_the_config_file(tmp_path):
    config = tmp_path / "dkron.yml"
    config.write_text("api-token: first-token\n")
    node = AgentProcess(tmp_path / "data", "--config", str(config)).start()
    try:
        assert Client(node.client.base, "first-token").get("/v1/jobs").status == 200
        config.write_text("api-token: second-token\n")
        node.signal(signal.SIGHUP)
        second = Client(node.client.base, "second-token")
        second.wait_for(lambda: second.get("/v1/jobs").status == 200)
        assert Client(node.client.base, "first-token").get("/v1/jobs").status == 401
    finally:
        node.stop()


def test_second_agent_on_the_same_data_dir_refuses_to_start(tmp_path):
    node = AgentProcess(tmp_path / "data").start()
    try:
        other = AgentProcess(tmp_path / "data", node="node2")
        proc = subprocess.run(other.args, check=False, capture_output=True, text=True, timeout=30)
        assert proc.returncode != 0
        assert "lock" in (proc.stdout + proc.stderr).lower()
        assert "Traceback" not in proc.stdout + proc.stderr
    finally:
        node.stop()


def test_leave_endpoint_stops_the_agent(tmp_path):
    node = AgentProcess(tmp_path / "data").start()
    r = node.client.post("/v1/leave")
    assert r.status == 200 and r.json()[0]["Name"] == "node1"
    assert node.proc.wait(timeout=20) == 0


def test_cli_leave_and_raft_list_peers_talk_to_the_agent(tmp_path):
    node = AgentProcess(tmp_path / "data").start()
    try:
        addr = f"127.0.0.1:{node.port}"
        out = subprocess.run(
            [sys.executable, str(ROOT / "dkron.py"), "raft", "list-peers", "--http-addr", addr],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert "node1" in out.stdout and "leader" in out.stdout
        out = subprocess.run(
            [sys.executable, str(ROOT / "dkron.py"), "leave", "--http-addr", addr],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert node.proc.wait(timeout=20) == 0
    finally:
        node.stop()


def test_each_scheduled_second_is_launched_once(tmp_path):
    node = AgentProcess(tmp_path / "data").start()
    c = node.client
    try:
        c.post("/v1/jobs", shell_job("punctual", "true", schedule="* * * * * *"))
        c.wait_for(lambda: len(c.get("/v1/jobs/punctual/executions").json()) >= 3)
        node.kill9()
        node.start()
        c.wait_for(lambda: len(c.get("/v1/jobs/punctual/executions").json()) >= 5)
        exs = c.get("/v1/jobs/punctual/executions").json()
        seconds = [ex["started_at"][:19] for ex in exs]
        assert len(seconds) == len(set(seconds)), seconds
        assert len({ex["group"] for ex in exs}) == len(exs)
    finally:
        node.stop()


def test_missed_runs_once_catches_up_one_run_after_downtime(tmp_path):
    node = AgentProcess(tmp_path / "data").start()
    c = node.client
    due = int(time.time()) + 4
    due_text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(due))
    try:
        for policy in ("once", "skip"):
            body = shell_job(f"catch-{policy}", "true", schedule=f"@at {due_text}")
            body["missed_runs"] = policy
            assert c.post("/v1/jobs", body).status == 201
        assert node.stop() == 0  # down before the due time...
        assert time.time() < due - 1
        time.sleep(max(0.0, due + 8 - time.time()))  # ...and back well after it
        node.start()
        exs = c.wait_for(lambda: c.get("/v1/jobs/catch-once/executions").json())
        assert len(exs) == 1
        assert parse_rfc3339(exs[0]["scheduled_at"]).timestamp() == due
        time.sleep(1)
        assert c.get("/v1/jobs/catch-skip/executions").json() == []
        assert len(c.get("/v1/jobs/catch-once/executions").json()) == 1
    finally:
        node.stop()


def test_reboot_jobs_run_once_per_boot_not_per_agent_start(tmp_path):
    marker = tmp_path / "reboot.log"
    node = AgentProcess(tmp_path / "data").start()
    c = node.client
    try:
        job = shell_job("at-boot", f"echo ran >> {marker}", schedule="@reboot")
        assert c.post("/v1/jobs", job).status == 201
        node.stop()
        node.start()  # first agent start since the job exists: this boot has not run it yet
        c.wait_for(lambda: marker.exists() and marker.read_text().count("ran") == 1)
        node.stop()
        node.start()  # same boot of the host: no second run
        time.sleep(1.5)
        assert marker.read_text().count("ran") == 1
        assert len(c.get("/v1/jobs/at-boot/executions").json()) == 1
    finally:
        node.stop()


def test_crontab_sync_keeps_jobs_in_step_with_the_files(tmp_path):
    crontab = tmp_path / "cron.d" / "app"
    crontab.parent.mkdir()
    crontab.write_text("*/5 * * * * root echo one\n")
    node = AgentProcess(tmp_path / "data", "--crontab-sync", str(crontab.parent)).start()
    c = node.client

    def synced():
        jobs = c.get("/v1/jobs").json()
        return sorted(j["executor_config"]["command"] for j in jobs if j["name"].startswith("cron"))

    try:
        assert c.wait_for(lambda: synced() == ["echo one"])
        job = next(j for j in c.get("/v1/jobs").json() if j["name"].startswith("cron"))
        assert job["tags"] == {"node": "node1:1"}  # pinned to the node that owns the file
        assert job["schedule"] == "@crontab */5 * * * *"
        crontab.write_text("*/5 * * * * root echo one\n0 4 * * * root echo two\n")
        assert c.wait_for(lambda: synced() == ["echo one", "echo two"])
        crontab.unlink()
        assert c.wait_for(lambda: synced() == [])
    finally:
        node.stop()
