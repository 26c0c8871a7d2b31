"""Finding 6 (RPC): idle keyless connections never timed out (a thread each, no limit), and one
keyless connection could make a lone node hold up to 4 GiB of Raft parts.

Now a peer has a few seconds to prove the key, connections beyond a cap are closed at once,
Raft parts are taken only from a peer that proved the key (and only by a node that runs
Raft), and all connections together hold at most one message's worth of parts."""

from __future__ import annotations

import base64
import os
import socket
import threading
import time

from agent_support import AgentProcess, start_agent

from dkron_pkg import rpc
from security.rpc_attacker import (
    KIND_CALL,
    KIND_RAFT_PART,
    NONCE,
    connect_keyless,
    frame,
    recv_exact,
    rss_mb,
)

KEY = os.urandom(32)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the node closes `sock` within `seconds` (we send nothing meanwhile)."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_idle_keyless_connection_is_closed_within_the_handshake_time(tmp_path, monkeypatch):
    monkeypatch.setattr(rpc, "HANDSHAKE_SECONDS", 1.0, raising=False)
    agent, _client = start_agent(tmp_path / "data")  # a lone server with its own key
    try:
        idle = connect_keyless(agent.rpc_port)  # nonce answered, then nothing more
        trickle = socket.create_connection(("127.0.0.1", agent.rpc_port), timeout=5)
        recv_exact(trickle, NONCE)
        for _ in range(12):  # one byte every 0.25 s: never idle, never done
            try:
                trickle.sendall(b"x")
            except OSError:
                break
            time.sleep(0.25)
        assert closed_within(idle, 3.0)
        assert closed_within(trickle, 0.1)  # busy for 3 s, yet closed at the 1 s deadline
        assert rpc.DROPPED["no proof of the cluster key within 1s"] >= 2
    finally:
        agent.stop()


def test_connections_beyond_the_cap_are_refused_at_once(monkeypatch):
    monkeypatch.setattr(rpc, "MAX_HANDSHAKES", 4, raising=False)
    srv = rpc.RpcServer("127.0.0.1", 0, KEY, lambda m, a, p: a).start()
    threads_before = threading.active_count()
    held: list[socket.socket] = []
    try:
        answered = 0
        for _ in range(12):
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=3)
            held.append(sock)
            sock.settimeout(3)
            try:
                answered += len(sock.recv(NONCE)) == NONCE  # a nonce: a slot and a thread
            except ConnectionResetError:
                pass
        assert answered == 4
        assert threading.active_count() - threads_before <= 4 + 1
        # The server counts a refusal just after it closes the socket the client saw close.
        refused = "too many connections proving the key (limit 4)"
        deadline = time.monotonic() + 5
        while rpc.DROPPED[refused] < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rpc.DROPPED[refused] >= 8
        for sock in held:
            sock.close()
        client = rpc.RpcClient(KEY)
        try:  # the slots come back once the strangers are gone
            deadline = time.monotonic() + 5
            while True:
                try:
                    assert client.call(f"127.0.0.1:{srv.port}", "echo", 1, timeout=2) == 1
                    break
                except rpc.RpcError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()
    finally:
        for sock in held:
            sock.close()
        srv.stop()


def _push(sock: socket.socket, frames: list[bytes]) -> None:
    try:
        for f in frames:
            sock.sendall(f)
    except OSError:
        pass  # the node closed on us: what we want
    finally:
        sock.close()


def test_raft_parts_and_big_frames_leave_a_lone_node_memory_flat(tmp_path):
    """A lone default server: 64 MB of Raft parts and a 48 MB call frame without the key
    leave its memory flat; 64 MB of Raft parts with its own key (a lone server runs Raft, as
    every server does, and takes a snapshot's worth of parts from a key holder: the next test
    checks that bound) leave it up and writable."""
    node = AgentProcess(tmp_path / "data", key=None).start()
    try:
        assert node.proc is not None
        before = rss_mb(node.proc.pid)
        piece = b"\x00" + os.urandom(1024 * 1024) * 8
        parts = [frame(KIND_RAFT_PART, seq, piece) for seq in range(1, 9)]
        _push(connect_keyless(node.rpc_port), parts)
        _push(connect_keyless(node.rpc_port), [frame(KIND_CALL, 1, b" " * 48 * 1024 * 1024)])
        assert node.client.get("/health").status == 200
        grown = rss_mb(node.proc.pid) - before
        assert grown < 24, f"RSS grew by {grown:.0f} MB after the keyless connections"
        kept = base64.b64decode((tmp_path / "data" / "cluster.key").read_text().strip())
        friend = rpc.RpcClient(kept)
        try:
            chan = friend._conn(f"127.0.0.1:{node.rpc_port}").chan
            _push_authenticated(chan, [piece] * 8)
        finally:
            friend.close()
        assert node.client.get("/health").status == 200
        job = {"name": "after", "executor": "shell", "executor_config": {"command": "true"}}
        assert node.client.post("/v1/jobs", {**job, "schedule": "@manually"}).status == 201
        assert "handshake without the cluster key" in node.log()
    finally:
        node.stop()


def _push_authenticated(chan, pieces: list[bytes]) -> None:
    try:
        for piece in pieces:
            chan.send(KIND_RAFT_PART, piece)
    except OSError:
        pass


def test_raft_parts_over_all_connections_stay_within_one_message(monkeypatch):
    """Peers with the key, on a node that runs Raft: each connection may hold a message in
    parts, all of them together no more than MAX_RAFT_PARTS_TOTAL."""
    monkeypatch.setattr(rpc, "RAFT_PART_BYTES", 1000)
    monkeypatch.setattr(rpc, "MAX_RAFT_MESSAGE", 5000)
    monkeypatch.setattr(rpc, "MAX_RAFT_PARTS_TOTAL", 6000, raising=False)
    got: list[bytes] = []
    srv = rpc.RpcServer("127.0.0.1", 0, KEY, lambda m, a, p: a, lambda b, p: got.append(b))
    srv.start()
    clients = [rpc.RpcClient(KEY) for _ in range(3)]
    try:
        chans = [c._conn(f"127.0.0.1:{srv.port}").chan for c in clients]
        for chan in chans:  # 3 x 4000 bytes held, none finished: over the 6000 budget
            for _ in range(4):
                try:
                    chan.send(rpc.KIND_RAFT_PART, b"\x00" + b"p" * 1000)
                except OSError:
                    break  # the node already dropped this connection (its budget is spent)
        reason = "Raft parts over this node's budget of 6000 bytes"
        deadline = time.monotonic() + 5
        while rpc.DROPPED[reason] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rpc.DROPPED[reason] >= 1
        assert got == []
        # A connection that was dropped gave its parts back: a whole message gets through.
        fresh = rpc.RpcClient(KEY)
        clients.append(fresh)
        for c in clients[:3]:
            c.close()
        deadline = time.monotonic() + 5
        message = os.urandom(4500)
        while not got and time.monotonic() < deadline:
            fresh.send_raft(f"127.0.0.1:{srv.port}", message)
            time.sleep(0.1)
        assert got and got[0] == message
    finally:
        for c in clients:
            c.close()
        srv.stop()


def test_idle_authenticated_connections_close_and_calls_still_get_through(monkeypatch):
    """After the proof a connection may idle longer, not forever; a client retires its idle
    connection before the server closes it, so a call never meets a closing connection."""
    monkeypatch.setattr(rpc, "IDLE_SECONDS", 0.6, raising=False)
    monkeypatch.setattr(rpc, "CLIENT_REUSE_SECONDS", 0.3, raising=False)
    srv = rpc.RpcServer("127.0.0.1", 0, KEY, lambda m, a, p: a).start()
    client = rpc.RpcClient(KEY)
    addr = f"127.0.0.1:{srv.port}"
    try:
        assert client.call(addr, "echo", 1) == 1
        first = client._conn(addr)
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        server_nonce = recv_exact(raw, NONCE)
        client_nonce = os.urandom(NONCE)
        raw.sendall(client_nonce + rpc._proof(KEY, server_nonce, client_nonce))
        assert closed_within(raw, 3.0)  # proved the key, then said nothing
        for _ in range(3):
            time.sleep(0.45)  # between the client's reuse limit and the server's idle limit
            assert client.call(addr, "echo", 2) == 2
        assert client._conn(addr) is not first
    finally:
        client.close()
        srv.stop()
