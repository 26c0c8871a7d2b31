"""Raft consensus core with no I/O: the driver feeds it time and messages and does what it says.

The core never reads a clock, opens a socket or file, or draws its own randomness: time comes
in through `tick(now_ms)`, randomness from the injected `random.Random`, and everything it
wants done comes out of `ready()`. The same object therefore runs in the seeded simulator
(tests/raftsim.py) and in the agent. Messages are in `raft_messages` (`encode(msg) -> bytes`,
`decode(bytes) -> msg`, `DecodeError`); the durable log is `raft_storage.FileStorage`.

Driving loop (one thread; nothing touches the node between `ready()` and `advance()`)::

    storage = FileStorage(data_dir)
    state = storage.load()
    if state.snapshot: fsm.restore(state.snapshot.data)
    node = RaftNode("a", ["a", "b", "c"], state, random.Random(), RaftConfig())
    loop:
        node.tick(now_ms)                      # every few ms (10 ms is fine)
        node.step(decode(frame))               # for every frame received
        result = node.propose(data)            # Proposal(index, term) | NotLeader | Refused
        while node.has_ready():
            rd = node.ready()
            if rd.snapshot: storage.save_snapshot(rd.snapshot); fsm.restore(rd.snapshot.data)
            storage.append(rd.entries, rd.hard_state)   # entries + hard state, ONE fsync
            for m in rd.messages: send(m.dst, encode(m))  # only after that fsync
            for e in rd.committed_entries:               # in index order
                if e.kind == EntryKind.DATA: result = fsm.apply(e.index, e.data)
                # answer the client whose Proposal was (e.index, e.term)
            for rs in rd.read_states: serve reads with context rs.context once applied >= rs.index
            node.advance(rd)
        if node.applied_index - node.snapshot_index > threshold:
            storage.compact(node.compact(node.applied_index, fsm.snapshot()))

`storage.append(entries, ...)` first drops every stored entry whose index is at least
`entries[0].index` (a follower may replace an uncommitted suffix). A proposal is acknowledged
when the entry (index, term) returned by `propose` is applied; if another term shows up at
that index, the proposal was lost and the client may retry. NOOP and CONFIG entries are
applied by the core itself; the state machine sees only DATA entries.

Public interface:
- `RaftNode(node_id, peers, storage_state, rng, config)`: `peers` is the bootstrap voter set
  (include `node_id`), used only while the stored state holds no configuration; a server that
  joins an existing cluster passes `[]` and waits for the leader to add it.
- Inputs: `tick(now_ms)`, `step(message)`, `propose(data) -> Proposal | NotLeader | Refused`,
  `read_index(context, via=None, via_term=0) -> NotLeader | None` (answer arrives as a
  `ReadState`; `via`: the follower asking for its readers),
  `transfer_leadership(to) -> NotLeader | Refused | None`,
  `propose_conf_change(ConfChange("add" | "add_learner" | "remove", node_id))
  -> Proposal | NotLeader | Refused`,
  `compact(index, snapshot_bytes) -> Compacted`.
- Outputs: `has_ready()`, `ready() -> Ready(messages, entries, hard_state, snapshot,
  committed_entries, read_states, role, leader_id, term)`, `advance(ready)`.
- Read-only: `id`, `role`, `term`, `vote`, `leader_id`, `voters`, `learners`, `commit_index`,
  `applied_index`, `last_index`, `first_index`, `snapshot_index`, `term_at(index)`,
  `entries(lo, hi)`, `status()` (for `raft list-peers` and metrics).
- `StateMachine`: the protocol the job store implements (`apply`, `snapshot`, `restore`).

Protocol features: randomized election timeouts, pre-vote, check-quorum (a leader that does
not hear from a quorum steps down; followers that heard a leader recently ignore votes, so a
rejoining node does not depose a healthy leader), batched and pipelined AppendEntries with a
bounded in-flight window, the current-term commit rule, snapshots with trailing-log
compaction and InstallSnapshot, single-server membership changes (a config is used as soon
as it is in the log; one uncommitted change at a time; refused until the leader has
committed its own no-op, per Ongaro's errata), learners (members the leader replicates to
that neither vote nor count for commits; "add" on a learner promotes it to voter),
leadership transfer with TimeoutNow,
linearizable reads with ReadIndex, and follower commit from peer acknowledgements (followers
that together make a quorum commit an entry of the current term without the leader's word).
A node that is the only voter of its configuration elects itself at its first tick: nobody
else can vote, so waiting out an election timeout would only delay the first write.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple, Protocol

from .raft_messages import (
    AppendEntries,
    AppendResponse,
    DecodeError,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    PeerAck,
    RequestVote,
    SnapshotMeta,
    TimeoutNow,
    VoteResponse,
    decode,
    decode_config,
    encode,
    encode_voters,
)

__all__ = [
    "Compacted",
    "ConfChange",
    "Configuration",
    "DecodeError",
    "Entry",
    "EntryKind",
    "HardState",
    "Message",
    "NotLeader",
    "Proposal",
    "RaftConfig",
    "RaftNode",
    "ReadState",
    "Ready",
    "Refused",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "StateMachine",
    "StorageState",
    "decode",
    "encode",
]


class StateMachine(Protocol):
    """What the replicated log drives (the job store implements it)."""

    def apply(self, index: int, data: bytes) -> Any: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


class Role(Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Timings in milliseconds and flow-control limits."""

    election_timeout_min_ms: int = 150
    election_timeout_max_ms: int = 300
    heartbeat_ms: int = 50
    max_entries_per_message: int = 512
    max_bytes_per_message: int = 1024 * 1024
    max_inflight: int = 64
    max_committed_per_ready: int = 4096
    trailing_entries: int = 1000
    snapshot_retry_ms: int = 300
    pre_vote: bool = True
    check_quorum: bool = True
    # After a tick gap longer than two heartbeats (this node itself did not run), wait for the
    # messages that queued meanwhile before judging the leader or the quorum by its silence.
    stall_grace: bool = True
    # Followers tell each other what they hold (PeerAck), so a quorum of followers commits
    # without waiting for the leader's next message: a write through a follower is answered
    # one hop sooner.
    peer_acks: bool = True


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before any message that depends on it is sent."""

    term: int = 0
    vote: str | None = None
    commit: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    meta: SnapshotMeta
    data: bytes


@dataclass(slots=True)
class StorageState:
    """Everything a node recovers from its durable storage at start.

    `entries` are the retained log entries, starting at `offset + 1`; `offset_term` is the term
    of the entry at `offset` (the last compacted one), or 0 for an empty log.
    """

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    offset: int = 0
    offset_term: int = 0
    entries: list[Entry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Proposal:
    """Accepted proposal: acknowledged once the entry (index, term) is applied."""

    index: int
    term: int


@dataclass(frozen=True, slots=True)
class NotLeader:
    """This node cannot take the request; `leader_id` is its best guess of who can (or None)."""

    leader_id: str | None


@dataclass(frozen=True, slots=True)
class Refused:
    """The leader cannot take the request now; `reason` says why. Retry later."""

    reason: str


@dataclass(frozen=True, slots=True)
class ConfChange:
    """Single-server membership change: op is "add" (a voter, or promote a learner),
    "add_learner" (a member that replicates without a vote) or "remove" (either kind)."""

    op: str
    node_id: str


class Configuration(NamedTuple):
    """The members in force from some index on: voters and learners (disjoint)."""

    voters: tuple[str, ...]
    learners: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReadState:
    """A read with this context is linearizable once the state machine has applied `index`."""

    index: int
    context: bytes


@dataclass(frozen=True, slots=True)
class Compacted:
    """Result of `compact`: persist the snapshot, then drop stored entries up to `offset`."""

    snapshot: Snapshot
    offset: int
    offset_term: int


@dataclass(slots=True)
class Ready:
    """Work for the driver, in this order: persist, send, apply; then call `advance`."""

    messages: list[Message]
    entries: list[Entry]
    hard_state: HardState | None
    snapshot: Snapshot | None
    committed_entries: list[Entry]
    read_states: list[ReadState]
    role: Role
    leader_id: str | None
    term: int


class _Progress:
    """Leader's view of one follower."""

    PROBE, REPLICATE, SNAPSHOT = 0, 1, 2

    __slots__ = ("ack_seq", "inflight", "match", "next", "probe_sent", "recent_active", "state")

    def __init__(self, next_index: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = _Progress.PROBE
        self.probe_sent = 0
        self.inflight: deque[int] = deque()
        self.recent_active = False
        self.ack_seq = 0

    def become_probe(self) -> None:
        self.state = _Progress.PROBE
        self.next = self.match + 1
        self.probe_sent = 0
        self.inflight.clear()

    def become_replicate(self) -> None:
        self.state = _Progress.REPLICATE
        self.next = self.match + 1
        self.inflight.clear()


@dataclass(slots=True)
class _PendingRead:
    context: bytes
    index: int
    seq: int
    via: str | None = None  # a voter whose own request confirms this leadership


def _malformed(msg: Message) -> str | None:
    """Why a decoded message cannot be from a correct peer (it is then dropped and counted)."""
    if isinstance(msg, AppendEntries):
        expected, prev_term = msg.prev_index + 1, msg.prev_term
        for entry in msg.entries:
            if entry.index != expected:
                return "entries not contiguous after prev_index"
            if entry.term < prev_term or entry.term > msg.term:
                return "entry terms out of order"
            if entry.kind == EntryKind.CONFIG:
                try:
                    decode_config(entry.data)
                except DecodeError:
                    return "undecodable configuration entry"
            expected, prev_term = expected + 1, entry.term
    elif isinstance(msg, InstallSnapshot) and (
        msg.meta.term > msg.term or msg.meta.index == 0 or not msg.meta.voters
    ):
        return "snapshot metadata out of range"
    return None


class RaftNode:
    """One Raft participant; see the module docstring for how to drive it."""

    def __init__(
        self,
        node_id: str,
        peers: list[str] | tuple[str, ...],
        storage_state: StorageState | None,
        rng: random.Random,
        config: RaftConfig | None = None,
    ) -> None:
        state = storage_state or StorageState()
        self.id = node_id
        self.cfg = config or RaftConfig()
        self.rng = rng
        self.term = state.hard_state.term
        self.vote = state.hard_state.vote
        self.role = Role.FOLLOWER
        self.leader_id: str | None = None
        self.now = 0
        self._log: list[Entry] = list(state.entries)
        self._offset = state.offset
        self._offset_term = state.offset_term
        self._snapshot = state.snapshot
        snap_index = state.snapshot.meta.index if state.snapshot else 0
        self.commit_index = max(state.hard_state.commit, snap_index)
        self.commit_index = min(self.commit_index, max(self.last_index, snap_index))
        self.applied_index = snap_index
        self._unstable_from = self.last_index + 1
        self._pending_snapshot: Snapshot | None = None
        if state.snapshot is not None:
            meta = state.snapshot.meta
            self._base_config = Configuration(meta.voters, meta.learners)
        else:
            self._base_config = Configuration(tuple(sorted(set(peers))))
        self._config_log: list[tuple[int, Configuration]] = [
            (e.index, Configuration(*decode_config(e.data)))
            for e in self._log
            if e.kind == EntryKind.CONFIG
        ]
        self._msgs: list[Message] = []
        self._read_states: list[ReadState] = []
        self._prev_hard = HardState(self.term, self.vote, self.commit_index)
        self._progress: dict[str, _Progress] = {}
        self._votes: dict[str, bool] = {}
        self._election_deadline = 0
        self._last_leader_contact = -(10**12)
        self._heartbeat_due = 0
        self._quorum_check_due = 0
        self._transferee: str | None = None
        self._transfer_deadline = 0
        self._snapshot_sent_at: dict[str, int] = {}
        self._hb_seq = 0
        self._pending_reads: deque[_PendingRead] = deque()
        self._waiting_reads: list[tuple[bytes, str | None]] = []
        self._ticked = False
        self.rejected: Counter[str] = Counter()
        # Why the role last changed, for operators reading the log of an unstable cluster.
        self.role_reason = "start"
        self._vote_resend_due = 0
        self._campaign_transfer = False
        # Follower commit from peer acknowledgements, valid for `_acks_term` only: how far this
        # node's log is known to match the leader's, and what other followers said of theirs.
        self._acks_term = 0
        self._own_match = 0
        self._peer_match: dict[str, int] = {}
        self._reset_election_timer()

    # ----- read-only views -------------------------------------------------------------------

    @property
    def config(self) -> Configuration:
        """The configuration in force: the newest one in the log (committed or not)."""
        return self._config_log[-1][1] if self._config_log else self._base_config

    @property
    def voters(self) -> tuple[str, ...]:
        return self.config.voters

    @property
    def learners(self) -> tuple[str, ...]:
        return self.config.learners

    @property
    def last_index(self) -> int:
        return self._log[-1].index if self._log else self._offset

    @property
    def last_term(self) -> int:
        return self._log[-1].term if self._log else self._offset_term

    @property
    def first_index(self) -> int:
        """Index of the first entry still held in the log."""
        return self._offset + 1

    @property
    def snapshot_index(self) -> int:
        return self._snapshot.meta.index if self._snapshot else 0

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def term_at(self, index: int) -> int | None:
        """Term of the entry at `index`, or None when it is compacted away or beyond the log."""
        if index == self._offset:
            return self._offset_term
        if index < self._offset or index > self.last_index:
            return None
        return self._log[index - self._offset - 1].term

    def entries(self, lo: int, hi: int) -> list[Entry]:
        """Entries with lo <= index < hi (both clamped to what the log holds)."""
        lo = max(lo, self._offset + 1)
        hi = min(hi, self.last_index + 1)
        if lo >= hi:
            return []
        return self._log[lo - self._offset - 1 : hi - self._offset - 1]

    def status(self) -> dict[str, Any]:
        """A plain summary: role, term, leader, indices and, on a leader, each peer's match."""
        peers = {
            peer: {"match": pr.match, "next": pr.next, "active": pr.recent_active}
            for peer, pr in self._progress.items()
        }
        return {
            "id": self.id,
            "role": self.role.value,
            "term": self.term,
            "leader": self.leader_id,
            "voters": list(self.voters),
            "learners": list(self.learners),
            "commit_index": self.commit_index,
            "applied_index": self.applied_index,
            "last_index": self.last_index,
            "snapshot_index": self.snapshot_index,
            "peers": peers,
        }

    def _quorum(self) -> int:
        return len(self.voters) // 2 + 1

    # ----- inputs ------------------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Advance time; fires election, heartbeat, check-quorum and transfer timers."""
        if not self._ticked:
            self._ticked = True
            self.now = now_ms
            self._reset_election_timer()
            if self.voters == (self.id,) and self.role == Role.FOLLOWER:
                self.role_reason = "the only voter"
                self._campaign(pre_vote=self.cfg.pre_vote, transfer=False)
            return
        gap = now_ms - self.now
        self.now = max(self.now, now_ms)
        if self.cfg.stall_grace and gap > 2 * self.cfg.heartbeat_ms:
            self._after_own_stall()
        if self.role == Role.LEADER:
            self._tick_leader()
        elif self.now >= self._election_deadline:
            if self.id in self.voters:
                silent = self.now - self._last_leader_contact
                self.role_reason = (
                    f"no word from leader {self.leader_id} for {silent} ms"
                    if self.leader_id is not None and silent < 10**9
                    else "no leader known"
                )
                self._campaign(pre_vote=self.cfg.pre_vote, transfer=False)
            else:
                self._reset_election_timer()
        elif self.role != Role.FOLLOWER and self.now >= self._vote_resend_due:
            # Lost vote requests would otherwise cost a whole election timeout.
            self._request_votes(self.role == Role.PRE_CANDIDATE, self._campaign_transfer)

    def _after_own_stall(self) -> None:
        """A paused process or a starved machine: what this node did not hear while it was not
        running says nothing about the others, and their messages are still queued for it."""
        grace = 2 * self.cfg.heartbeat_ms
        if self.role == Role.LEADER:
            self._quorum_check_due = max(
                self._quorum_check_due, self.now + self.cfg.election_timeout_min_ms
            )
        else:
            self._election_deadline = max(self._election_deadline, self.now + grace)

    def _tick_leader(self) -> None:
        if self._transferee is not None and self.now >= self._transfer_deadline:
            self._transferee = None
        if self.cfg.check_quorum and self.now >= self._quorum_check_due:
            self._quorum_check_due = self.now + self.cfg.election_timeout_min_ms
            active = sum(
                1
                for v in self.voters
                if v == self.id or (v in self._progress and self._progress[v].recent_active)
            )
            for pr in self._progress.values():
                pr.recent_active = False
            if active < self._quorum():
                self.role_reason = (
                    f"check-quorum: {active} of {len(self.voters)} voters heard from"
                    f" in {self.cfg.election_timeout_min_ms} ms"
                )
                self._become_follower(self.term, None)
                return
        if self.now >= self._heartbeat_due:
            self._heartbeat_due = self.now + self.cfg.heartbeat_ms
            # While reads wait, the periodic heartbeat repeats the newest read's sequence: it
            # is sent after every waiting read began, so its answers confirm them all, even
            # when the read's own heartbeats were lost.
            self._broadcast_heartbeat(self._hb_seq if self._pending_reads else 0)
            for peer, pr in self._progress.items():
                if pr.state == _Progress.PROBE:
                    pr.probe_sent = 0
                elif pr.state == _Progress.SNAPSHOT:
                    sent = self._snapshot_sent_at.get(peer, 0)
                    if self.now - sent >= self.cfg.snapshot_retry_ms:
                        pr.become_probe()

    def step(self, msg: Message) -> None:
        """Handle one received message (already decoded). Messages not for us are ignored."""
        if msg.dst != self.id or msg.src == self.id:
            return
        problem = _malformed(msg)
        if problem is not None:
            self.rejected[problem] += 1
            return
        if isinstance(msg, PeerAck):
            self._on_peer_ack(msg)  # advisory: never changes this node's term or role
            return
        if msg.term > self.term:
            newer = f"{type(msg).__name__} from {msg.src} in term {msg.term}"
            if isinstance(msg, RequestVote):
                in_lease = (
                    self.cfg.check_quorum
                    and self.leader_id is not None
                    and self.now - self._last_leader_contact < self.cfg.election_timeout_min_ms
                )
                if self.role == Role.LEADER and self.cfg.check_quorum:
                    in_lease = True
                if in_lease and not msg.transfer:
                    return
                if not msg.pre_vote:
                    self.role_reason = newer
                    self._become_follower(msg.term, None)
            elif isinstance(msg, VoteResponse) and msg.pre_vote and msg.granted:
                pass
            elif isinstance(msg, (AppendEntries, Heartbeat, InstallSnapshot)):
                self.role_reason = newer
                self._become_follower(msg.term, msg.src)
            else:
                self.role_reason = newer
                self._become_follower(msg.term, None)
        elif msg.term < self.term:
            if isinstance(msg, (AppendEntries, Heartbeat)):
                # A stale leader learns our term and steps down (needed with check-quorum).
                self._send(AppendResponse(self.term, self.id, msg.src, False, 0, 0))
            elif isinstance(msg, RequestVote) and msg.pre_vote:
                self._send(VoteResponse(self.term, self.id, msg.src, False, True))
            return
        if isinstance(msg, RequestVote):
            self._on_request_vote(msg)
        elif isinstance(msg, VoteResponse):
            self._on_vote_response(msg)
        elif isinstance(msg, AppendEntries):
            self._on_append(msg)
        elif isinstance(msg, AppendResponse):
            self._on_append_response(msg)
        elif isinstance(msg, Heartbeat):
            self._on_heartbeat(msg)
        elif isinstance(msg, HeartbeatResponse):
            self._on_heartbeat_response(msg)
        elif isinstance(msg, InstallSnapshot):
            self._on_snapshot(msg)
        elif isinstance(msg, TimeoutNow):
            self._on_timeout_now(msg)

    def _on_timeout_now(self, msg: TimeoutNow) -> None:
        """Only the current leader (or anyone, when we know no leader) may trigger this; a
        late or duplicated TimeoutNow from an old leader must not start an election."""
        if self.id not in self.voters or self.role == Role.LEADER:
            return
        if self.leader_id is not None and msg.src != self.leader_id:
            return
        self.role_reason = "leadership transferred here"
        self._campaign(pre_vote=False, transfer=True)

    def propose(self, data: bytes) -> Proposal | NotLeader | Refused:
        """Append application data to the log (leader only)."""
        if self.role != Role.LEADER:
            return NotLeader(self.leader_id)
        if self._transferee is not None:
            return Refused(f"leadership is being transferred to {self._transferee}")
        entry = self._append_local(EntryKind.DATA, bytes(data))
        return Proposal(entry.index, entry.term)

    def propose_conf_change(self, change: ConfChange) -> Proposal | NotLeader | Refused:
        """Add, promote or remove one member. Refused while another change is uncommitted or
        before the leader has committed an entry of its own term (Ongaro's single-server
        errata)."""
        if self.role != Role.LEADER:
            return NotLeader(self.leader_id)
        if change.op not in ("add", "add_learner", "remove"):
            return Refused(
                f"unknown membership operation {change.op!r}: use add, add_learner or remove"
            )
        if self._transferee is not None:
            return Refused("leadership transfer in progress")
        if self.term_at(self.commit_index) != self.term:
            return Refused("leader has not committed an entry of its term yet")
        if self._config_log and self._config_log[-1][0] > self.commit_index:
            return Refused("another membership change is not committed yet")
        voters, learners = set(self.voters), set(self.learners)
        node = change.node_id
        if change.op in ("add", "add_learner") and node in voters:
            return Refused(f"{node} is already a voter")
        if change.op == "add":
            voters.add(node)
            learners.discard(node)
        elif change.op == "add_learner":
            if node in learners:
                return Refused(f"{node} is already a learner")
            learners.add(node)
        else:
            if node not in voters and node not in learners:
                return Refused(f"{node} is not a voter")
            if voters == {node}:
                return Refused("cannot remove the last voter")
            voters.discard(node)
            learners.discard(node)
        data = encode_voters(tuple(sorted(voters)), tuple(sorted(learners)))
        entry = self._append_local(EntryKind.CONFIG, data)
        return Proposal(entry.index, entry.term)

    def read_index(
        self, context: bytes, via: str | None = None, via_term: int = 0
    ) -> NotLeader | None:
        """Ask for a linearizable read point; the answer comes as a ReadState in `ready()`.

        `via` is a follower asking on behalf of its readers, `via_term` its term when it asked
        (after those reads began). Being in a term no later than this leader's then, it had
        voted in no later term: it counts toward the quorum that must confirm this leadership
        after the reads began, so with three voters the answer needs no heartbeat round."""
        if self.role != Role.LEADER:
            return NotLeader(self.leader_id)
        if via is not None and (via == self.id or via not in self.voters or via_term > self.term):
            via = None  # no confirmation from it: the heartbeat round decides alone
        if self.term_at(self.commit_index) != self.term:
            self._waiting_reads.append((context, via))
            return None
        self._start_read(context, via)
        return None

    def transfer_leadership(self, to: str) -> NotLeader | Refused | None:
        """Hand leadership to `to` (graceful leave): catch it up, then send TimeoutNow."""
        if self.role != Role.LEADER:
            return NotLeader(self.leader_id)
        if to == self.id:
            return Refused("already the leader")
        if to not in self.voters or to not in self._progress:
            return Refused(f"{to} is not a voter")
        self._transferee = to
        self._transfer_deadline = self.now + self.cfg.election_timeout_max_ms
        pr = self._progress[to]
        if pr.match == self.last_index:
            self._send(TimeoutNow(self.term, self.id, to))
        else:
            self._send_append(to, allow_empty=True)
        return None

    def compact(self, index: int, data: bytes) -> Compacted:
        """Record a state-machine snapshot taken at `index` (<= applied) and drop old entries,
        keeping `trailing_entries` so slow followers can still catch up from the log."""
        if index > self.applied_index:
            raise ValueError(f"cannot snapshot index {index} beyond applied {self.applied_index}")
        term = self.term_at(index)
        if term is None:
            if self._snapshot is not None and index == self._snapshot.meta.index:
                term = self._snapshot.meta.term
            else:
                raise ValueError(f"index {index} is no longer in the log")
        cfg = self._config_at(index)
        snap = Snapshot(SnapshotMeta(index, term, cfg.voters, cfg.learners), bytes(data))
        if self._snapshot is None or index > self._snapshot.meta.index:
            self._snapshot = snap
        cut = max(self._offset, min(index - self.cfg.trailing_entries, self._unstable_from - 1))
        self._truncate_prefix(cut)
        return Compacted(self._snapshot, self._offset, self._offset_term)

    # ----- outputs -------------------------------------------------------------------------------

    def has_ready(self) -> bool:
        return bool(
            self._msgs
            or self._read_states
            or self._unstable_from <= self.last_index
            or self._pending_snapshot is not None
            or self.commit_index > self.applied_index
            or self._hard_state() != self._prev_hard
            or (self.role == Role.LEADER and self._has_appends_to_send())
        )

    def ready(self) -> Ready:
        """Collect what must be persisted, sent and applied since the last `advance`."""
        if self.role == Role.LEADER:
            for peer in list(self._progress):
                self._send_append(peer, allow_empty=False)
        hard = self._hard_state()
        apply_from = self.applied_index + 1
        if self._pending_snapshot is not None:
            apply_from = self._pending_snapshot.meta.index + 1
        apply_to = min(self.commit_index, apply_from + self.cfg.max_committed_per_ready - 1)
        rd = Ready(
            messages=self._msgs,
            entries=self.entries(self._unstable_from, self.last_index + 1),
            hard_state=hard if hard != self._prev_hard else None,
            snapshot=self._pending_snapshot,
            committed_entries=self.entries(apply_from, apply_to + 1),
            read_states=self._read_states,
            role=self.role,
            leader_id=self.leader_id,
            term=self.term,
        )
        self._msgs = []
        self._read_states = []
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver has persisted, sent and applied everything in `rd`."""
        if rd.entries:
            self._unstable_from = max(self._unstable_from, rd.entries[-1].index + 1)
            if self.cfg.peer_acks and self._acks_term == self.term:
                self._commit_from_peers()  # peers' acks that came before these were durable
        if rd.snapshot is not None:
            self.applied_index = max(self.applied_index, rd.snapshot.meta.index)
            self._pending_snapshot = None
        if rd.committed_entries:
            self.applied_index = max(self.applied_index, rd.committed_entries[-1].index)
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        removed = self.role == Role.LEADER and self.id not in self.voters
        if removed and self._config_log and self._config_log[-1][0] <= self.commit_index:
            # A removed leader steps down once the change is committed.
            self.role_reason = "removed from the voters"
            self._become_follower(self.term, None)

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.commit_index)

    # ----- elections -----------------------------------------------------------------------------

    def _reset_election_timer(self) -> None:
        timeout = self.rng.randint(
            self.cfg.election_timeout_min_ms, self.cfg.election_timeout_max_ms
        )
        self._election_deadline = self.now + timeout

    def _become_follower(self, term: int, leader: str | None) -> None:
        if term > self.term:
            self.term = term
            self.vote = None
        self.role = Role.FOLLOWER
        self.leader_id = leader
        if leader is not None:
            self._last_leader_contact = self.now
        self._progress = {}
        self._transferee = None
        self._pending_reads.clear()
        self._waiting_reads.clear()
        self._reset_election_timer()

    def _campaign(self, pre_vote: bool, transfer: bool) -> None:
        self._reset_election_timer()
        self.leader_id = None
        if pre_vote:
            self.role = Role.PRE_CANDIDATE
        else:
            self.role = Role.CANDIDATE
            self.term += 1
            self.vote = self.id
        self._votes = {self.id: True}
        self._campaign_transfer = transfer
        if self._tally() >= self._quorum():
            self._on_election_won(pre_vote)
            return
        self._request_votes(pre_vote, transfer)

    def _request_votes(self, pre_vote: bool, transfer: bool) -> None:
        """Ask every voter that has not answered yet (again, if requests were lost)."""
        self._vote_resend_due = self.now + self.cfg.heartbeat_ms
        vote_term = self.term + 1 if pre_vote else self.term
        last_index, last_term = self.last_index, self.last_term
        for peer in self.voters:
            if peer != self.id and peer not in self._votes:
                self._send(
                    RequestVote(vote_term, self.id, peer, last_index, last_term, pre_vote, transfer)
                )

    def _tally(self) -> int:
        return sum(1 for v in self.voters if self._votes.get(v) is True)

    def _on_election_won(self, pre_vote: bool) -> None:
        if pre_vote:
            self._campaign(pre_vote=False, transfer=False)
        else:
            self._become_leader()

    def _on_request_vote(self, msg: RequestVote) -> None:
        can_vote = (
            self.vote == msg.src
            or (self.vote is None and self.leader_id is None)
            or (msg.pre_vote and msg.term > self.term)
        )
        up_to_date = (msg.last_term, msg.last_index) >= (self.last_term, self.last_index)
        if can_vote and up_to_date:
            self._send(VoteResponse(msg.term, self.id, msg.src, True, msg.pre_vote))
            if not msg.pre_vote:
                self.vote = msg.src
                self._reset_election_timer()
        else:
            self._send(VoteResponse(self.term, self.id, msg.src, False, msg.pre_vote))

    def _on_vote_response(self, msg: VoteResponse) -> None:
        expect = Role.PRE_CANDIDATE if msg.pre_vote else Role.CANDIDATE
        if self.role != expect:
            return
        self._votes.setdefault(msg.src, msg.granted)
        granted = self._tally()
        rejected = sum(1 for v in self.voters if self._votes.get(v) is False)
        if granted >= self._quorum():
            self._on_election_won(msg.pre_vote)
        elif rejected >= len(self.voters) - self._quorum() + 1:
            self.role_reason = "election lost"
            self._become_follower(self.term, None)

    def _become_leader(self) -> None:
        self.role = Role.LEADER
        self.leader_id = self.id
        self._transferee = None
        self._progress = {
            peer: _Progress(self.last_index + 1)
            for peer in (*self.voters, *self.learners)
            if peer != self.id
        }
        self._heartbeat_due = self.now
        self._quorum_check_due = self.now + self.cfg.election_timeout_min_ms
        self._pending_reads.clear()
        self._append_local(EntryKind.NOOP, b"")
        self._broadcast_heartbeat()
        self._heartbeat_due = self.now + self.cfg.heartbeat_ms

    # ----- replication: leader side -------------------------------------------------------------

    def _append_local(self, kind: EntryKind, data: bytes) -> Entry:
        entry = Entry(self.last_index + 1, self.term, kind, data)
        self._log.append(entry)
        if kind == EntryKind.CONFIG:
            self._config_log.append((entry.index, Configuration(*decode_config(data))))
            self._sync_progress_with_config()
        self._maybe_commit()
        return entry

    def _sync_progress_with_config(self) -> None:
        if self.role != Role.LEADER:
            return
        members = {*self.voters, *self.learners}
        for peer in list(self._progress):
            if peer not in members:
                del self._progress[peer]
        for peer in sorted(members):
            if peer != self.id and peer not in self._progress:
                self._progress[peer] = _Progress(self.last_index + 1)
                self._progress[peer].recent_active = True

    def _has_appends_to_send(self) -> bool:
        for pr in self._progress.values():
            if pr.state == _Progress.REPLICATE:
                if pr.next <= self.last_index and len(pr.inflight) < self.cfg.max_inflight:
                    return True
            elif pr.state == _Progress.PROBE and not pr.probe_sent:
                return True
        return False

    def _send_append(self, peer: str, allow_empty: bool) -> None:
        pr = self._progress.get(peer)
        if pr is None:
            return
        if pr.state == _Progress.PROBE:
            allow_empty = True  # a probe may be empty: it finds where the follower's log ends
        while True:
            if pr.state == _Progress.SNAPSHOT:
                return
            if pr.state == _Progress.PROBE and pr.probe_sent:
                return
            if pr.state == _Progress.REPLICATE and len(pr.inflight) >= self.cfg.max_inflight:
                return
            if pr.next > self.last_index and not allow_empty:
                return
            prev = pr.next - 1
            prev_term = self.term_at(prev)
            if prev_term is None:
                self._send_snapshot(peer, pr)
                return
            batch = self._batch(pr.next)
            commit = self.commit_index
            self._send(AppendEntries(self.term, self.id, peer, prev, prev_term, commit, batch))
            allow_empty = False
            if pr.state == _Progress.PROBE:
                pr.probe_sent = 1
                return
            if batch:
                pr.next = batch[-1].index + 1
                pr.inflight.append(batch[-1].index)
            else:
                return

    def _batch(self, start: int) -> tuple[Entry, ...]:
        out = []
        size = 0
        for entry in self.entries(start, start + self.cfg.max_entries_per_message):
            size += len(entry.data) + 32
            if out and size > self.cfg.max_bytes_per_message:
                break
            out.append(entry)
        return tuple(out)

    def _send_snapshot(self, peer: str, pr: _Progress) -> None:
        if self._snapshot is None:
            pr.probe_sent = 1
            return
        pr.state = _Progress.SNAPSHOT
        pr.inflight.clear()
        self._snapshot_sent_at[peer] = self.now
        snap = self._snapshot
        self._send(InstallSnapshot(self.term, self.id, peer, snap.meta, snap.data))

    def _on_append_response(self, msg: AppendResponse) -> None:
        if self.role != Role.LEADER:
            return
        pr = self._progress.get(msg.src)
        if pr is None:
            return
        pr.recent_active = True
        if msg.success and msg.index > self.last_index:
            self.rejected["acknowledges entries never sent"] += 1
            return
        if msg.success:
            if msg.index > pr.match:
                pr.match = msg.index
                if pr.state != _Progress.REPLICATE:
                    pr.become_replicate()
                while pr.inflight and pr.inflight[0] <= msg.index:
                    pr.inflight.popleft()
                pr.next = max(pr.next, pr.match + 1)
                self._maybe_commit()
                if msg.src == self._transferee and pr.match == self.last_index:
                    self._send(TimeoutNow(self.term, self.id, msg.src))
            elif pr.state == _Progress.PROBE:
                pr.probe_sent = 0
            elif pr.state == _Progress.SNAPSHOT and msg.index >= pr.match:
                pr.become_replicate()
        else:
            if pr.state == _Progress.REPLICATE:
                if msg.index <= pr.match:
                    return
                pr.become_probe()
                pr.next = max(pr.match + 1, min(msg.index, msg.hint + 1))
            elif pr.state == _Progress.PROBE:
                if msg.index != pr.next - 1:
                    return
                pr.next = max(pr.match + 1, min(msg.index, msg.hint + 1))
                pr.probe_sent = 0
            else:
                return
        self._send_append(msg.src, allow_empty=False)

    def _maybe_commit(self) -> None:
        if self.role != Role.LEADER:
            return
        matches = []
        for voter in self.voters:
            if voter == self.id:
                matches.append(self.last_index)
            elif voter in self._progress:
                matches.append(self._progress[voter].match)
            else:
                matches.append(0)
        matches.sort(reverse=True)
        candidate = matches[self._quorum() - 1]
        if candidate > self.commit_index and self.term_at(candidate) == self.term:
            first_commit_of_term = self.term_at(self.commit_index) != self.term
            self.commit_index = candidate
            if first_commit_of_term:
                waiting, self._waiting_reads = self._waiting_reads, []
                for context, via in waiting:
                    self._start_read(context, via)

    def _broadcast_heartbeat(self, seq: int = 0) -> None:
        for peer, pr in self._progress.items():
            commit = min(pr.match, self.commit_index)
            self._send(Heartbeat(self.term, self.id, peer, commit, seq))

    def _on_heartbeat_response(self, msg: HeartbeatResponse) -> None:
        if self.role != Role.LEADER:
            return
        pr = self._progress.get(msg.src)
        if pr is None:
            return
        pr.recent_active = True
        pr.ack_seq = max(pr.ack_seq, msg.seq)
        if pr.state == _Progress.REPLICATE and len(pr.inflight) >= self.cfg.max_inflight:
            pr.inflight.popleft()
        if pr.match < self.last_index:
            self._send_append(msg.src, allow_empty=pr.state == _Progress.REPLICATE)
        self._release_reads()

    # ----- linearizable reads -------------------------------------------------------------------

    def _start_read(self, context: bytes, via: str | None = None) -> None:
        # The read point is the end of the leader's log, not its commit index: followers
        # commit entries of this term from each other's PeerAcks before the leader hears of
        # them, and a write they acknowledged that way must be seen. Every entry committed
        # before the read began is in this log (leader completeness; in this term only this
        # leader makes entries), so its end holds them all. Reading waits for it to commit.
        read = _PendingRead(context, self.last_index, self._hb_seq + 1, via)
        if self._confirmations(read) >= self._quorum():
            self._read_states.append(ReadState(read.index, context))
            return
        self._hb_seq += 1
        self._pending_reads.append(read)
        self._broadcast_heartbeat(self._hb_seq)

    def _confirmations(self, read: _PendingRead) -> int:
        """Voters known to have been in no later term after the read began: this leader, the
        follower that asked, and those that answered a heartbeat sent after it began."""
        return sum(
            1
            for v in self.voters
            if v == self.id
            or v == read.via
            or (v in self._progress and self._progress[v].ack_seq >= read.seq)
        )

    def _release_reads(self) -> None:
        if not self._pending_reads:
            return
        waiting: deque[_PendingRead] = deque()
        for read in self._pending_reads:
            if self._confirmations(read) >= self._quorum():
                self._read_states.append(ReadState(read.index, read.context))
            else:
                waiting.append(read)
        self._pending_reads = waiting

    # ----- replication: follower side -----------------------------------------------------------

    def _heard_from_leader(self, leader: str) -> None:
        self.leader_id = leader
        self._last_leader_contact = self.now
        if self.role != Role.FOLLOWER:
            self.role_reason = f"{leader} leads term {self.term}"
            self._become_follower(self.term, leader)
        self._reset_election_timer()

    def _on_append(self, msg: AppendEntries) -> None:
        self._heard_from_leader(msg.src)
        prev, prev_term, entries = msg.prev_index, msg.prev_term, msg.entries
        if prev < self.commit_index:
            # Our log up to commit matches the leader's: skip the part we already hold.
            entries = tuple(e for e in entries if e.index > self.commit_index)
            prev = self.commit_index
            prev_term = self.term_at(prev)
        if self.term_at(prev) != prev_term:
            hint = self._conflict_hint(min(prev, self.last_index), prev_term)
            self._send(AppendResponse(self.term, self.id, msg.src, False, prev, hint))
            return
        for entry in entries:
            existing = self.term_at(entry.index)
            if existing == entry.term:
                continue
            if existing is not None:
                self._truncate_suffix(entry.index)
            self._log.append(entry)
            if entry.kind == EntryKind.CONFIG:
                self._config_log.append((entry.index, Configuration(*decode_config(entry.data))))
        last_new = prev + len(entries)
        self.commit_index = max(self.commit_index, min(msg.commit, last_new))
        self._send(AppendResponse(self.term, self.id, msg.src, True, last_new))
        if self.cfg.peer_acks:
            self._note_own_match(last_new, announce=bool(entries))

    # ----- follower commit from peer acknowledgements -------------------------------------------
    #
    # An entry of the current term is committed once a quorum durably holds it, whoever counts.
    # A follower knows its own log matches the leader's up to `_own_match` (what it accepted
    # this term; it counts what of that it has persisted, re-counting in `advance`), and other
    # followers' PeerAcks (sent only after their fsync) say the same of theirs. The leader is counted as holding
    # nothing (its own fsync may still be running). Entries of this term only, capped at what
    # this node itself holds, in the configuration its matching log prefix has (single-server
    # changes: its quorums overlap the leader's).

    def _fresh_acks(self) -> None:
        if self._acks_term != self.term:
            self._acks_term, self._own_match, self._peer_match = self.term, 0, {}

    def _note_own_match(self, index: int, announce: bool) -> None:
        self._fresh_acks()
        if index <= self._own_match:
            return
        self._own_match = index
        voters = self._voters_at(index)
        if announce and self.id in voters:
            for voter in voters:
                if voter != self.id and voter != self.leader_id:
                    self._send(PeerAck(self.term, self.id, voter, index))
        self._commit_from_peers()

    def _on_peer_ack(self, msg: PeerAck) -> None:
        if not self.cfg.peer_acks or msg.term != self.term or self.role != Role.FOLLOWER:
            return
        self._fresh_acks()
        if msg.src != self.leader_id and msg.index > self._peer_match.get(msg.src, 0):
            self._peer_match[msg.src] = msg.index
            self._commit_from_peers()

    def _commit_from_peers(self) -> None:
        own = min(self._own_match, self._unstable_from - 1)  # only what this node persisted
        if self.role != Role.FOLLOWER or own <= self.commit_index:
            return
        voters = self._voters_at(own)
        matches = sorted(
            (own if v == self.id else self._peer_match.get(v, 0) for v in voters), reverse=True
        )
        candidate = min(matches[len(voters) // 2], own)
        if candidate > self.commit_index and self.term_at(candidate) == self.term:
            self.commit_index = candidate

    def _conflict_hint(self, index: int, term: int) -> int:
        """Largest index <= `index` whose term is <= `term` (lets the leader skip a whole term)."""
        while index > self._offset:
            entry_term = self.term_at(index)
            if entry_term is not None and entry_term <= term:
                return index
            index -= 1
        return self._offset

    def _on_heartbeat(self, msg: Heartbeat) -> None:
        self._heard_from_leader(msg.src)
        if msg.commit > self.commit_index:
            self.commit_index = min(msg.commit, self.last_index)
        self._send(HeartbeatResponse(self.term, self.id, msg.src, msg.seq))

    def _on_snapshot(self, msg: InstallSnapshot) -> None:
        self._heard_from_leader(msg.src)
        meta = msg.meta
        if meta.index <= self.commit_index:
            self._send(AppendResponse(self.term, self.id, msg.src, True, self.commit_index))
            return
        if self.term_at(meta.index) == meta.term:
            self.commit_index = meta.index
            self._truncate_prefix(meta.index)
        else:
            self._log = []
            self._offset = meta.index
            self._offset_term = meta.term
            self._config_log = []
            self.commit_index = meta.index
        self._base_config = Configuration(meta.voters, meta.learners)
        self._unstable_from = meta.index + 1
        if self.cfg.peer_acks:
            self._note_own_match(meta.index, announce=False)
        snap = Snapshot(meta, msg.data)
        self._snapshot = snap
        self._pending_snapshot = snap
        self._send(AppendResponse(self.term, self.id, msg.src, True, meta.index))

    # ----- log surgery ---------------------------------------------------------------------------

    def _truncate_suffix(self, from_index: int) -> None:
        """Drop entries >= from_index (never committed ones) and forget their configs."""
        if from_index <= self.commit_index:
            raise AssertionError(f"{self.id}: refusing to truncate committed index {from_index}")
        del self._log[from_index - self._offset - 1 :]
        while self._config_log and self._config_log[-1][0] >= from_index:
            self._config_log.pop()
        self._unstable_from = min(self._unstable_from, from_index)

    def _truncate_prefix(self, upto: int) -> None:
        """Drop entries <= upto; the newest dropped config becomes the base config."""
        if upto <= self._offset:
            return
        self._offset_term = self.term_at(upto) or self._offset_term
        del self._log[: upto - self._offset]
        self._offset = upto
        while len(self._config_log) > 1 and self._config_log[1][0] <= upto:
            self._config_log.pop(0)
        if self._config_log and self._config_log[0][0] <= upto:
            self._base_config = self._config_log.pop(0)[1]

    def _config_at(self, index: int) -> Configuration:
        config = self._base_config
        for cfg_index, cfg in self._config_log:
            if cfg_index <= index:
                config = cfg
        return config

    def _voters_at(self, index: int) -> tuple[str, ...]:
        return self._config_at(index).voters

    def _send(self, msg: Message) -> None:
        self._msgs.append(msg)
