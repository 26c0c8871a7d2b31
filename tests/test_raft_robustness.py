"""Any sequence of well-formed but arbitrary messages and ticks never crashes a Raft core or
breaks its local invariants; malformed ones are dropped and counted."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from dkron_pkg import raft_messages as rm
from dkron_pkg.raftlog import RaftNode

peer = st.sampled_from(["n1", "n2", "n3", "stranger"])
term = st.integers(min_value=0, max_value=6)
index = st.integers(min_value=0, max_value=12)
flag = st.booleans()


@st.composite
def entries(draw) -> tuple[int, int, tuple[rm.Entry, ...]]:
    prev = draw(index)
    prev_term = draw(term)
    count = draw(st.integers(min_value=0, max_value=4))
    out = []
    t = prev_term
    for i in range(count):
        t = draw(st.integers(min_value=t, max_value=t + 1))
        kind = draw(st.sampled_from(list(rm.EntryKind)))
        data = rm.encode_voters(("n1", "n2")) if kind == rm.EntryKind.CONFIG else b"x"
        if draw(st.integers(0, 20)) == 0:
            data = b"\xff"  # an undecodable configuration sometimes
        out.append(rm.Entry(prev + 1 + i, t, kind, data))
    if draw(st.integers(0, 10)) == 0 and out:
        out.reverse()  # not contiguous sometimes
    return prev, prev_term, tuple(out)


@st.composite
def message(draw):
    src, t = draw(peer), draw(term)
    kind = draw(st.integers(0, 8))
    if kind == 0:
        return rm.RequestVote(t, src, "n1", draw(index), draw(term), draw(flag), draw(flag))
    if kind == 1:
        return rm.VoteResponse(t, src, "n1", draw(flag), draw(flag))
    if kind == 2:
        prev, prev_term, es = draw(entries())
        top = max([t] + [e.term for e in es])
        return rm.AppendEntries(top, src, "n1", prev, prev_term, draw(index), es)
    if kind == 3:
        return rm.AppendResponse(t, src, "n1", draw(flag), draw(index), draw(index))
    if kind == 4:
        return rm.Heartbeat(t, src, "n1", draw(index), draw(index))
    if kind == 5:
        return rm.HeartbeatResponse(t, src, "n1", draw(index))
    if kind == 6:
        meta = rm.SnapshotMeta(draw(index), draw(term), ("n1", "n2", "n3"))
        return rm.InstallSnapshot(t, src, "n1", meta, b"snap")
    if kind == 7:
        return rm.PeerAck(t, src, "n1", draw(index))
    return rm.TimeoutNow(t, src, "n1")


def drain(node: RaftNode) -> None:
    for _ in range(50):
        if not node.has_ready():
            return
        node.advance(node.ready())
    raise AssertionError("ready() never settles")


def check_invariants(node: RaftNode) -> None:
    held = node.entries(node.first_index, node.last_index + 1)
    assert [e.index for e in held] == list(range(node.first_index, node.last_index + 1))
    assert node.applied_index <= node.commit_index <= max(node.last_index, node.snapshot_index)
    terms = [e.term for e in held]
    assert terms == sorted(terms)
    assert all(t <= node.term for t in terms)


@given(st.lists(st.one_of(message(), st.integers(min_value=1, max_value=400)), max_size=60))
@settings(max_examples=300, deadline=None)
def test_arbitrary_message_sequences_never_crash_the_core(steps) -> None:
    node = RaftNode("n1", ["n1", "n2", "n3"], None, random.Random(0))
    now = 0
    node.tick(now)
    for item in steps:
        if isinstance(item, int):
            now += item
            node.tick(now)
        else:
            node.step(item)
            # Messages also survive the wire unchanged.
            assert rm.decode(rm.encode(item)) == item
        drain(node)
        check_invariants(node)
        if node.role.value == "leader":
            node.propose(b"w")
            drain(node)


def test_malformed_appends_are_dropped_with_a_counted_reason() -> None:
    node = RaftNode("n1", ["n1", "n2", "n3"], None, random.Random(0))
    node.tick(0)
    gap = rm.AppendEntries(1, "n2", "n1", 0, 0, 0, (rm.Entry(2, 1),))
    node.step(gap)
    assert node.rejected["entries not contiguous after prev_index"] == 1
    assert node.last_index == 0
    future = rm.AppendEntries(1, "n2", "n1", 0, 0, 0, (rm.Entry(1, 5),))
    node.step(future)
    assert node.rejected["entry terms out of order"] == 1
    bad_cfg = rm.AppendEntries(1, "n2", "n1", 0, 0, 0, (rm.Entry(1, 1, rm.EntryKind.CONFIG, b"?"),))
    node.step(bad_cfg)
    assert node.rejected["undecodable configuration entry"] == 1
    assert node.last_index == 0 and node.term == 0
