"""Raft core behaviour, section by section, on the scripted harness (every step is checked
for election safety, log matching, leader completeness and state machine safety)."""

from __future__ import annotations

from raftsim import Cluster

from dkron_pkg.raft_messages import AppendEntries, InstallSnapshot
from dkron_pkg.raftlog import ConfChange, NotLeader, Proposal, RaftConfig, Refused, Role


def leader_of(cluster: Cluster) -> str:
    leader = cluster.current_leader()
    assert leader is not None, "no leader"
    return leader


def test_election_within_timeouts_then_replication_to_all() -> None:
    cluster = Cluster(3)
    cluster.tick(400)
    leader = leader_of(cluster)
    assert sum(cluster.raft(n).role == Role.LEADER for n in cluster.nodes) == 1
    for i in range(10):
        assert isinstance(cluster.put(leader, "k", f"v{i}"), Proposal)
    cluster.deliver()
    cluster.tick(60)
    for node in cluster.nodes.values():
        assert node.kv.data == {"k": "v9"}
        assert node.raft.commit_index == cluster.raft(leader).last_index


def test_follower_refuses_proposals_and_names_the_leader() -> None:
    cluster = Cluster(3)
    cluster.tick(400)
    leader = leader_of(cluster)
    follower = next(n for n in cluster.nodes if n != leader)
    result = cluster.put(follower, "k", "v")
    assert result == NotLeader(leader)


def test_single_voter_commits_at_once() -> None:
    cluster = Cluster(1)
    cluster.tick(400)
    assert cluster.raft("n1").role == Role.LEADER
    proposal = cluster.put("n1", "k", "v")
    assert isinstance(proposal, Proposal)
    assert cluster.raft("n1").applied_index == proposal.index
    assert cluster.nodes["n1"].kv.data == {"k": "v"}


def test_proposals_are_batched_into_one_append_per_follower() -> None:
    cluster = Cluster(3)
    cluster.tick(400)
    leader = leader_of(cluster)
    cluster.tick(60)
    raft = cluster.raft(leader)
    for i in range(100):
        raft.propose(b'{"id":"b%d","op":"put","key":"k","value":"v","expected":null}' % i)
    cluster.outbox.clear()
    cluster.process(cluster.nodes[leader])
    appends = [m for m in cluster.outbox if isinstance(m, AppendEntries)]
    assert len(appends) == 2
    assert all(len(m.entries) == 100 for m in appends)


def test_appends_are_pipelined_without_waiting_for_responses() -> None:
    cluster = Cluster(3)
    cluster.tick(400)
    leader = leader_of(cluster)
    cluster.tick(60)
    cluster.outbox.clear()
    for i in range(5):
        cluster.put(leader, "k", f"v{i}")
    to_one = [m for m in cluster.outbox if isinstance(m, AppendEntries) and m.dst == m.dst]
    follower = to_one[0].dst
    in_flight = [m for m in to_one if m.dst == follower]
    assert len(in_flight) == 5, "each proposal goes out before the previous one is answered"
    assert [m.prev_index for m in in_flight] == sorted(m.prev_index for m in in_flight)


def _isolate_leader(cluster: Cluster) -> str:
    """Cut the current leader off from every peer, both ways; returns its id."""
    old = leader_of(cluster)
    for peer in cluster.nodes:
        if peer != old:
            cluster.blocked.update({(old, peer), (peer, old)})
    return old


def test_isolated_leader_steps_down_by_check_quorum() -> None:
    cluster = Cluster(3)
    cluster.tick(400)
    old = _isolate_leader(cluster)
    cluster.tick(400)
    assert cluster.raft(old).role == Role.FOLLOWER
    new = [n for n in cluster.nodes if n != old and cluster.raft(n).role == Role.LEADER]
    assert len(new) == 1
    assert isinstance(cluster.put(old, "k", "v"), NotLeader)


def _term_after_whole_cluster_pause(stall_grace: bool) -> tuple[str, str | None, int, int]:
    """Every process stops for longer than a check-quorum window (a starved machine); the
    leader is the first to run again, before any message queued meanwhile is read."""
    cfg = RaftConfig(stall_grace=stall_grace)
    cluster = Cluster(3, raft=cfg)
    cluster.tick(400)
    leader = leader_of(cluster)
    raft = cluster.raft(leader)
    term = raft.term
    check_due = raft._quorum_check_due
    while cluster.now + 10 < check_due:
        cluster.tick(10)
    for wake in (check_due, check_due + cfg.election_timeout_min_ms + 30):
        # the leader alone runs at its check (a new window starts), then everything stops;
        # what it sends waits in the queue with everything else
        cluster.now = wake
        raft.tick(wake)
        cluster.process(cluster.nodes[leader])
    cluster.tick(300)
    return leader, cluster.current_leader(), term, raft.term


def test_a_pause_of_every_process_does_not_cost_the_leader_its_term() -> None:
    leader, now_leading, term_before, term_after = _term_after_whole_cluster_pause(True)
    assert now_leading == leader
    assert term_after == term_before


def test_without_stall_grace_the_same_pause_forces_an_election() -> None:
    """The contrast that shows what the grace is for (the log of a loaded cluster showed
    leaders stepping down by check-quorum after their own stalls)."""
    _, _, term_before, term_after = _term_after_whole_cluster_pause(False)
    assert term_after > term_before


def test_a_leader_cut_off_after_its_own_stall_still_steps_down() -> None:
    cluster = Cluster(3)
    cluster.tick(400)
    old = _isolate_leader(cluster)
    cluster.now += 400
    cluster.tick(600)
    assert cluster.raft(old).role != Role.LEADER
    assert cluster.current_leader() not in (None, old)


def test_read_index_needs_a_quorum_heartbeat_round() -> None:
    cluster = Cluster(3)
    cluster.tick(400)
    leader = leader_of(cluster)
    cluster.tick(60)
    raft = cluster.raft(leader)
    cluster.put(leader, "k", "v1")
    cluster.deliver()
    assert raft.read_index(b"r1") is None
    cluster.process(cluster.nodes[leader])
    assert cluster.read_log == [], "no read point before followers confirm leadership"
    cluster.deliver()
    (node, state), *_ = cluster.read_log
    assert node == leader and state.context == b"r1"
    assert state.index >= raft.term_at(raft.commit_index) and state.index == raft.commit_index


def test_partitioned_leader_never_confirms_a_read() -> None:
    cluster = Cluster(3)
    cluster.tick(400)
    old = leader_of(cluster)
    cluster.tick(60)
    for peer in cluster.nodes:
        if peer != old:
            cluster.blocked.update({(old, peer), (peer, old)})
    cluster.raft(old).read_index(b"stale?")
    cluster.process(cluster.nodes[old])
    cluster.tick(600)
    assert all(ctx.context != b"stale?" for _, ctx in cluster.read_log)
    assert isinstance(cluster.raft(old).read_index(b"again"), NotLeader)


def test_leadership_transfer_hands_over_without_an_election_timeout() -> None:
    cluster = Cluster(3)
    cluster.tick(400)
    old = leader_of(cluster)
    cluster.tick(60)
    target = next(n for n in sorted(cluster.nodes) if n != old)
    term = cluster.raft(old).term
    assert cluster.raft(old).transfer_leadership(target) is None
    assert isinstance(cluster.raft(old).propose(b"x"), Refused)
    cluster.process(cluster.nodes[old])
    cluster.deliver()
    assert cluster.raft(target).role == Role.LEADER
    assert cluster.raft(target).term == term + 1
    assert cluster.raft(old).role == Role.FOLLOWER
    assert isinstance(cluster.raft(old).transfer_leadership(old), NotLeader)


def test_lagging_follower_catches_up_by_snapshot_and_commits_continue() -> None:
    cluster = Cluster(3, RaftConfig(trailing_entries=5))
    cluster.cfg.snapshot_every = 20
    cluster.tick(400)
    leader = leader_of(cluster)
    cluster.tick(60)
    lagging = next(n for n in cluster.nodes if n != leader)
    cluster.blocked.update({(leader, lagging), (lagging, leader)})
    other = next(n for n in cluster.nodes if n not in (leader, lagging))
    cluster.blocked.update({(other, lagging), (lagging, other)})
    for i in range(120):
        assert isinstance(cluster.put(leader, f"k{i % 7}", f"v{i}"), Proposal)
        cluster.deliver()
    assert cluster.raft(leader).commit_index >= 120, "commits go on without the laggard"
    assert cluster.raft(leader).first_index > cluster.raft(lagging).last_index + 1
    cluster.blocked.clear()
    sent = []
    cluster.tick(200, lambda m: sent.append(type(m)) or True)
    assert InstallSnapshot in sent
    assert cluster.nodes[lagging].kv.data == cluster.nodes[leader].kv.data
    assert cluster.raft(lagging).commit_index == cluster.raft(leader).commit_index


def test_new_server_joins_learns_the_log_and_can_lead() -> None:
    cluster = Cluster(3, RaftConfig(trailing_entries=3))
    cluster.cfg.snapshot_every = 10
    cluster.tick(400)
    leader = leader_of(cluster)
    cluster.tick(60)
    for i in range(30):
        cluster.put(leader, "k", f"v{i}")
        cluster.deliver()
    cluster.add_node("n4")
    assert cluster.raft("n4").voters == ()
    change = cluster.raft(leader).propose_conf_change(ConfChange("add", "n4"))
    assert isinstance(change, Proposal)
    cluster.process(cluster.nodes[leader])
    cluster.tick(200)
    assert cluster.raft("n4").voters == ("n1", "n2", "n3", "n4")
    assert cluster.nodes["n4"].kv.data == {"k": "v29"}
    assert cluster.raft(leader).transfer_leadership("n4") is None
    cluster.process(cluster.nodes[leader])
    cluster.deliver()
    assert cluster.raft("n4").role == Role.LEADER
    assert isinstance(cluster.put("n4", "k", "from-n4"), Proposal)
    cluster.tick(60)
    assert all(n.kv.data == {"k": "from-n4"} for n in cluster.nodes.values())
    assert not cluster.violations


def test_conf_change_arguments_are_checked() -> None:
    cluster = Cluster(3)
    cluster.tick(400)
    leader = leader_of(cluster)
    cluster.tick(60)
    raft = cluster.raft(leader)
    assert "unknown membership operation" in raft.propose_conf_change(ConfChange("x", "a")).reason
    assert "already a voter" in raft.propose_conf_change(ConfChange("add", "n2")).reason
    assert "not a voter" in raft.propose_conf_change(ConfChange("remove", "zz")).reason


def test_status_reports_role_leader_and_peer_progress() -> None:
    cluster = Cluster(3)
    cluster.tick(400)
    leader = leader_of(cluster)
    cluster.put(leader, "k", "v")
    cluster.tick(60)
    status = cluster.raft(leader).status()
    assert status["role"] == "leader" and status["leader"] == leader
    assert status["voters"] == ["n1", "n2", "n3"]
    assert set(status["peers"]) == {"n1", "n2", "n3"} - {leader}
    assert all(p["match"] == status["last_index"] for p in status["peers"].values())
    follower = next(n for n in cluster.nodes if n != leader)
    assert cluster.raft(follower).status()["peers"] == {}
