"""Finding: one Alive for the node itself with incarnation 0xFFFFFFFF overflowed the field when
the node refuted it, and the exception ended the gossip thread while the API still said alive.

Incarnations now saturate: the node refutes at 0xFFFFFFFF (it cannot go higher, and refusing
the accusation would leave the forged state standing), and at that ceiling an alive message
clears a suspicion or verdict of the same incarnation, so the refutation still wins.
"""

from __future__ import annotations

import pytest

from dkron_pkg import swim_codec as wire
from security.gossip_support import (
    KEY,
    T0,
    acks,
    core,
    joins,
    ping_from,
    sealed,
    send_udp,
    transport,
    udp_ping,
)

TOP = 0xFFFFFFFF


@pytest.mark.parametrize("key", [None, KEY], ids=["no-key", "key"])
def test_self_alive_at_the_top_incarnation_is_refuted_at_the_ceiling(key):
    node = core(key)
    forged = wire.Alive(TOP, "a", "10.6.6.6", 9999, {"role": "evil"}, 7)
    node.receive(T0, ("10.6.6.6", 1), sealed([forged], key=key))
    assert node.incarnation == TOP
    me = node.member("a")
    assert (me.status, me.addr, me.port, me.tags) == ("alive", "10.0.0.1", 8946, {"role": "dkron"})
    # The refutation goes out with the next packets, and the node keeps working.
    out = node.receive(T0 + 0.1, None, sealed([ping_from("b", 42)], T0 + 0.1, key=key))
    assert acks(out) == [42]
    sent = [m for o in out for m in wire.open_packet(o.data, key)]
    refutes = [m for m in sent if isinstance(m, wire.Alive) and m.node == "a"]
    assert [(m.incarnation, m.addr, m.port) for m in refutes] == [(TOP, "10.0.0.1", 8946)]
    for t in range(1, 40):
        node.tick(T0 + t * 0.5)
    accusation = wire.Suspect(TOP, "a", "b")
    node.receive(T0 + 21, None, sealed([accusation], T0 + 21, key=key))
    assert node.incarnation == TOP and node.status_of("a") == "alive"


def test_a_refutation_at_the_ceiling_clears_a_verdict_at_the_ceiling():
    """Another member believed the forged top incarnation and then declared the node dead:
    the node's own alive message, which cannot be higher, must still bring it back."""
    other = core(KEY, name="b")
    other.receive(T0, None, sealed([wire.Dead(TOP, "c", "d", 0)], sender="d", dest="b"))
    assert other.status_of("c") == "failed"
    refutation = wire.Alive(TOP, "c", "10.0.0.3", 8946, {"role": "dkron"}, 1)
    other.receive(T0 + 1, None, sealed([refutation], T0 + 1, sender="c", dest="b"))
    assert other.status_of("c") == "alive"
    # An equal alive about a member that is alive changes nothing (no flapping).
    again = wire.Alive(TOP, "c", "10.9.9.9", 8946, {}, 2)
    other.receive(T0 + 2, None, sealed([again], T0 + 2, sender="d", dest="b"))
    assert other.member("c").addr == "10.0.0.3"


def test_lamport_time_at_its_limit_does_not_overflow():
    node = core(None)
    alive = wire.Alive(1, "e", "10.0.0.5", 8946, {}, 0xFFFFFFFFFFFFFFFF)
    node.receive(T0, None, sealed([alive], key=None))
    assert node.clock == 0xFFFFFFFFFFFFFFFF
    node.leave(T0 + 1)  # encodes the clock into a leave: must still fit
    assert node.status_of("e") == "alive"


def test_the_gossip_thread_survives_a_self_alive_at_the_top_incarnation():
    """The finding as it was seen: a node without a key (development mode) and one packet."""
    victim = transport("victim", None)
    try:
        forged = wire.Alive(TOP, "victim", "10.6.6.6", 9999, {}, 0)
        send_udp(victim.port, [sealed([forged], key=None)])
        assert udp_ping(victim, None), "the gossip thread stopped answering"
        assert victim.stats["refutes"] >= 1
        assert joins(victim, None)
    finally:
        victim.stop(leave=False)
