"""Outgoing Raft messages: one queue and one thread per peer, so a slow or dead peer never
blocks the Raft loop or the other peers.

When a peer's queue is empty and its connection can take a small message without blocking,
the message is sent at once from the caller (`send_now`): one thread hand-off less per message
on the write path. Otherwise it is queued, and order per peer is kept either way.

Delivery is best effort (Raft retries by itself). After a failed send the peer is skipped for a
short back-off, and whatever was queued for it meanwhile is dropped and counted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable

from .raft_messages import InstallSnapshot, Message, encode

log = logging.getLogger("dkron.raft")

BACKOFF_S = 0.1
# Big batches (heavy load) are encoded and sent by the peer's thread, beside the Raft loop's
# fsync; small messages, the single-writer case, go at once.
DIRECT_MAX_ENTRIES = 8


class PeerSender:
    """Sends encoded Raft messages to peers by node id; addresses are looked up at send time."""

    def __init__(
        self,
        send: Callable[[str, bytes], bool],
        address_of: Callable[[str], str | None],
        send_now: Callable[[str, bytes], bool] | None = None,
    ) -> None:
        self._send = send
        self._send_now = send_now
        self._address_of = address_of
        self._queues: dict[str, queue.SimpleQueue] = {}
        self._pending: dict[str, int] = {}  # queued or being sent by the peer's thread
        self._lock = threading.Lock()
        self._closed = False
        self.dropped: Counter[str] = Counter()
        self.sent = 0

    def send(self, msg: Message) -> None:
        """Send or queue `msg`; call from one thread only (the Raft loop), which keeps the
        per-peer order between messages sent at once and queued ones."""
        if (
            self._send_now is not None
            and not self._pending.get(msg.dst)
            and len(getattr(msg, "entries", ())) <= DIRECT_MAX_ENTRIES
            and not isinstance(msg, InstallSnapshot)
        ):
            addr = self._address_of(msg.dst)
            if addr is not None and self._send_now(addr, encode(msg)):
                self.sent += 1
                return
        q = self._queues.get(msg.dst)
        if q is None:
            with self._lock:
                if self._closed:
                    return
                q = self._queues.get(msg.dst)
                if q is None:
                    q = queue.SimpleQueue()
                    self._queues[msg.dst] = q
                    threading.Thread(
                        target=self._run,
                        args=(msg.dst, q),
                        name=f"raft-send-{msg.dst}",
                        daemon=True,
                    ).start()
        with self._lock:
            self._pending[msg.dst] = self._pending.get(msg.dst, 0) + 1
        q.put(msg)

    def _run(self, peer: str, q: queue.SimpleQueue) -> None:
        down_until = 0.0
        while True:
            msg = q.get()
            if msg is None:
                return
            try:
                down_until = self._deliver(msg, down_until)
            finally:
                with self._lock:
                    self._pending[peer] -= 1

    def _deliver(self, msg: Message, down_until: float) -> float:
        """Send one queued message; returns the (possibly new) end of the peer's back-off."""
        if time.monotonic() < down_until:
            self.dropped["peer unreachable (back-off)"] += 1
            return down_until
        addr = self._address_of(msg.dst)
        if addr is None:
            self.dropped["no address known for peer"] += 1
            return down_until
        if self._send(addr, encode(msg)):
            self.sent += 1
            return down_until
        self.dropped["send failed"] += 1
        return time.monotonic() + BACKOFF_S

    def close(self) -> None:
        with self._lock:
            self._closed = True
            queues = list(self._queues.values())
        for q in queues:
            q.put(None)
