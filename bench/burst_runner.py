"""The runner alone: 1,000 shell runs due at the same instant, beside the spawn floor.

Separates the cost of starting processes in our runner and executor from the rest of the
agent. Usage: python3 bench/burst_runner.py [--runs 1000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dkron_pkg.runner import Runner


def spawn_floor(n: int) -> float:
    """Milliseconds to start n processes back to back from one thread."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["true"], start_new_session=True) for _ in range(n)]
    elapsed = (time.perf_counter() - t0) * 1000
    for p in procs:
        p.wait()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    args = ap.parse_args()
    floors = [spawn_floor(args.runs)]
    finished: list[dict] = []
    runner = Runner("bench", lambda job, ex, to: None, lambda job, ex, s, to: finished.append(ex))
    job = {"name": "burst", "executor": "shell", "executor_config": {"command": "true"}}
    due = time.time_ns() + 3_000_000_000
    for i in range(args.runs):
        runner.start(job, i, 1, due, not_before_ns=due)
    runner.wait_idle(120)
    late = sorted((ex["process_started_ns"] - due) / 1e6 for ex in finished)
    floors += [spawn_floor(args.runs), spawn_floor(args.runs)]
    floor = sorted(floors)[1]  # median of three: one before the burst, two after
    p99 = late[min(len(late) - 1, round(0.99 * (len(late) - 1)))]
    print(
        f"{len(late)} runs due together: p50 {late[len(late) // 2]:.0f} ms, p99 {p99:.0f} ms; "
        f"spawn floor {floor:.0f} ms; p99/floor {p99 / floor:.2f}"
    )


if __name__ == "__main__":
    main()
