"""A follower 20,000 entries behind catches up by InstallSnapshot while commits go on (SIM).

Three servers in the simulator (1-8 ms delays, no loss). One follower is cut off while the
leader commits 20,000 entries and compacts (snapshot every 8,192 entries, 1,000 trailing
entries), then the link heals while the leader keeps committing 20 entries every 10 ms.
Prints how the follower caught up (snapshot installs, simulated time) and the leader's commit
rate and longest commit gap before and during the catch-up.

    python3 bench/raft_catchup.py [--behind 20000] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from raftsim import SimConfig, Simulation

from dkron_pkg.raftlog import RaftConfig


class Writer:
    """Proposes batches on the current leader, like many clients would."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.count = 0

    def write(self, n: int) -> None:
        leader = self.sim.current_leader()
        if leader is None:
            return
        node = self.sim.nodes[leader]
        for _ in range(n):
            self.count += 1
            cmd = {"id": f"w{self.count}", "op": "put", "key": f"k{self.count % 100}"}
            cmd.update(value=str(self.count), expected=None)
            node.raft.propose(json.dumps(cmd).encode())
        self.sim.process(node)


def commit_gaps(sim: Simulation, leader: str, until: int, writer: Writer, per_step: int):
    """Run to `until`, writing each 10 ms; return (entries committed, longest gap in ms)."""
    raft = sim.nodes[leader].raft
    start_commit = raft.commit_index
    last_change, last_commit, longest = sim.now, raft.commit_index, 0
    while sim.now < until:
        writer.write(per_step)
        sim.run_until(sim.now + 10)
        if raft.commit_index != last_commit:
            longest = max(longest, sim.now - last_change)
            last_change, last_commit = sim.now, raft.commit_index
    return raft.commit_index - start_commit, max(longest, sim.now - last_change)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--behind", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    began = time.perf_counter()
    raft = RaftConfig(trailing_entries=1000, max_entries_per_message=512)
    cfg = SimConfig(voters=3, drop=0.0, duplicate=0.0, long_delay=0.0, snapshot_every=8192)
    cfg.raft = raft
    sim = Simulation(args.seed, cfg)
    sim.start_all()
    sim.run_until(600)
    leader = sim.current_leader()
    assert leader is not None, "no leader elected"
    lagging = next(n for n in sorted(sim.nodes) if n != leader)
    for other in sim.nodes:
        if other != lagging:
            sim.blocked.update({(lagging, other), (other, lagging)})
    writer = Writer(sim)
    lead = sim.nodes[leader].raft
    while lead.commit_index < args.behind:
        writer.write(500)
        sim.run_until(sim.now + 10)
    before, gap_before = commit_gaps(sim, leader, sim.now + 1000, writer, 20)
    behind = lead.commit_index - sim.nodes[lagging].raft.applied_index
    installs_before = sim.stats["snapshots_installed"]
    sim.blocked.clear()
    healed = sim.now
    lag = sim.nodes[lagging].raft
    during, gap_during = 0, 0
    while lag.applied_index < lead.commit_index - 100 and sim.now < healed + 30_000:
        n, gap = commit_gaps(sim, leader, sim.now + 100, writer, 20)
        during += n
        gap_during = max(gap_during, gap)
    caught_up = sim.now - healed
    installs = sim.stats["snapshots_installed"] - installs_before
    print(f"follower {lagging} was {behind} entries behind (leader first index {lead.first_index})")
    print(f"caught up in {caught_up} ms simulated, with {installs} snapshot install(s)")
    print(f"leader commits before heal: {before} entries/s, longest commit gap {gap_before} ms")
    rate = during * 1000 // max(1, caught_up)
    print(f"leader commits during catch-up: {rate} entries/s, longest commit gap {gap_during} ms")
    print(f"violations: {len(sim.violations)}; wall time {time.perf_counter() - began:.1f} s")
    ok = installs >= 1 and not sim.violations and caught_up < 30_000
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
