"""Finding: under the cluster key, gossip packets carried an HMAC but nothing against replay:
a recorded packet could be played again, to the same member or another, at any time later.

Each keyed packet now carries, inside its tag, the sender, the receiver, a random epoch of
the sender's process, a packet counter and the sender's clock. A receiver refuses a packet
stamped more than 30 s from its own clock, one it has already accepted (same sender, epoch
and counter), and one addressed to another member.
"""

from __future__ import annotations

import socket
import time

import pytest

from dkron_pkg import swim_codec as wire
from dkron_pkg.swim_replay import ReplayGuard, Stamp
from security.gossip_support import KEY, T0, acks, core, ping_from, sealed, transport, udp_ping


def test_a_replayed_ping_is_not_answered_twice():
    node = core(KEY)
    packet = sealed([ping_from("b", 11)])
    assert acks(node.receive(T0, None, packet)) == [11]
    assert node.receive(T0 + 0.5, ("10.6.6.6", 1), packet) == []
    assert node.stats["dropped_replay"] == 1
    assert "a replay" in node.drain_refusals()[0]
    assert acks(node.receive(T0 + 1, None, sealed([ping_from("b", 12)], T0 + 1))) == [12]


def test_a_packet_recorded_on_its_way_to_another_member_is_refused():
    node = core(KEY)
    for_c = sealed([ping_from("b", 13)], dest="c")
    assert node.receive(T0, None, for_c) == []
    assert "addressed to 'c'" in node.drain_refusals()[0]
    # Only a join's push-pull, sent to a seed's bare address, may leave the receiver unnamed.
    assert node.receive(T0, None, sealed([ping_from("b", 14)], dest="")) == []
    assert "without a named receiver" in node.drain_refusals()[0]
    pp = wire.PushPull(True, False, "b", "10.0.0.2", 8946, 0, [])
    assert len(node.receive(T0, None, sealed([pp], dest=""))) == 1  # the reply


def test_a_packet_naming_another_source_than_its_sealer_is_refused():
    node = core(KEY)
    assert node.receive(T0, None, sealed([ping_from("c", 15)], sender="b")) == []
    assert "sealed by 'b'" in node.drain_refusals()[0]


@pytest.mark.parametrize(
    ("offset", "accepted"), [(-31, False), (-29, True), (0, True), (29, True), (31, False)]
)
def test_packets_are_accepted_within_30_seconds_of_the_receivers_clock(offset, accepted):
    node = core(KEY)
    out = node.receive(T0, None, sealed([ping_from("b", 16)], T0 + offset))
    assert (acks(out) == [16]) is accepted
    if not accepted:
        assert "replay window" in node.drain_refusals()[0]


def test_a_restarted_sender_counts_again_from_one_and_its_old_packets_stay_refused():
    node = core(KEY)
    old = [sealed([ping_from("b", n)], T0, epoch=1, counter=n) for n in (1, 2, 3)]
    for n, p in enumerate(old, 1):
        assert acks(node.receive(T0, None, p)) == [n]
    restarted = sealed([ping_from("b", 21)], T0 + 1, epoch=2, counter=1)
    assert acks(node.receive(T0 + 1, None, restarted)) == [21]
    assert node.receive(T0 + 2, None, old[1]) == []
    late = sealed([ping_from("b", 22)], T0, epoch=2, counter=2)  # late, reordered: fine
    assert acks(node.receive(T0 + 3, None, late)) == [22]


def test_the_replay_table_is_bounded_and_forgets_what_left_the_window():
    guard = ReplayGuard(window=30.0, max_entries=100)
    for n in range(100):
        assert guard.check(Stamp("b", 1, n, 1000), 1.0) is None
        guard.record(Stamp("b", 1, n, 1000))
    assert "full" in guard.check(Stamp("c", 1, 1, 1000), 1.0)
    assert "a replay" in guard.check(Stamp("b", 1, 5, 1000), 1.0)
    assert guard.check(Stamp("c", 1, 1, 32_000), 32.0) is None  # the first hundred expired
    assert len(guard) == 0


def test_a_real_node_does_not_answer_a_replayed_udp_ping():
    node = transport("victim", KEY)
    try:
        assert udp_ping(node, KEY)

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(1.0)
            ping = wire.Ping(99, "victim", "prober", "127.0.0.1", s.getsockname()[1])

            env = wire.Envelope("prober", "victim", 5, 1, int(time.time() * 1000))
            packet = wire.seal([wire.encode_message(ping)], KEY, env)
            s.sendto(packet, ("127.0.0.1", node.port))
            assert any(isinstance(m, wire.Ack) for m in wire.open_packet(s.recv(65536), KEY))
            s.sendto(packet, ("127.0.0.1", node.port))
            with pytest.raises(TimeoutError):
                s.recv(65536)
        assert node.stats["dropped_replay"] == 1
    finally:
        node.stop(leave=False)
