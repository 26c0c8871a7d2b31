"""One shared thread that enforces cancels, timeouts and memory limits for every run.

A run thread only blocks on its own output and exit (no polling, so no added latency);
this thread wakes at the next deadline, every CANCEL_POLL seconds to look at cancel events,
and every MEM_SAMPLE seconds to sample process-tree memory with one /proc scan for all runs.
One thread for all runs keeps a burst of 1,000 jobs from starting 1,000 timer threads.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dkron_pkg import osdeps

CANCEL_POLL = 0.05
MEM_SAMPLE = 1.0

log = logging.getLogger(__name__)
_ids = itertools.count()


@dataclass(eq=False)
class Watch:
    """What to watch for one run and what to do when it trips (each callback fires once).

    on_mem receives the sampled RSS of the tree rooted at mem_pid when it exceeds mem_limit.
    """

    cancel: threading.Event
    on_cancel: Callable[[], None]
    deadline: float | None = None  # time.monotonic() value
    on_deadline: Callable[[], None] | None = None
    mem_pid: int | None = None
    mem_limit: int | None = None
    on_mem: Callable[[int], None] | None = None
    ident: int = field(default_factory=lambda: next(_ids))


class Watchdog:
    """Holds the watches and the one thread that checks them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._watches: dict[int, Watch] = {}
        self._thread: threading.Thread | None = None
        self._next_mem = 0.0
        self._wake_at = 0.0

    def add(self, watch: Watch) -> None:
        """Start watching; wakes the thread so a near deadline is not overslept."""
        with self._cond:
            self._watches[watch.ident] = watch
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="exec-watchdog", daemon=True
                )
                self._thread.start()
            idle = self._wake_at == float("inf")
            if idle or (watch.deadline is not None and watch.deadline < self._wake_at):
                self._cond.notify()

    def remove(self, watch: Watch) -> None:
        """Stop watching (the run ended)."""
        with self._cond:
            self._watches.pop(watch.ident, None)

    def _fire(self, watch: Watch, callback: Callable[[], None]) -> None:
        with self._cond:
            if self._watches.pop(watch.ident, None) is None:
                return  # the run already ended
        try:
            callback()
        except Exception:  # one bad callback must not stop the watchdog
            log.exception("watchdog callback failed")

    def _check(self, now: float) -> None:
        with self._cond:
            watches = list(self._watches.values())
        for w in watches:
            if w.cancel.is_set():
                self._fire(w, w.on_cancel)
            elif w.deadline is not None and w.deadline <= now and w.on_deadline is not None:
                self._fire(w, w.on_deadline)
        if now >= self._next_mem:
            self._next_mem = now + MEM_SAMPLE
            mem = [w for w in watches if w.mem_pid is not None and w.mem_limit is not None]
            if mem:
                usage = osdeps.trees_rss_bytes(w.mem_pid for w in mem if w.mem_pid is not None)
                for w in mem:
                    used = usage.get(w.mem_pid or 0, 0)
                    if w.mem_limit is not None and used > w.mem_limit and w.on_mem is not None:
                        on_mem = w.on_mem
                        self._fire(w, lambda on_mem=on_mem, used=used: on_mem(used))

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._watches:
                    self._wake_at = float("inf")
                    self._cond.wait()
            now = time.monotonic()
            self._check(now)
            with self._cond:
                wake = now + CANCEL_POLL
                for w in self._watches.values():
                    if w.deadline is not None:
                        wake = min(wake, w.deadline)
                self._wake_at = wake
                delay = wake - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)


WATCHDOG = Watchdog()
