"""Linearizable reads on every server of three real processes over the HTTP API: random writes
and reads through all of them with a leader killed (kill -9) in the middle, the history checked
by the Wing-Gong checker; a write read at once on another server is never missed; a server
with no leader answers 503 unless the read asks for `?stale`."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from agent_support import ROOT, AgentProcess, shell_job
from linearizability import GET, PUT, Op, check_kv
from test_cluster_raft import leader_of, leader_of_name, start_cluster

KEYS = ("lin-a", "lin-b", "lin-c")


def call(node: AgentProcess, method: str, path: str, body: object = None) -> tuple[int, bytes]:
    """(status, body); status 0 when the server could not be reached or did not answer."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    req = urllib.request.Request(node.client.base + path, data, headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def versioned_job(name: str, value: str) -> dict:
    return shell_job(name, "true", metadata={"v": value})


def kill_all(nodes: list[AgentProcess]) -> None:
    for node in nodes:
        if node.proc is not None and node.proc.poll() is None:
            node.kill9()


def leader_node(nodes: list[AgentProcess]) -> AgentProcess:
    name = next(n for n in (leader_of(x) for x in nodes) if n)
    return next(n for n in nodes if leader_of_name(n) == name)


class Recorder:
    """Clients that write and read KEYS through random servers, recording a history."""

    def __init__(self, nodes: list[AgentProcess], seed: int) -> None:
        self.nodes = nodes
        self.down: set[str] = set()
        self.history: list[Op] = []
        self.served: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.seed = seed

    def run_client(self, client: int) -> None:
        rng = random.Random(self.seed * 100 + client)
        count = 0
        while not self.stop.is_set():
            node = rng.choice([n for n in self.nodes if n.node not in self.down])
            key = rng.choice(KEYS)
            roll = rng.random()
            call_t = time.monotonic()
            if roll < 0.4:
                count += 1
                value = f"c{client}-{count}"
                status, _ = call(node, "POST", "/v1/jobs", versioned_job(key, value))
                ret = time.monotonic()
                # 201: done. Anything else may or may not have taken effect: pending.
                op = Op(client, PUT, key, value, call=call_t, ret=ret if status == 201 else None)
                self.record(op, node, status == 201)
            elif roll < 0.7:
                status, body = call(node, "GET", f"/v1/jobs/{key}")
                ret = time.monotonic()
                if status in (200, 404):
                    value = json.loads(body)["metadata"]["v"] if status == 200 else None
                    self.record(Op(client, GET, key, output=value, call=call_t, ret=ret), node)
            else:
                status, body = call(node, "GET", "/v1/jobs?q=lin-")
                ret = time.monotonic()
                if status == 200:
                    listed = {j["name"]: j["metadata"]["v"] for j in json.loads(body)}
                    for k in KEYS:  # one snapshot of every key: a read of each
                        self.record(Op(client, GET, k, output=listed.get(k), call=call_t, ret=ret))
                    self.count(node)

    def record(self, op: Op, node: AgentProcess | None = None, served: bool = True) -> None:
        with self.lock:
            self.history.append(op)
        if node is not None and served:
            self.count(node)

    def count(self, node: AgentProcess) -> None:
        with self.lock:
            self.served[node.node] = self.served.get(node.node, 0) + 1


def test_history_through_every_server_with_a_leader_kill_is_linearizable(tmp_path):
    nodes = start_cluster(tmp_path)
    try:
        rec = Recorder(nodes, seed=1)
        clients = [threading.Thread(target=rec.run_client, args=(c,)) for c in range(6)]
        for t in clients:
            t.start()
        time.sleep(2.0)
        victim = leader_node(nodes)
        rec.down.add(victim.node)
        before = dict(rec.served)
        victim.kill9()
        rest = [n for n in nodes if n is not victim]
        rest[0].client.wait_for(lambda: leader_of(rest[0]) not in (None, victim.node), 30)
        time.sleep(2.0)
        rec.stop.set()
        for t in clients:
            t.join(30)
        reads = [op for op in rec.history if op.kind == GET]
        writes = [op for op in rec.history if op.kind == PUT and op.ret is not None]
        assert len(reads) > 200 and len(writes) > 50, (len(reads), len(writes))
        for n in rest:  # both survivors answered after the kill
            assert rec.served.get(n.node, 0) > before.get(n.node, 0) + 10, rec.served
        assert all(rec.served.get(n.node, 0) > 10 for n in nodes), rec.served
        result = check_kv(rec.history)
        assert result.ok, f"not linearizable on key {result.bad_key}"
    finally:
        kill_all(nodes)


def test_a_write_is_read_at_once_on_another_server_across_a_leader_kill(tmp_path):
    nodes = start_cluster(tmp_path)
    try:
        stale, pairs, rng = [], 0, random.Random(7)
        for i in range(60):
            if i == 30:
                victim = leader_node(nodes)
                victim.kill9()
                nodes = [n for n in nodes if n is not victim]
            writer, reader = rng.sample(nodes, 2)
            name = f"pair-{i}"
            deadline = time.monotonic() + 20
            while call(writer, "POST", "/v1/jobs", shell_job(name, "true"))[0] != 201:
                assert time.monotonic() < deadline, f"{name} was never acknowledged"
                time.sleep(0.05)
            by_name, _ = call(reader, "GET", f"/v1/jobs/{name}")
            status, body = call(reader, "GET", f"/v1/jobs?q={name}")
            listed = status == 200 and name in {j["name"] for j in json.loads(body)}
            pairs += 1
            if by_name != 200 or not listed:
                stale.append((name, writer.node, reader.node, by_name, status))
        assert pairs == 60 and stale == []
    finally:
        kill_all(nodes)


def test_a_server_without_a_leader_answers_503_unless_the_read_is_stale(tmp_path):
    nodes = start_cluster(tmp_path)
    try:
        assert call(nodes[0], "POST", "/v1/jobs", shell_job("kept", "true"))[0] == 201
        survivor = next(n for n in nodes if n is not leader_node(nodes))
        survivor.client.wait_for(lambda: call(survivor, "GET", "/v1/jobs/kept?stale")[0] == 200)
        for node in nodes:
            if node is not survivor:
                node.kill9()
        for path in ("/v1/jobs/kept", "/v1/jobs", "/v1/leader"):
            status, body = call(survivor, "GET", path)
            assert status == 503 and b"?stale" in body, (path, status, body)
        for path in ("/v1/jobs/kept?stale", "/v1/jobs/kept?stale=true", "/v1/jobs?stale=1"):
            status, body = call(survivor, "GET", path)
            assert status == 200 and b"kept" in body, (path, status, body)
        status, body = call(survivor, "GET", "/v1/jobs/kept?stale=perhaps")
        assert status == 400 and b"stale" in body
        addr = ["--http-addr", f"127.0.0.1:{survivor.port}"]
        cli = [sys.executable, str(ROOT / "dkron.py"), "raft", "list-peers", *addr]
        refused = subprocess.run(cli, check=False, capture_output=True, text=True, timeout=30)
        assert refused.returncode != 0 and "503" in refused.stderr + refused.stdout
        listed = subprocess.run(
            [*cli, "--stale"], check=False, capture_output=True, text=True, timeout=30
        )
        assert listed.returncode == 0 and survivor.node in listed.stdout, listed
    finally:
        kill_all(nodes)


def test_every_server_shows_a_run_of_another_server_in_busy(tmp_path):
    nodes = start_cluster(tmp_path)
    try:
        leader = leader_node(nodes)
        job = shell_job("long-on-leader", "sleep 30", tags={"node": f"{leader.node}:1"})
        assert call(leader, "POST", "/v1/jobs", job)[0] == 201
        assert call(leader, "POST", "/v1/jobs/long-on-leader/run")[0] == 202
        for node in nodes:
            runs = node.client.wait_for(
                lambda n=node: [
                    e for e in n.client.get("/v1/busy").json() if e["job_name"] == "long-on-leader"
                ],
                timeout=20,
            )
            assert runs[0]["node_name"] == leader.node
    finally:
        kill_all(nodes)
