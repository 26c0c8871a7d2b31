"""Runs on other nodes: the leader's side (live output, stop) and the running node's side
(reporting start, output and end back to the server that asked).

Protocol over node RPC (rpc.py):
  leader -> node   "agent.run"  {job, group, attempt, scheduled_ns, report_to}  -> execution
  leader -> node   "agent.stop" {id}                                           -> bool
  node -> leader   "leader.execution_output"  {id, job_name, chunk}  (one-way, every second)
  node -> leader   "leader.execution_done"    {job, execution, stopped}  (acknowledged; retried)
The leader commits starts and ends to the store exactly as for its own runs, so a run's record
does not depend on which node ran it.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dkron_pkg.executors.base import OutputTail
from dkron_pkg.rpc import RpcClient, RpcError

log = logging.getLogger("dkron.remote")

OUTPUT_PUSH_SECONDS = 1.0
REPORT_RETRY_SECONDS = (0.2, 0.5, 1, 1, 2, 2, 3, 5, 5, 10, 30, 60, 120, 300)


@dataclass
class RemoteRun:
    """A run the leader asked another node to do, as the leader sees it."""

    execution: dict
    node_addr: str
    output: OutputTail = field(default_factory=OutputTail)


class RemoteRuns:
    """Leader side: what other nodes are running for us, with their output so far."""

    def __init__(self, rpc: RpcClient):
        self.rpc = rpc
        self._runs: dict[str, RemoteRun] = {}
        self._lock = threading.Lock()

    def started(self, execution: dict, node_addr: str) -> None:
        with self._lock:
            if execution["id"] not in self._runs:
                self._runs[execution["id"]] = RemoteRun(dict(execution), node_addr)

    def output(self, execution_id: str, chunk: bytes) -> None:
        with self._lock:
            run = self._runs.get(execution_id)
        if run is not None:
            run.output.write(chunk)

    def finished(self, execution_id: str) -> None:
        with self._lock:
            self._runs.pop(execution_id, None)

    def forget_node(self, node_name: str) -> None:
        with self._lock:
            for ex_id in [
                k for k, r in self._runs.items() if r.execution["node_name"] == node_name
            ]:
                del self._runs[ex_id]

    def live(self, execution_id: str) -> dict | None:
        with self._lock:
            run = self._runs.get(execution_id)
        if run is None:
            return None
        ex = dict(run.execution)
        ex["output"] = run.output.getvalue().decode("utf-8", "replace")
        return ex

    def busy(self) -> list[dict]:
        with self._lock:
            ids = list(self._runs)
        return [ex for ex in (self.live(i) for i in ids) if ex is not None]

    def stop(self, execution_id: str) -> bool:
        with self._lock:
            run = self._runs.get(execution_id)
        if run is None:
            return False
        try:
            return bool(self.rpc.call(run.node_addr, "agent.stop", {"id": execution_id}))
        except RpcError as e:
            log.warning("cannot stop %s on %s: %s", execution_id, run.node_addr, e)
            return False


class Reporter:
    """Node side: sends a remote run's start, output and end to the server that asked for it.

    The end is retried with backoff until a server acknowledges it (`leaders()` gives the
    addresses to try, the requester first), so a run's result survives a leader change.
    """

    def __init__(
        self,
        rpc: RpcClient,
        leaders: Callable[[str], list[str]],
        output_of: Callable[[str], tuple[int, bytes] | None],
        stopping: threading.Event,
        delivered: Callable[[dict], None] = lambda execution: None,
    ):
        self.rpc = rpc
        self.leaders = leaders
        self.delivered = delivered  # told once a server acknowledged a run's end
        self.output_of = output_of
        self.stopping = stopping
        self._sent: dict[str, tuple[str, str, int]] = {}  # id -> (addr, job, bytes sent)
        self._undelivered: set[str] = set()  # finished runs whose end no server acknowledged
        self._lock = threading.Lock()
        threading.Thread(target=self._push_loop, name="output-push", daemon=True).start()

    def started(self, job: dict, execution: dict, report_to: str) -> None:
        """Begin pushing the run's output (the leader learnt of the start from its reply)."""
        with self._lock:
            self._sent[execution["id"]] = (report_to, job["name"], 0)

    def finished(self, job: dict, execution: dict, stopped: bool, report_to: str) -> None:
        with self._lock:
            self._sent.pop(execution["id"], None)
            self._undelivered.add(execution["id"])
        threading.Thread(
            target=self._deliver_end,
            args=(job, execution, stopped, report_to),
            name="report-end",
            daemon=True,
        ).start()

    def _deliver_end(self, job: dict, execution: dict, stopped: bool, report_to: str) -> None:
        args = {"job": job, "execution": execution, "stopped": stopped}
        for delay in (0.0, *REPORT_RETRY_SECONDS):
            if delay and self.stopping.wait(delay):
                break
            for addr in self.leaders(report_to):
                try:
                    self.rpc.call(addr, "leader.execution_done", args, timeout=10)
                    with self._lock:
                        self._undelivered.discard(execution["id"])
                    self.delivered(execution)
                    return
                except RpcError as e:
                    log.info("report of %s to %s failed: %s", execution["id"], addr, e)
        with self._lock:
            self._undelivered.discard(execution["id"])
        log.error("gave up reporting the end of %s; the leader settles it", execution["id"])

    def undelivered(self) -> list[str]:
        """Runs that ended here but whose report is still on its way: not lost, only late."""
        with self._lock:
            return list(self._undelivered)

    def _push_loop(self) -> None:
        while not self.stopping.wait(OUTPUT_PUSH_SECONDS):
            with self._lock:
                items = list(self._sent.items())
            for ex_id, (addr, job_name, sent) in items:
                state = self.output_of(ex_id)
                if state is None:
                    continue
                total, tail = state
                if total <= sent:
                    continue
                new = tail[-min(len(tail), total - sent) :]
                args = {"id": ex_id, "job_name": job_name, "chunk": base64.b64encode(new).decode()}
                try:
                    self.rpc.cast(addr, "leader.execution_output", args)
                except RpcError:
                    continue
                with self._lock:
                    if ex_id in self._sent:
                        self._sent[ex_id] = (addr, job_name, total)


def decode_chunk(args: dict[str, Any]) -> bytes:
    """The output bytes of an `execution_output` message (invalid base64 gives nothing)."""
    try:
        return base64.b64decode(args.get("chunk", ""), validate=True)
    except ValueError:
        return b""
