"""Seeded simulation of a cluster running jobs: Raft servers, job-running nodes, faults.

One seed drives everything. Servers run the real Raft core (`raftlog.RaftNode`) over
raftsim's crash-aware `SimStorage` (a crash loses what was not fsynced), and each applies
committed entries to its own real job `Store` (in-memory SQLite).

The simulation drives the shipped launch core and holds no launch decision of its own. Each
server owns a `launch.LeaderCore` reading its store; the driver hands it events and carries out
the actions it returns (`ready()`, then `advance()`), as the agent's driver does with threads:

- events: leadership (`lead(term)` / `step_down()`), the barrier (the commit index is of the
  current term and applied: `barrier_passed`), the failure detector's view (`set_members`,
  every tick, before `tick`), committed results (`committed`), answers of the nodes
  (`run_answered` / `run_failed` with UNREACHABLE, REFUSED or UNSURE, `launches_answered` /
  `launches_failed`, `running_answered` / `running_failed`), a node declared dead
  (`node_failed`), a run's end reported to the leader (`run_ended`, acknowledged only once
  committed), a user's run-now (`run_now`, forwarded by a follower to the leader);
- actions: `Commit` (propose through Raft), `SendRun` (`agent.run`), `StartLocal` (the leader
  runs it itself), `AskLaunches` (`agent.launches`, answered locally when the node is the server
  itself), `AskRunning` (`agent.running`), `Reply`, `Recorded`, `Note`.

Every node that runs jobs (agents, and the servers that run jobs beside them) keeps a
`launch.NodeCore`: it fences `agent.run` / `agent.launches` by term, answers which launch groups
it runs or whose end is not yet acknowledged and since when its process runs, and forgets
everything when it restarts; a stand-in's run carries the node it runs for (`for_node`). Runs
are fake processes: one starts at its scheduled time, lasts a seeded duration, fails sometimes
and sometimes hangs until a user stops it. A node reports a run's end to the server that asked,
then to the others (`report_order`), retrying with backoff until a leader acknowledges it; a
server that runs a job itself hands the end to its own core while it leads. A crashed node loses
its processes and its memory; a node crashed for `detect_ms` is declared dead (the failure
detector's verdict); partitions alone never declare a node dead.

Jobs cover every targeting mode: untagged (Dkron's rule: every node, servers that run jobs
included), `tag:1`, `tag:2`, `tag:N` with N above the eligible nodes, a job for the servers
that run jobs, `forbid` and `allow`, retries, a parent with a dependent child, `missed_runs`
`once` and `all`; users run jobs now through any server.

Phases: warm-up (a leader creates the jobs), chaos (leader and server crashes, crashes before
an fsync, restarts, partitions of every shape including an isolated leader and a leader cut
off from the other servers only, leader pauses (its process stops, the others elect a new
leader; on resuming it reads what queued for it, then runs its timers), node crashes and
restarts, lossy spells; every partition and spell heals after a while), quiet (network healed,
every node restarted, hanging runs stopped by the user), drain (the user disables every job:
what runs finishes and reports).

Checks (`check()`, raising `LaunchViolation` naming the seed); a launch is a (job, scheduled
time) for timed launches and a (job, launch group) for manual and dependent ones:
(a) at most one process per (launch, node, attempt), and never more than N distinct nodes run
    one attempt of a launch of a `:N` job;
(b) a stand-in (the node that runs an attempt whose node never got the request) is never a node
    that already had that launch; a job that runs on every node has no stand-ins: its attempt
    k > 1 runs on a node only after that node's own attempt k - 1 failed, and its attempt 1
    only on a node the launch was dispatched to;
(c) run-once jobs: every *covered* scheduled time T ran exactly once (one attempt-1 process,
    or none and a retry's process); T is covered when, for the whole window
    [T - lookahead - 200 ms, T + late_grace + 1000 ms], no lossy spell was on, a majority of
    servers was up and pairwise connected (both ways) and at least one agent was up and
    connected both ways to every server of that majority; after the drain no execution that
    started on a node before that node was declared dead is still "running", and none is
    running at all once every node is idle with nothing left to report; two launches of a
    `forbid` job never have processes alive at the same moment.
The same seed gives the same trace digest. `broken`
switches on a deliberately wrong driver so tests can show that each check can fail:
"dispatch_before_commit" (launch commits are taken as done at once, then proposed), "no_settle" (every fenced `agent.launches` is answered with
every open launch group, so a new leader settles nothing), "no_abandon" (neither the failure
detector's verdict nor reconciliation reaches the core), "standin_any_node" (the core is built
with a naive stand-in chooser: any live node the job selects but the unreachable one).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from raftsim import SimStorage

from dkron_pkg.dispatch import TargetError, parse_job_tags, select_targets
from dkron_pkg.launch import (
    AskLaunches,
    AskRunning,
    Commit,
    LaunchTiming,
    LeaderCore,
    NodeCore,
    Note,
    Recorded,
    Reply,
    SendRun,
    StartLocal,
)
from dkron_pkg.launch.actions import REFUSED, UNREACHABLE, UNSURE
from dkron_pkg.launch.leader import choose_standin
from dkron_pkg.launch.node import STALE_LEADER, report_order
from dkron_pkg.raft_messages import EntryKind, Message
from dkron_pkg.raftlog import Proposal, RaftConfig, RaftNode, Role
from dkron_pkg.store import Result, Store
from dkron_pkg.timefmt import format_rfc3339, ns_to_datetime

MS = 1_000_000
SECOND = 1_000_000_000
BASE_NS = 1_767_225_600 * SECOND  # the simulated clock starts on a whole second
BROKEN_MODES = ("dispatch_before_commit", "no_settle", "no_abandon", "standin_any_node")
# Targeting modes and features the jobs cover; `runs_<mode>` counts the processes of each.
MODES = (
    "every_node",
    "tag_1",
    "tag_2",
    "tag_over",
    "servers",
    "on_server",
    "local",
    "forbid",
    "allow",
    "retry",
    "dependent",
    "manual",
    "missed_once",
    "missed_all",
)
TIMED_CAUSES = ("schedule", "catchup")
# Notes of the core worth counting: a piece of their text and the statistic.
NOTE_STATS = (
    ("settled as failed", "settle_lost"),
    ("interrupted: running it now", "settle_dispatch_now"),
    ("settled as skipped", "settle_skipped"),
    ("could not ask", "settle_unasked"),
    ("instead", "standin_notes"),
    ("is not running on", "reconciled"),
    ("closing launch", "intents_expired"),
    ("scheduling without seeing", "armed_without_servers"),
    ("skipped:", "launch_refused"),
)


class LaunchViolation(AssertionError):
    """A launch property was broken; the message names the seed and the property."""


@dataclass
class LaunchSimConfig:
    """Knobs of one run (simulated milliseconds); `from_seed` varies the hostile ones."""

    servers: int = 3
    agents: int = 2
    job_servers: int = 1  # the first servers also run jobs (they are members with tags)
    warmup_ms: int = 1000
    chaos_ms: int = 4000
    quiet_ms: int = 4000
    drain_ms: int = 2500
    tick_ms: int = 20
    drop: float = 0.03  # message loss during a lossy spell (a fault); none outside them
    delay_min_ms: int = 1
    delay_max_ms: int = 6
    fault_every_ms: tuple[int, int] = (200, 1200)
    crash_before_fsync: float = 0.002
    detect_ms: int = 800
    late_grace_ms: int = 1500
    lookahead_ms: int = 400
    dispatch_lead_ms: int = 50
    rpc_timeout_ms: int = 300
    reconcile_ms: int = 1000
    retry_ms: int = 300  # unanswered settlement questions and run confirmations, again
    members_wait_ms: int = 100
    unknown_node_wait_ms: int = 3000
    snapshot_every: int = 60
    # A paused leader that, on resuming, acts on its timers before it reads what queued for it
    # sends runs with its old term; nodes refuse them by the newer term they saw, kept across
    # a restart (the agent writes it to disk). Half the seeds play it.
    paused_timers_first: bool = False
    # The `tag:2` job is `forbid`: a launch on two nodes whose start on one node was lost with
    # a leader change must keep the job busy while that node runs it (a new leader records the
    # runs nodes report). Half the seeds play it; otherwise that job is `allow`.
    forbid_multi_node: bool = False
    broken: str = ""
    raft: RaftConfig = field(
        default_factory=lambda: RaftConfig(
            trailing_entries=20, max_entries_per_message=64, max_inflight=8
        )
    )

    @classmethod
    def from_seed(cls, seed: int) -> LaunchSimConfig:
        rng = random.Random(seed ^ 0x1A7C)
        return cls(
            servers=rng.choice((3, 3, 3, 3, 3, 5)),
            agents=rng.choice((2, 2, 3)),
            job_servers=rng.choice((1, 2)),
            drop=rng.choice((0.01, 0.03, 0.1)),
            delay_max_ms=rng.choice((4, 10, 25)),
            paused_timers_first=rng.random() < 0.5,
            forbid_multi_node=rng.random() < 0.5,
        )

    def timing(self) -> LaunchTiming:
        return LaunchTiming(
            lookahead_ns=self.lookahead_ms * MS,
            dispatch_lead_ns=self.dispatch_lead_ms * MS,
            late_grace_ns=self.late_grace_ms * MS,
            reconcile_ns=self.reconcile_ms * MS,
            intent_expiry_ns=3600 * SECOND,
            settle_retry_ns=self.retry_ms * MS,
            unknown_node_wait_ns=self.unknown_node_wait_ms * MS,
            members_wait_ns=self.members_wait_ms * MS,
            confirm_retry_ns=self.retry_ms * MS,
        )


@dataclass
class Process:
    """One fake job process on a node (`end_ms` None while it runs)."""

    job: dict
    execution: dict
    report_to: str
    start_ms: int
    end_ms: int | None = None
    success: bool | None = None  # None: killed with its node, or still running


@dataclass
class Outcome:
    seed: int
    violations: list[str]
    trace_digest: str
    launches_checked: int
    runs: int
    covered_checked: int
    stats: Counter[str]


class SimNode:
    """A node: its fake processes, its side of the launch protocol and its unsent reports.

    Agents always run jobs; servers do when they are members of the job-running cluster."""

    def __init__(self, name: str, zone: str, role: str, runs_jobs: bool) -> None:
        self.name = name
        self.zone = zone
        self.role = role
        self.runs_jobs = runs_jobs
        self.alive = False
        self.incarnation = 0
        self.processes: dict[str, Process] = {}
        self.undelivered: dict[str, None] = {}  # ends not yet acknowledged, in order
        self.node = NodeCore(BASE_NS)

    def lose_processes(self, now_ms: int) -> None:
        """A crash: every process dies, nothing is remembered."""
        for proc in self.processes.values():
            if proc.end_ms is None:
                proc.end_ms = now_ms
        self.processes = {}
        self.undelivered = {}


class SimServer(SimNode):
    """A server: Raft core, disk, job store and its launch core."""

    def __init__(self, name: str, peers: list[str], zone: str, runs_jobs: bool) -> None:
        super().__init__(name, zone, "server", runs_jobs)
        self.peers = peers
        self.storage = SimStorage()
        self.raft: RaftNode | None = None
        self.store = Store(":memory:")
        self.core: LeaderCore | None = None
        self.proposals: dict[tuple[int, int], Callable[[list | None], None]] = {}
        self.leader = False
        self.barrier = False
        self.draining = False
        self.stalled_until = 0  # a paused process (a long GC pause, a stopped VM) until then
        self.launched: set[int] = set()  # launch groups this leadership committed


class SimAgent(SimNode):
    """A node that only runs jobs."""

    def __init__(self, name: str, zone: str) -> None:
        super().__init__(name, zone, "agent", True)
        self.alive = True


class TrustingView:
    """The store as the broken "dispatch_before_commit" leader sees it: with the launches it
    proposed open at once, whether they commit or not."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pending: dict[int, dict] = {}

    def open_intent(self, group: int) -> dict | None:
        return self.store.open_intent(group) or self.pending.get(group)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def naive_standin(
    job: dict, alive: list[dict], launch_nodes: set[str], region: str, rng: random.Random
) -> dict | None:
    """The broken chooser: any live node the job's tags select (the unreachable one is not in
    `alive`), even one that already runs this launch."""
    try:
        return select_targets(job["name"], job.get("tags"), alive, region, rng)[0]
    except TargetError:
        return None


class LaunchSim:
    """Runs one seed; `run()` returns an Outcome, `check()` raises on a violation."""

    def __init__(
        self, seed: int, cfg: LaunchSimConfig | None = None, verbose: bool = False
    ) -> None:
        self.seed = seed
        self.verbose = verbose
        self.notes: list[str] = []
        self.cfg = cfg or LaunchSimConfig.from_seed(seed)
        if self.cfg.broken and self.cfg.broken not in BROKEN_MODES:
            raise ValueError(f"unknown broken mode {self.cfg.broken!r}; use one of {BROKEN_MODES}")
        self.rng = random.Random(seed)
        self.now = 0
        self.seq = 0
        self.queue: list[tuple[int, int, str, Callable[[], None]]] = []
        self.trace = hashlib.blake2b(digest_size=16)
        zones = ["east", "west"]
        names = [f"s{i}" for i in range(1, self.cfg.servers + 1)]
        self.servers = {
            n: SimServer(n, names, zones[i % 2], i < self.cfg.job_servers)
            for i, n in enumerate(names)
        }
        self.agents = {
            f"a{i}": SimAgent(f"a{i}", zones[(i - 1) % 2]) for i in range(1, self.cfg.agents + 1)
        }
        self.nodes: dict[str, SimNode] = {**self.servers, **self.agents}
        self.runners = sorted(n for n, node in self.nodes.items() if node.runs_jobs)
        self.blocked: set[tuple[str, str]] = set()
        self.faults_on = False
        self.chaos = False
        self.lossy = False
        self.draining = False
        self.partition_id = 0
        self.calls: dict[int, tuple[str, int, Callable[[bool, Any], None]]] = {}
        self.call_seq = 0
        self.declared_dead: dict[str, int] = {}  # node -> time of the verdict
        self.declarations: list[tuple[str, int]] = []
        self._members: list[dict] | None = None
        self.mode_of: dict[str, tuple[str, ...]] = {}
        self.jobs = self._make_jobs()
        self.jobs_created_ms: int | None = None
        self.jobs_paused = False
        # What happened, for the checks.
        self.processes: list[Process] = []
        self.accepted: dict[tuple[str, int], list[tuple[str, int, int]]] = defaultdict(list)
        self.order = 0  # orders run requests and acceptances
        self.sends: list[tuple[str, int, int, str, int, bool]] = []
        self.recorded: dict[tuple[str, int, str, int], list[bool]] = defaultdict(list)
        self.recorded_ids: set[str] = set()
        self.intents: dict[int, dict] = {}  # every launch intent some server applied
        self.group_time: dict[tuple[str, int], int] = {}  # (job, group) -> its scheduled time
        self.slot_nodes: dict[tuple[int, str], set[str]] = defaultdict(set)
        self.health: list[tuple[int, bool]] = [(0, False)]
        self.stats: Counter[str] = Counter()
        self.violations: list[str] = []
        self.end_ms = 0
        self.drain_ms = 0

    # ----- event engine -----------------------------------------------------------------------

    def at(self, when: int, label: str, fn: Callable[[], None]) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (when, self.seq, label, fn))

    def run_until(self, end: int) -> None:
        while self.queue and self.queue[0][0] <= end:
            when, _seq, label, fn = heapq.heappop(self.queue)
            self.now = when
            self.trace.update(f"{when}|{label};".encode())
            fn()
        self.now = max(self.now, end)

    def note(self, text: str) -> None:
        """Keep a readable event line when debugging a seed (`verbose=True`)."""
        if self.verbose:
            self.notes.append(f"{self.now:6d} {text}")

    def now_ns(self) -> int:
        return BASE_NS + self.now * MS

    # ----- jobs ---------------------------------------------------------------------------------

    def _make_jobs(self) -> list[dict]:
        """One job per targeting mode, with seeded schedules, retries and concurrency."""
        rng = self.rng

        def job(name: str, tags: dict | None, policy: str, retries: int, forbid: bool, **kw):
            body = {
                "name": name,
                "schedule": f"@every {rng.choice((1, 2, 2, 3))}s",
                "executor": "shell",
                "executor_config": {"command": "true"},
                "missed_runs": policy,
                "missed_runs_limit": 3,
                "concurrency": "forbid" if forbid else "allow",
                "retries": retries,
                "tags": tags,
                **kw,
            }
            modes = ["forbid" if forbid else "allow"]
            if retries:
                modes.append("retry")
            if policy != "skip":
                modes.append(f"missed_{policy}")
            self.mode_of[name] = tuple(modes)
            return body

        jobs = [
            # run-once: one agent, retried on failure
            job("once", {"role": "agent:1"}, "once", 2, False),
            job("once2", {"role": "agent:1"}, "once", 1, False),
            # untagged: every node, servers that run jobs included
            job("every", None, rng.choice(("skip", "all")), rng.choice((0, 1, 2)), False),
            job(
                "pair",
                {"role": "agent:2"},
                "all",
                rng.choice((0, 1, 2)),
                rng.random() < 0.5 and self.cfg.forbid_multi_node,
            ),
            # more nodes asked for than there are in the zone
            job("over", {"zone": "east:9"}, rng.choice(("skip", "all")), rng.choice((0, 1)), False),
            job("server", {"role": "server:1"}, "all", rng.choice((0, 1)), rng.random() < 0.5),
            job("parent", {"role": "agent:1"}, "skip", 1, rng.random() < 0.5),
        ]
        child_tags = None if rng.random() < 0.5 else {"zone": "west:1"}
        jobs.append(
            job("child", child_tags, "skip", rng.choice((0, 1)), False, parent_job="parent")
        )
        jobs[-1]["schedule"] = ""
        targets = {
            "once": "tag_1",
            "once2": "tag_1",
            "every": "every_node",
            "pair": "tag_2",
            "over": "tag_over",
            "server": "servers",
            "parent": "tag_1",
            "child": "every_node" if child_tags is None else "tag_1",
        }
        for name, target in targets.items():
            extra = ("dependent",) if name == "child" else ()
            self.mode_of[name] = (target, *self.mode_of[name], *extra)
        return jobs

    def job(self, name: str) -> dict:
        return next(j for j in self.jobs if j["name"] == name)

    # ----- scenario -----------------------------------------------------------------------------

    def run(self) -> Outcome:
        cfg = self.cfg
        for server in self.servers.values():
            self._start_server(server)
        self.at(self.rng.randint(100, 300), "create-jobs", self._create_jobs)
        self.run_until(cfg.warmup_ms)
        self.faults_on = self.chaos = True
        self.at(self.now + self.rng.randint(*cfg.fault_every_ms), "fault", self._fault)
        self.at(self.now + self.rng.randint(500, 2000), "user-stop", self._user_stop)
        self.at(self.now + self.rng.randint(200, 1000), "user-run", self._user_run_now)
        self.run_until(cfg.warmup_ms + cfg.chaos_ms)
        self._quiesce()
        self.run_until(self.now + cfg.quiet_ms)
        self.drain_ms = self.now
        self.draining = True  # the user disables every job: what runs finishes and reports
        self._pause_jobs()
        for after in (0, 600, 1200):
            self.at(self.now + after, "user-stop", lambda: self._stop_all_hangs(0))
        self.run_until(self.now + cfg.drain_ms)
        self.end_ms = self.now
        return self.outcome()

    def _create_jobs(self) -> None:
        self._write_jobs(
            self.jobs, "create-jobs", lambda: setattr(self, "jobs_created_ms", self.now)
        )

    def _pause_jobs(self) -> None:
        paused = [{**j, "disabled": True} for j in self.jobs]
        self._write_jobs(paused, "pause-jobs", lambda: setattr(self, "jobs_paused", True))

    def _write_jobs(self, jobs: list[dict], label: str, on_done: Callable[[], None]) -> None:
        """A user writes jobs through the leader's API, again until they are committed."""
        leader = self.leader()
        if leader is None or not leader.core.armed:
            self.at(self.now + 50, label, lambda: self._write_jobs(jobs, label, on_done))
            return
        cmds = [{"op": "set_job", "job": j, "now_ns": self.now_ns()} for j in jobs]

        def done(results: list | None) -> None:
            if results is None or not all(r.ok for r in results):
                self.at(self.now + 50, label, lambda: self._write_jobs(jobs, label, on_done))
                return
            on_done()

        self.propose(leader, cmds, done)

    def _quiesce(self) -> None:
        self.faults_on = self.chaos = False
        self.blocked.clear()
        self.lossy = False
        for server in self.servers.values():
            if not server.alive:
                self._restart_server(server)
        for agent in self.agents.values():
            if not agent.alive:
                self._restart_agent(agent)
        self._note_health()
        self.at(self.now + 300, "user-stop", self._stop_all_hangs)
        self.at(self.now + 2000, "user-stop", self._stop_all_hangs)

    def leader(self) -> SimServer | None:
        best = None
        for server in self.servers.values():
            if not (server.alive and server.raft.role == Role.LEADER):
                continue
            if best is None or server.raft.term > best.raft.term:
                best = server
        return best

    # ----- network --------------------------------------------------------------------------

    def up(self, node: str) -> bool:
        return self.nodes[node].alive

    def incarnation(self, node: str) -> int:
        return self.nodes[node].incarnation

    def transmit(self, src: str, dst: str, label: str, fn: Callable[[], None]) -> None:
        """One message: lost if the link is cut or by chance, else delivered after a delay."""
        if (src, dst) in self.blocked or (self.lossy and self.rng.random() < self.cfg.drop):
            self.stats["lost"] += 1
            return
        delay = self.rng.randint(self.cfg.delay_min_ms, self.cfg.delay_max_ms)
        self.at(self.now + delay, label, fn)

    def call(
        self, src: str, dst: str, method: str, args: Any, on_reply: Callable[[bool, Any], None]
    ) -> None:
        """Node RPC: `on_reply(ok, value)` once, with "cannot reach", a timeout or an answer."""
        self.call_seq += 1
        cid = self.call_seq
        self.calls[cid] = (src, self.incarnation(src), on_reply)
        if not self.up(dst) or (src, dst) in self.blocked:
            wait = 1 if not self.up(dst) else self.cfg.rpc_timeout_ms
            self.at(
                self.now + wait,
                f"rpc-unreachable {cid}",
                lambda: self._answer(cid, False, "cannot reach"),
            )
            return
        dst_inc = self.incarnation(dst)

        def deliver() -> None:
            if not self.up(dst) or self.incarnation(dst) != dst_inc:
                return
            if until := self.stalled(dst):
                self.at(until, f"rpc-late {cid}", deliver)
                return

            def respond(ok: bool, value: Any) -> None:
                if self.up(dst) and self.incarnation(dst) == dst_inc:
                    self.transmit(
                        dst, src, f"rpc-reply {cid}", lambda: self._answer(cid, ok, value)
                    )

            self.handle_rpc(dst, method, args, respond)

        self.transmit(src, dst, f"rpc {cid} {method} {src}>{dst}", deliver)
        self.at(
            self.now + self.cfg.rpc_timeout_ms,
            f"rpc-timeout {cid}",
            lambda: self._answer(cid, False, "timeout"),
        )

    def _answer(self, cid: int, ok: bool, value: Any) -> None:
        entry = self.calls.get(cid)
        if entry is not None and (until := self.stalled(entry[0])):
            self.at(until, f"rpc-answer-late {cid}", lambda: self._answer(cid, ok, value))
            return
        entry = self.calls.pop(cid, None)
        if entry is None:
            return
        src, inc, on_reply = entry
        if self.up(src) and self.incarnation(src) == inc:
            on_reply(ok, value)

    def stalled(self, node: str) -> int:
        """Until when `node`'s process is paused, 0 when it runs: what reaches a paused server
        waits, and it acts on nothing until it resumes (first with its own timers)."""
        server = self.servers.get(node)
        if server is None or server.stalled_until <= self.now:
            return 0
        return server.stalled_until

    def handle_rpc(
        self, node: str, method: str, args: Any, respond: Callable[[bool, Any], None]
    ) -> None:
        target = self.nodes[node]
        if method.startswith("agent."):
            if target.runs_jobs:
                self._node_rpc(target, method, args, respond)
            else:
                respond(False, f"{node} runs no jobs")
        else:
            self._server_rpc(self.servers[node], method, args, respond)

    # ----- servers: the Raft driver ---------------------------------------------------------

    def _start_server(self, server: SimServer) -> None:
        state = server.storage.load()
        server.raft = RaftNode(
            server.name, server.peers, state, random.Random(self.rng.getrandbits(64)), self.cfg.raft
        )
        server.store = Store(":memory:")
        if state.snapshot is not None:
            server.store.restore(state.snapshot.data, state.snapshot.meta.index)
        server.core = self._new_core(server)
        server.alive = True
        server.stalled_until = 0
        server.proposals = {}
        server.leader = server.barrier = server.draining = False
        server.launched = set()
        if server.runs_jobs:
            server.node.forget()
            server.node.up_since_ns = self.now_ns()
            self._alive_again(server.name)
        inc = server.incarnation
        self.at(
            self.now + self.rng.randint(1, self.cfg.tick_ms),
            f"tick {server.name}",
            lambda: self._tick(server, inc),
        )

    def _new_core(self, server: SimServer) -> LeaderCore:
        """The server's launch core over its (new) store."""
        standin = naive_standin if self.cfg.broken == "standin_any_node" else choose_standin
        view = TrustingView(server.store) if self.cfg.broken == "dispatch_before_commit" else None
        return LeaderCore(
            server.name,
            view or server.store,
            random.Random(self.rng.getrandbits(64)),
            report_to=server.name,
            cluster=True,
            timing=self.cfg.timing(),
            standin=standin,
        )

    def _crash_server(self, server: SimServer) -> None:
        if not server.alive:
            return
        self.stats["server_crashes"] += 1
        if server.leader:
            self.stats["leader_crashes"] += 1
        server.alive = False
        server.incarnation += 1
        server.storage.crash()
        server.raft = None
        server.proposals = {}
        server.leader = server.barrier = False
        if server.runs_jobs:
            server.lose_processes(self.now)
            self._watch(server)
        self._note_health()

    def _restart_server(self, server: SimServer) -> None:
        if server.alive:
            return
        self._start_server(server)
        self._note_health()

    def _tick(self, server: SimServer, inc: int) -> None:
        if not server.alive or server.incarnation != inc:
            return
        if until := self.stalled(server.name):
            # On resuming, the server first reads what queued for it (a new leader's term),
            # then its timers run; `paused_timers_first` turns that round (see its comment).
            after = until if self.cfg.paused_timers_first else until + 1
            self.at(after, f"tick {server.name}", lambda: self._tick(server, inc))
            return
        server.raft.tick(self.now)
        self.process(server)
        if not server.alive:
            return
        self._drive_core(server)
        if server.alive:
            self.at(
                self.now + self.cfg.tick_ms, f"tick {server.name}", lambda: self._tick(server, inc)
            )

    def _drive_core(self, server: SimServer) -> None:
        """Each tick: the membership view, the barrier once per leadership, then the time."""
        now_ns = self.now_ns()
        core = server.core
        core.set_members(self.members(), now_ns)
        raft = server.raft
        if (
            core.term is not None
            and not server.barrier
            and raft.term_at(raft.commit_index) == raft.term
            and raft.applied_index >= raft.commit_index
        ):
            server.barrier = True
            others = [n for n in sorted(self.servers) if n != server.name]
            self.note(f"{server.name} barrier; intents {len(server.store.open_intents())}")
            core.barrier_passed(now_ns, others)
        core.tick(now_ns)
        self._drain(server)

    def _deliver_raft(self, msg: Message) -> None:
        server = self.servers.get(msg.dst)
        if server is None or not server.alive:
            return
        if until := self.stalled(msg.dst):
            self.at(until, f"raft-late >{msg.dst}", lambda: self._deliver_raft(msg))
            return
        server.raft.step(msg)
        self.process(server)

    def process(self, server: SimServer) -> None:
        """Persist, send, apply (raft's contract); a crash may strike before the fsync."""
        raft = server.raft
        callbacks: list[tuple[Callable[[list | None], None], list | None]] = []
        while server.alive and raft.has_ready():
            rd = raft.ready()
            if rd.snapshot is not None:
                server.storage.write_snapshot(rd.snapshot)
            server.storage.write_entries(rd.entries)
            if rd.hard_state is not None:
                server.storage.write_hard_state(rd.hard_state)
            if self.chaos and self.rng.random() < self.cfg.crash_before_fsync:
                self.stats["crash_before_fsync"] += 1
                self._crash_server(server)
                self.at(
                    self.now + self.rng.randint(100, 600),
                    f"restart {server.name}",
                    lambda: self._restart_server(server),
                )
                return
            server.storage.fsync()
            for msg in rd.messages:
                self.transmit(
                    server.name,
                    msg.dst,
                    f"raft {server.name}>{msg.dst}",
                    lambda m=msg: self._deliver_raft(m),
                )
            if rd.snapshot is not None:
                server.store.restore(rd.snapshot.data, rd.snapshot.meta.index)
            self._apply(server, rd.committed_entries, callbacks)
            raft.advance(rd)
            if raft.applied_index - raft.snapshot_index >= self.cfg.snapshot_every:
                server.storage.write_compaction(
                    raft.compact(raft.applied_index, server.store.snapshot())
                )
                server.storage.fsync()
        if not server.alive:
            return
        is_leader = raft.role == Role.LEADER
        if is_leader != server.leader:
            self._on_leadership(server, is_leader)
        inc = server.incarnation
        for cb, results in callbacks:
            self.at(
                self.now,
                f"commit {server.name}",
                lambda cb=cb, r=results: self._if_alive(server, inc, lambda: cb(r)),
            )

    def _apply(
        self,
        server: SimServer,
        entries: list,
        callbacks: list[tuple[Callable[[list | None], None], list | None]],
    ) -> None:
        """Apply a Ready's committed entries as one store transaction (group commit)."""
        data = [e for e in entries if e.kind == EntryKind.DATA]
        if not data:
            return
        batches = [json.loads(e.data)["c"] for e in data]
        commands = [c for b in batches for c in b]
        abandoning = any(c["op"] == "abandon_running" for c in commands)
        running = {e["id"]: e for e in server.store.running_executions()} if abandoning else {}
        results = server.store.apply_batch(commands, data[-1].index)
        self._observe(server, commands, results, running)
        at = 0
        for entry, cmds in zip(data, batches, strict=True):
            mine = results[at : at + len(cmds)]
            at += len(cmds)
            cb = server.proposals.pop((entry.index, entry.term), None)
            if cb is not None:
                callbacks.append((cb, mine))

    def _observe(
        self, server: SimServer, commands: list[dict], results: list, running_before: dict
    ) -> None:
        """Record what the store now holds for the checks, and hand job changes to the core
        (it re-arms a job's schedule when it is armed)."""
        for cmd, result in zip(commands, results, strict=True):
            if not result.ok:
                continue
            op = cmd["op"]
            if op == "set_job":
                server.core.jobs_changed(result.value, result.value["name"])
            elif op == "launch" and cmd["group"] not in self.intents:
                self.intents[cmd["group"]] = result.value
                if cmd.get("cause", "schedule") in TIMED_CAUSES:
                    self.group_time[(cmd["name"], cmd["group"])] = int(cmd["scheduled_ns"])
            elif op == "execution_done" and result.value is not None:
                self._recorded(result.value)
        if running_before:
            still = {e["id"] for e in server.store.running_executions()}
            for ex_id, ex in running_before.items():
                if ex_id not in still:
                    ended = server.store.execution(ex["job_name"], ex_id)
                    if ended is not None:
                        self._recorded(ended)

    def _recorded(self, ex: dict) -> None:
        if ex["id"] in self.recorded_ids:
            return
        self.recorded_ids.add(ex["id"])
        key = (ex["job_name"], int(ex["group"]), ex.get("node_name", ""), int(ex.get("attempt", 1)))
        self.recorded[key].append(bool(ex.get("success")))

    def _if_alive(self, server: SimServer, inc: int, fn: Callable[[], None]) -> None:
        if server.alive and server.incarnation == inc:
            fn()

    def propose(
        self, server: SimServer, cmds: list[dict], on_done: Callable[[list | None], None]
    ) -> None:
        """Commit commands through Raft; `on_done(results)` after applying, None on failure."""
        inc = server.incarnation
        result = server.raft.propose(json.dumps({"c": cmds}).encode()) if server.alive else None
        if not isinstance(result, Proposal):
            self.at(
                self.now + 1,
                f"refused {server.name}",
                lambda: self._if_alive(server, inc, lambda: on_done(None)),
            )
            return
        server.proposals[(result.index, result.term)] = on_done
        self.process(server)

    def _on_leadership(self, server: SimServer, leader: bool) -> None:
        """The core leads from this term (armed after the barrier) or steps down; proposals
        in flight get no answer."""
        self.note(f"{server.name} leader={leader} term={server.raft.term}")
        server.leader = leader
        server.barrier = False
        server.launched = set()
        if leader:
            server.core.lead(server.raft.term)
            self.stats["leaderships"] += 1
        else:
            server.core.step_down()
        lost, server.proposals = server.proposals, {}
        inc = server.incarnation
        for cb in lost.values():
            self.at(
                self.now,
                f"lost {server.name}",
                lambda cb=cb: self._if_alive(server, inc, lambda: cb(None)),
            )

    # ----- the launch core: events in, actions carried out ----------------------------------

    def members(self) -> list[dict]:
        """The failure detector's view: every node that runs jobs, "failed" once declared
        dead (servers that run no jobs are not in it)."""
        if self._members is None:
            self._members = [
                {
                    "Name": name,
                    "Tags": {
                        "role": node.role,
                        "zone": node.zone,
                        "region": "global",
                        "rpc_addr": name,
                    },
                    "statusText": "failed" if name in self.declared_dead else "alive",
                }
                for name in self.runners
                for node in (self.nodes[name],)
            ]
        return self._members

    def _feed(self, server: SimServer, event: Callable[[LeaderCore], None]) -> None:
        """Hand one event to the server's core and carry out what it decides."""
        if not server.alive:
            return
        event(server.core)
        self._drain(server)

    def _drain(self, server: SimServer) -> None:
        """Carry out the core's actions until it has none (events fed while carrying out, such
        as a node answering about itself, add theirs to the next round)."""
        if server.draining:
            return
        server.draining = True
        try:
            core, inc = server.core, server.incarnation
            while server.alive and server.incarnation == inc:
                actions = core.ready()
                if not actions:
                    return
                core.advance()
                for action in actions:
                    if not server.alive or server.incarnation != inc:
                        return
                    self._carry_out(server, core, action)
        finally:
            server.draining = False

    def _carry_out(self, server: SimServer, core: LeaderCore, action: Any) -> None:
        if isinstance(action, Commit):
            self._commit(server, core, action)
        elif isinstance(action, SendRun):
            self._send_run(server, core, action)
        elif isinstance(action, StartLocal):
            self._start_local(server, action)
        elif isinstance(action, AskLaunches):
            self._ask_launches(server, core, action)
        elif isinstance(action, AskRunning):
            self._ask_running(server, core, action)
        elif isinstance(action, Reply):
            action.reply(action.ok, action.value if action.ok else action.error)
        elif isinstance(action, Recorded):
            self.stats["ends_recorded"] += 1
            for f in action.follow_ups:
                if f["action"] == "retry":
                    self.stats["retries_scheduled"] += 1
                elif f["action"] == "run_dependent":
                    self.stats["dependents_launched"] += 1
        elif isinstance(action, Note):
            self.note(f"{server.name} {action.level}: {action.text}")
            for piece, stat in NOTE_STATS:
                if piece in action.text:
                    self.stats[stat] += 1
                    break

    def _commit(self, server: SimServer, core: LeaderCore, action: Commit) -> None:
        for cmd in action.commands:
            if cmd["op"] == "launch":
                server.launched.add(int(cmd["group"]))
        inc = server.incarnation

        def done(results: list | None) -> None:
            if server.incarnation == inc and server.core is core:
                self._feed(server, lambda c: c.committed(action.token, results, self.now_ns()))

        if self.cfg.broken == "dispatch_before_commit" and all(
            c["op"] == "launch" for c in action.commands
        ):
            # Broken: the leader takes its launches as committed before proposing them (its
            # core sees them as open launches at once, whatever the store would say).
            results = []
            for cmd in action.commands:
                intent = {
                    "group": cmd["group"],
                    "job_name": cmd["name"],
                    "scheduled_ns": cmd["scheduled_ns"],
                    "cause": cmd["cause"],
                    "attempt": 1,
                    "nodes": list(cmd["nodes"]),
                    "created_ns": cmd["now_ns"],
                }
                core.view.pending[cmd["group"]] = intent
                results.append(Result(True, status=202, value=intent))
            core.committed(action.token, results, self.now_ns())
            self.propose(server, action.commands, _ignore)
            return
        self.propose(server, action.commands, done)

    def _sent(
        self, server: SimServer, job: str, group: int, attempt: int, node: str, for_node: str
    ) -> None:
        """Log a run request. A stand-in is the first request of a node's run of a launch
        (`for_node`, as the core marks it) to another node; later attempts of that run there
        are its retries."""
        slot = for_node or node
        si = slot != node and node not in self.slot_nodes[(group, slot)]
        self.slot_nodes[(group, slot)].add(node)
        self.order += 1
        self.sends.append((job, group, attempt, node, self.order, si))
        self.stats["standins"] += si
        self.stats["retries_sent"] += attempt > 1
        if attempt == 1 and not si and group not in server.launched:
            self.stats["settle_resumed"] += 1  # a launch an earlier leadership committed
        self.note(f"{server.name} send {job} g={group} #{attempt} to {node}{' (stand-in)' * si}")

    def _send_run(self, server: SimServer, core: LeaderCore, action: SendRun) -> None:
        args = action.args
        job, group, attempt = args["job"]["name"], args["group"], args["attempt"]
        self._sent(server, job, group, attempt, action.node, str(args.get("for_node") or ""))

        def reply(ok: bool, value: Any) -> None:
            if server.core is not core:
                return
            now_ns = self.now_ns()
            if ok:
                self._feed(server, lambda c: c.run_answered(action.req, value, now_ns))
                return
            if value == "cannot reach":
                kind = UNREACHABLE
            elif str(value).startswith(STALE_LEADER):
                kind = REFUSED
            else:
                kind = UNSURE
            self.stats[f"run_{kind}"] += 1
            self._feed(server, lambda c: c.run_failed(action.req, kind, str(value), now_ns))

        self.call(server.name, action.addr, "agent.run", args, reply)

    def _start_local(self, server: SimServer, action: StartLocal) -> None:
        """The leader runs the launch itself and records its start."""
        job, group, attempt = action.job["name"], action.group, action.attempt
        self._sent(server, job, group, attempt, server.name, action.for_node)
        self.stats["local_runs"] += 1
        execution = self._start_run(
            server,
            action.job,
            action.group,
            action.attempt,
            action.scheduled_ns,
            server.name,
            action.for_node,
        )
        self._feed(server, lambda c: c.record_started(execution, self.now_ns()))

    def _ask_launches(self, server: SimServer, core: LeaderCore, action: AskLaunches) -> None:
        self.stats["asked_launches" if action.term is not None else "asked_after_failure"] += 1

        def answered(ok: bool, value: Any) -> None:
            if server.core is not core:
                return
            now_ns = self.now_ns()
            if ok:
                groups, since = value["groups"], value["up_since_ns"]
                runs = value.get("running", [])
                self._feed(
                    server, lambda c: c.launches_answered(action.ask, groups, since, now_ns, runs)
                )
            else:
                unreachable = value == "cannot reach"
                self._feed(server, lambda c: c.launches_failed(action.ask, unreachable, now_ns))

        if self.cfg.broken == "no_settle" and action.term is not None:
            # Broken: claim the node knows every open launch, so nothing is settled.
            groups = [i["group"] for i in server.store.open_intents()]
            answered(True, {"groups": groups, "up_since_ns": BASE_NS})
            return
        args = {"term": action.term}
        if action.node == server.name:
            self._node_rpc(server, "agent.launches", args, answered)
        else:
            self.call(server.name, action.addr, "agent.launches", args, answered)

    def _ask_running(self, server: SimServer, core: LeaderCore, action: AskRunning) -> None:
        def answered(ok: bool, value: Any) -> None:
            if server.core is not core:
                return
            now_ns = self.now_ns()
            if ok:
                self._feed(server, lambda c: c.running_answered(action.ask, value, now_ns))
            else:
                self._feed(server, lambda c: c.running_failed(action.ask, now_ns))

        if self.cfg.broken == "no_abandon":
            answered(False, "broken")
        elif action.node == server.name:
            self._node_rpc(server, "agent.running", None, answered)
        else:
            self.call(server.name, action.addr, "agent.running", None, answered)

    def _node_failed(self, node: str) -> None:
        """The failure detector declared `node` dead: the leader's core hears of it."""
        leader = self.leader()
        if leader is None or self.cfg.broken == "no_abandon":
            return
        if until := self.stalled(leader.name):
            self.at(until, f"detect-late {node}", lambda: self._node_failed(node))
            return
        self._feed(leader, lambda c: c.node_failed(node, self.now_ns()))

    def _server_rpc(
        self, server: SimServer, method: str, args: Any, respond: Callable[[bool, Any], None]
    ) -> None:
        if method == "leader.execution_done":
            if server.core.term is None:
                respond(False, "not the leader")
                return
            job, execution, stopped = args["job"], args["execution"], args["stopped"]
            self._feed(
                server, lambda c: c.run_ended(job, execution, stopped, respond, self.now_ns())
            )
        elif method == "leader.run_now":
            if server.core.term is None:
                respond(False, "not the leader")
                return
            self._feed(server, lambda c: c.run_now(args["name"], "manual", respond, self.now_ns()))
        else:
            respond(False, f"unknown method {method}")

    # ----- nodes that run jobs --------------------------------------------------------------

    def _node_rpc(
        self, node: SimNode, method: str, args: Any, respond: Callable[[bool, Any], None]
    ) -> None:
        if method in ("agent.run", "agent.launches"):
            refusal = node.node.admit(args.get("term"))
            if refusal is not None:
                self.stats["fenced"] += 1
                respond(False, refusal)
                return
        if method == "agent.run":
            respond(
                True,
                self._start_run(
                    node,
                    args["job"],
                    int(args["group"]),
                    int(args["attempt"]),
                    args.get("scheduled_ns"),
                    args["report_to"],
                    str(args.get("for_node") or ""),
                ),
            )
        elif method == "agent.launches":
            running = [p.execution["group"] for p in node.processes.values()]
            records = [p.execution for p in node.processes.values()]
            respond(True, node.node.launches(running, records))
        elif method == "agent.running":
            respond(True, [*node.processes, *node.undelivered])
        elif method == "agent.stop":
            proc = node.processes.get(args["id"])
            if proc is not None and proc.end_ms is None and proc.start_ms <= self.now:
                self._end_run(node, proc, success=False, stopped=True)
            respond(proc is not None, proc is not None)
        else:
            respond(False, f"unknown method {method}")

    def _start_run(
        self,
        node: SimNode,
        job: dict,
        group: int,
        attempt: int,
        scheduled_ns: int | None,
        report_to: str,
        for_node: str = "",
    ) -> dict:
        """Accept a run: answer with its execution now, start the process at its second. A
        stand-in's run (`for_node`) says whose run of the launch it is."""
        start_ms = self.now
        if scheduled_ns is not None:
            start_ms = max(self.now, (scheduled_ns - BASE_NS) // MS)
            self.group_time.setdefault((job["name"], group), scheduled_ns)
        started_ns = BASE_NS + start_ms * MS
        execution = {
            "id": f"{started_ns}-{node.name}-{group}-{attempt}",
            "job_name": job["name"],
            "group": group,
            "attempt": attempt,
            "node_name": node.name,
            "started_at": format_rfc3339(ns_to_datetime(started_ns)),
            "started_ns": started_ns,
            "scheduled_ns": scheduled_ns,
        }
        if for_node:
            execution["for_node"] = for_node
        self.order += 1
        self.accepted[(job["name"], group)].append((node.name, attempt, self.order))
        proc = Process(job, execution, report_to, start_ms)
        node.processes[execution["id"]] = proc
        inc = node.incarnation
        roll = self.rng.random()
        duration = self.rng.randint(30, 1800)

        def begin() -> None:
            if not node.alive or node.incarnation != inc or proc.end_ms is not None:
                return
            self.processes.append(proc)
            if roll < 0.05:
                self.stats["hangs"] += 1
                return  # hangs until a user stops it
            self.at(
                self.now + duration,
                f"end {execution['id']}",
                lambda: self._finish(node, inc, proc, roll > 0.3),
            )

        self.at(start_ms, f"start {execution['id']}", begin)
        return execution

    def _finish(self, node: SimNode, inc: int, proc: Process, success: bool) -> None:
        if until := self.stalled(node.name):
            self.at(until, "end-late", lambda: self._finish(node, inc, proc, success))
            return
        if node.alive and node.incarnation == inc and proc.end_ms is None:
            self._end_run(node, proc, success, stopped=False)

    def _end_run(self, node: SimNode, proc: Process, success: bool, stopped: bool) -> None:
        proc.end_ms = self.now
        proc.success = success
        node.processes.pop(proc.execution["id"], None)
        node.node.ended(proc.execution["group"])
        execution = dict(proc.execution)
        execution["finished_at"] = format_rfc3339(ns_to_datetime(self.now_ns()))
        execution["success"] = success
        execution["output"] = "ok" if success else "exit status 1"
        node.undelivered[execution["id"]] = None
        inc = node.incarnation
        if isinstance(node, SimServer) and node.core.term is not None:
            # It leads: its own core records the end; should that fail, report like any node.
            def reply(ok: bool, _value: Any) -> None:
                if node.alive and node.incarnation == inc:
                    if ok:
                        self._delivered(node, execution)
                    else:
                        self._report(node, inc, proc, execution, stopped, 0)

            job = proc.job
            self._feed(node, lambda c: c.run_ended(job, execution, stopped, reply, self.now_ns()))
            return
        self._report(node, inc, proc, execution, stopped, 0)

    def _report(
        self, node: SimNode, inc: int, proc: Process, execution: dict, stopped: bool, tries: int
    ) -> None:
        """Send the end to the server that asked, then the others, until one acknowledges."""
        if not node.alive or node.incarnation != inc:
            return
        order = report_order(proc.report_to, sorted(self.servers))
        args = {"job": proc.job, "execution": execution, "stopped": stopped}

        def attempt(i: int) -> None:
            if i >= len(order):
                delay = min(1000, 100 * 2**tries)
                self.at(
                    self.now + delay,
                    f"report-retry {execution['id']}",
                    lambda: self._report(node, inc, proc, execution, stopped, tries + 1),
                )
                return

            def reply(ok: bool, _value: Any) -> None:
                if ok:
                    self._delivered(node, execution)
                else:
                    attempt(i + 1)

            self.call(node.name, order[i], "leader.execution_done", args, reply)

        attempt(0)

    def _delivered(self, node: SimNode, execution: dict) -> None:
        """A leader acknowledged the end (it is committed): the node no longer claims it."""
        node.undelivered.pop(execution["id"], None)
        node.node.reported(int(execution["group"]))

    def _crash_agent(self, agent: SimAgent) -> None:
        if not agent.alive:
            return
        self.stats["agent_crashes"] += 1
        agent.alive = False
        agent.incarnation += 1
        agent.lose_processes(self.now)
        self._watch(agent)
        self._note_health()

    def _watch(self, node: SimNode) -> None:
        """The failure detector declares a node dead if it stays down for `detect_ms`."""
        inc = node.incarnation

        def detect() -> None:
            if node.alive or node.incarnation != inc:
                return
            self.declared_dead[node.name] = self.now
            self._members = None
            self.declarations.append((node.name, self.now))
            self.stats["declared_dead"] += 1
            self._node_failed(node.name)

        self.at(self.now + self.cfg.detect_ms, f"detect {node.name}", detect)

    def _alive_again(self, name: str) -> None:
        if self.declared_dead.pop(name, None) is not None:
            self._members = None

    def _restart_agent(self, agent: SimAgent) -> None:
        if agent.alive:
            return
        agent.alive = True
        agent.node.forget()
        agent.node.up_since_ns = self.now_ns()
        self._alive_again(agent.name)
        self._note_health()

    # ----- users and faults -----------------------------------------------------------------

    def _user_stop(self) -> None:
        """A user stops a hanging run through the API of some server (forwarded to its node)."""
        if self.faults_on:
            self.at(self.now + self.rng.randint(1000, 3000), "user-stop", self._user_stop)
        self._stop_all_hangs()

    def _stop_all_hangs(self, min_age_ms: int = 500) -> None:
        for name in self.runners:
            node = self.nodes[name]
            for proc in list(node.processes.values()):
                if proc.end_ms is None and proc.start_ms <= self.now - min_age_ms:
                    server = self.servers[self.rng.choice(sorted(self.servers))]
                    if server.alive and not self.stalled(server.name):
                        self.stats["user_stops"] += 1
                        self.call(
                            server.name,
                            node.name,
                            "agent.stop",
                            {"id": proc.execution["id"]},
                            _no_answer_needed,
                        )

    def _user_run_now(self) -> None:
        """A user runs a job now through the API of some server; a follower forwards it to
        the leader it knows."""
        if self.draining:
            return
        self.at(self.now + self.rng.randint(400, 1500), "user-run", self._user_run_now)
        name = self.rng.choice([j["name"] for j in self.jobs])
        server = self.servers[self.rng.choice(sorted(self.servers))]
        if not server.alive or self.stalled(server.name):
            return
        self.stats["manual_asked"] += 1

        def answered(ok: bool, value: Any) -> None:
            self.stats["manual_ok" if ok else "manual_refused"] += 1
            self.note(f"user run-now {name} via {server.name} -> {ok} {value if not ok else ''}")

        if server.core.term is not None:
            self._feed(server, lambda c: c.run_now(name, "manual", answered, self.now_ns()))
            return
        leader = server.raft.leader_id
        if leader is None or leader == server.name:
            answered(False, "no leader known")
            return
        self.stats["manual_forwarded"] += 1
        self.call(server.name, leader, "leader.run_now", {"name": name}, answered)

    def _fault(self) -> None:
        if not self.faults_on:
            return
        self.at(self.now + self.rng.randint(*self.cfg.fault_every_ms), "fault", self._fault)
        roll = self.rng.random()
        live = sorted(n for n, s in self.servers.items() if s.alive)
        if roll < 0.22:
            leader = self.leader()
            victim = leader.name if leader is not None and self.rng.random() < 0.7 else None
            if victim is None and live:
                victim = self.rng.choice(live)
            if victim is not None:
                server = self.servers[victim]
                self._crash_server(server)
                delay = self.rng.randint(200, 2000)
                self.at(self.now + delay, f"restart {victim}", lambda: self._restart_server(server))
        elif roll < 0.40:
            self._partition()
        elif roll < 0.70:
            agent = self.agents[self.rng.choice(sorted(self.agents))]
            if agent.alive:
                self._crash_agent(agent)
                delay = self.rng.randint(300, 2500)
                self.at(
                    self.now + delay, f"restart {agent.name}", lambda: self._restart_agent(agent)
                )
        elif roll < 0.80:
            leader = self.leader()
            if leader is not None:
                self._isolate(leader.name)
        elif roll < 0.90 and not self.lossy:
            self.lossy = True
            self.stats["lossy_spells"] += 1
            self._note_health()
            self.at(self.now + self.rng.randint(200, 1500), "lossy-end", self._end_lossy)
        elif roll < 0.95:
            leader = self.leader()
            if leader is not None and not self.stalled(leader.name):
                self._stall(leader)
        # else: a quiet interval

    def _stall(self, server: SimServer) -> None:
        """The leader's process pauses: the others elect a new leader meanwhile; when it
        resumes it acts on its own timers before it hears of the new term."""
        self.stats["stalls"] += 1
        server.stalled_until = self.now + self.rng.randint(300, 1200)
        self._note_health()
        self.at(server.stalled_until, "resume", self._note_health)

    def _end_lossy(self) -> None:
        self.lossy = False
        self._note_health()

    def _heal_later(self) -> None:
        """Partitions last a while, then heal (unless another fault replaced them)."""
        self.partition_id += 1
        pid = self.partition_id

        def heal() -> None:
            if self.partition_id == pid and self.blocked:
                self.blocked.clear()
                self.stats["heals"] += 1
                self._note_health()

        self.at(self.now + self.rng.randint(200, 1500), "heal", heal)

    def _partition(self) -> None:
        self.stats["partitions"] += 1
        self.blocked.clear()
        self._heal_later()
        nodes = sorted(self.nodes)
        style = self.rng.random()
        if style < 0.4:
            group = set(self.rng.sample(nodes, self.rng.randint(1, len(nodes) // 2)))
            for a in nodes:
                for b in nodes:
                    if (a in group) != (b in group):
                        self.blocked.add((a, b))
        elif style < 0.65:
            a, b = self.rng.sample(nodes, 2)
            self.blocked.add((a, b))
            if self.rng.random() < 0.5:
                self.blocked.add((b, a))
        elif style < 0.8:
            # The leader loses the other servers but not the nodes: a new leader is elected
            # while the old one still reaches the nodes (fencing by term refuses it).
            leader = self.leader()
            cut = leader.name if leader is not None else self.rng.choice(sorted(self.servers))
            self.stats["server_splits"] += 1
            for other in sorted(self.servers):
                if other != cut:
                    self.blocked.add((cut, other))
                    self.blocked.add((other, cut))
        else:
            self._isolate(self.rng.choice(nodes))
        self._note_health()

    def _isolate(self, victim: str) -> None:
        self.stats["isolations"] += 1
        self.blocked.clear()
        self._heal_later()
        for other in sorted(self.nodes):
            if other != victim:
                self.blocked.add((victim, other))
                self.blocked.add((other, victim))
        self._note_health()

    # ----- coverage for the run-once check --------------------------------------------------

    def healthy(self) -> bool:
        """A majority of servers up and pairwise connected, with an agent connected to all,
        and no lossy spell."""
        if self.lossy:
            return False
        live = [s for s, srv in self.servers.items() if srv.alive and not self.stalled(s)]

        def linked(a: str, b: str) -> bool:
            return (a, b) not in self.blocked and (b, a) not in self.blocked

        majority = len(self.servers) // 2 + 1
        for size in range(len(live), majority - 1, -1):
            for group in combinations(live, size):
                if all(linked(a, b) for a in group for b in group if a < b):
                    for agent in self.agents.values():
                        if agent.alive and all(linked(agent.name, s) for s in group):
                            return True
        return False

    def _note_health(self) -> None:
        state = self.healthy()
        if self.health[-1][1] != state:
            self.health.append((self.now, state))

    def covered(self, t_ms: int) -> bool:
        lo = t_ms - self.cfg.lookahead_ms - 200
        hi = t_ms + self.cfg.late_grace_ms + 1000
        for i, (since, state) in enumerate(self.health):
            until = self.health[i + 1][0] if i + 1 < len(self.health) else self.end_ms + 1
            if since <= hi and until > lo and not state:
                return False
        return True

    # ----- checks ---------------------------------------------------------------------------

    def launch_of(self, job: str, group: int, scheduled_ns: int | None = None) -> tuple[str, int]:
        """A timed launch is its scheduled time (two launch groups of one time are one launch
        run twice); a manual or dependent one is its launch group."""
        if scheduled_ns is None:
            scheduled_ns = self.group_time.get((job, group))
        return ("t", scheduled_ns) if scheduled_ns is not None else ("g", group)

    def outcome(self) -> Outcome:
        self.violations = self.find_violations()
        for proc in self.processes:
            name = proc.job["name"]
            for mode in self.mode_of.get(name, ()):
                self.stats[f"runs_{mode}"] += 1
            node = proc.execution["node_name"]
            if node in self.servers:
                self.stats["runs_on_server"] += 1
                self.stats["runs_local"] += proc.report_to == node
            intent = self.intents.get(int(proc.execution["group"]))
            if intent is not None and intent["cause"] == "manual":
                self.stats["runs_manual"] += 1
        launches = {
            (
                p.job["name"],
                self.launch_of(p.job["name"], p.execution["group"], p.execution["scheduled_ns"]),
            )
            for p in self.processes
        }
        return Outcome(
            self.seed,
            self.violations,
            self.trace.hexdigest(),
            len(launches),
            len(self.processes),
            self.stats["covered_checked"],
            self.stats,
        )

    def find_violations(self) -> list[str]:
        out: list[str] = []
        out.extend(self._check_at_most_once())
        out.extend(self._check_standins())
        out.extend(self._check_once_jobs())
        out.extend(self._check_nothing_left_running())
        out.extend(self._check_forbid())
        return [f"seed {self.seed}: {v}" for v in out]

    def _check_at_most_once(self) -> list[str]:
        """(a) One process per (launch, node, attempt); at most N nodes per attempt of a `:N`
        job's launch."""
        out = []
        per_node: Counter[tuple] = Counter()
        nodes: dict[tuple, set[str]] = defaultdict(set)
        for proc in self.processes:
            ex = proc.execution
            launch = self.launch_of(ex["job_name"], ex["group"], ex["scheduled_ns"])
            name, node, attempt = ex["job_name"], ex["node_name"], ex["attempt"]
            per_node[(name, launch, node, attempt)] += 1
            nodes[(name, launch, attempt)].add(node)
        for (name, launch, node, attempt), count in sorted(per_node.items()):
            if count > 1:
                out.append(
                    f"(a) {name} {_launch_text(launch)} attempt {attempt} ran {count} times "
                    f"on {node}"
                )
        for (name, launch, attempt), ran_on in sorted(nodes.items()):
            _, cardinality = parse_job_tags(self.job(name).get("tags"))
            if cardinality is not None and len(ran_on) > cardinality:
                out.append(
                    f"(a) {name} {_launch_text(launch)} attempt {attempt} ran on "
                    f"{len(ran_on)} nodes ({', '.join(sorted(ran_on))}), its tags allow "
                    f"{cardinality}"
                )
        return out

    def _check_standins(self) -> list[str]:
        """(b) Stand-ins only for nodes that did not have the launch; none for jobs that run on
        every node, whose retries stay on their node."""
        out = []
        accepted: dict[tuple, list[tuple[str, int, int]]] = defaultdict(list)
        for (name, group), runs in self.accepted.items():
            accepted[(name, self.launch_of(name, group))].extend(runs)
        for name, group, attempt, node, order, standin in self.sends:
            if not standin:
                continue
            launch = self.launch_of(name, group)
            had = [a for n, a, o in accepted[(name, launch)] if n == node and o < order]
            if had:
                out.append(
                    f"(b) {name} {_launch_text(launch)} attempt {attempt}: its stand-in {node} "
                    f"already had attempt {min(had)} of that launch"
                )
            if parse_job_tags(self.job(name).get("tags"))[1] is None:
                out.append(
                    f"(b) {name} runs on every node but {_launch_text(launch)} attempt "
                    f"{attempt} had a stand-in: {node}"
                )
        out.extend(self._check_every_node_retries())
        return out

    def _check_every_node_retries(self) -> list[str]:
        """(b) A job that runs on every node: attempt k > 1 on a node follows that node's own
        failed attempt k - 1; attempt 1 runs only where the launch was dispatched."""
        out = []
        dispatched: set[tuple] = set()
        for name, group, attempt, node, _when, standin in self.sends:
            if attempt == 1 and not standin:
                dispatched.add((name, self.launch_of(name, group), node))
        outcomes: dict[tuple, list[bool | None]] = defaultdict(list)
        for proc in self.processes:
            ex = proc.execution
            key = (
                ex["job_name"],
                self.launch_of(ex["job_name"], ex["group"]),
                ex["node_name"],
                ex["attempt"],
            )
            outcomes[key].append(proc.success)
        for (name, group), runs in self.accepted.items():
            for node, attempt, _t in runs:
                outcomes.setdefault((name, self.launch_of(name, group), node, attempt), [])
        for (name, group, node, attempt), results in self.recorded.items():
            outcomes[(name, self.launch_of(name, group), node, attempt)].extend(results)
        for proc in self.processes:
            ex = proc.execution
            name, node, attempt = ex["job_name"], ex["node_name"], ex["attempt"]
            if parse_job_tags(self.job(name).get("tags"))[1] is not None:
                continue
            launch = self.launch_of(ex["job_name"], ex["group"])
            if attempt == 1:
                if (name, launch, node) not in dispatched:
                    out.append(
                        f"(b) {name} {_launch_text(launch)}: attempt 1 ran on {node}, which "
                        "the launch was not dispatched to"
                    )
                continue
            before = outcomes.get((name, launch, node, attempt - 1))
            if before is None or (before and all(r is True for r in before)):
                what = "had none" if before is None else "succeeded"
                out.append(
                    f"(b) {name} {_launch_text(launch)}: attempt {attempt} ran on {node}, whose "
                    f"own attempt {attempt - 1} {what}"
                )
        return out

    def _check_once_jobs(self) -> list[str]:
        """(c) A covered scheduled time of a run-once job ran exactly once."""
        out = []
        if self.jobs_created_ms is None:
            return ["(c) the jobs were never created: no leader took writes"]
        first: Counter[tuple[str, int]] = Counter()
        retried: set[tuple[str, int]] = set()
        for proc in self.processes:
            ex = proc.execution
            launch = self.launch_of(ex["job_name"], ex["group"], ex["scheduled_ns"])
            if launch[0] != "t":
                continue
            if ex["attempt"] == 1:
                first[(ex["job_name"], launch[1])] += 1
            else:
                retried.add((ex["job_name"], launch[1]))
        created_ns = self.created_anchor_ns()
        settle_end = self.drain_ms - self.cfg.late_grace_ms - 1000
        for job in self.jobs:
            if job["missed_runs"] != "once":
                continue
            interval = int(job["schedule"].split()[1].rstrip("s"))
            anchor = created_ns.get(job["name"])
            if anchor is None:
                continue
            t = (anchor // SECOND + interval) * SECOND
            while (t - BASE_NS) // MS <= settle_end:
                t_ms = (t - BASE_NS) // MS
                if self.covered(t_ms):
                    self.stats["covered_checked"] += 1
                    key = (job["name"], t)
                    ran = first[key] + (1 if first[key] == 0 and key in retried else 0)
                    if ran != 1:
                        out.append(
                            f"(c) run-once {job['name']} at {_rel(t)} covered by a quorum "
                            f"but launched {ran} times"
                        )
                t += interval * SECOND
        return out

    def created_anchor_ns(self) -> dict[str, int]:
        leader = self.leader()
        if leader is None:
            return {}
        return {j["name"]: j["anchor_ns"] for j in leader.store.list_jobs()}

    def _check_nothing_left_running(self) -> list[str]:
        """(c) Nothing stale is "running" after the drain."""
        out = []
        leader = self.leader()
        if leader is None:
            return ["(c) no leader at the end of the quiet phase"]
        running = leader.store.running_executions()
        for ex in running:
            for node, when_ms in self.declarations:
                if ex["node_name"] == node and int(ex["started_ns"]) < BASE_NS + when_ms * MS:
                    out.append(
                        f"(c) execution {ex['id']} of {ex['job_name']} still running on "
                        f"{node}, which was declared dead at {when_ms} ms"
                    )
                    break
        quiet = all(
            not self.nodes[n].processes and not self.nodes[n].undelivered for n in self.runners
        )
        self.stats["ended_idle"] += quiet
        if quiet and running:
            ids = ", ".join(ex["id"] for ex in running[:3])
            out.append(f"(c) every node is idle but {len(running)} executions are running: {ids}")
        return out

    def _check_forbid(self) -> list[str]:
        """(c) Two launches of a `forbid` job never run at the same moment (the nodes of one
        launch do)."""
        out = []
        by_job: dict[str, list[Process]] = defaultdict(list)
        for proc in self.processes:
            if proc.job.get("concurrency") == "forbid":
                by_job[proc.job["name"]].append(proc)
        for name, procs in sorted(by_job.items()):
            procs.sort(key=lambda p: (p.start_ms, p.execution["id"]))
            alive: list[Process] = []
            for b in procs:
                alive = [p for p in alive if _end(p, self.end_ms) > b.start_ms]
                b_launch = self.launch_of(
                    b.job["name"], b.execution["group"], b.execution["scheduled_ns"]
                )
                for a in alive:
                    a_launch = self.launch_of(
                        a.job["name"], a.execution["group"], a.execution["scheduled_ns"]
                    )
                    if a_launch != b_launch:
                        out.append(
                            f"(c) forbid job {name}: run {b.execution['id']} started at "
                            f"{b.start_ms} ms while {a.execution['id']} ran "
                            f"({a.start_ms}-{_end(a, self.end_ms)} ms)"
                        )
                        break
                alive.append(b)
        return out

    def check(self) -> Outcome:
        """Run the seed and raise `LaunchViolation` with every broken property."""
        outcome = self.run()
        if outcome.violations:
            raise LaunchViolation("\n".join(outcome.violations))
        return outcome


def run_seed(seed: int, cfg: LaunchSimConfig | None = None) -> Outcome:
    """Play one seed and report its violations (empty when every property held)."""
    return LaunchSim(seed, cfg).run()


def _end(proc: Process, end_ms: int) -> int:
    return proc.end_ms if proc.end_ms is not None else end_ms + 1


def _rel(ns: int) -> str:
    return f"t={(ns - BASE_NS) // MS} ms"


def _launch_text(launch: tuple[str, int]) -> str:
    kind, value = launch
    return f"at {_rel(value)}" if kind == "t" else f"launch {value}"


def _ignore(_results: list | None) -> None:
    """Fire-and-forget commit."""


def _no_answer_needed(_ok: bool, _value: Any) -> None:
    """An RPC whose answer nobody waits for."""
