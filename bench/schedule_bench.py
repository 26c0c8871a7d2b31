"""Micro-benchmark of the schedule engine: next_after calls per second for common spec kinds.

The leader asks for the next fire time of every job after each run, so with 10,000 jobs this
rate bounds how fast it can re-arm them. Run: python3 bench/schedule_bench.py [seconds-per-case]
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dkron_pkg.schedule import parse_schedule

CASES = [
    ("every second", "* * * * * *", "UTC"),
    ("every 5 minutes, Berlin", "0 */5 * * * *", "Europe/Berlin"),
    ("02:30 daily, New York (DST)", "0 30 2 * * *", "America/New_York"),
    ("weekdays 9-17, Sydney", "0 0 9-17 * * MON-FRI", "Australia/Sydney"),
    ("1st or Monday (OR rule)", "0 0 0 1 * MON", "UTC"),
    ("@daily, job zone", "@daily", "Asia/Tokyo"),
    ("@every 90s", "@every 90s", ""),
    ("29 February (rare)", "0 0 12 29 2 *", "Europe/Paris"),
]


def rate(spec: str, zone: str, seconds: float) -> tuple[float, float]:
    """(next_after calls/s from times spread over 2025-2026, cached parse_schedule calls/s)."""
    schedule = parse_schedule(spec, zone)
    base = datetime(2025, 1, 1, tzinfo=UTC)
    starts = [base + timedelta(seconds=k * 63_113) for k in range(1000)]  # about two years
    for t in starts:
        schedule.next_after(t)  # warm the zone's transition cache once
    calls = 0
    begin = time.perf_counter()
    while time.perf_counter() - begin < seconds:
        for t in starts:
            schedule.next_after(t)
        calls += len(starts)
    next_rate = calls / (time.perf_counter() - begin)
    begin = time.perf_counter()
    for _ in range(20000):
        parse_schedule(spec, zone)
    cached_rate = 20000 / (time.perf_counter() - begin)
    return next_rate, cached_rate


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
    print(f"{'case':32} {'spec':24} {'next_after/s':>13} {'cached parse/s':>15}")
    for label, spec, zone in CASES:
        nxt, cached = rate(spec, zone, seconds)
        print(f"{label:32} {spec:24} {nxt:13,.0f} {cached:15,.0f}")
    begin = time.perf_counter()
    jobs = [parse_schedule(f"{i % 60} {i % 7} * * * *", "Europe/Berlin") for i in range(10000)]
    after = datetime(2025, 6, 1, tzinfo=UTC)
    for job in jobs:
        job.next_after(after)
    elapsed = time.perf_counter() - begin
    print(f"10,000 distinct jobs: parse + one next_after each in {elapsed * 1000:.0f} ms")


if __name__ == "__main__":
    main()
