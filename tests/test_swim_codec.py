"""Wire format: every message survives a round trip; bad bytes only ever raise DecodeError."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dkron_pkg import swim_codec as wire
from dkron_pkg.swim_codec import DecodeError

KEY = bytes(range(32))
ENV = wire.Envelope("node-a", "node-b", 7, 1, 1_700_000_000_000)

SAMPLES = [
    wire.Ping(7, "node-b", "node-a", "10.0.0.1", 8946),
    wire.PingReq(8, "node-c", "10.0.0.3", 8946, "node-a", "10.0.0.1", 8946, True),
    wire.Ack(9),
    wire.Nack(10),
    wire.Suspect(3, "node-c", "node-a", 1500),
    wire.Alive(4, "node-d", "10.0.0.4", 8946, {"role": "dkron", "dc": "dc1"}, 12),
    wire.Dead(5, "node-e", "node-e", 13),
    wire.PushPull(
        True,
        False,
        "node-a",
        "10.0.0.1",
        8946,
        99,
        [wire.NodeState("node-b", "10.0.0.2", 8946, {"server": "true"}, 2, wire.STATUS_SUSPECT)],
    ),
]


@pytest.mark.parametrize("key", [None, KEY])
def test_every_message_round_trips_alone_and_compound(key):
    for msg in SAMPLES:
        packet = wire.seal([wire.encode_message(msg)], key, ENV)
        assert wire.open_sealed(packet, key) == (ENV if key else None, [msg])
    small = [m for m in SAMPLES if not isinstance(m, wire.PushPull)]
    packet = wire.seal([wire.encode_message(m) for m in small], key, ENV)
    assert wire.open_packet(packet, key) == small


def test_packet_signed_with_another_key_is_rejected_as_forged():
    packet = wire.seal([wire.encode_message(SAMPLES[0])], KEY, ENV)
    with pytest.raises(wire.AuthError, match="tag"):
        wire.open_packet(packet, bytes(32))


def test_unsigned_packet_is_rejected_by_a_keyed_node_and_vice_versa():
    plain = wire.seal([wire.encode_message(SAMPLES[2])], None)
    signed = wire.seal([wire.encode_message(SAMPLES[2])], KEY, ENV)
    with pytest.raises(DecodeError, match="no authentication tag"):
        wire.open_packet(plain, KEY)
    with pytest.raises(DecodeError, match="header"):
        wire.open_packet(signed, None)


def test_flipping_any_bit_of_a_signed_packet_is_detected():
    packet = bytearray(wire.seal([wire.encode_message(SAMPLES[5])], KEY, ENV))
    for i in range(len(packet)):
        broken = bytearray(packet)
        broken[i] ^= 0x01
        with pytest.raises(DecodeError):
            wire.open_packet(bytes(broken), KEY)


def test_every_truncation_of_a_plain_packet_fails_cleanly():
    packet = wire.seal([wire.encode_message(m) for m in SAMPLES[:7]], None)
    for cut in range(len(packet)):
        try:
            msgs = wire.open_packet(packet[:cut], None)
        except DecodeError:
            continue
        # A cut exactly between two messages leaves a shorter valid compound packet.
        assert msgs == SAMPLES[: len(msgs)]


def test_oversized_packet_is_rejected_before_parsing():
    with pytest.raises(DecodeError, match="size limit"):
        wire.open_packet(b"\x51" + bytes(wire.MAX_PACKET), None)


def test_tags_over_512_bytes_are_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="limit is 512"):
        wire.encode_tags({"big": "x" * 600})


def test_parse_key_accepts_keygen_output_and_explains_bad_keys():
    raw = os.urandom(32)
    assert wire.parse_key(base64.b64encode(raw).decode()) == raw
    with pytest.raises(ValueError, match="16, 24 or 32 bytes"):
        wire.parse_key(base64.b64encode(b"short").decode())
    with pytest.raises(ValueError, match="not valid base64"):
        wire.parse_key("not base64!!")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise_anything_but_decode_error(data):
    for key in (None, KEY):
        try:
            msgs = wire.open_packet(data, key)
        except DecodeError:
            continue
        assert key is None and msgs


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.integers(0, 255))
def test_random_bodies_behind_a_valid_header_fail_cleanly(body, kind):
    data = bytes((wire.HEADER_PLAIN, kind)) + len(body).to_bytes(2, "big") + body
    try:
        msgs = wire.open_packet(data, None)
    except DecodeError:
        return
    kinds = (wire.Ping, wire.PingReq, wire.Ack, wire.Nack, wire.Suspect, wire.Alive, wire.Dead)
    assert msgs and all(isinstance(m, (*kinds, wire.PushPull)) for m in msgs)
