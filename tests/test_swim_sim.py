"""Reduced versions of the gossip targets, in the seeded simulator (bench/swim_sim.py has the
full-size runs): determinism, detection time, no false deaths under loss, Lifeguard, rumours."""

from __future__ import annotations

import math
import statistics

from swimsim import Sim

from dkron_pkg.swim_profiles import LAN

SEED = [("10.0.0.1", 8946)]


def crash_detection_times(seed: int, n: int, loss: float, profile=LAN) -> list[float]:
    sim = Sim(seed, n, profile, loss=loss)
    sim.run_until(5.0)
    victim = sim.rng.randrange(n)
    crash_at = 5.0 + sim.rng.random()
    seen: dict[str, float] = {}

    def on_event(o):
        if o.kind == "failed" and o.subject == sim.names[victim]:
            seen.setdefault(o.observer, o.at - crash_at)

    sim.on_event = on_event
    sim.at(crash_at, lambda: sim.crash(victim))
    sim.run_until(crash_at + 80.0, stop=lambda: len(seen) >= n - 1)
    assert len(seen) == n - 1, "every live node must declare the crashed node dead"
    assert not sim.false_failures()
    return list(seen.values())


def eventful_run(seed: int) -> Sim:
    sim = Sim(seed, 40, LAN, loss=0.05)
    sim.stall(7, (1.0, 3.0), (0.5, 2.0))
    sim.at(4.0, lambda: sim.crash(5))
    sim.at(6.0, lambda: sim.call(9, lambda c: c.leave(sim.now)))
    sim.at(8.0, lambda: sim.call(11, lambda c: c.set_tags({"role": "x"}, sim.now)))
    sim.run_until(30.0)
    return sim


def test_same_seed_gives_the_same_trace_and_another_seed_does_not():
    a, b, c = eventful_run(11), eventful_run(11), eventful_run(12)
    assert a.observations and a.trace_digest() == b.trace_digest()
    assert a.packets == b.packets
    assert c.trace_digest() != a.trace_digest()


def test_crash_detected_by_everyone_at_100_nodes_p50_within_10s():
    times = [t for seed in range(6) for t in crash_detection_times(seed, 100, 0.01)]
    assert statistics.median(times) <= 10.0
    assert max(times) <= LAN.suspicion_bounds(100)[1]  # never past the Lifeguard ceiling


def test_shared_probe_ring_notices_crashes_sooner_than_round_robin():
    ring = [t for s in range(8) for t in crash_detection_times(s, 60, 0.0)]
    rr_profile = LAN.with_(aligned_probes=False)
    rr = [t for s in range(8) for t in crash_detection_times(s, 60, 0.0, rr_profile)]
    assert max(ring) < max(rr)
    assert max(ring) <= LAN.suspicion_bounds(60)[0] + 2.5


def test_17_nodes_at_10_percent_loss_keep_every_member():
    for seed in range(3):
        sim = Sim(seed, 17, LAN, loss=0.10, warm=False)
        for i in range(1, 17):
            sim.at(0.5 * i, lambda i=i, sim=sim: sim.call(i, lambda c: c.join(SEED, sim.now)))
        sim.run_until(20.0)
        assert all(len(nd.core.members()) == 17 for nd in sim.nodes)
        assert sim.all_members_kept()  # every join arrived despite the loss
        sim.run_until(20.0 + 600.0)
        assert sim.false_failures() == []
        assert sim.all_members_kept()
        assert sum(nd.core.stats["suspicions"] for nd in sim.nodes) > 0  # loss did bite


def test_stalled_nodes_probe_less_and_accuse_less_with_lifeguard():
    def run(lifeguard: bool) -> tuple[int, int, list[float]]:
        sim = Sim(3, 60, LAN.with_(lifeguard=lifeguard))
        for i in (10, 11, 12, 13):
            sim.stall(i, (1.0, 5.0), (0.05, 1.0))
        seen: dict[str, float] = {}
        sim.on_event = lambda o: (
            o.kind == "failed" and o.subject == "node0040" and seen.setdefault(o.observer, o.at)
        )
        sim.at(30.0, lambda: sim.crash(40))
        sim.run_until(60.0)
        stalled_failures = sum(sim.nodes[i].core.stats["probe_failures"] for i in (10, 11, 12, 13))
        healthy = [t - 30.0 for o, t in seen.items() if o not in {"node0010", "node0011"}]
        return len(sim.false_failures()), stalled_failures, healthy

    _, accusations_off, detect_off = run(False)
    false_on, accusations_on, detect_on = run(True)
    assert accusations_on * 2 < accusations_off
    assert false_on == 0
    assert statistics.median(detect_on) <= statistics.median(detect_off) + 0.5


def test_rumour_reaches_every_one_of_300_nodes_within_2_4s():
    for seed in range(2):
        sim = Sim(seed, 300, LAN)
        sim.run_until(2.0)
        seen: dict[str, float] = {}
        sim.on_event = lambda o, seen=seen: (
            o.kind == "update" and o.subject == "node0007" and seen.setdefault(o.observer, o.at)
        )
        start = sim.now
        sim.call(7, lambda c, now=start: c.set_tags({"role": "dkron", "rumour": "1"}, now))
        sim.run_until(start + 2.4)
        assert len(seen) >= math.ceil(0.9999 * 299)


STALLED = (1, 2, 3, 4)


def stall_run(seed: int, lifeguard: bool) -> tuple[int, list[float], int]:
    """24 nodes, 4 of them stalling 1-5 s with brief runs between; a healthy node crashes at
    t=100. Returns false dead declarations (per declaring member), the crash's detection
    times at healthy members, and how many healthy members should have detected it."""
    sim = Sim(seed, 24, LAN.with_(lifeguard=lifeguard))
    for i in STALLED:
        sim.stall(i, (1.0, 5.0), (0.0, 0.1))
    slow = {sim.names[i] for i in STALLED}
    seen: dict[str, float] = {}

    def on_event(o) -> None:
        if o.kind == "failed" and o.subject == "node0020" and o.observer not in slow:
            seen.setdefault(o.observer, o.at - 100.0)

    sim.on_event = on_event
    sim.at(100.0, lambda: sim.crash(20))
    sim.run_until(200.0)
    return len(sim.false_failures()), list(seen.values()), 24 - len(STALLED) - 1


def test_lifeguard_cuts_false_deaths_from_stalling_nodes_and_detects_crashes_as_fast():
    low = LAN.suspicion_bounds(24)[0]
    false_off, false_on, median_off, median_on = [], [], [], []
    for seed in range(3):
        f_off, det_off, healthy = stall_run(seed, lifeguard=False)
        f_on, det_on, _ = stall_run(seed, lifeguard=True)
        false_off.append(f_off)
        false_on.append(f_on)
        assert f_on < f_off, f"seed {seed}: Lifeguard must declare fewer live nodes dead"
        assert len(det_off) == len(det_on) == healthy  # every healthy member saw the crash
        assert max(det_on) <= low + 4 * LAN.probe_interval
        median_off.append(statistics.median(det_off))
        median_on.append(statistics.median(det_on))
    assert 10 * sum(false_on) < sum(false_off)
    assert statistics.mean(median_on) <= statistics.mean(median_off) + 1.0
