"""Replay protection for keyed gossip: a time window plus the packets seen inside it.

Every keyed packet carries, inside its HMAC, the sender's name, a random number drawn when the
sender's process started (its epoch), a counter of the packets that process has sealed, and
the sender's clock (see ``swim_codec.Envelope``). A receiver accepts a packet only when:

- its time stamp is within ``window`` seconds of the receiver's clock (either way: the hosts
  of a cluster are NTP-synced, 30 s leaves ample room for skew and queueing), and
- it has not already accepted the same ``(sender, epoch, counter)``.

A packet whose stamp has left the window is refused by the first rule, so the second only
has to remember what was accepted within the window: the memory follows the traffic, not the
uptime, and a reordered or late packet (a TCP push-pull behind a slow connect) is never
mistaken for a replay, as it would be by a fixed-size counter window. A restarted sender
draws a new epoch, so its counter may start again from 1. The table is capped
(``max_entries``); when it is full, new packets are refused until entries expire: only
holders of the cluster key can fill it, since a packet is recorded only after its tag
checked out.

Deterministic: the caller gives the time. No I/O.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

WINDOW = 30.0
MAX_ENTRIES = 32768


class Stamp(NamedTuple):
    """What identifies one sealed packet (a subset of ``swim_codec.Envelope``)."""

    sender: str
    epoch: int
    counter: int
    ts_ms: int


class ReplayGuard:
    """Remembers the packets accepted within the time window; see the module docstring."""

    def __init__(self, window: float = WINDOW, max_entries: int = MAX_ENTRIES) -> None:
        if window <= 0 or max_entries <= 0:
            raise ValueError("the replay window and its capacity must be positive")
        self.window_ms = int(window * 1000)
        self.max_entries = max_entries
        self._seen: dict[tuple[str, int, int], int] = {}
        self._expiry: deque[tuple[int, tuple[str, int, int]]] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, stamp: Stamp, now: float) -> str | None:
        """Why the packet must be refused, or None when it is new and on time."""
        now_ms = int(now * 1000)
        skew = stamp.ts_ms - now_ms
        if skew < -self.window_ms:
            return (
                f"sent {-skew / 1000:.0f} s ago, outside the {self.window_ms // 1000} s "
                "replay window (a replay, or a clock that is wrong on one side)"
            )
        if skew > self.window_ms:
            return (
                f"stamped {skew / 1000:.0f} s in the future, outside the "
                f"{self.window_ms // 1000} s replay window (is a clock wrong?)"
            )
        self._expire(now_ms)
        if (stamp.sender, stamp.epoch, stamp.counter) in self._seen:
            return f"a replay (packet {stamp.counter} of {stamp.sender} was already accepted)"
        if len(self._seen) >= self.max_entries:
            return f"the replay table is full ({self.max_entries} packets within the window)"
        return None

    def record(self, stamp: Stamp) -> None:
        """Remember an accepted packet until its stamp leaves the window."""
        key = (stamp.sender, stamp.epoch, stamp.counter)
        if key not in self._seen:
            self._seen[key] = stamp.ts_ms
            self._expiry.append((stamp.ts_ms + self.window_ms, key))

    def _expire(self, now_ms: int) -> None:
        # Entries are in arrival order, which is close to stamp order; one that expires early
        # but sits behind a later one stays a little longer, which costs memory, never safety.
        expiry, seen = self._expiry, self._seen
        while expiry and expiry[0][0] < now_ms:
            _, key = expiry.popleft()
            seen.pop(key, None)
