"""Helpers for the gossip security tests: sealed packets, keyed cores, real pings and joins."""

from __future__ import annotations

import itertools
import random
import socket
import time

from dkron_pkg import swim_codec as wire
from dkron_pkg.swim import Member, SwimNode
from dkron_pkg.swim_profiles import LAN, LOCAL
from dkron_pkg.swim_transport import GossipTransport

KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
T0 = 1_700_000_000.0  # a wall-clock time: keyed packets carry it, the window is checked on it
PEERS = {"b": "10.0.0.2", "c": "10.0.0.3", "d": "10.0.0.4"}
_counters = itertools.count(1)


def core(key: bytes | None = KEY, name: str = "a", now: float = T0, profile=LAN) -> SwimNode:
    """Node ``name`` at 10.0.0.1 that already knows b, c and d as alive (incarnation 0)."""
    node = SwimNode(name, "10.0.0.1", 8946, {"role": "dkron"}, profile, random.Random(7), key, now)
    roster = [Member(n, addr, 8946, {"role": "dkron"}, "alive", 0) for n, addr in PEERS.items()]
    node.preload(roster, now)
    return node


def sealed(
    msgs: list,
    now: float = T0,
    sender: str = "b",
    dest: str = "a",
    key: bytes | None = KEY,
    epoch: int = 1,
    counter: int | None = None,
) -> bytes:
    """A packet as member ``sender`` seals it for ``dest`` at ``now`` (plain when no key)."""
    framed = [wire.encode_message(m) for m in msgs]
    if key is None:
        return wire.seal(framed, None)
    count = counter if counter is not None else next(_counters)
    return wire.seal(framed, key, wire.Envelope(sender, dest, epoch, count, int(now * 1000)))


def ping_from(sender: str = "b", seq: int = 5) -> wire.Ping:
    return wire.Ping(seq, "", sender, PEERS.get(sender, "10.0.0.9"), 8946)


def acks(out: list) -> list[int]:
    """Sequence numbers of the acks in a core's output (whatever the key)."""
    seqs = []
    for o in out:
        try:
            header = o.data[0]
            key = None if header == wire.HEADER_PLAIN else KEY
            seqs += [m.seq for m in wire.open_packet(o.data, key) if isinstance(m, wire.Ack)]
        except wire.DecodeError:
            continue
    return seqs


# ---------------------------------------------------------------------- real sockets


def transport(name: str, key: bytes | None, seeds=(), **kw) -> GossipTransport:
    node = GossipTransport(name, "127.0.0.1", 0, {"role": "dkron"}, LOCAL, key, seeds, **kw)
    node.start()
    return node


def udp_ping(node: GossipTransport, key: bytes | None, timeout: float = 3.0) -> bool:
    """Does ``node`` answer a ping sent over UDP by a member of the cluster?"""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.2)
        port = s.getsockname()[1]
        deadline = time.monotonic() + timeout
        epoch = random.getrandbits(64)
        for counter in itertools.count(1):
            if time.monotonic() > deadline:
                return False
            seq = random.randrange(1 << 32)
            ping = wire.Ping(seq, node.name, "prober", "127.0.0.1", port)
            framed = [wire.encode_message(ping)]
            if key is None:
                packet = wire.seal(framed, None)
            else:
                env = wire.Envelope("prober", node.name, epoch, counter, int(time.time() * 1000))
                packet = wire.seal(framed, key, env)
            s.sendto(packet, ("127.0.0.1", node.port))
            try:
                while True:
                    data, _ = s.recvfrom(65536)
                    msgs = wire.open_packet(data, key)
                    if any(isinstance(m, wire.Ack) and m.seq == seq for m in msgs):
                        return True
            except (TimeoutError, wire.DecodeError):
                continue
    return False


def send_udp(port: int, packets: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in packets:
            s.sendto(p, ("127.0.0.1", port))


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def joins(node: GossipTransport, key: bytes | None, timeout: float = 8.0) -> bool:
    """Can a new member join through ``node``, both ending up alive in each other's view?"""
    joiner = transport(f"joiner{random.randrange(10**6)}", key, [("127.0.0.1", node.port)])
    try:

        def both() -> bool:
            seen_by_node = {m.name: m.status for m in node.members()}.get(joiner.name)
            seen_by_joiner = {m.name: m.status for m in joiner.members()}.get(node.name)
            return seen_by_node == "alive" and seen_by_joiner == "alive"

        return wait_until(both, timeout)
    finally:
        joiner.stop(leave=False)
