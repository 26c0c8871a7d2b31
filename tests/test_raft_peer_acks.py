"""Followers commit from each other's acknowledgements (PeerAck): a quorum of followers that
durably holds an entry of the current term commits it without waiting for the leader to say
so. Scripted on the checked harness, plus a lone core fed forged messages for the edge cases."""

from __future__ import annotations

import random

from raftsim import Cluster

from dkron_pkg.raft_messages import AppendEntries, Entry, EntryKind, Message, PeerAck
from dkron_pkg.raftlog import Proposal, RaftConfig, RaftNode


def _cluster_with_a_write(voters: int, cfg: RaftConfig | None = None) -> tuple[Cluster, str, int]:
    """A cluster with a settled leader that has just proposed one write (not yet delivered)."""
    cluster = Cluster(voters, raft=cfg)
    cluster.tick(400)
    leader = cluster.current_leader()
    assert leader is not None
    cluster.tick(60)
    proposal = cluster.put(leader, "k", "v")
    assert isinstance(proposal, Proposal)
    return cluster, leader, proposal.index


def test_followers_commit_and_apply_a_write_the_leader_never_hears_acknowledged() -> None:
    cluster, leader, index = _cluster_with_a_write(3)
    cluster.deliver(allow=lambda m: m.dst != leader)  # every acknowledgement to it is lost
    followers = [n for n in cluster.nodes if n != leader]
    assert cluster.raft(leader).commit_index < index
    for f in followers:
        assert cluster.raft(f).commit_index == index
        assert cluster.nodes[f].kv.data == {"k": "v"}


def test_without_peer_acks_followers_wait_for_the_leader() -> None:
    cluster, leader, index = _cluster_with_a_write(3, RaftConfig(peer_acks=False))
    cluster.deliver(allow=lambda m: m.dst != leader)
    for f in (n for n in cluster.nodes if n != leader):
        assert cluster.raft(f).commit_index < index
        assert cluster.nodes[f].kv.data == {}


def test_two_followers_of_five_are_not_a_quorum_three_are() -> None:
    cluster, leader, index = _cluster_with_a_write(5)
    f1, f2, f3, f4 = (n for n in cluster.nodes if n != leader)
    held_back: list[Message] = []

    def two_only(m: Message) -> bool:
        if isinstance(m, AppendEntries) and m.dst in (f3, f4):
            held_back.append(m)
            return False
        return m.dst != leader

    cluster.deliver(allow=two_only)
    assert [cluster.raft(f).commit_index < index for f in (f1, f2)] == [True, True]
    cluster.outbox.extend(m for m in held_back if m.dst == f3)
    cluster.deliver(allow=lambda m: m.dst not in (leader, f4))
    for f in (f1, f2, f3):
        assert cluster.raft(f).commit_index == index
    assert cluster.raft(f4).last_index < index


def _follower_b() -> tuple[RaftNode, list[Message]]:
    node = RaftNode("b", ["a", "b", "c"], None, random.Random(0))
    node.tick(0)
    return node, []


def _step(node: RaftNode, msg: Message, sent: list[Message]) -> None:
    node.step(msg)
    while node.has_ready():
        rd = node.ready()
        sent.extend(rd.messages)
        node.advance(rd)


def test_an_entry_of_an_earlier_term_is_not_committed_by_peer_acks() -> None:
    """The current-term rule holds for followers too (figure 8 of the Raft paper)."""
    b, sent = _follower_b()
    old = Entry(1, 1, EntryKind.DATA, b"old")
    _step(b, AppendEntries(2, "a", "b", 0, 0, 0, (old,)), sent)
    assert [(type(m).__name__, m.dst) for m in sent] == [
        ("AppendResponse", "a"),
        ("PeerAck", "c"),
    ], "the ack goes to the leader, the peer ack to the other follower only"
    _step(b, PeerAck(2, "c", "b", 1), sent)
    assert b.commit_index == 0
    _step(b, AppendEntries(2, "a", "b", 1, 1, 0, (Entry(2, 2, EntryKind.NOOP),)), sent)
    assert b.commit_index == 0, "c has only acknowledged index 1"
    _step(b, PeerAck(2, "c", "b", 2), sent)
    assert b.commit_index == 2  # committing the term's own entry commits index 1 with it


def test_peer_acks_of_another_term_or_beyond_the_own_log_do_not_commit() -> None:
    b, sent = _follower_b()
    _step(b, AppendEntries(3, "a", "b", 0, 0, 0, (Entry(1, 3, EntryKind.NOOP),)), sent)
    for stale_or_future in (PeerAck(2, "c", "b", 1), PeerAck(4, "c", "b", 1)):
        _step(b, stale_or_future, sent)
        assert (b.commit_index, b.term) == (0, 3)
    _step(b, PeerAck(3, "c", "b", 50), sent)
    assert b.commit_index == 1, "capped at what this follower holds itself"


def test_a_peer_ack_that_arrives_before_the_entries_counts_once_they_do() -> None:
    b, sent = _follower_b()
    _step(b, AppendEntries(2, "a", "b", 0, 0, 0, ()), sent)  # b follows a in term 2
    _step(b, PeerAck(2, "c", "b", 1), sent)
    assert b.commit_index == 0
    _step(b, AppendEntries(2, "a", "b", 0, 0, 0, (Entry(1, 2, EntryKind.NOOP),)), sent)
    assert b.commit_index == 1


def test_a_follower_counts_only_entries_it_has_persisted() -> None:
    b, sent = _follower_b()
    _step(b, AppendEntries(2, "a", "b", 0, 0, 0, ()), sent)
    _step(b, PeerAck(2, "c", "b", 1), sent)
    b.step(AppendEntries(2, "a", "b", 0, 0, 0, (Entry(1, 2, EntryKind.NOOP),)))
    assert b.commit_index == 0, "its own copy is not on disk yet"
    rd = b.ready()
    assert [e.index for e in rd.entries] == [1] and not rd.committed_entries
    b.advance(rd)  # the driver has persisted entry 1
    assert b.commit_index == 1
    assert [e.index for e in b.ready().committed_entries] == [1]
