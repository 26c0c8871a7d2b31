"""Outgoing Raft messages: one queue and one thread per peer, so a slow or dead peer never
blocks the Raft loop or the other peers.

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

from .raft_messages import Message, encode

log = logging.getLogger("dkron.raft")

BACKOFF_S = 0.1


class PeerSender:
    """Sends encoded Raft messages to peers by node id; addresses are looked up at send time."""

    def __init__(
        self,
        send: Callable[[str, bytes], bool],
        address_of: Callable[[str], str | None],
    ) -> None:
        self._send = send
        self._address_of = address_of
        self._queues: dict[str, queue.SimpleQueue] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.dropped: Counter[str] = Counter()
        self.sent = 0

    def send(self, msg: Message) -> None:
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
        q.put(msg)

    def _run(self, peer: str, q: queue.SimpleQueue) -> None:
        down_until = 0.0
        while True:
            msg = q.get()
            if msg is None:
                return
            if time.monotonic() < down_until:
                self.dropped["peer unreachable (back-off)"] += 1
                continue
            addr = self._address_of(peer)
            if addr is None:
                self.dropped["no address known for peer"] += 1
                continue
            if self._send(addr, encode(msg)):
                self.sent += 1
            else:
                self.dropped["send failed"] += 1
                down_until = time.monotonic() + BACKOFF_S

    def close(self) -> None:
        with self._lock:
            self._closed = True
            queues = list(self._queues.values())
        for q in queues:
            q.put(None)
