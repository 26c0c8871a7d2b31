"""The leader's membership decisions, from what gossip says: a pure function of one round.

Each round (cluster.Cluster runs one every couple of seconds on the leader):
- a server alive in gossip that is not a member is added as a learner: it catches up (by
  snapshot, or from the log) without changing any quorum, so a newcomer that cannot answer the
  leader never costs the cluster its majority;
- a learner that has caught up is promoted to voter while there are fewer than `max_voters`
  voters; beyond the cap it stays a learner, which still replicates every write;
- a member that left gracefully is removed at once;
- a voter down in gossip (failed, or unknown to it) for `cleanup_after` seconds is removed when
  the alive voters still make a quorum of the voters that remain (a learner down that long is
  removed too: no quorum rests on it). One such removal per round, as Raft takes one
  membership change at a time.
The leader never removes itself and never demotes a voter; more voters than the cap (a
cluster bootstrapped with a larger `--bootstrap-expect`) are left as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DEFAULT_MAX_VOTERS = 5
CATCH_UP_LAG = 128  # a learner this close to the leader's commit index has caught up
ALIVE = "alive"
LEFT = "left"


@dataclass(frozen=True)
class Server:
    """A server as gossip shows it: status is Serf's text (alive, leaving, left, failed)."""

    name: str
    status: str
    rpc_addr: str


@dataclass(frozen=True)
class Action:
    """One membership change: op is "add_learner", "promote" or "remove"."""

    op: str
    name: str
    rpc_addr: str = ""
    reason: str = ""


def quorum(voters: int) -> int:
    return voters // 2 + 1


def caught_up(match: int, commit: int, lag: int = CATCH_UP_LAG) -> bool:
    """Whether a member that acknowledged `match` keeps up with the leader's `commit`."""
    return match > 0 and commit - match <= lag


def plan(
    leader: str,
    voters: Iterable[str],
    learners: Iterable[str],
    servers: Mapping[str, Server],
    down_since: Mapping[str, float],
    caught_up_learners: Iterable[str],
    now: float,
    cleanup_after: float,
    max_voters: int = DEFAULT_MAX_VOTERS,
) -> list[Action]:
    """The changes to make this round, in order. `down_since[name]` is when the leader first
    saw a member not alive in gossip; `cleanup_after` 0 turns dead-server clean-up off."""
    voters, learners = set(voters), set(learners)
    members = voters | learners
    actions: list[Action] = []
    for name in sorted(members - {leader}):
        server = servers.get(name)
        if server is not None and server.status == LEFT:
            actions.append(Action("remove", name, reason="it left the cluster"))
    removed = {a.name for a in actions}
    voters -= removed
    learners -= removed
    dead = _dead_member(leader, voters, learners, servers, down_since, now, cleanup_after)
    if dead is not None:
        actions.append(dead)
        voters.discard(dead.name)
        learners.discard(dead.name)
    for name in sorted(servers):
        server = servers[name]
        if name not in members and server.status == ALIVE and server.rpc_addr:
            actions.append(Action("add_learner", name, server.rpc_addr, "it is alive in gossip"))
    ready = sorted(
        name
        for name in set(caught_up_learners) & learners
        if name in servers and servers[name].status == ALIVE
    )
    if ready and len(voters) < max_voters:
        name = ready[0]
        actions.append(Action("promote", name, servers[name].rpc_addr, "it has caught up"))
    return actions


def _dead_member(
    leader: str,
    voters: set[str],
    learners: set[str],
    servers: Mapping[str, Server],
    down_since: Mapping[str, float],
    now: float,
    cleanup_after: float,
) -> Action | None:
    """The first member down for longer than `cleanup_after` that may go (see the module)."""
    if cleanup_after <= 0:
        return None

    def down_for(name: str) -> float | None:
        since = down_since.get(name)
        server = servers.get(name)
        if since is None or (server is not None and server.status == ALIVE):
            return None
        return now - since

    alive = {v for v in voters if v == leader or (v in servers and servers[v].status == ALIVE)}
    for name in sorted((voters | learners) - {leader}):
        gone = down_for(name)
        if gone is None or gone < cleanup_after:
            continue
        if name in learners:
            return Action("remove", name, reason=f"down for {gone:.0f}s (learner)")
        if len(alive) >= quorum(len(voters) - 1):
            return Action("remove", name, reason=f"down for {gone:.0f}s")
    return None


def expect_disagreements(own: int, others: Mapping[str, int]) -> dict[str, int]:
    """Servers whose --bootstrap-expect differs from this one's (0 = not given: no opinion)."""
    if own <= 0:
        return {}
    return {name: value for name, value in sorted(others.items()) if value > 0 and value != own}
