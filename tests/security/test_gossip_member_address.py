"""Finding: a member address with a NUL byte was accepted, and the gossip thread died when it
next sent to that member. Addresses must now be IP literals (v4 or v6) with a port in
1-65535, and node names printable text of 1-255 bytes; anything else is refused at decode,
whole packet, with nothing applied and a line saying why."""

from __future__ import annotations

import pytest

from dkron_pkg import swim_codec as wire
from security.gossip_support import KEY, T0, core, joins, sealed, send_udp, transport, udp_ping

BAD_MEMBERS = [
    ("evil", "10.0.0.9\x00", 8946, "not an IP address"),
    ("evil", "garbage", 8946, "not an IP address"),
    ("evil", "", 8946, "not an IP address"),
    ("evil", "example.com", 8946, "not an IP address"),
    ("evil", "fe80::1%\x00", 8946, "not an IP address"),
    ("evil", "10.0.0.9", 0, "out of range"),
    ("ev\x00il", "10.0.0.9", 8946, "control character"),
    ("", "10.0.0.9", 8946, "empty"),
    ("line\nbreak", "10.0.0.9", 8946, "control character"),
]


@pytest.mark.parametrize(("name", "addr", "port", "why"), BAD_MEMBERS)
def test_a_bad_member_address_or_name_is_refused_at_decode(name, addr, port, why):
    bad = wire.Alive(1, name, addr, port, {}, 0)
    with pytest.raises(wire.DecodeError, match=why):
        wire.open_packet(sealed([bad], key=None), None)
    state = wire.NodeState(name, addr, port, {}, 1, wire.STATUS_ALIVE)
    pp = wire.PushPull(False, False, "b", "10.0.0.2", 8946, 0, [state])
    with pytest.raises(wire.DecodeError, match=why):
        wire.open_packet(sealed([pp], key=None), None)


@pytest.mark.parametrize("key", [None, KEY], ids=["no-key", "key"])
def test_a_packet_with_a_bad_address_changes_nothing_and_says_why(key):
    node = core(key)
    before = node.members()
    good = wire.Alive(1, "fine", "10.0.0.8", 8946, {}, 0)
    bad = wire.Alive(1, "evil", "10.0.0.9\x00", 8946, {}, 0)
    assert node.receive(T0, ("10.6.6.6", 4000), sealed([good, bad], key=key)) == []
    assert node.members() == before  # the good message of the packet is not applied either
    assert node.stats["dropped_decode"] == 1
    lines = node.drain_refusals()
    assert len(lines) == 1 and "10.6.6.6:4000" in lines[0] and "not an IP address" in lines[0]
    ping_req = wire.PingReq(3, "b", "10.0.0.2\x00", 8946, "c", "10.0.0.3", 8946, True)
    assert node.receive(T0, None, sealed([ping_req], sender="c", key=key)) == []


def test_a_member_address_with_a_nul_byte_does_not_stop_the_gossip_thread():
    """The finding as it was seen: a node without a key (development mode) and one packet."""
    victim = transport("victim", None)
    try:
        bad = wire.Alive(1, "evil", "10.0.0.9\x00", 8946, {}, 0)
        send_udp(victim.port, [sealed([bad], key=None)])
        assert udp_ping(victim, None), "the gossip thread stopped answering"
        assert "evil" not in {m.name for m in victim.members()}
        assert joins(victim, None)
    finally:
        victim.stop(leave=False)
