"""Start-up check of the job store's SQLite file.

SQLite opens an empty file as a new, empty database, and only fails on a damaged one when a
query happens to touch the damage. A server whose `state.db` was truncated would then start
with no jobs and say nothing. So an existing file is checked before it is used: not empty, a
SQLite database, and `PRAGMA quick_check` clean (it reads every page: about a second per
gigabyte from a warm cache). A missing file is fine: that is a new server.
"""

from __future__ import annotations

import os
import sqlite3

SQLITE_HEADER = b"SQLite format 3\x00"


class StoreFileError(RuntimeError):
    """The store file is damaged; the message names it and says how to recover."""


def check_store_file(path: str) -> None:
    """Raise StoreFileError if the existing store file at `path` is empty or damaged."""
    if path == ":memory:" or not os.path.exists(path):
        return
    problem = _problem(path)
    if problem is not None:
        raise StoreFileError(damage_message(path, problem))


def _problem(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
    except OSError as e:
        return f"it cannot be read: {e.strerror or e}"
    if not header:
        return "it is empty (0 bytes)"
    if header != SQLITE_HEADER:
        return "it is not a SQLite database"
    try:
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as e:
        return f"SQLite cannot open it: {e}"
    try:
        rows = db.execute("PRAGMA quick_check(5)").fetchall()
    except sqlite3.DatabaseError as e:
        return f"SQLite cannot read it: {e}"
    finally:
        db.close()
    if rows != [("ok",)]:
        return "PRAGMA quick_check reports: " + "; ".join(str(r[0]) for r in rows)
    return None


def damage_message(path: str, problem: str) -> str:
    """What is wrong with the store file and how to get going again."""
    raft_dir = os.path.join(os.path.dirname(os.path.abspath(path)), "raft")
    if os.path.isdir(raft_dir):
        fix = (
            f"This server keeps a Raft log in {raft_dir}: stop it, move {path} (with its -wal "
            "and -shm files) aside and start it again to rebuild the store from that log, or "
            "rebuild the server from the others (move its data directory aside, start it "
            "with --join)."
        )
    else:
        fix = (
            f"Move {path} (with its -wal and -shm files) aside and start again, then restore "
            "the jobs from a backup (a saved GET /v1/jobs answer, POST /v1/restore)."
        )
    return f"the job store {path} is damaged: {problem}. Refusing to start with it. {fix}"
