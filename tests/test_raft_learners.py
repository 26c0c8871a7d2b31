"""Learners in the Raft core: members that replicate every entry (and catch up by snapshot)
without voting or counting for commits; promotion to voter; a lone voter elects itself at
once; the member list codec keeps learners apart from voters."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from raftsim import Cluster

from dkron_pkg import raft_messages as rm
from dkron_pkg.raft_messages import AppendResponse, RequestVote
from dkron_pkg.raftlog import ConfChange, Proposal, RaftConfig, RaftNode, Refused, Role


def leader_of(cluster: Cluster) -> str:
    leader = cluster.current_leader()
    assert leader is not None, "no leader"
    return leader


def grown_cluster_with_learner() -> tuple[Cluster, str]:
    cluster = Cluster(3, RaftConfig(trailing_entries=5))
    cluster.cfg.snapshot_every = 10
    cluster.tick(400)
    leader = leader_of(cluster)
    cluster.tick(60)
    for i in range(30):
        cluster.put(leader, "k", f"v{i}")
        cluster.deliver()
    cluster.add_node("n4")
    change = cluster.raft(leader).propose_conf_change(ConfChange("add_learner", "n4"))
    assert isinstance(change, Proposal)
    cluster.process(cluster.nodes[leader])
    cluster.tick(200)
    return cluster, leader


def test_a_learner_catches_up_by_snapshot_and_replicates_without_a_vote() -> None:
    cluster, leader = grown_cluster_with_learner()
    lead = cluster.raft(leader)
    assert lead.voters == ("n1", "n2", "n3") and lead.learners == ("n4",)
    learner = cluster.raft("n4")
    assert learner.learners == ("n4",) and learner.voters == ("n1", "n2", "n3")
    assert cluster.nodes["n4"].kv.data == {"k": "v29"}  # the snapshot, then the log
    assert cluster.stats["snapshots_installed"] >= 1
    # A learner never campaigns, however long it hears nothing.
    cluster.tick(2000, allow=lambda m: m.dst != "n4" and m.src != "n4")
    assert learner.role == Role.FOLLOWER
    assert not any(isinstance(m, RequestVote) and m.src == "n4" for m in cluster.outbox)
    assert not cluster.violations


def test_a_learner_does_not_count_for_commits() -> None:
    cluster, leader = grown_cluster_with_learner()
    voters = [v for v in ("n1", "n2", "n3") if v != leader]
    for v in voters:
        cluster.crash(v)
    proposal = cluster.put(leader, "k", "only-with-learner")
    assert isinstance(proposal, Proposal)
    cluster.deliver()
    lead = cluster.raft(leader)
    assert cluster.raft("n4").last_index >= proposal.index  # the learner holds it
    assert lead.commit_index < proposal.index  # but one voter of three is no quorum
    assert not cluster.violations


def test_add_promotes_a_learner_to_voter() -> None:
    cluster, leader = grown_cluster_with_learner()
    lead = cluster.raft(leader)
    again = lead.propose_conf_change(ConfChange("add_learner", "n4"))
    assert isinstance(again, Refused) and "already a learner" in again.reason
    promote = lead.propose_conf_change(ConfChange("add", "n4"))
    assert isinstance(promote, Proposal)
    cluster.process(cluster.nodes[leader])
    cluster.tick(100)
    assert lead.voters == ("n1", "n2", "n3", "n4") and lead.learners == ()
    assert cluster.raft("n4").voters == ("n1", "n2", "n3", "n4")
    demote = lead.propose_conf_change(ConfChange("add_learner", "n4"))
    assert isinstance(demote, Refused) and "already a voter" in demote.reason
    assert not cluster.violations


def test_a_learner_can_be_removed_and_is_no_longer_replicated_to() -> None:
    cluster, leader = grown_cluster_with_learner()
    lead = cluster.raft(leader)
    change = lead.propose_conf_change(ConfChange("remove", "n4"))
    assert isinstance(change, Proposal)
    cluster.process(cluster.nodes[leader])
    cluster.tick(100)
    assert lead.learners == () and "n4" not in lead.status()["peers"]
    cluster.put(leader, "k", "after")
    cluster.tick(100)
    assert cluster.nodes["n4"].kv.data == {"k": "v29"}
    assert not cluster.violations


def test_a_lone_voter_leads_at_its_first_tick() -> None:
    node = RaftNode("solo", ["solo"], None, __import__("random").Random(1))
    node.tick(1000)
    assert node.role == Role.LEADER
    rd = node.ready()
    # One Ready: the driver persists the no-op, then applies it (a single voter's commit).
    assert rd.entries == rd.committed_entries and len(rd.entries) == 1
    node.advance(rd)
    assert node.commit_index == 1
    proposal = node.propose(b"x")
    assert isinstance(proposal, Proposal)
    assert node.commit_index == proposal.index  # a single voter commits at once


def test_a_learners_answers_never_move_a_commit_on_their_own() -> None:
    """Learner acks are counted as progress, never as votes for a commit (even a forged one
    claiming a learner holds every entry)."""
    cluster, leader = grown_cluster_with_learner()
    lead = cluster.raft(leader)
    for v in ("n1", "n2", "n3"):
        if v != leader:
            cluster.crash(v)
    proposal = cluster.put(leader, "k", "x")
    before = lead.commit_index
    lead.step(AppendResponse(lead.term, "n4", leader, True, proposal.index))
    assert lead.commit_index == before


members = st.lists(st.text(max_size=8), max_size=6, unique=True)


@given(members, members)
def test_member_lists_round_trip_with_learners(voters, learners) -> None:
    learners = [x for x in learners if x not in voters]
    data = rm.encode_voters(tuple(voters), tuple(learners))
    assert rm.decode_config(data) == (tuple(voters), tuple(learners))
    meta = rm.SnapshotMeta(5, 2, tuple(voters), tuple(learners))
    assert rm.decode_meta(rm.encode_meta(meta)) == meta
    if not learners:
        assert data == rm.encode_voters(tuple(voters))  # byte for byte the old format


def test_a_member_both_voter_and_learner_is_refused() -> None:
    data = rm.encode_voters(("a",), ("a",))
    try:
        rm.decode_config(data)
    except rm.DecodeError as exc:
        assert "both voter and learner" in str(exc)
    else:
        raise AssertionError("decoded a member that is both voter and learner")


def test_seeded_runs_with_learners_keep_every_safety_property() -> None:
    """The simulator's membership changes add learners, promote them and remove them amid
    crashes and partitions; every safety check and the linearizability check still hold."""
    from collections import Counter

    from raftsim import SimConfig, run_seed

    stats: Counter[str] = Counter()
    for seed in range(1000, 1030):
        cfg = SimConfig.from_seed(seed)
        cfg.duration_ms = 3000
        outcome = run_seed(seed, cfg, failover=False)
        assert outcome.violations == [], f"seed {seed}: {outcome.violations}"
        stats.update(outcome.stats)
    assert stats["learners_added"] > 0 and stats["learners_promoted"] > 0, dict(stats)
