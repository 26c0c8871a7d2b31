"""Issue 16, finding 8: storage damage was hidden. One flipped byte at 30% of a follower's Raft
log cut 70% of the log with only a warning (its later term and vote records too, so it could
vote twice in a term); a zero-length `state.db` started silently with 0 jobs.

Now a damaged log or store file stops the start with one line naming the file (and, for the
log, the byte offset); only a torn tail (the unfinished last write of a crash) is still cut.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from agent_support import TEST_KEY

from dkron_pkg.raft_messages import Entry, EntryKind
from dkron_pkg.raft_storage import LOG_MAGIC, REC_HARD, FileStorage, StorageCorruption
from dkron_pkg.raftlog import HardState
from dkron_pkg.raftnode import RaftReplicator, raft_config
from dkron_pkg.rpc import RpcClient
from dkron_pkg.store import Store
from dkron_pkg.store_file import StoreFileError

ROOT = Path(__file__).resolve().parents[2]
HEAD = struct.Struct(">IIB")
NOW = 1_700_000_000_000_000_000


def entries(lo: int, hi: int, term: int) -> list[Entry]:
    return [
        Entry(i, term, EntryKind.DATA, b'[{"op":"delete_job","name":"x%d"}]' % i)
        for i in range(lo, hi + 1)
    ]


def follower_log(path: Path) -> FileStorage:
    """A log as a follower writes it: batches of entries, each with its term and vote."""
    storage = FileStorage(path, fsync=False)
    for term in range(1, 6):
        lo = (term - 1) * 8 + 1
        storage.append(entries(lo, lo + 7, term), HardState(term, f"n{term % 3 + 1}", lo + 3))
    storage.close()
    return storage


def records(log: Path) -> list[tuple[int, int]]:
    """(offset, type) of every record in an intact log."""
    raw = log.read_bytes()
    pos, out = len(LOG_MAGIC), []
    while pos < len(raw):
        size, _, kind = HEAD.unpack_from(raw, pos)
        out.append((pos, kind))
        pos += HEAD.size + size
    return out


def flip(log: Path, offset: int) -> bytes:
    data = bytearray(log.read_bytes())
    data[offset] ^= 0x01
    log.write_bytes(bytes(data))
    return bytes(data)


def damaged_record_at(log: Path, offset: int) -> int:
    return max(pos for pos, _ in records(log) if pos <= offset)


# ----- the Raft log ---------------------------------------------------------------------------


def test_flipped_byte_at_30_percent_of_the_log_refuses_to_start_naming_file_and_offset(tmp_path):
    follower_log(tmp_path)
    log = tmp_path / "log"
    where = int(log.stat().st_size * 0.3)
    record = damaged_record_at(log, where)
    damaged = flip(log, where)
    with pytest.raises(StorageCorruption) as refused:
        FileStorage(tmp_path)
    message = str(refused.value)
    assert str(log) in message and f"damaged at byte {record} " in message
    assert "valid records follow" in message and "--join" in message
    assert log.read_bytes() == damaged, "nothing is cut off a damaged log"


def test_every_single_flipped_byte_is_refused_never_cut(tmp_path):
    """Wherever one byte of an acknowledged log changes (in the last record too), the node
    refuses to start and names the damaged record; before, everything from it on was cut."""
    model = FileStorage(tmp_path / "model", fsync=False)
    model.append(entries(1, 3, 1), HardState(1, "n1", 2))
    model.append(entries(4, 5, 2), HardState(2, "n2", 4))
    model.close()
    intact = (tmp_path / "model" / "log").read_bytes()
    starts = [pos for pos, _ in records(tmp_path / "model" / "log")]
    log = tmp_path / "log"
    for offset in range(len(LOG_MAGIC), len(intact)):
        log.write_bytes(intact)
        flip(log, offset)
        record = max(pos for pos in starts if pos <= offset)
        with pytest.raises(StorageCorruption, match=f"damaged at byte {record} "):
            FileStorage(tmp_path, fsync=False)


def test_a_damaged_vote_record_refuses_to_start(tmp_path):
    """A term-and-vote record in the middle of the log, then the last one: cutting either would
    bring back an older term or vote, and the node could vote again in a term it voted in."""
    follower_log(tmp_path / "model")
    intact = (tmp_path / "model" / "log").read_bytes()
    votes = [pos for pos, kind in records(tmp_path / "model" / "log") if kind == REC_HARD]
    log = tmp_path / "log"
    for vote in (votes[2], votes[-1]):
        log.write_bytes(intact)
        flip(log, vote + HEAD.size + 17)  # a byte of the voted-for node's name
        with pytest.raises(StorageCorruption, match=f"damaged at byte {vote} .checksum"):
            FileStorage(tmp_path)
    log.write_bytes(intact)
    assert FileStorage(tmp_path).load().hard_state == HardState(5, "n3", 36)


def test_a_torn_tail_is_still_cut_with_a_warning(tmp_path):
    """A crash in the middle of the last write leaves a short record: it was never
    acknowledged and is cut off (this held before too)."""
    follower_log(tmp_path)
    log = tmp_path / "log"
    last = records(log)[-1][0]
    log.write_bytes(log.read_bytes()[: last + 11])
    storage = FileStorage(tmp_path)
    assert storage.truncated_bytes == 11
    assert storage.truncation_reason.startswith(f"torn record body at byte {last} of {log}")
    assert storage.load().entries[-1].index == 40
    assert storage.load().hard_state == HardState(4, "n2", 28)


def test_the_cli_refuses_a_damaged_log_with_one_line_and_no_traceback(tmp_path):
    data = tmp_path / "data"
    follower_log(data / "raft")
    log = data / "raft" / "log"
    where = int(log.stat().st_size * 0.3)
    record = damaged_record_at(log, where)
    flip(log, where)
    out = run_agent(data)
    assert out.returncode != 0
    assert f"{log}: the Raft log is damaged at byte {record} " in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


# ----- the store file -------------------------------------------------------------------------


def test_a_zero_length_state_db_refuses_to_start_with_a_message(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"")
    with pytest.raises(StoreFileError, match=f"the job store {path} is damaged: it is empty"):
        Store(str(path))
    assert path.stat().st_size == 0, "the file is left as it was for the operator"


def test_a_state_db_that_is_not_sqlite_refuses_to_start(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"{not a database}" * 500)
    with pytest.raises(StoreFileError, match="it is not a SQLite database"):
        Store(str(path))


def test_a_state_db_with_a_damaged_page_refuses_to_start(tmp_path):
    path = tmp_path / "state.db"
    store = Store(str(path))
    for i in range(300):
        job = {"name": f"job-{i}", "schedule": "@every 1h", "displayname": "x" * 200}
        assert store.apply({"op": "set_job", "job": job, "now_ns": NOW}).ok
    store.close()
    raw = bytearray(path.read_bytes())
    page = 4096
    raw[3 * page : 4 * page] = b"\xa5" * page  # one B-tree page overwritten
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreFileError, match=f"the job store {path} is damaged"):
        Store(str(path))


def test_the_cli_refuses_a_zero_length_state_db_and_a_new_directory_still_starts(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "state.db").write_bytes(b"")
    out = run_agent(data)
    assert out.returncode != 0
    assert f"the job store {data / 'state.db'} is damaged: it is empty (0 bytes)" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    fresh = Store(str(tmp_path / "new" / "state.db"))  # no file yet: a new server
    assert fresh.job_names() == []
    fresh.close()


def test_a_raft_server_rebuilds_a_damaged_store_moved_aside(tmp_path):
    """What the refusal tells the operator of a cluster server: move state.db aside and start
    again; the Raft log and snapshot rebuild the store."""
    store_path = tmp_path / "state.db"
    node = start_single_node(tmp_path, Store(str(store_path)))
    for i in range(30):
        assert node.submit([{"op": "set_job", "job": {"name": f"j{i}", "schedule": "@every 1h"},
                             "now_ns": NOW}], timeout=10)[0].ok  # fmt: skip
    node.close()
    node.store.close()
    for name in os.listdir(tmp_path):
        if name.startswith("state.db"):
            os.unlink(tmp_path / name)
    store_path.write_bytes(b"")
    with pytest.raises(StoreFileError, match="rebuild the store from that log"):
        Store(str(store_path))
    store_path.rename(tmp_path / "state.db.damaged")
    node = start_single_node(tmp_path, Store(str(store_path)))
    try:
        node.barrier(timeout=10)
        assert len(node.store.job_names()) == 30
    finally:
        node.close()
        node.store.close()


# ----- helpers --------------------------------------------------------------------------------


def run_agent(data: Path) -> subprocess.CompletedProcess:
    args = [
        sys.executable, str(ROOT / "dkron.py"), "agent", "--server", "--bootstrap-expect", "1",
        "--node-name", "node1", "--data-dir", str(data), "--http-addr", "127.0.0.1:0",
        "--bind-addr", "127.0.0.1:0", "--rpc-port", "0", "--profile", "local",
        "--encrypt", TEST_KEY,
    ]  # fmt: skip
    return subprocess.run(
        args, check=False, capture_output=True, text=True, timeout=60, cwd=data.parent
    )


def start_single_node(data: Path, store: Store) -> RaftReplicator:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        addr = f"127.0.0.1:{s.getsockname()[1]}"
    node = RaftReplicator(
        "n1", addr, str(data), store, RpcClient(b"k" * 32), bootstrap={"n1": addr},
        config=raft_config(1), fsync=False,
    )  # fmt: skip
    node.start()
    return node
