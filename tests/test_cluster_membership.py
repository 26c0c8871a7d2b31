"""Agents as real processes on 127.0.0.1 find each other by gossip: /v1/members shows every
node with Dkron's fields and tags, a kill -9 shows as failed, a graceful stop as left."""

from __future__ import annotations

from agent_support import AgentProcess


def statuses(client) -> dict[str, str]:
    return {m["Name"]: m["statusText"] for m in client.get("/v1/members").json()}


def test_agents_join_see_tags_and_tell_failed_from_left(tmp_path):
    first = AgentProcess(tmp_path / "a", "--tag", "zone=blue", node="a").start()
    nodes = [first]
    try:
        me = first.client.get("/v1/members").json()[0]
        seed = f"127.0.0.1:{me['Port']}"
        for name in ("b", "c", "d"):
            nodes.append(AgentProcess(tmp_path / name, "--join", seed, node=name).start())
        for node in nodes:
            node.client.wait_for(
                lambda n=node: statuses(n.client) == dict.fromkeys("abcd", "alive"),
                timeout=20,
            )
        members = {m["Name"]: m for m in nodes[2].client.get("/v1/members").json()}
        assert members["a"]["Tags"]["zone"] == "blue"
        assert members["a"]["Tags"]["server"] == "true" and members["a"]["Status"] == 1
        assert members["b"]["Tags"]["rpc_addr"].startswith("127.0.0.1:")
        assert {"ProtocolMin", "ProtocolMax", "ProtocolCur", "DelegateCur"} <= set(members["c"])

        nodes[2].kill9()  # c crashes
        nodes[3].stop()  # d leaves gracefully
        first.client.wait_for(
            lambda: (
                statuses(first.client) == {"a": "alive", "b": "alive", "c": "failed", "d": "left"}
            ),
            timeout=30,
        )
        failed = next(m for m in first.client.get("/v1/members").json() if m["Name"] == "c")
        assert failed["Status"] == 4
    finally:
        for node in nodes:
            node.stop()


def test_a_node_with_another_cluster_key_cannot_join(tmp_path):
    key_a = "MDEyMzQ1Njc4OWFiY2RlZg=="  # base64 of 16 bytes
    key_b = "ZmVkY2JhOTg3NjU0MzIxMA=="
    first = AgentProcess(tmp_path / "a", "--encrypt", key_a, node="a").start()
    nodes = [first]
    try:
        seed = f"127.0.0.1:{first.client.get('/v1/members').json()[0]['Port']}"
        friend = AgentProcess(tmp_path / "b", "--encrypt", key_a, "--join", seed, node="b")
        stranger = AgentProcess(tmp_path / "x", "--encrypt", key_b, "--join", seed, node="x")
        nodes += [friend.start(), stranger.start()]
        first.client.wait_for(lambda: set(statuses(first.client)) == {"a", "b"}, timeout=20)
        stranger.client.wait_for(lambda: statuses(stranger.client) == {"x": "alive"})
        assert "x" not in statuses(first.client)
    finally:
        for node in nodes:
            node.stop()
