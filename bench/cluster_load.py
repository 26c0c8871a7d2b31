"""Load: 10,000 jobs on 3 servers and 2 agents, many of them every few seconds.

Prints the launches per second the leader sustains (offered and achieved), lateness from the
scheduled second to the process start on the agent (p50/p99), the leader's RSS and CPU sampled
over the run (first and last samples show whether memory stays flat), API latency on the leader
while it schedules, and failover time: leader kill -9 to the first process start of a launch
that only the new leader could have dispatched (scheduled later than the old leader's 250 ms
dispatch lead).

Usage: python3 bench/cluster_load.py [--jobs 10000] [--frequent 500] [--every 5]
                                     [--minutes 10] [--kills 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from agent_support import AgentProcess, shell_job
from chaos_failover import leader_name, node_name, start_cluster

DISPATCH_LEAD_NS = 250_000_000
KEPT_EXECUTIONS = 100  # the agents' default executions_per_job
LOG_TIME = re.compile(r"time=(\S+Z) ")
SLOW_ROUND = re.compile(r"loop round took (\d+) ms")
CLK_TCK = 100


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def the_leader(servers: list[AgentProcess]) -> AgentProcess:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        name = leader_name(servers)
        node = next((s for s in servers if node_name(s) == name), None)
        if node is not None:
            return node
        time.sleep(0.1)
    raise RuntimeError("no leader within 60 s")


def job_set(total: int, frequent: int, every: int) -> list[dict]:
    """`frequent` jobs every `every` s, their phases spread over the period (as jobs created at
    different times would be); the rest once an hour at a random second. All run on the agents.
    """
    rng = random.Random(7)
    jobs = []
    for i in range(total):
        if i < frequent:
            schedule = f"{i % every}/{every} * * * * *"
        else:
            schedule = f"{rng.randrange(60)} {rng.randrange(60)} * * * *"
        job = shell_job(f"load-{i:05d}", "true", schedule=schedule)
        job["tags"] = {"server": "false:1"}
        jobs.append(job)
    return jobs


def create_all(leader: AgentProcess, jobs: list[dict], clients: int = 8) -> float:
    """Create the jobs through the leader's API with several clients; returns jobs per second."""
    chunks = [jobs[i::clients] for i in range(clients)]
    errors: list[str] = []

    def worker(chunk: list[dict]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", leader.port, timeout=30)
        for job in chunk:
            conn.request("POST", "/v1/jobs", json.dumps(job), {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            if r.status != 201:
                errors.append(f"{job['name']}: HTTP {r.status}")
        conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} creates failed, first: {errors[0]}")
    return len(jobs) / (time.perf_counter() - t0)


def api_latency_ms(node: AgentProcess, samples: int = 20) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        conn.request("GET", "/v1/jobs?_start=0&_end=20")
        conn.getresponse().read()
        out.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return out


def executions(node: AgentProcess, since_ns: int) -> list[dict]:
    """Executions recorded (replicated) on `node` whose scheduled time is at or after since_ns."""
    db = sqlite3.connect(f"file:{node.data_dir / 'state.db'}?mode=ro", uri=True, timeout=30)
    out = []
    for (body,) in db.execute("SELECT body FROM executions"):
        ex = json.loads(body)
        if ex.get("scheduled_ns", 0) >= since_ns and ex.get("process_started_ns"):
            out.append(ex)
    db.close()
    return out


def sample_loop(leader: AgentProcess, minutes: float, every_s: float) -> list[dict]:
    """Sample the leader's RSS, CPU and API latency while it schedules."""
    pid = leader.proc.pid
    samples = []
    t_start = time.monotonic()
    cpu0, wall0 = proc_cpu_seconds(pid), time.monotonic()
    while time.monotonic() - t_start < minutes * 60:
        time.sleep(every_s)
        cpu, wall = proc_cpu_seconds(pid), time.monotonic()
        lat = api_latency_ms(leader)
        sample = {
            "t_s": round(wall - t_start),
            "rss_mb": round(proc_rss_mb(pid), 1),
            "cpu_pct": round((cpu - cpu0) / (wall - wall0) * 100, 1),
            "api_p50_ms": round(pct(lat, 50), 2),
            "api_max_ms": round(max(lat), 2),
        }
        cpu0, wall0 = cpu, wall
        samples.append(sample)
        print(
            f"  t={sample['t_s']:>5}s leader RSS {sample['rss_mb']:7.1f} MB  "
            f"CPU {sample['cpu_pct']:5.1f}%  GET /v1/jobs p50 {sample['api_p50_ms']:.1f} ms "
            f"max {sample['api_max_ms']:.1f} ms",
            flush=True,
        )
    return samples


def failover(servers: list[AgentProcess], settle_s: float) -> float:
    """Kill -9 the leader; seconds to the first process start only the new leader dispatched."""
    old = the_leader(servers)
    t0 = time.time_ns()
    old.kill9()
    new = the_leader([s for s in servers if s is not old])
    time.sleep(settle_s)
    first = min(
        (
            ex["process_started_ns"]
            for ex in executions(new, t0 + DISPATCH_LEAD_NS)
            if ex["process_started_ns"] > t0
        ),
        default=None,
    )
    old.start()
    if first is None:
        raise RuntimeError(f"no launch within {settle_s} s of killing the leader")
    return (first - t0) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--frequent", type=int, default=500, help="jobs running every few seconds")
    ap.add_argument("--every", type=int, default=5, help="period of the frequent jobs, seconds")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--sample-every", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    ap.add_argument("--raft-multiplier", type=int, default=1, help="passed to the servers")
    a = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="dkron-load-"))
    servers, agents = start_cluster(base, ("--raft-multiplier", str(a.raft_multiplier)))
    try:
        leader = the_leader(servers)
        jobs = job_set(a.jobs, a.frequent, a.every)
        rate = create_all(leader, jobs)
        print(f"created {a.jobs} jobs through the leader at {rate:.0f} jobs/s", flush=True)
        time.sleep(a.every + 2)  # every frequent job has entered its rhythm
        print(
            f"sampling the leader ({node_name(leader)}) for {a.minutes:g} min, "
            f"{a.frequent} jobs every {a.every} s + {a.jobs - a.frequent} hourly jobs:",
            flush=True,
        )
        window_start_ns = time.time_ns()
        samples = sample_loop(leader, a.minutes, a.sample_every)
        window_end_ns = time.time_ns()
        if the_leader(servers) is not leader:
            print("warning: leadership changed during the sampling window")
        raft_seen = raft_events(servers, window_start_ns, window_end_ns)
        # Each job keeps its last KEPT_EXECUTIONS runs: count launches only over the span every
        # frequent job still has on record (the whole window when it is shorter).
        counted_end = window_end_ns - 5_000_000_000
        counted_start = max(
            window_start_ns, counted_end - (KEPT_EXECUTIONS - 2) * a.every * 1_000_000_000
        )
        exs = [ex for ex in executions(leader, counted_start) if ex["scheduled_ns"] < counted_end]
        seconds = (counted_end - counted_start) / 1e9
        hourly = sum(
            _fires_between(j["schedule"], counted_start, counted_end) for j in jobs[a.frequent :]
        )
        offered = a.frequent / a.every + hourly / seconds
        late = [(ex["process_started_ns"] - ex["scheduled_ns"]) / 1e6 for ex in exs]
        on_agents = sum(1 for ex in exs if ex.get("node_name", "").startswith("a"))
        fails = []
        for _ in range(a.kills):
            try:
                fails.append(failover(servers, settle_s=8.0))
            except RuntimeError as e:  # report it with the other figures, do not lose them
                print(f"failover: {e}", flush=True)
                fails.append(float("nan"))
            time.sleep(5)  # the restarted node catches up before the next kill
        result = {
            "jobs": a.jobs,
            "frequent": a.frequent,
            "every_s": a.every,
            "create_jobs_per_s": round(rate),
            "launches_offered_per_s": round(offered, 1),
            "launches_achieved_per_s": round(len(exs) / seconds, 1),
            "launches": len(exs),
            "on_agents": on_agents,
            "lateness_p50_ms": round(pct(late, 50), 1),
            "lateness_p99_ms": round(pct(late, 99), 1),
            "lateness_max_ms": round(max(late, default=float("nan")), 1),
            "leader_rss_first_mb": samples[0]["rss_mb"],
            "leader_rss_last_mb": samples[-1]["rss_mb"],
            "leader_rss_max_mb": max(s["rss_mb"] for s in samples),
            "leader_cpu_mean_pct": round(sum(s["cpu_pct"] for s in samples) / len(samples), 1),
            "api_p50_ms": round(pct([s["api_p50_ms"] for s in samples], 50), 2),
            "api_max_ms": round(max(s["api_max_ms"] for s in samples), 2),
            "failover_s": [round(f, 3) for f in fails],
            **raft_seen,
            "minutes": a.minutes,
        }
    finally:
        for node in servers + agents:
            node.stop()
    print(
        f"launches: {result['launches']} in the last {seconds:.0f} s of the window = "
        f"{result['launches_achieved_per_s']}/s achieved of {result['launches_offered_per_s']}/s "
        f"offered ({on_agents} on the agents)"
    )
    print(
        f"lateness (scheduled second -> process start on the agent): "
        f"p50 {result['lateness_p50_ms']} ms, p99 {result['lateness_p99_ms']} ms, "
        f"max {result['lateness_max_ms']} ms"
    )
    print(
        f"leader RSS first {result['leader_rss_first_mb']} MB, last "
        f"{result['leader_rss_last_mb']} MB, max {result['leader_rss_max_mb']} MB; "
        f"CPU mean {result['leader_cpu_mean_pct']}% of one core"
    )
    print(f"API GET /v1/jobs page: p50 {result['api_p50_ms']} ms, max {result['api_max_ms']} ms")
    print(
        f"raft in the sampling window: {result['leader_elections']} leaders elected, "
        f"{result['slow_loop_rounds']} loop rounds over 100 ms (slowest "
        f"{result['slowest_loop_round_ms']} ms)"
    )
    fo = sorted(result["failover_s"])
    print(
        f"failover (leader kill -9 -> first launch by the new leader): "
        f"{', '.join(f'{f * 1000:.0f} ms' for f in fo)}"
    )
    if a.json:
        a.json.write_text(json.dumps({**result, "samples": samples}, indent=1))
    print(f"logs in {base}")


def raft_events(servers: list[AgentProcess], lo_ns: int, hi_ns: int) -> dict:
    """Elections and slow Raft loop rounds the servers logged between lo and hi."""
    elected = slow = 0
    slowest = 0
    for server in servers:
        for line in server.log().splitlines():
            found = LOG_TIME.match(line)
            if not found:
                continue
            at = datetime.fromisoformat(found.group(1)).timestamp() * 1e9
            if not lo_ns <= at < hi_ns:
                continue
            if " is leader in term " in line:
                elected += 1
            took = SLOW_ROUND.search(line)
            if took:
                slow += 1
                slowest = max(slowest, int(took.group(1)))
    return {
        "leader_elections": elected,
        "slow_loop_rounds": slow,
        "slowest_loop_round_ms": slowest,
    }


def _fires_between(schedule: str, lo_ns: int, hi_ns: int) -> int:
    """How often an hourly `s m * * * *` schedule fires in [lo, hi)."""
    sec, minute = (int(x) for x in schedule.split()[:2])
    t = lo_ns // 1_000_000_000
    hour_start = t - t % 3600
    hours = range(hour_start, hi_ns // 1_000_000_000 + 3600, 3600)
    return sum(1 for h in hours if lo_ns <= (h + minute * 60 + sec) * 1_000_000_000 < hi_ns)


if __name__ == "__main__":
    main()
