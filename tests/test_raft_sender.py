"""Per-peer Raft senders: messages sent at once and queued ones keep their order per peer, and
a dead peer costs drops, not a blocked caller."""

from __future__ import annotations

import threading
import time

from dkron_pkg.raft_messages import Heartbeat, decode
from dkron_pkg.raft_sender import PeerSender


def hb(dst: str, seq: int) -> Heartbeat:
    return Heartbeat(1, "a", dst, 0, seq)


def test_order_per_peer_is_kept_between_direct_and_queued_sends():
    delivered: list[tuple[str, int]] = []
    lock = threading.Lock()
    direct_ok = {"on": True}

    def slow_send(addr: str, data: bytes) -> bool:
        time.sleep(0.002)
        with lock:
            msg = decode(data)
            delivered.append((msg.dst, msg.seq))
        return True

    def send_now(addr: str, data: bytes) -> bool:
        if not direct_ok["on"]:
            return False
        with lock:
            msg = decode(data)
            delivered.append((msg.dst, msg.seq))
        return True

    sender = PeerSender(slow_send, lambda peer: f"{peer}:1", send_now)
    try:
        for seq in range(1, 61):
            direct_ok["on"] = seq % 7 != 0  # now and then the connection cannot take it at once
            sender.send(hb("b", seq))
            sender.send(hb("c", seq))
        deadline = time.monotonic() + 10
        while len(delivered) < 120 and time.monotonic() < deadline:
            time.sleep(0.01)
        for peer in ("b", "c"):
            assert [s for d, s in delivered if d == peer] == list(range(1, 61))
        assert sender.sent == 120
    finally:
        sender.close()


def test_a_stuck_peer_never_blocks_the_caller_and_a_dead_one_costs_drops():
    release = threading.Event()
    calls = {"n": 0}

    def stuck_send(addr: str, data: bytes) -> bool:
        calls["n"] += 1
        release.wait(10)
        return False  # and then it turns out to be dead

    sender = PeerSender(stuck_send, lambda peer: f"{peer}:1", lambda a, d: False)
    try:
        for seq in range(1, 200):
            sender.send(hb("b", seq))  # returns although the peer's thread is stuck
        assert calls["n"] <= 1 and not release.is_set()
        release.set()
        deadline = time.monotonic() + 10
        while sum(sender.dropped.values()) < 199 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sender.dropped["send failed"] >= 1
        assert sum(sender.dropped.values()) == 199  # the rest: skipped during the back-off
        assert sender.sent == 0
    finally:
        sender.close()
