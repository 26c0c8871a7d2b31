"""Linearizable reads in rounds: one ReadIndex round serves every read that arrived before it.

Pure bookkeeping (no clock, threads or I/O: the caller passes the time), shared by the Raft
driver (`raftnode`) and the simulator (`tests/raftsim.py`), so the simulator checks the very
batching the servers run.

A ReadIndex round yields an index that holds every write acknowledged before the round began:
the leader notes its log's end, then hears from a quorum, after the round began, that it still
leads. A read may therefore share a round only if the round began after the read arrived. So at
most one round is in flight; reads that arrive meanwhile wait together for the next one, which
begins as soon as the one in flight ends. Under load, every read that arrives during one round
trip shares one round: on the leader one heartbeat broadcast, on a follower one request to the
leader (which itself joins the leader's rounds).
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["ReadRounds"]


class ReadRounds(Generic[T]):
    """The reads waiting for a read index, grouped into rounds; see the module docstring.

    Round ids only grow, so the answer of a round that was given up (`finish` called for it
    already) is recognised and ignored. `first_id` lets a restarted process avoid the ids of
    its previous life.
    """

    __slots__ = ("_members", "_next_id", "_queued", "_round", "_started")

    def __init__(self, first_id: int = 1) -> None:
        self._queued: list[T] = []
        self._members: list[T] = []
        self._round: int | None = None
        self._started = 0.0
        self._next_id = first_id

    @property
    def in_flight(self) -> int | None:
        """The id of the round in flight, or None."""
        return self._round

    def __len__(self) -> int:
        return len(self._queued) + len(self._members)

    def add(self, read: T, now: float = 0.0) -> int | None:
        """Queue a read. Returns the id of a round the caller must start now (it carries every
        queued read), or None: a round is in flight and this read goes with the next one."""
        self._queued.append(read)
        if self._round is not None:
            return None
        return self._begin(now)

    def finish(self, round_id: int, now: float = 0.0) -> tuple[list[T], int | None]:
        """Round `round_id` ended, answered or failed: returns its reads, and the id of the next
        round the caller must start now (None when no read waits). An old id ends nothing."""
        if round_id != self._round:
            return [], None
        done, self._members, self._round = self._members, [], None
        return done, (self._begin(now) if self._queued else None)

    def overdue(self, now: float, limit: float) -> int | None:
        """The id of the round in flight if it began more than `limit` ago (its request or its
        answer was lost: the caller gives it up with `finish`), else None."""
        if self._round is not None and now - self._started > limit:
            return self._round
        return None

    def clear(self) -> list[T]:
        """Every read, queued or in flight; nothing is in flight afterwards."""
        out = self._members + self._queued
        self._members, self._queued, self._round = [], [], None
        return out

    def _begin(self, now: float) -> int:
        self._round = self._next_id
        self._next_id += 1
        self._members, self._queued = self._queued, []
        self._started = now
        return self._round
