"""The leader's launch protocol as a deterministic state machine.

Built like `raftlog.RaftNode`: the driver hands in events (leadership, the time, committed
results, answers from nodes, the membership view, a node declared dead, a run's end) and
collects actions with `ready()`, carries them out, then calls `advance()`. The core reads the
applied job store through `StoreView` (the driver applies committed entries to it) and never
reads a clock, starts a thread or opens a socket.

The rules it keeps, each found by the seeded launch simulation or a chaos run:
- a launch intent naming its nodes is committed before anything runs (up to `lookahead` early)
  and dispatched at its time; a new leader first applies everything its predecessor committed
  (the driver's barrier), sees another server in gossip, then settles the intents left open
  (`settle.settle`) after asking every live node which launches it runs or ran;
- every run request carries the leader's term; a node refuses an older term than one it saw;
- a request that was never delivered may go to a stand-in node, only for jobs that run on a
  limited number of nodes (`tag:N`) and never to a node that already has that launch; a job
  that runs on every node it selects has no stand-ins: its run on a node that cannot run it is
  a failed attempt of that node;
- a request that may have arrived is confirmed with its node before anything else; a node
  declared dead before confirming had a failed attempt (it may have started the run);
- retries follow the store's follow-ups while this leadership lasts, never sending the same
  attempt twice; runs recorded as running that their node no longer has are failed.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from random import Random
from typing import Any, Protocol

from dkron_pkg.dispatch import TargetError, parse_job_tags, select_targets
from dkron_pkg.launch import settle as settlement
from dkron_pkg.launch.actions import (
    REFUSED,
    UNREACHABLE,
    UNSURE,
    AskLaunches,
    AskRunning,
    Commit,
    Note,
    Recorded,
    Reply,
    SendRun,
    StartLocal,
)
from dkron_pkg.scheduler import SchedulerCore
from dkron_pkg.timefmt import ns_to_datetime

SECOND = 1_000_000_000
NOT_RUNNING = 2**63 - 1  # the "up since" of a node whose agent does not listen: after anything
DEAD = ("failed", "left")


@dataclass
class LaunchTiming:
    """The protocol's delays, in nanoseconds (the simulation shortens them)."""

    lookahead_ns: int = SECOND  # intents are committed this much ahead of their time
    dispatch_lead_ns: int = 250_000_000  # runs are handed out this early and wait there
    late_grace_ns: int = 5 * SECOND  # a scheduled time older than this was missed
    reconcile_ns: int = 5 * SECOND  # how often "running" executions are checked
    intent_expiry_ns: int = 600 * SECOND  # a launch with no run and no report closes after
    settle_retry_ns: int = SECOND  # unanswered nodes are asked again this often
    unknown_node_wait_ns: int = 30 * SECOND  # intents naming unknown nodes wait this long
    members_wait_ns: int = 10 * SECOND  # a new leader waits this long to see another server
    confirm_retry_ns: int = SECOND  # an unconfirmed run request is asked about again


class StoreView(Protocol):
    """What the core reads of the applied job store (`store.Store` provides it)."""

    def get_job(self, name: str) -> dict | None: ...
    def list_jobs(self) -> list[dict]: ...
    def open_intents(self) -> list[dict]: ...
    def open_intent(self, group: int) -> dict | None: ...
    def executions(self, job_name: str) -> list[dict]: ...
    def running_executions(self) -> list[dict]: ...


Standin = Callable[[dict, list[dict], set[str], str, Random], "dict | None"]


def choose_standin(
    job: dict, alive: list[dict], launch_nodes: set[str], region: str, rng: Random
) -> dict | None:
    """A node to run an attempt whose node never got the request, or None.

    Only jobs limited to `N` nodes by a `tag:N` have stand-ins, and never a node that already
    has this launch: a job that runs on every node it selects already runs on all of them.
    """
    _, cardinality = parse_job_tags(job.get("tags"))
    if cardinality is None:
        return None
    others = [m for m in alive if m["Name"] not in launch_nodes]
    try:
        return select_targets(job["name"], job.get("tags"), others, region, rng)[0]
    except TargetError:
        return None


@dataclass
class _Request:
    """A run request sent and not yet answered."""

    job_name: str
    group: int
    attempt: int
    node: str
    scheduled_ns: int | None
    sent_ns: int
    slot: str = ""  # the node a stand-in runs it for ("" for the node's own run)


@dataclass
class _Settlement:
    """The settling of the intents open when this leadership was armed."""

    groups: set[int]
    began_ns: int
    pending: set[str] = field(default_factory=set)
    answers: dict[str, tuple[set[int], int]] = field(default_factory=dict)
    unasked: set[str] = field(default_factory=set)
    retry_at: int | None = None
    heard: bool = False  # every live node answered (or failed to) once: scheduling may begin


class LeaderCore:
    """One server's launch decisions while it leads (and nothing while it does not)."""

    def __init__(
        self,
        node_name: str,
        view: StoreView,
        rng: Random,
        *,
        report_to: str = "",
        region: str = "global",
        cluster: bool = True,
        timing: LaunchTiming | None = None,
        standin: Standin = choose_standin,
    ):
        self.node_name = node_name
        self.view = view
        self.rng = rng
        self.report_to = report_to or node_name
        self.region = region
        self.cluster = cluster
        self.timing = timing or LaunchTiming()
        self.standin = standin
        self.term: int | None = None
        self._members: list[dict] = []
        self._actions: list[Any] = []
        self._seq = 0
        self._last_group = 0
        self._commits: dict[int, tuple[str, Any, int | None]] = {}
        self._quiet = False
        self._reset()

    def _reset(self) -> None:
        self.armed = False
        self._arm_after_ns: int | None = None
        self._other_servers: set[str] = set()
        self.sched = SchedulerCore(
            late_grace=timedelta(microseconds=self.timing.late_grace_ns // 1000)
        )
        self._ready: list[tuple[int, int, str]] = []
        self._chosen: dict[int, list[str]] = {}
        self._sent_to: dict[int, set[str]] = {}
        self._requests: dict[int, _Request] = {}
        self._asks: dict[int, tuple[str, Any]] = {}
        self._timers: list[tuple[int, int, str, Any]] = []
        self._retries_sent: set[tuple[int, int, str]] = set()
        self._launched: set[int] = set()  # launch groups this leadership committed itself
        self._settlement: _Settlement | None = None
        self._reconcile_at: int | None = None

    # ----- output ---------------------------------------------------------------------------

    def ready(self) -> list[Any]:
        """The actions decided since the last `advance()`, in order."""
        return list(self._actions)

    def advance(self) -> None:
        """The driver has taken the actions of `ready()`."""
        self._actions.clear()

    def next_wakeup_ns(self) -> int | None:
        """When `tick` has work next (None: only an event can give it work)."""
        if self.term is None or self._quiet:
            return None
        times: list[int] = []
        if not self.armed:
            if self._arm_after_ns is not None:
                times.append(self._arm_after_ns + self.timing.members_wait_ns)
            return min(times) if times else None
        nxt = self.sched.next_wakeup()
        if nxt is not None and self._may_schedule():
            times.append(int(nxt.timestamp() * SECOND) - self.timing.lookahead_ns)
        if self._ready:
            times.append(self._ready[0][0] - self.timing.dispatch_lead_ns)
        if self._timers:
            times.append(self._timers[0][0])
        if self._settlement is not None and self._settlement.retry_at is not None:
            times.append(self._settlement.retry_at)
        if self._reconcile_at is not None:
            times.append(self._reconcile_at)
        return min(times) if times else None

    def _emit(self, action: Any) -> None:
        self._actions.append(action)

    def _note(self, level: str, text: str) -> None:
        self._emit(Note(level, text))

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def _commit(self, kind: str, commands: list[dict], payload: Any = None) -> None:
        token = self._next()
        self._commits[token] = (kind, payload, self.term)
        self._emit(Commit(token, commands))

    # ----- leadership -----------------------------------------------------------------------

    def lead(self, term: int) -> None:
        """This server leads `term` (0 without Raft). Nothing is launched before
        `barrier_passed`: the store must first hold everything the old leader committed."""
        self.term = term
        self._reset()

    def step_down(self) -> None:
        """Leadership is lost: in-flight launches are left to the next leader's settlement."""
        self.term = None
        self._reset()

    def quiesce(self) -> None:
        """The agent is stopping: launch nothing new, but keep recording the ends of runs."""
        self._quiet = True

    def barrier_passed(self, now_ns: int, other_servers: Iterable[str] = ()) -> None:
        """Everything committed before this term is applied: arm once another server of
        `other_servers` is seen alive in gossip (or `members_wait` has passed), so that a
        server that restarted moments ago does not choose targets from an empty view."""
        if self.term is None or self.armed:
            return
        self._other_servers = set(other_servers) - {self.node_name}
        self._arm_after_ns = now_ns
        self._try_arm(now_ns)

    def _try_arm(self, now_ns: int) -> None:
        if self.armed or self._arm_after_ns is None:
            return
        if self._other_servers and not (self._alive_names() & self._other_servers):
            if now_ns - self._arm_after_ns < self.timing.members_wait_ns:
                return
            others = ", ".join(sorted(self._other_servers))
            self._note("warning", f"scheduling without seeing {others} in gossip")
        self.armed = True
        for job in self.view.list_jobs():
            self.sched.upsert(job)
        self._reconcile_at = now_ns + self.timing.reconcile_ns
        # Only what was open before this leadership is settled: what it commits itself is
        # already queued for dispatch.
        groups = {i["group"] for i in self.view.open_intents()} - self._launched
        if not self.cluster:
            self._settlement = _Settlement(groups, now_ns)
            # One server: its own runs of the previous process died with it.
            reason = "agent stopped while this execution was running (node restarted)"
            self._commit(
                "recover",
                [
                    {
                        "op": "abandon_running",
                        "node": self.node_name,
                        "now_ns": now_ns,
                        "reason": reason,
                    }
                ],
            )
            return
        # Every live node is asked even with nothing open: runs whose start was lost with the
        # old leader are recorded from their answers (see `_restore_starts`).
        self._settlement = _Settlement(groups, now_ns)
        self._ask_round(now_ns)

    def set_members(self, members: list[dict], now_ns: int) -> None:
        """The membership view (Dkron's member dicts: Name, Tags, statusText)."""
        self._members = list(members)
        if self.term is not None and not self.armed:
            self._try_arm(now_ns)

    def _alive(self) -> dict[str, dict]:
        return {m["Name"]: m for m in self._members if m.get("statusText") == "alive"}

    def _alive_names(self) -> set[str]:
        return set(self._alive())

    def _addr(self, node: str) -> str | None:
        """The RPC address of a member ("" for this node), None if gossip does not know it."""
        if node == self.node_name:
            return ""
        member = next((m for m in self._members if m["Name"] == node), None)
        if member is None:
            return None
        return member.get("Tags", {}).get("rpc_addr") or None

    # ----- jobs -----------------------------------------------------------------------------

    def jobs_changed(self, job: dict | None, name: str) -> None:
        """A committed job change was applied: re-arm (or drop) its schedule."""
        if not self.armed:
            return
        if job is None:
            self.sched.remove(name)
        else:
            self.sched.upsert(job)

    def next_for(self, name: str) -> Any:
        """The job's next scheduled time as this leader has it armed (None if not armed)."""
        return self.sched.next_for(name)

    # ----- the clock ------------------------------------------------------------------------

    def tick(self, now_ns: int) -> None:
        """Whatever is due at `now_ns`: arming, timers, settlement, reconciliation, launches."""
        if self.term is None or self._quiet:
            return
        if not self.armed:
            self._try_arm(now_ns)
            if not self.armed:
                return
        while self._timers and self._timers[0][0] <= now_ns:
            _, _, kind, what = heapq.heappop(self._timers)
            if kind == "retry":
                self._dispatch_retry(
                    what["job_name"],
                    what["group"],
                    what["attempt"],
                    what["node_name"],
                    now_ns,
                    what.get("slot", ""),
                )
            elif kind == "confirm":
                self._confirm(what, now_ns)
        s = self._settlement
        if s is not None and s.retry_at is not None and s.retry_at <= now_ns:
            self._ask_round(now_ns)
        if self._reconcile_at is not None and self._reconcile_at <= now_ns:
            self._reconcile_at = now_ns + self.timing.reconcile_ns
            self._reconcile(now_ns)
        self._schedule(now_ns)

    def _may_schedule(self) -> bool:
        """New launches wait until every live node has answered the first question of this
        leadership (or failed to): runs whose start was lost with the old leader are recorded
        from the answers first, so a `forbid` job still running somewhere is not launched
        again beside it."""
        s = self._settlement
        return not self.cluster or s is None or s.heard

    def _schedule(self, now_ns: int) -> None:
        if not self._may_schedule():
            return
        horizon = now_ns + self.timing.lookahead_ns
        nxt = self.sched.next_wakeup()
        if nxt is not None and int(nxt.timestamp() * SECOND) <= horizon:
            launches = self.sched.due(ns_to_datetime(horizon))
            if launches:
                commands = []
                for launch in launches:
                    scheduled_ns = int(launch.scheduled.timestamp()) * SECOND
                    commands.append(
                        {
                            "op": "launch",
                            "name": launch.job_name,
                            "scheduled_ns": scheduled_ns,
                            "group": self._new_group(now_ns),
                            "cause": launch.cause,
                            "now_ns": max(now_ns, scheduled_ns),
                            "nodes": self._choose(launch.job_name),
                        }
                    )
                self._commit("launches", commands, commands)
        while self._ready and self._ready[0][0] - self.timing.dispatch_lead_ns <= now_ns:
            scheduled_ns, group, name = heapq.heappop(self._ready)
            if group not in self._sent_to:  # queued twice (settled and committed): once
                self._dispatch(name, group, 1, scheduled_ns, now_ns)

    def _new_group(self, now_ns: int) -> int:
        self._last_group = max(now_ns, self._last_group + 1)
        return self._last_group

    def _choose(self, name: str) -> list[str]:
        """The nodes a launch goes to, recorded in its intent (empty: none fit)."""
        job = self.view.get_job(name)
        if job is None:
            return []
        try:
            targets = select_targets(name, job.get("tags"), self._members, self.region, self.rng)
        except TargetError:
            return []
        return [t["Name"] for t in targets]

    # ----- commits --------------------------------------------------------------------------

    def committed(self, token: int, results: list | None, now_ns: int) -> None:
        """A `Commit` finished: `results` are the store's results, None if it failed."""
        entry = self._commits.pop(token, None)
        if entry is None:
            return
        kind, payload, term = entry
        same_term = term is not None and term == self.term
        if kind == "place":
            if same_term:
                self._placed(payload, results, now_ns)
        elif kind == "ended":
            self._ended_committed(payload, results, same_term, now_ns)
        elif kind == "run_now":
            self._run_now_committed(payload, results, same_term, now_ns)
        elif not (same_term and results):
            return
        elif kind == "launches":
            for cmd, result in zip(payload, results, strict=True):
                if result.ok:
                    self._chosen[cmd["group"]] = cmd["nodes"]
                    heapq.heappush(self._ready, (cmd["scheduled_ns"], cmd["group"], cmd["name"]))
                else:
                    self._note("info", f"launch of {cmd['name']} skipped: {result.error}")
        elif kind == "recover":
            follow_ups = results[0].follow_ups
            self._follow_ups(follow_ups, now_ns)
            retried = {f["group"] for f in follow_ups if f["action"] == "retry"}
            groups = self._settlement.groups if self._settlement is not None else set()
            self._settlement = None
            intents = [i for i in self.view.open_intents() if i["group"] in groups]
            self._settle(intents, retried, None, now_ns)
        elif kind == "abandon":
            for result in results:
                self._follow_ups(result.follow_ups, now_ns)
        elif kind == "job_deleted":
            self.jobs_changed(None, payload)

    # ----- settlement of the launches an earlier leader or process left open ---------------

    def _ask_round(self, now_ns: int) -> None:
        """Ask every live node which launches it runs or ran, and when it started."""
        s = self._settlement
        if s is None:
            return
        s.pending, s.answers, s.unasked, s.retry_at = set(), {}, set(), None
        for name in sorted(self._alive()):
            addr = self._addr(name)
            if addr is None:
                continue
            ask = self._next()
            self._asks[ask] = ("settle", name)
            s.pending.add(name)
            self._emit(AskLaunches(ask, name, addr, self.term))
        if not s.pending:
            self._settle_round(now_ns)

    def launches_answered(
        self,
        ask: int,
        groups: Iterable[int],
        up_since_ns: int,
        now_ns: int,
        running: Iterable[dict] = (),
    ):
        """A node answered `AskLaunches` (with the records of the runs going on there)."""
        entry = self._asks.pop(ask, None)
        if entry is None or self.term is None:
            return
        purpose, what = entry
        known = {int(g) for g in groups}
        self._restore_starts(running)
        if purpose == "settle":
            self._settle_answer(what, (known, int(up_since_ns)), now_ns)
        elif purpose == "confirm":
            self._confirmed(what, known, int(up_since_ns), now_ns)
        elif purpose == "abandon":
            died = [
                ex["id"]
                for ex in self.view.running_executions()
                if ex.get("node_name") == what and int(ex.get("started_ns", 0)) < up_since_ns
            ]
            reason = f"node {what} restarted while this was running"
            self._abandon([{"id": i, "reason": reason} for i in died], now_ns)

    def _restore_starts(self, running: Iterable[dict]) -> None:
        """Record the runs a node says it runs that the store does not hold as running: their
        start was lost with an earlier leader (its commit never happened). Without it a
        `forbid` job would not be busy while they run. The store ignores a run already ended."""
        runs = [ex for ex in running if isinstance(ex, dict) and ex.get("id")]
        if not runs:
            return
        known = {ex["id"] for ex in self.view.running_executions()}
        lost = [ex for ex in runs if ex["id"] not in known]
        if lost:
            self._commit("started", [{"op": "execution_started", "execution": ex} for ex in lost])

    def launches_failed(self, ask: int, unreachable: bool, now_ns: int) -> None:
        """`AskLaunches` got no answer; `unreachable` when nothing listens at the address."""
        entry = self._asks.pop(ask, None)
        if entry is None or self.term is None:
            return
        purpose, what = entry
        if purpose == "settle":
            # Unreachable is not gone: a node cut off by a partition cannot be reached either,
            # and it may run one of these launches. It is asked again (or declared dead).
            self._note("warning", f"could not ask {what} which launches it ran")
            self._settle_answer(what, None, now_ns)
        elif purpose == "confirm":
            request: _Request = what
            if request.node not in self._alive_names():
                self._fail_request(
                    request, f"node {request.node} failed before confirming the run", now_ns
                )
            else:
                self._timer(now_ns + self.timing.confirm_retry_ns, "confirm", request)
        elif purpose == "abandon":
            reason = f"node {what} failed while this execution was running"
            self._abandon([{"node": what, "reason": reason}], now_ns)

    def _settle_answer(self, node: str, answer: tuple[set[int], int] | None, now_ns: int):
        s = self._settlement
        if s is None or node not in s.pending:
            return
        s.pending.discard(node)
        if answer is None:
            s.unasked.add(node)
        else:
            s.answers[node] = answer
        if not s.pending:
            self._settle_round(now_ns)

    def _settle_round(self, now_ns: int) -> None:
        """Settle the open intents whose recorded nodes all answered or are dead; the others
        wait for the next round (a node that cannot be asked may be running one of them). So
        do intents whose job selects a node that could not be asked: a stand-in, a retry on
        another node or a fresh choice may have run the launch on a node it does not name."""
        s = self._settlement
        if s is None:
            return
        s.heard = True
        intents = [i for i in self.view.open_intents() if i["group"] in s.groups]
        known: set[int] = set()
        for groups, _ in s.answers.values():
            known |= groups
        up_since = {node: since for node, (_, since) in s.answers.items()}
        dead = {m["Name"] for m in self._members if m.get("statusText") in DEAD}
        settled = set(up_since) | dead
        if now_ns - s.began_ns > self.timing.unknown_node_wait_ns:
            recorded = {n for i in intents for n in i.get("nodes") or []}
            settled = set(up_since) | (recorded - s.unasked)
        unrecorded = ["?"] if s.unasked else []
        ready = [
            i
            for i in intents
            if set(i.get("nodes") or unrecorded) | self._selected(i["job_name"], s.unasked)
            <= settled
        ]
        ready_groups = {i["group"] for i in ready}
        waiting = {i["group"] for i in intents} - ready_groups
        self._settle(ready, known, up_since, now_ns)
        if waiting:
            s.groups = waiting
            s.retry_at = now_ns + self.timing.settle_retry_ns
        else:
            self._settlement = None

    def _selected(self, job_name: str, nodes: set[str]) -> set[str]:
        """Those of `nodes` that the job's tags select (alive or not)."""
        job = self.view.get_job(job_name)
        if job is None or not nodes:
            return set()
        required, _ = parse_job_tags(job.get("tags"))
        return {
            m["Name"]
            for m in self._members
            if m["Name"] in nodes
            and m.get("Tags", {}).get("region", self.region) == self.region
            and all(m.get("Tags", {}).get(k) == v for k, v in required.items())
        }

    def _settle(
        self,
        intents: list[dict],
        known: set[int],
        up_since: dict[str, int] | None,
        now_ns: int,
    ) -> None:
        """Carry out `settle.settle` for these intents."""
        actions = settlement.settle(
            intents,
            self.view.get_job,
            self._group_executions,
            known,
            now_ns,
            self.timing.late_grace_ns,
            up_since,
        )
        for action in actions:
            if action.kind == settlement.RETRY:
                self._dispatch_retry(
                    action.job_name, action.group, action.attempt, action.node, now_ns, action.slot
                )
            elif action.kind == settlement.LOST:
                self._note("warning", f"launch of {action.job_name} settled as failed")
                self._record_failed_attempt(
                    action.job_name,
                    action.group,
                    action.attempt,
                    action.node,
                    action.scheduled_ns,
                    action.reason,
                    now_ns,
                    for_node=action.slot,
                )
            elif action.kind == settlement.REQUEUE:
                if action.nodes:  # else none was chosen: a fresh choice at dispatch
                    self._chosen[action.group] = list(action.nodes)
                heapq.heappush(self._ready, (action.scheduled_ns, action.group, action.job_name))
            elif action.kind == settlement.DISPATCH_NOW:
                self._note("info", f"launch of {action.job_name} interrupted: running it now")
                if action.nodes:
                    self._chosen[action.group] = list(action.nodes)
                self._dispatch(
                    action.job_name, action.group, action.attempt, action.scheduled_ns, now_ns
                )
            else:
                if action.reason == settlement.SKIPPED:
                    self._note("info", f"missed launch of {action.job_name} settled as skipped")
                self._close(action.group)

    def _group_executions(self, name: str, group: int) -> list[dict]:
        return [e for e in self.view.executions(name) if e["group"] == group]

    def _close(self, group: int) -> None:
        self._commit("close", [{"op": "close_intent", "group": group}])

    # ----- dispatch -------------------------------------------------------------------------

    def _dispatch(
        self, name: str, group: int, attempt: int, scheduled_ns: int | None, now_ns: int
    ) -> None:
        """Send attempt `attempt` of a launch to the nodes chosen for it that are alive. A
        chosen node that died since gets a stand-in if the job runs on `N` nodes (never a node
        that has this launch); a job that runs on every node it selects runs on the live ones.
        With no node chosen, the job's tags choose now."""
        job = self.view.get_job(name)
        chosen = self._chosen.pop(group, None)
        if job is None or (job.get("disabled") and scheduled_ns is not None):
            self._close(group)
            return
        if not chosen:
            try:
                targets = select_targets(
                    name, job.get("tags"), self._members, self.region, self.rng
                )
            except TargetError as e:
                self._note("warning", str(e))
                self._close(group)
                return
            self._place(job, group, attempt, scheduled_ns, [t["Name"] for t in targets], now_ns)
            return
        alive = self._alive()
        live = [n for n in chosen if n in alive]
        _, cardinality = parse_job_tags(job.get("tags"))
        standins: list[tuple[str, str]] = []
        dropped: list[str] = []
        for dead in [n for n in chosen if n not in alive]:
            others = [m for m in alive.values() if m["Name"] not in chosen]
            nodes = self._launch_nodes(name, group) | set(chosen) | {s for _, s in standins}
            standin = (
                self.standin(job, others, nodes, self.region, self.rng)
                if cardinality is not None
                else None
            )
            if standin is None:
                dropped.append(dead)
            else:
                standins.append((dead, standin["Name"]))
        if not live and not standins:
            self._note("warning", f"no target nodes alive to run job {name}")
            self._close(group)
            return
        if dropped:  # the launch does not wait for their runs (a `forbid` job stays free)
            self._commit(
                "drop", [{"op": "intent_nodes", "group": group, "nodes": [], "drop": dropped}]
            )
        if live:
            self._place(job, group, attempt, scheduled_ns, live, now_ns)
        for dead, standin_name in standins:
            self._note("info", f"node {dead} is not alive: running {name} on {standin_name}")
            self._place(job, group, attempt, scheduled_ns, [standin_name], now_ns, dead)

    def _place(
        self,
        job: dict,
        group: int,
        attempt: int,
        scheduled_ns: int | None,
        nodes: list[str],
        now_ns: int,
        for_node: str = "",
        origin: str = "",
        retry: bool = False,
    ) -> None:
        """Send the attempt to `nodes`; nodes the intent does not name yet are first added to
        it (committed), so that a later leader settling the launch asks them too. `origin` is
        the node a stand-in replaces (its attempt fails if the stand-in cannot be placed). A
        `retry` is noted in the intent before it is sent: a later leader then knows whether
        that attempt may have run (and been lost with its node) or was never sent."""
        intent = self.view.open_intent(group)
        if intent is None:
            self._not_placed(
                job["name"],
                group,
                attempt,
                scheduled_ns,
                nodes,
                for_node,
                origin,
                "the launch was closed meanwhile",
                now_ns,
            )
            return
        self._sent_to.setdefault(group, set()).update(nodes)
        new = [n for n in nodes if n not in (intent.get("nodes") or [])]
        if not new and not retry:
            for node in nodes:
                self._send(job, group, attempt, scheduled_ns, node, now_ns, for_node)
            return
        command: dict = {"op": "intent_nodes", "group": group, "nodes": new}
        if new and for_node and for_node not in new:
            command["standin_for"] = for_node  # the new nodes run `for_node`'s run
        if retry:
            slot = for_node or nodes[0]
            command["retry"] = {"slot": slot, "attempt": attempt, "node": nodes[0], "at": now_ns}
        self._commit(
            "place",
            [command],
            (job["name"], group, attempt, scheduled_ns, nodes, for_node, origin),
        )

    def _placed(self, payload: tuple, results: list | None, now_ns: int) -> None:
        name, group, attempt, scheduled_ns, nodes, for_node, origin = payload
        job = self.view.get_job(name)
        if job is None:
            return
        if not results or not results[0].ok:
            error = results[0].error if results else "not committed"
            self._not_placed(
                name,
                group,
                attempt,
                scheduled_ns,
                nodes,
                for_node,
                origin,
                f"the launch could not note where it goes: {error}",
                now_ns,
            )
            return
        for node in nodes:
            self._send(job, group, attempt, scheduled_ns, node, now_ns, for_node)

    def _not_placed(
        self,
        name: str,
        group: int,
        attempt: int,
        scheduled_ns: int | None,
        nodes: list[str],
        for_node: str,
        origin: str,
        reason: str,
        now_ns: int,
    ) -> None:
        """Nothing was sent: the attempt failed on the node it was for (retries apply)."""
        self._note("warning", f"launch {group} of {name} not sent to {', '.join(nodes)}: {reason}")
        if origin:  # a stand-in: the attempt it was to run failed on the node it replaced
            self._record_failed_attempt(
                name,
                group,
                attempt,
                origin,
                scheduled_ns,
                f"run not started: {reason}",
                now_ns,
                for_node=for_node,
            )

    def _send(
        self,
        job: dict,
        group: int,
        attempt: int,
        scheduled_ns: int | None,
        node: str,
        now_ns: int,
        for_node: str = "",
    ) -> None:
        self._sent_to.setdefault(group, set()).add(node)
        for_node = for_node if for_node != node else ""
        if node == self.node_name:
            self._emit(StartLocal(job, group, attempt, scheduled_ns, for_node))
            return
        addr = self._addr(node)
        req = self._next()
        request = _Request(job["name"], group, attempt, node, scheduled_ns, now_ns, for_node)
        self._requests[req] = request
        if addr is None:
            self.run_failed(req, UNREACHABLE, "its address is not known", now_ns)
            return
        args = {
            "job": job,
            "group": group,
            "attempt": attempt,
            "scheduled_ns": scheduled_ns,
            "report_to": self.report_to,
            "term": self.term,
        }
        if for_node:
            args["for_node"] = for_node
        self._emit(SendRun(req, node, addr, args))

    def run_answered(self, req: int, execution: dict, now_ns: int) -> None:
        """A node accepted a run request: record the run as started."""
        if self._requests.pop(req, None) is None:
            return
        self.record_started(execution, now_ns)

    def record_started(self, execution: dict, now_ns: int) -> None:
        """A run began (here or on the node that answered): commit its start. The store keeps
        a run whose end arrived first finished."""
        self._commit("started", [{"op": "execution_started", "execution": execution}])

    def run_failed(self, req: int, kind: str, reason: str, now_ns: int) -> None:
        """A run request failed: `kind` is UNREACHABLE, UNSURE or REFUSED (actions.py)."""
        request = self._requests.pop(req, None)
        if request is None or self.term is None:
            return
        if kind == REFUSED:
            return  # a newer leader has asked the node: it settles this launch
        if kind == UNSURE:
            self._confirm(request, now_ns)
            return
        self._not_delivered(request, reason, now_ns)

    def _confirm(self, request: _Request, now_ns: int) -> None:
        """The request may have arrived: ask the node before running the attempt anywhere."""
        addr = self._addr(request.node)
        if addr is None or request.node not in self._alive_names():
            self._fail_request(
                request, f"node {request.node} failed before confirming the run", now_ns
            )
            return
        ask = self._next()
        self._asks[ask] = ("confirm", request)
        self._emit(AskLaunches(ask, request.node, addr, self.term))

    def _confirmed(self, request: _Request, groups: set[int], up_since: int, now_ns: int):
        if request.group in groups:
            return  # it runs, or its end is on its way: its node reports it
        slot = request.slot or request.node
        if any(
            e.get("attempt", 1) == request.attempt and settlement.run_slot(e) == slot
            for e in self._group_executions(request.job_name, request.group)
        ):
            return  # it ran, and its end (or start) is already recorded
        if up_since > request.sent_ns:
            # It restarted since we asked: the run may have started and died with it.
            self._fail_request(
                request, f"node {request.node} restarted before confirming the run", now_ns
            )
            return
        self._not_delivered(request, "the node never got the request", now_ns)

    def _launch_nodes(self, job_name: str, group: int, slot: str = "") -> set[str]:
        """Every node this launch was meant for, sent to or recorded on, except the stand-ins
        placed for `slot`'s own run: they may run that run's next attempt."""
        nodes = set(self._sent_to.get(group, ()))
        nodes.update(self._chosen.get(group, ()))
        intent = self.view.open_intent(group)
        standins: dict = {}
        if intent is not None:
            nodes.update(intent.get("nodes") or [])
            standins = intent.get("standins") or {}
        executions = self._group_executions(job_name, group)
        nodes.update(e.get("node_name", "") for e in executions)
        if slot:
            other_runs = {
                e.get("node_name", "") for e in executions if settlement.run_slot(e) != slot
            }
            nodes -= {n for n, s in standins.items() if s == slot and n not in other_runs}
        return nodes

    def _not_delivered(self, request: _Request, reason: str, now_ns: int) -> None:
        """The node never got the request: a stand-in runs the attempt, or it failed there."""
        job = self.view.get_job(request.job_name)
        if job is None:
            return
        alive = [m for m in self._alive().values() if m["Name"] != request.node]
        # Every node tried for this attempt is left out, its slot's stand-ins too: the same
        # attempt never goes round in circles between unreachable nodes.
        nodes = self._launch_nodes(request.job_name, request.group) | {request.node}
        standin = self.standin(job, alive, nodes, self.region, self.rng)
        if standin is not None:
            self._note(
                "warning",
                f"node {request.node} unreachable ({reason}): running {job['name']} on "
                f"{standin['Name']} instead",
            )
            self._place(
                job,
                request.group,
                request.attempt,
                request.scheduled_ns,
                [standin["Name"]],
                now_ns,
                for_node=request.slot or request.node,
                origin=request.node,
            )
            return
        self._fail_request(
            request, f"could not start the run on node {request.node}: {reason}", now_ns
        )

    def _fail_request(self, request: _Request, reason: str, now_ns: int) -> None:
        """The attempt a run request carried failed on its node (retries apply)."""
        self._record_failed_attempt(
            request.job_name,
            request.group,
            request.attempt,
            request.node,
            request.scheduled_ns,
            reason,
            now_ns,
            for_node=request.slot,
        )

    def _record_failed_attempt(
        self,
        job_name: str,
        group: int,
        attempt: int,
        node: str,
        scheduled_ns: int | None,
        reason: str,
        now_ns: int,
        no_retry: bool = False,
        for_node: str = "",
    ) -> None:
        """Record the attempt as a failed execution on `node` (of `for_node`'s run when it
        stood in for that node); the job's retries apply unless `no_retry`."""
        job = self.view.get_job(job_name)
        if job is None:
            return
        failed = settlement.failed_attempt(
            job_name,
            node,
            group,
            attempt,
            now_ns,
            scheduled_ns,
            reason,
            execution_id=f"{now_ns}-{node}-{group}-{attempt}-f",
        )
        if for_node and for_node != node:
            failed["for_node"] = for_node
        self._commit(
            "ended",
            [
                {"op": "execution_started", "execution": failed},
                {"op": "execution_done", "execution": failed, "no_retry": no_retry},
            ],
            (job, failed, None),
        )

    # ----- ends, retries and follow-ups -----------------------------------------------------

    def run_ended(self, job: dict, execution: dict, stopped: bool, reply: Any, now_ns: int) -> None:
        """A run's end (from this node or a node's report): commit it, answer `reply` once
        committed, then follow the store's follow-ups (a stopped run is not retried)."""
        self._commit(
            "ended",
            [{"op": "execution_done", "execution": execution, "no_retry": stopped}],
            (job, execution, reply),
        )

    def _ended_committed(
        self, payload: tuple, results: list | None, same_term: bool, now_ns: int
    ) -> None:
        job, execution, reply = payload
        result = results[-1] if results else None
        if result is None or (not result.ok and result.status == 503):
            if reply is not None:
                error = result.error if result is not None else "not committed"
                self._emit(Reply(reply, False, f"report not committed: {error}", 503))
            return
        if reply is not None:
            self._emit(Reply(reply, True))
        if result.value is None:
            return  # a duplicate report, or a failure of an attempt that already ended
        self._emit(Recorded(job, execution, result.follow_ups))
        if same_term:
            self._follow_ups(result.follow_ups, now_ns)

    def _follow_ups(self, follow_ups: list[dict], now_ns: int) -> None:
        if self.term is None:
            return
        for f in follow_ups:
            if f["action"] == "retry":
                self._timer(now_ns + int(f["delay"] * SECOND), "retry", f)
            elif f["action"] == "run_dependent":
                self.run_now(f["job_name"], "dependent", None, now_ns)
            elif f["action"] == "delete_ephemeral":
                self._commit(
                    "job_deleted", [{"op": "delete_job", "name": f["job_name"]}], f["job_name"]
                )

    def _timer(self, due_ns: int, kind: str, what: Any) -> None:
        heapq.heappush(self._timers, (due_ns, self._next(), kind, what))

    def _dispatch_retry(
        self, job_name: str, group: int, attempt: int, node: str, now_ns: int, slot: str = ""
    ) -> None:
        """Retry `slot`'s run (the node's own, or the one a stand-in ran for it) on the node
        that failed if it is alive, else on a stand-in (never a node that has this launch
        already), else the attempt fails there without a further retry.

        An attempt already sent or recorded for that run is not sent again: a settlement and a
        retry timer can both ask for it.
        """
        job = self.view.get_job(job_name)
        if job is None:
            return
        slot = slot or node
        key = (group, attempt, slot)
        recorded = any(
            e.get("attempt", 1) >= attempt and settlement.run_slot(e) == slot
            for e in self._group_executions(job_name, group)
        )
        if key in self._retries_sent or recorded:
            return
        self._retries_sent.add(key)
        intent = self.view.open_intent(group)
        if intent is None:
            self._note("info", f"retry of {job_name} not run: its launch {group} is closed")
            return
        timed = intent["cause"] in settlement.TIMED_CAUSES  # manual and dependent runs: none
        scheduled_ns = intent["scheduled_ns"] if timed else None
        alive = self._alive()
        if node in alive:
            self._place(
                job, group, attempt, scheduled_ns, [node], now_ns, slot, origin=node, retry=True
            )
            return
        standin = self.standin(
            job,
            list(alive.values()),
            self._launch_nodes(job_name, group, slot),
            self.region,
            self.rng,
        )
        if standin is not None:
            self._place(
                job,
                group,
                attempt,
                scheduled_ns,
                [standin["Name"]],
                now_ns,
                slot,
                origin=node,
                retry=True,
            )
            return
        self._record_failed_attempt(
            job_name,
            group,
            attempt,
            node,
            scheduled_ns,
            f"retry not run: node {node} is not alive and no other node may run it",
            now_ns,
            no_retry=True,
            for_node=slot,
        )

    # ----- manual and dependent runs --------------------------------------------------------

    def run_now(self, name: str, cause: str, reply: Any, now_ns: int) -> None:
        """Launch `name` now (cause "manual" or "dependent"); answer `reply` with the result."""
        if self.term is None or self._quiet:
            if reply is not None:
                self._emit(Reply(reply, False, "not the leader any more: retry", 503))
            return
        job = self.view.get_job(name)
        if job is None:
            if reply is not None:
                self._emit(Reply(reply, False, f'job "{name}" not found', 404))
            return
        try:
            targets = select_targets(name, job.get("tags"), self._members, self.region, self.rng)
        except TargetError as e:
            if reply is not None:
                self._emit(Reply(reply, False, str(e), 404))
            return
        group = self._new_group(now_ns)
        self._launched.add(group)  # a run-now before arming is not settled as well
        command = {
            "op": "launch",
            "name": name,
            "scheduled_ns": now_ns,
            "group": group,
            "cause": cause,
            "now_ns": now_ns,
            "nodes": [t["Name"] for t in targets],
        }
        self._commit("run_now", [command], (command, reply))

    def _run_now_committed(
        self, payload: tuple, results: list | None, same_term: bool, now_ns: int
    ) -> None:
        command, reply = payload
        result = results[0] if results else None
        if result is None:
            if reply is not None:
                self._emit(Reply(reply, False, "run not started: not committed", 503))
            return
        if reply is not None:
            self._emit(Reply(reply, result.ok, result.error, result.status, result.value))
        if not result.ok:
            self._note(
                "info", f"{command['cause']} run of {command['name']} refused: {result.error}"
            )
            return
        if same_term:
            self._chosen[command["group"]] = command["nodes"]
            self._dispatch(command["name"], command["group"], 1, None, now_ns)

    # ----- reconciliation -------------------------------------------------------------------

    def _reconcile(self, now_ns: int) -> None:
        """Runs recorded as running that their node no longer has are failed (a node that
        restarted, or a lost report); launches with no run and no report for a long time are
        closed so they do not block `forbid` forever."""
        running = self.view.running_executions()
        running_groups = {int(ex["group"]) for ex in running}
        forgotten_before = now_ns - self.timing.intent_expiry_ns
        for intent in self.view.open_intents():
            if intent["created_ns"] < forgotten_before and intent["group"] not in running_groups:
                self._note(
                    "warning",
                    f"closing launch {intent['group']} of {intent['job_name']}: no outcome",
                )
                self._close(intent["group"])
        stale_before = now_ns - 2 * self.timing.reconcile_ns
        by_node: dict[str, list[str]] = {}
        for ex in running:
            if int(ex.get("started_ns", 0)) < stale_before:
                by_node.setdefault(ex["node_name"], []).append(ex["id"])
        status = {m["Name"]: m.get("statusText") for m in self._members}
        for node, ids in sorted(by_node.items()):
            addr = self._addr(node)
            gone = status.get(node) in DEAD or (
                node not in status
                and self._arm_after_ns is not None
                and now_ns - self._arm_after_ns > self.timing.unknown_node_wait_ns
            )
            if gone:
                # Declared dead (perhaps before this server led, so its verdict never came
                # here), or unknown to gossip long after this leadership began.
                reason = f"node {node} failed while this execution was running"
                self._abandon([{"id": i, "reason": reason} for i in ids], now_ns)
                continue
            if addr is None:
                continue
            ask = self._next()
            self._asks[ask] = ("running", (node, ids))
            self._emit(AskRunning(ask, node, addr))

    def running_answered(self, ask: int, running_ids: Iterable[str], now_ns: int) -> None:
        entry = self._asks.pop(ask, None)
        if entry is None or self.term is None:
            return
        node, ids = entry[1]
        running = set(running_ids)
        lost = [i for i in ids if i not in running]
        reason = f"execution lost: node {node} no longer runs it (restarted or its report was lost)"
        for execution_id in lost:
            self._note("warning", f"execution {execution_id} is not running on {node} any more")
        self._abandon([{"id": i, "reason": reason} for i in lost], now_ns)

    def running_failed(self, ask: int, now_ns: int) -> None:
        """Unreachable: the failure detector decides about that node."""
        self._asks.pop(ask, None)

    def node_failed(self, node: str, now_ns: int) -> None:
        """Gossip declared `node` failed: its running executions fail now (retries apply).

        A node killed and restarted at once can be declared failed after its new process is
        back: if it answers, only the runs that began before its new process are failed.
        """
        if self.term is None or node == self.node_name:
            return
        addr = self._addr(node)
        if not addr:
            reason = f"node {node} failed while this execution was running"
            self._abandon([{"node": node, "reason": reason}], now_ns)
            return
        ask = self._next()
        self._asks[ask] = ("abandon", node)
        self._emit(AskLaunches(ask, node, addr, None))

    def _abandon(self, which: list[dict], now_ns: int) -> None:
        if not which:
            return
        self._commit(
            "abandon",
            [{"op": "abandon_running", "now_ns": now_ns, **w} for w in which],
        )
