"""The spawner starts each process at its instant, never before, and lets stopped runs go."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from dkron_pkg.executors.spawner import Spawner

TRUE = [sys.executable, "-c", "pass"]


def test_processes_start_at_their_instant_and_in_time_order() -> None:
    spawner = Spawner()
    base = time.time_ns() + 300_000_000
    starts = [base + k * 50_000_000 for k in (3, 0, 2, 1)]
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(
                lambda at: spawner.popen(TRUE, start_at_ns=at, stdout=subprocess.DEVNULL), starts
            )
        )
    spawned = []
    for at, result in zip(starts, results, strict=True):
        assert result is not None
        proc, spawned_ns = result
        assert proc.wait(timeout=10) == 0
        assert spawned_ns >= at, "a process must never start before its scheduled instant"
        spawned.append((at, spawned_ns))
    by_instant = [ns for _, ns in sorted(spawned)]
    assert by_instant == sorted(by_instant), "earlier instants are spawned first"


def test_a_run_stopped_before_its_instant_gets_no_process() -> None:
    spawner = Spawner()
    cancel = threading.Event()
    out: list = []
    waiter = threading.Thread(
        target=lambda: out.append(
            spawner.popen(TRUE, start_at_ns=time.time_ns() + 30_000_000_000, cancel=cancel)
        )
    )
    waiter.start()
    time.sleep(0.1)
    cancel.set()
    waiter.join(timeout=10)
    assert not waiter.is_alive(), "a stopped run must not wait for its far-away instant"
    assert out == [None]
    assert not spawner.bursting()


def test_spawn_errors_reach_the_caller() -> None:
    spawner = Spawner()
    with pytest.raises(FileNotFoundError):
        spawner.popen(["/nonexistent/dkron-test-binary"], start_at_ns=None)
    result = spawner.popen(TRUE, stdout=subprocess.DEVNULL)
    assert result is not None and result[0].wait(timeout=10) == 0


def test_wait_quiet_returns_once_the_burst_is_started() -> None:
    spawner = Spawner()
    at = time.time_ns() + 200_000_000
    with ThreadPoolExecutor(8) as pool:
        futures = [
            pool.submit(spawner.popen, TRUE, start_at_ns=at, stdout=subprocess.DEVNULL)
            for _ in range(20)
        ]
        time.sleep(0.05)
        spawner.wait_quiet(30)  # before the instant nothing is due: quiet at once
        results = [f.result(timeout=30) for f in futures]
    spawner.wait_quiet(30)
    assert not spawner.bursting()
    for result in results:
        assert result is not None and result[0].wait(timeout=10) == 0
