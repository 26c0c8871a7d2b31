"""Group commit for a single node: callers queue store commands; one thread applies them.

Everything queued while the previous batch was being written goes into the next batch, which is
one SQLite transaction and one fsync; each caller gets back the results of its own commands.
In a cluster the Raft replicator takes this role with the same `submit`/`submit_async`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

from dkron_pkg.store import Result

log = logging.getLogger("dkron.committer")
YIELD_MAX_SECONDS = 2.0


def yield_to_spawns() -> None:
    """While a burst of processes is being started, let the spawner have the interpreter.

    Bookkeeping can wait a moment (launch intents were committed ahead of time); a run
    starting late cannot be made up.
    """
    from dkron_pkg.executors.spawner import SPAWNER

    SPAWNER.wait_quiet(YIELD_MAX_SECONDS)


class Committer:
    """Group commit: callers queue commands; one thread applies whatever is queued as a batch."""

    def __init__(self, apply_batch: Callable[[list[dict]], list[Result]]):
        self._apply_batch = apply_batch
        self._queue: queue.Queue[tuple[list[dict], Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="committer", daemon=True)
        self._thread.start()

    def submit(self, commands: list[dict]) -> list[Result]:
        """Apply commands (durably) and return their results; blocks until committed."""
        return self.submit_async(commands).result()

    def submit_async(self, commands: list[dict]) -> Future:
        fut: Future = Future()
        self._queue.put((commands, fut))
        return fut

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < 1000:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            yield_to_spawns()
            commands = [c for cmds, _ in batch for c in cmds]
            try:
                results = self._apply_batch(commands)
            except Exception as e:  # disk full, I/O error: fail the callers, keep running
                log.exception("commit failed")
                for _, fut in batch:
                    fut.set_exception(e)
                continue
            pos = 0
            for cmds, fut in batch:
                fut.set_result(results[pos : pos + len(cmds)])
                pos += len(cmds)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
