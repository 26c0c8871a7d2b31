"""The launch protocol with no I/O: which launches to record, where to run them, what to do when
a node does not answer, and how a new leader settles what its predecessor left open.

`leader.LeaderCore` is the leader's side, `node.NodeCore` the running node's side. Both take
events (the time, committed results, answers from nodes, the membership view) and return
actions (`actions.py`) for a driver to carry out: the agent's `launch_driver` with threads, RPC
and the real clock, or the seeded simulation in `tests/launchsim.py` with a simulated network
and clock. Neither reads a clock, starts a thread or opens a socket; randomness comes from an
injected `random.Random`.
"""

from dkron_pkg.launch.actions import (
    AskLaunches,
    AskRunning,
    Commit,
    Note,
    Recorded,
    Reply,
    SendRun,
    StartLocal,
)
from dkron_pkg.launch.leader import LaunchTiming, LeaderCore
from dkron_pkg.launch.node import NodeCore

__all__ = [
    "AskLaunches",
    "AskRunning",
    "Commit",
    "LaunchTiming",
    "LeaderCore",
    "NodeCore",
    "Note",
    "Recorded",
    "Reply",
    "SendRun",
    "StartLocal",
]
