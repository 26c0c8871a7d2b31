"""Seeded simulation of a cluster running jobs: Raft servers, job-running agents, faults.

One seed drives everything. Servers run the real Raft core (`raftlog.RaftNode`) over
raftsim's crash-aware `SimStorage` (a crash loses what was not fsynced), and each applies
committed entries to its own real job `Store` (in-memory SQLite). The leader drives launches
the way `agent.Agent` does, with the launch protocol this simulation showed to be needed:

- on winning an election it waits until it has applied everything up to its own term's first
  commit (the barrier), rebuilds a `SchedulerCore` from the store and starts scheduling; then
  it settles the intents that were open when it took over with `launch_settle.settle`, after
  every live agent has said which launch groups it runs or ran and when it (re)started
  (`agent.groups`; while a live agent cannot be asked, settlement waits and asks again);
- it commits launch intents `lookahead_ms` ahead, each naming the agents chosen for it by
  `select_targets`, and dispatches attempt 1 `dispatch_lead_ms` early to those agents only;
- every `agent.run`/`agent.groups` call carries the leader's Raft term and an agent refuses a
  term older than one it has seen (fencing a deposed leader); a deposed leader drops its
  in-flight launches; an unanswered `agent.run` (the run may have started) is confirmed with
  the agent before anything else happens, and an unreachable one is recorded as a failed
  attempt so that the job's retries decide;
- it commits `execution_started` when an agent answers (unless the agent already reported
  that run's end) and `execution_done` when an agent reports an end (acknowledging only
  after the commit), follows the store's retry follow-ups while it keeps its leadership
  (never sending the same attempt twice), reconciles "running" executions with the agents every `reconcile_ms`, and commits
  `abandon_running` for a node declared dead.

Agents run fake jobs: a process starts at its scheduled time, lasts a seeded duration, fails
sometimes and sometimes hangs until a user stops it. An agent reports the end to the server
that asked, then to every other server, retrying with backoff until a leader acknowledges it.
A crashed agent loses its processes and its memory. A node crashed for `detect_ms` is
declared dead (the failure detector's verdict); partitions alone never declare a node dead.

Phases: warm-up (a leader creates the jobs), chaos (leader and server crashes, crashes before
an fsync, restarts, partitions of every shape including an isolated leader, agent crashes and
restarts, lossy spells; every partition and spell heals after a while), quiet (network healed,
every node restarted, hanging runs stopped by the user), drain (the user pauses scheduling so
every run ends and reports).

Checks (`check()`, raising `LaunchViolation` naming the seed):
(a) at most once: no (job, scheduled time) has two processes started for attempt 1;
(b) run-once jobs: every *covered* scheduled time T ran exactly once: one attempt-1
    process, or none and a retry's process (its first attempt never reached a process). T
    is covered when, for the whole window [T - lookahead - 200 ms, T + late_grace + 1000 ms],
    no lossy spell was on, a majority of servers was up and pairwise connected (both ways)
    and at least one agent was up and connected both ways to every server of that majority;
(c) after the drain no committed execution that started on a node before that node was
    declared dead is still "running", and none is running at all once every agent is idle
    with nothing left to report;
(d) a `forbid` job never has two processes alive at the same moment, on any agents.
The same seed gives the same trace digest. `broken` switches on a deliberately wrong driver
("dispatch_before_commit", "no_settle", "no_abandon": neither the failure detector's verdict
nor reconciliation fails a lost run) so tests can show that each check can fail.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import combinations
from typing import Any

from raftsim import SimStorage

from dkron_pkg import launch_settle
from dkron_pkg.dispatch import TargetError, select_targets
from dkron_pkg.raft_messages import EntryKind, Message
from dkron_pkg.raftlog import Proposal, RaftConfig, RaftNode, Role
from dkron_pkg.scheduler import SchedulerCore
from dkron_pkg.store import Store
from dkron_pkg.timefmt import format_rfc3339, ns_to_datetime

MS = 1_000_000
SECOND = 1_000_000_000
BASE_NS = 1_767_225_600 * SECOND  # the simulated clock starts on a whole second
BROKEN_MODES = ("dispatch_before_commit", "no_settle", "no_abandon")


class LaunchViolation(AssertionError):
    """A launch property was broken; the message names the seed and the property."""


@dataclass
class LaunchSimConfig:
    """Knobs of one run (simulated milliseconds); `from_seed` varies the hostile ones."""

    servers: int = 3
    agents: int = 2
    jobs: int = 5
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
    snapshot_every: int = 60
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
            drop=rng.choice((0.01, 0.03, 0.1)),
            delay_max_ms=rng.choice((4, 10, 25)),
        )


@dataclass
class Process:
    """One fake job process on an agent (`end_ms` None while it runs)."""

    job: dict
    execution: dict
    report_to: str
    start_ms: int
    end_ms: int | None = None


@dataclass
class Outcome:
    seed: int
    violations: list[str]
    trace_digest: str
    launches_checked: int
    runs: int
    covered_checked: int
    stats: Counter[str]


class SimServer:
    """A server: Raft core, disk, job store, and the leader's driver state."""

    def __init__(self, name: str, peers: list[str]) -> None:
        self.name = name
        self.peers = peers
        self.storage = SimStorage()
        self.alive = False
        self.raft: RaftNode | None = None
        self.store = Store(":memory:")
        self.proposals: dict[tuple[int, int], Callable[[list | None], None]] = {}
        self.leader = False
        self.scheduling = False
        self.core = SchedulerCore()
        self.ready: list[tuple[int, int, str]] = []
        self.retries_sent: set[tuple[int, int]] = set()
        self.ended: set[str] = set()  # executions whose end an agent reported to this leader
        self.incarnation = 0
        self.reconcile_at = 0


class SimAgent:
    """A job-running node: its processes and what it still has to report."""

    def __init__(self, name: str, zone: str) -> None:
        self.name = name
        self.zone = zone
        self.alive = True
        self.incarnation = 0
        self.processes: dict[str, Process] = {}
        self.recent_groups: list[int] = []
        self.undelivered: set[str] = set()
        self.fence = 0  # the highest leader term that asked this agent anything
        self.up_since_ns = 0


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
        names = [f"s{i}" for i in range(1, self.cfg.servers + 1)]
        self.servers = {n: SimServer(n, names) for n in names}
        zones = ["east", "west"]
        self.agents = {
            f"a{i}": SimAgent(f"a{i}", zones[(i - 1) % 2]) for i in range(1, self.cfg.agents + 1)
        }
        self.blocked: set[tuple[str, str]] = set()
        self.faults_on = False
        self.chaos = False
        self.lossy = False
        self.draining = False
        self.partition_id = 0
        self.calls: dict[int, tuple[str, int, Callable[[bool, Any], None]]] = {}
        self.call_seq = 0
        self.declared_dead: dict[str, int] = {}  # node -> time of the verdict
        self.jobs = self._make_jobs()
        self.jobs_created_ms: int | None = None
        self.launch_log: list[tuple[str, int | None, int, int, str, int]] = []
        self.processes: list[Process] = []
        self.health: list[tuple[int, bool]] = [(0, False)]
        self.stats: Counter[str] = Counter()
        self.violations: list[str] = []
        self.end_ms = 0
        self.drain_ms = 0
        self.declarations: list[tuple[str, int]] = []

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
        policies = ["once", "skip", "once", "all", "once", "skip", "all", "once"]
        jobs = []
        for i in range(self.cfg.jobs):
            policy = policies[i % len(policies)]
            zone_tag = self.rng.random() < 0.25 and policy != "once"
            forbid = self.rng.random() < 0.5
            jobs.append(
                {
                    "name": f"job{i}",
                    "schedule": f"@every {self.rng.choice((1, 1, 2, 3))}s",
                    "executor": "shell",
                    "executor_config": {"command": "true"},
                    "missed_runs": policy,
                    "missed_runs_limit": 3,
                    "concurrency": "forbid" if forbid and policy != "once" else "allow",
                    "retries": self.rng.choice((0, 1, 2)) if policy != "once" else 2,
                    "tags": {"zone": "east:1"} if zone_tag else {"role": "agent:1"},
                }
            )
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
        self.run_until(cfg.warmup_ms + cfg.chaos_ms)
        self._quiesce()
        self.run_until(self.now + cfg.quiet_ms)
        self.drain_ms = self.now
        self.draining = True  # the user pauses scheduling: what runs finishes and reports
        for after in (0, 600, 1200):
            self.at(self.now + after, "user-stop", lambda: self._stop_all_hangs(0))
        self.run_until(self.now + cfg.drain_ms)
        self.end_ms = self.now
        return self.outcome()

    def _create_jobs(self) -> None:
        leader = self.leader()
        if leader is None or not leader.scheduling:
            self.at(self.now + 50, "create-jobs", self._create_jobs)
            return
        cmds = [{"op": "set_job", "job": j, "now_ns": self.now_ns()} for j in self.jobs]

        def done(results: list | None) -> None:
            if results is None or not all(r.ok for r in results):
                self.at(self.now + 50, "create-jobs", self._create_jobs)
                return
            self.jobs_created_ms = self.now
            for server in self.servers.values():
                if server.alive and server.scheduling:
                    for result in results:
                        server.core.upsert(result.value)

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
        server = self.servers.get(node)
        if server is not None:
            return server.alive
        return self.agents[node].alive

    def incarnation(self, node: str) -> int:
        server = self.servers.get(node)
        return server.incarnation if server is not None else self.agents[node].incarnation

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

            def respond(ok: bool, value: Any) -> None:
                if self.up(dst) and self.incarnation(dst) == dst_inc:
                    self.transmit(
                        dst, src, f"rpc-reply {cid}", lambda: self._answer(cid, ok, value)
                    )

            self.handle_rpc(dst, src, method, args, respond)

        self.transmit(src, dst, f"rpc {cid} {method} {src}>{dst}", deliver)
        self.at(
            self.now + self.cfg.rpc_timeout_ms,
            f"rpc-timeout {cid}",
            lambda: self._answer(cid, False, "timeout"),
        )

    def _answer(self, cid: int, ok: bool, value: Any) -> None:
        entry = self.calls.pop(cid, None)
        if entry is None:
            return
        src, inc, on_reply = entry
        if self.up(src) and self.incarnation(src) == inc:
            on_reply(ok, value)

    def handle_rpc(
        self, node: str, src: str, method: str, args: Any, respond: Callable[[bool, Any], None]
    ) -> None:
        if node in self.agents:
            self._agent_rpc(self.agents[node], method, args, respond)
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
        server.alive = True
        server.proposals = {}
        server.leader = server.scheduling = False
        server.core = SchedulerCore()
        server.ready = []
        server.retries_sent = set()
        server.ended = set()
        inc = server.incarnation
        self.at(
            self.now + self.rng.randint(1, self.cfg.tick_ms),
            f"tick {server.name}",
            lambda: self._tick(server, inc),
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
        server.leader = server.scheduling = False
        self._note_health()

    def _restart_server(self, server: SimServer) -> None:
        if server.alive:
            return
        self._start_server(server)
        self._note_health()

    def _tick(self, server: SimServer, inc: int) -> None:
        if not server.alive or server.incarnation != inc:
            return
        server.raft.tick(self.now)
        self.process(server)
        if server.alive:
            self._drive_leader(server)
            self.at(
                self.now + self.cfg.tick_ms, f"tick {server.name}", lambda: self._tick(server, inc)
            )

    def _deliver_raft(self, msg: Message) -> None:
        server = self.servers.get(msg.dst)
        if server is None or not server.alive:
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
        results = server.store.apply_batch([c for b in batches for c in b], data[-1].index)
        at = 0
        for entry, cmds in zip(data, batches, strict=True):
            mine = results[at : at + len(cmds)]
            at += len(cmds)
            cb = server.proposals.pop((entry.index, entry.term), None)
            if cb is not None:
                callbacks.append((cb, mine))

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
        """As Agent.on_leadership: stop scheduling; a new leader waits for its barrier."""
        self.note(f"{server.name} leader={leader} term={server.raft.term}")
        server.leader = leader
        server.scheduling = False
        server.core = SchedulerCore()
        server.ready = []
        server.retries_sent = set()
        lost, server.proposals = server.proposals, {}
        inc = server.incarnation
        for cb in lost.values():
            self.at(
                self.now,
                f"lost {server.name}",
                lambda cb=cb: self._if_alive(server, inc, lambda: cb(None)),
            )
        if leader:
            self.stats["leaderships"] += 1

    def _drive_leader(self, server: SimServer) -> None:
        """The leader's work on each tick: barrier, scheduling, dispatch, reconciliation."""
        raft = server.raft
        if not server.leader:
            return
        if not server.scheduling:
            if (
                raft.term_at(raft.commit_index) == raft.term
                and raft.applied_index >= raft.commit_index
            ):
                self._become_leader(server)
            return
        self._schedule(server)
        if self.now >= server.reconcile_at and self.cfg.broken != "no_abandon":
            server.reconcile_at = self.now + self.cfg.reconcile_ms
            self._reconcile(server)

    def _become_leader(self, server: SimServer) -> None:
        """Barrier passed: arm the core from the store, schedule, then settle open intents."""
        server.core = SchedulerCore(late_grace=timedelta(milliseconds=self.cfg.late_grace_ms))
        for job in server.store.list_jobs():
            server.core.upsert(job)
        self.note(f"{server.name} scheduling; intents {len(server.store.open_intents())}")
        server.scheduling = True
        server.reconcile_at = self.now + self.cfg.reconcile_ms
        if self.cfg.broken != "no_settle":
            self._settle(server, {i["group"] for i in server.store.open_intents()})

    def members(self) -> list[dict]:
        """The failure detector's view: every agent, "failed" once declared dead."""
        return [
            {
                "Name": agent.name,
                "Tags": {"role": "agent", "zone": agent.zone, "region": "global"},
                "statusText": "failed" if agent.name in self.declared_dead else "alive",
            }
            for agent in self.agents.values()
        ]

    def _settle(self, server: SimServer, groups: set[int]) -> None:
        """Settle the intents open when this leader took over (`groups`); those it commits
        itself are already queued for dispatch."""
        if not any(i["group"] in groups for i in server.store.open_intents()):
            return
        now_ns = self.now_ns()
        alive = [m["Name"] for m in self.members() if m["statusText"] == "alive"]
        known: set[int] = set()
        waiting = set(alive)
        inc = server.incarnation

        def finish() -> None:
            if not (server.alive and server.incarnation == inc and server.scheduling):
                return
            self._carry_out(
                server,
                launch_settle.settle(
                    [i for i in server.store.open_intents() if i["group"] in groups],
                    server.store.get_job,
                    lambda name, group: [
                        e for e in server.store.executions(name) if e["group"] == group
                    ],
                    known,
                    now_ns,
                    self.cfg.late_grace_ms * MS,
                    up_since,
                ),
            )

        failed: list[str] = []

        up_since: dict[str, int] = {}

        def answered(node: str, ok: bool, value: Any) -> None:
            if ok:
                known.update(value["groups"])
                up_since[node] = value["up_since_ns"]
            else:
                failed.append(node)
            waiting.discard(node)
            if waiting:
                return
            if failed:
                # A live node that cannot be asked may run one of these launches: ask again
                # later (it answers, or the failure detector declares it dead).
                self.stats["settle_postponed"] += 1
                self.at(self.now + 300, f"settle-again {server.name}", retry)
            else:
                finish()

        def retry() -> None:
            if server.alive and server.incarnation == inc and server.scheduling:
                self._settle(server, groups)

        if not waiting:
            finish()  # no live node to ask (carrying out may even crash this server)
            return
        term = server.raft.term
        for node in alive:
            self.call(
                server.name,
                node,
                "agent.groups",
                {"term": term},
                lambda ok, v, n=node: answered(n, ok, v),
            )

    def _carry_out(self, server: SimServer, actions: list[launch_settle.Action]) -> None:
        for action in actions:
            if not server.alive:
                return
            self.stats[f"settle_{action.kind}"] += 1
            self.note(f"{server.name} settle {action.job_name} g={action.group} {action.kind}")
            if action.kind == launch_settle.RETRY:
                self._dispatch_retry(server, action.job, action.group, action.attempt, action.node)
            elif action.kind == launch_settle.REQUEUE:
                heapq.heappush(server.ready, (action.scheduled_ns, action.group, action.job_name))
            elif action.kind == launch_settle.DISPATCH_NOW:
                self._dispatch(
                    server, action.job_name, action.group, action.attempt, action.scheduled_ns
                )
            elif action.kind == launch_settle.LOST:
                self._record_failed_start(
                    server,
                    action.job,
                    action.group,
                    action.attempt,
                    action.node,
                    action.scheduled_ns,
                    action.reason,
                )
            else:
                self.propose(server, [{"op": "close_intent", "group": action.group}], _ignore)

    def _schedule(self, server: SimServer) -> None:
        """Commit intents up to the lookahead; dispatch committed ones at their time."""
        now_ns = self.now_ns()
        horizon = ns_to_datetime(now_ns + self.cfg.lookahead_ms * MS)
        nxt = server.core.next_wakeup()
        if nxt is not None and nxt <= horizon and not self.draining:
            launches = server.core.due(horizon)
            if launches:
                self._commit_launches(server, launches)
        while (
            server.alive
            and server.ready
            and server.ready[0][0] - self.cfg.dispatch_lead_ms * MS <= now_ns
        ):
            scheduled_ns, group, name = heapq.heappop(server.ready)
            self._dispatch(server, name, group, 1, scheduled_ns)

    def _commit_launches(self, server: SimServer, launches: list) -> None:
        now_ns = self.now_ns()
        cmds = [
            {
                "op": "launch",
                "name": launch.job_name,
                "scheduled_ns": int(launch.scheduled.timestamp()) * SECOND,
                "group": now_ns + i,
                "cause": launch.cause,
                "now_ns": max(now_ns, int(launch.scheduled.timestamp()) * SECOND),
                "nodes": self._choose(server, launch.job_name),
            }
            for i, launch in enumerate(launches)
        ]
        if self.cfg.broken == "dispatch_before_commit":
            for cmd in cmds:
                heapq.heappush(server.ready, (cmd["scheduled_ns"], cmd["group"], cmd["name"]))
            self.propose(server, cmds, _ignore)
            return
        epoch = (server.incarnation, server.raft.term)

        def done(results: list | None) -> None:
            if results is None or (server.incarnation, server.raft.term) != epoch:
                return
            for cmd, result in zip(cmds, results, strict=True):
                if result.ok:
                    heapq.heappush(server.ready, (cmd["scheduled_ns"], cmd["group"], cmd["name"]))
                else:
                    self.stats["launch_refused"] += 1
                self.note(
                    f"{server.name} launch {cmd['name']} {_rel(cmd['scheduled_ns'])} "
                    f"g={cmd['group']} {cmd['cause']} -> {result.ok} {result.error}"
                )

        self.propose(server, cmds, done)

    def _choose(self, server: SimServer, name: str) -> list[str]:
        """The launch's targets, chosen when its intent is committed (part of the intent)."""
        job = server.store.get_job(name)
        try:
            return [
                m["Name"]
                for m in select_targets(name, job.get("tags"), self.members(), "global", self.rng)
            ]
        except (TargetError, AttributeError):
            return []

    def _dispatch(
        self, server: SimServer, name: str, group: int, attempt: int, scheduled_ns: int | None
    ) -> None:
        if not server.alive:
            return
        job = server.store.get_job(name)
        if job is None:
            self.propose(server, [{"op": "close_intent", "group": group}], _ignore)
            return
        intent = next((i for i in server.store.open_intents() if i["group"] == group), None)
        chosen = set(intent.get("nodes") or []) if intent is not None and attempt == 1 else set()
        if chosen:
            # The intent names its nodes: attempt 1 runs there and nowhere else.
            targets = [m for m in self.members() if m["Name"] in chosen]
            for target in targets:
                self._remote_run(server, target, job, group, attempt, scheduled_ns, None)
            return
        try:
            targets = select_targets(name, job.get("tags"), self.members(), "global", self.rng)
        except TargetError:
            self.stats["no_target"] += 1
            self.propose(server, [{"op": "close_intent", "group": group}], _ignore)
            return
        for target in targets:
            self._remote_run(server, target, job, group, attempt, scheduled_ns, frozenset())

    def _remote_run(
        self,
        server: SimServer,
        target: dict,
        job: dict,
        group: int,
        attempt: int,
        scheduled_ns: int | None,
        tried: frozenset[str] | None,
    ) -> None:
        """`tried` is None for a run pinned to its node by the intent (no other node then).

        As Agent._remote_run: a node that was not reached is swapped for another qualifying
        node; with none left a failed execution is recorded and the job's retries apply. An
        unanswered call (the run may have started) is first confirmed with the node, and a
        deposed leader leaves the launch to its successor."""
        if not server.alive:
            return
        term = server.raft.term
        args = {
            "job": job,
            "group": group,
            "attempt": attempt,
            "scheduled_ns": scheduled_ns,
            "report_to": server.name,
            "term": term,
        }

        def reply(ok: bool, value: Any) -> None:
            self.note(
                f"{server.name} run {job['name']} g={group} #{attempt} on {target['Name']}"
                f" -> {ok} {value if not ok else ''}"
            )
            if ok:
                if value["id"] in server.ended:
                    # Its end was reported first: recording the start now would make the
                    # finished execution "running" again (the store does not refuse it).
                    self.stats["end_before_start"] += 1
                    return
                self.propose(server, [{"op": "execution_started", "execution": value}], _ignore)
                return
            self.stats["run_rpc_failed"] += 1
            if not server.leader or server.raft.term != term or value == "stale leader":
                self.stats["run_dropped_not_leader"] += 1
                return  # a newer leader settles this launch
            if value != "cannot reach":
                # The request may have arrived: ask the node before running it elsewhere.
                ask()
                return
            elsewhere(value)

        def ask() -> None:
            if server.alive and server.leader and server.raft.term == term:
                self.call(server.name, target["Name"], "agent.groups", {"term": term}, confirmed)

        def confirmed(ok: bool, value: Any) -> None:
            if not (server.leader and server.raft.term == term):
                return  # a newer leader settles this launch
            if not ok:
                if target["Name"] in self.declared_dead:
                    elsewhere("its node failed before answering")
                    return
                # Ask again until the node answers or is declared dead.
                self.stats["run_unresolved"] += 1
                self.at(self.now + 300, f"confirm {group}", ask)
                return
            if group in value["groups"]:
                self.stats["run_confirmed"] += 1
                return
            elsewhere("the node never got the request")

        def elsewhere(reason: str) -> None:
            alternative = None
            if tried is not None:
                others = [m for m in self.members() if m["Name"] not in tried | {target["Name"]}]
                try:
                    alternative = select_targets(
                        job["name"], job.get("tags"), others, "global", self.rng
                    )[0]
                except TargetError:
                    alternative = None
            if alternative is not None and tried is not None:
                self._remote_run(
                    server, alternative, job, group, attempt, scheduled_ns, tried | {target["Name"]}
                )
                return
            self._record_failed_start(
                server,
                job,
                group,
                attempt,
                target["Name"],
                scheduled_ns,
                f"could not start the run on node {target['Name']}: {reason}",
            )

        self.call(server.name, target["Name"], "agent.run", args, reply)

    def _record_failed_start(
        self,
        server: SimServer,
        job: dict,
        group: int,
        attempt: int,
        node: str,
        scheduled_ns: int | None,
        reason: str,
    ) -> None:
        """An attempt that never ran (or died with its node): failed, so retries apply."""
        if not server.alive:
            return
        now_ns = self.now_ns()
        failed = launch_settle.failed_attempt(
            job["name"],
            node,
            group,
            attempt,
            now_ns,
            scheduled_ns,
            reason,
            execution_id=f"{now_ns}-{node}-{group}-{attempt}-f",
        )
        self.propose(server, [{"op": "execution_started", "execution": failed}], _ignore)
        self._record_done(server, job, failed, False, _ignore_results)

    def _record_done(
        self,
        server: SimServer,
        job: dict,
        execution: dict,
        stopped: bool,
        on_done: Callable[[list | None], None],
    ) -> None:
        """Commit an execution's end, then follow the store's follow-ups (retries)."""

        def done(results: list | None) -> None:
            on_done(results)
            self.note(
                f"{server.name} done {execution['id']} ok={execution['success']} -> "
                f"{results is not None and [f['action'] for f in results[0].follow_ups]}"
            )
            if results is not None:
                self._follow_ups(server, results[0].follow_ups)

        self.propose(
            server, [{"op": "execution_done", "execution": execution, "no_retry": stopped}], done
        )

    def _follow_ups(self, server: SimServer, follow_ups: list[dict]) -> None:
        inc = server.incarnation
        for f in follow_ups:
            if f["action"] != "retry":
                continue
            self.stats["retries_scheduled"] += 1
            self.note(
                f"{server.name} retry timer g={f['group']} #{f['attempt']} on {f['node_name']}"
            )

            def fire(f: dict = f, term: int = server.raft.term) -> None:
                if not (server.leader and server.raft.term == term):
                    return  # leadership changed: the next settlement retries it
                job = server.store.get_job(f["job_name"])
                if job is not None:
                    self._dispatch_retry(server, job, f["group"], f["attempt"], f["node_name"])

            delay_ms = int(f["delay"] * 1000)
            self.at(
                self.now + delay_ms,
                f"retry {server.name}",
                lambda fire=fire: self._if_alive(server, inc, fire),
            )

    def _dispatch_retry(
        self, server: SimServer, job: dict, group: int, attempt: int, node: str
    ) -> None:
        """Retry on the node that failed if alive, else on another; an attempt this leader
        already sent or the store records (a settlement and a retry timer both asked for it)
        is not sent again."""
        if not server.alive:
            return
        if (group, attempt) in server.retries_sent or any(
            e["group"] == group and e.get("attempt", 1) >= attempt
            for e in server.store.executions(job["name"])
        ):
            self.stats["retry_already_sent"] += 1
            return
        server.retries_sent.add((group, attempt))
        members = self.members()
        same = [m for m in members if m["Name"] == node and m["statusText"] == "alive"]
        if not same:
            try:
                same = select_targets(job["name"], job.get("tags"), members, "global", self.rng)[:1]
            except TargetError:
                self.propose(server, [{"op": "close_intent", "group": group}], _ignore)
                return
        intent = next((i for i in server.store.open_intents() if i["group"] == group), None)
        scheduled_ns = intent["scheduled_ns"] if intent and intent["cause"] != "manual" else None
        for target in same:
            self._remote_run(server, target, job, group, attempt, scheduled_ns, frozenset())

    def _reconcile(self, server: SimServer) -> None:
        """As Agent._reconcile_once: runs recorded as running that their node does not have."""
        stale_before = self.now_ns() - 2 * self.cfg.reconcile_ms * MS
        by_node: dict[str, list[dict]] = defaultdict(list)
        for ex in server.store.running_executions():
            if int(ex.get("started_ns", 0)) < stale_before:
                by_node[ex["node_name"]].append(ex)
        inc = server.incarnation
        for node, executions in sorted(by_node.items()):
            if node not in self.agents:
                continue

            def answered(ok: bool, running: Any, executions: list[dict] = executions) -> None:
                if not ok or not server.leader or server.incarnation != inc:
                    return  # unreachable: the failure detector decides
                for ex in executions:
                    if ex["id"] in running:
                        continue
                    self.stats["reconciled"] += 1
                    cmd = {
                        "op": "abandon_running",
                        "id": ex["id"],
                        "now_ns": self.now_ns(),
                        "reason": "lost",
                    }
                    self.propose(
                        server,
                        [cmd],
                        lambda r: self._follow_ups(server, r[0].follow_ups) if r else None,
                    )

            self.call(server.name, node, "agent.running", None, answered)

    def _abandon_node(self, node: str) -> None:
        """The failure detector declared `node` dead: the leader fails its running runs."""
        leader = self.leader()
        if leader is None or self.cfg.broken == "no_abandon":
            return
        cmd = {
            "op": "abandon_running",
            "node": node,
            "now_ns": self.now_ns(),
            "reason": "node failed",
        }
        self.propose(
            leader, [cmd], lambda r: self._follow_ups(leader, r[0].follow_ups) if r else None
        )

    def _server_rpc(
        self, server: SimServer, method: str, args: Any, respond: Callable[[bool, Any], None]
    ) -> None:
        if method == "leader.execution_done":
            if not server.leader:
                respond(False, "not the leader")
                return
            server.ended.add(args["execution"]["id"])
            self._record_done(
                server,
                args["job"],
                args["execution"],
                args["stopped"],
                lambda r: respond(r is not None, "ok" if r is not None else "not committed"),
            )
        elif method == "leader.stop":
            running = {ex["id"]: ex for ex in server.store.running_executions()}
            ex = running.get(args["id"])
            if ex is None:
                respond(False, "not running")
                return
            self.call(server.name, ex["node_name"], "agent.stop", {"id": ex["id"]}, respond)
        else:
            respond(False, f"unknown method {method}")

    # ----- agents ---------------------------------------------------------------------------

    def _agent_rpc(
        self, agent: SimAgent, method: str, args: Any, respond: Callable[[bool, Any], None]
    ) -> None:
        term = int((args or {}).get("term", 0))
        if method in ("agent.run", "agent.groups"):
            if term < agent.fence:
                respond(False, "stale leader")
                return
            agent.fence = term
        if method == "agent.run":
            respond(True, self._start_run(agent, args))
        elif method == "agent.groups":
            running = [p.execution["group"] for p in agent.processes.values()]
            groups = [*running, *agent.recent_groups]
            respond(True, {"groups": groups, "up_since_ns": agent.up_since_ns})
        elif method == "agent.running":
            respond(True, [*agent.processes, *agent.undelivered])
        elif method == "agent.stop":
            proc = agent.processes.get(args["id"])
            if proc is not None and proc.end_ms is None and proc.start_ms <= self.now:
                self._end_run(agent, proc, success=False, stopped=True)
            respond(proc is not None, proc is not None)
        else:
            respond(False, f"unknown method {method}")

    def _start_run(self, agent: SimAgent, args: dict) -> dict:
        """Accept a run: answer with its execution now, start the process at its second."""
        job, group, attempt = args["job"], int(args["group"]), int(args["attempt"])
        scheduled_ns = args.get("scheduled_ns")
        start_ms = self.now
        if scheduled_ns is not None:
            start_ms = max(self.now, (scheduled_ns - BASE_NS) // MS)
        started_ns = BASE_NS + start_ms * MS
        execution = {
            "id": f"{started_ns}-{agent.name}-{group}-{attempt}",
            "job_name": job["name"],
            "group": group,
            "attempt": attempt,
            "node_name": agent.name,
            "started_at": format_rfc3339(ns_to_datetime(started_ns)),
            "started_ns": started_ns,
            "scheduled_ns": scheduled_ns,
        }
        proc = Process(job, execution, args["report_to"], start_ms)
        agent.processes[execution["id"]] = proc
        inc = agent.incarnation
        roll = self.rng.random()
        duration = self.rng.randint(30, 1800)

        def begin() -> None:
            if not agent.alive or agent.incarnation != inc or proc.end_ms is not None:
                return
            self.processes.append(proc)
            self.launch_log.append(
                (job["name"], scheduled_ns, attempt, group, agent.name, self.now)
            )
            if roll < 0.05:
                self.stats["hangs"] += 1
                return  # hangs until a user stops it
            self.at(
                self.now + duration,
                f"end {execution['id']}",
                lambda: self._finish(agent, inc, proc, roll > 0.3),
            )

        self.at(start_ms, f"start {execution['id']}", begin)
        return execution

    def _finish(self, agent: SimAgent, inc: int, proc: Process, success: bool) -> None:
        if agent.alive and agent.incarnation == inc and proc.end_ms is None:
            self._end_run(agent, proc, success, stopped=False)

    def _end_run(self, agent: SimAgent, proc: Process, success: bool, stopped: bool) -> None:
        proc.end_ms = self.now
        agent.processes.pop(proc.execution["id"], None)
        agent.recent_groups = [*agent.recent_groups[-200:], proc.execution["group"]]
        execution = dict(proc.execution)
        execution["finished_at"] = format_rfc3339(ns_to_datetime(self.now_ns()))
        execution["success"] = success
        execution["output"] = "ok" if success else "exit status 1"
        agent.undelivered.add(execution["id"])
        self._report(agent, agent.incarnation, proc, execution, stopped, 0)

    def _report(
        self, agent: SimAgent, inc: int, proc: Process, execution: dict, stopped: bool, tries: int
    ) -> None:
        """Send the end to the server that asked, then the others, until one acknowledges."""
        if not agent.alive or agent.incarnation != inc:
            return
        order = [proc.report_to, *sorted(s for s in self.servers if s != proc.report_to)]
        args = {"job": proc.job, "execution": execution, "stopped": stopped}

        def attempt(i: int) -> None:
            if i >= len(order):
                delay = min(1000, 100 * 2**tries)
                self.at(
                    self.now + delay,
                    f"report-retry {execution['id']}",
                    lambda: self._report(agent, inc, proc, execution, stopped, tries + 1),
                )
                return

            def reply(ok: bool, _value: Any) -> None:
                if ok:
                    agent.undelivered.discard(execution["id"])
                else:
                    attempt(i + 1)

            self.call(agent.name, order[i], "leader.execution_done", args, reply)

        attempt(0)

    def _crash_agent(self, agent: SimAgent) -> None:
        if not agent.alive:
            return
        self.stats["agent_crashes"] += 1
        agent.alive = False
        agent.incarnation += 1
        for proc in agent.processes.values():
            if proc.end_ms is None:
                proc.end_ms = self.now
        agent.processes = {}
        agent.recent_groups = []
        agent.undelivered = set()
        agent.fence = 0
        inc = agent.incarnation
        self.at(
            self.now + self.cfg.detect_ms, f"detect {agent.name}", lambda: self._detect(agent, inc)
        )
        self._note_health()

    def _detect(self, agent: SimAgent, inc: int) -> None:
        if agent.alive or agent.incarnation != inc:
            return
        self.declared_dead[agent.name] = self.now
        self.declarations.append((agent.name, self.now))
        self.stats["declared_dead"] += 1
        self._abandon_node(agent.name)

    def _restart_agent(self, agent: SimAgent) -> None:
        if agent.alive:
            return
        agent.alive = True
        agent.up_since_ns = self.now_ns()
        self.declared_dead.pop(agent.name, None)
        self._note_health()

    # ----- users and faults -----------------------------------------------------------------

    def _user_stop(self) -> None:
        """A user stops a hanging run through the API of some server (forwarded to its node)."""
        if self.faults_on:
            self.at(self.now + self.rng.randint(1000, 3000), "user-stop", self._user_stop)
        self._stop_all_hangs()

    def _stop_all_hangs(self, min_age_ms: int = 500) -> None:
        for agent in self.agents.values():
            for proc in list(agent.processes.values()):
                if proc.end_ms is None and proc.start_ms <= self.now - min_age_ms:
                    server = self.servers[self.rng.choice(sorted(self.servers))]
                    if server.alive:
                        self.stats["user_stops"] += 1
                        self.call(
                            server.name,
                            agent.name,
                            "agent.stop",
                            {"id": proc.execution["id"]},
                            _no_answer_needed,
                        )

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
        # else: a quiet interval

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
        nodes = sorted([*self.servers, *self.agents])
        style = self.rng.random()
        if style < 0.5:
            group = set(self.rng.sample(nodes, self.rng.randint(1, len(nodes) // 2)))
            for a in nodes:
                for b in nodes:
                    if (a in group) != (b in group):
                        self.blocked.add((a, b))
        elif style < 0.8:
            a, b = self.rng.sample(nodes, 2)
            self.blocked.add((a, b))
            if self.rng.random() < 0.5:
                self.blocked.add((b, a))
        else:
            self._isolate(self.rng.choice(nodes))
        self._note_health()

    def _isolate(self, victim: str) -> None:
        self.stats["isolations"] += 1
        self.blocked.clear()
        self._heal_later()
        for other in [*self.servers, *self.agents]:
            if other != victim:
                self.blocked.add((victim, other))
                self.blocked.add((other, victim))
        self._note_health()

    # ----- coverage for check (b) -----------------------------------------------------------

    def healthy(self) -> bool:
        """A majority of servers up and pairwise connected, with an agent connected to all,
        and no lossy spell."""
        if self.lossy:
            return False
        live = [s for s, srv in self.servers.items() if srv.alive]

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

    def outcome(self) -> Outcome:
        self.violations = self.find_violations()
        timed = {(name, t) for name, t, *_ in self.launch_log if t is not None}
        return Outcome(
            self.seed,
            self.violations,
            self.trace.hexdigest(),
            len(timed),
            len(self.launch_log),
            self.stats["covered_checked"],
            self.stats,
        )

    def find_violations(self) -> list[str]:
        out: list[str] = []
        first: Counter[tuple[str, int]] = Counter()
        retried: set[tuple[str, int]] = set()
        for name, scheduled_ns, attempt, _group, _node, _t in self.launch_log:
            if scheduled_ns is None:
                continue
            if attempt == 1:
                first[(name, scheduled_ns)] += 1
            else:
                retried.add((name, scheduled_ns))
        for (name, scheduled_ns), count in sorted(first.items()):
            if count > 1:
                out.append(
                    f"(a) {name} at {_rel(scheduled_ns)} launched {count} times for attempt 1"
                )
        out.extend(self._check_once_jobs(first, retried))
        out.extend(self._check_nothing_left_running())
        out.extend(self._check_forbid())
        return [f"seed {self.seed}: {v}" for v in out]

    def _check_once_jobs(self, first: Counter, retried: set) -> list[str]:
        out = []
        if self.jobs_created_ms is None:
            return ["(b) the jobs were never created: no leader took writes"]
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
                            f"(b) run-once {job['name']} at {_rel(t)} covered by a quorum "
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
        quiet = all(not a.processes and not a.undelivered for a in self.agents.values())
        self.stats["ended_idle"] += quiet
        if quiet and running:
            ids = ", ".join(ex["id"] for ex in running[:3])
            out.append(f"(c) every agent is idle but {len(running)} executions are running: {ids}")
        return out

    def _check_forbid(self) -> list[str]:
        out = []
        by_job: dict[str, list[Process]] = defaultdict(list)
        for proc in self.processes:
            if proc.job.get("concurrency") == "forbid":
                by_job[proc.job["name"]].append(proc)
        for name, procs in sorted(by_job.items()):
            procs.sort(key=lambda p: p.start_ms)
            latest = procs[0]  # the earlier run that ends last so far
            for b in procs[1:]:
                end = latest.end_ms if latest.end_ms is not None else self.end_ms + 1
                if b.start_ms < end:
                    out.append(
                        f"(d) forbid job {name}: run {b.execution['id']} started at "
                        f"{b.start_ms} ms while {latest.execution['id']} ran "
                        f"({latest.start_ms}-{end} ms)"
                    )
                b_end = b.end_ms if b.end_ms is not None else self.end_ms + 1
                if b_end > end:
                    latest = b
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


def _rel(ns: int) -> str:
    return f"t={(ns - BASE_NS) // MS} ms"


def _ignore(_results: list | None) -> None:
    """Fire-and-forget commit (the driver's submit_async)."""


def _ignore_results(_results: list | None) -> None:
    """The end of a run that never started needs no acknowledgement."""


def _no_answer_needed(_ok: bool, _value: Any) -> None:
    """An RPC whose answer nobody waits for."""
