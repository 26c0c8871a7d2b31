"""Membership behaviour a user notices: joins, failures, leaves, tags, refutation, reaping."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from swimsim import Sim

from dkron_pkg import swim_codec as wire
from dkron_pkg.swim import SwimNode
from dkron_pkg.swim_profiles import LAN, LOCAL, WAN, get_profile

KEY = bytes(range(16))


def joined_cluster(n: int, seed: int = 1, profile=LAN, key=None, loss=0.0) -> Sim:
    """n nodes that start knowing nobody and join through node 0, one after another."""
    sim = Sim(seed, n, profile, loss=loss, key=key, warm=False)
    for i in range(1, n):
        sim.at(0.05 * i, lambda i=i: sim.call(i, lambda c: c.join([("10.0.0.1", 8946)], sim.now)))
    return sim


def statuses(sim: Sim, subject: int) -> set[str]:
    name = sim.names[subject]
    return {sim.nodes[i].core.status_of(name) for i in sim.live() if i != subject}


def test_profiles_carry_memberlist_defaults_and_derived_values():
    assert (LAN.probe_interval, LAN.probe_timeout, LAN.gossip_interval) == (1.0, 0.5, 0.2)
    assert (WAN.probe_interval, WAN.probe_timeout, WAN.suspicion_mult) == (5.0, 3.0, 6)
    assert (LOCAL.probe_timeout, LOCAL.indirect_checks, LOCAL.retransmit_mult) == (0.2, 1, 2)
    assert LAN.suspicion_bounds(100) == (8.0, 48.0)
    assert LAN.suspicion_bounds(1000) == pytest.approx((12.0, 72.0))
    assert LAN.retransmit_limit(100) == 12 and LAN.retransmit_limit(1000) == 16
    assert LAN.push_pull_period(100) == 90.0 and LAN.push_pull_period(10) == 30.0
    assert get_profile("wan") is WAN
    with pytest.raises(ValueError, match="lan, wan, local"):
        get_profile("moon")


def test_nodes_joining_through_one_seed_all_see_each_other():
    sim = joined_cluster(8)
    sim.run_until(10.0)
    assert sim.converged(8)
    joins = [o for o in sim.observations if o.kind == "join"]
    assert {(o.observer, o.subject) for o in joins} >= {
        (a, b) for a in sim.names for b in sim.names if a != b
    }


def test_crashed_node_is_suspected_then_declared_failed_everywhere():
    sim = joined_cluster(6)
    sim.run_until(5.0)
    sim.crash(3)
    sim.run_until(7.5)
    assert "suspect" in statuses(sim, 3)
    sim.run_until(40.0)
    assert statuses(sim, 3) == {"failed"}
    failed = [o for o in sim.observations if o.kind == "failed"]
    assert {o.subject for o in failed} == {"node0003"}
    assert len(failed) == 5


def test_graceful_leave_is_seen_as_left_not_failed():
    sim = joined_cluster(6)
    sim.run_until(5.0)
    sim.call(2, lambda c: c.leave(sim.now))
    sim.run_until(6.0)
    sim.crash(2)  # the process exits after announcing
    sim.run_until(40.0)
    assert statuses(sim, 2) == {"left"}
    kinds = {o.kind for o in sim.observations if o.subject == "node0002" and o.at > 5.0}
    assert kinds == {"leave"}


def test_tag_update_reaches_everyone_as_an_update_event():
    sim = joined_cluster(6)
    sim.run_until(5.0)
    sim.call(4, lambda c: c.set_tags({"role": "dkron", "server": "true"}, sim.now))
    sim.run_until(8.0)
    for i in sim.live():
        if i != 4:
            assert sim.nodes[i].core.member("node0004").tags["server"] == "true"
    updates = [o for o in sim.observations if o.kind == "update" and o.subject == "node0004"]
    assert len(updates) == 5


def test_suspected_node_refutes_with_a_higher_incarnation():
    sim = joined_cluster(5)
    sim.run_until(5.0)
    victim = sim.nodes[1].core
    before = victim.incarnation
    lie = wire.seal([wire.encode_message(wire.Suspect(before, "node0001", "node0000"))], None)
    for i in (0, 2, 3, 4):
        sim.nodes[i].core.receive(sim.now, None, lie)
    sim._dispatch(1, victim.receive(sim.now, None, lie))
    assert victim.incarnation == before + 1
    assert victim.stats["refutes"] == 1
    sim.run_until(30.0)
    assert statuses(sim, 1) == {"alive"}
    assert not sim.false_failures()


def test_failed_node_is_reaped_after_reconnect_timeout():
    profile = LAN.with_(reconnect_timeout=60.0)
    sim = joined_cluster(5, profile=profile)
    sim.run_until(5.0)
    sim.crash(4)
    sim.run_until(50.0)
    assert statuses(sim, 4) == {"failed"}
    sim.run_until(120.0)
    assert statuses(sim, 4) == {None}
    reaps = [o for o in sim.observations if o.kind == "reap"]
    assert {o.observer for o in reaps} == {f"node000{i}" for i in range(4)}


def test_failed_node_that_comes_back_rejoins_by_refuting():
    sim = joined_cluster(5)
    sim.run_until(5.0)
    sim.partition([4], [0, 1, 2, 3])
    sim.run_until(40.0)
    assert statuses(sim, 4) == {"failed"}
    sim.heal()
    sim.run_until(140.0)  # reconnect attempts and push-pull repair the partition
    assert statuses(sim, 4) == {"alive"}
    rejoins = [o for o in sim.observations if o.kind == "join" and o.subject == "node0004"]
    assert len(rejoins) >= 8  # first join, then the rejoin at each of the four others


def test_retry_join_backs_off_until_a_seed_appears():
    rng = random.Random(3)
    node = SwimNode("late", "10.9.9.9", 8946, {}, LAN, rng)
    out = node.join([("10.0.0.1", 8946)], 0.0)
    assert len(out) == 1 and out[0].reliable
    now, sends = 0.0, [0.0]
    while now < 40.0:
        now = node.next_deadline()
        if any(o.reliable and o.addr == "10.0.0.1" for o in node.tick(now)):
            sends.append(now)
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert gaps[:5] == pytest.approx([1.0, 2.0, 4.0, 8.0, 16.0], abs=1e-6)
    assert not node.joined
    seed = SwimNode("seed", "10.0.0.1", 8946, {}, LAN, random.Random(4), now=now)
    while not node.joined:
        now = node.next_deadline()
        for o in node.tick(now):
            for reply in seed.receive(now, ("10.9.9.9", 8946), o.data, o.reliable):
                node.receive(now, ("10.0.0.1", 8946), reply.data, reply.reliable)
    assert now - sends[-1] == pytest.approx(30.0)  # backoff capped at retry_join_max_interval
    assert node.status_of("seed") == "alive" and seed.status_of("late") == "alive"


def test_lamport_clock_witnesses_remote_time():
    node = SwimNode("a", "10.0.0.1", 8946, {}, LAN, random.Random(1))
    alive = wire.Alive(1, "b", "10.0.0.2", 8946, {}, 41)
    node.receive(0.0, None, wire.seal([wire.encode_message(alive)], None))
    assert node.clock == 42
    node.set_tags({"x": "1"}, 1.0)
    assert node.clock == 43


def test_suspicion_timeout_shrinks_with_independent_confirmations():
    node = SwimNode("a", "10.0.0.1", 8946, {}, LAN, random.Random(1))
    for i in range(10):
        alive = wire.Alive(1, f"p{i}", f"10.0.1.{i}", 8946, {}, 0)
        node.receive(0.0, None, wire.seal([wire.encode_message(alive)], None))

    def suspect(sender):
        msg = wire.Suspect(1, "p0", sender)
        node.receive(1.0, None, wire.seal([wire.encode_message(msg)], None))
        return node._suspicions["p0"].deadline

    low, high = LAN.suspicion_bounds(11)
    assert suspect("p1") == pytest.approx(1.0 + high)
    assert suspect("p1") == pytest.approx(1.0 + high)  # the same sender does not count twice
    mid = suspect("p2")
    assert 1.0 + low < mid < 1.0 + high
    assert suspect("p3") == pytest.approx(1.0 + low)


def test_missed_nacks_raise_the_health_score_and_stretch_the_probe_interval():
    node = SwimNode("a", "10.0.0.1", 8946, {}, LAN, random.Random(2))
    for i in range(6):
        alive = wire.Alive(1, f"p{i}", f"10.0.1.{i}", 8946, {}, 0)
        node.receive(0.0, None, wire.seal([wire.encode_message(alive)], None))
    now = 0.0
    for _ in range(6):  # nobody ever answers: every helper's nack is missing
        now = node.next_deadline()
        node.tick(now)
    assert node.awareness >= 2
    start = node._next_probe
    node.tick(start)
    assert node._next_probe - start == pytest.approx(LAN.probe_interval * (node.awareness + 1))


def test_lifeguard_off_keeps_plain_swim_timings():
    node = SwimNode("a", "10.0.0.1", 8946, {}, LAN.with_(lifeguard=False), random.Random(2))
    for i in range(6):
        alive = wire.Alive(1, f"p{i}", f"10.0.1.{i}", 8946, {}, 0)
        node.receive(0.0, None, wire.seal([wire.encode_message(alive)], None))
    now = 0.0
    for _ in range(10):
        now = node.next_deadline()
        node.tick(now)
    assert node.awareness == 0
    timers = list(node._suspicions.values())
    assert timers and all(t.deadline - t.start == LAN.suspicion_bounds(7)[0] for t in timers)


def test_packets_stay_under_the_mtu_even_with_many_broadcasts():
    sim = joined_cluster(40)
    sizes = []
    original = sim._dispatch

    def spy(i, out):
        sizes.extend(len(o.data) for o in out if not o.reliable)
        original(i, out)

    sim._dispatch = spy
    sim.run_until(10.0)
    assert sizes and max(sizes) <= 1400
    assert sim.converged(40)


def test_cluster_with_a_key_works_and_drops_forged_packets():
    sim = joined_cluster(5, key=KEY)
    sim.run_until(8.0)
    assert sim.converged(5)
    env = wire.Envelope("x", "node0000", 1, 1, int(sim.now * 1000))
    forged = wire.seal([wire.encode_message(wire.Dead(99, "node0001", "x", 0))], bytes(16), env)
    core = sim.nodes[0].core
    assert core.receive(sim.now, None, forged) == []
    assert core.stats["dropped_auth"] == 1
    assert core.status_of("node0001") == "alive"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_random_packets_never_change_membership(packets):
    node = SwimNode("a", "10.0.0.1", 8946, {}, LAN, random.Random(5), key=KEY)
    node.preload(SIM_ROSTER, 0.0)
    before = node.members()
    for p in packets:
        assert node.receive(1.0, ("10.6.6.6", 1), p) == []
    assert node.members() == before
    assert node.stats["dropped_auth"] + node.stats["dropped_decode"] == len(packets)


SIM_ROSTER = [m for m in Sim(0, 4).nodes[0].core.members() if m.name != "a"]


def test_replayed_packets_do_not_change_membership():
    """Record a run's traffic, let the cluster move on, then replay all of it to every node."""
    sim = joined_cluster(5, key=KEY)
    recorded: list[tuple[int, bytes, bool]] = []
    original = sim._dispatch

    def spy(i, out):
        for o in out:
            j = sim.index.get((o.addr, o.port))
            if j is not None:
                recorded.append((j, o.data, o.reliable))
        original(i, out)

    sim._dispatch = spy
    sim.run_until(5.0)
    sim.call(3, lambda c: c.set_tags({"role": "dkron", "v": "2"}, sim.now))
    sim.crash(4)
    sim.run_until(40.0)
    sim._dispatch = original
    assert statuses(sim, 4) == {"failed"}
    before = {i: sim.nodes[i].core.members() for i in sim.live()}
    for j, data, reliable in recorded:
        if not sim.nodes[j].crashed:
            sim.nodes[j].core.receive(sim.now, None, data, reliable)
    after = {i: sim.nodes[i].core.members() for i in sim.live()}
    assert after == before


def test_suspicion_repeated_by_a_push_pull_is_not_a_confirmation():
    node = SwimNode("a", "10.0.0.1", 8946, {}, LAN, random.Random(1))
    for i in range(10):
        alive = wire.Alive(1, f"p{i}", f"10.0.1.{i}", 8946, {}, 0)
        node.receive(0.0, None, wire.seal([wire.encode_message(alive)], None))
    first = wire.Suspect(1, "p0", "p1")
    node.receive(1.0, None, wire.seal([wire.encode_message(first)], None))
    deadline = node._suspicions["p0"].deadline
    for peer in ("p2", "p3"):
        state = wire.NodeState("p0", "10.0.1.0", 8946, {}, 1, wire.STATUS_SUSPECT)
        pp = wire.PushPull(False, True, peer, "10.0.1.9", 8946, 0, [state])
        node.receive(2.0, None, wire.seal([wire.encode_message(pp)], None))
    assert node._suspicions["p0"].deadline == deadline
    assert node.status_of("p0") == "suspect"


def node_with_peers(profile=LAN, peers: int = 10) -> SwimNode:
    node = SwimNode("a", "10.0.0.1", 8946, {}, profile, random.Random(3))
    for i in range(peers):
        alive = wire.Alive(1, f"p{i}", f"10.0.1.{i}", 8946, {}, 0)
        node.receive(0.0, None, wire.seal([wire.encode_message(alive)], None))
    return node


def feed(node: SwimNode, now: float, *msgs) -> list:
    return node.receive(now, None, wire.seal([wire.encode_message(m) for m in msgs], None))


def run_probe_to_indirect(node: SwimNode) -> float:
    """Tick until a probe has gone indirect (ping-reqs out); returns the time."""
    for _ in range(50):
        now = node.next_deadline()
        node.tick(now)
        if node._probe is not None and node._probe.indirect_sent:
            return now
    raise AssertionError("no indirect probe started")


def test_failed_probe_scores_health_by_missing_nacks_as_memberlist_does():
    node = node_with_peers()
    node.awareness = 2  # already somewhat unhealthy
    now = run_probe_to_indirect(node)
    probe = node._probe
    assert probe.expected_nacks == LAN.indirect_checks
    for _ in range(probe.expected_nacks):  # every helper reached us: the target is the problem
        feed(node, now + 0.3, wire.Nack(probe.seq))
    assert node.next_deadline() == now + 0.3  # every helper answered: the probe ends now
    node.tick(now + 0.3)
    assert node.stats["probe_failures"] == 1
    assert node.awareness == 2  # a failed probe with every nack in says nothing about us
    run_probe_to_indirect(node)
    for _ in range(50):  # no nack at all this time
        node.tick(node.next_deadline())
        if node.stats["probe_failures"] == 2:
            break
    assert node.stats["probe_failures"] == 2
    assert node.awareness == 2 + LAN.indirect_checks  # one point per missing nack


def suspicion_at_its_deadline(profile) -> tuple[SwimNode, float]:
    """p0 suspected by three members at t=1; the node then hears nothing at all and ticks
    punctually at every deadline it gives, up to the suspicion's own."""
    node = node_with_peers(profile)
    for sender in ("p1", "p2", "p3"):
        feed(node, 1.0, wire.Suspect(1, "p0", sender))
    expires = node._suspicions["p0"].deadline
    while (now := node.next_deadline()) < expires:
        node.tick(now)
    node.drain_events()
    return node, expires


def test_verdict_due_after_a_silent_spell_waits_for_the_unread_backlog():
    node, expires = suspicion_at_its_deadline(LAN)
    assert node.next_deadline() == expires
    node.tick(expires)  # punctual, but nothing arrived for seconds: maybe we were paused
    assert node.status_of("p0") == "suspect"
    feed(node, expires, wire.Alive(2, "p0", "10.0.1.0", 8946, {}, 0))  # the backlog refutes
    assert node.status_of("p0") == "alive"
    assert not [e for e in node.drain_events() if e.kind == "failed"]


def test_silent_spell_grace_is_granted_once_then_the_verdict_comes():
    node, expires = suspicion_at_its_deadline(LAN)
    node.tick(expires)
    later = node.next_deadline()
    assert expires < later <= expires + 0.2 * LAN.probe_timeout + 1e-9
    node.tick(later)
    assert node.status_of("p0") == "failed"
    failed = [e.member.name for e in node.drain_events() if e.kind == "failed"]
    assert "p0" in failed


def test_without_stall_grace_the_verdict_comes_at_the_deadline():
    node, expires = suspicion_at_its_deadline(LAN.with_(stall_grace=False))
    node.tick(expires)
    assert node.status_of("p0") == "failed"


def alive_claims(out: list, name: str) -> list[tuple[str, int]]:
    """(destination, incarnation) of every Alive about ``name`` in a batch of packets."""
    found = []
    for o in out:
        for m in wire.open_packet(o.data, None):
            if isinstance(m, wire.Alive) and m.node == name:
                found.append((o.addr, m.incarnation))
    return found


@pytest.mark.parametrize("prompt", [True, False])
def test_suspected_node_answers_the_buddy_probe_and_gossips_its_refutation_at_once(prompt):
    node = node_with_peers(LAN.with_(prompt_refute=prompt))
    node.drain_events()
    for _ in range(5):  # let the join rumours run out, so only the refutation is news
        node.tick(node.next_deadline() + 1.0)
    ping = wire.Ping(77, "a", "p4", "10.0.1.4", 8946)
    out = feed(node, 20.0, ping, wire.Suspect(0, "a", "p4"))  # probe carrying the suspicion
    assert node.incarnation == 1
    claims = alive_claims(out, "a")
    if prompt:
        assert ("10.0.1.4", 1) in claims  # the prober hears the refutation with its ack
        gossiped = {dest for dest, _ in claims[1:]}
        assert len(gossiped) == LAN.gossip_nodes  # and it is gossiped right now
    else:
        assert claims == []  # memberlist waits for the next gossip tick
