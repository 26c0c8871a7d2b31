"""Finding: the gossip TCP port buffered up to 20 MB per connection before checking the HMAC,
even with a key, and never dropped idle peers (10 connections: +190 MB).

A frame now announces its length and, with the key, a tag over its head: a peer that has not
proved the key gets at most 557 bytes read, an announced length over 4 MiB is refused before
anything is buffered, a replayed head is refused before the body is read, a peer must send its
head within 3 s (1 s with the local profile) and its frame within the profile's TCP timeout,
and at most 64 connections are open at once (a new one displaces the oldest unproven one).
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

from dkron_pkg import swim_codec as wire
from dkron_pkg.swim_frames import HEAD_BYTES, MAX_FRAME, FrameReader, frame
from dkron_pkg.swim_profiles import LAN
from dkron_pkg.swim_transport import GossipTransport
from security.gossip_support import KEY, T0, core, joins, sealed, transport, udp_ping, wait_until

MB = 1024 * 1024


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def closed_by_peer(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_oversized_and_unproven_frames_are_refused_before_buffering_and_memory_stays_flat():
    victim = transport("victim", KEY)
    conns = []
    try:
        chunk = bytes(MB)
        before = rss()
        for i in range(10):
            s = socket.create_connection(("127.0.0.1", victim.port), timeout=2)
            conns.append(s)
            size, body = (20 * MB - 1, 16) if i % 2 else (3 * MB, 3)  # over the cap / bad tag
            try:
                s.sendall(struct.pack(">I", size) + bytes(16))
                for _ in range(body):
                    s.sendall(chunk)
            except OSError:
                pass  # refused: the node closed the connection
        time.sleep(0.3)
        grown = rss() - before
        assert grown < 20 * MB, f"the node holds {grown / MB:.0f} MB for 10 unproven peers"
        stats = victim.stats
        assert stats["dropped_auth"] >= 5 and stats["dropped_decode"] >= 5, stats
        assert wait_until(lambda: victim.stats["tcp_open"] == 0, 3.0)
        assert udp_ping(victim, KEY) and joins(victim, KEY)
    finally:
        for s in conns:
            s.close()
        victim.stop(leave=False)


def test_idle_and_slow_tcp_peers_are_dropped_within_a_few_seconds():
    assert GossipTransport("x", "127.0.0.1", 0, profile=LAN, key=KEY).head_timeout == 3.0
    victim = transport("victim", KEY)  # local profile: 1 s for the head
    idle = [socket.create_connection(("127.0.0.1", victim.port)) for _ in range(5)]
    slow = socket.create_connection(("127.0.0.1", victim.port))
    try:
        for s in [*idle, slow]:
            s.setblocking(False)
        start = time.monotonic()
        open_ = [*idle, slow]
        trickle = iter(struct.pack(">I", 1000) + bytes(600))  # a plausible head, byte by byte
        while open_ and time.monotonic() - start < 6.0:
            try:
                slow.send(bytes((next(trickle),)))
            except OSError:
                pass
            open_ = [s for s in open_ if not closed_by_peer(s)]
            time.sleep(0.2)
        took = time.monotonic() - start
        assert not open_, f"{len(open_)} idle or slow peers still connected after {took:.1f} s"
        assert took < victim.head_timeout + 2.0
        assert victim.stats["tcp_timeouts"] == 6
    finally:
        for s in [*idle, slow]:
            s.close()
        victim.stop(leave=False)


def test_tcp_connections_are_capped_and_unproven_ones_make_room_for_members():
    victim = transport("victim", KEY, max_tcp_conns=8)
    stop = threading.Event()
    held: list[socket.socket] = []

    def attacker() -> None:  # keeps 30 idle connections open, reopening any that is closed
        while not stop.is_set():
            held[:] = [s for s in held if not closed_by_peer(s)]
            while len(held) < 30 and not stop.is_set():
                s = socket.create_connection(("127.0.0.1", victim.port))
                s.setblocking(False)
                held.append(s)
            time.sleep(0.05)

    fds_before = len(os.listdir("/proc/self/fd"))
    thread = threading.Thread(target=attacker, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        server_side = len(os.listdir("/proc/self/fd")) - fds_before - len(held)
        assert server_side <= 8 + 2, f"{server_side} connections held by the node"
        assert victim.stats["tcp_open"] <= 8
        assert joins(victim, KEY), "a member could not join while the port was flooded"
    finally:
        stop.set()
        thread.join(5)
        for s in held:
            s.close()
        victim.stop(leave=False)


def test_a_replayed_frame_is_refused_from_its_head_before_its_body_is_read():
    node = core(KEY)
    states = [
        wire.NodeState(f"m{i}", "10.1.0.1", 8946, {"pad": "x" * 200}, 0, wire.STATUS_ALIVE)
        for i in range(2000)
    ]
    pp = wire.PushPull(False, True, "b", "10.0.0.2", 8946, 0, states)
    packet = sealed([pp])
    data = frame(packet, KEY)
    assert len(data) > 400_000
    reader = FrameReader(KEY)
    pos = 0
    while reader.envelope is None:
        step = reader.wants
        reader.feed(data[pos : pos + step])
        pos += step
    assert reader.received <= 4 + 16 + HEAD_BYTES and reader.wants > 400_000
    assert node.admit(T0, reader.envelope) is None
    node.receive(T0, None, packet, reliable=True)
    assert node.status_of("m1999") == "alive"
    assert "a replay" in node.admit(T0 + 1, reader.envelope)
    big = FrameReader(KEY)
    big.feed(struct.pack(">I", MAX_FRAME + 1)[:3])
    try:
        big.feed(struct.pack(">I", MAX_FRAME + 1)[3:])
    except wire.DecodeError as exc:
        assert "exceeds the limit" in str(exc)
    else:
        raise AssertionError("an oversized frame was accepted")


def test_a_real_node_refuses_a_replayed_frame():
    victim = transport("victim", KEY)
    try:
        pp = wire.PushPull(False, True, "ghost", "127.0.0.1", 9, 0, [])
        data = frame(sealed([pp], time.time(), sender="ghost", dest="victim"), KEY)
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", victim.port)) as s:
                s.sendall(data)
        assert wait_until(lambda: victim.stats["dropped_replay"] == 1, 3.0)
    finally:
        victim.stop(leave=False)
