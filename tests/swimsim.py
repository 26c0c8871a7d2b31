"""Seeded network simulator for the SWIM core: a virtual clock, loss, delay, stalls, crashes.

Everything random (delays, loss, stalls, the cores' own choices) comes from generators derived
from one seed, and events are ordered by (time, sequence number), so the same seed replays the
same run: ``Sim.trace_digest()`` hashes every membership event and is compared across runs.

Model:
- UDP packets are lost with probability ``loss`` and delayed uniformly in ``delay``.
- Reliable (TCP) packets are never lost but take ``tcp_rtts`` extra round trips, and each
  segment lost on the way costs a retransmission timeout.
- A crashed node receives and sends nothing, forever.
- A stalled node (event-loop stall) processes nothing until it wakes; then it runs its due
  timers first and its backlog of packets after, which is the race that makes a slow node
  accuse healthy ones (the case Lifeguard is about). Its UDP backlog is bounded like a socket
  receive buffer (``rcvbuf`` bytes, each datagram charged its size plus ``SKB_OVERHEAD``, as
  Linux charges a buffer's true size); datagrams past it are dropped. TCP packets wait
  without bound (the sender's TCP holds them).
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from dkron_pkg.swim import Member, SwimNode
from dkron_pkg.swim_profiles import LAN, Profile

DELIVER, TICK, WAKE, STALL, CALL = 0, 1, 2, 3, 4
INF = float("inf")
RCVBUF = 212992  # Linux net.core.rmem_default
SKB_OVERHEAD = 768  # bookkeeping charged per datagram on top of its payload


@dataclass
class SimNode:
    core: SwimNode
    crashed: bool = False
    stall_until: float = 0.0
    backlog: list = field(default_factory=list)
    tick_at: float = INF
    stall_range: tuple[float, float] | None = None
    gap_range: tuple[float, float] = (0.1, 2.0)
    backlog_bytes: int = 0
    crashed_at: float = INF
    stalled_for: float = 0.0


@dataclass(frozen=True)
class Observation:
    at: float
    observer: str
    kind: str
    subject: str
    incarnation: int = 0


class Sim:
    """N SWIM cores on a virtual network; ``run_until`` advances the virtual clock."""

    def __init__(
        self,
        seed: int,
        n: int,
        profile: Profile = LAN,
        loss: float = 0.0,
        delay: tuple[float, float] = (0.001, 0.003),
        key: bytes | None = None,
        warm: bool = True,
        tcp_rtts: int = 2,
        rcvbuf: int = RCVBUF,
    ) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.loss, self.delay, self.tcp_rtts = loss, delay, tcp_rtts
        self._heap: list = []
        self._seq = 0
        self._digest = hashlib.sha256()
        self.observations: list[Observation] = []
        self.on_event: Callable[[Observation], None] | None = None
        self.packets = 0
        self.bytes = 0
        self.dropped = 0
        self.rcvbuf = rcvbuf
        self.overflowed = 0  # datagrams dropped because a stalled node's buffer was full
        self.blocked: set[tuple[int, int]] = set()  # (from, to) pairs cut by a partition
        self.nodes: list[SimNode] = []
        self.names: list[str] = []
        self.index: dict[tuple[str, int], int] = {}
        for i in range(n):
            name = f"node{i:04d}"
            addr = f"10.{i // 250}.{i % 250}.1"
            core_rng = random.Random(self.rng.getrandbits(64))
            core = SwimNode(name, addr, 8946, {"role": "dkron"}, profile, core_rng, key, now=0.0)
            self.nodes.append(SimNode(core))
            self.names.append(name)
            self.index[(addr, 8946)] = i
        if warm:
            shared_tags = {"role": "dkron"}
            roster = [
                Member(nd.core.name, nd.core.addr, 8946, shared_tags, "alive", 0)
                for nd in self.nodes
            ]
            for nd in self.nodes:
                nd.core.preload(roster, 0.0)
        for i in range(n):
            self._reschedule(i)

    # ------------------------------------------------------------------ scheduling

    def _push(self, at: float, kind: int, idx: int, payload: object = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, kind, idx, payload))

    def _reschedule(self, i: int) -> None:
        nd = self.nodes[i]
        due = nd.core.next_deadline()
        if due < nd.tick_at:
            due = max(due, self.now)
            nd.tick_at = due
            self._push(due, TICK, i)

    def at(self, when: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` at virtual time ``when`` (crashes, joins, tag changes...)."""
        self._push(when, CALL, -1, fn)

    def _dispatch(self, i: int, out: list) -> None:
        nd = self.nodes[i]
        src = (nd.core.addr, nd.core.port)
        rng = self.rng
        lo, hi = self.delay
        for o in out:
            self.packets += 1
            self.bytes += len(o.data)
            j = self.index.get((o.addr, o.port))
            if j is None or (i, j) in self.blocked:
                self.dropped += 1
                continue
            if o.reliable:
                lat = self._tcp_latency(lo, hi)
            else:
                if self.loss and rng.random() < self.loss:
                    self.dropped += 1
                    continue
                lat = rng.uniform(lo, hi)
            self._push(self.now + lat, DELIVER, j, (src, o.data, o.reliable))
        for ev in nd.core.drain_events():
            m = ev.member
            obs = Observation(self.now, nd.core.name, ev.kind, m.name, m.incarnation)
            self._digest.update(
                f"{self.now:.9f}|{obs.observer}|{obs.kind}|{obs.subject}\n".encode()
            )
            self.observations.append(obs)
            if self.on_event is not None:
                self.on_event(obs)
        self._reschedule(i)

    def _tcp_latency(self, lo: float, hi: float) -> float:
        """Connect plus request: each segment lost is resent after an RTO (1 s for the SYN,
        200 ms after), doubling, as Linux does; so TCP is reliable but not instant."""
        rng = self.rng
        lat = 0.0
        for seg in range(1 + 2 * self.tcp_rtts):
            lat += rng.uniform(lo, hi)
            rto = 1.0 if seg == 0 else 0.2
            while self.loss and rng.random() < self.loss:
                lat += rto
                rto *= 2
        return lat

    def run_until(self, t_end: float, stop: Callable[[], bool] | None = None) -> None:
        heap = self._heap
        nodes = self.nodes
        while heap and heap[0][0] <= t_end:
            t, _, kind, i, payload = heapq.heappop(heap)
            self.now = t
            if kind == CALL:
                payload()
                if stop is not None and stop():
                    return
                continue
            nd = nodes[i]
            if nd.crashed:
                continue
            if kind == DELIVER:
                if nd.stall_until > t:
                    if not payload[2]:
                        cost = len(payload[1]) + SKB_OVERHEAD
                        if nd.backlog_bytes + cost > self.rcvbuf:
                            self.overflowed += 1
                            continue
                        nd.backlog_bytes += cost
                    nd.backlog.append(payload)
                    continue
                self._dispatch(i, nd.core.receive(t, payload[0], payload[1], payload[2]))
            elif kind == TICK:
                if t != nd.tick_at:
                    continue
                nd.tick_at = INF
                if nd.stall_until > t:
                    continue
                self._dispatch(i, nd.core.tick(t))
            elif kind == STALL:
                nd.stall_until = t + self.rng.uniform(*nd.stall_range)
                nd.stalled_for += nd.stall_until - t
                self._push(nd.stall_until, WAKE, i)
            elif kind == WAKE:
                nd.stall_until = 0.0
                nd.tick_at = INF
                self._dispatch(i, nd.core.tick(t))
                backlog, nd.backlog, nd.backlog_bytes = nd.backlog, [], 0
                for src, data, reliable in backlog:
                    self._dispatch(i, nd.core.receive(t, src, data, reliable))
                self._push(t + self.rng.uniform(*nd.gap_range), STALL, i)
            if stop is not None and stop():
                return
        self.now = max(self.now, t_end) if not heap or heap[0][0] > t_end else self.now

    # ------------------------------------------------------------------ faults and actions

    def crash(self, i: int) -> None:
        self.nodes[i].crashed = True
        self.nodes[i].crashed_at = min(self.nodes[i].crashed_at, self.now)

    def stall(self, i: int, stall: tuple[float, float], gap: tuple[float, float]) -> None:
        """Make node i stall for ``stall`` seconds at a time, running ``gap`` seconds between."""
        nd = self.nodes[i]
        nd.stall_range, nd.gap_range = stall, gap
        self._push(self.now + self.rng.uniform(*gap), STALL, i)

    def partition(self, group_a: list[int], group_b: list[int]) -> None:
        for a in group_a:
            for b in group_b:
                self.blocked.add((a, b))
                self.blocked.add((b, a))

    def heal(self) -> None:
        self.blocked.clear()

    def call(self, i: int, fn: Callable[[SwimNode], list]) -> None:
        """Run a core method now (join, leave, set_tags) and send what it returns."""
        self._dispatch(i, fn(self.nodes[i].core))

    def add_node(self, name: str, profile: Profile = LAN, key: bytes | None = None) -> int:
        i = len(self.nodes)
        addr = f"10.{i // 250}.{i % 250}.1"
        core = SwimNode(
            name,
            addr,
            8946,
            {"role": "dkron"},
            profile,
            random.Random(self.rng.getrandbits(64)),
            key,
            now=self.now,
        )
        self.nodes.append(SimNode(core))
        self.names.append(name)
        self.index[(addr, 8946)] = i
        self._reschedule(i)
        return i

    # ------------------------------------------------------------------ results

    def live(self) -> list[int]:
        return [i for i, nd in enumerate(self.nodes) if not nd.crashed]

    def trace_digest(self) -> str:
        return self._digest.hexdigest()

    def converged(self, expected: int | None = None) -> bool:
        """Every live node sees every live node alive."""
        live = self.live()
        want = expected if expected is not None else len(live)
        for i in live:
            core = self.nodes[i].core
            if sum(1 for n in self.names if core.status_of(n) == "alive") < want:
                return False
        return True

    def all_members_kept(self) -> bool:
        """No live node has lost a live node: each sees every other as alive or suspect."""
        live = self.live()
        for i in live:
            core = self.nodes[i].core
            for j in live:
                if core.status_of(self.names[j]) not in ("alive", "suspect"):
                    return False
        return True

    def false_failures(self) -> list[Observation]:
        """Every "failed" event about a node that had not crashed when it was declared: one
        per declaring member (a victim declared dead by 99 members counts 99 times)."""
        crashed_at = {self.names[i]: nd.crashed_at for i, nd in enumerate(self.nodes)}
        return [
            o
            for o in self.observations
            if o.kind == "failed" and o.at < crashed_at.get(o.subject, INF)
        ]
