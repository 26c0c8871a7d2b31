"""The Raft driver of a server: runs the pure core (raftlog) with a clock, threads, the durable
log (raft_storage) and the RPC transport, and puts the job store under it.

Threads, each with one job:
- the Raft loop owns the `RaftNode` and the `FileStorage`: it feeds received messages, ticks
  and proposals to the core, and for every Ready writes entries + hard state with ONE fsync,
  then hands messages to the per-peer senders and committed entries to the apply thread.
  Submits queued while an fsync runs become one proposal (one entry) next time: group commit.
- the apply thread applies committed entries to the store, in order, several entries per
  `store.apply_batch` (one SQLite transaction), takes snapshots every `snapshot_every` entries
  and answers the submitters;
- per-peer sender threads (raft_sender), a maintenance thread (address announcements,
  expiry of submits that waited too long) and an events thread that runs `on_leadership`
  and `on_applied` in order (so a callback may itself submit).

Small committed batches are applied on the Raft loop itself when the apply thread is idle
(one thread hand-off less per write); big ones always go to the apply thread.

Writes through a follower: it sends "raft.propose" to the leader, which answers where the entry
went once the entry's appends are on their way; the follower then applies the entry itself and
answers from its own store. It learns the commit from the other followers' PeerAcks (raftlog)
or, when those are no quorum with it, from a notice the leader sends once per commit index.

Reads: `barrier()` returns once this node's store holds every write acknowledged before the
call, by any server: a read index from batched ReadIndex rounds (raft_reads; on a follower one
"raft.read_index" request to the leader per round), then a wait until it is applied here.

Entries: a DATA entry is a JSON list of commands. Commands whose op starts with "raft." are the
driver's own (today only `raft.addresses`, the replicated node-id -> RPC address map, see
raft_envelope); all others go to `store.apply_batch(commands, last_index=index)`. Entries at or
below `store.last_applied` are skipped on restart (the store keeps its own durable position).
Snapshots are `raft_envelope.pack_snapshot(addresses, store.snapshot())`.

Durability: the Raft log is the durable record (fsynced before any acknowledgement), so the
store's own SQLite commits need not be fsynced (the driver sets `synchronous=NORMAL`, which keeps
transactions atomic): after a power loss the store resumes from its last durable position and
the log (or the snapshot) replays the rest.

Bootstrap: a server started with `bootstrap={id: addr, ...}` on an empty data directory writes
that voter set as a snapshot at index 0, so later starts need no bootstrap set (every founding
server must be given the same set once). A server bootstrapped alone (`bootstrap={own id: addr}`)
writes a snapshot at index 1 of what its store already holds instead: a data directory of a
build that ran a lone server without Raft keeps its jobs and executions, and servers that join
later catch up from that snapshot. A server started with `bootstrap=None` waits to be added by
the leader (`add_server`, or the RPC method "raft.add_server" on any server, which forwards),
as a voter or as a learner (`voter=False`: it replicates without a vote; adding it again as a
voter promotes it).

Recovery (as Dkron): `<data_dir>/raft/peers.json` (`[{"id": "n1", "address": "ip:6868"}]`) is
read at start: every entry in the local log is applied, a snapshot is written whose voter set is
exactly the file's, and the file is deleted. Run it on every surviving server with the same file.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import os
import queue
import random
import sqlite3
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .raft_envelope import (
    ADDRESSES_OP,
    EnvelopeError,
    addresses_command,
    is_driver_command,
    pack_snapshot,
    read_peers_file,
    unpack_snapshot,
)
from .raft_messages import (
    AppendEntries,
    AppendResponse,
    DecodeError,
    EntryKind,
    Message,
    SnapshotMeta,
    decode,
)
from .raft_reads import ReadIndexer, ReadRetry
from .raft_sender import PeerSender
from .raft_storage import FileStorage
from .raftlog import (
    Compacted,
    ConfChange,
    Proposal,
    RaftConfig,
    RaftNode,
    Ready,
    Refused,
    Role,
    Snapshot,
)
from .rpc import RpcClient, RpcError, answer_inline
from .store import Result, Store
from .store_commands import decode_command_list

log = logging.getLogger("dkron.raft")

TICK_S = 0.005
SLOW_ROUND_MS = 100.0
MAX_COMMANDS_PER_ENTRY = 2000
MAX_BYTES_PER_ENTRY = 512 * 1024
RETRY_PAUSE_S = 0.02
COMMIT_NOTICE = b"\0commit"
INLINE_APPLY_BYTES = 8 * 1024
RECENT_RESULTS = 4096  # applied entries whose results are kept for late-registering waiters

answer_inline("raft.propose")  # never blocks: see RaftReplicator._place_forwarded
answer_inline("raft.read_index")  # never blocks: answered when the leader's round ends
answer_inline("raft.term")  # never blocks: one attribute read


class NotLeaderError(Exception):
    """No leader could take the request (none elected, or it could not be reached)."""


class RaftError(Exception):
    """The request reached the cluster but its outcome is unknown or it failed."""


class _Retry(Exception):
    """Internal: the request was certainly not applied and may be sent again."""


def server_raft_config(multiplier: int = 1) -> RaftConfig:
    """An agent's timings: 500-1000 ms election timeouts, 100 ms heartbeats, times
    `raft-multiplier` (Dkron's are 1-2 s and 1 s). A server shares its machine with the jobs it
    launches, and under load (100 launches/s on two cores) its process was measured to be held
    off the CPU for up to 330 ms: with 150-300 ms timeouts each such pause was an election."""
    m = int(multiplier)
    return raft_config(
        m, election_timeout_min_ms=500 * m, election_timeout_max_ms=1000 * m, heartbeat_ms=100 * m
    )


def raft_config(multiplier: int = 1, **overrides: Any) -> RaftConfig:
    """Timings scaled like Dkron's `raft-multiplier` (1 = 150-300 ms election timeouts)."""
    if not 1 <= int(multiplier) <= 10:
        raise ValueError(f"raft-multiplier must be between 1 and 10, got {multiplier}")
    m = int(multiplier)
    base = {
        "election_timeout_min_ms": 150 * m,
        "election_timeout_max_ms": 300 * m,
        "heartbeat_ms": 50 * m,
        "snapshot_retry_ms": 300 * m,
    }
    base.update(overrides)
    return RaftConfig(**base)


def _result_to_dict(result: Result) -> dict:
    return dataclasses.asdict(result)


def _result_from_dict(data: dict) -> Result:
    return Result(**{f.name: data[f.name] for f in dataclasses.fields(Result) if f.name in data})


class _Proposed(Future):
    """A submit on its way through the log; `index` is set once it is applied."""

    def __init__(self, commands: list[dict], deadline: float, retry: bool) -> None:
        super().__init__()
        self.commands = commands
        self.deadline = deadline
        self.retry = retry
        self.index = 0
        # Forwarded writes: called on the Raft loop once placed, with (index, term, offset).
        self.on_placed: Callable[[tuple[int, int, int]], None] | None = None
        self.placed: tuple[int, int, int] | None = None  # (index, term, offset in the entry)


class _Waiter:
    """Submits waiting for one proposed entry (index, term) to be applied."""

    __slots__ = ("deadline", "futures", "term")

    def __init__(self, term: int, deadline: float) -> None:
        self.term = term
        self.deadline = deadline
        self.futures: list[tuple[Future, int, int]] = []  # (future, offset, count)


class RaftReplicator:
    """Replicates store commands through Raft; see the module docstring."""

    def __init__(
        self,
        node_id: str,
        rpc_addr: str,
        data_dir: str,
        store: Store,
        rpc_client: RpcClient,
        *,
        bootstrap: dict[str, str] | None = None,
        config: RaftConfig | None = None,
        fsync: bool = True,
        snapshot_every: int = 10_000,
        on_leadership: Callable[[bool], None] | None = None,
        on_applied: Callable[[list[dict], list[Result]], None] | None = None,
    ) -> None:
        if not node_id:
            raise ValueError("raft: node id must not be empty")
        if snapshot_every < 1:
            raise ValueError(f"raft: snapshot_every must be at least 1, got {snapshot_every}")
        self.id = node_id
        self.rpc_addr = rpc_addr
        self.raft_dir = Path(data_dir) / "raft"
        self.store = store
        self.rpc = rpc_client
        self.bootstrap = dict(bootstrap or {})
        self.config = config or raft_config()
        self.fsync = fsync
        self.snapshot_every = snapshot_every
        self.on_leadership = on_leadership
        self.on_applied = on_applied
        self.dropped: Counter[str] = Counter()
        self.slow_rounds = 0
        self.recovered_from_peers_file = False
        # addresses: replicated (from the log / snapshots) and local knowledge (bootstrap ...)
        self._replicated_addrs: dict[str, str] = {}
        self._local_addrs: dict[str, str] = dict(self.bootstrap)
        self._addrs: dict[str, str] = {}
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._apply_q: queue.SimpleQueue = queue.SimpleQueue()
        self._events: queue.SimpleQueue = queue.SimpleQueue()  # callbacks, in order
        self._waiters: dict[int, list[_Waiter]] = {}
        self._recent: dict[int, tuple[int, list]] = {}  # index -> (term, results), bounded
        self._recent_order: deque[int] = deque()
        self._waiters_lock = threading.Lock()
        self._reads = ReadIndexer(
            node_id,
            rpc_client,
            self._call_in_loop,
            lambda: (self._role == Role.LEADER, self._leader, self.leader_addr()),
            self._core_term,
            lambda: [(v, self._addrs.get(v)) for v in self._voters if v != self.id],
            self.config.election_timeout_max_ms / 1000,
        )
        self._applied = 0
        self._applied_cv = threading.Condition()
        self._store_floor = 0
        self._last_snapshot = 0
        self._snapshotting = False  # a snapshot is being built or stored off the loop
        self._notify_until = 0.0  # tell followers new commits at once until then
        self._commit_told: dict[str, tuple[int, int]] = {}  # peer -> (term, commit) told
        self._commit_read_round: tuple[int, int] = (0, 0)  # (term, commit) of the last one
        self._placed: list[_Proposed] = []  # forwarded writes to answer once their entry is out
        self._held: list[Message] = []  # acks held until this round's inline apply is done
        self._apply_sent = 0  # written by the Raft loop only
        self._apply_done = 0  # written by the apply thread only
        self._deferred_apply: list = []  # small committed batches the loop applies itself
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix=f"raft-{node_id}")
        self._role = Role.FOLLOWER
        self._term = 0
        self._leader: str | None = None
        self._voters: tuple[str, ...] = ()
        self._learners: tuple[str, ...] = ()
        self._leader_notified = False
        self._failed: BaseException | None = None
        self._storage: FileStorage | None = None
        self._node: RaftNode | None = None
        self._sender = PeerSender(self.rpc.send_raft, self._address_of, self.rpc.send_raft_now)
        self._started = False

    # ----- start and stop ----------------------------------------------------------------------

    def start(self) -> None:
        """Open the log, recover (peers.json, snapshot, store position) and start the threads."""
        if self._started:
            return
        self._started = True
        self._relax_store_sync()
        self.raft_dir.mkdir(parents=True, exist_ok=True)
        peers_file = self.raft_dir / "peers.json"
        recovery = read_peers_file(peers_file) if peers_file.exists() else None
        self._storage = FileStorage(self.raft_dir, fsync=self.fsync)
        if self._storage.truncation_reason:
            log.warning("raft: cut a torn log tail: %s", self._storage.truncation_reason)
        if recovery is not None:
            self._recover_from_peers(recovery)
            peers_file.unlink()
            self.recovered_from_peers_file = True
            log.warning("raft: recovered the configuration from %s: %s", peers_file, recovery)
        elif self.bootstrap and self._storage_is_empty():
            # Persist the first configuration (a snapshot at index 0 with the bootstrap voters):
            # a server that restarts before any membership change is logged must still know
            # its voters, or it could never campaign again.
            if set(self.bootstrap) == {self.id}:
                self._bootstrap_alone()
            else:
                self._recover_from_peers(self.bootstrap)
        state = self._storage.load()
        if state.snapshot is not None:
            self._install_snapshot_locally(state.snapshot, at_start=True)
        for entry in state.entries:
            if entry.kind == EntryKind.DATA and ADDRESSES_OP.encode() in entry.data:
                self._learn_addresses_from(entry.data)
        self._store_floor = self.store.last_applied
        known = max(self._storage.last_index, state.snapshot.meta.index if state.snapshot else 0)
        if self._store_floor > known:
            log.warning(
                "raft: the store says it applied index %d but the Raft log ends at %d; "
                "was %s replaced? The store is kept as it is.",
                self._store_floor,
                known,
                self.raft_dir,
            )
        self._applied = max(self._store_floor, state.snapshot.meta.index if state.snapshot else 0)
        self._last_snapshot = state.snapshot.meta.index if state.snapshot else 0
        self._local_addrs[self.id] = self.rpc_addr
        self._refresh_addresses()
        # The voters come from the stored snapshot/log (the bootstrap set was written as a
        # snapshot at index 0 on the first start); the argument only matters without one.
        self._node = RaftNode(self.id, sorted(self.bootstrap), state, random.Random(), self.config)
        self._publish_state()
        for target, name in (
            (self._raft_loop, "raft-loop"),
            (self._apply_loop, "raft-apply"),
            (self._maintenance_loop, "raft-maint"),
            (self._events_loop, "raft-events"),
        ):
            thread = threading.Thread(target=target, name=f"{name}-{self.id}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        """Stop the threads and close the log (the store and RPC client belong to the caller)."""
        if not self._started or self._stop.is_set():
            return
        self._stop.set()
        self._inbox.put(None)
        self._apply_q.put(None)
        self._events.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
        self._sender.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._waiters_lock:
            waiters, self._waiters = self._waiters, {}
        for waiter in (w for ws in waiters.values() for w in ws):
            for fut, _, _ in waiter.futures:
                _fail(fut, RaftError("raft: node is shutting down; the write's outcome is unknown"))
        self._reads.close()
        if self._storage is not None:
            self._storage.close()

    def _relax_store_sync(self) -> None:
        """The Raft log is the durable record; the store only needs atomic transactions."""
        db = getattr(self.store, "_db", None)
        if db is not None:
            try:
                db.execute("PRAGMA synchronous=NORMAL")
            except Exception:  # keep the store's own setting if it refuses
                log.debug("raft: could not relax store synchronous mode", exc_info=True)

    # ----- public state ------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self._role == Role.LEADER

    def leader_id(self) -> str | None:
        return self._leader

    def leader_addr(self) -> str | None:
        leader = self._leader
        return self._addrs.get(leader) if leader else None

    def applied_index(self) -> int:
        return self._applied

    def term(self) -> int:
        return self._term

    def voters(self) -> list[str]:
        return list(self._voters)

    def learners(self) -> list[str]:
        """Members that replicate without a vote (beyond the voter cap, or catching up)."""
        return list(self._learners)

    def leader_progress(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """On the leader: its commit index and each peer's replication progress (match, next,
        active), read on the Raft loop; None on any other node."""
        answer: Future = Future()

        def read(node: RaftNode) -> None:
            status = node.status()
            answer.set_result(status if node.role == Role.LEADER else None)

        self._call_in_loop(read)
        try:
            return answer.result(timeout=timeout)
        except TimeoutError:
            return None

    def addresses(self) -> dict[str, str]:
        return dict(self._addrs)

    def peers(self) -> list[dict]:
        leader = self._leader
        voters = [(node, True) for node in self._voters]
        return [
            {
                "node": node,
                "id": node,
                "address": self._addrs.get(node, ""),
                "state": "leader" if node == leader else "follower",
                "voter": voter,
            }
            for node, voter in voters + [(node, False) for node in self._learners]
        ]

    # ----- inbound transport ------------------------------------------------------------------

    def on_raft_frame(self, data: bytes, peer: str) -> None:
        """A RAFT frame from RpcServer (already authenticated): decode and queue it."""
        try:
            msg = decode(data)
        except DecodeError as exc:
            self._drop(f"undecodable Raft message: {exc}", peer)
            return
        if msg.dst != self.id:
            self._drop(f"Raft message for {msg.dst!r}, not for this node", peer)
            return
        self._inbox.put(("msg", msg))

    def _drop(self, reason: str, peer: str) -> None:
        key = reason.split(":")[0]
        self.dropped[key] += 1
        log.warning("raft: dropped a frame from %s: %s", peer, reason)

    def handle_rpc(self, method: str, args: Any, peer: str) -> Any:
        """Methods "raft.*" that peers call on each other (forwarded writes, reads, joins)."""
        args = args if isinstance(args, dict) else {}
        if method == "raft.propose":
            return self._place_forwarded(
                _commands_arg(method, args), float(args.get("timeout", 10))
            )
        if method == "raft.submit":
            commands = _commands_arg(method, args)
            timeout = float(args.get("timeout", 10.0))
            hops, early = int(args.get("hops", 0)), bool(args.get("early"))
            return self._serve_forwarded_submit(commands, timeout, hops, early)
        if method == "raft.read_index":
            return self._serve_read_index(args)
        if method == "raft.term":
            # A leader's read round asks: this node's term now, read after the round began.
            return {"term": self._core_term()}
        if method == "raft.add_server":
            node, addr = args.get("id"), args.get("address")
            voter = args.get("voter", True)
            if not isinstance(node, str) or not isinstance(addr, str):
                raise RpcError("raft.add_server: 'id' and 'address' strings are required")
            if not isinstance(voter, bool):
                raise RpcError("raft.add_server: 'voter' must be true or false")
            self.add_server(node, addr, voter=voter)
            return {}
        if method == "raft.remove_server":
            node = args.get("id")
            if not isinstance(node, str):
                raise RpcError("raft.remove_server: an 'id' string is required")
            self.remove_server(node)
            return {}
        if method == "raft.hello":
            addresses = args.get("addresses")
            if isinstance(addresses, dict):
                update = {str(k): str(v) for k, v in addresses.items() if k != self.id}
                self._local_addrs = {**self._local_addrs, **update}
                self._refresh_addresses()
            return {}
        if method == "raft.peers":
            return self.peers()
        if method == "raft.leader":
            return {"id": self._leader, "address": self.leader_addr()}
        raise RpcError(f"unknown Raft method {method!r}")

    # ----- writes ------------------------------------------------------------------------------

    def submit(self, commands: list[dict], timeout: float = 10.0) -> list[Result]:
        """Commit commands and return their results once this node has applied them."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_usable()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                if self.is_leader():
                    return _wait(self._propose(commands, remaining), remaining, "commit")
                leader_addr = self.leader_addr()
                if leader_addr is not None and self._leader != self.id:
                    return self._forward_submit(leader_addr, commands, deadline)
            except _Retry:
                pass
            time.sleep(min(RETRY_PAUSE_S, max(0.0, deadline - time.monotonic())))
        raise NotLeaderError(self._no_leader_message(timeout))

    def submit_async(self, commands: list[dict]) -> Future:
        """Like `submit`, without blocking. On the leader this costs no thread per call."""
        if not self.is_leader():
            return self._pool.submit(self.submit, commands)
        return self._propose(commands, 10.0, retry=True)

    def _propose(self, commands: list[dict], timeout: float, retry: bool = False) -> _Proposed:
        fut = _Proposed(commands, time.monotonic() + timeout, retry)
        self._inbox.put(("prop", commands, fut))
        return fut

    def _retry_or_fail(self, fut: Future) -> None:
        """A proposal that certainly was not applied: an async submit goes again (on a pool
        thread, through `submit`, which finds the new leader); a blocking one retries itself."""
        if isinstance(fut, _Proposed) and fut.retry and not fut.done():
            self._pool.submit(self._resubmit, fut)
        else:
            _fail(fut, _Retry())

    def _resubmit(self, fut: _Proposed) -> None:
        try:
            results = self.submit(fut.commands, max(0.1, fut.deadline - time.monotonic()))
        except Exception as exc:  # noqa: BLE001 - handed to the caller through its future
            _fail(fut, exc)
        else:
            if not fut.done():
                fut.set_result(results)

    def _place_forwarded(self, commands: list[dict], timeout: float) -> Future | dict:
        """ "raft.propose", a follower's write on the leader: answers where the entry went
        (index, term, offset) as soon as it is placed in the log; the follower applies it itself
        and takes the results from its own store (the store is deterministic). Never blocks: it
        runs on the RPC connection's reader thread, and the Raft loop sends the answer."""
        if not self.is_leader():
            return {"not_leader": self._leader}
        self._notify_until = time.monotonic() + timeout  # the follower waits to apply it
        answer: Future = Future()

        def settle(value: dict) -> None:
            try:
                answer.set_result(value)
            except InvalidStateError:  # placed, then failed later: the answer went already
                pass

        fut = _Proposed(commands, time.monotonic() + timeout, retry=False)
        fut.on_placed = lambda p: settle({"index": p[0], "term": p[1], "offset": p[2]})
        fut.add_done_callback(lambda _f: settle({"not_leader": self._leader}))
        self._inbox.put(("prop", commands, fut))
        return answer

    def _forward_submit(self, addr: str, commands: list[dict], deadline: float) -> list[Result]:
        remaining = deadline - time.monotonic()
        args = {"commands": commands, "timeout": remaining}
        try:
            try:
                reply = self.rpc.call(addr, "raft.propose", args, timeout=remaining + 1.0)
            except RpcError as exc:
                if "unknown Raft method" not in str(exc):
                    raise
                args["early"] = True  # a leader of the previous version
                reply = self.rpc.call(addr, "raft.submit", args, timeout=remaining + 1.0)
        except RpcError as exc:
            if str(exc).startswith("cannot reach"):
                raise _Retry() from None
            raise RaftError(
                f"raft: write forwarded to the leader at {addr} failed: {exc}"
            ) from None
        if not isinstance(reply, dict) or "not_leader" in reply or reply.get("lost"):
            raise _Retry()
        index = int(reply["index"])
        if "results" in reply:
            results = [_result_from_dict(r) for r in reply["results"]]
            self.wait_applied(index, deadline - time.monotonic())
            return results
        # Placed in the log at (index, term): this node's own apply gives the results.
        fut = _Proposed(commands, deadline, retry=False)
        self._add_waiter(
            index, int(reply["term"]), [(fut, int(reply["offset"]), len(commands))], deadline
        )
        return _wait(fut, deadline - time.monotonic(), "commit of the forwarded write")

    def _serve_forwarded_submit(
        self, commands: list[dict], timeout: float, hops: int, early: bool = False
    ) -> dict:
        if not self.is_leader():
            addr = self.leader_addr()
            if hops < 1 and addr is not None and self._leader != self.id:
                args = {"commands": commands, "timeout": timeout, "hops": hops + 1, "early": early}
                try:
                    return self.rpc.call(addr, "raft.submit", args, timeout=timeout + 1.0)
                except RpcError as exc:
                    if str(exc).startswith("cannot reach"):
                        return {"not_leader": self._leader}
                    raise
            return {"not_leader": self._leader}
        self._notify_until = time.monotonic() + timeout  # the follower waits to apply it
        if early:
            # The follower applies the entry itself and takes the results from its own store
            # (the store is deterministic): it only needs to know where the write went.
            fut = _Proposed(commands, time.monotonic() + timeout, retry=False)
            accepted = threading.Event()
            fut.on_placed = lambda _placed: accepted.set()
            self._inbox.put(("prop", commands, fut))
            while not accepted.wait(0.05):
                if fut.done() or time.monotonic() > fut.deadline:
                    return {"not_leader": self._leader}
            index, term, offset = fut.placed  # type: ignore[misc]
            return {"index": index, "term": term, "offset": offset}
        fut = self._propose(commands, timeout)
        try:
            results = _wait(fut, timeout, "commit")
        except _Retry:
            return {"lost": True}
        return {"index": fut.index, "results": [_result_to_dict(r) for r in results]}

    def wait_applied(self, index: int, timeout: float) -> None:
        """Block until this node's store has applied `index` (read-your-writes)."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._applied_cv:
            while self._applied < index:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    raise TimeoutError(
                        f"raft: index {index} committed but not applied on {self.id} "
                        f"within the timeout (applied {self._applied})"
                    )
                self._applied_cv.wait(min(remaining, 0.1))

    def barrier(self, timeout: float = 5.0) -> None:
        """Linearizable read point: return once this node has applied every write acknowledged
        before the call, by any server (ReadIndex through the leader, see raft_reads)."""
        deadline = time.monotonic() + timeout
        index = self.read_index(timeout)
        self.wait_applied(index, deadline - time.monotonic())

    def read_index(self, timeout: float = 5.0) -> int:
        """An index that holds every write acknowledged before the call (batched ReadIndex
        rounds); NotLeaderError when no leader answers within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_usable()
            try:
                return self._await_read_index(self._reads.join(), deadline)
            except ReadRetry:
                if time.monotonic() + RETRY_PAUSE_S >= deadline:
                    break
                time.sleep(RETRY_PAUSE_S)
        raise NotLeaderError(self._no_leader_message(timeout))

    def read_stats(self) -> dict[str, int]:
        """Linearizable reads asked of this node and the ReadIndex rounds that served them."""
        return {"reads": self._reads.reads, "rounds": self._reads.rounds}

    def _await_read_index(self, fut: Future, deadline: float) -> int:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ReadRetry("raft: no read index before the deadline")
            try:
                return fut.result(timeout=min(remaining, self._reads.round_limit_s))
            except TimeoutError:
                self._reads.expire()  # a round whose request or answer was lost

    def _serve_read_index(self, args: dict) -> Future | dict:
        """ "raft.read_index", a follower's round of reads on the leader: confirmed by the core
        with the follower's term (see raft_reads), or, from a follower that sends none (an
        older version), in the leader's next round. Never blocks (it runs on the RPC
        connection's reader thread)."""
        if not self.is_leader():
            return {"not_leader": self._leader}
        # The read point may be beyond the commit index the follower knows: tell it commits
        # at once for a while rather than with the next heartbeat.
        self._notify_until = max(self._notify_until, time.monotonic() + 1.0)
        answer: Future = Future()

        def settle(fut: Future) -> None:
            try:
                answer.set_result({"index": fut.result()})
            except ReadRetry:
                answer.set_result({"not_leader": self._leader})

        via, via_term = args.get("id"), args.get("term")
        if isinstance(via, str) and isinstance(via_term, int):
            self._reads.serve(via, via_term).add_done_callback(settle)
        else:
            self._reads.join().add_done_callback(settle)
        return answer

    def _core_term(self) -> int:
        """The core's term now (one attribute read, atomic; the published `_term` may lag the
        core by a loop round, and a follower must not claim a term it has already left)."""
        node = self._node
        return node.term if node is not None else 0

    # ----- membership -------------------------------------------------------------------------

    def add_server(
        self, node_id: str, rpc_addr: str, timeout: float = 10.0, *, voter: bool = True
    ) -> None:
        """Add a voter, or a learner with `voter=False` (idempotent; a voter stays a voter;
        adding a learner as a voter promotes it). On a follower the request is forwarded to
        the leader."""
        if not node_id or ":" not in rpc_addr:
            raise ValueError(f"raft: add_server needs a node id and an ip:port, got {rpc_addr!r}")
        deadline = time.monotonic() + timeout
        args = {"id": node_id, "address": rpc_addr, "voter": voter}
        if not self._ensure_leader_or_forward("raft.add_server", args, deadline):
            return
        if self._replicated_addrs.get(node_id) != rpc_addr:
            self.submit([addresses_command({node_id: rpc_addr})], deadline - time.monotonic())
        # The newcomer learns addresses from the log, but must answer the leader before that.
        try:
            self.rpc.call(rpc_addr, "raft.hello", {"addresses": self.addresses()}, timeout=2.0)
        except RpcError as exc:
            log.warning("raft: could not greet new server %s at %s: %s", node_id, rpc_addr, exc)
        self._change_membership("add" if voter else "add_learner", node_id, deadline)

    def remove_server(self, node_id: str, timeout: float = 10.0) -> None:
        """Remove a voter or learner (idempotent). On a follower the request is forwarded to
        the leader."""
        deadline = time.monotonic() + timeout
        if not self._ensure_leader_or_forward("raft.remove_server", {"id": node_id}, deadline):
            return
        self._change_membership("remove", node_id, deadline)

    def _ensure_leader_or_forward(self, method: str, args: dict, deadline: float) -> bool:
        """True when this node is the leader; otherwise forwards and returns False."""
        while time.monotonic() < deadline:
            self._check_usable()
            if self.is_leader():
                return True
            addr = self.leader_addr()
            if addr is not None and self._leader != self.id:
                try:
                    self.rpc.call(addr, method, args, timeout=deadline - time.monotonic())
                    return False
                except RpcError as exc:
                    if not str(exc).startswith("cannot reach"):
                        raise RaftError(f"raft: {method} on the leader failed: {exc}") from None
            time.sleep(RETRY_PAUSE_S)
        raise NotLeaderError(self._no_leader_message(0))

    def _membership_done(self, op: str, node_id: str) -> bool:
        if op == "add":
            return node_id in self._voters
        if op == "add_learner":
            return node_id in self._voters or node_id in self._learners
        return node_id not in self._voters and node_id not in self._learners

    def _change_membership(self, op: str, node_id: str, deadline: float) -> None:
        while True:
            self._check_usable()
            if self._membership_done(op, node_id):
                return
            fut = _Proposed([], deadline, retry=False)

            def propose(node: RaftNode, fut: _Proposed = fut) -> None:
                result = node.propose_conf_change(ConfChange(op, node_id))
                if isinstance(result, Proposal):
                    self._add_waiter(result.index, result.term, [(fut, 0, 0)], fut.deadline)
                elif isinstance(result, Refused) and (
                    "already" in result.reason or " not a voter" in result.reason
                ):  # done already (a voter asked to be a learner stays a voter)
                    fut.set_result([])
                else:
                    fut.set_exception(_Retry())

            self._call_in_loop(propose)
            try:
                _wait(fut, deadline - time.monotonic(), f"membership change ({op} {node_id})")
                if fut.index or self._membership_done(op, node_id):
                    return
            except _Retry:
                pass
            if time.monotonic() >= deadline:
                raise TimeoutError(f"raft: could not {op} {node_id} before the timeout")
            if not self.is_leader():
                raise NotLeaderError(f"raft: lost leadership while trying to {op} {node_id}")
            time.sleep(RETRY_PAUSE_S)

    def transfer_leadership(self, timeout: float = 5.0) -> bool:
        """Hand leadership to another voter (graceful leave); True once someone else leads."""
        deadline = time.monotonic() + timeout
        if not self.is_leader():
            return False
        targets = [v for v in self._voters if v != self.id]
        for target in itertools.cycle(targets or [None]):
            if target is None or time.monotonic() >= deadline:
                break

            def start(node: RaftNode, target: str = target) -> None:
                node.transfer_leadership(target)

            self._call_in_loop(start)
            step_deadline = min(
                deadline, time.monotonic() + self.config.election_timeout_max_ms / 500
            )
            while time.monotonic() < step_deadline:
                if not self.is_leader() and self._leader not in (None, self.id):
                    return True
                time.sleep(0.01)
        return not self.is_leader() and self._leader not in (None, self.id)

    # ----- helpers ----------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise RaftError(f"raft: node {self.id} stopped after an error: {self._failed}")
        if self._stop.is_set():
            raise RaftError(f"raft: node {self.id} is closed")

    def _no_leader_message(self, timeout: float) -> str:
        if self._leader is None:
            return (
                f"raft: no leader elected within {timeout:g}s (voters: "
                f"{', '.join(self._voters) or 'none yet'}); is a quorum of servers up?"
            )
        return f"raft: the leader {self._leader} could not be reached within {timeout:g}s"

    def _call_in_loop(self, fn: Callable[[RaftNode], None]) -> None:
        self._inbox.put(("call", fn))

    def _address_of(self, node: str) -> str | None:
        return self._addrs.get(node)

    def _refresh_addresses(self) -> None:
        merged = {**self._local_addrs, **self._replicated_addrs}
        merged[self.id] = self.rpc_addr
        self._addrs = merged

    def _learn_addresses_from(self, data: bytes) -> None:
        commands = decode_command_list(data)
        for command in commands or []:
            if isinstance(command, dict) and command.get("op") == ADDRESSES_OP:
                self._merge_replicated(command.get("addresses"))

    def _merge_replicated(self, addresses: Any) -> None:
        if isinstance(addresses, dict):
            update = {str(k): str(v) for k, v in addresses.items()}
            self._replicated_addrs = {**self._replicated_addrs, **update}
            self._refresh_addresses()

    def _add_waiter(
        self, index: int, term: int, futures: list[tuple[Future, int, int]], deadline: float
    ) -> None:
        waiter = _Waiter(term, deadline)
        waiter.futures = futures
        with self._waiters_lock:
            done = self._recent.get(index)
            if done is None and self._applied < index:
                self._waiters.setdefault(index, []).append(waiter)
                return
        # Applied before we asked (a forwarded write whose answer came late): settle now.
        self._settle(index, waiter, done)

    def _publish_state(self) -> None:
        node = self._node
        assert node is not None
        self._term = node.term
        self._leader = node.leader_id
        self._voters = node.voters
        self._learners = node.learners
        role = node.role
        if role != self._role:
            was_leader = self._role == Role.LEADER
            self._role = role
            log.info(
                "raft: %s is %s in term %d (%s)",
                self.id,
                role.value,
                node.term,
                node.role_reason,
            )
            if was_leader:
                self._to_apply(("leadership", False))
                self._reads.on_leadership_lost()

    # ----- recovery ---------------------------------------------------------------------------

    def _install_snapshot_locally(self, snap: Snapshot, at_start: bool) -> None:
        try:
            addresses, store_data = unpack_snapshot(snap.data)
        except EnvelopeError as exc:
            raise RuntimeError(
                f"raft: the snapshot in {self.raft_dir} is unusable: {exc}"
            ) from None
        self._merge_replicated(addresses)
        if not at_start or self.store.last_applied < snap.meta.index:
            self.store.restore(store_data, snap.meta.index)

    def _bootstrap_alone(self) -> None:
        """The first configuration of a lone server: a snapshot at index 1 (term 1) of what
        its store holds, so a store written without Raft keeps its state and servers that
        join later receive it (an index-0 configuration would send them only the log)."""
        storage = self._storage
        assert storage is not None
        index = max(1, self.store.last_applied)
        self._merge_replicated(self.bootstrap)
        data = pack_snapshot(dict(self._replicated_addrs), self.store.snapshot())
        storage.save_snapshot(Snapshot(SnapshotMeta(index, 1, (self.id,)), data))
        self.store.apply_batch([], last_index=index)
        log.info(
            "raft: %s starts a Raft group with itself as the only voter; what its store holds "
            "(%d jobs) is the first snapshot, from which servers that join catch up",
            self.id,
            len(self.store.job_names()),
        )

    def _storage_is_empty(self) -> bool:
        assert self._storage is not None
        state = self._storage.load()
        return state.snapshot is None and not state.entries and state.offset == 0

    def _recover_from_peers(self, peers: dict[str, str]) -> None:
        """Apply the whole local log, then write a snapshot whose voters are exactly `peers`."""
        storage = self._storage
        assert storage is not None
        state = storage.load()
        if state.snapshot is not None:
            self._install_snapshot_locally(state.snapshot, at_start=True)
        floor = self.store.last_applied
        last_index, last_term = state.offset, state.offset_term
        if state.snapshot is not None and state.snapshot.meta.index > last_index:
            last_index, last_term = state.snapshot.meta.index, state.snapshot.meta.term
        if state.entries:
            last_index, last_term = state.entries[-1].index, state.entries[-1].term
            self._apply_data_entries(state.entries, floor)
        self._merge_replicated(peers)
        data = pack_snapshot(dict(self._replicated_addrs), self.store.snapshot())
        meta = SnapshotMeta(last_index, last_term, tuple(sorted(peers)))
        storage.save_snapshot(Snapshot(meta, data))
        self.store.restore(unpack_snapshot(data)[1], last_index)

    # ----- the Raft loop ----------------------------------------------------------------------

    def _raft_loop(self) -> None:
        node = self._node
        assert node is not None
        t_wait = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    item = self._inbox.get(timeout=TICK_S)
                except queue.Empty:
                    item = None
                t_got = time.monotonic()
                proposals: list[tuple[list[dict], Future]] = []
                commit_before = node.commit_index
                acked = False
                handled = 0
                while item is not None:
                    kind = item[0]
                    if kind == "msg":
                        node.step(item[1])
                        acked = acked or isinstance(item[1], AppendResponse)
                    elif kind == "prop":
                        proposals.append((item[1], item[2]))
                    elif kind == "call":
                        item[1](node)
                    handled += 1
                    if handled >= 20_000:
                        break
                    try:
                        item = self._inbox.get_nowait()
                    except queue.Empty:
                        item = None
                if self._stop.is_set():
                    break
                t_step = time.monotonic()
                node.tick(int(t_step * 1000))
                if proposals:
                    self._propose_batch(node, proposals)
                self._publish_state()  # before applying: the apply thread reads the role
                while node.has_ready():
                    self._handle_ready(node, node.ready())
                self._answer_placed()
                t_ready = time.monotonic()
                if (
                    node.role == Role.LEADER
                    and (acked or node.commit_index > commit_before)
                    and time.monotonic() < self._notify_until
                ):
                    self._tell_commit(node)
                self._apply_deferred()
                self._send_held()
                self._publish_state()
                self._note_slow_round(t_wait, t_got, t_step, t_ready)
                t_wait = time.monotonic()
        except BaseException as exc:  # a bug or a disk error: stop taking requests, loudly
            log.exception("raft: loop of %s failed", self.id)
            self._failed = exc
            self._stop.set()
            self._apply_q.put(None)

    def _note_slow_round(self, t_wait: float, t_got: float, t_step: float, t_ready: float) -> None:
        """Warn when one round of the loop kept heartbeats from going out for long: the usual
        cause of needless elections is a slow disk or a starved process, and this says which."""
        now = time.monotonic()
        total_ms = (now - t_wait) * 1000
        if total_ms < SLOW_ROUND_MS:
            return
        self.slow_rounds += 1
        log.warning(
            "raft: %s loop round took %.0f ms (waiting %.0f, messages %.0f, disk and sends %.0f,"
            " apply %.0f)",
            self.id,
            total_ms,
            (t_got - t_wait) * 1000,
            (t_step - t_got) * 1000,
            (t_ready - t_step) * 1000,
            (now - t_ready) * 1000,
        )

    def _propose_batch(self, node: RaftNode, proposals: list[tuple[list[dict], Future]]) -> None:
        if node.role != Role.LEADER:
            for _, fut in proposals:
                self._retry_or_fail(fut)
            return
        chunk: list[tuple[Future, int]] = []
        commands: list[dict] = []
        for cmds, fut in proposals:
            if chunk and len(commands) + len(cmds) > MAX_COMMANDS_PER_ENTRY:
                self._propose_chunk(node, commands, chunk)
                chunk, commands = [], []
            chunk.append((fut, len(cmds)))
            commands.extend(cmds)
        if chunk:
            self._propose_chunk(node, commands, chunk)

    def _propose_chunk(
        self, node: RaftNode, commands: list[dict], chunk: list[tuple[Future, int]]
    ) -> None:
        try:
            data = json.dumps(commands, separators=(",", ":")).encode()
        except (TypeError, ValueError, RecursionError):
            if len(chunk) == 1:
                _fail(chunk[0][0], ValueError("raft: commands are not JSON-serialisable"))
                return
            pos = 0
            for fut, count in chunk:  # find the culprit: propose each submit alone
                self._propose_chunk(node, commands[pos : pos + count], [(fut, count)])
                pos += count
            return
        if len(data) > MAX_BYTES_PER_ENTRY and len(chunk) > 1:
            half = len(chunk) // 2
            split = sum(count for _, count in chunk[:half])
            self._propose_chunk(node, commands[:split], chunk[:half])
            self._propose_chunk(node, commands[split:], chunk[half:])
            return
        result = node.propose(data)
        if isinstance(result, Proposal):
            deadline = min(getattr(f, "deadline", time.monotonic() + 10) for f, _ in chunk)
            items, offset = [], 0
            for fut, count in chunk:
                items.append((fut, offset, count))
                if isinstance(fut, _Proposed) and fut.on_placed is not None:
                    fut.placed = (result.index, result.term, offset)
                    self._placed.append(fut)
                offset += count
            self._add_waiter(result.index, result.term, items, deadline)
        else:
            for fut, _ in chunk:
                self._retry_or_fail(fut)

    def _tell_commit(self, node: RaftNode) -> None:
        """Followers learn the commit index from the next append; when none is coming (the log
        is fully committed), they are told at once, so a follower's forwarded write is applied
        there without waiting for the heartbeat timer. Only done while forwarded writes are in
        flight: nobody else waits on a follower's commit index.

        A follower that was sent every entry up to the commit gets an empty AppendEntries
        that follows them on the same connection; it checks that its log matches at the commit
        index before it commits (if it does not hold the entries, it refuses and the leader
        probes, as after any lost append). A heartbeat would not do for a follower whose
        acknowledgement is still on its way (often the one that forwarded the write, as the
        other follower acknowledged first): it carries the commit only up to what the follower
        acknowledged, which would cost one more round trip. Any other follower (lagging,
        probed) gets the commit by a ReadIndex round of heartbeats.

        Each peer is told a commit index once: the acknowledgements of the notices themselves
        must not set off new notices (that ping-pong kept three servers busy while a forwarded
        write was pending). A follower that the other followers' acknowledgements already make
        a quorum with learns the commit from their PeerAcks, sooner: it is not told again."""
        if node.last_index != node.commit_index:
            return
        commit = node.commit_index
        commit_term = node.term_at(commit)
        told = (node.term, commit)
        everyone_told = commit_term is not None
        peers = node.status()["peers"]
        for peer, progress in peers.items():
            if self._commit_told.get(peer) == told:
                continue
            if commit_term is not None and progress["next"] > commit:
                self._commit_told[peer] = told
                if self._peers_tell(node, peer, peers, commit):
                    continue
                self._sender.send(
                    AppendEntries(node.term, self.id, peer, commit, commit_term, commit)
                )
            else:
                everyone_told = False
        if not everyone_told and self._commit_read_round != told:
            self._commit_read_round = told  # one ReadIndex round per commit index
            node.read_index(COMMIT_NOTICE)
            while node.has_ready():
                self._handle_ready(node, node.ready())

    def _peers_tell(self, node: RaftNode, peer: str, peers: dict, commit: int) -> bool:
        """Whether `peer` commits `commit` from PeerAcks: with it, the followers that have
        acknowledged the entries (and so sent it their PeerAcks) are a quorum of voters."""
        voters = node.voters
        if not self.config.peer_acks or peer not in voters:
            return False
        holding = sum(
            1 for v in voters if v == peer or (v in peers and peers[v]["match"] >= commit)
        )
        return holding >= len(voters) // 2 + 1

    @staticmethod
    def _may_send_before_persisting(rd: Ready, storage: FileStorage) -> bool:
        """A leader's appends may go out while its own fsync runs (Raft thesis 10.2.1), so the
        followers' fsyncs overlap the leader's: one fsync less on the write path. Safe here
        because this loop finishes the fsync before it handles any acknowledgement, so a commit
        never counts the leader's copy before it is durable. Only when term and vote are
        already durable (a vote must be on disk before anyone hears of it)."""
        if rd.role != Role.LEADER or rd.snapshot is not None:
            return False
        hard = rd.hard_state
        return hard is None or (hard.term, hard.vote) == (storage.hard.term, storage.hard.vote)

    def _handle_ready(self, node: RaftNode, rd: Ready) -> None:
        storage = self._storage
        assert storage is not None
        early = self._may_send_before_persisting(rd, storage)
        if early:
            self._send_all(rd.messages)
            self._answer_placed()  # while this node's fsync runs
        if rd.snapshot is not None:
            storage.save_snapshot(rd.snapshot)
            self._queue_deferred()
            self._to_apply(("snapshot", rd.snapshot))
        hard = rd.hard_state
        if (
            hard is not None
            and not rd.entries
            and (hard.term, hard.vote) == (storage.hard.term, storage.hard.vote)
        ):
            # Only the commit index moved: not worth an fsync before applying. A commit index
            # that lags on disk is safe (after a restart the leader tells it again, and the
            # store keeps its own applied position); it is written with the next entries.
            hard = None
        storage.append(rd.entries, hard)
        inline = False
        if rd.committed_entries:
            small = sum(len(e.data) for e in rd.committed_entries) <= INLINE_APPLY_BYTES
            if small and self._apply_sent == self._apply_done:
                # The apply thread is idle: applying on this loop (once this round's messages,
                # commit notices included, are out) saves a thread hand-off per write.
                self._deferred_apply.extend(rd.committed_entries)
                inline = True
            else:
                self._queue_deferred()
                self._to_apply(("entries", rd.committed_entries))
        if not early:
            if inline and not rd.entries:
                # Acks of a commit notice or heartbeat: nobody waits on them, while a client
                # of this node may wait on the write they commit. Sent after this round's apply.
                self._held.extend(rd.messages)
            else:
                self._send_all(rd.messages)
        for rs in rd.read_states:
            self._reads.on_read_state(rs.context, rs.index)
        node.advance(rd)

    def _send_all(self, messages: list[Message]) -> None:
        self._send_held()  # keep each peer's messages in order
        for msg in messages:
            self._sender.send(msg)

    def _send_held(self) -> None:
        if self._held:
            held, self._held = self._held, []
            for msg in held:
                self._sender.send(msg)

    def _answer_placed(self) -> None:
        """Tell forwarding followers where their writes went, once the entries have been sent
        on (the answer is needed only when the commit arrives; the append is on the write's
        critical path)."""
        if self._placed:
            placed, self._placed = self._placed, []
            for fut in placed:
                if fut.on_placed is not None and fut.placed is not None:
                    fut.on_placed(fut.placed)

    def _start_snapshot(self, index: int) -> None:
        """Pin the store's state at `index` (applied just now) and build the snapshot on its own
        thread. Building and storing a large snapshot takes long; done on the loop it held up
        heartbeats long enough for followers to call elections."""
        view = getattr(self.store, "snapshot_view", None)
        if view is not None:
            write_out = view()
        else:
            data = self.store.snapshot()

            def write_out() -> bytes:
                return data

        addresses = dict(self._replicated_addrs)
        self._snapshotting = True
        thread = threading.Thread(
            target=self._build_snapshot,
            args=(index, addresses, write_out),
            name=f"raft-snapshot-{self.id}",
            daemon=True,
        )
        thread.start()

    def _build_snapshot(
        self, index: int, addresses: dict[str, str], write_out: Callable[[], bytes]
    ) -> None:
        try:
            data = pack_snapshot(addresses, write_out())
        except Exception:  # the next snapshot point tries again
            log.exception("raft: %s could not build a snapshot at %d", self.id, index)
            self._snapshotting = False
            return
        done = threading.Event()
        kept: list[Compacted] = []

        def compact_in_loop(node: RaftNode) -> None:
            if index > node.snapshot_index:
                kept.append(node.compact(index, data))
            done.set()

        self._call_in_loop(compact_in_loop)
        while not done.wait(0.5):
            if self._stop.is_set():
                return
        storage = self._storage
        if kept and storage is not None and not self._stop.is_set():
            try:
                storage.keep_snapshot(kept[0].snapshot)
            except OSError:
                log.exception("raft: %s could not store its snapshot at %d", self.id, index)
                self._snapshotting = False
                return
            self._call_in_loop(lambda node: storage.drop_prefix(kept[0]))
        self._snapshotting = False

    # ----- the apply thread -------------------------------------------------------------------

    def _queue_deferred(self) -> None:
        """Entries kept for the loop go to the apply thread first, to stay in order."""
        if self._deferred_apply:
            entries, self._deferred_apply = self._deferred_apply, []
            self._to_apply(("entries", entries))

    def _apply_deferred(self) -> None:
        if self._deferred_apply:
            entries, self._deferred_apply = self._deferred_apply, []
            self._apply_entries(entries)

    def _to_apply(self, item: tuple) -> None:
        """Queue work for the apply thread (Raft loop only: it alone counts `_apply_sent`)."""
        self._apply_sent += 1
        self._apply_q.put(item)

    def _apply_loop(self) -> None:
        try:
            while True:
                item = self._apply_q.get()
                if item is None:
                    return
                kind = item[0]
                if kind == "entries":
                    entries = list(item[1])
                    taken = 1
                    while True:  # merge queued entry lists: one store transaction
                        try:
                            nxt = self._apply_q.get_nowait()
                        except queue.Empty:
                            nxt = False
                        if nxt is False:
                            break
                        if nxt is not None and nxt[0] == "entries" and len(entries) < 20_000:
                            entries.extend(nxt[1])
                            taken += 1
                            continue
                        self._apply_entries(entries)
                        entries = []
                        if nxt is None:
                            return
                        self._apply_other(nxt)
                        taken += 1
                        break
                    if entries:
                        self._apply_entries(entries)
                    self._apply_done += taken
                else:
                    self._apply_other(item)
                    self._apply_done += 1
        except BaseException as exc:
            log.exception("raft: apply thread of %s failed", self.id)
            self._failed = exc
            self._stop.set()
            self._inbox.put(None)

    def _apply_other(self, item: tuple) -> None:
        if item[0] == "snapshot":
            snap: Snapshot = item[1]
            self._install_snapshot_locally(snap, at_start=False)
            self._last_snapshot = snap.meta.index
            self._store_floor = snap.meta.index
            self._fail_waiters_upto(snap.meta.index)
            self._set_applied(snap.meta.index)
        elif item[0] == "leadership" and not item[1] and self._leader_notified:
            self._leader_notified = False
            self._notify_leadership(False)

    def _apply_entries(self, entries: list) -> None:
        if not entries:
            return
        resolved = self._apply_data_entries(entries, self._store_floor)
        last = entries[-1].index
        for entry in entries:
            if entry.kind != EntryKind.DATA:
                resolved.setdefault(entry.index, (entry.term, []))
        self._set_applied(last)
        self._resolve(resolved, last)
        for entry in entries:
            if (
                entry.kind == EntryKind.NOOP
                and self._role == Role.LEADER
                and entry.term == self._term
                and not self._leader_notified
            ):
                self._leader_notified = True
                self._notify_leadership(True)
        if last - self._last_snapshot >= self.snapshot_every and not self._snapshotting:
            self._last_snapshot = last
            self._start_snapshot(last)

    def _apply_data_entries(self, entries: list, floor: int) -> dict[int, tuple[int, list]]:
        """Apply DATA entries above `floor` in one store transaction; {index: (term, results)}."""
        store_cmds: list[dict] = []
        spans: list[tuple[int, int, list]] = []  # (index, term, per-command slot list)
        last_data = 0
        for entry in entries:
            if entry.kind != EntryKind.DATA:
                continue
            commands = decode_command_list(entry.data)
            if commands is None:
                log.error("raft: entry %d is not a JSON command list; skipped", entry.index)
                spans.append((entry.index, entry.term, []))
                continue
            slots: list = []
            for command in commands:
                if is_driver_command(command):
                    slots.append(self._apply_driver_command(command))
                elif entry.index <= floor:
                    slots.append(Result(False, "already applied before a restart", 409))
                else:
                    slots.append(len(store_cmds))
                    store_cmds.append(command)
            if entry.index > floor:
                last_data = entry.index
            spans.append((entry.index, entry.term, slots))
        results = self._apply_to_store(store_cmds, last_data) if store_cmds else []
        out: dict[int, tuple[int, list]] = {}
        for index, term, slots in spans:
            out[index] = (term, [results[s] if isinstance(s, int) else s for s in slots])
        if store_cmds and self.on_applied is not None:
            self._events.put((self.on_applied, (store_cmds, results)))
        return out

    def _apply_to_store(self, commands: list[dict], last_index: int) -> list[Result]:
        """One store transaction; a command that makes the store raise something other than
        its own StoreError (a malformed command) must not stop every server of the cluster:
        the batch is then applied one command at a time and the culprit gets an error result.
        Disk errors (sqlite3.Error) still stop this node."""
        try:
            return self.store.apply_batch(commands, last_index=last_index)
        except sqlite3.Error:
            raise
        except Exception:  # noqa: BLE001 - deterministic on every server, so handled alike
            log.warning("raft: a batch failed in the store; applying its commands one by one")
        results = []
        for command in commands:
            try:
                results.extend(self.store.apply_batch([command]))
            except sqlite3.Error:
                raise
            except Exception as exc:  # noqa: BLE001 - reported to the submitter
                op = command.get("op") if isinstance(command, dict) else None
                results.append(
                    Result(False, f"store command {op!r} failed: {type(exc).__name__}: {exc}", 500)
                )
        self.store.apply_batch([], last_index=last_index)
        return results

    def _apply_driver_command(self, command: dict) -> Result:
        if command.get("op") == ADDRESSES_OP:
            self._merge_replicated(command.get("addresses"))
            return Result(True)
        return Result(False, f"unknown Raft driver command {command.get('op')!r}", 400)

    def _resolve(self, resolved: dict[int, tuple[int, list]], last: int) -> None:
        with self._waiters_lock:
            for index, value in resolved.items():  # for forwarded writes answered late
                self._recent[index] = value
                self._recent_order.append(index)
            while len(self._recent_order) > RECENT_RESULTS:
                self._recent.pop(self._recent_order.popleft(), None)
            if not self._waiters:
                return
            done = [(i, w) for i in list(self._waiters) if i <= last for w in self._waiters.pop(i)]
        for index, waiter in done:
            self._settle(index, waiter, resolved.get(index))

    def _settle(self, index: int, waiter: _Waiter, applied: tuple[int, list] | None) -> None:
        if applied is None:
            for fut, _, _ in waiter.futures:
                _fail(fut, RaftError(f"raft: index {index} was applied; its result is unknown"))
            return
        term, results = applied
        if term != waiter.term:
            for fut, _, _ in waiter.futures:
                self._retry_or_fail(fut)  # another leader's entry took the slot: not applied
            return
        for fut, offset, count in waiter.futures:
            if not fut.done():
                fut.index = index
                fut.set_result(results[offset : offset + count])

    def _fail_waiters_upto(self, index: int) -> None:
        with self._waiters_lock:
            done = [w for i in list(self._waiters) if i <= index for w in self._waiters.pop(i)]
        for waiter in done:
            for fut, _, _ in waiter.futures:
                _fail(fut, RaftError("raft: write was applied through a snapshot; result unknown"))

    def _set_applied(self, index: int) -> None:
        with self._applied_cv:
            self._applied = max(self._applied, index)
            self._applied_cv.notify_all()

    def _notify_leadership(self, leading: bool) -> None:
        if self.on_leadership is not None:
            self._events.put((self.on_leadership, (leading,)))

    def _events_loop(self) -> None:
        """Runs the callbacks in order, never on the Raft loop or apply thread, so a callback
        may itself submit writes."""
        while True:
            item = self._events.get()
            if item is None:
                return
            callback, args = item
            try:
                callback(*args)
            except Exception:  # a listener must not stop replication
                log.exception("raft: %s callback failed", getattr(callback, "__name__", "a"))

    # ----- maintenance ------------------------------------------------------------------------

    def _maintenance_loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self._expire_waiters()
                self._announce_addresses()
            except Exception:  # retried on the next round
                log.debug("raft: maintenance round failed", exc_info=True)

    def _expire_waiters(self) -> None:
        now = time.monotonic()
        with self._waiters_lock:
            expired = []
            for index in list(self._waiters):
                keep = [w for w in self._waiters[index] if w.deadline >= now]
                expired += [w for w in self._waiters[index] if w.deadline < now]
                if keep:
                    self._waiters[index] = keep
                else:
                    del self._waiters[index]
        for waiter in expired:
            for fut, _, _ in waiter.futures:
                _fail(fut, TimeoutError("raft: write not committed in time; outcome unknown"))

    def _announce_addresses(self) -> None:
        """Make the replicated address map know every voter, and this node's current address."""
        if self._failed is not None or self._stop.is_set():
            return
        if self.is_leader():
            members = {*self._voters, *self._learners}
            missing = {
                n: a
                for n, a in self._local_addrs.items()
                if n in members and n not in self._replicated_addrs
            }
            if self._replicated_addrs.get(self.id) != self.rpc_addr:
                missing[self.id] = self.rpc_addr
            if missing:
                self.submit([addresses_command(missing)], timeout=2.0)
            return
        if self._replicated_addrs.get(self.id) == self.rpc_addr or (
            self.id not in self._voters and self.id not in self._learners
        ):
            return
        command = [addresses_command({self.id: self.rpc_addr})]
        targets = [self.leader_addr()] if self.leader_addr() else []
        targets += [a for n, a in self._addrs.items() if n != self.id and a not in targets]
        for addr in targets:
            try:
                reply = self.rpc.call(
                    addr, "raft.submit", {"commands": command, "timeout": 2.0}, timeout=3.0
                )
            except RpcError:
                continue
            if isinstance(reply, dict) and "index" in reply:
                return


def _commands_arg(method: str, args: dict) -> list[dict]:
    commands = args.get("commands")
    if not isinstance(commands, list) or not all(isinstance(c, dict) for c in commands):
        raise RpcError(f"{method}: 'commands' must be a list of objects")
    return commands


def _wait(fut: Future, timeout: float, what: str) -> Any:
    try:
        return fut.result(timeout=max(0.0, timeout))
    except TimeoutError:
        raise TimeoutError(f"raft: {what} did not finish within {timeout:.3g}s") from None


def _fail(fut: Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


# ----- a stand-alone server (benchmarks, manual tests) ---------------------------------------


def main(argv: list[str] | None = None) -> int:
    """`python3 -m dkron_pkg.raftnode --id a --addr 127.0.0.1:6868 --data DIR --peer b=...`:
    one Raft server with a job store, RPC on --addr, until SIGINT/SIGTERM."""
    import signal

    from .rpc import RpcServer, decode_key
    from .rpc_tls import load_tls

    parser = argparse.ArgumentParser(prog="python3 -m dkron_pkg.raftnode")
    parser.add_argument("--id", required=True)
    parser.add_argument("--addr", required=True, help="RPC address ip:port to listen on")
    parser.add_argument("--data", required=True, help="data directory")
    parser.add_argument("--peer", action="append", default=[], help="id=ip:port (repeat)")
    parser.add_argument("--encrypt", required=True, help="cluster key (base64, `dkron keygen`)")
    parser.add_argument("--no-fsync", action="store_true")
    for flag in ("cert", "key", "ca"):
        parser.add_argument(f"--rpc-tls-{flag}", default="", help="as for `dkron agent`")
    args = parser.parse_args(argv)
    try:
        key = decode_key(args.encrypt)
        if key is None:
            raise ValueError("--encrypt: the RPC port needs the cluster key")
        tls = load_tls(args.rpc_tls_cert, args.rpc_tls_key, args.rpc_tls_ca)
        peers = dict(p.split("=", 1) for p in args.peer)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    peers[args.id] = args.addr
    store = Store(os.path.join(args.data, "store.db"))
    client = RpcClient(key, tls=tls)
    node = RaftReplicator(
        args.id, args.addr, args.data, store, client, bootstrap=peers, fsync=not args.no_fsync
    )
    host, _, port = args.addr.rpartition(":")
    server = RpcServer(host, int(port), key, node.handle_rpc, node.on_raft_frame, tls=tls)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    node.start()
    server.start()
    stop.wait()
    server.stop()
    node.close()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
