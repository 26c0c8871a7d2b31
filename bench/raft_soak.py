"""Raft simulation soak: many seeds of the hostile simulator, violations and failover times.

Each seed: warm-up, one leader crash measured from the crash to the first commit by the new
leader (150-300 ms election timeouts, the seed's own loss/delay), then chaos (partitions,
asymmetric links, crashes losing unsynced writes, restarts, membership changes, snapshot
installs, leadership transfers), then healing and the end checks (no acknowledged write
lost, linearizable history).

    python3 bench/raft_soak.py                 # 10,000 seeds on all cores
    python3 bench/raft_soak.py --seeds 500 --start 0 --workers 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from raftsim import run_seed


def one(seed: int) -> tuple[int, list[str], int | None, int, int]:
    outcome = run_seed(seed)
    return seed, outcome.violations, outcome.failover_ms, outcome.acked_writes, len(outcome.history)


def percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10_000)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    began = time.perf_counter()
    bad: list[tuple[int, list[str]]] = []
    failovers: list[int] = []
    missing_failover = 0
    acked = ops = 0
    seeds = range(args.start, args.start + args.seeds)
    with ProcessPoolExecutor(args.workers) as pool:
        for done, (seed, violations, failover, n_acked, n_ops) in enumerate(
            pool.map(one, seeds, chunksize=20), start=1
        ):
            if violations:
                bad.append((seed, violations))
                print(f"VIOLATION seed {seed}: {violations[0]}", flush=True)
            if failover is None:
                missing_failover += 1
            else:
                failovers.append(failover)
            acked += n_acked
            ops += n_ops
            if done % 1000 == 0:
                print(f"... {done} seeds, {time.perf_counter() - began:.0f} s", flush=True)
    elapsed = time.perf_counter() - began
    figures = {
        "seeds": args.seeds,
        "first_seed": args.start,
        "seeds_with_violations": len(bad),
        "failing_seeds": [seed for seed, _ in bad][:50],
        "acknowledged_writes": acked,
        "history_ops_checked": ops,
        "failover_samples": len(failovers),
        "failover_missing": missing_failover,
        "failover_p50_ms": percentile(failovers, 0.50) if failovers else None,
        "failover_p99_ms": percentile(failovers, 0.99) if failovers else None,
        "failover_max_ms": max(failovers) if failovers else None,
        "failover_mean_ms": round(statistics.fmean(failovers), 1) if failovers else None,
        "wall_seconds": round(elapsed, 1),
        "python": platform.python_version(),
        "machine": f"{platform.machine()} x{os.cpu_count()}",
    }
    print(f"seeds: {args.seeds} (from {args.start}), workers {args.workers}, {elapsed:.0f} s")
    print(f"violations: {len(bad)} seeds")
    print(f"acknowledged writes: {acked}, history operations checked: {ops}")
    print(
        "failover (leader crash -> first commit by new leader, simulated): "
        f"p50 {figures['failover_p50_ms']} ms, p99 {figures['failover_p99_ms']} ms, "
        f"max {figures['failover_max_ms']} ms over {len(failovers)} samples"
        f" ({missing_failover} seeds without a sample)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
