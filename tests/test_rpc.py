"""Node RPC on 127.0.0.1: calls, casts, Raft frames, and what happens to bad or forged input."""

from __future__ import annotations

import base64
import os
import socket
import struct
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dkron_pkg import rpc

KEY = os.urandom(16)


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def server():
    seen: dict[str, list] = {"calls": [], "raft": []}

    def handler(method, args, peer):
        seen["calls"].append((method, args))
        if method == "echo":
            return args
        if method == "fail":
            raise rpc.RpcError("refused on purpose")
        if method == "boom":
            raise KeyError("bug")
        return None

    srv = rpc.RpcServer("127.0.0.1", 0, KEY, handler, lambda b, p: seen["raft"].append(b)).start()
    srv.seen = seen
    yield srv
    srv.stop()


def addr(srv) -> str:
    return f"127.0.0.1:{srv.port}"


def test_call_cast_and_raft_frames(server):
    client = rpc.RpcClient(KEY)
    assert client.call(addr(server), "echo", {"a": [1, "x"]}) == {"a": [1, "x"]}
    client.cast(addr(server), "note", {"n": 1})
    assert client.send_raft(addr(server), b"\x00raft-bytes")
    assert wait_until(lambda: server.seen["raft"] == [b"\x00raft-bytes"])
    assert wait_until(lambda: ("note", {"n": 1}) in server.seen["calls"])
    client.close()


def test_handler_errors_reach_the_caller_and_the_server_survives(server):
    client = rpc.RpcClient(KEY)
    with pytest.raises(rpc.RpcError, match="refused on purpose"):
        client.call(addr(server), "fail")
    with pytest.raises(rpc.RpcError, match="KeyError"):
        client.call(addr(server), "boom")
    assert client.call(addr(server), "echo", 5) == 5


def test_many_concurrent_calls_get_their_own_answers(server):
    client = rpc.RpcClient(KEY)
    results = {}

    def worker(i):
        results[i] = client.call(addr(server), "echo", i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: i for i in range(50)}


def test_a_client_without_the_key_cannot_call_or_inject(server):
    for key in (None, os.urandom(16)):
        stranger = rpc.RpcClient(key)
        with pytest.raises(rpc.RpcError):
            stranger.call(addr(server), "echo", 1, timeout=2)
        stranger.send_raft(addr(server), b"forged")
    time.sleep(0.2)
    assert server.seen["raft"] == []
    assert all(m != "echo" for m, _ in server.seen["calls"])


def test_unreachable_peer_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(rpc.RpcError, match="cannot reach"):
        rpc.RpcClient(KEY).call(f"127.0.0.1:{port}", "echo", 1)


def raw_session(server):
    """A hand-made, correctly authenticated client socket and its channel."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    server_nonce = rpc._read_exact(sock, rpc.NONCE)
    client_nonce = os.urandom(rpc.NONCE)
    sock.sendall(client_nonce + rpc._proof(KEY, server_nonce, client_nonce))
    return rpc._Channel(sock, KEY, rpc._session_key(KEY, server_nonce, client_nonce), b"c")


def test_replayed_and_altered_frames_are_dropped(server):
    before = dict(rpc.DROPPED)
    chan = raw_session(server)
    chan.send(rpc.KIND_RAFT, b"first")
    assert wait_until(lambda: server.seen["raft"] == [b"first"])
    # Replay the same sequence number: the server drops the frame and the connection.
    chan.send_seq -= 1
    chan.send(rpc.KIND_RAFT, b"again")
    assert wait_until(
        lambda: (
            rpc.DROPPED["replayed or reordered frame"]
            > before.get("replayed or reordered frame", 0)
        )
    )
    assert server.seen["raft"] == [b"first"]
    # An altered payload fails the tag.
    chan = raw_session(server)
    payload = b"honest"
    tag = chan._tag(b"c", rpc.KIND_RAFT, 1, payload)
    frame = struct.pack(">IBQ", 9 + len(payload) + 32, rpc.KIND_RAFT, 1) + b"hacked" + tag
    chan.sock.sendall(frame)
    assert wait_until(
        lambda: rpc.DROPPED["bad authentication tag"] > before.get("bad authentication tag", 0)
    )
    assert server.seen["raft"] == [b"first"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(junk=st.binary(min_size=0, max_size=300))
def test_random_bytes_never_crash_the_server(server, junk):
    sock = socket.create_connection(("127.0.0.1", server.port))
    try:
        sock.sendall(junk)
    except OSError:
        pass
    sock.close()
    assert rpc.RpcClient(KEY).call(addr(server), "echo", "still alive") == "still alive"


def test_oversized_frame_is_dropped(server):
    chan = raw_session(server)
    chan.sock.sendall(struct.pack(">IBQ", rpc.MAX_FRAME + 1, rpc.KIND_RAFT, 1))
    assert wait_until(lambda: rpc.DROPPED["oversized frame (67108865 bytes)"] >= 1)


def test_without_a_key_both_sides_talk_plainly_in_development_mode_only():
    with pytest.raises(ValueError, match="needs the cluster key"):
        rpc.RpcServer("127.0.0.1", 0, None, lambda m, a, p: a)
    srv = rpc.RpcServer("127.0.0.1", 0, None, lambda m, a, p: a, insecure=True).start()
    try:
        assert rpc.RpcClient(None).call(f"127.0.0.1:{srv.port}", "echo", [1]) == [1]
    finally:
        srv.stop()


def test_decode_key():
    key = os.urandom(16)
    assert rpc.decode_key(base64.b64encode(key).decode()) == key
    assert rpc.decode_key("") is None
    with pytest.raises(ValueError, match="base64"):
        rpc.decode_key("not base64!")
    with pytest.raises(ValueError, match="16, 24 or 32"):
        rpc.decode_key(base64.b64encode(b"short").decode())


def test_raft_frames_sent_at_once_or_queued_arrive_whole_and_in_order():
    """The Raft loop's no-wait sends: when a slow reader fills the socket, the rest of a frame
    is finished by a helper and later frames wait for it, so none is torn or reordered."""
    got: list[bytes] = []
    slow = threading.Event()

    def on_raft(data, peer):
        if slow.is_set():
            time.sleep(0.002)
        got.append(data)

    srv = rpc.RpcServer("127.0.0.1", 0, KEY, lambda m, a, p: a, on_raft).start()
    client = rpc.RpcClient(KEY)
    try:
        assert not client.send_raft_now(addr(srv), b"no connection yet: not sent")
        assert client.call(addr(srv), "echo", 1) == 1  # now connected
        slow.set()
        frames = [i.to_bytes(4, "big") + os.urandom(200_000) for i in range(60)]
        now = 0
        for frame in frames:
            if client.send_raft_now(addr(srv), frame):
                now += 1
            else:
                assert client.send_raft(addr(srv), frame)
        assert now >= 1
        assert wait_until(lambda: len(got) == len(frames), timeout=30)
        assert got == frames
    finally:
        client.close()
        srv.stop()


def test_calls_that_block_never_hold_up_other_calls():
    """Each call runs on its own thread (idle ones are reused): a call waiting for another
    one to arrive does not deadlock."""
    gate = threading.Event()

    def handler(method, args, peer):
        if method == "wait":
            return gate.wait(10)
        gate.set()
        return "opened"

    srv = rpc.RpcServer("127.0.0.1", 0, KEY, handler).start()
    client = rpc.RpcClient(KEY)
    try:
        for _ in range(3):  # the second and third rounds run on reused threads
            gate.clear()
            waiting = []
            t = threading.Thread(target=lambda w=waiting: w.append(client.call(addr(srv), "wait")))
            t.start()
            time.sleep(0.05)
            assert client.call(addr(srv), "open") == "opened"
            t.join(10)
            assert waiting == [True]
    finally:
        client.close()
        srv.stop()


def test_inline_methods_answer_when_their_future_completes():
    """A method declared non-blocking runs on the reader thread and may answer later through
    a Future; calls behind it on the same connection are not held up meanwhile."""
    from concurrent.futures import Future

    pending: list[Future] = []

    def handler(method, args, peer):
        if method == "test.later":
            fut: Future = Future()
            pending.append(fut)
            return fut
        if method == "test.later_fails":
            fut = Future()
            fut.set_exception(rpc.RpcError("no such luck"))
            return fut
        return args

    rpc.answer_inline("test.later")
    rpc.answer_inline("test.later_fails")
    srv = rpc.RpcServer("127.0.0.1", 0, KEY, handler).start()
    client = rpc.RpcClient(KEY)
    try:
        answers: list = []
        t = threading.Thread(target=lambda: answers.append(client.call(addr(srv), "test.later")))
        t.start()
        assert wait_until(lambda: len(pending) == 1)
        assert client.call(addr(srv), "echo", "meanwhile") == "meanwhile"
        assert answers == []
        pending[0].set_result({"index": 7})
        t.join(10)
        assert answers == [{"index": 7}]
        with pytest.raises(rpc.RpcError, match="no such luck"):
            client.call(addr(srv), "test.later_fails")
    finally:
        client.close()
        srv.stop()


def test_a_raft_message_bigger_than_a_frame_arrives_whole_between_other_frames(server, monkeypatch):
    """Snapshots outgrow one frame: they go in parts, and a small Raft message sent while the
    parts are under way is delivered on its own, not mixed into them."""
    monkeypatch.setattr(rpc, "RAFT_PART_BYTES", 1000)
    monkeypatch.setattr(rpc, "MAX_FRAME", 2000)
    client = rpc.RpcClient(KEY)
    try:
        big = os.urandom(10_500)
        assert client.send_raft(addr(server), big)
        assert wait_until(lambda: server.seen["raft"] == [big])
        chan = client._conn(addr(server)).chan
        chan.send(rpc.KIND_RAFT_PART, b"\x00" + big[:1000])
        chan.send(rpc.KIND_RAFT, b"small")
        chan.send(rpc.KIND_RAFT_PART, b"\x01" + big[1000:1500])
        assert wait_until(lambda: len(server.seen["raft"]) == 3)
        assert server.seen["raft"][1:] == [b"small", big[:1500]]
    finally:
        client.close()


def test_raft_parts_beyond_the_message_limit_drop_the_connection(server, monkeypatch):
    monkeypatch.setattr(rpc, "RAFT_PART_BYTES", 1000)
    monkeypatch.setattr(rpc, "MAX_RAFT_MESSAGE", 5000)
    client = rpc.RpcClient(KEY)
    try:
        client.send_raft(addr(server), os.urandom(6000))
        reason = "Raft message in parts exceeds 5000 bytes"
        assert wait_until(lambda: rpc.DROPPED[reason] >= 1)
        assert server.seen["raft"] == []
    finally:
        client.close()
