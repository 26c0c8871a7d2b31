"""Deterministic Raft simulator: N cores, a virtual clock, a hostile network and crashing disks.

One seed drives everything (network delays, drops, duplicates, partitions, crashes, client
operations, membership changes), so a failing seed is a reproducible bug report and the same
seed always yields the same trace digest. Every message goes through the real wire codec.

Storage is modelled as a durable part and a volatile part: a Ready's writes land in the
volatile part and only an fsync makes them durable; a crash drops the volatile part. The
driver follows the core's contract (persist, then send, then apply) unless a test switches
on `unsafe_send_before_fsync` to show that the checks catch the resulting bug.

Clients send each operation to the server they last found leading or, as often, to any server,
and the servers do what the driver (raftnode) does: a follower forwards a write to the leader and
answers it once it has applied it itself (so followers' commits from PeerAcks are acknowledged to
clients), and every read waits for a read index from batched ReadIndex rounds (`ReadRounds`, the
driver's own batching): on the leader a round asks the other voters for their terms and passes
the first answer to its core as a confirmation (`read_index(via=...)`), or (an error, or at
random) runs a plain heartbeat round; on a follower a round is one request to the leader
carrying the follower's term, passed to the leader's core the same way, or, as from a follower
of the previous version, without it (the leader then puts it in its own next round); the read
is answered from the server's own state machine once that has applied the index. Requests between servers travel the same
hostile network (delayed, dropped, cut by partitions; never duplicated, as over TCP), and a
round without an answer is given up after the driver's limit (the longest election timeout).
`unsafe_follower_local_reads` makes followers answer reads from their state machine at once,
to show that the checks catch stale reads.

Checks after every step (raising `SafetyViolation`): at most one leader per term, log
matching (an (index, term) pair always names the same entry with the same predecessor
term), leader completeness (a new leader holds every committed entry), state machine safety
(every index applies the same entry everywhere, committed entries never change). At the end:
no acknowledged write is lost, and the clients' key-value history is linearizable.

`Simulation(seed).run()` plays one seeded schedule; `run_seed(seed)` returns its Outcome
(violations, trace digest, failover time, statistics). `Cluster` is the scripted variant
used by the named scenarios: the test chooses which messages arrive and when time moves.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from linearizability import CAS, GET, PUT, Op, check_kv

from dkron_pkg.raft_messages import Entry, EntryKind, Message, TimeoutNow, decode, encode
from dkron_pkg.raftlog import (
    Compacted,
    ConfChange,
    HardState,
    NotLeader,
    Proposal,
    RaftConfig,
    RaftNode,
    ReadState,
    Ready,
    Refused,
    Role,
    Snapshot,
    StorageState,
)
from dkron_pkg.read_rounds import ReadRounds


class SafetyViolation(AssertionError):
    """A Raft safety property was broken; the message names the property and the step."""


# ----- storage with a durable and a volatile part ---------------------------------------------


class SimStorage:
    """In-memory disk: `write_*` goes to the volatile part, `fsync` makes it durable."""

    def __init__(self) -> None:
        self.hard = HardState()
        self.snapshot: Snapshot | None = None
        self.offset = 0
        self.offset_term = 0
        self.entries: list[Entry] = []
        self.pending: list[tuple[str, Any]] = []
        self.fsyncs = 0

    def write_snapshot(self, snap: Snapshot) -> None:
        self.pending.append(("snapshot", snap))

    def write_compaction(self, compacted: Compacted) -> None:
        self.pending.append(("compact", compacted))

    def write_entries(self, entries: list[Entry]) -> None:
        if entries:
            self.pending.append(("append", entries))

    def write_hard_state(self, hard: HardState) -> None:
        self.pending.append(("hard", hard))

    def fsync(self) -> None:
        self.fsyncs += 1
        for kind, value in self.pending:
            if kind == "hard":
                self.hard = value
            elif kind == "append":
                first = value[0].index
                keep = max(0, first - self.offset - 1)
                del self.entries[keep:]
                self.entries.extend(value)
            elif kind == "snapshot":
                self.snapshot = value
                self.offset = value.meta.index
                self.offset_term = value.meta.term
                self.entries = []
            else:
                if self.snapshot is None or value.snapshot.meta.index > self.snapshot.meta.index:
                    self.snapshot = value.snapshot
                if value.offset > self.offset:
                    del self.entries[: value.offset - self.offset]
                    self.offset = value.offset
                    self.offset_term = value.offset_term
        self.pending = []

    def crash(self) -> None:
        self.pending = []

    def load(self) -> StorageState:
        return StorageState(
            self.hard, self.snapshot, self.offset, self.offset_term, list(self.entries)
        )


# ----- the replicated key-value state machine -------------------------------------------------


class KV:
    """The state machine under test: put/get/cas on string keys; commands are JSON."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def apply(self, index: int, data: bytes) -> Any:
        cmd = json.loads(data)
        key = cmd["key"]
        if cmd["op"] == PUT:
            self.data[key] = cmd["value"]
            return "ok"
        if cmd["op"] == CAS:
            if self.data.get(key) == cmd["expected"]:
                self.data[key] = cmd["value"]
                return True
            return False
        raise ValueError(f"unknown command {cmd['op']}")

    def snapshot(self) -> bytes:
        return json.dumps(self.data, sort_keys=True).encode()

    def restore(self, data: bytes) -> None:
        self.data = json.loads(data)


# ----- simulation -----------------------------------------------------------------------------


@dataclass
class SimConfig:
    """Knobs of one run; `from_seed` picks hostile but bounded values."""

    voters: int = 3
    clients: int = 4
    keys: int = 3
    duration_ms: int = 4000
    drop: float = 0.02
    duplicate: float = 0.01
    delay_min_ms: int = 1
    delay_max_ms: int = 8
    long_delay: float = 0.03
    fault_every_ms: tuple[int, int] = (100, 400)
    crash_before_fsync: float = 0.005
    membership_changes: bool = True
    snapshot_every: int = 40
    client_timeout_ms: int = 800
    tick_ms: int = 10
    unsafe_send_before_fsync: bool = False
    # How often a client sends an operation to any server rather than to the one it last
    # found leading (reads and writes through followers).
    any_server: float = 0.5
    unsafe_follower_local_reads: bool = False
    raft: RaftConfig = field(
        default_factory=lambda: RaftConfig(
            trailing_entries=10, max_entries_per_message=64, max_inflight=8
        )
    )

    @classmethod
    def from_seed(cls, seed: int) -> SimConfig:
        rng = random.Random(seed ^ 0x5EED)
        return cls(
            voters=rng.choice((3, 3, 5)),
            drop=rng.choice((0.0, 0.01, 0.05, 0.1)),
            duplicate=rng.choice((0.0, 0.02)),
            delay_max_ms=rng.choice((3, 8, 20)),
            long_delay=rng.choice((0.0, 0.05)),
        )


@dataclass
class Pending:
    """A client operation accepted by a node and not answered yet."""

    client: int
    op_id: str
    kind: str
    key: str
    value: Any
    expected: Any
    call: tuple[int, int]
    proposal: Proposal | None = None
    read_index: int | None = None


@dataclass
class Outcome:
    violations: list[str]
    trace_digest: str
    history: list[Op]
    failover_ms: int | None
    acked_writes: int
    events: int
    leaders: int
    stats: Counter[str] = field(default_factory=Counter)


class SimNode:
    """One server: a Raft core, its disk and its state machine."""

    def __init__(self, node_id: str, peers: list[str], sim: Simulation) -> None:
        self.id = node_id
        self.peers = peers
        self.sim = sim
        self.storage = SimStorage()
        self.alive = False
        self.raft: RaftNode | None = None
        self.kv = KV()
        self.pending: dict[str, Pending] = {}
        self.reads: dict[str, Pending] = {}
        self.last_role = Role.FOLLOWER
        self.last_commit = 0
        self.retired = False
        self.clock_skew = 0
        # The driver's read path: batched rounds, leader rounds awaiting their ReadState by
        # context, rounds answered in the Ready being handled. A restart is a new process.
        self.incarnation = 0
        self.served = 0
        self.asked: dict[int, bool] = {}  # leader rounds asking voters' terms: answered yet?
        self.rounds: ReadRounds[tuple] = ReadRounds()
        self.round_ctx: dict[bytes, int | tuple] = {}  # own rounds; followers' requests
        self.answered_rounds: list[tuple[int | tuple, int]] = []

    def start(self) -> None:
        state = self.storage.load()
        rng = random.Random(self.sim.rng.getrandbits(64))
        self.raft = RaftNode(self.id, self.peers, state, rng, self.sim.cfg.raft)
        self.kv = KV()
        if state.snapshot is not None:
            self.kv.restore(state.snapshot.data)
        self.alive = True
        self.pending = {}
        self.reads = {}
        self.incarnation += 1
        self.served = 0
        self.asked = {}
        self.rounds = ReadRounds()
        self.round_ctx = {}
        self.answered_rounds = []
        self.last_role = Role.FOLLOWER
        self.last_commit = self.raft.commit_index

    def crash(self) -> None:
        self.alive = False
        self.raft = None
        self.storage.crash()
        self.pending = {}
        self.reads = {}


class Simulation:
    """Runs one seed. `run()` returns an Outcome; violations are collected, not raised."""

    def __init__(self, seed: int, cfg: SimConfig | None = None) -> None:
        self.seed = seed
        self.cfg = cfg or SimConfig.from_seed(seed)
        self.rng = random.Random(seed)
        self.now = 0
        self.seq = 0
        self.queue: list[tuple[int, int, str, Any]] = []
        self.trace = hashlib.blake2b(digest_size=16)
        self.events = 0
        names = [f"n{i}" for i in range(1, self.cfg.voters + 1)]
        self.next_node = self.cfg.voters + 1
        self.nodes: dict[str, SimNode] = {n: SimNode(n, names, self) for n in names}
        self.blocked: set[tuple[str, str]] = set()
        # global knowledge for the checks
        self.leader_of_term: dict[int, str] = {}
        self.entry_registry: dict[tuple[int, int], tuple[int, bytes, int]] = {}
        self.committed_terms: dict[int, int] = {}
        self.max_committed = 0
        # Highest index seen committed by a node in each term (Raft's "committed in term T"):
        # leaders of later terms must hold it. A leader of an earlier term may still be
        # elected afterwards (its votes were cast before the later term began; delayed
        # responses) and rightly lacks it: it cannot commit anything, as the quorum moved on.
        self.max_committed_in_term: dict[int, int] = {}
        self.applied: dict[int, tuple[int, bytes]] = {}
        self.results: dict[str, Any] = {}
        self.acked: list[tuple[str, int, int]] = []
        self.history: list[Op] = []
        self.unanswered: dict[str, Pending] = {}
        self.accepted_writes: dict[str, Pending] = {}
        self.completed: set[str] = set()
        self.client_ops = [0] * self.cfg.clients
        self.client_busy = [False] * self.cfg.clients
        self.client_leader: list[str | None] = [None] * self.cfg.clients
        self.violations: list[str] = []
        self.faults_on = True
        self.chaos = False
        self.crash_before_next_fsync: set[str] = set()
        self.failover_start: int | None = None
        self.failover_term = 0
        self.failover_ms: int | None = None
        self.stats: Counter[str] = Counter()
        self.read_log: list[tuple[str, ReadState]] = []

    # ----- event queue ------------------------------------------------------------------------

    def at(self, when: int, kind: str, payload: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (when, self.seq, kind, payload))

    def run_until(self, end: int) -> None:
        while self.queue and self.queue[0][0] <= end:
            when, _seq, kind, payload = heapq.heappop(self.queue)
            self.now = when
            self.events += 1
            self.trace.update(f"{when}|{kind}|".encode())
            if isinstance(payload, bytes):
                self.trace.update(payload)
            elif payload is not None:
                self.trace.update(repr(payload).encode())
            getattr(self, "_on_" + kind)(payload)
            self._check_global()
        self.now = max(self.now, end)

    # ----- scenario ---------------------------------------------------------------------------

    def start_all(self) -> None:
        for node in self.nodes.values():
            node.start()
            self.at(self.rng.randint(0, self.cfg.tick_ms), "tick", node.id)

    def run(self, failover: bool = True, warmup_ms: int = 600) -> Outcome:
        """Warm up, crash the leader once (failover sample), then chaos, then quiesce."""
        self.start_all()
        for client in range(self.cfg.clients):
            self.at(self.rng.randint(0, 50), "client", client)
        self.run_until(warmup_ms)
        if failover:
            self.measure_failover()
        end = self.now + self.cfg.duration_ms
        self.chaos = True
        self.at(self.now + self.rng.randint(*self.cfg.fault_every_ms), "fault")
        self.run_until(end)
        self.quiesce()
        return self.finish()

    def measure_failover(self, limit_ms: int = 3000) -> None:
        leader = self.current_leader()
        if leader is None:
            self.run_until(self.now + 1000)
            leader = self.current_leader()
        if leader is None:
            return
        self.failover_start = self.now
        self.failover_term = self.nodes[leader].raft.term
        self._crash(leader)
        self.run_until(self.now + limit_ms)
        self._restart(leader)
        self.run_until(self.now + 300)

    def quiesce(self) -> None:
        """Stop faults, heal the network, restart everyone, and let the cluster converge."""
        self.faults_on = False
        self.chaos = False
        self.blocked.clear()
        self.cfg.drop = 0.0
        self.cfg.duplicate = 0.0
        for node in self.nodes.values():
            if not node.alive and not node.retired:
                self._restart(node.id)
        deadline = self.now + 5000
        while self.now < deadline:
            self.run_until(self.now + 200)
            if self.converged():
                break
        if not self.converged():
            self.violations.append(f"cluster did not converge by t={self.now}ms after healing")

    def current_leader(self) -> str | None:
        best = None
        for node in self.nodes.values():
            if not node.alive or node.raft.role != Role.LEADER:
                continue
            if best is None or node.raft.term > self.nodes[best].raft.term:
                best = node.id
        return best

    def converged(self) -> bool:
        leader = self.current_leader()
        if leader is None:
            return False
        lead = self.nodes[leader].raft
        if lead.term_at(lead.commit_index) != lead.term or lead.commit_index < lead.last_index:
            return False
        for voter in lead.voters:
            node = self.nodes.get(voter)
            if node is None or not node.alive:
                return False
            if node.raft.applied_index != lead.commit_index:
                return False
        return not self.unanswered_in_flight()

    def unanswered_in_flight(self) -> bool:
        return any(n.pending for n in self.nodes.values() if n.alive)

    # ----- ticks and messages -------------------------------------------------------------------

    def _on_tick(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if not node.alive:
            return
        node.raft.tick(self.now + node.clock_skew)
        self.process(node)
        self.at(self.now + self.cfg.tick_ms, "tick", node_id)

    def _on_deliver(self, frame: bytes) -> None:
        msg = decode(frame)
        node = self.nodes.get(msg.dst)
        if node is None or not node.alive:
            return
        node.raft.step(msg)
        self.process(node)

    def send(self, src: str, frame: bytes, dst: str) -> None:
        if (src, dst) in self.blocked or self.rng.random() < self.cfg.drop:
            return
        copies = 2 if self.rng.random() < self.cfg.duplicate else 1
        for _ in range(copies):
            delay = self.rng.randint(self.cfg.delay_min_ms, self.cfg.delay_max_ms)
            if self.rng.random() < self.cfg.long_delay:
                delay += self.rng.randint(20, 120)
            self.at(self.now + delay, "deliver", frame)

    # ----- the driver's Ready loop (persist, send, apply) --------------------------------------

    def process(self, node: SimNode) -> None:
        raft = node.raft
        while node.alive and raft.has_ready():
            rd = raft.ready()
            self.check_new_entries(node, rd)
            if rd.snapshot is not None:
                node.storage.write_snapshot(rd.snapshot)
            node.storage.write_entries(rd.entries)
            if rd.hard_state is not None:
                node.storage.write_hard_state(rd.hard_state)
            if self.cfg.unsafe_send_before_fsync:
                self.send_all(node, rd)
            crash_now = node.id in self.crash_before_next_fsync
            if crash_now or (self.chaos and self.rng.random() < self.cfg.crash_before_fsync):
                self.crash_before_next_fsync.discard(node.id)
                self._crash(node.id)
                self.at(self.now + self.rng.randint(50, 400), "restart", node.id)
                return
            node.storage.fsync()
            if not self.cfg.unsafe_send_before_fsync:
                self.send_all(node, rd)
            self.apply(node, rd)
            raft.advance(rd)
            self.after_advance(node)
            self.settle_reads(node)

    def send_all(self, node: SimNode, rd: Ready) -> None:
        for msg in rd.messages:
            self.stats[type(msg).__name__] += 1
            self.send(node.id, encode(msg), msg.dst)

    def apply(self, node: SimNode, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.stats["snapshots_installed"] += 1
            node.kv.restore(rd.snapshot.data)
        for entry in rd.committed_entries:
            digest = (entry.term, entry.data)
            seen = self.applied.setdefault(entry.index, digest)
            if seen != digest:
                self.violation(
                    f"state machine safety: {node.id} applied {digest} at {entry.index}, "
                    f"another node applied {seen}"
                )
            result = None
            if entry.kind == EntryKind.DATA:
                result = node.kv.apply(entry.index, entry.data)
                op_id = json.loads(entry.data)["id"]
                self.results.setdefault(op_id, result)
                pending = node.pending.pop(op_id, None)
                if pending is not None:
                    self.answer(pending, result, entry)
        for rs in rd.read_states:
            self.read_log.append((node.id, rs))
            waiter = node.round_ctx.pop(rs.context, None)
            if waiter is not None:
                node.answered_rounds.append((waiter, rs.index))

    def after_advance(self, node: SimNode) -> None:
        raft = node.raft
        if raft.applied_index - raft.snapshot_index >= self.cfg.snapshot_every:
            compacted = raft.compact(raft.applied_index, node.kv.snapshot())
            node.storage.write_compaction(compacted)
            node.storage.fsync()

    # ----- checks -------------------------------------------------------------------------------

    def violation(self, text: str) -> None:
        self.violations.append(f"seed {self.seed} t={self.now}ms: {text}")
        raise SafetyViolation(self.violations[-1])

    def check_new_entries(self, node: SimNode, rd: Ready) -> None:
        raft = node.raft
        for entry in rd.entries:
            prev_term = raft.term_at(entry.index - 1)
            key = (entry.index, entry.term)
            record = (int(entry.kind), entry.data, prev_term)
            seen = self.entry_registry.setdefault(key, record)
            if seen != record:
                self.violation(
                    f"log matching: {node.id} holds a different entry at index {entry.index} "
                    f"term {entry.term}"
                )

    def _check_global(self) -> None:
        for node in self.nodes.values():
            if not node.alive:
                continue
            raft = node.raft
            if raft.role == Role.LEADER:
                holder = self.leader_of_term.setdefault(raft.term, node.id)
                if holder != node.id:
                    self.violation(f"election safety: {holder} and {node.id} lead term {raft.term}")
                if node.last_role != Role.LEADER:
                    self.check_leader_completeness(node)
            node.last_role = raft.role
            if raft.commit_index > node.last_commit:
                self.record_commits(node, node.last_commit + 1, raft.commit_index)
                node.last_commit = raft.commit_index

    def check_leader_completeness(self, node: SimNode) -> None:
        raft = node.raft
        index = max(
            (i for term, i in self.max_committed_in_term.items() if term < raft.term), default=0
        )
        if index == 0 or index <= raft.snapshot_index:
            return
        if raft.term_at(index) != self.committed_terms.get(index):
            self.violation(
                f"leader completeness: new leader {node.id} (term {raft.term}) lacks committed "
                f"index {index} of term {self.committed_terms.get(index)}"
            )

    def record_commits(self, node: SimNode, lo: int, hi: int) -> None:
        raft = node.raft
        for index in range(max(lo, raft.first_index), hi + 1):
            term = raft.term_at(index)
            known = self.committed_terms.setdefault(index, term)
            if known != term:
                self.violation(
                    f"committed entry changed: index {index} committed with term {known}, "
                    f"{node.id} commits term {term}"
                )
        self.max_committed = max(self.max_committed, hi)
        known_in_term = self.max_committed_in_term.get(raft.term, 0)
        self.max_committed_in_term[raft.term] = max(known_in_term, hi)
        if (
            self.failover_start is not None
            and self.failover_ms is None
            and raft.role == Role.LEADER
            and raft.term > self.failover_term
        ):
            self.failover_ms = self.now - self.failover_start

    # ----- clients ------------------------------------------------------------------------------

    def _on_client(self, client: int) -> None:
        if self.client_busy[client]:
            return
        self.client_ops[client] += 1
        op_id = f"c{client}-{self.client_ops[client]}"
        key = f"k{self.rng.randrange(self.cfg.keys)}"
        roll = self.rng.random()
        if roll < 0.4:
            kind, value, expected = PUT, op_id, None
        elif roll < 0.75:
            kind, value, expected = GET, None, None
        else:
            kind = CAS
            value = op_id
            known = [p.value for p in self.history[-20:] if p.key == key and p.value]
            expected = self.rng.choice(known) if known and self.rng.random() < 0.7 else None
        self.client_busy[client] = True
        self.attempt(Pending(client, op_id, kind, key, value, expected, (0, 0)), 0)

    def attempt(self, pending: Pending, tries: int) -> None:
        target = self.client_leader[pending.client]
        if target is None or target not in self.nodes or self.rng.random() < self.cfg.any_server:
            target = self.rng.choice(sorted(self.nodes))
        self.at(self.now + self.rng.randint(1, 3), "request", (target, pending, tries))

    def _on_request(self, payload: tuple[str, Pending, int]) -> None:
        target, pending, tries = payload
        node = self.nodes[target]
        client = pending.client
        result: NotLeader | Refused | None = NotLeader(None)
        if node.alive:
            pending.call = (self.now, self.seq)
            result = self.take_request(node, pending)
            self.process(node)
        if result is None:
            raft = node.raft  # None if the server crashed meanwhile
            leads = raft is not None and raft.role == Role.LEADER
            self.client_leader[client] = target if leads or raft is None else raft.leader_id
            self.at(self.now + self.cfg.client_timeout_ms, "client_timeout", pending.op_id)
            return
        hint = result.leader_id if isinstance(result, NotLeader) else None
        self.client_leader[client] = hint if hint in self.nodes else None
        if tries < 50:
            retry = self.now + self.rng.randint(5, 20)
            self.at(retry, "retry", (pending, tries + 1))
        else:
            self.client_busy[client] = False
            self.at(self.now + 10, "client", client)

    def take_request(self, node: SimNode, pending: Pending) -> NotLeader | Refused | None:
        """What the driver does with a client's request; None when it took it."""
        raft = node.raft
        leads = raft.role == Role.LEADER
        leader = raft.leader_id if raft.leader_id in self.nodes else None
        if pending.kind == GET and self.cfg.unsafe_follower_local_reads and not leads:
            self.stats["unsafe_local_reads"] += 1
            self.unanswered[pending.op_id] = pending
            self.answer(pending, node.kv.data.get(pending.key), None)
            return None
        if not leads and leader in (None, node.id):
            return NotLeader(raft.leader_id)
        if pending.kind == GET:
            self.stats["reads_on_leader" if leads else "reads_on_follower"] += 1
            node.reads[pending.op_id] = pending
            self.unanswered[pending.op_id] = pending
            self.join_read(node, ("client", pending.op_id))
            return None
        cmd = {"id": pending.op_id, "op": pending.kind, "key": pending.key}
        cmd.update(value=pending.value, expected=pending.expected)
        data = json.dumps(cmd, sort_keys=True).encode()
        if not leads:
            # Forwarded: the leader places it, this server answers once it applied it.
            self.stats["writes_forwarded"] += 1
            node.pending[pending.op_id] = pending
            self.unanswered[pending.op_id] = pending
            self.accepted_writes[pending.op_id] = pending
            self.send_rpc(node.id, leader, "propose", (node.incarnation, pending.op_id, data))
            return None
        result = raft.propose(data)
        if not isinstance(result, Proposal):
            return result
        pending.proposal = result
        node.pending[pending.op_id] = pending
        self.unanswered[pending.op_id] = pending
        self.accepted_writes[pending.op_id] = pending
        return None

    def fail_request(self, pending: Pending) -> None:
        """The server answers an error (503): the operation did not take effect."""
        if self.unanswered.pop(pending.op_id, None) is not None:
            self.stats["requests_failed"] += 1
            self.next_client_op(pending.client)

    # ----- requests between servers (RPC over TCP: delayed, dropped, never duplicated) ---------

    def send_rpc(self, src: str, dst: str, kind: str, data: tuple) -> None:
        if (src, dst) in self.blocked or self.rng.random() < self.cfg.drop:
            return
        delay = self.rng.randint(self.cfg.delay_min_ms, self.cfg.delay_max_ms)
        if self.rng.random() < self.cfg.long_delay:
            delay += self.rng.randint(20, 120)
        self.at(self.now + delay, "rpc", (kind, src, dst, data))

    def _on_rpc(self, payload: tuple[str, str, str, tuple]) -> None:
        kind, src, dst, data = payload
        node = self.nodes.get(dst)
        if node is not None and node.alive:
            getattr(self, "_rpc_" + kind)(node, src, data)
            self.process(node)
        elif kind == "term" and node is not None:  # a dead process: the connection is refused
            self.send_rpc(dst, src, "term_reply", (*data, None))

    def _rpc_propose(self, node: SimNode, src: str, data: tuple[int, str, bytes]) -> None:
        incarnation, op_id, command = data
        if not isinstance(node.raft.propose(command), Proposal):
            self.send_rpc(node.id, src, "propose_failed", (incarnation, op_id))

    def _rpc_propose_failed(self, node: SimNode, src: str, data: tuple[int, str]) -> None:
        incarnation, op_id = data
        pending = node.pending.pop(op_id, None) if incarnation == node.incarnation else None
        if pending is not None:
            self.fail_request(pending)

    def _rpc_read(self, node: SimNode, src: str, data: tuple[int, int, int | None]) -> None:
        """A follower's round on the leader ("raft.read_index"): confirmed with the follower's
        term, or, without one, in the leader's next round."""
        incarnation, round_id, term = data
        if node.raft.role != Role.LEADER:
            self.send_rpc(node.id, src, "read_reply", (incarnation, round_id, None))
            return
        member = ("server", src, incarnation, round_id)
        if term is None:
            self.join_read(node, member)
            return
        node.served += 1
        context = b"via:%d" % node.served
        if isinstance(node.raft.read_index(context, src, term), NotLeader):
            self.send_rpc(node.id, src, "read_reply", (incarnation, round_id, None))
        else:
            node.round_ctx[context] = member

    def _rpc_read_reply(self, node: SimNode, src: str, data: tuple[int, int, int | None]) -> None:
        incarnation, round_id, index = data
        if incarnation == node.incarnation:
            self.end_round(node, round_id, index)

    # ----- the driver's read path ---------------------------------------------------------------

    def join_read(self, node: SimNode, member: tuple) -> None:
        round_id = node.rounds.add(member, self.now)
        if round_id is not None:
            self.start_round(node, round_id)

    def start_round(self, node: SimNode, round_id: int) -> None:
        self.stats["read_rounds"] += 1
        limit = self.cfg.raft.election_timeout_max_ms
        self.at(self.now + limit, "round_limit", (node.id, node.incarnation, round_id))
        raft = node.raft
        if raft.role == Role.LEADER:
            # Voters with an open connection (alive) are asked; a process that dies meanwhile
            # answers an error (its connection is refused or lost).
            others = [v for v in raft.voters if v != node.id and v in self.nodes]
            others = [v for v in others if self.nodes[v].alive]
            if not others or self.rng.random() < 0.3:  # no voter asked: heartbeats alone
                self.begin_core_round(node, round_id, None, 0)
                return
            node.asked[round_id] = False
            for voter in others:
                self.send_rpc(node.id, voter, "term", (node.incarnation, round_id))
            return
        leader = raft.leader_id
        if leader not in self.nodes or leader == node.id:
            self.end_round(node, round_id, None)
            return
        term = raft.term if self.rng.random() < 0.8 else None
        self.send_rpc(node.id, leader, "read", (node.incarnation, round_id, term))

    def _rpc_term(self, node: SimNode, src: str, data: tuple[int, int]) -> None:
        """ "raft.term": this server's term now (the driver answers on its RPC thread)."""
        self.send_rpc(node.id, src, "term_reply", (*data, node.raft.term))

    def _rpc_term_reply(self, node: SimNode, src: str, data: tuple[int, int, int | None]) -> None:
        """The first answer decides (a term: `via`; an error: heartbeats alone)."""
        incarnation, round_id, term = data
        if incarnation != node.incarnation or node.asked.get(round_id) is not False:
            return
        node.asked[round_id] = True
        if node.rounds.in_flight != round_id:
            return  # given up meanwhile
        self.begin_core_round(node, round_id, src if term is not None else None, term or 0)

    def begin_core_round(self, node: SimNode, round_id: int, via: str | None, term: int) -> None:
        context = b"read:%d" % round_id
        if isinstance(node.raft.read_index(context, via, term), NotLeader):
            self.end_round(node, round_id, None)
        else:
            node.round_ctx[context] = round_id

    def end_round(self, node: SimNode, round_id: int, index: int | None) -> None:
        done, following = node.rounds.finish(round_id, self.now)
        for member in done:
            if member[0] == "server":
                _, follower, incarnation, their_round = member
                self.send_rpc(node.id, follower, "read_reply", (incarnation, their_round, index))
                continue
            pending = node.reads.get(member[1])
            if pending is None:
                continue  # the client gave up
            if index is None:
                del node.reads[member[1]]
                self.fail_request(pending)
            else:
                pending.read_index = index
        if following is not None:
            self.start_round(node, following)
        self.serve_reads(node)

    def _on_round_limit(self, payload: tuple[str, int, int]) -> None:
        node_id, incarnation, round_id = payload
        node = self.nodes[node_id]
        if node.alive and node.incarnation == incarnation and node.rounds.in_flight == round_id:
            self.stats["read_rounds_given_up"] += 1
            self.end_round(node, round_id, None)
            self.process(node)

    def settle_reads(self, node: SimNode) -> None:
        """After a Ready: rounds it answered end; a server that no longer leads fails its
        rounds (the core dropped them); reads whose index is applied are answered."""
        answered, node.answered_rounds = node.answered_rounds, []
        if node.round_ctx and node.raft.role != Role.LEADER:
            answered += [(waiter, None) for waiter in node.round_ctx.values()]
            node.round_ctx = {}
        for waiter, index in answered:
            if isinstance(waiter, int):
                self.end_round(node, waiter, index)
            else:
                _, follower, incarnation, their_round = waiter
                self.send_rpc(node.id, follower, "read_reply", (incarnation, their_round, index))
        self.serve_reads(node)

    def serve_reads(self, node: SimNode) -> None:
        applied = node.raft.applied_index
        for op_id, pending in list(node.reads.items()):
            if pending.read_index is not None and pending.read_index <= applied:
                del node.reads[op_id]
                self.answer(pending, node.kv.data.get(pending.key), None)

    def _on_retry(self, payload: tuple[Pending, int]) -> None:
        self.attempt(*payload)

    def answer(self, pending: Pending, output: Any, entry: Entry | None) -> None:
        if self.unanswered.pop(pending.op_id, None) is None:
            return
        self.at(self.now + self.rng.randint(1, 3), "reply", (pending, output, entry))

    def _on_reply(self, payload: tuple[Pending, Any, Entry | None]) -> None:
        pending, output, entry = payload
        ret = self.now + self.seq / 10**9
        call = pending.call[0] + pending.call[1] / 10**9
        self.history.append(
            Op(
                pending.client,
                pending.kind,
                pending.key,
                pending.value,
                pending.expected,
                None if pending.kind == PUT else output,
                call,
                ret,
            )
        )
        self.completed.add(pending.op_id)
        if entry is not None:
            self.acked.append((pending.op_id, entry.index, entry.term))
        self.next_client_op(pending.client)

    def _on_client_timeout(self, op_id: str) -> None:
        pending = self.unanswered.pop(op_id, None)
        if pending is None:
            return
        for node in self.nodes.values():
            node.pending.pop(op_id, None)
            node.reads.pop(op_id, None)
        self.next_client_op(pending.client)

    def next_client_op(self, client: int) -> None:
        self.client_busy[client] = False
        if self.faults_on:
            self.at(self.now + self.rng.randint(1, 30), "client", client)

    # ----- faults -------------------------------------------------------------------------------

    def _on_fault(self, _: Any) -> None:
        if not self.faults_on:
            return
        self.at(self.now + self.rng.randint(*self.cfg.fault_every_ms), "fault")
        live = sorted(n for n, node in self.nodes.items() if node.alive)
        everyone = sorted(n for n, node in self.nodes.items() if not node.retired)
        roll = self.rng.random()
        if roll < 0.2 and live:
            victim = self.current_leader() if self.rng.random() < 0.5 else None
            victim = victim or self.rng.choice(live)
            self._crash(victim)
            self.at(self.now + self.rng.randint(100, 1200), "restart", victim)
        elif roll < 0.4:
            self.partition(everyone)
        elif roll < 0.5:
            self.blocked.clear()
        elif roll < 0.7 and self.cfg.membership_changes:
            self.change_membership()
        elif roll < 0.8:
            leader = self.current_leader()
            if leader is not None:
                voters = [v for v in self.nodes[leader].raft.voters if v != leader]
                if voters:
                    self.nodes[leader].raft.transfer_leadership(self.rng.choice(voters))
                    self.process(self.nodes[leader])
        elif roll < 0.85:
            for node_id in live:
                self._crash(node_id)
                self.at(self.now + self.rng.randint(50, 500), "restart", node_id)
        elif roll < 0.9 and live:
            # A node's clock jumps forward (its timers all fire at once).
            self.stats["clock_jumps"] += 1
            self.nodes[self.rng.choice(live)].clock_skew += self.rng.randint(100, 3000)
        else:
            self.blocked.clear()

    def partition(self, nodes: list[str]) -> None:
        self.stats["partitions"] += 1
        self.blocked.clear()
        style = self.rng.random()
        if style < 0.4:
            group = set(self.rng.sample(nodes, self.rng.randint(1, max(1, len(nodes) // 2))))
            for a in nodes:
                for b in nodes:
                    if (a in group) != (b in group):
                        self.blocked.add((a, b))
        elif style < 0.7:
            a, b = self.rng.sample(nodes, 2)
            self.blocked.add((a, b))
            if self.rng.random() < 0.5:
                self.blocked.add((b, a))
        else:
            victim = self.rng.choice(nodes)
            for other in nodes:
                if other != victim:
                    self.blocked.add((victim, other) if style < 0.85 else (other, victim))

    def change_membership(self) -> None:
        leader = self.current_leader()
        if leader is None:
            return
        raft = self.nodes[leader].raft
        voters, learners = list(raft.voters), list(raft.learners)
        if learners and self.rng.random() < 0.4:
            # A learner that has (or has not yet) caught up becomes a voter.
            result = raft.propose_conf_change(ConfChange("add", self.rng.choice(learners)))
            if isinstance(result, Proposal):
                self.stats["learners_promoted"] += 1
        elif len(voters) < 5 and (len(voters) <= 3 or self.rng.random() < 0.5):
            new_id = f"n{self.next_node}"
            op = "add_learner" if self.rng.random() < 0.5 else "add"
            result = raft.propose_conf_change(ConfChange(op, new_id))
            if isinstance(result, Proposal):
                self.stats["members_added"] += 1
                self.stats["learners_added"] += op == "add_learner"
                self.next_node += 1
                node = SimNode(new_id, [], self)
                self.nodes[new_id] = node
                node.start()
                self.at(self.now + 1, "tick", new_id)
        else:
            victim = self.rng.choice(voters + learners)
            result = raft.propose_conf_change(ConfChange("remove", victim))
            if isinstance(result, Proposal):
                self.stats["members_removed"] += 1
                self.at(self.now + 2000, "retire", (victim, result.index, result.term))
        self.process(self.nodes[leader])

    def _on_retire(self, payload: tuple[str, int, int]) -> None:
        """A removed server is shut down for good once its removal is committed; if the
        removal entry was lost instead, the server simply stays."""
        node_id, index, term = payload
        leader = self.current_leader()
        if leader is None:
            self.at(self.now + 500, "retire", payload)
            return
        raft = self.nodes[leader].raft
        held = raft.term_at(index)
        if held is not None and held != term:
            return  # the removal never committed: it was replaced
        if raft.commit_index >= index and node_id not in (*raft.voters, *raft.learners):
            self.nodes[node_id].retired = True
            self.nodes[node_id].crash()
        else:
            self.at(self.now + 500, "retire", payload)

    def _crash(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.alive:
            self.stats["crashes"] += 1
            node.crash()

    def _on_restart(self, node_id: str) -> None:
        self._restart(node_id)

    def _restart(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.alive or node.retired:
            return
        node.start()
        self.at(self.now + 1, "tick", node_id)

    # ----- end of run ---------------------------------------------------------------------------

    def finish(self) -> Outcome:
        leader = self.current_leader()
        if leader is not None:
            lead = self.nodes[leader].raft
            for op_id, index, term in self.acked:
                if index > lead.commit_index:
                    self.violations.append(f"acknowledged write {op_id} at {index} not committed")
                elif index > lead.snapshot_index and lead.term_at(index) not in (term, None):
                    self.violations.append(f"acknowledged write {op_id} at {index} was lost")
            states = {
                json.dumps(self.nodes[v].kv.data, sort_keys=True)
                for v in lead.voters
                if self.nodes[v].alive
            }
            if len(states) > 1:
                self.violations.append("voters ended with different state machines")
        history = list(self.history)
        for op_id, pending in self.accepted_writes.items():
            # Writes without an answer may have taken effect; those that did are pending ops.
            if op_id not in self.completed and op_id in self.results:
                output = self.results[pending.op_id]
                history.append(
                    Op(
                        pending.client,
                        pending.kind,
                        pending.key,
                        pending.value,
                        pending.expected,
                        None if pending.kind == PUT else output,
                        pending.call[0] + pending.call[1] / 10**9,
                        None,
                    )
                )
        verdict = check_kv(history)
        if not verdict.ok:
            self.violations.append(
                f"seed {self.seed}: history not linearizable on key {verdict.bad_key}"
            )
        return Outcome(
            violations=list(self.violations),
            trace_digest=self.trace.hexdigest(),
            history=history,
            failover_ms=self.failover_ms,
            acked_writes=len(self.acked),
            events=self.events,
            leaders=len(self.leader_of_term),
            stats=self.stats,
        )


Filter = Callable[[Message], "bool | Message"]


class Cluster(Simulation):
    """Scripted harness for named scenarios: the test decides which messages arrive and when
    time moves; every step runs the same safety checks as the seeded simulator."""

    def __init__(self, voters: int, raft: RaftConfig | None = None, seed: int = 0) -> None:
        cfg = SimConfig(
            voters=voters,
            raft=raft or RaftConfig(),
            snapshot_every=10**9,
            membership_changes=False,
        )
        super().__init__(seed, cfg)
        self.outbox: list[Message] = []
        self.ops = 0
        for node in self.nodes.values():
            node.start()
            node.raft.tick(0)

    def send(self, src: str, frame: bytes, dst: str) -> None:
        if (src, dst) not in self.blocked:
            self.outbox.append(decode(frame))

    def _on_restart(self, node_id: str) -> None:
        """Scripted runs restart nodes explicitly."""

    def raft(self, node_id: str) -> RaftNode:
        return self.nodes[node_id].raft

    def deliver(self, allow: Filter | None = None, rounds: int = 200) -> None:
        """Deliver queued messages (and those they cause) until quiet. `allow(msg)` returns
        False to drop a message, True to deliver it, or a replacement message to deliver."""
        for _ in range(rounds):
            if not self.outbox:
                return
            batch, self.outbox = self.outbox, []
            for msg in batch:
                verdict = True if allow is None else allow(msg)
                if verdict is False or verdict is None:
                    continue
                if verdict is not True:
                    msg = verdict
                node = self.nodes.get(msg.dst)
                if node is not None and node.alive:
                    node.raft.step(msg)
                    self.process(node)
                    self._check_global()

    def tick(self, ms: int, allow: Filter | None = None) -> None:
        """Move time forward in 10 ms steps, ticking every node and delivering in between."""
        for _ in range(max(1, ms // 10)):
            self.now += 10
            for node in list(self.nodes.values()):
                if node.alive:
                    node.raft.tick(self.now)
                    self.process(node)
            self._check_global()
            self.deliver(allow)

    def campaign(self, node_id: str, allow: Filter | None = None) -> None:
        """Make `node_id` start an election now (as TimeoutNow would) and run it."""
        raft = self.raft(node_id)
        raft.step(TimeoutNow(raft.term, raft.leader_id or "test", node_id))
        self.process(self.nodes[node_id])
        self._check_global()
        self.deliver(allow)

    def put(self, node_id: str, key: str, value: str) -> Proposal | NotLeader | Refused:
        self.ops += 1
        cmd = {"id": f"t{self.ops}", "op": PUT, "key": key, "value": value, "expected": None}
        result = self.raft(node_id).propose(json.dumps(cmd, sort_keys=True).encode())
        self.process(self.nodes[node_id])
        return result

    def crash(self, node_id: str) -> None:
        self._crash(node_id)

    def add_node(self, node_id: str) -> SimNode:
        """Start a fresh server that knows no peers and waits to be added."""
        node = SimNode(node_id, [], self)
        self.nodes[node_id] = node
        node.start()
        node.raft.tick(self.now)
        return node

    def restart(self, node_id: str) -> None:
        self._restart(node_id)
        self.nodes[node_id].raft.tick(self.now)


def run_seed(seed: int, cfg: SimConfig | None = None, failover: bool = True) -> Outcome:
    """Run one seed; a safety violation ends the run early and is reported in the outcome."""
    sim = Simulation(seed, cfg)
    try:
        return sim.run(failover=failover)
    except SafetyViolation:
        return Outcome(sim.violations, sim.trace.hexdigest(), sim.history, None, 0, sim.events, 0)
