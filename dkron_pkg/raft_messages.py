"""Raft wire messages and log entries, and their versioned binary encoding.

Every message is a frozen dataclass. `encode(msg) -> bytes` writes a version byte, a type
byte and the fields in a fixed order; `decode(data) -> msg` reverses it and raises
`DecodeError` (and nothing else) for random, truncated, oversized or trailing bytes, so a
transport can drop a bad frame with a clear reason instead of crashing.

Integers are unsigned 64-bit big-endian, strings are UTF-8 with a 16-bit length, byte blobs
carry a 32-bit length. The same entry encoding is used by the durable log (raft_storage).

A configuration (CONFIG entry, snapshot metadata) is one list of member names: voters as they
are, non-voters (learners: they replicate but neither vote nor count for commits) written as
NUL "l" name. A voter whose name itself starts with NUL is written NUL "v" name, so every name
round-trips, and a configuration without learners is byte for byte what it was before
learners existed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any

WIRE_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# A snapshot carries the whole job store (executions with their output included); the
# transport sends it in parts, each an authenticated frame of its own.
MAX_SNAPSHOT_MESSAGE_BYTES = 4 * 1024 * 1024 * 1024 - 1
MAX_ENTRIES_PER_MESSAGE = 1_000_000
MAX_VOTERS = 1024


class DecodeError(ValueError):
    """Raised when bytes are not a valid encoded Raft message or entry."""


class EntryKind(IntEnum):
    """What a log entry carries: application data, a leader's no-op, or a new voter set."""

    DATA = 0
    NOOP = 1
    CONFIG = 2


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. For CONFIG entries `data` is `encode_voters(voters, learners)`."""

    index: int
    term: int
    kind: EntryKind = EntryKind.DATA
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Where a snapshot stops (index, term) and the configuration in force at that index:
    the voters and the learners (members that replicate without a vote)."""

    index: int
    term: int
    voters: tuple[str, ...]
    learners: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RequestVote:
    """A (pre-)vote request. Pre-votes carry the term the candidate would use."""

    term: int
    src: str
    dst: str
    last_index: int
    last_term: int
    pre_vote: bool = False
    transfer: bool = False


@dataclass(frozen=True, slots=True)
class VoteResponse:
    term: int
    src: str
    dst: str
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries:
    term: int
    src: str
    dst: str
    prev_index: int
    prev_term: int
    commit: int
    entries: tuple[Entry, ...] = ()


@dataclass(frozen=True, slots=True)
class AppendResponse:
    """`index` is the last matching index on success, the rejected prev_index otherwise."""

    term: int
    src: str
    dst: str
    success: bool
    index: int
    hint: int = 0


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Leader liveness plus a sequence number that confirms leadership for ReadIndex."""

    term: int
    src: str
    dst: str
    commit: int
    seq: int = 0


@dataclass(frozen=True, slots=True)
class HeartbeatResponse:
    term: int
    src: str
    dst: str
    seq: int = 0


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    term: int
    src: str
    dst: str
    meta: SnapshotMeta
    data: bytes


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Tells the transfer target to start an election at once (leadership transfer)."""

    term: int
    src: str
    dst: str


@dataclass(frozen=True, slots=True)
class PeerAck:
    """A follower's word to the other followers: "in `term` my log durably matches the
    leader's up to `index`". Followers that together make a quorum commit from these without
    waiting for the leader to tell them (one hop less for a write through a follower)."""

    term: int
    src: str
    dst: str
    index: int


Message = (
    RequestVote
    | VoteResponse
    | AppendEntries
    | AppendResponse
    | Heartbeat
    | HeartbeatResponse
    | InstallSnapshot
    | TimeoutNow
    | PeerAck
)

_TYPES: tuple[type, ...] = (
    RequestVote,
    VoteResponse,
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    TimeoutNow,
    PeerAck,
)
_TYPE_CODE = {cls: code for code, cls in enumerate(_TYPES, start=1)}
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_ENTRY_HEAD = struct.Struct(">QQBI")
_MARK = "\0"  # a configuration's member name that starts with it is marked:
_LEARNER_MARK = "\0l"  # a learner
_VOTER_ESCAPE = "\0v"  # a voter whose own name starts with NUL
_MAX_U64 = (1 << 64) - 1


class _Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u64(self, value: int) -> None:
        if not 0 <= value <= _MAX_U64:
            raise ValueError(f"integer field out of range: {value}")
        self.parts.append(_U64.pack(value))

    def flag(self, value: bool) -> None:
        self.parts.append(b"\x01" if value else b"\x00")

    def text(self, value: str) -> None:
        raw = value.encode("utf-8")
        if len(raw) > 0xFFFF:
            raise ValueError("string field longer than 65535 bytes")
        self.parts.append(_U16.pack(len(raw)))
        self.parts.append(raw)

    def blob(self, value: bytes) -> None:
        self.parts.append(_U32.pack(len(value)))
        self.parts.append(bytes(value))

    def entry(self, entry: Entry) -> None:
        if not (0 <= entry.index <= _MAX_U64 and 0 <= entry.term <= _MAX_U64):
            raise ValueError("entry index or term out of range")
        self.parts.append(_ENTRY_HEAD.pack(entry.index, entry.term, entry.kind, len(entry.data)))
        self.parts.append(bytes(entry.data))

    def voters(self, voters: tuple[str, ...], learners: tuple[str, ...] = ()) -> None:
        self.parts.append(_U16.pack(len(voters) + len(learners)))
        for voter in voters:
            self.text(_VOTER_ESCAPE + voter if voter.startswith(_MARK) else voter)
        for learner in learners:
            self.text(_LEARNER_MARK + learner)


class _Reader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def take(self, size: int, what: str) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise DecodeError(f"truncated: {what} needs {size} bytes at offset {self.pos}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u64(self, what: str) -> int:
        return _U64.unpack(self.take(8, what))[0]

    def flag(self, what: str) -> bool:
        raw = self.take(1, what)[0]
        if raw > 1:
            raise DecodeError(f"{what}: boolean byte must be 0 or 1, got {raw}")
        return raw == 1

    def text(self, what: str) -> str:
        size = _U16.unpack(self.take(2, what))[0]
        try:
            return self.take(size, what).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"{what}: invalid UTF-8") from exc

    def blob(self, what: str) -> bytes:
        size = _U32.unpack(self.take(4, what))[0]
        return bytes(self.take(size, what))

    def entry(self) -> Entry:
        index, term, kind, size = _ENTRY_HEAD.unpack(self.take(_ENTRY_HEAD.size, "entry header"))
        if kind not in _ENTRY_KINDS:
            raise DecodeError(f"unknown entry kind {kind}")
        return Entry(index, term, EntryKind(kind), bytes(self.take(size, "entry data")))

    def voters(self, what: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(voters, learners) of a configuration."""
        count = _U16.unpack(self.take(2, what))[0]
        if count > MAX_VOTERS:
            raise DecodeError(f"{what}: {count} voters is more than {MAX_VOTERS}")
        voters: list[str] = []
        learners: list[str] = []
        for _ in range(count):
            name = self.text(what)
            if name.startswith(_LEARNER_MARK):
                learners.append(name[len(_LEARNER_MARK) :])
            elif name.startswith(_VOTER_ESCAPE):
                voters.append(name[len(_VOTER_ESCAPE) :])
            elif name.startswith(_MARK):
                raise DecodeError(f"{what}: unknown member mark {name[1:2]!r}")
            else:
                voters.append(name)
        if set(voters) & set(learners):
            raise DecodeError(f"{what}: a member is both voter and learner")
        return tuple(voters), tuple(learners)


_ENTRY_KINDS = frozenset(int(kind) for kind in EntryKind)


def _field_kind(cls: type, name: str) -> str:
    if name in ("src", "dst"):
        return "text"
    if name in ("pre_vote", "transfer", "granted", "success"):
        return "flag"
    if name == "entries":
        return "entries"
    if name == "meta":
        return "meta"
    if name == "data":
        return "blob"
    return "u64"


@dataclass(frozen=True, slots=True)
class _Layout:
    """Wire layout of one message type: fixed-size fields packed by one struct, then the
    sender and receiver names, then variable-size fields."""

    code: int
    fixed_names: tuple[str, ...]
    flag_names: frozenset[str]
    fixed: struct.Struct
    tail: tuple[tuple[str, str], ...]


def _layout(code: int, cls: type) -> _Layout:
    fixed_names: list[str] = []
    fmt = ">BB"
    tail = []
    flags = set()
    for f in fields(cls):
        kind = _field_kind(cls, f.name)
        if kind == "u64":
            fixed_names.append(f.name)
            fmt += "Q"
        elif kind == "flag":
            fixed_names.append(f.name)
            flags.add(f.name)
            fmt += "B"
        elif kind != "text":
            tail.append((f.name, kind))
    return _Layout(code, tuple(fixed_names), frozenset(flags), struct.Struct(fmt), tuple(tail))


_LAYOUT = {cls: _layout(code, cls) for cls, code in _TYPE_CODE.items()}
_LAYOUT_BY_CODE = {layout.code: (cls, layout) for cls, layout in _LAYOUT.items()}


def encode(msg: Message) -> bytes:
    """Serialize a message: version and type bytes with the fixed-size fields, the sender and
    receiver names, then entries, snapshot metadata or snapshot data."""
    layout = _LAYOUT.get(type(msg))
    if layout is None:
        raise TypeError(f"not a Raft message: {type(msg).__name__}")
    values = [getattr(msg, name) for name in layout.fixed_names]
    try:
        head = layout.fixed.pack(WIRE_VERSION, layout.code, *values)
    except struct.error as exc:
        raise ValueError(f"{type(msg).__name__}: field out of range ({exc})") from exc
    out = _Writer()
    out.parts.append(head)
    out.text(msg.src)
    out.text(msg.dst)
    for name, kind in layout.tail:
        value: Any = getattr(msg, name)
        if kind == "blob":
            out.blob(value)
        elif kind == "entries":
            out.parts.append(_U32.pack(len(value)))
            for entry in value:
                out.entry(entry)
        else:
            out.u64(value.index)
            out.u64(value.term)
            out.voters(value.voters, value.learners)
    return b"".join(out.parts)


def decode(data: bytes) -> Message:
    """Parse bytes made by `encode`; any malformed input raises DecodeError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    limit = MAX_MESSAGE_BYTES
    if len(data) > 1 and data[1] == _TYPE_CODE[InstallSnapshot]:
        limit = MAX_SNAPSHOT_MESSAGE_BYTES
    if len(data) > limit:
        raise DecodeError(f"message of {len(data)} bytes exceeds {limit}")
    if len(data) < 2:
        raise DecodeError("truncated: a message needs at least a version and a type byte")
    if data[0] != WIRE_VERSION:
        raise DecodeError(f"unsupported wire version {data[0]} (expected {WIRE_VERSION})")
    found = _LAYOUT_BY_CODE.get(data[1])
    if found is None:
        raise DecodeError(f"unknown message type {data[1]}")
    cls, layout = found
    if len(data) < layout.fixed.size:
        raise DecodeError(f"truncated: {cls.__name__} needs at least {layout.fixed.size} bytes")
    fixed = layout.fixed.unpack_from(data)
    values: dict[str, Any] = {}
    for name, raw in zip(layout.fixed_names, fixed[2:], strict=True):
        if name in layout.flag_names:
            if raw > 1:
                raise DecodeError(f"{name}: boolean byte must be 0 or 1, got {raw}")
            raw = raw == 1
        values[name] = raw
    reader = _Reader(data, layout.fixed.size)
    values["src"] = reader.text("src")
    values["dst"] = reader.text("dst")
    for name, kind in layout.tail:
        if kind == "blob":
            values[name] = reader.blob(name)
        elif kind == "entries":
            count = _U32.unpack(reader.take(4, "entry count"))[0]
            if count > MAX_ENTRIES_PER_MESSAGE or count * _ENTRY_HEAD.size > len(data):
                raise DecodeError(f"entry count {count} does not fit in the message")
            values[name] = tuple(reader.entry() for _ in range(count))
        else:
            index = reader.u64("snapshot index")
            term = reader.u64("snapshot term")
            values[name] = SnapshotMeta(index, term, *reader.voters("snapshot voters"))
    if reader.pos != len(data):
        raise DecodeError(f"{len(data) - reader.pos} trailing bytes after {cls.__name__}")
    return cls(**values)


def encode_entry(entry: Entry) -> bytes:
    """Entry bytes as stored in the durable log."""
    out = _Writer()
    out.entry(entry)
    return b"".join(out.parts)


def decode_entry(data: bytes) -> Entry:
    reader = _Reader(bytes(data))
    try:
        entry = reader.entry()
    except struct.error as exc:
        raise DecodeError(f"bad entry: {exc}") from exc
    if reader.pos != len(data):
        raise DecodeError("trailing bytes after entry")
    return entry


def encode_voters(
    voters: tuple[str, ...] | list[str], learners: tuple[str, ...] | list[str] = ()
) -> bytes:
    """CONFIG entry payload: the complete configuration after the change."""
    out = _Writer()
    out.voters(tuple(voters), tuple(learners))
    return b"".join(out.parts)


def decode_config(data: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(voters, learners) of a CONFIG entry payload."""
    reader = _Reader(bytes(data))
    config = reader.voters("voters")
    if reader.pos != len(data):
        raise DecodeError("trailing bytes after voter list")
    return config


def decode_voters(data: bytes) -> tuple[str, ...]:
    return decode_config(data)[0]


def encode_meta(meta: SnapshotMeta) -> bytes:
    out = _Writer()
    out.u64(meta.index)
    out.u64(meta.term)
    out.voters(meta.voters, meta.learners)
    return b"".join(out.parts)


def decode_meta(data: bytes) -> SnapshotMeta:
    reader = _Reader(bytes(data))
    meta = SnapshotMeta(reader.u64("index"), reader.u64("term"), *reader.voters("voters"))
    if reader.pos != len(data):
        raise DecodeError("trailing bytes after snapshot metadata")
    return meta
