"""Soak of the launch simulation: many seeds of Raft servers and job-running nodes under
leader crashes and pauses, partitions, node crashes and message loss, the launch decisions taken
by the shipped core (`dkron_pkg.launch`, driven by tests/launchsim.py).

Prints the seeds run, the violations (target 0), the launches checked, the processes run, the
run-once times checked under a live quorum, how often the hostile paths were taken, and the
wall time.

    python3 bench/launch_soak.py                 # 5,000 seeds on every core
    python3 bench/launch_soak.py --seeds 500 --workers 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from multiprocessing import Pool
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from launchsim import run_seed


def one(seed: int) -> tuple[int, list[str], int, int, int, dict[str, int]]:
    outcome = run_seed(seed)
    return (
        seed,
        outcome.violations,
        outcome.launches_checked,
        outcome.runs,
        outcome.covered_checked,
        dict(outcome.stats),
    )


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=positive, default=5000, help="how many seeds (5000)")
    parser.add_argument("--first", type=int, default=0, help="first seed (0)")
    parser.add_argument("--workers", type=positive, default=os.cpu_count() or 1)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    started = time.perf_counter()
    violations: list[str] = []
    launches = runs = covered = 0
    stats: Counter[str] = Counter()
    seeds = range(args.first, args.first + args.seeds)
    with Pool(args.workers) as pool:
        for _seed, found, checked, ran, cov, st in pool.imap_unordered(one, seeds, chunksize=8):
            violations.extend(found)
            launches += checked
            runs += ran
            covered += cov
            stats.update(st)
    wall = time.perf_counter() - started
    figures = {
        "command": " ".join(["python3", "bench/launch_soak.py", *sys.argv[1:]]),
        "seeds": args.seeds,
        "first_seed": args.first,
        "violations": len(violations),
        "launches_checked": launches,
        "runs": runs,
        "run_once_times_checked": covered,
        "leader_crashes": stats["leader_crashes"],
        "leader_pauses": stats["stalls"],
        "agent_crashes": stats["agent_crashes"],
        "nodes_declared_dead": stats["declared_dead"],
        "partitions": stats["partitions"] + stats["isolations"],
        "launches_settled": sum(
            stats[k] for k in ("settle_lost", "settle_resumed", "settle_dispatch_now")
        )
        + stats["settle_skipped"],
        "standins": stats["standins"],
        "runs_refused_by_fencing": stats["run_refused"],
        "runs_on_the_leader": stats["local_runs"],
        "manual_runs": stats["runs_manual"],
        "wall_seconds": round(wall, 1),
        "seconds_per_seed": round(wall * args.workers / args.seeds, 3),
        "workers": args.workers,
    }
    for key, value in figures.items():
        print(f"{key:>24}: {value}")
    for line in sorted(violations)[:20]:
        print("  " + line)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
