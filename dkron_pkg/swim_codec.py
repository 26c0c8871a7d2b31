"""Wire format of the gossip layer: compact binary messages, compound packets, HMAC tags.

A packet is one header byte, then one or more messages, then (when the cluster has a key) a
16-byte HMAC-SHA256 tag over everything before it. A message is a type byte, a big-endian
length (u16; u32 for push-pull, which travels alone over TCP) and a body. Several messages in
one packet is the "compound" form that lets broadcasts ride on pings and acks.

Decoding never raises anything but :class:`DecodeError`, whatever the bytes, so a driver can
drop a bad packet and count it without a traceback. No confidentiality is offered: the tag
only proves the sender holds the cluster key (``dkron keygen`` / ``--encrypt``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import struct
from typing import NamedTuple

HEADER_PLAIN = 0x51
HEADER_SIGNED = 0x52
TAG_LEN = 16
MAX_PACKET = 20 * 1024 * 1024
MAX_META = 512
MAX_STATES = 200_000

PING, PING_REQ, ACK, SUSPECT, ALIVE, DEAD, PUSH_PULL, NACK = 0, 1, 2, 3, 4, 5, 6, 11

STATUS_ALIVE, STATUS_SUSPECT, STATUS_FAILED, STATUS_LEFT = 0, 1, 2, 3
STATUS_NAMES = ("alive", "suspect", "failed", "left")


class DecodeError(ValueError):
    """The bytes are not a valid packet for this cluster (garbled, truncated, forged...)."""


class Ping(NamedTuple):
    seq: int
    target: str
    src_name: str
    src_addr: str
    src_port: int


class PingReq(NamedTuple):
    seq: int
    target: str
    target_addr: str
    target_port: int
    src_name: str
    src_addr: str
    src_port: int
    want_nack: bool


class Ack(NamedTuple):
    seq: int


class Nack(NamedTuple):
    seq: int


class Suspect(NamedTuple):
    """``age_ms``: how long the sender has suspected the node, so timers share one origin."""

    incarnation: int
    node: str
    sender: str
    age_ms: int = 0


class Alive(NamedTuple):
    incarnation: int
    node: str
    addr: str
    port: int
    tags: dict[str, str]
    ltime: int


class Dead(NamedTuple):
    """A failure verdict, or a graceful leave when ``sender == node``."""

    incarnation: int
    node: str
    sender: str
    ltime: int


class NodeState(NamedTuple):
    name: str
    addr: str
    port: int
    tags: dict[str, str]
    incarnation: int
    status: int


class PushPull(NamedTuple):
    join: bool
    reply: bool
    src_name: str
    src_addr: str
    src_port: int
    ltime: int
    states: list[NodeState]


Message = Ping | PingReq | Ack | Nack | Suspect | Alive | Dead | PushPull

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_HDR16 = struct.Struct(">BH")
_HDR32 = struct.Struct(">BI")
_PING = struct.Struct(">I")
_PINGREQ_TAIL = struct.Struct(">HB")
_INC = struct.Struct(">I")
_ALIVE_TAIL = struct.Struct(">HQ")
_LTIME = struct.Struct(">Q")
_PP_HEAD = struct.Struct(">BBQI")
_STATE_TAIL = struct.Struct(">HIB")


def parse_key(text: str) -> bytes:
    """Decode an ``--encrypt`` key: base64 of 16, 24 or 32 bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"encrypt key is not valid base64: {exc}") from None
    if len(raw) not in (16, 24, 32):
        raise ValueError(f"encrypt key must decode to 16, 24 or 32 bytes, got {len(raw)}")
    return raw


def _s(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 255:
        raise ValueError(f"string too long for the wire (max 255 bytes): {text[:40]!r}...")
    return _U8.pack(len(raw)) + raw


def encode_tags(tags: dict[str, str]) -> bytes:
    """Tags as the node's metadata; raise ValueError when they exceed the 512-byte limit."""
    parts = [_U8.pack(len(tags))]
    for key, value in sorted(tags.items()):
        raw = value.encode()
        parts.append(_s(key))
        parts.append(_U16.pack(len(raw)) + raw)
    out = b"".join(parts)
    if len(tags) > 255 or len(out) > MAX_META:
        raise ValueError(f"tags take {len(out)} bytes encoded, the limit is {MAX_META}")
    return out


def _body(msg: Message) -> tuple[int, bytes]:
    if isinstance(msg, Ping):
        return PING, b"".join(
            (
                _PING.pack(msg.seq),
                _s(msg.target),
                _s(msg.src_name),
                _s(msg.src_addr),
                _U16.pack(msg.src_port),
            )
        )
    if isinstance(msg, PingReq):
        return PING_REQ, b"".join(
            (
                _PING.pack(msg.seq),
                _s(msg.target),
                _s(msg.target_addr),
                _U16.pack(msg.target_port),
                _s(msg.src_name),
                _s(msg.src_addr),
                _PINGREQ_TAIL.pack(msg.src_port, 1 if msg.want_nack else 0),
            )
        )
    if isinstance(msg, Ack):
        return ACK, _PING.pack(msg.seq)
    if isinstance(msg, Nack):
        return NACK, _PING.pack(msg.seq)
    if isinstance(msg, Suspect):
        age = _U32.pack(min(max(0, msg.age_ms), 0xFFFFFFFF))
        return SUSPECT, _INC.pack(msg.incarnation) + _s(msg.node) + _s(msg.sender) + age
    if isinstance(msg, Alive):
        return ALIVE, b"".join(
            (
                _INC.pack(msg.incarnation),
                _s(msg.node),
                _s(msg.addr),
                _ALIVE_TAIL.pack(msg.port, msg.ltime),
                encode_tags(msg.tags),
            )
        )
    if isinstance(msg, Dead):
        return DEAD, b"".join(
            (_INC.pack(msg.incarnation), _s(msg.node), _s(msg.sender), _LTIME.pack(msg.ltime))
        )
    if isinstance(msg, PushPull):
        parts = [
            _PP_HEAD.pack(int(msg.join), int(msg.reply), msg.ltime, len(msg.states)),
            _s(msg.src_name),
            _s(msg.src_addr),
            _U16.pack(msg.src_port),
        ]
        for st in msg.states:
            parts.append(_s(st.name))
            parts.append(_s(st.addr))
            parts.append(_STATE_TAIL.pack(st.port, st.incarnation, st.status))
            parts.append(encode_tags(st.tags))
        return PUSH_PULL, b"".join(parts)
    raise TypeError(f"not a gossip message: {type(msg).__name__}")


def encode_message(msg: Message) -> bytes:
    """One framed message, ready to be joined with others into a compound packet."""
    kind, body = _body(msg)
    if kind == PUSH_PULL:
        return _HDR32.pack(kind, len(body)) + body
    return _HDR16.pack(kind, len(body)) + body


def seal(framed: list[bytes], key: bytes | None) -> bytes:
    """Join framed messages into one packet, signed with the cluster key when there is one."""
    if key is None:
        return bytes((HEADER_PLAIN,)) + b"".join(framed)
    data = bytes((HEADER_SIGNED,)) + b"".join(framed)
    return data + hmac.digest(key, data, "sha256")[:TAG_LEN]


class _Reader:
    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def take(self, st: struct.Struct) -> tuple:
        pos = self.pos
        if pos + st.size > self.end:
            raise DecodeError("message truncated")
        self.pos = pos + st.size
        return st.unpack_from(self.data, pos)

    def string(self) -> str:
        pos = self.pos
        if pos >= self.end:
            raise DecodeError("message truncated in a string")
        n = self.data[pos]
        if pos + 1 + n > self.end:
            raise DecodeError("string runs past the message end")
        self.pos = pos + 1 + n
        try:
            return self.data[pos + 1 : pos + 1 + n].decode()
        except UnicodeDecodeError:
            raise DecodeError("string is not UTF-8") from None

    def tags(self) -> dict[str, str]:
        start = self.pos
        (count,) = self.take(_U8)
        tags = {}
        for _ in range(count):
            key = self.string()
            (n,) = self.take(_U16)
            pos = self.pos
            if pos + n > self.end:
                raise DecodeError("tag value runs past the message end")
            self.pos = pos + n
            try:
                tags[key] = self.data[pos : pos + n].decode()
            except UnicodeDecodeError:
                raise DecodeError("tag value is not UTF-8") from None
        if self.pos - start > MAX_META:
            raise DecodeError("tags exceed the metadata limit")
        return tags

    def done(self) -> None:
        if self.pos != self.end:
            raise DecodeError("trailing bytes inside a message")


def _decode_body(kind: int, r: _Reader) -> Message:
    if kind == PING:
        (seq,) = r.take(_PING)
        msg: Message = Ping(seq, r.string(), r.string(), r.string(), r.take(_U16)[0])
    elif kind == PING_REQ:
        (seq,) = r.take(_PING)
        target, taddr = r.string(), r.string()
        (tport,) = r.take(_U16)
        sname, saddr = r.string(), r.string()
        sport, nack = r.take(_PINGREQ_TAIL)
        if nack > 1:
            raise DecodeError("bad nack flag")
        msg = PingReq(seq, target, taddr, tport, sname, saddr, sport, bool(nack))
    elif kind == ACK:
        msg = Ack(r.take(_PING)[0])
    elif kind == NACK:
        msg = Nack(r.take(_PING)[0])
    elif kind == SUSPECT:
        (inc,) = r.take(_INC)
        node, sender = r.string(), r.string()
        msg = Suspect(inc, node, sender, r.take(_U32)[0])
    elif kind == ALIVE:
        (inc,) = r.take(_INC)
        node, addr = r.string(), r.string()
        port, ltime = r.take(_ALIVE_TAIL)
        msg = Alive(inc, node, addr, port, r.tags(), ltime)
    elif kind == DEAD:
        (inc,) = r.take(_INC)
        node, sender = r.string(), r.string()
        msg = Dead(inc, node, sender, r.take(_LTIME)[0])
    elif kind == PUSH_PULL:
        join, reply, ltime, count = r.take(_PP_HEAD)
        if join > 1 or reply > 1 or count > MAX_STATES:
            raise DecodeError("bad push-pull header")
        sname, saddr = r.string(), r.string()
        (sport,) = r.take(_U16)
        states = []
        for _ in range(count):
            name, addr = r.string(), r.string()
            port, inc, status = r.take(_STATE_TAIL)
            if status > STATUS_LEFT:
                raise DecodeError(f"unknown member status {status}")
            states.append(NodeState(name, addr, port, r.tags(), inc, status))
        msg = PushPull(bool(join), bool(reply), sname, saddr, sport, ltime, states)
    else:
        raise DecodeError(f"unknown message type {kind}")
    r.done()
    return msg


def open_packet(data: bytes, key: bytes | None) -> list[Message]:
    """Check the tag and split a packet into its messages; raise DecodeError when invalid."""
    if not isinstance(data, (bytes, bytearray)):
        raise DecodeError("packet is not bytes")
    if len(data) > MAX_PACKET:
        raise DecodeError("packet exceeds the size limit")
    if len(data) < 1:
        raise DecodeError("empty packet")
    header = data[0]
    if key is None:
        if header != HEADER_PLAIN:
            raise DecodeError("unexpected packet header (is the sender using a key?)")
        end = len(data)
    else:
        if header != HEADER_SIGNED:
            raise DecodeError("packet carries no authentication tag")
        end = len(data) - TAG_LEN
        if end < 1:
            raise DecodeError("packet shorter than its tag")
        expected = hmac.digest(key, bytes(data[:end]), "sha256")[:TAG_LEN]
        if not hmac.compare_digest(expected, bytes(data[end:])):
            raise DecodeError("authentication tag does not match the cluster key")
    msgs: list[Message] = []
    pos = 1
    while pos < end:
        kind = data[pos]
        if kind == PUSH_PULL:
            if pos + 5 > end:
                raise DecodeError("truncated message header")
            (length,) = _U32.unpack_from(data, pos + 1)
            pos += 5
        else:
            if pos + 3 > end:
                raise DecodeError("truncated message header")
            (length,) = _U16.unpack_from(data, pos + 1)
            pos += 3
        if pos + length > end:
            raise DecodeError("message length runs past the packet end")
        msgs.append(_decode_body(kind, _Reader(data, pos, pos + length)))
        pos += length
    if not msgs:
        raise DecodeError("packet holds no message")
    return msgs
