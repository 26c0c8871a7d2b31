"""Gossip targets in the seeded simulator: detection time, false deaths, Lifeguard, rumours.

    python3 bench/swim_sim.py all            # every scenario with the issue's sizes
    python3 bench/swim_sim.py detect --nodes 1000 --seeds 10
    python3 bench/swim_sim.py false --nodes 17 --seeds 100 --hours 1
    python3 bench/swim_sim.py lifeguard --nodes 100 --seeds 6 --duration 1800 --modes off,on
    python3 bench/swim_sim.py rumour --nodes 1000 --seeds 5

Times are simulated seconds (virtual clock), LAN profile, 2 ms +- 1 ms delay. Each scenario
prints its figures and one JSON line. Seeds run in parallel on --jobs processes.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from swimsim import Sim

from dkron_pkg.swim_profiles import LAN


def pct(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


def detect_one(args: tuple) -> dict:
    seed, n, loss, lifeguard, aligned = args
    profile = LAN.with_(lifeguard=lifeguard, aligned_probes=aligned)
    sim = Sim(seed, n, profile, loss=loss)
    sim.run_until(5.0)
    victim = sim.rng.randrange(n)
    crash_at = 5.0 + sim.rng.random()
    name = sim.names[victim]
    seen: dict[str, float] = {}

    def on_event(o):
        if o.kind == "failed" and o.subject == name and o.observer not in seen:
            seen[o.observer] = o.at - crash_at

    sim.on_event = on_event
    sim.at(crash_at, lambda: sim.crash(victim))
    sim.run_until(crash_at + 100.0, stop=lambda: len(seen) >= n - 1)
    return {
        "times": list(seen.values()),
        "missing": n - 1 - len(seen),
        "false": len(sim.false_failures()),
    }


def detect(a) -> dict:
    jobs = [(s, a.nodes, a.loss, not a.no_lifeguard, not a.round_robin) for s in range(a.seeds)]
    res = run_pool(detect_one, jobs, a.jobs)
    times = [t for r in res for t in r["times"]]
    last = [max(r["times"]) for r in res if r["times"]]
    out = {
        "scenario": "detect",
        "nodes": a.nodes,
        "seeds": a.seeds,
        "loss": a.loss,
        "p50": round(pct(times, 50), 3),
        "p99": round(pct(times, 99), 3),
        "max": round(max(times), 3),
        "last_node_p50": round(pct(last, 50), 3),
        "last_node_p99": round(pct(last, 99), 3),
        "undetected": sum(r["missing"] for r in res),
        "false_deaths": sum(r["false"] for r in res),
    }
    print(
        f"detect: {a.nodes} nodes, {a.seeds} seeds, loss {a.loss:.0%}: every live node declares"
        f" the crashed one dead p50 {out['p50']:.2f} s, p99 {out['p99']:.2f} s,"
        f" max {out['max']:.2f} s; undetected {out['undetected']}"
    )
    return out


def false_one(args: tuple) -> dict:
    seed, n, loss, duration = args
    sim = Sim(seed, n, LAN, loss=loss, warm=False)
    for i in range(1, n):
        sim.at(0.5 * i, lambda i=i: sim.call(i, lambda c: c.join([("10.0.0.1", 8946)], sim.now)))
    sim.run_until(0.5 * n + 10.0)
    joined = sim.converged(n)
    sim.run_until(0.5 * n + 10.0 + duration)
    return {
        "false": len(sim.false_failures()),
        "joined": joined,
        "kept": sim.all_members_kept(),
        "suspicions": sum(nd.core.stats["suspicions"] for nd in sim.nodes),
    }


def false_deaths(a) -> dict:
    jobs = [(s, a.nodes, a.loss, a.hours * 3600.0) for s in range(a.seeds)]
    res = run_pool(false_one, jobs, a.jobs)
    out = {
        "scenario": "false",
        "nodes": a.nodes,
        "seeds": a.seeds,
        "hours": a.hours,
        "loss": a.loss,
        "false_deaths": sum(r["false"] for r in res),
        "runs_with_all_members_kept": sum(r["kept"] for r in res),
        "suspicions_refuted": sum(r["suspicions"] for r in res),
        "seeds_with_false_deaths": [s for s, r in enumerate(res) if r["false"]],
    }
    print(
        f"false: {a.nodes} nodes joined in sequence, {a.hours} h at {a.loss:.0%} loss, {a.seeds}"
        f" seeds: {out['false_deaths']} false dead declarations,"
        f" {out['runs_with_all_members_kept']}/{a.seeds} runs kept every member"
        f" ({out['suspicions_refuted']} suspicions raised and refuted)"
    )
    return out


LIFEGUARD_MODES = {
    "off": {"lifeguard": False},  # plain SWIM: fixed timeouts, no nacks, no buddy system
    # Lifeguard as published (health multiplier, dynamic suspicion, buddy system):
    "paper": {"stall_grace": False, "prompt_refute": False, "verdict_recheck": False},
    "on": {},  # the shipped default: Lifeguard plus our three additions (swim_profiles.py)
}
STALL_LENGTH = (1.0, 5.0)
# Running time between two stalls of one node: a node busy most of the time, or now and then.
STALL_GAPS = {"busy": (0.0, 0.1), "intermittent": (0.05, 1.0)}
STALLED_NODES = 4
CRASH_EVERY = 300.0  # one healthy node crashes in each such window
DETECT_WINDOW = 100.0


def lifeguard_plan(seed: int, n: int, duration: float) -> dict:
    """The faults of one seed, drawn apart from the simulation so every mode meets the same."""
    rs = random.Random(f"lifeguard-{seed}")
    stallers = rs.sample(range(n), STALLED_NODES)
    healthy = [i for i in range(n) if i not in stallers]
    crashes = []
    for w in range(int(duration // CRASH_EVERY)):
        victim = healthy.pop(rs.randrange(len(healthy)))
        at = w * CRASH_EVERY + rs.uniform(30.0, CRASH_EVERY - DETECT_WINDOW)
        crashes.append((at, victim))
    return {
        "loss": rs.choice((0.0, 0.01)),
        "stallers": {i: rs.choice(sorted(STALL_GAPS)) for i in stallers},
        "crashes": crashes,
    }


def lifeguard_one(args: tuple) -> dict:
    """One seed in one mode: count false dead declarations, time crash detection."""
    seed, n, duration, mode = args
    plan = lifeguard_plan(seed, n, duration)
    sim = Sim(seed, n, LAN.with_(**LIFEGUARD_MODES[mode]), loss=plan["loss"])
    for i, gaps in plan["stallers"].items():
        sim.stall(i, STALL_LENGTH, STALL_GAPS[gaps])
    stalled = {sim.names[i] for i in plan["stallers"]}
    crashed_at: dict[str, float] = {}
    seen: dict[tuple[str, str], float] = {}

    def on_event(o) -> None:
        at = crashed_at.get(o.subject)
        if o.kind == "failed" and at is not None and o.observer not in stalled:
            seen.setdefault((o.observer, o.subject), o.at - at)

    def crash(victim: int) -> None:
        crashed_at[sim.names[victim]] = sim.now
        sim.crash(victim)

    sim.on_event = on_event
    for at, victim in plan["crashes"]:
        sim.at(at, lambda v=victim: crash(v))
    sim.run_until(duration)
    false = sim.false_failures()
    undetected = 0
    for name, at in crashed_at.items():
        watchers = [
            nm
            for i, nm in enumerate(sim.names)
            if nm not in stalled and nm != name and sim.nodes[i].crashed_at > at + DETECT_WINDOW
        ]
        undetected += sum(1 for w in watchers if seen.get((w, name), math.inf) > DETECT_WINDOW)
    return {
        "false": len(false),
        "false_by_healthy": sum(1 for o in false if o.observer not in stalled),
        "false_about_healthy": sum(1 for o in false if o.subject not in stalled),
        "victims": len({(o.subject, o.incarnation) for o in false}),
        "stalled_frac": sum(sim.nodes[i].stalled_for for i in plan["stallers"])
        / (len(stalled) * duration),
        "overflowed": sim.overflowed,
        "detect": [t for t in seen.values() if t <= DETECT_WINDOW],
        "undetected": undetected,
    }


def lifeguard(a) -> dict:
    """Lifeguard off, as published, and as shipped, on the same seeds and faults."""
    out: dict = {
        "scenario": "lifeguard",
        "nodes": a.nodes,
        "seeds": a.seeds,
        "duration_s": a.duration,
        "stalled_nodes": STALLED_NODES,
        "stall_length_s": list(STALL_LENGTH),
        "stall_gaps_s": {k: list(v) for k, v in STALL_GAPS.items()},
        "plans": [
            {
                "loss": p["loss"],
                "gaps": sorted(p["stallers"].values()),
                "crashes": len(p["crashes"]),
            }
            for p in (lifeguard_plan(s, a.nodes, a.duration) for s in range(a.seeds))
        ],
        "counting": "false dead declarations per declaring member: each 'failed' event at a"
        " member about a node that had not crashed; victims = distinct (node, incarnation)",
    }
    modes = a.modes.split(",")
    jobs = [(s, a.nodes, a.duration, mode) for mode in modes for s in range(a.seeds)]
    results = run_pool(lifeguard_one, jobs, a.jobs)
    for k, mode in enumerate(modes):
        res = results[k * a.seeds : (k + 1) * a.seeds]
        det = [t for r in res for t in r["detect"]]
        out[mode] = {
            "false_deaths": sum(r["false"] for r in res),
            "false_deaths_per_seed": [r["false"] for r in res],
            "declared_by_healthy_members": sum(r["false_by_healthy"] for r in res),
            "about_healthy_members": sum(r["false_about_healthy"] for r in res),
            "false_death_victims": sum(r["victims"] for r in res),
            "crash_detect_p50_s": round(pct(det, 50), 3),
            "crash_detect_p99_s": round(pct(det, 99), 3),
            "crash_detect_samples": len(det),
            "crash_undetected": sum(r["undetected"] for r in res),
            "stalled_fraction": round(sum(r["stalled_frac"] for r in res) / len(res), 3),
            "datagrams_dropped_full_buffer": sum(r["overflowed"] for r in res),
        }
    if "off" in out and "on" in out:
        off, on = out["off"]["false_deaths"], out["on"]["false_deaths"]
        ratio = off / max(on, 1)
        out["false_death_ratio"] = round(ratio, 1)
        out["false_death_ratio_is_lower_bound"] = on == 0
        shown = f"{'>= ' if on == 0 else ''}{ratio:.1f}"
        print(
            f"lifeguard: {a.nodes} nodes, {STALLED_NODES} stalling 1-5 s at a time,"
            f" {a.seeds} seeds x {a.duration:.0f} s: false dead declarations off {off}"
            f" / on {on} (ratio off/max(on,1) {shown}"
            f"{', on = 0 so this is a lower bound' if on == 0 else ''})"
        )
    for mode in a.modes.split(","):
        m = out[mode]
        print(
            f"  {mode:5s}: false deaths {m['false_deaths']} ({m['false_death_victims']} victims,"
            f" {m['declared_by_healthy_members']} declared by healthy members);"
            f" crash detection p50 {m['crash_detect_p50_s']:.2f} s"
            f" p99 {m['crash_detect_p99_s']:.2f} s over {m['crash_detect_samples']} samples,"
            f" undetected {m['crash_undetected']}"
        )
    return out


def rumour_one(args: tuple) -> dict:
    seed, n, loss = args
    sim = Sim(seed, n, LAN, loss=loss)
    sim.run_until(3.0)
    origin = sim.rng.randrange(n)
    name = sim.names[origin]
    seen: dict[str, float] = {}
    start = sim.now

    def on_event(o):
        if o.kind == "update" and o.subject == name and o.observer not in seen:
            seen[o.observer] = o.at - start

    sim.on_event = on_event
    sim.call(origin, lambda c: c.set_tags({"role": "dkron", "rumour": "1"}, sim.now))
    sim.run_until(start + 30.0, stop=lambda: len(seen) >= n - 1)
    return {"times": sorted(seen.values()), "missing": n - 1 - len(seen)}


def rumour(a) -> dict:
    res = run_pool(rumour_one, [(s, a.nodes, a.loss) for s in range(a.seeds)], a.jobs)
    need = math.ceil(0.9999 * (a.nodes - 1))
    reach = [r["times"][need - 1] if len(r["times"]) >= need else math.inf for r in res]
    out = {
        "scenario": "rumour",
        "nodes": a.nodes,
        "seeds": a.seeds,
        "loss": a.loss,
        "t_99_99_max": round(max(reach), 3),
        "t_99_99_median": round(pct(reach, 50), 3),
        "t_50_median": round(pct([r["times"][len(r["times"]) // 2] for r in res], 50), 3),
        "never_reached": sum(r["missing"] for r in res),
    }
    print(
        f"rumour: {a.nodes} nodes, loss {a.loss:.0%}, {a.seeds} seeds: 99.99% reached in"
        f" {out['t_99_99_median']:.2f} s median, {out['t_99_99_max']:.2f} s worst;"
        f" half the nodes in {out['t_50_median']:.2f} s"
    )
    return out


def run_pool(fn, jobs: list, procs: int) -> list:
    if procs <= 1:
        return [fn(j) for j in jobs]
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        return pool.map(fn, jobs, chunksize=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("scenario", choices=["detect", "false", "lifeguard", "rumour", "all"])
    ap.add_argument("--nodes", type=int)
    ap.add_argument("--seeds", type=int)
    ap.add_argument("--loss", type=float)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--duration", type=float)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-lifeguard", action="store_true")
    ap.add_argument("--round-robin", action="store_true", help="memberlist's probe order")
    ap.add_argument(
        "--modes", default="off,paper,on", help="lifeguard: which of off,paper,on to run"
    )
    a = ap.parse_args()
    started = time.time()
    plans = {
        "detect": [
            (detect, {"nodes": 1000, "seeds": 10, "loss": 0.01}),
            (detect, {"nodes": 100, "seeds": 50, "loss": 0.01}),
        ],
        "false": [(false_deaths, {"nodes": 17, "seeds": 100, "loss": 0.10})],
        "lifeguard": [(lifeguard, {"nodes": 100, "seeds": 6, "duration": 1800.0})],
        "rumour": [
            (rumour, {"nodes": 1000, "seeds": 5, "loss": 0.0}),
            (rumour, {"nodes": 1000, "seeds": 5, "loss": 0.10}),
        ],
    }
    chosen = [p for k, v in plans.items() if a.scenario in (k, "all") for p in v]
    if a.scenario != "all":
        chosen = chosen[:1]
    results = []
    for fn, defaults in chosen:
        ns = argparse.Namespace(**vars(a))
        for k, v in defaults.items():
            if getattr(ns, k) is None or a.scenario == "all":
                setattr(ns, k, v)
        results.append(fn(ns))
    meta = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "wall_s": round(time.time() - started, 1),
    }
    print(json.dumps({"results": results, **meta}))


if __name__ == "__main__":
    main()
