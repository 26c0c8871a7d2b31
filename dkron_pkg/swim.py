"""SWIM + Lifeguard membership core: a deterministic state machine with no I/O.

The driver (the agent's event loop, or the simulator in tests) owns sockets, clocks and
randomness; this core only reacts to what it is given:

``SwimNode(name, addr, port, tags, profile, rng, key=None, now=0.0, epoch=None)``
    ``addr`` must be an IP address (the driver resolves names). ``profile`` is a
    :class:`~dkron_pkg.swim_profiles.Profile` (``LAN``, ``WAN``, ``LOCAL``,
    ``get_profile(name)``), ``rng`` a ``random.Random``, ``key`` the raw cluster key
    (``swim_codec.parse_key(--encrypt)``) or None, ``epoch`` a random number drawn at each
    process start (drawn from ``rng`` when not given).
``join(seeds, now, max_attempts=0) -> list[Outgoing]``
    push-pull with every seed ``(addr, port)``; retried with exponential backoff until one
    answers (``max_attempts`` 0 = forever). ``joined`` tells when it worked.
``tick(now) -> list[Outgoing]`` and ``next_deadline() -> float``
    call ``tick`` no later than ``next_deadline()``; extra calls are harmless.
``receive(now, from_addr, packet, reliable=False) -> list[Outgoing]``
    ``reliable`` is True for packets that came over TCP. Bad packets are dropped whole and
    counted in ``stats`` (``dropped_auth``: not proven to come from a key holder;
    ``dropped_replay``: replayed, outside the time window or addressed to another node;
    ``dropped_decode``: garbled or absurd; ``dropped_invalid``: inconsistent with its
    envelope, or absurd messages handed to ``receive_messages``); ``drain_refusals()`` gives
    one line for each, and ``key_refusals`` counts the packets refused for the key by source
    (``host:port`` for UDP, ``host`` for TCP, whose source port says nothing): ``[count,
    last now, last reason]``, the ``KEY_SOURCES`` most recent sources. Nothing raises, whatever the
    bytes. ``receive_messages(now, msgs)`` takes messages decoded elsewhere (checked the same
    way); ``admit(now, envelope)`` tells whether a keyed packet would be refused as a replay
    (so a TCP frame can be refused from its head).
``leave(now) -> list[Outgoing]``, ``set_tags(tags, now) -> list[Outgoing]`` (SIGHUP reload;
    ValueError when the tags exceed 512 bytes), ``preload(members, now)`` (warm start from a
    snapshot), ``members() -> list[Member]`` (this node included), ``member(name)``,
    ``status_of(name)``, ``drain_events() -> list[MemberEvent]`` with kinds ``join``,
    ``update``, ``failed``, ``leave``, ``reap``; ``Member`` is (name, addr, port, tags,
    status, incarnation) with status ``alive``, ``suspect``, ``failed`` or ``left``.
    ``clock`` is the Lamport clock, ``awareness`` the Lifeguard health score, ``stats`` the
    counters. Failed members are reaped after ``Profile.reconnect_timeout`` (24 h; set it
    from ``--serf-reconnect-timeout`` with ``profile.with_(reconnect_timeout=...)``).

With a key, every packet is sealed with an envelope (sender, receiver, epoch, counter, the
``now`` given by the driver) and the receiver refuses replays: see ``swim_replay``.
Incarnations saturate at 0xFFFFFFFF instead of overflowing: a refutation at the ceiling
keeps that incarnation, and an alive message at the ceiling clears a suspicion or verdict
at the ceiling (the only way left to refute once a key holder has pushed a node there).

Each :class:`Outgoing` is ``(addr, port, data, reliable)``: send ``data`` as one UDP datagram,
or over TCP when ``reliable`` (push-pull and the TCP fallback ping) and feed the peer's TCP
packets back with ``reliable=True``.

Mechanisms, after memberlist: round-robin probing, indirect probes through k helpers with
nacks, TCP fallback ping, suspicion with incarnations and refutation, Lifeguard's local health
score (scales probe interval and timeout) and dynamic suspicion timeout (shrinks with
independent confirmations), buddy system, piggybacked broadcasts sent
``retransmit_mult * ceil(log10(n+1))`` times, periodic push-pull anti-entropy, reconnect
attempts to failed nodes, reaping after ``reconnect_timeout``, and a Lamport clock.

Measured improvements over memberlist (all keep its timings):
- Shared probe ring: members sit on a ring ordered by a hash of their name; in probe round
  ``r = floor(now / probe_interval)`` each node probes the member ``offset(r)`` places after
  itself. Every member is then probed once per round (instead of a Poisson number of times),
  which cuts the wait before a crash is first noticed from up to ~5 s to at most ~2 s. It
  needs ``now`` to be wall-clock time on NTP-synced hosts; with skewed clocks it degrades to
  random probing, never worse. ``Profile.aligned_probes=False`` restores round-robin.
- Suspicion age: a suspect message carries how long its sender has suspected the node (up
  to one probe interval), so members' timers share an origin and reach the verdict together.
- Stall awareness (``Profile.stall_grace``, with Lifeguard): a tick that comes far past a
  deadline, or a verdict due after a probe interval of silence, means this process was
  paused, so its expired verdicts wait a fifth of a probe timeout for the unread backlog.
- Prompt refutation (``Profile.prompt_refute``, with Lifeguard): a refutation is answered to
  the prober that carried the suspicion and gossiped at once, not at the next gossip tick.
- Verdict recheck (``Profile.verdict_recheck``, with Lifeguard): a suspicion nobody else
  confirmed pings the suspect once more, carrying the suspicion, before the verdict.
- A graceful leave is sent to every live member directly, not only gossiped.
  Helpers nack after half the probe timeout so a healthy prober hears the nack in time,
  and a probe ends as soon as every helper has nacked.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

from . import swim_codec as wire
from .swim_codec import (
    INC_MAX,
    LTIME_MAX,
    STATUS_ALIVE,
    STATUS_FAILED,
    STATUS_LEFT,
    STATUS_NAMES,
    STATUS_SUSPECT,
    AuthError,
    DecodeError,
)
from .swim_profiles import LAN, Profile
from .swim_replay import ReplayGuard, Stamp

__all__ = ["DecodeError", "Member", "MemberEvent", "Outgoing", "SwimNode"]

KEY_SOURCES = 32  # sources of packets refused for the key that are remembered


@functools.lru_cache(maxsize=65536)
def _ring_key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")


def _mix(value: int) -> int:
    """splitmix64: a well-spread offset for each probe round, the same on every node."""
    z = (value * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


class Outgoing(NamedTuple):
    addr: str
    port: int
    data: bytes
    reliable: bool = False


@dataclass(frozen=True)
class Member:
    name: str
    addr: str
    port: int
    tags: dict[str, str]
    status: str
    incarnation: int


@dataclass(frozen=True)
class MemberEvent:
    kind: str  # join, update, failed, leave, reap
    member: Member
    at: float


class _Node:
    __slots__ = ("addr", "changed", "incarnation", "name", "port", "status", "tags")

    def __init__(self, name: str, addr: str, port: int, tags: dict, inc: int, now: float):
        self.name, self.addr, self.port, self.tags = name, addr, port, tags
        self.incarnation, self.status, self.changed = inc, STATUS_ALIVE, now

    def public(self) -> Member:
        return Member(
            self.name,
            self.addr,
            self.port,
            dict(self.tags),
            STATUS_NAMES[self.status],
            self.incarnation,
        )


class _Suspicion:
    """Lifeguard's timer: starts at max, shrinks with each independent confirmation."""

    __slots__ = ("deadline", "high", "incarnation", "k", "low", "rechecked", "seen", "start")

    def __init__(self, start: float, low: float, high: float, k: int, starter: str, inc: int):
        self.start, self.low, self.high, self.k = start, low, high, k
        self.seen = {starter: None}
        self.incarnation = inc
        self.rechecked = False
        self.deadline = start + (high if k >= 1 else low)

    def confirm(self, sender: str) -> bool:
        if len(self.seen) - 1 >= self.k or sender in self.seen:
            return False
        self.seen[sender] = None
        count = len(self.seen) - 1
        frac = math.log(count + 1) / math.log(self.k + 1)
        self.deadline = self.start + max(self.low, self.high - (self.high - self.low) * frac)
        return True


@dataclass
class _Probe:
    seq: int
    target: str
    indirect_at: float
    deadline: float
    acked: bool = False
    indirect_sent: bool = False
    expected_nacks: int = 0
    nacks: int = 0


@dataclass
class _Relay:
    """A ping we send for another node (ping-req): forward its ack, or nack in time."""

    name: str
    addr: str
    port: int
    seq: int
    nack_at: float
    want_nack: bool


@dataclass
class _Broadcast:
    key: str
    data: bytes
    order: int
    transmits: int = 0
    suspect: wire.Suspect | None = None  # re-encoded at each send with the current age
    timer: _Suspicion | None = None


@dataclass
class _JoinState:
    seeds: list[tuple[str, int]]
    next_at: float
    backoff: float
    attempts: int = 1
    max_attempts: int = 0
    done: bool = False
    history: list[float] = field(default_factory=list)


class SwimNode:
    """One member's view of the cluster; see the module docstring for the driver contract."""

    def __init__(
        self,
        name: str,
        addr: str,
        port: int,
        tags: dict[str, str] | None = None,
        profile: Profile = LAN,
        rng: random.Random | None = None,
        key: bytes | None = None,
        now: float = 0.0,
        epoch: int | None = None,
    ) -> None:
        problem = wire.name_problem(name, "node name") or wire.addr_problem(addr, port, "node")
        if problem:
            raise ValueError(problem)
        if key is not None and len(key) not in (16, 24, 32):
            raise ValueError("cluster key must be 16, 24 or 32 bytes")
        tags = dict(tags or {})
        wire.encode_tags(tags)
        self.name, self.addr, self.port = name, addr, port
        self.profile = profile
        self.rng = rng if rng is not None else random.Random(0)
        self.key = key
        # Replay protection (keyed only): a random epoch per process start and a counter of
        # sealed packets go into every envelope; the guard refuses what it has already seen.
        self._epoch = 0
        self._counter = 0
        self._guard: ReplayGuard | None = None
        self._envelope_base = 0
        if key is not None:
            self._epoch = epoch if epoch is not None else self.rng.getrandbits(64)
            self._guard = ReplayGuard(profile.replay_window)
            self._envelope_base = wire.TAG_LEN + 2 + len(name.encode()) + 24
        self._refusals: list[str] = []
        self._refusals_dropped = 0
        self.key_refusals: dict[str, list] = {}
        self.incarnation = 0
        self.clock = 0  # Lamport clock of membership intents
        self.awareness = 0  # Lifeguard local health score, 0 = healthy
        self.leaving = False
        self.stats: dict[str, int] = {
            "packets_in": 0,
            "packets_out": 0,
            "dropped_auth": 0,
            "dropped_decode": 0,
            "dropped_replay": 0,
            "dropped_invalid": 0,
            "refutes": 0,
            "suspicions": 0,
            "probe_failures": 0,
            "stalls": 0,
        }
        self._self = _Node(name, addr, port, tags, 0, now)
        self._nodes: dict[str, _Node] = {name: self._self}
        self._others: list[str] = []
        self._ring_keys: list[int] = [_ring_key(name)]
        self._ring_names: list[str] = [name]
        self._other_index: dict[str, int] = {}
        self._live = 1
        self._down: dict[str, None] = {}
        self._probe_order: list[str] = []
        self._probe_pos = 0
        self._probe: _Probe | None = None
        self._seq = self.rng.randrange(1 << 31)
        self._relays: dict[int, _Relay] = {}
        self._suspicions: dict[str, _Suspicion] = {}
        self._bq: dict[str, _Broadcast] = {}
        self._border = 0
        self._events: list[MemberEvent] = []
        self._join: _JoinState | None = None
        self.joined = False
        self._now = now
        self._stale_accusation = False
        self._promised = math.inf
        self._last_heard = now  # when a valid packet last arrived
        self._quiet_checked = -math.inf  # the _last_heard a quiet-period grace was given for
        pi = profile.probe_interval
        self._next_probe = now + self.rng.uniform(0, pi)
        self._next_gossip = now + self.rng.uniform(0, profile.gossip_interval)
        self._next_push_pull = now + self.rng.uniform(0, profile.push_pull_interval)
        self._next_reap = now + profile.reap_interval
        self._next_reconnect = now + self.rng.uniform(0, profile.reconnect_interval)

    # ------------------------------------------------------------------ public API

    @property
    def tags(self) -> dict[str, str]:
        return dict(self._self.tags)

    @property
    def num_live(self) -> int:
        """Alive and suspect members, this node included."""
        return self._live

    @property
    def pending_broadcasts(self) -> int:
        return len(self._bq)

    def members(self) -> list[Member]:
        return [n.public() for n in self._nodes.values()]

    def member(self, name: str) -> Member | None:
        node = self._nodes.get(name)
        return node.public() if node else None

    def status_of(self, name: str) -> str | None:
        node = self._nodes.get(name)
        return STATUS_NAMES[node.status] if node else None

    def drain_events(self) -> list[MemberEvent]:
        events, self._events = self._events, []
        return events

    def preload(self, members: Iterable[Member], now: float) -> None:
        """Start from a known membership (a snapshot, or a simulation's warm start), as alive.

        Tag dicts are shared, not copied: the core replaces a node's tags, never mutates them.
        """
        for m in members:
            if m.name == self.name or m.name in self._nodes:
                continue
            self._nodes[m.name] = _Node(m.name, m.addr, m.port, m.tags, m.incarnation, now)
            self._other_index[m.name] = len(self._others)
            self._others.append(m.name)
            self._live += 1
        self._ring_names = sorted([self.name, *self._others], key=_ring_key)
        self._ring_keys = [_ring_key(x) for x in self._ring_names]
        self._probe_order = list(self._others)
        self.rng.shuffle(self._probe_order)
        self._probe_pos = 0
        period = self.profile.push_pull_period(self._live)
        self._next_push_pull = now + self.rng.uniform(0, period)
        self.joined = True

    def join(
        self, seeds: Iterable[tuple[str, int]], now: float, max_attempts: int = 0
    ) -> list[Outgoing]:
        """Push-pull with each seed; retried with backoff until one of them answers."""
        self._now = now
        seeds = [(a, int(p)) for a, p in seeds if (a, int(p)) != (self.addr, self.port)]
        if not seeds:
            self.joined = True
            return []
        self._queue_self_alive()  # gossiped as soon as the push-pull has taught us some peers
        base = self.profile.retry_join_interval
        self._join = _JoinState(seeds, now + base, base, max_attempts=max_attempts)
        self._join.history.append(now)
        self._tick_clock()
        out: list[Outgoing] = []
        for addr, port in seeds:
            self._send_push_pull(out, "", addr, port, join=True, reply=False)
        return out

    def leave(self, now: float) -> list[Outgoing]:
        """Announce a graceful leave: the others mark this node left, not failed."""
        self._now = now
        if self.leaving:
            return []
        self.leaving = True
        self._tick_clock()
        self._self.status = STATUS_LEFT
        self._self.changed = now
        msg = wire.Dead(self.incarnation, self.name, self.name, self.clock)
        framed = wire.encode_message(msg)
        self._queue(self.name, framed)
        self._probe = None
        # A leave happens once per lifetime: tell every live member directly, so nobody has to
        # wait for gossip or a push-pull to learn it; the queued broadcast covers packet loss.
        out: list[Outgoing] = []
        for name in self._others:
            node = self._nodes[name]
            if node.status <= STATUS_SUSPECT:
                self._send(out, name, node.addr, node.port, [framed], piggyback=False)
        self._gossip(now, out)
        return out

    def set_tags(self, tags: dict[str, str], now: float) -> list[Outgoing]:
        """Change this node's tags (SIGHUP reload); gossiped as a new incarnation."""
        self._now = now
        tags = dict(tags)
        wire.encode_tags(tags)
        if tags == self._self.tags:
            return []
        self._self.tags = tags
        self._tick_clock()
        self.incarnation = min(self.incarnation + 1, INC_MAX)
        self._self.incarnation = self.incarnation
        self._queue_self_alive()
        out: list[Outgoing] = []
        self._gossip(now, out)
        return out

    def next_deadline(self) -> float:
        t = min(self._next_probe, self._next_push_pull, self._next_reap, self._next_reconnect)
        if self._bq and self._next_gossip < t:
            t = self._next_gossip
        probe = self._probe
        if probe is not None and not probe.acked:
            t = min(t, probe.deadline if probe.indirect_sent else probe.indirect_at)
        for relay in self._relays.values():
            t = min(t, relay.nack_at)
        for s in self._suspicions.values():
            t = min(t, s.deadline)
        if self._join is not None and not self._join.done and self._join.next_at < t:
            t = self._join.next_at
        self._promised = t
        return t

    def tick(self, now: float) -> list[Outgoing]:
        self._now = now
        out: list[Outgoing] = []
        p = self.profile
        if p.lifeguard and p.stall_grace:
            self._check_stall(now)
        probe = self._probe
        if probe is not None and not probe.acked:
            if not probe.indirect_sent and now >= probe.indirect_at:
                self._indirect_probe(probe, out)
            if now >= probe.deadline:
                self._probe_failed(probe, now)
        if now >= self._next_probe:
            self._start_probe(now, out)
        if self._relays:
            for seq in [s for s, r in self._relays.items() if r.nack_at <= now]:
                relay = self._relays.pop(seq)
                if relay.want_nack:
                    nack = [wire.encode_message(wire.Nack(relay.seq))]
                    self._send(out, relay.name, relay.addr, relay.port, nack)
        if self._suspicions:
            for name in [n for n, s in self._suspicions.items() if s.deadline <= now]:
                self._suspicion_expired(name, now, out)
        if now >= self._next_gossip:
            self._gossip(now, out)
            self._next_gossip = self._after(self._next_gossip, self.profile.gossip_interval, now)
        if now >= self._next_push_pull:
            self._periodic_push_pull(out)
            period = self.profile.push_pull_period(self._live)
            self._next_push_pull = self._after(self._next_push_pull, period, now)
        if now >= self._next_reconnect:
            self._reconnect(out)
            interval = self.profile.reconnect_interval
            self._next_reconnect = self._after(self._next_reconnect, interval, now)
        if now >= self._next_reap:
            self._reap(now)
            self._next_reap = self._after(self._next_reap, self.profile.reap_interval, now)
        js = self._join
        if js is not None and not js.done and now >= js.next_at:
            self._retry_join(js, now, out)
        self._align_gossip(now)
        return out

    def receive(
        self, now: float, from_addr: tuple[str, int] | None, packet: bytes, reliable: bool = False
    ) -> list[Outgoing]:
        """Handle one packet from the network. Nothing raises: a packet that is forged,
        replayed, garbled or absurd is dropped whole, counted in ``stats`` and explained in
        ``drain_refusals()``."""
        self._now = now
        self.stats["packets_in"] += 1
        try:
            env, start, end = wire.unseal(packet, self.key)
            if env is not None:
                reason = self._admit_reason(env, now)
                if reason is not None:
                    self._refuse("dropped_replay", from_addr, reason)
                    return []
            msgs = wire.decode_messages(packet, start, end)
        except AuthError as exc:
            self._refuse("dropped_auth", from_addr, str(exc))
            return []
        except DecodeError as exc:
            self._refuse("dropped_decode", from_addr, str(exc))
            return []
        if env is not None:
            reason = self._envelope_mismatch(env, msgs)
            if reason is not None:
                self._refuse("dropped_invalid", from_addr, reason)
                return []
            self._guard.record(self._stamp(env))
        return self._apply(now, msgs, reliable)

    def receive_messages(
        self, now: float, msgs: list[wire.Message], reliable: bool = False
    ) -> list[Outgoing]:
        """Handle messages a driver decoded itself; each is checked for sense first
        (``swim_codec.message_problem``) and the batch is refused whole if one is absurd."""
        self._now = now
        self.stats["packets_in"] += 1
        if not isinstance(msgs, (list, tuple)):
            self._refuse("dropped_invalid", None, "messages are not a list")
            return []
        batch = list(msgs)
        for msg in batch:
            problem = wire.message_problem(msg)
            if problem is not None:
                self._refuse("dropped_invalid", None, problem)
                return []
        if not batch:
            return []
        return self._apply(now, batch, reliable)

    def admit(self, now: float, env: wire.Envelope) -> str | None:
        """Why a packet with this envelope would be refused (replayed, stale, misaddressed),
        or None. Lets a driver refuse a TCP frame from its head, before reading its body."""
        if self._guard is None:
            return None
        return self._admit_reason(env, now)

    def drain_refusals(self) -> list[str]:
        """One line per refused packet since the last call (for the driver's log)."""
        lines, self._refusals = self._refusals, []
        if self._refusals_dropped:
            lines.append(f"{self._refusals_dropped} more gossip packets refused")
            self._refusals_dropped = 0
        return lines

    def note_refusal(self, kind: str, from_addr: tuple[str, int] | None, reason: str) -> None:
        """Count and explain a packet the driver refused itself (a bad TCP frame)."""
        self._refuse(kind, from_addr, reason, source=from_addr[0] if from_addr else None)

    def _refuse(
        self,
        kind: str,
        from_addr: tuple[str, int] | None,
        reason: str,
        source: str | None = None,
    ) -> None:
        self.stats[kind] = self.stats.get(kind, 0) + 1
        if kind == "dropped_auth" and from_addr:
            self._count_key_refusal(source or f"{from_addr[0]}:{from_addr[1]}", reason)
        if len(self._refusals) >= 64:
            self._refusals_dropped += 1
            return
        where = f" from {from_addr[0]}:{from_addr[1]}" if from_addr else ""
        self._refusals.append(f"gossip packet{where} refused: {reason}")

    def _count_key_refusal(self, source: str, reason: str) -> None:
        """Per source, so an operator can be told which node gossips under another key."""
        entry = self.key_refusals.get(source)
        if entry is None:
            if len(self.key_refusals) >= KEY_SOURCES:
                oldest = min(self.key_refusals, key=lambda s: self.key_refusals[s][1])
                del self.key_refusals[oldest]
            entry = self.key_refusals[source] = [0, self._now, reason]
        entry[0] += 1
        entry[1], entry[2] = self._now, reason

    @staticmethod
    def _stamp(env: wire.Envelope) -> Stamp:
        return Stamp(env.sender, env.epoch, env.counter, env.ts_ms)

    def _admit_reason(self, env: wire.Envelope, now: float) -> str | None:
        if env.sender == self.name:
            return "it claims to come from this node"
        if env.dest and env.dest != self.name:
            return f"it is addressed to {env.dest!r}, not to this node (a replay?)"
        return self._guard.check(self._stamp(env), now)

    @staticmethod
    def _envelope_mismatch(env: wire.Envelope, msgs: list[wire.Message]) -> str | None:
        """Keyed packets must agree with their envelope: a packet sent to a bare address (a
        seed) may only carry a push-pull, and whoever a ping or push-pull names as its
        source must be the sender that sealed it."""
        for msg in msgs:
            kind = type(msg)
            if not env.dest and kind is not wire.PushPull:
                return "a packet without a named receiver may only carry a push-pull"
            if kind in (wire.Ping, wire.PingReq, wire.PushPull) and msg.src_name != env.sender:
                return f"it names {msg.src_name!r} as its source but was sealed by {env.sender!r}"
        return None

    def _apply(self, now: float, msgs: list[wire.Message], reliable: bool) -> list[Outgoing]:
        self._last_heard = now
        out: list[Outgoing] = []
        self._stale_accusation = False
        refutes = self.stats["refutes"]
        pinger = None
        for msg in msgs:
            handler = self._handlers.get(type(msg))
            if handler is not None:
                handler(self, msg, now, out, reliable)
            if type(msg) is wire.Ping:
                pinger = msg
        p = self.profile
        prompt = p.lifeguard and p.prompt_refute and self.stats["refutes"] > refutes
        if (self._stale_accusation or prompt) and pinger is not None and not self.leaving:
            # The prober suspects us (buddy system), or still an older incarnation of us (our
            # refutation missed it): answer it directly with our current state.
            s = self._self
            alive = wire.Alive(self.incarnation, self.name, s.addr, s.port, s.tags, self.clock)
            framed = [wire.encode_message(alive)]
            self._send(
                out,
                pinger.src_name,
                pinger.src_addr,
                pinger.src_port,
                framed,
                reliable,
                piggyback=False,
            )
        if prompt and not self.leaving:
            # Gossip the refutation now rather than at the next gossip tick: a node that was
            # paused may be paused again before that tick, while the verdict keeps running.
            self._gossip(now, out)
        self._align_gossip(now)
        return out

    # ------------------------------------------------------------------ bookkeeping

    @staticmethod
    def _after(prev: float, interval: float, now: float) -> float:
        nxt = prev + interval
        if nxt <= now:
            nxt = prev + interval * (math.floor((now - prev) / interval) + 1)
        return nxt

    def _align_gossip(self, now: float) -> None:
        if self._bq and self._next_gossip < now:
            interval = self.profile.gossip_interval
            self._next_gossip = self._after(self._next_gossip, interval, now)

    def _emit(self, kind: str, node: _Node, now: float) -> None:
        self._events.append(MemberEvent(kind, node.public(), now))

    def _add(self, name: str, addr: str, port: int, tags: dict, inc: int, now: float) -> _Node:
        node = _Node(name, addr, port, tags, inc, now)
        self._nodes[name] = node
        self._other_index[name] = len(self._others)
        self._others.append(name)
        self._ring_insert(name)
        self._live += 1
        # Insert at a random place among the nodes still to probe this round (as memberlist).
        pos = self.rng.randint(self._probe_pos, len(self._probe_order))
        self._probe_order.insert(pos, name)
        self._emit("join", node, now)
        return node

    def _ring_insert(self, name: str) -> None:
        key = _ring_key(name)
        pos = bisect.bisect_left(self._ring_keys, key)
        self._ring_keys.insert(pos, key)
        self._ring_names.insert(pos, name)

    def _remove(self, name: str) -> None:
        key = _ring_key(name)
        pos = bisect.bisect_left(self._ring_keys, key)
        while pos < len(self._ring_names) and self._ring_names[pos] != name:
            pos += 1
        if pos < len(self._ring_names):
            del self._ring_keys[pos]
            del self._ring_names[pos]
        del self._nodes[name]
        idx = self._other_index.pop(name)
        last = self._others.pop()
        if last != name:
            self._others[idx] = last
            self._other_index[last] = idx
        self._down.pop(name, None)

    def _set_status(self, node: _Node, status: int, now: float) -> None:
        was_live = node.status <= STATUS_SUSPECT
        is_live = status <= STATUS_SUSPECT
        if was_live and not is_live:
            self._live -= 1
            self._down[node.name] = None
        elif is_live and not was_live:
            self._live += 1
            self._down.pop(node.name, None)
        node.status = status
        node.changed = now

    def _queue(self, key: str, data: bytes, timer: _Suspicion | None = None) -> None:
        self._border += 1
        b = _Broadcast(key, data, self._border)
        if timer is not None:
            b.suspect, b.timer = wire.open_packet(wire.seal([data], None), None)[0], timer
        self._bq[key] = b

    def _queue_self_alive(self) -> None:
        s = self._self
        msg = wire.Alive(self.incarnation, self.name, s.addr, s.port, s.tags, self.clock)
        self._queue(self.name, wire.encode_message(msg))

    def _take_broadcasts(self, budget: int) -> list[bytes]:
        if not self._bq or budget <= 0:
            return []
        limit = self.profile.retransmit_limit(self._live)
        chosen: list[bytes] = []
        items = sorted(self._bq.values(), key=lambda b: (b.transmits, -b.order))
        for b in items:
            size = len(b.data)
            if size > budget:
                continue
            if b.timer is not None:
                age = int((self._now - b.timer.start) * 1000)
                b.data = wire.encode_message(b.suspect._replace(age_ms=age))
            chosen.append(b.data)
            budget -= size
            b.transmits += 1
            if b.transmits >= limit:
                del self._bq[b.key]
            if budget < 16:
                break
        return chosen

    def _send(
        self,
        out: list[Outgoing],
        dest: str,
        addr: str,
        port: int,
        framed: list[bytes],
        reliable: bool = False,
        piggyback: bool = True,
    ) -> None:
        """Seal and queue one packet for ``dest`` (a node name, "" for a seed's address)."""
        env = None
        if self.key is not None:
            self._counter += 1
            ts_ms = min(max(0, int(self._now * 1000)), wire.U64_MAX)
            env = wire.Envelope(self.name, dest, self._epoch, self._counter, ts_ms)
        if piggyback and not reliable:
            used = 1 + sum(len(f) for f in framed) + self._overhead(dest)
            framed = framed + self._take_broadcasts(self.profile.udp_buffer_size - used)
        self.stats["packets_out"] += 1
        out.append(Outgoing(addr, port, wire.seal(framed, self.key, env), reliable))

    def _overhead(self, dest: str) -> int:
        """Bytes a keyed packet spends on its envelope and tag."""
        if self.key is None:
            return 0
        return self._envelope_base + len(dest.encode())

    def _pick(self, k: int, exclude: tuple[str, ...], dead_ok_since: float | None) -> list[_Node]:
        """Up to k random other nodes that are alive or suspect (or recently down)."""
        others = self._others
        n = len(others)
        if n == 0 or k <= 0:
            return []

        def ok(node: _Node) -> bool:
            if node.name in exclude:
                return False
            if node.status <= STATUS_SUSPECT:
                return True
            return dead_ok_since is not None and node.changed >= dead_ok_since

        chosen: list[_Node] = []
        seen: dict[str, None] = {}
        rand = self.rng.randrange
        for _ in range(3 * k + 8):
            name = others[rand(n)]
            if name in seen:
                continue
            seen[name] = None
            node = self._nodes[name]
            if ok(node):
                chosen.append(node)
                if len(chosen) == k:
                    return chosen
        if len(seen) >= n:
            return chosen
        pool = [self._nodes[x] for x in others if x not in seen and ok(self._nodes[x])]
        need = k - len(chosen)
        chosen.extend(pool if len(pool) <= need else self.rng.sample(pool, need))
        return chosen

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    # ------------------------------------------------------------------ probing

    def _scale(self) -> int:
        return self.awareness + 1 if self.profile.lifeguard else 1

    def _health(self, delta: int) -> None:
        if self.profile.lifeguard:
            top = self.profile.awareness_max_multiplier - 1
            self.awareness = min(top, max(0, self.awareness + delta))

    def _next_target(self, now: float) -> _Node | None:
        names = self._ring_names
        size = len(names)
        if self.profile.aligned_probes and size >= 3:
            rnd = math.floor(now / self.profile.probe_interval)
            offset = 1 + _mix(rnd) % (size - 1)
            pos = bisect.bisect_left(self._ring_keys, _ring_key(self.name))
            while names[pos] != self.name:
                pos += 1
            for step in range(size - 1):
                node = self._nodes[names[(pos + offset + step) % size]]
                if node is not self._self and node.status <= STATUS_SUSPECT:
                    return node
            return None
        for _ in range(2):
            order = self._probe_order
            while self._probe_pos < len(order):
                name = order[self._probe_pos]
                self._probe_pos += 1
                node = self._nodes.get(name)
                if node is not None and node is not self._self and node.status <= STATUS_SUSPECT:
                    return node
            self._probe_order = list(self._others)
            self.rng.shuffle(self._probe_order)
            self._probe_pos = 0
        return None

    def _check_stall(self, now: float) -> None:
        """Was this process paused since it last ran? Two signs, either is enough:

        - the tick comes well after the deadline last handed to the driver;
        - a verdict is due and nothing has arrived for a whole probe interval, although
          some member probes us every round: a pause that ended just past an idle deadline
          looks punctual, but the silence gives it away. Granted once per silent spell, so
          a node that really hears nobody still reaches its verdicts a moment later.
        """
        p = self.profile
        late = now - self._promised
        if late > 0.2 * p.probe_timeout:
            self._after_stall(now, late)
        elif (
            now - self._last_heard > p.probe_interval
            and self._quiet_checked != self._last_heard
            and self._verdict_due(now)
        ):
            self._quiet_checked = self._last_heard
            self._after_stall(now, late)

    def _verdict_due(self, now: float) -> bool:
        probe = self._probe
        if probe is not None and not probe.acked and probe.deadline <= now:
            return True
        return any(t.deadline <= now for t in self._suspicions.values())

    def _after_stall(self, now: float, late: float) -> None:
        """Ticked past a deadline: this process was paused, not the others silent.

        Its expired verdicts (failed probe, suspicion timeout, helper nacks) would rest on
        packets it has not read yet, so they wait a moment for the backlog to be read; a long
        pause also raises the health score, as any other sign of local trouble does.
        """
        grace = now + 0.2 * self.profile.probe_timeout
        if late > self.profile.probe_timeout:
            self.stats["stalls"] += 1
            self._health(1)
        probe = self._probe
        if probe is not None and not probe.acked and probe.deadline <= now:
            probe.deadline = grace
        for timer in self._suspicions.values():
            if timer.deadline <= now:
                timer.deadline = grace
        for relay in self._relays.values():
            if relay.nack_at <= now:
                relay.want_nack = False

    def _start_probe(self, now: float, out: list[Outgoing]) -> None:
        p = self.profile
        scale = self._scale()
        self._next_probe = now + p.probe_interval * scale
        if self.leaving:
            return
        if self._probe is not None and not self._probe.acked and now < self._probe.deadline:
            return
        target = self._next_target(now)
        if target is None:
            self._probe = None
            return
        seq = self._next_seq()
        self._probe = _Probe(seq, target.name, now + p.probe_timeout * scale, self._next_probe)
        framed = [wire.encode_message(wire.Ping(seq, target.name, self.name, self.addr, self.port))]
        if target.status == STATUS_SUSPECT and p.lifeguard:
            framed.append(
                wire.encode_message(wire.Suspect(target.incarnation, target.name, self.name))
            )
        self._send(out, target.name, target.addr, target.port, framed)

    def _indirect_probe(self, probe: _Probe, out: list[Outgoing]) -> None:
        probe.indirect_sent = True
        target = self._nodes.get(probe.target)
        if target is None or target.status > STATUS_SUSPECT:
            probe.acked = True
            return
        lifeguard = self.profile.lifeguard
        helpers = self._pick(self.profile.indirect_checks, (target.name,), None)
        req = wire.PingReq(
            probe.seq,
            target.name,
            target.addr,
            target.port,
            self.name,
            self.addr,
            self.port,
            lifeguard,
        )
        framed = wire.encode_message(req)
        for helper in helpers:
            self._send(out, helper.name, helper.addr, helper.port, [framed])
        probe.expected_nacks = len(helpers) if lifeguard else 0
        ping = wire.Ping(probe.seq, target.name, self.name, self.addr, self.port)
        framed = [wire.encode_message(ping)]
        self._send(out, target.name, target.addr, target.port, framed, reliable=True)

    def _probe_failed(self, probe: _Probe, now: float) -> None:
        self._probe = None
        self.stats["probe_failures"] += 1
        # As memberlist: each helper's missing nack is a sign that we, not the target, are
        # slow (+1 each); with no helpers to ask, any failed probe counts once.
        if probe.expected_nacks > 0:
            self._health(max(0, probe.expected_nacks - probe.nacks))
        else:
            self._health(1)
        target = self._nodes.get(probe.target)
        if target is not None and target.status <= STATUS_SUSPECT:
            self._on_suspect(
                wire.Suspect(target.incarnation, target.name, self.name), now, [], False
            )

    # ------------------------------------------------------------------ handlers

    def _on_ping(self, msg: wire.Ping, now: float, out: list[Outgoing], reliable: bool) -> None:
        if msg.target and msg.target != self.name:
            return
        ack = [wire.encode_message(wire.Ack(msg.seq))]
        self._send(out, msg.src_name, msg.src_addr, msg.src_port, ack, reliable=reliable)

    def _on_ping_req(self, msg: wire.PingReq, now: float, out: list[Outgoing], rel: bool) -> None:
        seq = self._next_seq()
        # Nack after half the probe timeout (memberlist waits a whole one, so its nack lands
        # just after the requester's deadline): the requester hears it in time, and a probe
        # that every helper has nacked can end early.
        nack_at = now + 0.5 * self.profile.probe_timeout
        self._relays[seq] = _Relay(
            msg.src_name, msg.src_addr, msg.src_port, msg.seq, nack_at, msg.want_nack
        )
        ping = wire.Ping(seq, msg.target, self.name, self.addr, self.port)
        framed = [wire.encode_message(ping)]
        self._send(out, msg.target, msg.target_addr, msg.target_port, framed)

    def _on_ack(self, msg: wire.Ack, now: float, out: list[Outgoing], reliable: bool) -> None:
        probe = self._probe
        if probe is not None and probe.seq == msg.seq:
            if not probe.acked:
                probe.acked = True
                self._health(-1)
            return
        relay = self._relays.pop(msg.seq, None)
        if relay is not None:
            ack = [wire.encode_message(wire.Ack(relay.seq))]
            self._send(out, relay.name, relay.addr, relay.port, ack)

    def _on_nack(self, msg: wire.Nack, now: float, out: list[Outgoing], reliable: bool) -> None:
        probe = self._probe
        if probe is not None and probe.seq == msg.seq:
            probe.nacks += 1
            if probe.nacks >= probe.expected_nacks and probe.indirect_sent:
                probe.deadline = min(probe.deadline, now)

    def _tick_clock(self) -> None:
        self.clock = min(self.clock + 1, LTIME_MAX)

    def _observe_clock(self, ltime: int) -> None:
        if ltime >= self.clock:
            self.clock = min(ltime + 1, LTIME_MAX)

    def _refute(self, accused: int, now: float) -> None:
        # Saturates at the top of the field (an accusation at 0xFFFFFFFF, which only a key
        # holder can send): the refutation then carries the same incarnation, and _on_alive
        # lets an alive message at the ceiling clear a verdict at the ceiling.
        self.incarnation = min(max(self.incarnation, accused) + 1, INC_MAX)
        self._self.incarnation = self.incarnation
        self.stats["refutes"] += 1
        self._queue_self_alive()
        self._health(1)

    def _on_alive(self, msg: wire.Alive, now: float, out: list[Outgoing], reliable: bool) -> None:
        self._observe_clock(msg.ltime)
        if msg.node == self.name:
            if self.leaving:
                return
            s = self._self
            if msg.incarnation > self.incarnation or (
                msg.incarnation == self.incarnation
                and (msg.tags != s.tags or msg.addr != s.addr or msg.port != s.port)
            ):
                self._refute(msg.incarnation, now)
            return
        node = self._nodes.get(msg.node)
        if node is None:
            node = self._add(msg.node, msg.addr, msg.port, dict(msg.tags), msg.incarnation, now)
            self._queue(msg.node, wire.encode_message(msg))
            return
        if msg.incarnation < node.incarnation or (
            msg.incarnation == node.incarnation
            and not (msg.incarnation == INC_MAX and node.status != STATUS_ALIVE)
        ):
            return
        was = node.status
        changed = msg.tags != node.tags or msg.addr != node.addr or msg.port != node.port
        node.incarnation = msg.incarnation
        node.addr, node.port, node.tags = msg.addr, msg.port, dict(msg.tags)
        self._suspicions.pop(node.name, None)
        if was != STATUS_ALIVE:
            self._set_status(node, STATUS_ALIVE, now)
        self._queue(msg.node, wire.encode_message(msg))
        if was > STATUS_SUSPECT:
            self._emit("join", node, now)
        elif changed:
            self._emit("update", node, now)

    def _on_suspect(
        self, msg: wire.Suspect, now: float, out: list[Outgoing], rel: bool, relayed: bool = False
    ) -> None:
        """``relayed``: the suspicion comes from a peer's state table (push-pull), which
        repeats what it heard rather than what it saw, so it does not confirm anything."""
        if msg.node == self.name:
            if not self.leaving and msg.incarnation >= self.incarnation:
                self._refute(msg.incarnation, now)
            else:
                self._stale_accusation = True
            return
        node = self._nodes.get(msg.node)
        if node is None or msg.incarnation < node.incarnation:
            return
        timer = self._suspicions.get(node.name)
        if timer is not None:
            if relayed and msg.incarnation == timer.incarnation:
                return
            if msg.incarnation == timer.incarnation and timer.confirm(msg.sender):
                self._queue(node.name, wire.encode_message(msg), timer)
            if msg.incarnation == timer.incarnation:
                return
        if node.status > STATUS_SUSPECT:
            return
        node.incarnation = msg.incarnation
        if node.status != STATUS_SUSPECT:
            self._set_status(node, STATUS_SUSPECT, now)
            self.stats["suspicions"] += 1
        low, high = self.profile.suspicion_bounds(self._live)
        k = self.profile.suspicion_mult - 2 if self.profile.lifeguard else 0
        if self._live - 2 < k:
            k = 0
        # The timer counts from when the suspicion began at its origin (ages add up along
        # the gossip path, transit times aside), so all members reach their verdict together.
        # Capped at one probe interval: enough to line up a large cluster (spreading takes
        # well under a second), small enough never to eat into the suspect's time to refute.
        start = now - min(msg.age_ms / 1000.0, self.profile.probe_interval)
        timer = _Suspicion(start, low, high, k, msg.sender, msg.incarnation)
        self._suspicions[node.name] = timer
        self._queue(node.name, wire.encode_message(msg), timer)

    def _suspicion_expired(self, name: str, now: float, out: list[Outgoing]) -> None:
        timer = self._suspicions[name]
        node = self._nodes.get(name)
        if node is None or node.status != STATUS_SUSPECT or node.incarnation != timer.incarnation:
            del self._suspicions[name]
            return
        p = self.profile
        if (
            p.lifeguard
            and p.verdict_recheck
            and not timer.rechecked
            and len(timer.seen) - 1 < timer.k
        ):
            # Nobody else confirmed it, so it is probably our own view that is stale (a lost
            # refutation): ask the node once more, with the suspicion attached, before the
            # verdict. A live node answers with its current incarnation.
            timer.rechecked = True
            timer.deadline = now + self.profile.probe_interval
            ping = wire.Ping(self._next_seq(), name, self.name, self.addr, self.port)
            buddy = wire.Suspect(node.incarnation, name, self.name)
            framed = [wire.encode_message(ping), wire.encode_message(buddy)]
            self._send(out, name, node.addr, node.port, framed, piggyback=False)
            self._send(out, name, node.addr, node.port, [wire.encode_message(ping)], reliable=True)
            return
        del self._suspicions[name]
        dead = wire.Dead(node.incarnation, name, self.name, self.clock)
        self._on_dead(dead, now, [], False)

    def _on_dead(self, msg: wire.Dead, now: float, out: list[Outgoing], reliable: bool) -> None:
        self._observe_clock(msg.ltime)
        if msg.node == self.name:
            if not self.leaving and msg.incarnation >= self.incarnation:
                self._refute(msg.incarnation, now)
            return
        node = self._nodes.get(msg.node)
        if node is None or msg.incarnation < node.incarnation:
            return
        left = msg.sender == msg.node
        if node.status == STATUS_LEFT or (node.status == STATUS_FAILED and not left):
            return
        self._suspicions.pop(node.name, None)
        node.incarnation = msg.incarnation
        self._set_status(node, STATUS_LEFT if left else STATUS_FAILED, now)
        self._queue(node.name, wire.encode_message(msg))
        self._emit("leave" if left else "failed", node, now)

    def _on_push_pull(self, msg: wire.PushPull, now: float, out: list[Outgoing], rel: bool) -> None:
        self._observe_clock(msg.ltime)
        for st in msg.states:
            self._merge(st, msg.src_name, now)
        # Reply after merging, so that a refutation of what the peer believed rides along.
        if not msg.reply:
            self._send_push_pull(
                out, msg.src_name, msg.src_addr, msg.src_port, join=msg.join, reply=True
            )
        elif self._join is not None and not self._join.done:
            self._join.done = True
        self.joined = True

    def _merge(self, st: wire.NodeState, sender: str, now: float) -> None:
        """Apply one remote state entry; a remote 'failed' only makes us suspect (memberlist)."""
        if st.status == STATUS_ALIVE:
            alive = wire.Alive(st.incarnation, st.name, st.addr, st.port, st.tags, 0)
            self._on_alive(alive, now, [], False)
        elif st.status == STATUS_LEFT:
            if st.name not in self._nodes:
                return
            self._on_dead(wire.Dead(st.incarnation, st.name, st.name, 0), now, [], False)
        else:
            if st.name == self.name:
                if not self.leaving and st.incarnation >= self.incarnation:
                    self._refute(st.incarnation, now)
                return
            if st.status == STATUS_SUSPECT and st.name not in self._nodes:
                # A member we have never heard of is only suspected over there: learn it (so a
                # joining node sees everyone) and carry the suspicion over.
                alive = wire.Alive(st.incarnation, st.name, st.addr, st.port, st.tags, 0)
                self._on_alive(alive, now, [], False)
            suspect = wire.Suspect(st.incarnation, st.name, sender)
            self._on_suspect(suspect, now, [], False, relayed=True)

    _handlers: ClassVar[dict] = {
        wire.Ping: _on_ping,
        wire.PingReq: _on_ping_req,
        wire.Ack: _on_ack,
        wire.Nack: _on_nack,
        wire.Alive: _on_alive,
        wire.Suspect: _on_suspect,
        wire.Dead: _on_dead,
        wire.PushPull: _on_push_pull,
    }

    # ------------------------------------------------------------------ gossip & anti-entropy

    def _gossip(self, now: float, out: list[Outgoing]) -> None:
        if not self._bq:
            return
        p = self.profile
        since = now - p.gossip_to_the_dead_time
        for node in self._pick(p.gossip_nodes, (), since):
            budget = p.udp_buffer_size - 1 - self._overhead(node.name)
            framed = self._take_broadcasts(budget)
            if not framed:
                break
            self._send(out, node.name, node.addr, node.port, framed, piggyback=False)

    def _state_list(self) -> list[wire.NodeState]:
        return [
            wire.NodeState(n.name, n.addr, n.port, n.tags, n.incarnation, n.status)
            for n in self._nodes.values()
        ]

    def _send_push_pull(
        self, out: list[Outgoing], dest: str, addr: str, port: int, join: bool, reply: bool
    ) -> None:
        msg = wire.PushPull(
            join, reply, self.name, self.addr, self.port, self.clock, self._state_list()
        )
        self._send(out, dest, addr, port, [wire.encode_message(msg)], reliable=True)

    def _periodic_push_pull(self, out: list[Outgoing]) -> None:
        if self.leaving:
            return
        peers = self._pick(1, (), None)
        if peers:
            peer = peers[0]
            self._send_push_pull(out, peer.name, peer.addr, peer.port, join=False, reply=False)

    def _reconnect(self, out: list[Outgoing]) -> None:
        """Like Serf: now and then try a failed node, in case the failure was a partition."""
        if self.leaving:
            return
        failed = [n for n in self._down if self._nodes[n].status == STATUS_FAILED]
        if not failed:
            return
        if self.rng.random() > len(failed) / max(1, self._live):
            return
        node = self._nodes[failed[self.rng.randrange(len(failed))]]
        self._send_push_pull(out, node.name, node.addr, node.port, join=True, reply=False)

    def _reap(self, now: float) -> None:
        p = self.profile
        for name in list(self._down):
            node = self._nodes[name]
            limit = p.tombstone_timeout if node.status == STATUS_LEFT else p.reconnect_timeout
            if now - node.changed >= limit:
                self._remove(name)
                self._bq.pop(name, None)
                self._emit("reap", node, now)

    def _retry_join(self, js: _JoinState, now: float, out: list[Outgoing]) -> None:
        if js.max_attempts and js.attempts >= js.max_attempts:
            js.done = True
            return
        js.attempts += 1
        js.history.append(now)
        js.backoff = min(js.backoff * 2, self.profile.retry_join_max_interval)
        js.next_at = now + js.backoff
        for addr, port in js.seeds:
            self._send_push_pull(out, "", addr, port, join=True, reply=False)
