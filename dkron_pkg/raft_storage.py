"""Durable Raft storage in one directory: an append-only record log and a snapshot file.

`log` holds checksummed records: entries, hard state (term, vote, commit) and the log's base
(offset and its term). A Ready's entries and hard state are written as one batch with ONE
fsync (group commit), before the driver sends the Ready's messages. A record is
`length u32 | crc32 u32 | type u8 | payload`. At open, a torn tail (the last write, left
unfinished by a crash: a record cut short, or sectors of it never written, i.e. zeros) is cut
off the file with a warning; it was never acknowledged. Any other bad record (a failed
checksum with valid records after it, a complete last record that fails its checksum, a
record that cannot be decoded) is damage to acknowledged entries or votes: opening raises
StorageCorruption naming the file and the byte offset, and nothing is cut, because silently
dropping them could lose committed writes or let the node vote twice in a term.

`snapshot` is replaced atomically (write tmp, fsync, rename, fsync directory); after a
snapshot the log is rewritten the same way, keeping only the retained entries. If a crash
falls between the two, opening notices that the log does not reach the snapshot and starts
the log afresh from it.

Usage: `st = FileStorage(path)`; `state = st.load()` for `RaftNode(..., state, ...)`;
per Ready: `st.save_snapshot(rd.snapshot)` if any, then `st.append(rd.entries,
rd.hard_state)`; after `RaftNode.compact(...)`: `st.compact(compacted)`. Lost quorum:
`recover_with_voters(st, voters, fsm)` offline on each survivor (Dkron's peers.json).
"""

from __future__ import annotations

import os
import re
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

from .raft_messages import (
    DecodeError,
    Entry,
    EntryKind,
    SnapshotMeta,
    decode_entry,
    decode_meta,
    encode_entry,
    encode_meta,
)
from .raftlog import Compacted, HardState, Snapshot, StateMachine, StorageState

LOG_MAGIC = b"DKRAFTLOG\x01"
SNAP_MAGIC = b"DKRAFTSNAP\x01"
MAX_RECORD_BYTES = 64 * 1024 * 1024
SECTOR = 512  # the unit a disk writes whole or not at all
REC_ENTRY, REC_HARD, REC_BASE = 1, 2, 3
_REC_HEAD = struct.Struct(">IIB")
_HARD = struct.Struct(">QQ")
_BASE = struct.Struct(">QQ")
_LEN = struct.Struct(">I")


class StorageError(RuntimeError):
    """The storage directory holds something that is not a Raft log or snapshot of ours."""


class StorageCorruption(StorageError):
    """The log is damaged, not just torn by a crash: the message names the file and offset."""


@dataclass(frozen=True)
class _BadRecord:
    reason: str
    short: bool  # the record runs past the end of the file
    end: int  # where the record ends (or the file, if sooner)


def _parse_record(raw: bytes, pos: int) -> tuple[int, bytes, int] | _BadRecord:
    """(kind, payload, end) of an intact record at `pos`, else what is wrong with it."""
    end = len(raw)
    if end - pos < _REC_HEAD.size:
        return _BadRecord("torn record header", True, end)
    size, crc, kind = _REC_HEAD.unpack_from(raw, pos)
    body_end = pos + _REC_HEAD.size + size
    if size > MAX_RECORD_BYTES or body_end > end:
        if _crc_ok(raw, pos + _REC_HEAD.size, end, kind, crc):
            # The rest of the file is exactly a record's payload: the length was damaged.
            return _BadRecord(f"record length {size} is wrong", False, end)
        if size > MAX_RECORD_BYTES:
            return _BadRecord(f"record length {size} too large", False, min(body_end, end))
        return _BadRecord("torn record body", True, end)
    if not _crc_ok(raw, pos + _REC_HEAD.size, body_end, kind, crc):
        return _BadRecord("checksum mismatch", False, body_end)
    return kind, raw[pos + _REC_HEAD.size : body_end], body_end


def _crc_ok(raw: bytes, start: int, stop: int, kind: int, crc: int) -> bool:
    payload = memoryview(raw)[start:stop]
    return zlib.crc32(payload, zlib.crc32(bytes((kind,)))) == crc


def _decodes(kind: int, payload: bytes) -> bool:
    try:
        if kind == REC_ENTRY:
            decode_entry(payload)
        elif kind == REC_HARD:
            _HARD.unpack_from(payload)
            payload[_HARD.size :].decode("utf-8")
        elif kind == REC_BASE:
            _BASE.unpack(payload)
        else:
            return False
    except (DecodeError, struct.error, UnicodeDecodeError):
        return False
    return True


# Where a record may start: a length of at most MAX_RECORD_BYTES (first byte 0-4), a known type.
_RECORD_START = re.compile(rb"(?=[\x00-\x04].{7}[\x01-\x03])", re.DOTALL)


def _next_valid_record(raw: bytes, start: int) -> int | None:
    """The offset of the first intact, decodable record at or after `start`, if any."""
    for match in _RECORD_START.finditer(raw, start):
        record = _parse_record(raw, match.start())
        if not isinstance(record, _BadRecord) and _decodes(record[0], record[1]):
            return match.start()
    return None


def _has_unwritten_sector(raw: bytes, start: int, stop: int) -> bool:
    """Whether some 512-byte sector's share of raw[start:stop] is all zeros (never written)."""
    while start < stop:
        piece_end = min(stop, (start // SECTOR + 1) * SECTOR)
        if raw[start:piece_end] == bytes(piece_end - start):
            return True
        start = piece_end
    return False


def _record(kind: int, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(bytes((kind,))))
    return _REC_HEAD.pack(len(payload), crc, kind) + payload


def _hard_payload(hard: HardState) -> bytes:
    return _HARD.pack(hard.term, hard.commit) + (hard.vote or "").encode("utf-8")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStorage:
    """The node's disk. The event loop owns the log; a local snapshot may be stored from
    another thread (`keep_snapshot`), so that a large one never holds up the loop."""

    def __init__(self, path: str | os.PathLike[str], fsync: bool = True) -> None:
        self.dir = Path(path)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "log"
        self.snap_path = self.dir / "snapshot"
        self.fsync_enabled = fsync
        self.fsyncs = 0
        self.truncated_bytes = 0
        self.truncation_reason: str | None = None
        self.hard = HardState()
        self.snapshot: Snapshot | None = None
        self.offset = 0
        self.offset_term = 0
        self.entries: list[Entry] = []
        self._snap_lock = threading.Lock()
        self._read_snapshot()
        self._read_log()
        self._reconcile_with_snapshot()
        self._fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND)

    # ----- opening ------------------------------------------------------------------------------

    def _read_snapshot(self) -> None:
        if not self.snap_path.exists():
            return
        raw = self.snap_path.read_bytes()
        if not raw.startswith(SNAP_MAGIC) or len(raw) < len(SNAP_MAGIC) + 8:
            raise StorageError(f"{self.snap_path}: not a Raft snapshot file")
        body, crc = raw[len(SNAP_MAGIC) : -4], _LEN.unpack(raw[-4:])[0]
        if zlib.crc32(body) != crc:
            raise StorageError(f"{self.snap_path}: snapshot checksum mismatch")
        meta_len = _LEN.unpack(body[:4])[0]
        try:
            meta = decode_meta(body[4 : 4 + meta_len])
        except DecodeError as exc:
            raise StorageError(f"{self.snap_path}: bad snapshot metadata: {exc}") from exc
        self.snapshot = Snapshot(meta, bytes(body[4 + meta_len :]))

    def _read_log(self) -> None:
        if not self.log_path.exists():
            self._write_file(self.log_path, LOG_MAGIC + self._state_records())
            return
        raw = self.log_path.read_bytes()
        if not raw.startswith(LOG_MAGIC):
            if len(raw) < len(LOG_MAGIC) and LOG_MAGIC.startswith(raw):
                self._write_file(self.log_path, LOG_MAGIC + self._state_records())
                return
            raise StorageError(f"{self.log_path}: not a Raft log file")
        pos = len(LOG_MAGIC)
        while pos < len(raw):
            record = _parse_record(raw, pos)
            if isinstance(record, _BadRecord):
                self._end_at_bad_record(raw, pos, record)
                return
            kind, payload, body_end = record
            reason = self._replay(kind, payload)
            if reason is not None:  # its checksum is right: no crash writes such a record
                raise StorageCorruption(self._damage_message(pos, reason, None))
            pos = body_end

    def _end_at_bad_record(self, raw: bytes, pos: int, bad: _BadRecord) -> None:
        """Cut a torn tail; refuse anything else.

        A crash can only leave the last write unfinished: a record cut short, or one with
        sectors never written (zeros). Such a tail was never acknowledged (the fsync did not
        return) and is cut off. A bad record with valid records after it, or a complete one
        without zeros, is damage to data that was acknowledged (entries, or a vote that
        must not be forgotten): cutting it would silently drop them, so the node refuses to
        start and says where.
        """
        later = _next_valid_record(raw, pos + 1)
        if later is not None:
            raise StorageCorruption(self._damage_message(pos, bad.reason, later))
        if not (bad.short or _has_unwritten_sector(raw, pos, bad.end)):
            raise StorageCorruption(self._damage_message(pos, bad.reason, None))
        self._cut_tail(pos, len(raw) - pos, bad.reason)

    def _damage_message(self, pos: int, reason: str, later: int | None) -> str:
        after = f"; valid records follow at byte {later}" if later is not None else ""
        return (
            f"{self.log_path}: the Raft log is damaged at byte {pos} ({reason}{after}). "
            "This is not an unfinished write from a crash, so nothing was cut off and the "
            "node does not start. Rebuild this server from the others: stop it, move its "
            "data directory aside, and start it again with --join to a running server."
        )

    def _replay(self, kind: int, payload: bytes) -> str | None:
        """Apply one record; returns a reason when it cannot be applied (treated as corrupt)."""
        try:
            if kind == REC_ENTRY:
                entry = decode_entry(payload)
                if entry.index <= self.offset:
                    return None
                last = self.offset + len(self.entries)
                if entry.index > last + 1:
                    return f"entry {entry.index} leaves a gap after {last}"
                del self.entries[entry.index - self.offset - 1 :]
                self.entries.append(entry)
            elif kind == REC_HARD:
                term, commit = _HARD.unpack_from(payload)
                vote = payload[_HARD.size :].decode("utf-8") or None
                self.hard = HardState(term, vote, commit)
            elif kind == REC_BASE:
                offset, offset_term = _BASE.unpack(payload)
                self.offset, self.offset_term, self.entries = offset, offset_term, []
            else:
                return f"unknown record type {kind}"
        except (DecodeError, struct.error, UnicodeDecodeError) as exc:
            return f"undecodable record: {exc}"
        return None

    def _cut_tail(self, pos: int, size: int, reason: str) -> None:
        self.truncated_bytes = size
        self.truncation_reason = f"{reason} at byte {pos} of {self.log_path} ({size} bytes cut)"
        with open(self.log_path, "r+b") as fh:
            fh.truncate(pos)
            fh.flush()
            self._sync(fh.fileno())

    def _reconcile_with_snapshot(self) -> None:
        snap = self.snapshot
        if snap is None or snap.meta.index <= self.offset:
            return
        last = self.offset + len(self.entries)
        if (
            snap.meta.index <= last
            and self.entries[snap.meta.index - self.offset - 1].term == snap.meta.term
        ):
            return
        # The log does not reach (or disagrees with) the snapshot: restart it from there.
        self.offset, self.offset_term, self.entries = snap.meta.index, snap.meta.term, []
        self._rewrite_log()

    # ----- reading ------------------------------------------------------------------------------

    def load(self) -> StorageState:
        """What RaftNode needs to resume. Restore the state machine from `.snapshot` first."""
        hard = self.hard
        if self.snapshot is not None and hard.commit < self.snapshot.meta.index:
            hard = HardState(hard.term, hard.vote, self.snapshot.meta.index)
        return StorageState(hard, self.snapshot, self.offset, self.offset_term, list(self.entries))

    @property
    def last_index(self) -> int:
        return self.offset + len(self.entries)

    # ----- writing ------------------------------------------------------------------------------

    def append(self, entries: list[Entry], hard_state: HardState | None = None) -> None:
        """Durably store a Ready's entries (replacing any stored suffix from the first one's
        index) and hard state, with a single fsync."""
        if not entries and hard_state is None:
            return
        parts = []
        if entries:
            first = entries[0].index
            if first <= self.offset or first > self.last_index + 1:
                raise ValueError(
                    f"entries starting at {first} do not follow the stored log "
                    f"(offset {self.offset}, last {self.last_index})"
                )
            del self.entries[first - self.offset - 1 :]
            self.entries.extend(entries)
            parts.extend(_record(REC_ENTRY, encode_entry(e)) for e in entries)
        if hard_state is not None:
            self.hard = hard_state
            parts.append(_record(REC_HARD, _hard_payload(hard_state)))
        data = b"".join(parts)
        written = os.write(self._fd, data)
        while written < len(data):
            written += os.write(self._fd, data[written:])
        self._sync(self._fd)

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """A snapshot received from the leader: it replaces the whole log."""
        with self._snap_lock:
            self._write_snapshot(snapshot)
        self.offset, self.offset_term, self.entries = snapshot.meta.index, snapshot.meta.term, []
        if self.hard.commit < snapshot.meta.index:
            self.hard = HardState(self.hard.term, self.hard.vote, snapshot.meta.index)
        self._rewrite_log()

    def compact(self, compacted: Compacted) -> None:
        """A local snapshot: store it, then drop entries up to `compacted.offset`."""
        self.keep_snapshot(compacted.snapshot)
        self.drop_prefix(compacted)

    def keep_snapshot(self, snapshot: Snapshot) -> bool:
        """Durably store a local snapshot unless a newer one is stored. Safe from any thread:
        the log file is not touched."""
        with self._snap_lock:
            if self.snapshot is not None and snapshot.meta.index <= self.snapshot.meta.index:
                return False
            self._write_snapshot(snapshot)
            return True

    def drop_prefix(self, compacted: Compacted) -> None:
        """Drop entries up to `compacted.offset`, once a stored snapshot covers them (loop)."""
        covered = self.snapshot is not None and self.snapshot.meta.index >= compacted.offset
        if covered and compacted.offset > self.offset:
            del self.entries[: compacted.offset - self.offset]
            self.offset, self.offset_term = compacted.offset, compacted.offset_term
            self._rewrite_log()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _write_snapshot(self, snapshot: Snapshot) -> None:
        meta = encode_meta(snapshot.meta)
        body = _LEN.pack(len(meta)) + meta + snapshot.data
        self._write_file(self.snap_path, SNAP_MAGIC + body + _LEN.pack(zlib.crc32(body)))
        self.snapshot = snapshot

    def _state_records(self) -> bytes:
        parts = [_record(REC_BASE, _BASE.pack(self.offset, self.offset_term))]
        parts.append(_record(REC_HARD, _hard_payload(self.hard)))
        parts.extend(_record(REC_ENTRY, encode_entry(e)) for e in self.entries)
        return b"".join(parts)

    def _rewrite_log(self) -> None:
        fd_open = getattr(self, "_fd", -1) >= 0
        if fd_open:
            os.close(self._fd)
        self._write_file(self.log_path, LOG_MAGIC + self._state_records())
        if fd_open:
            self._fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND)

    def _write_file(self, path: Path, data: bytes) -> None:
        """Atomic replace: write a temporary file, fsync it, rename it, fsync the directory."""
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            self._sync(fh.fileno())
        os.replace(tmp, path)
        if self.fsync_enabled:
            _fsync_dir(self.dir)

    def _sync(self, fd: int) -> None:
        if self.fsync_enabled:
            self.fsyncs += 1
            getattr(os, "fdatasync", os.fsync)(fd)


def recover_with_voters(
    storage: FileStorage, voters: list[str] | tuple[str, ...], fsm: StateMachine
) -> Snapshot:
    """Manual recovery of a lost quorum (Dkron's peers.json): run offline on every surviving
    server with the same voter list. Every entry in the log, committed or not, is applied to
    `fsm`, and the log is replaced by a snapshot at its last index whose configuration is
    `voters`; the servers then elect a leader among themselves as usual. Like hashicorp/raft's
    RecoverCluster, this may keep writes that had not committed."""
    if not voters:
        raise ValueError("recovery needs at least one voter")
    state = storage.load()
    snap_index = 0
    if state.snapshot is not None:
        fsm.restore(state.snapshot.data)
        snap_index = state.snapshot.meta.index
    last_index, last_term = state.offset, state.offset_term
    if state.snapshot is not None and snap_index >= last_index:
        last_index, last_term = snap_index, state.snapshot.meta.term
    for entry in state.entries:
        if entry.index > snap_index and entry.kind == EntryKind.DATA:
            fsm.apply(entry.index, entry.data)
        last_index, last_term = entry.index, entry.term
    meta = SnapshotMeta(last_index, last_term, tuple(sorted(set(voters))))
    snapshot = Snapshot(meta, fsm.snapshot())
    storage.save_snapshot(snapshot)
    return snapshot


__all__ = [
    "FileStorage",
    "SnapshotMeta",
    "StorageCorruption",
    "StorageError",
    "recover_with_voters",
]
