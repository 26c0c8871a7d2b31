"""What the launch cores ask their driver to do. Each action that expects an answer carries a
number (`token`, `req`, `ask`) that the driver hands back with the answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# How a run request failed, as the driver reports it to `LeaderCore.run_failed`.
UNREACHABLE = "unreachable"  # nothing listens there: the request was never delivered
UNSURE = "unsure"  # timed out or broke after sending: the run may have started
REFUSED = "refused"  # the node refused: a newer leader has asked it something


@dataclass(frozen=True)
class Commit:
    """Commit these store commands (one batch); answer `committed(token, results or None)`."""

    token: int
    commands: list[dict]


@dataclass(frozen=True)
class SendRun:
    """Ask `node` (at `addr`) to run a launch (`agent.run` with `args`); answer
    `run_answered(req, execution)` or `run_failed(req, kind, reason)`."""

    req: int
    node: str
    addr: str
    args: dict


@dataclass(frozen=True)
class StartLocal:
    """Run this launch on this node; report its start with `record_started` and its end with
    `run_ended`."""

    job: dict
    group: int
    attempt: int
    scheduled_ns: int | None
    for_node: str = ""  # the node whose run this stands in for ("" for this node's own)


@dataclass(frozen=True)
class AskLaunches:
    """Ask `node` which launch groups it runs or ran lately and when its process started
    (`agent.launches`, fenced with `term` when given); answer `launches_answered(ask, groups,
    up_since_ns)` or `launches_failed(ask, unreachable)`."""

    ask: int
    node: str
    addr: str
    term: int | None


@dataclass(frozen=True)
class AskRunning:
    """Ask `node` which executions it is running (`agent.running`); answer
    `running_answered(ask, ids)` or `running_failed(ask)`."""

    ask: int
    node: str
    addr: str


@dataclass(frozen=True)
class Reply:
    """Answer the caller that handed in `reply` (an API request or a node's report)."""

    reply: Any
    ok: bool
    error: str = ""
    status: int = 200
    value: Any = None


@dataclass(frozen=True)
class Recorded:
    """A run's end is committed: the driver notifies and counts it."""

    job: dict
    execution: dict
    follow_ups: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Note:
    """A line for the log (`level` is "info" or "warning")."""

    level: str
    text: str
