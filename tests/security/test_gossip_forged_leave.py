"""Finding: a forged "leave" flipped a real server to `left`.

A leave is a Dead message about a node whose sender is that node. Under the cluster key every
packet must carry a valid tag (nothing forged without the key gets in) and a fresh envelope
(a leave recorded earlier cannot be played again). As in memberlist, a leave relayed by
another member who holds the key is believed, with an incarnation at least the one known:
one key proves membership of the cluster, not which member is speaking, and requiring the
leaving node's own packet would turn every lost datagram into a member seen as `failed` here
and `left` elsewhere. The node itself refutes any leave it did not announce.
"""

from __future__ import annotations

from dkron_pkg import swim_codec as wire
from security.gossip_support import KEY, OTHER_KEY, T0, core, sealed

LEAVE_B = wire.Dead(0, "b", "b", 1)


def test_a_leave_forged_without_the_key_is_refused():
    node = core(KEY)
    node.receive(T0, ("10.6.6.6", 1), sealed([LEAVE_B], key=None))
    node.receive(T0, ("10.6.6.6", 1), sealed([LEAVE_B], key=OTHER_KEY))
    assert node.status_of("b") == "alive"
    assert node.stats["dropped_auth"] == 2
    lines = node.drain_refusals()
    assert "no authentication tag" in lines[0] and "does not match the cluster key" in lines[1]


def test_a_recorded_leave_played_again_after_the_member_came_back_is_refused():
    node = core(KEY)
    recorded = sealed([LEAVE_B], T0, sender="b", epoch=1)
    node.receive(T0, None, recorded)
    assert node.status_of("b") == "left"
    later = T0 + 25 * 3600  # after the tombstone is reaped, b starts again and rejoins
    node.tick(later)
    assert node.status_of("b") is None
    back = wire.Alive(0, "b", "10.0.0.2", 8946, {"role": "dkron"}, 2)
    node.receive(later, None, sealed([back], later, sender="b", epoch=2))
    assert node.status_of("b") == "alive"
    node.drain_refusals()
    node.receive(later + 5, ("10.6.6.6", 1), recorded)
    assert node.status_of("b") == "alive"
    assert node.stats["dropped_replay"] == 1
    assert "outside the 30 s replay window" in node.drain_refusals()[0]


def test_a_leave_relayed_by_a_member_with_the_key_is_believed():
    node = core(KEY)
    node.receive(T0, None, sealed([LEAVE_B], sender="c"))
    assert node.status_of("b") == "left"
    stale = wire.Dead(0, "c", "c", 1)
    node.receive(T0, None, sealed([wire.Alive(3, "c", "10.0.0.3", 8946, {}, 2)], sender="c"))
    node.receive(T0, None, sealed([stale], sender="d"))  # older than what c said since
    assert node.status_of("c") == "alive"


def test_a_node_refutes_a_leave_about_itself_that_it_did_not_announce():
    node = core(KEY)
    node.receive(T0, None, sealed([wire.Dead(0, "a", "a", 1)], sender="b"))
    assert node.status_of("a") == "alive" and not node.leaving
    assert node.incarnation == 1 and node.stats["refutes"] == 1
