"""Wire format of the gossip layer: compact binary messages, compound packets, HMAC tags.

A packet is one header byte, then one or more messages. A message is a type byte, a big-endian
length (u16; u32 for push-pull, which travels alone over TCP) and a body. Several messages in
one packet is the "compound" form that lets broadcasts ride on pings and acks.

With a cluster key (``dkron keygen`` / ``--encrypt``) the header byte is followed by an
:class:`Envelope` (sender, receiver, the sender's per-start epoch and packet counter, its clock)
and the packet ends with a 16-byte HMAC-SHA256 tag over everything before it: the tag proves
the sender holds the key, the envelope lets the receiver refuse replays
(``swim_replay``). No confidentiality is offered.

Decoding never raises anything but :class:`DecodeError` (:class:`AuthError` when the packet
is not proven to come from a key holder), whatever the bytes, so a driver can drop a bad
packet and count it without a traceback. Decoded messages are also checked for sense (names,
IP addresses, ports, sizes: :func:`message_problem`), so the core never sees a NUL byte in an
address or an empty node name.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import ipaddress
import struct
from typing import Any, NamedTuple

HEADER_PLAIN = 0x51
HEADER_SIGNED_V1 = 0x52  # HMAC without an envelope (no replay protection): refused
HEADER_SEALED = 0x53
TAG_LEN = 16
MAX_PACKET = 4 * 1024 * 1024  # a push-pull of ~20,000 members with typical tags
MAX_META = 512
MAX_STATES = 200_000
MAX_NAME = 255
INC_MAX = 0xFFFFFFFF  # incarnations saturate here (see SwimNode._refute)
SEQ_MAX = 0xFFFFFFFF
LTIME_MAX = 0xFFFFFFFFFFFFFFFF
U64_MAX = 0xFFFFFFFFFFFFFFFF

PING, PING_REQ, ACK, SUSPECT, ALIVE, DEAD, PUSH_PULL, NACK = 0, 1, 2, 3, 4, 5, 6, 11

STATUS_ALIVE, STATUS_SUSPECT, STATUS_FAILED, STATUS_LEFT = 0, 1, 2, 3
STATUS_NAMES = ("alive", "suspect", "failed", "left")


class DecodeError(ValueError):
    """The bytes are not a valid packet for this cluster (garbled, truncated, forged...)."""


class AuthError(DecodeError):
    """The packet is not proven to come from a holder of the cluster key."""


class Envelope(NamedTuple):
    """Who sealed a keyed packet, for whom, and when; covered by the tag.

    ``dest`` is the receiver's node name, or "" when the sender knew only an address (a join
    to a seed); ``epoch`` is drawn at random when the sender's process starts, so its
    ``counter`` may start again after a restart; ``ts_ms`` is the sender's wall clock.
    """

    sender: str
    dest: str
    epoch: int
    counter: int
    ts_ms: int


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
_ENV_TAIL = struct.Struct(">QQQ")
ENVELOPE_MAX = 1 + 2 * (1 + MAX_NAME) + _ENV_TAIL.size  # header byte included


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


def encode_envelope(env: Envelope) -> bytes:
    return _s(env.sender) + _s(env.dest) + _ENV_TAIL.pack(env.epoch, env.counter, env.ts_ms)


def seal(framed: list[bytes], key: bytes | None, envelope: Envelope | None = None) -> bytes:
    """Join framed messages into one packet; with a key, stamped with ``envelope`` and signed."""
    if key is None:
        return bytes((HEADER_PLAIN,)) + b"".join(framed)
    if envelope is None:
        raise ValueError("a packet sealed with the cluster key needs an envelope")
    data = b"".join((bytes((HEADER_SEALED,)), encode_envelope(envelope), *framed))
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


def _check_sealed_header(header: int) -> None:
    if header == HEADER_SEALED:
        return
    if header == HEADER_PLAIN:
        raise AuthError("packet carries no authentication tag (is the sender using the key?)")
    if header == HEADER_SIGNED_V1:
        raise AuthError(
            "packet is signed in the format of older versions, without replay protection "
            "(upgrade the sender)"
        )
    raise AuthError(f"unknown packet header 0x{header:02x}")


def read_envelope(data: bytes, key_in_use: bool = True) -> tuple[Envelope, int]:
    """The envelope at the start of a sealed packet (or of its first bytes) and where the
    messages begin. Does not check the tag: callers check it, before or after."""
    if not data:
        raise DecodeError("empty packet")
    _check_sealed_header(data[0])
    r = _Reader(data, 1, len(data))
    sender, dest = r.string(), r.string()
    epoch, counter, ts_ms = r.take(_ENV_TAIL)
    problem = name_problem(sender, "sender name") or name_problem(dest, "receiver name", True)
    if problem:
        raise DecodeError(problem)
    return Envelope(sender, dest, epoch, counter, ts_ms), r.pos


def unseal(data: bytes, key: bytes | None) -> tuple[Envelope | None, int, int]:
    """Check a packet's header and tag: its envelope (None without a key) and the byte range
    of its messages. Raises AuthError when it is not proven to come from a key holder."""
    if not isinstance(data, (bytes, bytearray)):
        raise DecodeError("packet is not bytes")
    if len(data) > MAX_PACKET:
        raise DecodeError(f"packet exceeds the size limit of {MAX_PACKET} bytes")
    if len(data) < 1:
        raise DecodeError("empty packet")
    header = data[0]
    if key is None:
        if header != HEADER_PLAIN:
            raise DecodeError("signed packet header, but this node has no cluster key")
        return None, 1, len(data)
    _check_sealed_header(header)
    end = len(data) - TAG_LEN
    if end < 1:
        raise AuthError("packet shorter than its tag")
    signed = bytes(data[:end])
    expected = hmac.digest(key, signed, "sha256")[:TAG_LEN]
    if not hmac.compare_digest(expected, bytes(data[end:])):
        raise AuthError("authentication tag does not match the cluster key")
    env, start = read_envelope(signed)
    return env, start, end


def decode_messages(data: bytes, pos: int, end: int) -> list[Message]:
    """The messages in ``data[pos:end]``, each checked with :func:`message_problem`."""
    msgs: list[Message] = []
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
        msg = _decode_body(kind, _Reader(data, pos, pos + length))
        problem = _decoded_problem(msg)
        if problem:
            raise DecodeError(problem)
        msgs.append(msg)
        pos += length
    if not msgs:
        raise DecodeError("packet holds no message")
    return msgs


def open_sealed(data: bytes, key: bytes | None) -> tuple[Envelope | None, list[Message]]:
    """Check the tag and split a packet: its envelope (None without a key) and its messages."""
    env, start, end = unseal(data, key)
    return env, decode_messages(data, start, end)


def open_packet(data: bytes, key: bytes | None) -> list[Message]:
    """Check the tag and split a packet into its messages; raise DecodeError when invalid."""
    return open_sealed(data, key)[1]


# ---------------------------------------------------------------------- sense checks


def _uint(value: Any, top: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= top


def name_problem(value: Any, what: str, empty_ok: bool = False) -> str | None:
    """Why ``value`` cannot be a node name (1-255 bytes of printable UTF-8), or None."""
    if not isinstance(value, str):
        return f"{what} is not text"
    if not value:
        return None if empty_ok else f"{what} is empty"
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        return f"{what} is not valid UTF-8"
    if size > MAX_NAME:
        return f"{what} is longer than {MAX_NAME} bytes"
    if not value.isprintable():
        return f"{what} {value[:40]!r} contains a control character"
    return None


@functools.lru_cache(maxsize=4096)
def _is_ip(value: str) -> bool:
    if len(value) > 64 or not value.isascii() or not value.isprintable():
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def addr_problem(addr: Any, port: Any, what: str) -> str | None:
    """Why (addr, port) cannot be a member's address (an IPv4/IPv6 literal, port 1-65535)."""
    if not isinstance(addr, str) or not _is_ip(addr):
        return f"{what} address {str(addr)[:60]!r} is not an IP address"
    if not _uint(port, 65535) or port == 0:
        return f"{what} port {port!r} is out of range 1-65535"
    return None


def _tags_problem(tags: Any) -> str | None:
    if not isinstance(tags, dict) or len(tags) > 255:
        return "tags are not a map of at most 255 entries"
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        return "tags are not a map of text to text"
    try:
        encode_tags(tags)
    except (ValueError, UnicodeEncodeError) as exc:
        return f"tags refused: {exc}"
    return None


def _state_problem(st: Any) -> str | None:
    if not isinstance(st, NodeState):
        return "member state of an unknown kind"
    return (
        name_problem(st.name, "member name")
        or addr_problem(st.addr, st.port, "member")
        or _tags_problem(st.tags)
        or (None if _uint(st.incarnation, INC_MAX) else "incarnation out of range")
        or (None if _uint(st.status, STATUS_LEFT) else f"unknown member status {st.status!r}")
    )


def _bad_name(value: str, empty_ok: bool = False) -> bool:
    return not (value.isprintable() and (value or empty_ok))


def _bad_addr(addr: str, port: int) -> bool:
    return port == 0 or not _is_ip(addr)


def _decoded_problem(msg: Message) -> str | None:
    """:func:`message_problem` for a message the decoder built, which already has the right
    types, ranges, UTF-8 and sizes: only names and addresses are left to check."""
    kind = type(msg)
    if kind is Ack or kind is Nack:
        return None
    if kind is Ping:
        bad = _bad_name(msg.target, True) or _bad_name(msg.src_name)
        bad = bad or _bad_addr(msg.src_addr, msg.src_port)
    elif kind is Alive:
        bad = _bad_name(msg.node) or _bad_addr(msg.addr, msg.port)
    elif kind is PingReq:
        bad = _bad_name(msg.target) or _bad_addr(msg.target_addr, msg.target_port)
        bad = bad or _bad_name(msg.src_name) or _bad_addr(msg.src_addr, msg.src_port)
    elif kind is Suspect or kind is Dead:
        bad = _bad_name(msg.node) or _bad_name(msg.sender)
    elif kind is PushPull:
        bad = _bad_name(msg.src_name) or _bad_addr(msg.src_addr, msg.src_port)
        bad = bad or any(_bad_name(st.name) or _bad_addr(st.addr, st.port) for st in msg.states)
    else:
        bad = True
    return message_problem(msg) if bad else None  # the full check words the reason


def message_problem(msg: Any) -> str | None:
    """Why a (decoded or handed-over) message makes no sense, or None when it is usable.

    Checks types and ranges, node names (no empty or control characters), member addresses
    (IP literals and ports in range) and sizes, so nothing absurd reaches the core's state.
    """
    kind = type(msg)
    if kind is Ping:
        return (
            (None if _uint(msg.seq, SEQ_MAX) else "ping sequence out of range")
            or name_problem(msg.target, "ping target", empty_ok=True)
            or name_problem(msg.src_name, "ping sender")
            or addr_problem(msg.src_addr, msg.src_port, "ping sender")
        )
    if kind is PingReq:
        return (
            (None if _uint(msg.seq, SEQ_MAX) else "ping-req sequence out of range")
            or name_problem(msg.target, "ping-req target")
            or addr_problem(msg.target_addr, msg.target_port, "ping-req target")
            or name_problem(msg.src_name, "ping-req sender")
            or addr_problem(msg.src_addr, msg.src_port, "ping-req sender")
            or (None if isinstance(msg.want_nack, bool) else "nack flag is not a boolean")
        )
    if kind is Ack or kind is Nack:
        return None if _uint(msg.seq, SEQ_MAX) else "ack sequence out of range"
    if kind is Suspect:
        return (
            (None if _uint(msg.incarnation, INC_MAX) else "incarnation out of range")
            or name_problem(msg.node, "suspected member")
            or name_problem(msg.sender, "suspecting member")
            or (None if _uint(msg.age_ms, 0xFFFFFFFF) else "suspicion age out of range")
        )
    if kind is Alive:
        return (
            (None if _uint(msg.incarnation, INC_MAX) else "incarnation out of range")
            or name_problem(msg.node, "member name")
            or addr_problem(msg.addr, msg.port, "member")
            or _tags_problem(msg.tags)
            or (None if _uint(msg.ltime, LTIME_MAX) else "Lamport time out of range")
        )
    if kind is Dead:
        return (
            (None if _uint(msg.incarnation, INC_MAX) else "incarnation out of range")
            or name_problem(msg.node, "member name")
            or name_problem(msg.sender, "reporting member")
            or (None if _uint(msg.ltime, LTIME_MAX) else "Lamport time out of range")
        )
    if kind is PushPull:
        if not isinstance(msg.join, bool) or not isinstance(msg.reply, bool):
            return "push-pull flags are not booleans"
        if not isinstance(msg.states, list) or len(msg.states) > MAX_STATES:
            return f"push-pull state list is not a list of at most {MAX_STATES} entries"
        problem = (
            name_problem(msg.src_name, "push-pull sender")
            or addr_problem(msg.src_addr, msg.src_port, "push-pull sender")
            or (None if _uint(msg.ltime, LTIME_MAX) else "Lamport time out of range")
        )
        if problem:
            return problem
        for st in msg.states:
            problem = _state_problem(st)
            if problem:
                return f"push-pull entry: {problem}"
        return None
    return f"unknown message kind {kind.__name__}"
