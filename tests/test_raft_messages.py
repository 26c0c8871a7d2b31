"""Wire codec of Raft messages: round trips, and clear DecodeErrors for any bad bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dkron_pkg import raft_messages as rm
from dkron_pkg.raft_messages import DecodeError, decode, encode

u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
small = st.integers(min_value=0, max_value=10**6)
name = st.text(max_size=12)
entry = st.builds(
    rm.Entry, small, small, st.sampled_from(list(rm.EntryKind)), st.binary(max_size=40)
)
meta = st.builds(rm.SnapshotMeta, small, small, st.lists(name, max_size=5).map(tuple))

messages = st.one_of(
    st.builds(rm.RequestVote, u64, name, name, u64, u64, st.booleans(), st.booleans()),
    st.builds(rm.VoteResponse, u64, name, name, st.booleans(), st.booleans()),
    st.builds(
        rm.AppendEntries, u64, name, name, u64, u64, u64, st.lists(entry, max_size=5).map(tuple)
    ),
    st.builds(rm.AppendResponse, u64, name, name, st.booleans(), u64, u64),
    st.builds(rm.Heartbeat, u64, name, name, u64, u64),
    st.builds(rm.HeartbeatResponse, u64, name, name, u64),
    st.builds(rm.InstallSnapshot, u64, name, name, meta, st.binary(max_size=100)),
    st.builds(rm.TimeoutNow, u64, name, name),
    st.builds(rm.PeerAck, u64, name, name, u64),
)


@given(messages)
def test_every_message_round_trips(msg) -> None:
    data = encode(msg)
    assert data[0] == rm.WIRE_VERSION
    assert decode(data) == msg


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    try:
        decode(data)
    except DecodeError as exc:
        assert str(exc)


@given(messages, st.data())
def test_truncated_messages_are_rejected(msg, data) -> None:
    raw = encode(msg)
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    with pytest.raises(DecodeError):
        decode(raw[:cut])


@given(messages, st.binary(min_size=1, max_size=10))
def test_trailing_bytes_are_rejected(msg, extra: bytes) -> None:
    with pytest.raises(DecodeError, match="trailing"):
        decode(encode(msg) + extra)


@given(messages, st.data())
def test_flipped_bytes_never_raise_anything_else(msg, data) -> None:
    raw = bytearray(encode(msg))
    pos = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(min_value=1, max_value=255))
    try:
        decode(bytes(raw))
    except DecodeError:
        pass


def test_oversized_and_wrong_version_are_named() -> None:
    with pytest.raises(DecodeError, match="exceeds"):
        decode(b"\x01\x01" + bytes(rm.MAX_MESSAGE_BYTES))
    good = encode(rm.TimeoutNow(1, "a", "b"))
    with pytest.raises(DecodeError, match="wire version"):
        decode(b"\x09" + good[1:])
    with pytest.raises(DecodeError, match="unknown message type"):
        decode(good[:1] + b"\x63" + good[2:])
    with pytest.raises(DecodeError, match="expected bytes"):
        decode("text")  # type: ignore[arg-type]


def test_huge_entry_count_is_rejected_without_allocating() -> None:
    msg = rm.AppendEntries(1, "a", "b", 0, 0, 0, ())
    raw = bytearray(encode(msg))
    raw[-4:] = (0xFFFFFFFF).to_bytes(4, "big")
    with pytest.raises(DecodeError, match="entry count"):
        decode(bytes(raw))


def test_voters_and_entries_have_their_own_codecs() -> None:
    voters = ("a", "b", "ç")
    assert rm.decode_voters(rm.encode_voters(voters)) == voters
    e = rm.Entry(5, 2, rm.EntryKind.CONFIG, b"xyz")
    assert rm.decode_entry(rm.encode_entry(e)) == e
    with pytest.raises(DecodeError):
        rm.decode_entry(rm.encode_entry(e)[:-1])
    m = rm.SnapshotMeta(3, 1, voters)
    assert rm.decode_meta(rm.encode_meta(m)) == m


def test_only_snapshots_may_exceed_the_message_limit(monkeypatch) -> None:
    monkeypatch.setattr(rm, "MAX_MESSAGE_BYTES", 1000)
    meta = rm.SnapshotMeta(5, 2, ("a", "b", "c"))
    snap = rm.InstallSnapshot(2, "a", "b", meta, b"s" * 5000)
    assert decode(encode(snap)) == snap
    append = rm.AppendEntries(
        2, "a", "b", 0, 0, 0, (rm.Entry(1, 2, rm.EntryKind.DATA, b"e" * 5000),)
    )
    with pytest.raises(rm.DecodeError, match="exceeds 1000"):
        decode(encode(append))
