"""One thread starts every child process, each at its own instant, back to back.

When a thousand runs are due in the same second, a thousand run threads waking together and
each forking would queue for the interpreter between every spawn. Instead a run hands its
prepared spawn to this thread ahead of time and blocks on a lock (no interpreter time) until
its process exists; the spawner sleeps until the earliest instant and then starts every due
process in order, as fast as the machine allows (bench/burst_runner.py shows the floor).
"""

from __future__ import annotations

import heapq
import itertools
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

_SPIN_NS = 2_000_000  # the last stretch before an instant is waited in short sleeps
_CANCEL_SWEEP_NS = 50_000_000  # how soon a run stopped before its instant ends


@dataclass
class _Request:
    start_at_ns: int
    args: tuple
    kwargs: dict
    cancel: threading.Event | None = None
    done: threading.Event = field(default_factory=threading.Event)
    proc: subprocess.Popen[bytes] | None = None
    spawned_ns: int = 0
    error: BaseException | None = None
    withdrawn: bool = False


class Spawner:
    """Starts processes at their instants from one thread; see the module docstring."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[int, int, _Request]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._busy = 0
        self._quiet = threading.Event()  # set while no spawn is due or being made
        self._quiet.set()

    def bursting(self) -> bool:
        """Whether a spawn is due or being made right now."""
        return not self._quiet.is_set()

    def wait_quiet(self, timeout: float) -> None:
        """Block (without using the interpreter) until no spawn is due, at most `timeout` s.

        A run whose process has started calls this before its own bookkeeping, so the
        processes still due in the same burst are not kept waiting for the interpreter.
        """
        self._quiet.wait(timeout)

    def popen(
        self,
        *args: Any,
        start_at_ns: int | None = None,
        cancel: threading.Event | None = None,
        **kwargs: Any,
    ) -> tuple[subprocess.Popen[bytes], int] | None:
        """Start `subprocess.Popen(*args, **kwargs)` at `start_at_ns` (now when None).

        Returns the process and the time.time_ns() right after it was created, or None when
        `cancel` was set before the process was started. Popen's errors are raised here.
        """
        req = _Request(start_at_ns or 0, args, kwargs, cancel)
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="spawner", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (req.start_at_ns, next(self._seq), req))
            self._cond.notify()
        req.done.wait()  # one wake-up per run: a thousand waiters never poll
        if req.error is not None:
            raise req.error
        if req.proc is None:
            return None
        return req.proc, req.spawned_ns

    def _next_due(self, block: bool = True) -> _Request | None:
        """Pop the earliest request once it is due; with `block` False, None when none is due.

        Waking a run's thread costs the spawner the interpreter, so the runs started in a
        burst are woken together after it (their start times were taken at each spawn).
        """
        with self._cond:
            while True:
                if not block and not self._due_locked():
                    self._quiet.set()
                    return None
                if not self._heap:
                    self._quiet.set()
                    self._cond.wait()
                    continue
                at, _, req = self._heap[0]
                if req.withdrawn:
                    heapq.heappop(self._heap)
                    req.done.set()
                    continue
                wait_ns = at - time.time_ns()
                if wait_ns <= 0:
                    heapq.heappop(self._heap)
                    if req.cancel is not None and req.cancel.is_set():
                        req.done.set()
                        continue
                    self._busy += 1
                    self._quiet.clear()
                    return req
                self._quiet.set()
                if wait_ns > _SPIN_NS:
                    self._cond.wait(min(wait_ns - _SPIN_NS, _CANCEL_SWEEP_NS) / 1e9)
                    self._withdraw_cancelled()
                else:
                    self._cond.wait(wait_ns / 1e9)

    def _due_locked(self) -> bool:
        if not self._heap:
            return False
        at, _, req = self._heap[0]
        return req.withdrawn or at <= time.time_ns()

    def _withdraw_cancelled(self) -> None:
        """Runs stopped before their instant end now, without a process (lock held)."""
        for _, _, req in self._heap:
            if req.cancel is not None and req.cancel.is_set() and not req.withdrawn:
                req.withdrawn = True
                req.done.set()

    def _loop(self) -> None:
        started: list[_Request] = []  # handed back together once nothing else is due
        while True:
            req = self._next_due(block=not started)
            if req is None:
                for waiting in started:
                    waiting.done.set()
                started.clear()
                continue
            try:
                req.proc = subprocess.Popen(*req.args, **req.kwargs)
                req.spawned_ns = time.time_ns()
            except (OSError, ValueError, TypeError) as exc:  # the caller reports it
                req.error = exc
            finally:
                with self._cond:
                    self._busy -= 1
                started.append(req)


SPAWNER = Spawner()
