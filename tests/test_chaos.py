"""A short run of bench/chaos_failover.py: 3 servers and 2 agents, jobs every second, the
leader killed with -9 twice. No (job, scheduled time) may run twice, and with `missed_runs:
all` no scheduled time may be lost. Beside the `dkron:1` jobs run a few `dkron:2` jobs and a
few untagged ones (every node): none may run one attempt twice on a node, on more nodes than
it asks for, or (untagged) on a node standing in for another."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import chaos_failover


def test_leader_kills_lose_and_double_no_launch(tmp_path):
    result = chaos_failover.run(jobs=8, seconds=24, kill_every=8, base=tmp_path, untagged=2, pair=3)
    assert len(result["failovers"]) >= 2
    assert result["runs"] > 8 * 15
    assert result["duplicates"] == 0
    assert result["missed"] == 0
    assert len(result["nodes"]) >= 3  # runs were spread over servers and agents
    for kind in (":1", ":2", "untagged"):
        figures = result["kinds"][kind]
        assert figures["runs"] > 0, kind
        assert figures["doubled"] == 0, (kind, figures["doubled_keys"])
        assert figures["over_placed"] == 0, (kind, figures["over_placed_keys"])
    assert result["kinds"]["untagged"]["standins"] == 0, result["kinds"]["untagged"]["standin_keys"]
