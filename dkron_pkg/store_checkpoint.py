"""SQLite WAL checkpoints on a thread of their own.

SQLite's automatic checkpoint runs inside the commit that crosses its threshold: that commit
then copies megabytes into the database file and fsyncs it. Under Raft the store commits on
the Raft loop's behalf, so every few thousand launches a heartbeat was late by the length of a
checkpoint (100-300 ms on a busy disk) and followers started elections. Here the writer's own
checkpoints are switched off and a separate connection checkpoints passively (never blocking
the writer or readers) every `interval` seconds.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger("dkron.store")

WAL_SIZE_LIMIT = 16 * 1024 * 1024  # the WAL file is cut back to this after a checkpoint


class WalCheckpointer:
    """Keeps the WAL of the database at `path` short without the writer's help."""

    def __init__(self, path: str, interval: float = 1.0) -> None:
        self.path = path
        self.interval = interval
        self.checkpoints = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-checkpoint", daemon=True)

    @staticmethod
    def hand_over(writer: sqlite3.Connection) -> None:
        """Stop `writer` from checkpointing in its commits; this thread does it instead."""
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")

    def start(self) -> WalCheckpointer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def checkpoint_now(self, db: sqlite3.Connection) -> tuple[int, int, int]:
        """One passive checkpoint: (busy, frames in the WAL, frames copied)."""
        row = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.checkpoints += 1
        return int(row[0]), int(row[1]), int(row[2])

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error:
            log.exception("store: cannot open %s for checkpoints", self.path)
            return
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.checkpoint_now(db)
                except sqlite3.Error as exc:  # busy or closing: the next round tries again
                    log.debug("store: checkpoint skipped: %s", exc)
            try:
                self.checkpoint_now(db)
            except sqlite3.Error:
                pass
        finally:
            db.close()
