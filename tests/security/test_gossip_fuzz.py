"""Finding: gossip decoding and handling were not total: one packet could end the gossip
thread. Now nothing a peer sends makes the codec raise anything but DecodeError, nothing
makes the core raise at all, and a real node keeps answering pings and joins after a burst
of garbage, absurd messages and bad TCP frames, with or without a key."""

from __future__ import annotations

import hmac
import random
import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dkron_pkg import swim_codec as wire
from dkron_pkg.swim_frames import FrameReader, frame
from security.gossip_support import (
    KEY,
    T0,
    acks,
    core,
    joins,
    ping_from,
    sealed,
    send_udp,
    transport,
    udp_ping,
)

TOP = 0xFFFFFFFF
SAMPLES = [
    [ping_from("b", 3), wire.Suspect(2, "c", "b", 900)],
    [wire.PingReq(8, "c", "10.0.0.3", 8946, "b", "10.0.0.2", 8946, True)],
    [wire.Ack(9), wire.Nack(10), wire.Alive(4, "e", "fe80::1", 8946, {"role": "dkron"}, 12)],
    [wire.Dead(5, "d", "d", 13)],
    [
        wire.PushPull(
            True,
            False,
            "b",
            "10.0.0.2",
            8946,
            99,
            [wire.NodeState("c", "10.0.0.3", 8946, {"server": "true"}, 2, wire.STATUS_SUSPECT)],
        )
    ],
]

# ---------------------------------------------------------------------- the codec

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 1 << 20), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 20), st.integers(1, 8)),
    st.tuples(st.just("set"), st.integers(0, 1 << 20), st.sampled_from([0, 0x7F, 0xFF])),
)


def mutate(data: bytes, steps: list[tuple]) -> bytes:
    out = bytearray(data)
    for kind, where, arg in steps:
        i = where % (len(out) + 1)
        if kind == "flip" and i < len(out):
            out[i] ^= arg
        elif kind == "cut":
            del out[i:]
        elif kind == "insert":
            out[i:i] = arg
        elif kind == "delete":
            del out[i : i + arg]
        elif kind == "set" and i < len(out):
            out[i] = arg
    return bytes(out)


def decodes_sanely(data: bytes, key: bytes | None) -> None:
    """The codec's promise: DecodeError or messages that all make sense."""
    try:
        _, msgs = wire.open_sealed(data, key)
    except wire.DecodeError:
        return
    assert msgs and all(wire.message_problem(m) is None for m in msgs)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=700))
def test_random_bytes_only_ever_raise_decode_error(data):
    for key in (None, KEY):
        decodes_sanely(data, key)
        reader = FrameReader(key)
        try:
            while reader.wants and data:
                step, data = data[: reader.wants], data[reader.wants :]
                reader.feed(step)
        except wire.DecodeError:
            pass


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(range(len(SAMPLES))), st.lists(mutation, min_size=1, max_size=4))
def test_mutated_valid_packets_only_ever_raise_decode_error(which, steps):
    msgs = SAMPLES[which]
    plain = sealed(msgs, key=None)
    decodes_sanely(mutate(plain, steps), None)
    signed = sealed(msgs, key=KEY)
    broken = mutate(signed, steps)
    if broken != signed:
        with pytest.raises(wire.DecodeError):
            wire.open_sealed(broken, KEY)
    # A key holder sending garbage: the body is mutated, then signed again.
    body = mutate(signed[: -wire.TAG_LEN], steps)
    decodes_sanely(body + hmac.digest(KEY, body, "sha256")[: wire.TAG_LEN], KEY)
    # The same, over TCP: a frame whose head tag is right.
    reader = FrameReader(KEY)
    data = frame(body + hmac.digest(KEY, body, "sha256")[: wire.TAG_LEN], KEY)
    try:
        while reader.wants and data:
            step, data = data[: reader.wants], data[reader.wants :]
            reader.feed(step)
    except wire.DecodeError:
        pass


# ---------------------------------------------------------------------- the core


def mostly(valid, absurd):
    """Three draws in four are sensible, so that absurd values meet a core in many states."""
    return st.one_of(valid, valid, valid, absurd)


INTS = mostly(
    st.one_of(st.sampled_from([0, 1, 2, 3, TOP - 1, TOP, 2**64 - 1]), st.integers(0, TOP)),
    st.one_of(st.sampled_from([TOP + 1, -1, -(2**63), 2**64, 2**80]), st.integers()),
)
NAMES = mostly(
    st.sampled_from(["a", "b", "c", "d", "e", "f"]),
    st.one_of(st.sampled_from(["", "n\x00", "x" * 300, "\ud800", "line\n"]), st.text(max_size=40)),
)
ADDRS = mostly(
    st.sampled_from(["10.0.0.2", "10.0.0.9", "::1", "fe80::1", "127.0.0.1"]),
    st.one_of(
        st.sampled_from(["10.0.0.9\x00", "", "garbage", "999.1.1.1", "fe80::1%\x00"]),
        st.text(max_size=40),
    ),
)
PORTS = mostly(st.sampled_from([1, 8946, 65535]), st.one_of(st.sampled_from([0, 65536, -1]), INTS))
TAGS = mostly(
    st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4),
    st.sampled_from([{"big": "x" * 600}, {"k" * 300: "v"}, {1: 2}, ["not", "a", "map"]]),
)
STATES = st.builds(wire.NodeState, NAMES, ADDRS, PORTS, TAGS, INTS, INTS)
MESSAGES = st.one_of(
    st.builds(wire.Ping, INTS, NAMES, NAMES, ADDRS, PORTS),
    st.builds(wire.PingReq, INTS, NAMES, ADDRS, PORTS, NAMES, ADDRS, PORTS, st.booleans()),
    st.builds(wire.Ack, INTS),
    st.builds(wire.Nack, INTS),
    st.builds(wire.Suspect, INTS, NAMES, NAMES, INTS),
    st.builds(wire.Alive, INTS, NAMES, ADDRS, PORTS, TAGS, INTS),
    st.builds(wire.Dead, INTS, NAMES, NAMES, INTS),
    st.builds(
        wire.PushPull,
        st.booleans(),
        st.booleans(),
        NAMES,
        ADDRS,
        PORTS,
        INTS,
        st.lists(STATES, max_size=4),
    ),
    st.builds(object),
    st.none(),
    st.tuples(INTS, NAMES),
)


def encodable(batch: list, now: float, key: bytes | None) -> bytes | None:
    try:
        return sealed(batch, now, sender="b", key=key)
    except (struct.error, ValueError, TypeError, AttributeError, OverflowError):  # our input
        return None


def assert_sane(node) -> None:
    me = node.member("a")
    assert me.status == "alive" and me.addr == "10.0.0.1" and me.port == 8946
    assert 0 <= node.incarnation <= TOP and 0 <= node.clock <= 2**64 - 1
    for m in node.members():
        assert wire.name_problem(m.name, "name") is None
        assert wire.addr_problem(m.addr, m.port, "member") is None
        assert 0 <= m.incarnation <= TOP


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(MESSAGES, min_size=1, max_size=3), min_size=1, max_size=10))
def test_absurd_messages_never_make_the_core_raise(batches):
    for key in (None, KEY):
        node = core(key)
        now = T0
        for batch in batches:
            now += 0.4
            if key is None:
                node.receive_messages(now, batch)
            packet = encodable(batch, now, key)
            if packet is not None:
                node.receive(now, ("10.0.0.2", 8946), packet)
            node.tick(now)
        assert_sane(node)
        node.drain_refusals()
        for step in range(1, 30):
            node.tick(now + step * 0.5)
        now += 15
        assert acks(node.receive(now, None, sealed([ping_from("c", 77)], now, "c", key=key))) == [
            77
        ]
        assert_sane(node)


# ---------------------------------------------------------------------- a real node

ABSURD = [
    wire.Alive(TOP, "victim", "10.6.6.6", 9999, {"role": "evil"}, 2**64 - 1),
    wire.Suspect(TOP, "victim", "b", TOP),
    wire.Dead(TOP, "victim", "b", 2**64 - 1),
    wire.Alive(1, "evil", "10.0.0.9\x00", 8946, {}, 0),
    wire.Alive(TOP, "b", "::1", 65535, {"k": "v" * 400}, 0),
    wire.PushPull(False, False, "b", "127.0.0.1", 1, 2**64 - 1, []),
    wire.PingReq(TOP, "victim", "127.0.0.1", 1, "b", "127.0.0.1", 1, True),
]


@pytest.mark.parametrize("key", [None, KEY], ids=["no-key", "key"])
def test_a_real_node_keeps_answering_after_a_burst_of_bad_packets(key):
    victim = transport("victim", key)
    try:
        rng = random.Random(16)
        junk = [rng.randbytes(rng.randrange(1, 400)) for _ in range(150)]
        junk += [mutate(sealed(m, key=key), [("flip", rng.randrange(99), 1)]) for m in SAMPLES]
        now = time.time()
        absurd = [sealed([m], now, sender="b", dest="victim", key=key) for m in ABSURD]
        send_udp(victim.port, junk + absurd)
        for data in junk[:10]:
            with socket.create_connection(("127.0.0.1", victim.port)) as s:
                s.sendall(len(data).to_bytes(4, "big") + data)
        assert udp_ping(victim, key), "the gossip thread stopped answering"
        assert joins(victim, key)
        names = {m.name for m in victim.members()}
        assert "evil" not in names and victim.stats["errors"] == 0
    finally:
        victim.stop(leave=False)
