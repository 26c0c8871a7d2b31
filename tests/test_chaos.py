"""A short run of bench/chaos_failover.py: 3 servers and 2 agents, jobs every second, the
leader killed with -9 twice. No (job, scheduled time) may run twice, and with `missed_runs:
all` no scheduled time may be lost."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import chaos_failover


def test_leader_kills_lose_and_double_no_launch(tmp_path):
    result = chaos_failover.run(jobs=8, seconds=24, kill_every=8, base=tmp_path)
    assert len(result["failovers"]) >= 2
    assert result["runs"] > 8 * 15
    assert result["duplicates"] == 0
    assert result["missed"] == 0
    assert len(result["nodes"]) >= 3  # runs were spread over servers and agents
