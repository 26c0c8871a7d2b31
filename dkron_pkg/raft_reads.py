"""The Raft driver's linearizable read points: ReadIndex rounds, batched (`read_rounds`).

A read asks `join()` for a Future of a read index: an index such that a store that has applied
it holds every write acknowledged before the read began. The leader's core answers once a
quorum of voters is known to have been in no later term than its own after the round began
(`RaftNode.read_index`): by a heartbeat round, or by a voter's own word, `via`:
- on a follower, a round is one "raft.read_index" request to the leader carrying the
  follower's term, read when the round starts; the leader passes it to its core (`serve`);
- on the leader, a round first asks the other voters for their terms ("raft.term", answered on
  their RPC threads, without their Raft loops); the first answer is passed to the core as
  `via`, or, if it is an error, the round is a plain round of heartbeats (so is a round with
  no voter to ask over an open connection).
With three voters the leader's word and one other make the quorum: no heartbeat round.

Reads that arrive while a round is in flight share the next one, so the number of rounds per
second stays bounded by round trips, not by readers. Why a voter's word is enough: a voter
whose term is at most the leader's, after the round began, had not voted for a later leader
by then; with the leader, a quorum of such voters means no later leader existed when the reads
began, so every write acknowledged before them is in the leader's log, whose end is the read
point (raftlog's `_start_read`).

A failed round (leadership lost, the leader unreachable, no answer within `round_limit_s`)
fails its reads with `ReadRetry`; reads have no effect, so the caller simply asks again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .raftlog import NotLeader, RaftNode
from .read_rounds import ReadRounds
from .rpc import RpcClient, RpcError

__all__ = ["ReadIndexer", "ReadRetry"]

# (this node leads, the leader's id, the leader's RPC address) as the driver last published it
Leadership = Callable[[], tuple[bool, str | None, str | None]]


class ReadRetry(Exception):
    """No read index this time (no leader, leadership lost, the leader could not be asked)."""


class ReadIndexer:
    """Batched ReadIndex rounds for one Raft driver; see the module docstring.

    Thread use: `join` and `expire` from any thread; `on_read_state` and `on_leadership_lost`
    on the Raft loop (between `ready()` and `advance()` is fine: they never touch the core).
    """

    def __init__(
        self,
        node_id: str,
        rpc: RpcClient,
        call_in_loop: Callable[[Callable[[RaftNode], None]], None],
        leadership: Leadership,
        term_now: Callable[[], int],
        other_voters: Callable[[], list[tuple[str, str | None]]],
        round_limit_s: float,
    ) -> None:
        self.id = node_id
        self.rpc = rpc
        self.round_limit_s = round_limit_s
        self._call_in_loop = call_in_loop
        self._leadership = leadership
        self._term_now = term_now
        self._other_voters = other_voters
        self._asked: dict[int, bool] = {}  # leader rounds asking voters' terms: answered yet?
        self._served = 0
        self._lock = threading.Lock()
        self._rounds: ReadRounds[Future] = ReadRounds()
        # Awaiting their ReadState (Raft loop only): own rounds by id, followers' requests.
        self._contexts: dict[bytes, int | Future] = {}
        self.reads = 0
        self.rounds = 0

    def join(self) -> Future:
        """A Future of a read index for a read that begins now (ReadRetry when it fails)."""
        fut: Future = Future()
        with self._lock:
            self.reads += 1
            round_id = self._rounds.add(fut, time.monotonic())
        if round_id is not None:
            self._start(round_id)
        return fut

    def serve(self, via: str, via_term: int) -> Future:
        """A follower's request on the leader: a Future of a read index confirmed by this
        leader's core with the follower's word (`RaftNode.read_index(via=...)`)."""
        fut: Future = Future()
        self._call_in_loop(lambda node: self._serve_on_core(node, fut, via, via_term))
        return fut

    def expire(self) -> None:
        """Give up the round in flight if it has waited longer than `round_limit_s`."""
        with self._lock:
            round_id = self._rounds.overdue(time.monotonic(), self.round_limit_s)
        if round_id is not None:
            self._end(round_id, ReadRetry("raft: no read index within the round limit"))

    def on_read_state(self, context: bytes, index: int) -> None:
        waiter = self._contexts.pop(context, None)
        if isinstance(waiter, int):
            self._end(waiter, index)
        elif waiter is not None:
            _settle(waiter, index)

    def on_leadership_lost(self) -> None:
        waiters, self._contexts = list(self._contexts.values()), {}
        lost = ReadRetry("raft: this server lost the leadership")
        for waiter in waiters:
            if isinstance(waiter, int):
                self._end(waiter, lost)
            else:
                _settle(waiter, lost)

    def close(self) -> None:
        with self._lock:
            waiting = self._rounds.clear()
        for fut in waiting:
            _settle(fut, ReadRetry("raft: node is shutting down"))

    # ----- rounds -------------------------------------------------------------------------------

    def _start(self, round_id: int) -> None:
        self.rounds += 1
        leading, leader, addr = self._leadership()
        if leading:
            self._ask_terms(round_id)
            return
        if addr is None or leader in (None, self.id):
            self._end(round_id, ReadRetry("raft: no leader known"))
            return
        args = {"id": self.id, "term": self._term_now()}  # read now: after the reads began
        asked = self.rpc.call_async(addr, "raft.read_index", args)
        asked.add_done_callback(lambda f: self._end(round_id, _index_from(f, addr)))

    def _ask_terms(self, round_id: int) -> None:
        others = [(voter, addr) for voter, addr in self._other_voters() if addr]
        if not others:  # a lone voter (its core answers at once), or no address known
            self._call_in_loop(lambda node: self._start_on_core(node, round_id))
            return
        asks = [
            (v, self.rpc.call_async(a, "raft.term", {}, connected_only=True)) for v, a in others
        ]
        # A voter without an open connection fails at once: it neither decides nor delays.
        live = [(v, f) for v, f in asks if not (f.done() and f.exception() is not None)]
        if not live:
            self._call_in_loop(lambda node: self._start_on_core(node, round_id))
            return
        with self._lock:
            self._asked[round_id] = False
        for voter, asked in live:
            asked.add_done_callback(lambda f, v=voter: self._term_answered(round_id, v, f))

    def _term_answered(self, round_id: int, voter: str, answer: Future) -> None:
        """The first answer decides: a term is passed to the core as `via`; an error makes the
        round a plain heartbeat round. Later answers are ignored."""
        with self._lock:
            if self._asked.get(round_id) is not False:
                return
            self._asked[round_id] = True
            self._asked = {r: done for r, done in self._asked.items() if r >= round_id}
        try:
            reply = answer.result()
            term = reply.get("term") if isinstance(reply, dict) else None
        except RpcError:
            term = None
        if isinstance(term, int):
            self._call_in_loop(lambda node: self._start_on_core(node, round_id, voter, term))
        else:
            self._call_in_loop(lambda node: self._start_on_core(node, round_id))

    def _start_on_core(
        self, node: RaftNode, round_id: int, via: str | None = None, via_term: int = 0
    ) -> None:
        context = b"read:%d" % round_id
        if isinstance(node.read_index(context, via, via_term), NotLeader):
            self._end(round_id, ReadRetry("raft: this server no longer leads"))
        else:
            self._contexts[context] = round_id

    def _serve_on_core(self, node: RaftNode, fut: Future, via: str, via_term: int) -> None:
        self._served += 1
        context = b"via:%d" % self._served
        if isinstance(node.read_index(context, via, via_term), NotLeader):
            _settle(fut, ReadRetry("raft: this server no longer leads"))
        else:
            self._contexts[context] = fut

    def _end(self, round_id: int, outcome: int | ReadRetry) -> None:
        with self._lock:
            done, following = self._rounds.finish(round_id, time.monotonic())
        for fut in done:
            _settle(fut, outcome)
        if following is not None:
            self._start(following)


def _index_from(answer: Future, addr: str) -> int | ReadRetry:
    try:
        reply: Any = answer.result()
    except RpcError as exc:
        return ReadRetry(f"raft: read index from the leader at {addr} failed: {exc}")
    if isinstance(reply, dict) and isinstance(reply.get("index"), int):
        return reply["index"]
    return ReadRetry(f"raft: {addr} is no longer the leader")


def _settle(fut: Future, outcome: int | ReadRetry) -> None:
    if fut.done():
        return
    if isinstance(outcome, ReadRetry):
        fut.set_exception(outcome)
    else:
        fut.set_result(outcome)
