"""Durable Raft log: what is appended survives a reopen, a torn tail is cut off and never
served, damage is refused (see tests/security/test_storage_damage.py), snapshots replace the
log atomically."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dkron_pkg.raft_messages import Entry, EntryKind, SnapshotMeta
from dkron_pkg.raft_storage import LOG_MAGIC, FileStorage, StorageCorruption, StorageError
from dkron_pkg.raftlog import Compacted, HardState, RaftNode, Role, Snapshot


def entries(lo: int, hi: int, term: int = 1) -> list[Entry]:
    return [Entry(i, term, EntryKind.DATA, f"cmd-{i}".encode()) for i in range(lo, hi + 1)]


def test_entries_and_hard_state_survive_reopen_with_one_fsync_per_batch(tmp_path) -> None:
    st_ = FileStorage(tmp_path)
    before = st_.fsyncs
    st_.append(entries(1, 50), HardState(3, "n2", 10))
    assert st_.fsyncs == before + 1, "a whole batch shares one fsync"
    st_.append(entries(51, 60), None)
    st_.close()
    state = FileStorage(tmp_path).load()
    assert [e.index for e in state.entries] == list(range(1, 61))
    assert state.entries[4].data == b"cmd-5"
    assert state.hard_state == HardState(3, "n2", 10)


def test_follower_suffix_is_replaced(tmp_path) -> None:
    st_ = FileStorage(tmp_path)
    st_.append(entries(1, 10, term=1))
    st_.append(entries(6, 7, term=2))
    st_.close()
    state = FileStorage(tmp_path).load()
    assert [(e.index, e.term) for e in state.entries][-3:] == [(5, 1), (6, 2), (7, 2)]
    assert len(state.entries) == 7


def test_appending_with_a_gap_is_refused(tmp_path) -> None:
    st_ = FileStorage(tmp_path)
    st_.append(entries(1, 3))
    with pytest.raises(ValueError, match="do not follow"):
        st_.append(entries(5, 6))


@pytest.mark.parametrize("cut", [1, 5, 9, 13, 20])
def test_torn_last_record_is_truncated_not_served(tmp_path, cut: int) -> None:
    st_ = FileStorage(tmp_path)
    st_.append(entries(1, 20))
    st_.close()
    size_19 = _size_with(tmp_path, 19)
    log = tmp_path / "log"
    data = log.read_bytes()
    log.write_bytes(data[: size_19 + cut])
    reopened = FileStorage(tmp_path)
    assert [e.index for e in reopened.load().entries] == list(range(1, 20))
    assert reopened.truncated_bytes == cut
    assert "torn" in reopened.truncation_reason
    assert log.stat().st_size == size_19, "the torn bytes are cut off the file"
    reopened.append(entries(20, 21))
    reopened.close()
    assert [e.index for e in FileStorage(tmp_path).load().entries][-2:] == [20, 21]


def _size_with(path, n: int) -> int:
    """File size of a fresh log holding entries 1..n."""
    other = path / f"size{n}"
    st_ = FileStorage(other)
    st_.append(entries(1, n))
    st_.close()
    return (other / "log").stat().st_size


def test_flipped_byte_in_the_last_record_is_damage_not_a_torn_tail(tmp_path) -> None:
    """A complete last record that fails its checksum was written whole and acknowledged:
    a crash cannot produce it, so it is reported, not cut off."""
    st_ = FileStorage(tmp_path)
    st_.append(entries(1, 10))
    st_.close()
    log = tmp_path / "log"
    data = bytearray(log.read_bytes())
    last_record = _size_with(tmp_path, 9)
    data[-3] ^= 0xFF
    log.write_bytes(bytes(data))
    with pytest.raises(StorageCorruption, match=f"damaged at byte {last_record} .checksum"):
        FileStorage(tmp_path)
    assert log.read_bytes() == bytes(data), "nothing is cut off a damaged log"


def test_last_record_with_an_unwritten_sector_is_a_torn_tail(tmp_path) -> None:
    """A crash can leave sectors of the last write unwritten (zeros): that is cut off."""
    big = [Entry(i, 1, EntryKind.DATA, b"x" * 700) for i in range(1, 4)]
    st_ = FileStorage(tmp_path)
    st_.append(big[:2])
    start = (tmp_path / "log").stat().st_size
    st_.append(big[2:])
    st_.close()
    log = tmp_path / "log"
    data = bytearray(log.read_bytes())
    sector = (start // 512 + 1) * 512  # the last record's second sector never reached the disk
    data[sector:] = bytes(len(data) - sector)
    log.write_bytes(bytes(data))
    reopened = FileStorage(tmp_path)
    assert reopened.load().entries == big[:2]
    assert "checksum" in reopened.truncation_reason
    assert log.stat().st_size == start


@given(garbage=st.binary(min_size=1, max_size=200))
@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_garbage_after_valid_records_is_never_served(tmp_path_factory, garbage: bytes) -> None:
    """Whatever follows the last good record is cut off (a torn write) or refused (damage),
    never served; a refused log is left as it is."""
    path = tmp_path_factory.mktemp("garbage")
    st_ = FileStorage(path, fsync=False)
    st_.append(entries(1, 5), HardState(2, "a", 3))
    st_.close()
    with open(path / "log", "ab") as fh:
        fh.write(garbage)
    before = (path / "log").read_bytes()
    try:
        reopened = FileStorage(path, fsync=False)
    except StorageCorruption as e:
        assert str(path / "log") in str(e)
        assert (path / "log").read_bytes() == before
        return
    state = reopened.load()
    assert state.entries == entries(1, 5)
    assert state.hard_state == HardState(2, "a", 3)
    assert reopened.truncated_bytes == len(garbage)


def test_a_file_that_is_not_a_log_is_reported(tmp_path) -> None:
    (tmp_path / "log").write_bytes(b"hello world, not a log at all")
    with pytest.raises(StorageError, match="not a Raft log"):
        FileStorage(tmp_path)


def test_compaction_keeps_the_snapshot_and_retained_entries(tmp_path) -> None:
    st_ = FileStorage(tmp_path)
    st_.append(entries(1, 100), HardState(1, "a", 100))
    snap = Snapshot(SnapshotMeta(80, 1, ("a", "b", "c")), b"state@80")
    st_.compact(Compacted(snap, 70, 1))
    st_.append(entries(101, 102))
    st_.close()
    state = FileStorage(tmp_path).load()
    assert state.snapshot == snap
    assert (state.offset, state.offset_term) == (70, 1)
    assert [e.index for e in state.entries] == list(range(71, 103))
    assert not (tmp_path / "snapshot.tmp").exists()


def test_received_snapshot_replaces_the_log(tmp_path) -> None:
    st_ = FileStorage(tmp_path)
    st_.append(entries(1, 10))
    snap = Snapshot(SnapshotMeta(500, 4, ("a", "b")), b"big")
    st_.save_snapshot(snap)
    st_.append(entries(501, 503, term=4), HardState(4, None, 502))
    st_.close()
    state = FileStorage(tmp_path).load()
    assert (state.offset, state.offset_term) == (500, 4)
    assert [e.index for e in state.entries] == [501, 502, 503]


def test_crash_between_snapshot_and_log_rewrite_restarts_log_from_snapshot(tmp_path) -> None:
    st_ = FileStorage(tmp_path)
    st_.append(entries(1, 10))
    st_.close()
    # Only the snapshot file reached the disk (as if we crashed before the log rewrite).
    other = FileStorage(tmp_path / "other")
    other._write_snapshot(Snapshot(SnapshotMeta(40, 3, ("a",)), b"s"))
    (tmp_path / "snapshot").write_bytes((tmp_path / "other" / "snapshot").read_bytes())
    state = FileStorage(tmp_path).load()
    assert (state.offset, state.offset_term, state.entries) == (40, 3, [])
    assert state.hard_state.commit == 40


def test_corrupt_snapshot_is_reported(tmp_path) -> None:
    st_ = FileStorage(tmp_path)
    st_.compact(Compacted(Snapshot(SnapshotMeta(0, 0, ("a",)), b"x" * 50), 0, 0))
    st_.close()
    snap = tmp_path / "snapshot"
    data = bytearray(snap.read_bytes())
    data[20] ^= 1
    snap.write_bytes(bytes(data))
    with pytest.raises(StorageError, match="checksum"):
        FileStorage(tmp_path)


def test_single_node_restarts_from_disk_with_its_data(tmp_path) -> None:
    """End to end on a real directory: a one-voter node commits, restarts, keeps it all."""

    def drive(node: RaftNode, storage: FileStorage, applied: list[bytes]) -> None:
        while node.has_ready():
            rd = node.ready()
            storage.append(rd.entries, rd.hard_state)
            applied.extend(e.data for e in rd.committed_entries if e.kind == EntryKind.DATA)
            node.advance(rd)

    storage = FileStorage(tmp_path)
    node = RaftNode("a", ["a"], storage.load(), random.Random(1))
    applied: list[bytes] = []
    for t in range(0, 400, 10):
        node.tick(t)
        drive(node, storage, applied)
    assert node.role == Role.LEADER
    for i in range(5):
        node.propose(f"w{i}".encode())
    drive(node, storage, applied)
    assert applied == [f"w{i}".encode() for i in range(5)]
    storage.close()
    storage = FileStorage(tmp_path)
    again = RaftNode("a", ["a"], storage.load(), random.Random(2))
    replayed: list[bytes] = []
    drive(again, storage, replayed)
    assert replayed == applied
    assert again.term == node.term
    assert LOG_MAGIC == (tmp_path / "log").read_bytes()[: len(LOG_MAGIC)]
