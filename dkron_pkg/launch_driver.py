"""Carries out the launch core's decisions with the real clock, threads, RPC and the committer.

One thread owns the `LeaderCore`: every event (a tick, a commit finished, a node answered, a
run ended, a user's request) is posted to it as a function and applied in order; the actions
the core returns are then carried out. Slow work (RPC calls, commits) never runs on that
thread: it goes to a pool or the committer and comes back as another event. The decisions
themselves live in `dkron_pkg.launch`; nothing here decides where or whether a run happens.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from dkron_pkg import logs
from dkron_pkg.launch import (
    AskLaunches,
    AskRunning,
    Commit,
    LeaderCore,
    NodeCore,
    Note,
    Recorded,
    Reply,
    SendRun,
    StartLocal,
)
from dkron_pkg.launch.actions import REFUSED, UNREACHABLE, UNSURE
from dkron_pkg.launch.node import STALE_LEADER
from dkron_pkg.rpc import RpcClient, RpcError
from dkron_pkg.store import Result

log = logging.getLogger("dkron.launch")

MEMBERS_REFRESH_SECONDS = 0.5  # the core's membership view is refreshed at least this often
IDLE_WAIT_SECONDS = 0.5
RPC_WORKERS = 32


@dataclass
class LaunchHost:
    """What the driver needs from the agent it serves."""

    node_name: str
    committer: Callable[[], Any]  # the current committer (it changes when Raft starts)
    members: Callable[[], list[dict]]
    running_ids: Callable[[], list[str]]  # executions this node runs or still has to report
    running_groups: Callable[[], list[int]]
    start_local: Callable[[dict, int, int, int | None, str], None]
    remote_started: Callable[[dict, str], None]
    recorded: Callable[[dict, dict, list[dict]], None]


def rpc_failure_kind(error: RpcError) -> str:
    """How a run request failed: never delivered, refused by fencing, or unknown."""
    text = str(error)
    if text.startswith("cannot reach"):
        return UNREACHABLE
    if STALE_LEADER in text:
        return REFUSED
    return UNSURE


class LaunchDriver:
    """The event loop around one `LeaderCore` and the node's `NodeCore`."""

    def __init__(self, core: LeaderCore, node: NodeCore, host: LaunchHost, rpc: RpcClient):
        self.core = core
        self.node = node
        self.host = host
        self.rpc = rpc
        self._events: queue.SimpleQueue[Callable[[int], None] | None] = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(RPC_WORKERS, thread_name_prefix="launch-rpc")
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._members_at = 0.0
        self._members_dirty = True

    # ----- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="launch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._events.put(None)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def post(self, event: Callable[[int], None]) -> None:
        """Apply `event(now_ns)` to the core on the launch thread."""
        self._events.put(event)

    def members_changed(self) -> None:
        self._members_dirty = True
        self._events.put(lambda now: None)

    def _loop(self) -> None:
        while True:
            wake = self.core.next_wakeup_ns()
            timeout = IDLE_WAIT_SECONDS
            if wake is not None:
                timeout = min(max((wake - time.time_ns()) / 1e9, 0.0), IDLE_WAIT_SECONDS)
            events: list[Callable[[int], None] | None] = []
            try:
                events.append(self._events.get(timeout=timeout) if timeout > 0 else None)
                while True:
                    events.append(self._events.get_nowait())
            except queue.Empty:
                pass
            try:
                self._step([e for e in events if e is not None])
            except Exception:  # a bug in one event must not stop launching
                log.exception("launch loop step failed")
                self.core.advance()
            if self._stopping.is_set() and any(e is None for e in events):
                return  # what was posted before `stop()` has been applied

    def _step(self, events: list[Callable[[int], None]]) -> None:
        now_ns = time.time_ns()
        if self._members_dirty or time.monotonic() - self._members_at > MEMBERS_REFRESH_SECONDS:
            self._members_dirty = False
            self._members_at = time.monotonic()
            self.core.set_members(self.host.members(), now_ns)
        for event in events:
            event(now_ns)
            self._carry_out(now_ns)
        self.core.tick(now_ns)
        self._carry_out(now_ns)

    # ----- actions --------------------------------------------------------------------------

    def _carry_out(self, now_ns: int) -> None:
        while True:
            actions = self.core.ready()
            self.core.advance()
            if not actions:
                return
            for action in actions:
                self._do(action, now_ns)

    def _do(self, action: Any, now_ns: int) -> None:
        if isinstance(action, Commit):
            self._commit(action)
        elif isinstance(action, SendRun):
            self._pool.submit(self._send_run, action)
        elif isinstance(action, StartLocal):
            logs.event("launch", job=action.job["name"], group=action.group, attempt=action.attempt)
            self.host.start_local(
                action.job, action.group, action.attempt, action.scheduled_ns, action.for_node
            )
        elif isinstance(action, AskLaunches):
            self._ask_launches(action)
        elif isinstance(action, AskRunning):
            self._ask_running(action)
        elif isinstance(action, Reply):
            if isinstance(action.reply, Future) and not action.reply.done():
                action.reply.set_result(
                    Result(action.ok, action.error, action.status, action.value)
                )
        elif isinstance(action, Recorded):
            self.host.recorded(action.job, action.execution, action.follow_ups)
        elif isinstance(action, Note):
            (log.warning if action.level == "warning" else log.info)("%s", action.text)

    def _commit(self, action: Commit) -> None:
        token = action.token

        def done(fut: Future) -> None:
            try:
                results = fut.result()
            except Exception:  # noqa: BLE001 - the committer logged it; the core hears None
                results = None
            self.post(lambda now: self.core.committed(token, results, now))

        try:
            self.host.committer().submit_async(action.commands).add_done_callback(done)
        except RuntimeError:  # the committer is closed: the agent is stopping
            self.post(lambda now: self.core.committed(token, None, now))

    def _send_run(self, action: SendRun) -> None:
        job = action.args["job"]
        logs.event(
            "launch",
            job=job["name"],
            group=action.args["group"],
            attempt=action.args["attempt"],
            node=action.node,
        )
        try:
            execution = self.rpc.call(action.addr, "agent.run", action.args, timeout=10)
        except RpcError as e:
            kind, reason = rpc_failure_kind(e), str(e)
            self.post(lambda now: self.core.run_failed(action.req, kind, reason, now))
            return
        self.host.remote_started(execution, action.addr)
        self.post(lambda now: self.core.run_answered(action.req, execution, now))

    def _ask_launches(self, action: AskLaunches) -> None:
        if action.node == self.host.node_name:
            answer = self.node.launches(self.host.running_groups())  # its own runs: recorded
            self.post(
                lambda now: self.core.launches_answered(
                    action.ask, answer["groups"], answer["up_since_ns"], now
                )
            )
            return

        def ask() -> None:
            args = {"term": action.term} if action.term is not None else {}
            try:
                answer = self.rpc.call(action.addr, "agent.launches", args, timeout=3)
                groups = [int(g) for g in answer["groups"]]
                up_since = int(answer["up_since_ns"])
                running = [ex for ex in answer.get("running") or [] if isinstance(ex, dict)]
            except RpcError as e:
                unreachable = str(e).startswith("cannot reach")
                self.post(lambda now: self.core.launches_failed(action.ask, unreachable, now))
                return
            except (KeyError, TypeError, ValueError):
                log.warning("%s answered which launches it ran with nonsense", action.node)
                self.post(lambda now: self.core.launches_failed(action.ask, False, now))
                return
            self.post(
                lambda now: self.core.launches_answered(action.ask, groups, up_since, now, running)
            )

        self._pool.submit(ask)

    def _ask_running(self, action: AskRunning) -> None:
        if action.node == self.host.node_name:
            ids = self.host.running_ids()
            self.post(lambda now: self.core.running_answered(action.ask, ids, now))
            return

        def ask() -> None:
            try:
                ids = [str(i) for i in self.rpc.call(action.addr, "agent.running", timeout=5)]
            except (RpcError, TypeError):
                self.post(lambda now: self.core.running_failed(action.ask, now))
                return
            self.post(lambda now: self.core.running_answered(action.ask, ids, now))

        self._pool.submit(ask)

    # ----- requests from the agent's other threads ------------------------------------------

    def request(self, event: Callable[[int, Future], None], timeout: float = 15.0) -> Result:
        """Post an event that answers a `Reply` and wait for the answer."""
        fut: Future = Future()
        self.post(lambda now: event(now, fut))
        try:
            return fut.result(timeout=timeout)
        except TimeoutError:
            return Result(False, "no answer from the launch loop in time: retry", 503)

    def run_now(self, name: str, cause: str) -> Result:
        return self.request(lambda now, fut: self.core.run_now(name, cause, fut, now))

    def run_ended(self, job: dict, execution: dict, stopped: bool) -> Result:
        """Commit a run's end through the core (this server leads) and wait for it."""
        return self.request(lambda now, fut: self.core.run_ended(job, execution, stopped, fut, now))
