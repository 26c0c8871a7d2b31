"""TCP framing of gossip packets, read in stages so that no peer is buffered before it is known.

A frame is a 4-byte big-endian length and one packet. With a cluster key, a 16-byte *head tag*
sits between the two: HMAC-SHA256 over the length and the packet's first bytes (up to
``HEAD_BYTES``, which always covers the packet's envelope). A receiver therefore reads at most
``4 + 16 + HEAD_BYTES`` bytes (557) from a peer that has not proved the key; once the head tag
checks out it can refuse a replayed or stale envelope, still before reading the body; the body
is then read up to the length announced, which is capped (``MAX_FRAME``, 4 MiB) and refused
before any of it is buffered. The packet's own tag is checked as usual when it is complete.

:class:`FrameReader` is pure (no sockets): the transport feeds it what ``recv`` returns,
asking it each time how many bytes it wants, so it never reads past the current stage.
Its only exception is :class:`~dkron_pkg.swim_codec.DecodeError` (``AuthError`` when the
peer did not prove the key).
"""

from __future__ import annotations

import hmac
import struct

from .swim_codec import (
    ENVELOPE_MAX,
    MAX_PACKET,
    TAG_LEN,
    AuthError,
    DecodeError,
    Envelope,
    read_envelope,
)

MAX_FRAME = MAX_PACKET
HEAD_BYTES = ENVELOPE_MAX
_LEN = struct.Struct(">I")
_HEAD_DOMAIN = b"dkron-gossip-frame-head\x00"


def _head_tag(key: bytes, size: bytes, head: bytes) -> bytes:
    return hmac.digest(key, _HEAD_DOMAIN + size + head, "sha256")[:TAG_LEN]


def frame(packet: bytes, key: bytes | None) -> bytes:
    """One packet framed for a TCP stream (the sender's side of :class:`FrameReader`)."""
    size = _LEN.pack(len(packet))
    if key is None:
        return size + packet
    return size + _head_tag(key, size, packet[:HEAD_BYTES]) + packet


class FrameReader:
    """Reads one inbound frame: length, then (keyed) head tag and envelope, then the body.

    ``wants`` is how many bytes to read next (0 once the frame is complete); ``envelope`` is
    set as soon as the head tag has been checked (keyed frames), ``packet`` when the frame is
    complete. ``authenticated`` tells whether the peer has proved the key (always False
    without a key, since nothing can be proved then).
    """

    def __init__(self, key: bytes | None, max_frame: int = MAX_FRAME) -> None:
        self.key = key
        self.max_frame = max_frame
        self.size: int | None = None
        self.envelope: Envelope | None = None
        self.packet: bytes | None = None
        self._buf = bytearray()

    @property
    def authenticated(self) -> bool:
        return self.envelope is not None

    @property
    def received(self) -> int:
        return len(self._buf)

    def _prefix(self) -> int:
        return _LEN.size + (TAG_LEN if self.key is not None else 0)

    @property
    def wants(self) -> int:
        if self.packet is not None:
            return 0
        have = len(self._buf)
        if self.size is None:
            return _LEN.size - have
        if self.key is not None and self.envelope is None:
            return self._prefix() + min(self.size, HEAD_BYTES) - have
        return self._prefix() + self.size - have

    def feed(self, chunk: bytes) -> None:
        """Take bytes from the stream (at most ``wants``); raises DecodeError on a bad frame."""
        if len(chunk) > self.wants:
            raise DecodeError("the peer sent more than one frame")
        self._buf.extend(chunk)
        if self.size is None and len(self._buf) >= _LEN.size:
            self._read_size()
        if self.size is None or self.wants:
            return
        if self.key is not None and self.envelope is None:
            self._check_head()
            if self.wants:
                return
        self.packet = bytes(self._buf[self._prefix() :])
        self._buf = bytearray()

    def _read_size(self) -> None:
        (size,) = _LEN.unpack_from(self._buf, 0)
        if size > self.max_frame:
            raise DecodeError(f"frame of {size} bytes exceeds the limit of {self.max_frame}")
        if size == 0:
            raise DecodeError("empty frame")
        if self.key is not None and size <= TAG_LEN:
            raise AuthError("frame too short to carry an authentication tag")
        self.size = size

    def _check_head(self) -> None:
        buf = bytes(self._buf)
        size, tag, head = buf[: _LEN.size], buf[_LEN.size : self._prefix()], buf[self._prefix() :]
        if not hmac.compare_digest(_head_tag(self.key, size, head), tag):
            raise AuthError("frame head tag does not match the cluster key")
        env, _ = read_envelope(head)
        self.envelope = env
