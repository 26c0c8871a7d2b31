"""Real processes on 127.0.0.1: our gossip agents beside HashiCorp Serf agents, same profile.

    python3 bench/swim_loopback.py                 # N = 5, 20, 50, LAN profile
    python3 bench/swim_loopback.py --sizes 5 20 --profile local

For each N and each implementation: start N agents (all join the first), then measure
- convergence: from the first launch until every agent has seen every other join, and the
  same from the moment the last agent was up (Python's start-up time left out);
- failure: kill -9 of one agent until every other agent reports it failed;
- leave: SIGINT (graceful leave) of another until every other agent reports it left;
- RSS per agent (VmRSS after convergence).
Serf comes from the Debian package ``serf``; it is skipped with a note when absent.
Each line is printed as measured, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SERF_EVENT = re.compile(r"EventMember(Join|Failed|Leave): (\S+)")


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


class Agent:
    """One agent process whose stdout is parsed into (time, kind, subject) events."""

    def __init__(self, name: str, cmd: list[str], parse) -> None:
        self.name = name
        self.seen: dict[tuple[str, str], float] = {}
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.ready = threading.Event()
        self.ready_at = 0.0
        self.port = 0
        self._parse = parse
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            now = time.monotonic()
            if line.startswith("ready ") or "Serf agent running!" in line:
                if line.startswith("ready "):
                    self.port = int(line.split()[1])
                self.ready_at = now
                self.ready.set()
            found = self._parse(line)
            if found:
                self.seen.setdefault(found, now)

    def rss_mb(self) -> float:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def parse_ours(line: str):
    parts = line.split()
    if len(parts) == 3 and parts[0] in ("join", "failed", "leave"):
        return parts[0], parts[1]
    return None


def parse_serf(line: str):
    m = SERF_EVENT.search(line)
    if m:
        return {"Join": "join", "Failed": "failed", "Leave": "leave"}[m.group(1)], m.group(2)
    return None


def start_ours(n: int, profile: str) -> list[Agent]:
    base = [sys.executable, "-m", "dkron_pkg.swim_transport", "--profile", profile]
    first = Agent("a00", [*base, "--name", "a00", "--port", "0"], parse_ours)
    first.ready.wait(10)
    agents = [first]
    for i in range(1, n):
        cmd = [*base, "--name", f"a{i:02d}", "--port", "0", "--join", f"127.0.0.1:{first.port}"]
        agents.append(Agent(f"a{i:02d}", cmd, parse_ours))
    return agents


def start_serf(n: int, profile: str) -> list[Agent]:
    agents: list[Agent] = []
    seed_port = 0
    for i in range(n):
        port, rpc = free_port(), free_port()
        cmd = ["serf", "agent", f"-node=s{i:02d}", f"-bind=127.0.0.1:{port}"]
        cmd += [f"-rpc-addr=127.0.0.1:{rpc}", f"-profile={profile}", "-log-level=info"]
        if i:
            cmd.append(f"-join=127.0.0.1:{seed_port}")
        else:
            seed_port = port
        agents.append(Agent(f"s{i:02d}", cmd, parse_serf))
        if i == 0:
            time.sleep(0.5)
    return agents


def wait_all(agents: list[Agent], events: list[tuple[str, str]], start: float, limit: float):
    """Seconds from ``start`` until every agent has printed all its ``events``, or None."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        times = []
        for a in agents:
            mine = [e for e in events if e[1] != a.name]
            if all(e in a.seen for e in mine):
                times.extend(a.seen[e] for e in mine)
            else:
                break
        else:
            return max(times) - start if times else 0.0
        time.sleep(0.05)
    return None


def measure(kind: str, n: int, profile: str) -> dict:
    started = time.monotonic()
    agents = start_ours(n, profile) if kind == "ours" else start_serf(n, profile)
    try:
        names = [a.name for a in agents]
        converge = wait_all(agents, [("join", x) for x in names], started, 120)
        for a in agents:
            a.ready.wait(30)
        last_ready = max(a.ready_at for a in agents)
        gossip = None if converge is None else converge - (last_ready - started)
        rss = sum(a.rss_mb() for a in agents) / n
        victim, leaver = agents[-1], agents[-2]
        rest = agents[:-2]
        t_kill = time.monotonic()
        victim.proc.send_signal(signal.SIGKILL)
        failed = wait_all(rest, [("failed", victim.name)], t_kill, 120)
        t_leave = time.monotonic()
        leaver.proc.send_signal(signal.SIGINT)
        left = wait_all(rest, [("leave", leaver.name)], t_leave, 60)
    finally:
        for a in agents:
            a.stop()
    row = {"impl": kind, "n": n, "converge_s": converge, "after_last_ready_s": gossip}
    row.update({"failed_s": failed, "leave_s": left})
    row["rss_mb"] = round(rss, 1)
    fmt = lambda v: "timeout" if v is None else f"{v:.2f} s"
    print(
        f"{kind:5} N={n:3}: converged {fmt(converge)} after the first launch"
        f" ({fmt(gossip)} after the last agent was up), kill -9 seen by all {fmt(failed)},"
        f" leave seen by all {fmt(left)}, RSS {rss:.1f} MB/agent",
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5, 20, 50])
    ap.add_argument("--profile", default="lan", choices=["lan", "wan", "local"])
    a = ap.parse_args()
    have_serf = shutil.which("serf") is not None
    if not have_serf:
        print("serf not found (Debian package 'serf'); measuring ours only")
    rows = []
    for n in a.sizes:
        ours = measure("ours", n, a.profile)
        rows.append(ours)
        if have_serf:
            serf = measure("serf", n, a.profile)
            rows.append(serf)
            ratios = {
                k: round(ours[k] / serf[k], 2)
                for k in ("converge_s", "after_last_ready_s", "failed_s", "leave_s", "rss_mb")
                if ours[k] and serf[k]
            }
            print(f"      N={n:3}: ours/serf ratios {ratios}", flush=True)
    print(json.dumps({"profile": a.profile, "rows": rows, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
