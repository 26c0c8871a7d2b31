"""The store's WAL is checkpointed by its own thread, never inside a writer's commit."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from dkron_pkg.store import Store
from dkron_pkg.store_checkpoint import WAL_SIZE_LIMIT, WalCheckpointer


def _writer(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB)")
    return db


def _wal_bytes(path: Path) -> int:
    wal = Path(str(path) + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_handed_over_writer_never_checkpoints_in_its_commits(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = _writer(path)
    WalCheckpointer.hand_over(db)
    for k in range(1500):  # 1,500 pages: past SQLite's default threshold of 1,000
        db.execute("INSERT INTO t VALUES(?, ?)", (k, os.urandom(3000)))
    assert _wal_bytes(path) > 1500 * 3000
    db.close()


def test_passive_checkpoint_copies_everything_and_the_wal_restarts(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = _writer(path)
    WalCheckpointer.hand_over(db)
    for k in range(800):
        db.execute("INSERT INTO t VALUES(?, ?)", (k, os.urandom(3000)))
    other = sqlite3.connect(path, isolation_level=None)
    busy, frames, copied = WalCheckpointer(str(path)).checkpoint_now(other)
    assert busy == 0 and frames > 800 and copied == frames
    before = _wal_bytes(path)
    for k in range(800, 900):  # the writer starts the WAL over instead of growing it
        db.execute("INSERT INTO t VALUES(?, ?)", (k, os.urandom(3000)))
    assert _wal_bytes(path) <= before
    assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 900
    other.close()
    db.close()


def test_store_wal_stays_bounded_under_writes(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(str(path))
    assert store._checkpointer is not None
    body = {"schedule": "@every 1m", "executor_config": {"command": "x" * 2000}}
    deadline = time.monotonic() + 30
    for i in range(3000):
        store.apply({"op": "set_job", "job": {"name": f"job-{i % 50}", **body}, "now_ns": 1})
        if i % 500 == 499:
            time.sleep(1.2)  # let the checkpoint thread run a round
    assert time.monotonic() < deadline
    assert store._checkpointer.checkpoints >= 2
    assert _wal_bytes(path) <= WAL_SIZE_LIMIT
    store.close()
    reopened = Store(str(path))
    assert len(reopened.list_jobs()) == 50
    reopened.close()
