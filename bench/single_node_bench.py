"""Single-node figures: job create rate, list latency, RSS and launch lateness.

Starts a real agent process on 127.0.0.1 and prints:
  * create rate of 10,000 jobs through POST /v1/jobs (1 client and 8 clients),
  * p50/p99 latency of paginated GET /v1/jobs with 10,000 jobs,
  * RSS of the agent with 10,000 jobs and 100 executions each,
  * lateness (process start minus scheduled second) of one job due alone among 10,000,
  * lateness of a burst of 1,000 shell jobs due in the same second, beside the floor: the time
    this machine needs to spawn 1,000 processes back to back, measured in the same run.

Usage: python3 bench/single_node_bench.py [--jobs 10000] [--burst 1000] [--executions 100]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Agent:
    def __init__(self, data_dir: Path):
        self.port = free_port()
        self.data_dir = data_dir
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.data_dir.parent / "agent.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "dkron.py"),
                "agent",
                "--server",
                "--bootstrap-expect",
                "1",
                "--node-name",
                "bench",
                "--data-dir",
                str(self.data_dir),
                "--http-addr",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("agent did not start")

    def request(self, method: str, path: str, body=None, conn=None) -> tuple[int, bytes]:
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        out = resp.status, resp.read()
        if own:
            conn.close()
        return out

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def job(name: str, schedule: str, command: str = "true") -> dict:
    return {
        "name": name,
        "schedule": schedule,
        "executor": "shell",
        "executor_config": {"command": command},
        "metadata": {"bench": "yes", "shard": str(hash(name) % 10)},
    }


def create_jobs(agent: Agent, names: list[str], clients: int, schedule: str) -> float:
    """Create jobs with `clients` keep-alive connections; return jobs per second."""
    chunks = [names[i::clients] for i in range(clients)]
    errors: list[str] = []

    def worker(chunk: list[str]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=60)
        for name in chunk:
            status, body = agent.request("POST", "/v1/jobs", job(name, schedule), conn)
            if status != 201:
                errors.append(body.decode())
        conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} creates failed, first: {errors[0]}")
    return len(names) / elapsed


def list_latency(agent: Agent, total: int, samples: int = 300) -> tuple[float, float]:
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=60)
    rng = random.Random(1)
    times = []
    for _ in range(samples):
        start = rng.randrange(0, max(1, total - 25))
        path = f"/v1/jobs?_sort=name&_order=ASC&_start={start}&_end={start + 25}"
        t0 = time.perf_counter()
        status, _ = agent.request("GET", path, conn=conn)
        times.append((time.perf_counter() - t0) * 1000)
        assert status == 200
    conn.close()
    return pct(times, 50), pct(times, 99)


def fill_executions(data_dir: Path, per_job: int) -> int:
    """Write `per_job` finished executions for every job straight into the stopped store."""
    from dkron_pkg.store import Store

    store = Store(str(data_dir / "state.db"))
    names = store.job_names()
    base = time.time_ns() - 10**12
    count = 0
    batch: list[dict] = []
    for j, name in enumerate(names):
        for i in range(per_job):
            at = base + j * 1000 + i * 10**9
            ex = {
                "id": f"{at}-bench",
                "job_name": name,
                "started_at": "2026-01-01T00:00:00Z",
                "finished_at": "2026-01-01T00:00:01Z",
                "success": True,
                "output": f"run {i} of {name}: " + "x" * 200,
                "node_name": "bench",
                "group": at,
                "attempt": 1,
                "started_ns": at,
            }
            batch.append({"op": "execution_started", "execution": ex})
            batch.append({"op": "execution_done", "execution": ex})
            count += 1
        if len(batch) >= 4000:
            store.apply_batch(batch)
            batch = []
    if batch:
        store.apply_batch(batch)
    store.close()
    return count


def lateness_ms(data_dir: Path, job_prefix: str) -> list[float]:
    """Process start minus scheduled second for every execution of matching jobs."""
    db = sqlite3.connect(f"file:{data_dir / 'state.db'}?mode=ro", uri=True)
    out = []
    for (body,) in db.execute(
        "SELECT body FROM executions WHERE job_name LIKE ?", (job_prefix + "%",)
    ):
        ex = json.loads(body)
        if ex.get("scheduled_ns") and ex.get("process_started_ns"):
            out.append((ex["process_started_ns"] - ex["scheduled_ns"]) / 1e6)
    db.close()
    return out


def spawn_floor(n: int) -> float:
    """Seconds to spawn n processes back to back (the physical floor of a burst)."""
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(["true"], start_new_session=True, stdout=subprocess.DEVNULL)
        for _ in range(n)
    ]
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.wait()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--burst", type=int, default=1_000)
    ap.add_argument("--executions", type=int, default=100)
    ap.add_argument("--single-runs", type=int, default=20)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dkron-bench-"))
    data = tmp / "data"
    data.mkdir()
    agent = Agent(data)
    agent.start()
    try:
        half = args.jobs // 2
        names = [f"job-{i:05d}" for i in range(args.jobs)]
        rate1 = create_jobs(agent, names[:half], 1, "0 0 3 * * *")
        rate8 = create_jobs(agent, names[half:], 8, "0 0 3 * * *")
        print(f"create rate, 1 client : {rate1:8.0f} jobs/s")
        print(f"create rate, 8 clients: {rate8:8.0f} jobs/s")
        p50, p99 = list_latency(agent, args.jobs)
        print(f"GET /v1/jobs (25 per page, {args.jobs} jobs): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        print(f"RSS with {args.jobs} jobs, no executions: {agent.rss_mb():.1f} MB")

        # One job due every second while 10,000 others wait.
        agent.request("POST", "/v1/jobs", job("alone", "* * * * * *"))
        time.sleep(args.single_runs + 1.5)
        agent.request("POST", "/v1/jobs/alone/toggle")  # keep its executions
        single = lateness_ms(data, "alone")
        print(
            f"lateness, 1 job due among {args.jobs}: n={len(single)} "
            f"p50 {pct(single, 50):.1f} ms, p99 {pct(single, 99):.1f} ms (target p99 < 20 ms)"
        )

        # A burst: 1,000 jobs due in the same second.
        floors = [spawn_floor(args.burst)]
        burst_names = [f"burst-{i:04d}" for i in range(args.burst)]
        due = int(time.time()) + 8 + args.burst // 200
        hh, mm, ss = time.strftime("%H %M %S", time.gmtime(due)).split()
        spec = f"{int(ss)} {int(mm)} {int(hh)} * * *"
        for name in burst_names:
            body = job(name, spec)
            body["timezone"] = "UTC"
            status, text = agent.request("POST", "/v1/jobs", body)
            assert status == 201, text
        wait = due - time.time() + 3 + args.burst / 200
        time.sleep(max(0.0, wait))

        def burst_done() -> bool:
            status, body = agent.request("GET", "/v1/busy")
            return status == 200 and not json.loads(body)

        for _ in range(120):
            if burst_done():
                break
            time.sleep(0.5)
        for _ in range(120):  # the last records may still be on their way to disk
            burst = lateness_ms(data, "burst-")
            if len(burst) >= args.burst:
                break
            time.sleep(0.5)
        floors += [spawn_floor(args.burst), spawn_floor(args.burst)]
        floor = sorted(floors)[1]  # the median of three: one before the burst, two after
        ratio = pct(burst, 99) / (floor * 1000)
        print(
            f"burst of {args.burst} due together: n={len(burst)} p50 {pct(burst, 50):.0f} ms, "
            f"p99 {pct(burst, 99):.0f} ms; spawn floor for {args.burst} processes "
            f"{floor * 1000:.0f} ms; p99/floor = {ratio:.2f} (target <= 1.5)"
        )
        for name in burst_names:
            agent.request("DELETE", f"/v1/jobs/{name}")
    finally:
        agent.stop()

    filled = fill_executions(data, args.executions)
    agent = Agent(data)
    agent.start()
    try:
        # Touch every job's executions once, as a UI or client walking the list would.
        conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=60)
        for i in range(0, args.jobs, 50):
            agent.request("GET", f"/v1/jobs/job-{i:05d}/executions", conn=conn)
        conn.close()
        p50, p99 = list_latency(agent, args.jobs, 100)
        print(
            f"RSS with {args.jobs} jobs and {filled} executions: {agent.rss_mb():.1f} MB "
            f"(target < 150 MB); list p50 {p50:.1f} ms p99 {p99:.1f} ms"
        )
    finally:
        agent.stop()
    print(f"data folder: {tmp} ({sum(f.stat().st_size for f in data.iterdir()) / 1e6:.0f} MB)")
    if os.environ.get("BENCH_KEEP") != "1":
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


if __name__ == "__main__":
    main()
