"""Gossip targets in the seeded simulator: detection time, false deaths, Lifeguard, rumours.

    python3 bench/swim_sim.py all            # every scenario with the issue's sizes
    python3 bench/swim_sim.py detect --nodes 1000 --seeds 10
    python3 bench/swim_sim.py false --nodes 17 --seeds 100 --hours 1
    python3 bench/swim_sim.py lifeguard --nodes 100 --seeds 5 --duration 300
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


STALLERS = (10, 11, 12, 13)


def lifeguard_one(args: tuple) -> dict:
    seed, n, duration, lifeguard = args
    sim = Sim(seed, n, LAN.with_(lifeguard=lifeguard), loss=0.0)
    for i in STALLERS:
        sim.stall(i, (1.0, 5.0), (0.05, 1.0))
    victim = 50
    crash_at = duration / 2 + sim.rng.random()
    seen: dict[str, float] = {}

    def on_event(o):
        if o.kind == "failed" and o.subject == sim.names[victim] and o.observer not in seen:
            seen[o.observer] = o.at - crash_at

    sim.on_event = on_event
    sim.at(crash_at, lambda: sim.crash(victim))
    sim.run_until(duration)
    stall_names = {sim.names[i] for i in STALLERS}
    false = sim.false_failures()
    return {
        "false": len(false),
        "false_about_healthy": sum(1 for o in false if o.subject not in stall_names),
        "staller_probe_failures": sum(sim.nodes[i].core.stats["probe_failures"] for i in STALLERS),
        "detect": [t for o, t in seen.items() if o not in stall_names],
    }


def lifeguard(a) -> dict:
    out: dict = {"scenario": "lifeguard", "nodes": a.nodes, "seeds": a.seeds}
    for mode in (False, True):
        jobs = [(s, a.nodes, a.duration, mode) for s in range(a.seeds)]
        res = run_pool(lifeguard_one, jobs, a.jobs)
        det = [t for r in res for t in r["detect"]]
        key = "on" if mode else "off"
        out[key] = {
            "false_deaths": sum(r["false"] for r in res),
            "false_deaths_about_healthy": sum(r["false_about_healthy"] for r in res),
            "failed_probes_by_stalled_nodes": sum(r["staller_probe_failures"] for r in res),
            "crash_detect_p50": round(pct(det, 50), 3),
            "crash_detect_p99": round(pct(det, 99), 3),
        }
    on, off = out["on"], out["off"]
    ratio = off["false_deaths"] / on["false_deaths"] if on["false_deaths"] else math.inf
    out["false_death_ratio"] = ratio if ratio != math.inf else "inf"
    print(
        f"lifeguard: {a.nodes} nodes, 4 stalling 1-5 s, {a.duration:.0f} s x {a.seeds} seeds:"
        f" false deaths off {off['false_deaths']} / on {on['false_deaths']} (ratio {ratio});"
        f" failed probes by stalled nodes off {off['failed_probes_by_stalled_nodes']}"
        f" / on {on['failed_probes_by_stalled_nodes']};"
        f" crash detection p50 off {off['crash_detect_p50']:.2f} s / on {on['crash_detect_p50']:.2f} s"
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
    ap.add_argument("--duration", type=float, default=300.0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-lifeguard", action="store_true")
    ap.add_argument("--round-robin", action="store_true", help="memberlist's probe order")
    a = ap.parse_args()
    started = time.time()
    plans = {
        "detect": [
            (detect, {"nodes": 1000, "seeds": 10, "loss": 0.01}),
            (detect, {"nodes": 100, "seeds": 50, "loss": 0.01}),
        ],
        "false": [(false_deaths, {"nodes": 17, "seeds": 100, "loss": 0.10})],
        "lifeguard": [(lifeguard, {"nodes": 100, "seeds": 6, "loss": 0.0})],
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
