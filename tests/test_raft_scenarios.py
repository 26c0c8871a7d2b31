"""Named Raft regression scenarios, scripted message by message on the checked harness."""

from __future__ import annotations

from dataclasses import replace

import pytest
from raftsim import Cluster, SafetyViolation

from dkron_pkg.raft_messages import AppendEntries, RequestVote, VoteResponse
from dkron_pkg.raftlog import ConfChange, NotLeader, Proposal, RaftConfig, Refused, Role


def between(*names: str):
    group = set(names)
    return lambda msg: msg.src in group and msg.dst in group


def elect(cluster: Cluster, node_id: str, allow=None, tries: int = 5) -> None:
    for _ in range(tries):
        cluster.campaign(node_id, allow)
        if cluster.raft(node_id).role == Role.LEADER:
            return
    raise AssertionError(f"{node_id} could not win an election")


def test_figure8_leader_never_commits_old_term_entry_by_counting_replicas() -> None:
    """Raft paper figure 8: an entry of an older term on a majority is not committed until an
    entry of the leader's own term is; a later leader may then legally replace it."""
    cluster = Cluster(5, RaftConfig(max_entries_per_message=1))
    elect(cluster, "n1")
    assert cluster.raft("n1").commit_index == 1
    # (a) n1 (term 1) writes index 2 and only n2 receives it.
    assert isinstance(cluster.put("n1", "k", "from-term-1"), Proposal)
    cluster.deliver(between("n1", "n2"))
    assert cluster.raft("n2").term_at(2) == 1
    # (b) n1 crashes; n5 wins a term with n3 and n4 and appends index 2 of its term, unreplicated.
    cluster.crash("n1")
    elect(cluster, "n5", lambda m: isinstance(m, (RequestVote, VoteResponse)))
    term_n5 = cluster.raft("n5").term
    assert cluster.raft("n5").term_at(2) == term_n5
    # (c) n5 crashes; n1 returns, wins a newer term and copies index 2 (old term) to n3 only,
    #     but its own term's no-op (index 3) reaches nobody.
    cluster.crash("n5")
    cluster.restart("n1")

    def old_entries_only(msg):
        if not between("n1", "n2", "n3")(msg):
            return False
        if isinstance(msg, AppendEntries):
            return replace(msg, entries=tuple(e for e in msg.entries if e.index < 3))
        return True

    elect(cluster, "n1", old_entries_only)
    n1 = cluster.raft("n1")
    assert n1.term > term_n5
    assert [cluster.raft(n).term_at(2) for n in ("n1", "n2", "n3")] == [1, 1, 1]
    assert n1.commit_index == 1, "an old-term entry on a majority must not commit by counting"
    # (d) n1 crashes; n5 (last term newer) wins and overwrites index 2 everywhere: legal,
    #     because it never committed. The harness checks state machine safety at every step.
    cluster.crash("n1")
    cluster.restart("n5")
    elect(cluster, "n5", between("n2", "n3", "n4", "n5"))
    cluster.tick(100, between("n2", "n3", "n4", "n5"))
    for node in ("n2", "n3", "n4", "n5"):
        assert cluster.raft(node).term_at(2) == term_n5
    assert cluster.raft("n5").commit_index >= 3
    assert not cluster.violations


def test_figure8_entry_of_current_term_commits_the_old_one_too() -> None:
    """Case (e): once the leader's own-term entry is on a majority, index 2 is committed and
    the stale candidate can no longer win."""
    cluster = Cluster(5, RaftConfig(max_entries_per_message=1))
    elect(cluster, "n1")
    cluster.put("n1", "k", "v")
    cluster.deliver(between("n1", "n2"))
    cluster.crash("n1")
    elect(cluster, "n5", lambda m: isinstance(m, (RequestVote, VoteResponse)))
    cluster.crash("n5")
    cluster.restart("n1")
    elect(cluster, "n1", between("n1", "n2", "n3"))
    assert cluster.raft("n1").commit_index >= 3
    cluster.crash("n1")
    cluster.restart("n5")
    for _ in range(3):
        cluster.campaign("n5", between("n2", "n3", "n4", "n5"))
    assert cluster.raft("n5").role != Role.LEADER
    assert not cluster.violations


def test_membership_change_refused_until_leader_commits_in_its_term() -> None:
    """Ongaro's single-server errata: a new leader commits its no-op before any change, and
    only one change may be uncommitted at a time."""
    cluster = Cluster(3)
    cluster.campaign("n1", lambda m: not isinstance(m, AppendEntries))
    leader = cluster.raft("n1")
    assert leader.role == Role.LEADER
    refused = leader.propose_conf_change(ConfChange("add", "n4"))
    assert isinstance(refused, Refused)
    assert "own term" in refused.reason or "its term" in refused.reason
    cluster.tick(60)
    assert leader.term_at(leader.commit_index) == leader.term
    first = leader.propose_conf_change(ConfChange("remove", "n3"))
    assert isinstance(first, Proposal)
    assert leader.voters == ("n1", "n2")
    second = leader.propose_conf_change(ConfChange("remove", "n2"))
    assert isinstance(second, Refused) and "not committed" in second.reason
    cluster.process(cluster.nodes["n1"])
    cluster.deliver()
    assert leader.commit_index >= first.index
    assert isinstance(leader.propose_conf_change(ConfChange("add", "n3")), Proposal)
    assert isinstance(cluster.raft("n2").propose_conf_change(ConfChange("add", "x")), NotLeader)


def test_removed_leader_steps_down_and_cluster_goes_on() -> None:
    cluster = Cluster(3)
    elect(cluster, "n1")
    cluster.tick(60)
    change = cluster.raft("n1").propose_conf_change(ConfChange("remove", "n1"))
    assert isinstance(change, Proposal)
    cluster.process(cluster.nodes["n1"])
    cluster.deliver()
    cluster.tick(60)
    assert cluster.raft("n1").role == Role.FOLLOWER
    cluster.tick(800)
    leaders = [n for n in ("n2", "n3") if cluster.raft(n).role == Role.LEADER]
    assert len(leaders) == 1
    assert cluster.raft(leaders[0]).voters == ("n2", "n3")
    assert isinstance(cluster.put(leaders[0], "k", "v"), Proposal)
    assert not cluster.violations


def test_vote_is_durable_before_the_reply_so_no_double_vote_after_a_crash() -> None:
    """n2 votes for n1, crashes and restarts: it must refuse n3 in the same term."""
    cluster = Cluster(3)
    cluster.campaign("n1", between("n1", "n2"))
    assert cluster.raft("n1").role == Role.LEADER
    term = cluster.raft("n1").term
    cluster.crash("n2")
    cluster.restart("n2")
    assert cluster.raft("n2").vote == "n1"
    assert cluster.raft("n2").term == term
    cluster.crash("n1")
    # n3 campaigns in the same term n1 won: n2 remembers its vote and refuses.
    n3 = cluster.raft("n3")
    assert n3.term == term - 1  # n3 missed every message of that term
    cluster.campaign("n3", between("n2", "n3"))
    assert not (n3.role == Role.LEADER and n3.term == term)
    assert not cluster.violations


def test_sending_a_vote_before_fsync_is_caught_as_a_double_leader() -> None:
    """Negative control: a driver that sends before its fsync and then crashes lets one voter
    vote twice in a term; the harness's election-safety check must catch it."""
    cluster = Cluster(3)
    cluster.cfg.unsafe_send_before_fsync = True
    cluster.crash_before_next_fsync.add("n2")
    cluster.campaign("n1", between("n1", "n2"))
    assert cluster.raft("n1").role == Role.LEADER
    term = cluster.raft("n1").term
    cluster.restart("n2")
    assert cluster.raft("n2").vote is None  # the vote never reached the disk
    n3 = cluster.raft("n3")
    assert n3.term == term - 1
    with pytest.raises(SafetyViolation, match="election safety"):
        cluster.campaign("n3", between("n2", "n3"))


def test_all_nodes_restart_at_once_and_keep_every_acknowledged_write() -> None:
    cluster = Cluster(3)
    elect(cluster, "n1")
    acked = []
    for i in range(30):
        result = cluster.put("n1", f"k{i % 4}", f"v{i}")
        assert isinstance(result, Proposal)
        acked.append(result)
        cluster.deliver()
    # One more write reaches only the leader's volatile memory.
    cluster.crash_before_next_fsync.add("n1")
    cluster.put("n1", "k0", "lost")
    for node in ("n1", "n2", "n3"):
        cluster.crash(node)
    for node in ("n1", "n2", "n3"):
        cluster.restart(node)
    cluster.tick(1000)
    leader = cluster.current_leader()
    assert leader is not None
    lead = cluster.raft(leader)
    for proposal in acked:
        assert lead.term_at(proposal.index) == proposal.term
        assert lead.commit_index >= proposal.index
    assert isinstance(cluster.put(leader, "k9", "after"), Proposal)
    cluster.tick(100)
    for node in ("n1", "n2", "n3"):
        assert cluster.nodes[node].kv.data["k1"] == "v29"
        assert cluster.nodes[node].kv.data["k9"] == "after"
    assert not cluster.violations
