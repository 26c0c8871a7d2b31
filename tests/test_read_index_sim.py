"""Linearizable reads through any server, checked in the Raft simulator: clients read and write
through leaders and followers by the driver's path (batched ReadIndex rounds, follower reads
asked of the leader, forwarded writes answered by the follower that applied them), and the
Wing-Gong checker accepts every history; a follower that reads its own copy is caught."""

from __future__ import annotations

from collections import Counter

from raftsim import Cluster, SimConfig, run_seed

from dkron_pkg.raftlog import Proposal
from dkron_pkg.read_rounds import ReadRounds

SWEEP_SEEDS = range(20_000, 20_200)


def short_config(seed: int, **changes: object) -> SimConfig:
    cfg = SimConfig.from_seed(seed)
    cfg.duration_ms = 1500
    for name, value in changes.items():
        setattr(cfg, name, value)
    return cfg


def test_reads_arriving_during_a_round_share_the_next_one() -> None:
    rounds: ReadRounds[str] = ReadRounds()
    assert rounds.add("a", now=0) == 1  # nothing in flight: a round starts with "a"
    assert rounds.add("b", now=1) is None and rounds.add("c", now=2) is None
    assert rounds.finish(1, now=3) == (["a"], 2)  # "b" and "c" go together, in round 2
    assert rounds.finish(1, now=4) == ([], None)  # an old round's late answer ends nothing
    assert rounds.overdue(now=5, limit=10) is None and rounds.overdue(now=20, limit=10) == 2
    assert rounds.finish(2, now=21) == (["b", "c"], None)
    assert rounds.in_flight is None and len(rounds) == 0


def test_the_read_point_holds_a_write_followers_committed_without_the_leader() -> None:
    """Followers commit from each other's PeerAcks and a follower answers the write; the
    leader has not heard of the commit. A read through the leader must still see it."""
    cluster = Cluster(3)
    cluster.tick(400)
    leader = cluster.current_leader()
    assert leader is not None
    cluster.tick(60)
    proposal = cluster.put(leader, "k", "v")
    assert isinstance(proposal, Proposal)
    cluster.deliver(allow=lambda m: m.dst != leader)  # the acknowledgements to it are lost
    assert all(cluster.nodes[f].kv.data == {"k": "v"} for f in cluster.nodes if f != leader)
    assert cluster.raft(leader).commit_index < proposal.index
    assert cluster.raft(leader).read_index(b"after the write") is None
    cluster.process(cluster.nodes[leader])
    cluster.deliver()
    points = [rs.index for node, rs in cluster.read_log if rs.context == b"after the write"]
    assert points and points[0] >= proposal.index


def settled_cluster(voters: int) -> tuple[Cluster, str, list[str]]:
    cluster = Cluster(voters)
    cluster.tick(400)
    leader = cluster.current_leader()
    assert leader is not None
    cluster.tick(60)
    return cluster, leader, [n for n in cluster.nodes if n != leader]


def read_points(cluster: Cluster, context: bytes) -> list[int]:
    return [rs.index for _, rs in cluster.read_log if rs.context == context]


def test_a_followers_request_confirms_a_read_of_three_voters_at_once() -> None:
    """The follower asking in the leader's term is the second of three voters: no heartbeat
    round (the leader is cut off from everyone, so none could complete)."""
    cluster, leader, followers = settled_cluster(3)
    for peer in followers:
        cluster.blocked.update({(leader, peer), (peer, leader)})
    raft = cluster.raft(leader)
    assert raft.read_index(b"via", followers[0], raft.term) is None
    cluster.process(cluster.nodes[leader])
    assert read_points(cluster, b"via") == [raft.last_index]


def test_a_follower_in_a_later_term_confirms_nothing() -> None:
    """A follower that has moved to a later term may have voted a new leader in: the deposed
    leader, cut off, never answers its request."""
    cluster, leader, followers = settled_cluster(3)
    for peer in followers:
        cluster.blocked.update({(leader, peer), (peer, leader)})
    raft = cluster.raft(leader)
    assert raft.read_index(b"later", followers[0], raft.term + 1) is None
    cluster.process(cluster.nodes[leader])
    cluster.tick(100)
    assert read_points(cluster, b"later") == []


def test_with_five_voters_a_followers_request_still_needs_a_heartbeat_round() -> None:
    cluster, leader, followers = settled_cluster(5)
    raft = cluster.raft(leader)
    cut = followers[1:]
    for peer in cut:
        cluster.blocked.update({(leader, peer), (peer, leader)})
    raft.read_index(b"five", followers[0], raft.term)
    cluster.process(cluster.nodes[leader])
    cluster.deliver()
    assert read_points(cluster, b"five") == []  # leader + the asking follower: 2 of 5
    cluster.blocked.difference_update({(leader, cut[0]), (cut[0], leader)})
    cluster.tick(60)  # the next heartbeat repeats the read's round to the healed follower
    assert read_points(cluster, b"five") == [raft.last_index]


def test_reads_and_writes_through_any_server_are_linearizable() -> None:
    stats: Counter[str] = Counter()
    for seed in SWEEP_SEEDS:
        outcome = run_seed(seed, short_config(seed), failover=False)
        assert outcome.violations == [], f"seed {seed}: {outcome.violations}"
        stats.update(outcome.stats)
        stats["reads"] += sum(1 for op in outcome.history if op.kind == "get")
    seeds = len(SWEEP_SEEDS)
    assert stats["reads_on_follower"] > 10 * seeds and stats["reads_on_leader"] > 10 * seeds
    assert stats["writes_forwarded"] > 10 * seeds
    assert stats["reads"] > 20 * seeds, "reads must be answered, not only asked"
    assert stats["read_rounds_given_up"] > 0, "lost requests between servers must occur"


def test_a_seed_where_a_commit_index_read_point_missed_a_follower_commit() -> None:
    """Seed 363 read stale data when the read point was the leader's commit index."""
    assert run_seed(363, short_config(363), failover=False).violations == []


def test_followers_reading_their_own_copy_are_caught() -> None:
    caught = [
        seed
        for seed in range(10)
        if run_seed(seed, short_config(seed, unsafe_follower_local_reads=True)).violations
    ]
    assert len(caught) >= 3, caught
