"""Linearizable reads through any server, soaked in the Raft simulator: many seeds, 0 violations.

Each seed is the full hostile schedule of `tests/raftsim.py` (a leader crash, then partitions,
crashes losing unsynced writes, restarts, membership changes, snapshots, leadership transfers,
clock jumps), with clients reading and writing through leaders and followers by the driver's
path (batched ReadIndex rounds; follower rounds asked of the leader with the follower's term;
forwarded writes answered by the follower that applied them). The Wing-Gong checker must accept
every history. Then the same seeds' first `--broken` with followers reading their own copy
(`unsafe_follower_local_reads`): the checker must catch them.

    python3 bench/read_soak.py                      # 10,000 seeds on all cores
    python3 bench/read_soak.py --seeds 500 --workers 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from raftsim import SimConfig, run_seed

COUNTED = (
    "reads_on_leader",
    "reads_on_follower",
    "writes_forwarded",
    "read_rounds",
    "read_rounds_given_up",
    "requests_failed",
)


SHORT = False


def config(seed: int) -> SimConfig:
    cfg = SimConfig.from_seed(seed)
    if SHORT:
        cfg.duration_ms = 1500
    return cfg


def one(seed: int) -> tuple[int, list[str], Counter[str]]:
    outcome = run_seed(seed, config(seed), failover=not SHORT)
    stats = Counter({k: outcome.stats[k] for k in COUNTED})
    stats["ops_checked"] = len(outcome.history)
    stats["reads_answered"] = sum(1 for op in outcome.history if op.kind == "get")
    stats["acknowledged_writes"] = outcome.acked_writes
    return seed, outcome.violations, stats


def broken(seed: int) -> bool:
    cfg = config(seed)
    cfg.unsafe_follower_local_reads = True
    return bool(run_seed(seed, cfg, failover=not SHORT).violations)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10_000)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--broken", type=int, default=200, help="seeds run in the broken mode")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--short", action="store_true", help="1.5 s of chaos, no failover")
    args = parser.parse_args()
    global SHORT
    SHORT = args.short
    began = time.perf_counter()
    bad: list[tuple[int, list[str]]] = []
    totals: Counter[str] = Counter()
    seeds = range(args.start, args.start + args.seeds)
    with ProcessPoolExecutor(args.workers) as pool:
        for done, (seed, violations, stats) in enumerate(
            pool.map(one, seeds, chunksize=20), start=1
        ):
            totals.update(stats)
            if violations:
                bad.append((seed, violations))
                print(f"VIOLATION seed {seed}: {violations[0]}", flush=True)
            if done % 1000 == 0:
                print(f"... {done} seeds, {time.perf_counter() - began:.0f} s", flush=True)
        caught = sum(pool.map(broken, range(args.start, args.start + args.broken), chunksize=5))
    elapsed = time.perf_counter() - began
    print(f"\nseeds {args.seeds} (from {args.start}), seeds with violations: {len(bad)}")
    print(f"operations checked (Wing-Gong): {totals['ops_checked']}")
    print(
        f"reads answered: {totals['reads_answered']}; asked on the leader "
        f"{totals['reads_on_leader']}, on a follower {totals['reads_on_follower']}"
    )
    print(
        f"writes acknowledged: {totals['acknowledged_writes']}; forwarded by a follower "
        f"{totals['writes_forwarded']}"
    )
    print(
        f"read rounds {totals['read_rounds']}, given up after the limit "
        f"{totals['read_rounds_given_up']}; requests answered with an error "
        f"{totals['requests_failed']}"
    )
    print(f"broken mode (followers read their own copy): caught in {caught} of {args.broken} seeds")
    print(f"wall {elapsed:.0f} s with {args.workers} workers")
    return 1 if bad or (args.broken and caught == 0) else 0


if __name__ == "__main__":
    raise SystemExit(main())
