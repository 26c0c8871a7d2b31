"""A 3-server cluster under 1,000 forged gossip packets and RPC frames stays healthy: one
leader agreed by all, the same three voters and members, no job, no command run, every node up
and its memory flat. A last packet sealed with the cluster key shows that the forged ones were
refused for want of the key, not for their shape."""

from __future__ import annotations

import base64
import itertools
import os
import random
import signal
import socket
import time

import pytest
from agent_support import TEST_KEY, AgentProcess, shell_job

from dkron_pkg import swim_codec as wire
from security.gossip_support import send_udp, wait_until
from security.rpc_attacker import keyless_call, rss_mb, run_args

CLUSTER_KEY = base64.b64decode(TEST_KEY)
WRONG_KEY = bytes(range(16))
SERVERS = ("s1", "s2", "s3")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("forged")
    first = AgentProcess(base / "s1", node="s1", expect=3).start()
    seed = f"127.0.0.1:{first.gossip_port}"
    nodes = [first] + [
        AgentProcess(base / n, "--join", seed, node=n, expect=3).start() for n in SERVERS[1:]
    ]
    try:
        for node in nodes:
            node.client.wait_for(lambda n=node: n.client.get("/v1/leader").status == 200, 30)
        yield base, nodes
    finally:
        for node in nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.signal(signal.SIGTERM)
        for node in nodes:
            node.stop()


def _ghost(i: int, server: bool = True) -> wire.Alive:
    tags = {"role": "dkron", "dc": "dc1", "rpc_addr": f"127.0.0.1:{20000 + i}"}
    if server:
        tags["server"] = "true"
    return wire.Alive(1, f"ghost{i}", "127.0.0.1", 20000 + i, tags, 1)


def _forged_gossip(rng: random.Random, count: int) -> list[bytes]:
    """What a stranger without the key sends: fake servers announced in plain packets and under
    a wrong key, leaves and deaths of the real servers, an Alive for a node at the top
    incarnation, addresses with NUL bytes, and random bytes."""
    packets: list[bytes] = []
    kinds = itertools.cycle(range(7))
    while len(packets) < count:
        i = len(packets)
        kind = next(kinds)
        victim = rng.choice(SERVERS)
        if kind == 0:
            packets.append(wire.seal([wire.encode_message(_ghost(i))], None))
        elif kind == 1:
            env = wire.Envelope("s2", "s1", rng.getrandbits(64), i + 1, int(time.time() * 1000))
            packets.append(wire.seal([wire.encode_message(_ghost(i))], WRONG_KEY, env))
        elif kind == 2:
            leave = wire.Dead(10, victim, victim, 10**6)
            packets.append(wire.seal([wire.encode_message(leave)], None))
        elif kind == 3:
            dead = wire.Dead(10, victim, "ghost", 10**6)
            packets.append(wire.seal([wire.encode_message(dead)], None))
        elif kind == 4:
            top = wire.Alive(0xFFFFFFFF, victim, "127.0.0.1", 1, {"role": "dkron"}, 2**63)
            packets.append(wire.seal([wire.encode_message(top)], None))
        elif kind == 5:
            nul = _ghost(i)._replace(addr="127.0.0.1\x00evil")
            try:
                packets.append(wire.seal([wire.encode_message(nul)], None))
            except (ValueError, UnicodeError):
                packets.append(b"\x01" + nul.addr.encode() * 8)
        else:
            packets.append(rng.randbytes(rng.randrange(1, 1400)))
    return packets


def _forged_rpc(node: AgentProcess, marker, rng: random.Random, i: int) -> None:
    """One keyless RPC attempt: run a command, commit a job, or send garbage."""
    kind = i % 3
    if kind == 0:
        keyless_call(node.rpc_port, "agent.run", run_args(shell_job("pwn", f"touch {marker}")))
    elif kind == 1:
        job = {**shell_job(f"forged{i}", f"touch {marker}"), "schedule": "@every 1s"}
        args = {"commands": [{"op": "set_job", "job": job, "now_ns": time.time_ns()}]}
        keyless_call(node.rpc_port, "raft.submit", args)
    else:
        try:
            with socket.create_connection(("127.0.0.1", node.rpc_port), timeout=2) as s:
                s.sendall(rng.randbytes(rng.randrange(1, 4096)))
        except OSError:
            pass


def _view(nodes: list[AgentProcess]) -> list[tuple]:
    """What each node says of the cluster: leader, voters, members and their status, jobs."""
    out = []
    for node in nodes:
        leader = node.client.get("/v1/leader").json()["Name"]
        peers = sorted((p["id"], p["voter"]) for p in node.client.get("/v1/raft/peers").json())
        members = sorted(
            (m["Name"], m["statusText"]) for m in node.client.get("/v1/members").json()
        )
        jobs = [j["name"] for j in node.client.get("/v1/jobs").json()]
        out.append((leader, peers, members, jobs))
    return out


def test_a_cluster_stays_healthy_under_a_thousand_forged_packets_and_frames(cluster):
    base, nodes = cluster
    marker = base / "pwned"
    before = _view(nodes)
    leader = before[0][0]
    assert all(v[0] == leader for v in before), before
    assert all(len(v[1]) == 3 for v in before), before
    rss_before = {n.node: rss_mb(n.proc.pid) for n in nodes}

    rng = random.Random(16)
    gossip = _forged_gossip(rng, 800)
    for i, packet in enumerate(gossip):
        send_udp(nodes[i % 3].gossip_port, [packet])
    for i in range(200):
        _forged_rpc(nodes[i % 3], marker, rng, i)

    time.sleep(3.0)  # gossip rounds and a few elections' worth of time for any harm to show
    after = _view(nodes)
    assert after == before, f"the cluster changed under forged input:\n{before}\n{after}"
    assert not marker.exists(), "a forged request ran a command"
    for node in nodes:
        assert node.proc.poll() is None, f"{node.node} died:\n{node.log()[-3000:]}"
        grown = rss_mb(node.proc.pid) - rss_before[node.node]
        assert grown < 30, f"{node.node} grew {grown:.0f} MB under forged input"
        health = node.client.get("/health").json()
        assert health.get("security") == "key", health
    logs = "".join(n.log() for n in nodes)
    assert "handshake without the cluster key" in logs  # the RPC refusals are said

    # Control: the same kind of announcement sealed with the cluster key is believed, so the
    # forged ones above were refused for their missing or wrong key.
    control = _ghost(999, server=False)._replace(node="ghost-control")
    env = wire.Envelope("prober", "s1", int.from_bytes(os.urandom(8)), 1, int(time.time() * 1000))
    send_udp(nodes[0].gossip_port, [wire.seal([wire.encode_message(control)], CLUSTER_KEY, env)])
    names = lambda: {m["Name"] for m in nodes[0].client.get("/v1/members").json()}
    assert wait_until(lambda: "ghost-control" in names(), 5.0), names()
