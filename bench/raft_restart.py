"""Restart time of a Raft server from its disk: snapshot plus 100,000 log entries.

Builds a data directory with FileStorage (a key-value snapshot of 10,000 keys, then 100,000
small committed entries), then times what a restarting server does: open and verify the
log (checksums), rebuild the Raft core, restore the state machine from the snapshot and
apply every committed entry.

    python3 bench/raft_restart.py [--entries 100000] [--keys 10000]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dkron_pkg.raft_messages import Entry, EntryKind, SnapshotMeta
from dkron_pkg.raft_storage import FileStorage
from dkron_pkg.raftlog import Compacted, HardState, RaftNode, Snapshot


def build(path: Path, entries: int, keys: int) -> None:
    storage = FileStorage(path)
    state = {f"job-{i}": f"value-{i}" for i in range(keys)}
    snap_index = 1000
    snapshot = Snapshot(SnapshotMeta(snap_index, 1, ("a",)), json.dumps(state).encode())
    storage.save_snapshot(snapshot)
    index = snap_index
    batch: list[Entry] = []
    for i in range(entries):
        index += 1
        cmd = {"op": "put", "key": f"job-{i % keys}", "value": f"run-{i}"}
        batch.append(Entry(index, 1, EntryKind.DATA, json.dumps(cmd).encode()))
        if len(batch) == 1000:
            storage.append(batch, HardState(1, "a", index))
            batch = []
    if batch:
        storage.append(batch, HardState(1, "a", index))
    storage.close()


def restart(path: Path) -> tuple[float, int, dict[str, str]]:
    began = time.perf_counter()
    storage = FileStorage(path)
    state = storage.load()
    kv: dict[str, str] = json.loads(state.snapshot.data) if state.snapshot else {}
    node = RaftNode("a", ["a"], state, random.Random(1))
    applied = 0
    while node.has_ready():
        rd = node.ready()
        storage.append(rd.entries, rd.hard_state)
        for entry in rd.committed_entries:
            if entry.kind == EntryKind.DATA:
                cmd = json.loads(entry.data)
                kv[cmd["key"]] = cmd["value"]
                applied += 1
        node.advance(rd)
    elapsed = time.perf_counter() - began
    storage.close()
    return elapsed, applied, kv


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "raft"
        t0 = time.perf_counter()
        build(path, args.entries, args.keys)
        size = (path / "log").stat().st_size
        print(
            f"built: snapshot of {args.keys} keys + {args.entries} entries "
            f"({size / 1e6:.1f} MB log) in {time.perf_counter() - t0:.1f} s"
        )
        elapsed, applied, kv = restart(path)
        assert applied == args.entries, applied
        assert kv[f"job-{(args.entries - 1) % args.keys}"] == f"run-{args.entries - 1}"
        print(
            f"restart (open + verify + rebuild core + restore + apply {applied} entries): "
            f"{elapsed:.2f} s (target < 5 s)"
        )
        # Compaction afterwards: snapshot + log rewrite keeping 1,000 trailing entries.
        storage = FileStorage(path)
        state = storage.load()
        last = state.entries[-1]
        t1 = time.perf_counter()
        snap = Snapshot(SnapshotMeta(last.index, last.term, ("a",)), json.dumps(kv).encode())
        storage.compact(Compacted(snap, last.index - 1000, last.term))
        print(f"compaction (snapshot write + log rewrite): {time.perf_counter() - t1:.2f} s")
        storage.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
