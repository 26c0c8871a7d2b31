"""Node-to-node RPC over TCP: length-prefixed frames, authenticated with the cluster key.

One listener per node (the RPC port, 6868) carries everything servers and agents say to each
other: Raft messages, forwarded writes, run requests and execution reports.

Wire format. On connect the server sends a 16-byte nonce; the client answers with its own nonce
and, when a cluster key is set, HMAC-SHA256(key, "dkron-rpc" + both nonces) proving it has the
key. Both sides then derive a session key from the key and the nonces. Every frame is
`u32 length | u8 kind | u64 sequence | payload | tag`, where tag = HMAC-SHA256(session key,
direction + kind + sequence + payload) (absent without a key) and sequences strictly increase per
direction, so a frame can be neither forged, altered, nor replayed on this or another connection.
Frames that fail any check are dropped with a counted, logged reason, and the connection closes.

Kinds: CALL (request id, method, JSON arguments) -> REPLY (request id, JSON result or error),
CAST (one-way JSON), RAFT (opaque bytes for the Raft driver), RAFT_PART (a piece of a Raft
message bigger than `RAFT_PART_BYTES`, a snapshot: a flag byte, 1 on the last piece, then the
bytes; the receiver joins the pieces of a connection in order, up to `MAX_RAFT_MESSAGE`, so no
single frame, read before it is authenticated, ever needs more than `MAX_FRAME`).

With TLS configured (rpc_tls), the TLS handshake comes first and everything above runs inside
it: the cluster key still authenticates every frame. A peer that fails the TLS handshake (no
TLS, or a certificate the CA did not sign) is dropped with a counted, logged reason.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import os
import queue
import socket
import ssl
import struct
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from .rpc_tls import RpcTls, TlsStream, tls_reason

log = logging.getLogger("dkron.rpc")

NONCE = 16
TAG = 32
MAX_FRAME = 64 * 1024 * 1024
KIND_CALL, KIND_REPLY, KIND_CAST, KIND_RAFT, KIND_RAFT_PART = 1, 2, 3, 4, 5
RAFT_PART_BYTES = 8 * 1024 * 1024
MAX_RAFT_MESSAGE = 4 * 1024 * 1024 * 1024
_HEAD = struct.Struct(">IBQ")  # length (of kind..end), kind, sequence
_DONTWAIT: int | None = getattr(socket, "MSG_DONTWAIT", None)

Handler = Callable[[str, Any, str], Any]  # (method, args, peer address) -> result


class RpcError(Exception):
    """A call that failed: unreachable peer, timeout, or an error the handler returned."""


class FrameError(Exception):
    """A frame that must be dropped; the message is the counted reason."""


DROPPED: Counter[str] = Counter()
INLINE_METHODS: set[str] = set()


def answer_inline(method: str) -> None:
    """Declare that `method`'s handler never blocks. It then runs on the connection's reader
    thread (one thread hand-off less per call) and may return a Future: the answer is sent
    when the Future completes, from the thread that completes it, without blocking it."""
    INLINE_METHODS.add(method)


def _drop(reason: str, peer: str) -> None:
    DROPPED[reason] += 1
    log.warning("rpc: dropped connection from %s: %s", peer, reason)


class _Channel:
    """One authenticated connection: frames in, frames out, with sequences and tags."""

    def __init__(
        self, sock: socket.socket | TlsStream, key: bytes | None, session: bytes, outgoing: bytes
    ):
        self.sock = sock
        self.key = key
        self.session = session
        self.out_dir = outgoing
        self.in_dir = b"s" if outgoing == b"c" else b"c"
        self.send_seq = 0
        self.recv_seq = 0
        self.send_lock = threading.Lock()

    def _tag(self, direction: bytes, kind: int, seq: int, payload: bytes) -> bytes:
        if self.key is None:
            return b""
        msg = direction + struct.pack(">BQ", kind, seq) + payload
        return hmac.digest(self.session, msg, "sha256")  # the one-shot C path: every frame

    def send(self, kind: int, payload: bytes) -> None:
        with self.send_lock:
            self.send_seq += 1
            tag = self._tag(self.out_dir, kind, self.send_seq, payload)
            head = _HEAD.pack(1 + 8 + len(payload) + len(tag), kind, self.send_seq)
            self.sock.sendall(head + payload + tag)

    def send_nowait(self, kind: int, payload: bytes) -> bool:
        """Send a frame only if that cannot block this thread; False when it was not sent.

        Used by the Raft loop, which must never wait for a slow peer. If the socket takes only
        part of the frame, a helper thread sends the rest, holding the send lock until done so
        no other frame interleaves."""
        if _DONTWAIT is None or not self.send_lock.acquire(blocking=False):
            return False
        handed_off = False
        try:
            seq = self.send_seq + 1
            tag = self._tag(self.out_dir, kind, seq, payload)
            frame = _HEAD.pack(1 + 8 + len(payload) + len(tag), kind, seq) + payload + tag
            if isinstance(self.sock, TlsStream):
                if not self.sock.send_nowait(frame, _DONTWAIT):
                    return False
                self.send_seq = seq
                return True
            try:
                sent = self.sock.send(frame, _DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return False
            self.send_seq = seq
            if sent < len(frame):
                threading.Thread(
                    target=self._finish_send, args=(frame[sent:],), name="rpc-send", daemon=True
                ).start()
                handed_off = True
            return True
        finally:
            if not handed_off:
                self.send_lock.release()

    def _finish_send(self, rest: bytes) -> None:
        try:
            self.sock.sendall(rest)
        except OSError:
            self.close()  # half a frame went out: the stream is unusable
        finally:
            self.send_lock.release()

    def recv(self) -> tuple[int, bytes]:
        head = _read_exact(self.sock, _HEAD.size)
        length, kind, seq = _HEAD.unpack(head)
        tag_len = TAG if self.key is not None else 0
        if length > MAX_FRAME:
            raise FrameError(f"oversized frame ({length} bytes)")
        if length < 9 + tag_len:
            raise FrameError("truncated frame")
        if kind not in (KIND_CALL, KIND_REPLY, KIND_CAST, KIND_RAFT, KIND_RAFT_PART):
            raise FrameError(f"unknown frame kind {kind}")
        body = _read_exact(self.sock, length - 9)
        payload, tag = (body[:-tag_len], body[-tag_len:]) if tag_len else (body, b"")
        if tag_len and not hmac.compare_digest(tag, self._tag(self.in_dir, kind, seq, payload)):
            raise FrameError("bad authentication tag")
        if seq <= self.recv_seq:
            raise FrameError("replayed or reordered frame")
        self.recv_seq = seq
        return kind, payload

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def _read_exact(sock: socket.socket | TlsStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def _session_key(key: bytes | None, server_nonce: bytes, client_nonce: bytes) -> bytes:
    if key is None:
        return b""
    return hmac.new(key, b"session" + server_nonce + client_nonce, hashlib.sha256).digest()


def _proof(key: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return hmac.new(key, b"dkron-rpc" + server_nonce + client_nonce, hashlib.sha256).digest()


def _encode_call(req_id: int, method: str, args: Any) -> bytes:
    return json.dumps({"id": req_id, "m": method, "a": args}, separators=(",", ":")).encode()


class _Workers:
    """Threads for calls that may block: a call goes to an idle thread when there is one and
    to a new thread otherwise (never queued behind another call). Threads stay idle for a
    while before they exit, so a busy node does not start a thread per call, which costs a
    thread start and a wait for it on the connection's reader."""

    def __init__(self, name: str, idle_seconds: float = 30.0):
        self.name = name
        self.idle_seconds = idle_seconds
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()

    def run(self, task: Callable[[], None]) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                self._tasks.put(task)
                return
        threading.Thread(target=self._work, args=(task,), name=self.name, daemon=True).start()

    def _work(self, task: Callable[[], None]) -> None:
        while True:
            try:
                task()
            except Exception:  # a bug in one call must not cost the thread or the count
                log.exception("rpc: a call failed on %s", self.name)
            with self._lock:
                self._idle += 1
            while True:
                try:
                    task = self._tasks.get(timeout=self.idle_seconds)
                    break
                except queue.Empty:
                    with self._lock:  # tasks are put under this lock: none is left behind
                        if self._tasks.empty():
                            self._idle -= 1
                            return


class RpcServer:
    """Accepts connections and dispatches frames to `handler` (calls) and `on_raft` (bytes)."""

    def __init__(
        self,
        host: str,
        port: int,
        key: bytes | None,
        handler: Handler,
        on_raft: Callable[[bytes, str], None] | None = None,
        tls: RpcTls | None = None,
    ):
        self.key = key
        self.tls = tls
        self.handler = handler
        self.on_raft = on_raft
        self._sock = socket.create_server((host, port), reuse_port=False)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._conns: set[_Channel] = set()
        self._lock = threading.Lock()
        self._workers = _Workers("rpc-call")
        self._thread = threading.Thread(target=self._accept_loop, name="rpc-accept", daemon=True)

    def start(self) -> RpcServer:
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, addr = self._sock.accept()
            except OSError:
                return
            threading.Thread(
                target=self._serve, args=(sock, f"{addr[0]}:{addr[1]}"), daemon=True
            ).start()

    def _handshake(self, raw: socket.socket, peer: str) -> _Channel:
        raw.settimeout(10)
        sock = raw if self.tls is None else _accept_tls(raw, self.tls)
        server_nonce = os.urandom(NONCE)
        sock.sendall(server_nonce)
        client_nonce = _read_exact(sock, NONCE)
        if self.key is not None:
            proof = _read_exact(sock, TAG)
            if not hmac.compare_digest(proof, _proof(self.key, server_nonce, client_nonce)):
                raise FrameError("handshake without the cluster key")
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = _session_key(self.key, server_nonce, client_nonce)
        return _Channel(sock, self.key, session, b"s")

    def _serve(self, sock: socket.socket, peer: str) -> None:
        try:
            chan = self._handshake(sock, peer)
        except (OSError, ConnectionError, FrameError) as e:
            _drop(str(e) if isinstance(e, FrameError) else "handshake failed", peer)
            sock.close()
            return
        with self._lock:
            self._conns.add(chan)
        parts: list[bytes] = []
        parts_size = 0
        try:
            while not self._stop.is_set():
                kind, payload = chan.recv()
                if kind == KIND_RAFT:
                    if self.on_raft is not None:
                        self.on_raft(payload, peer)
                elif kind == KIND_RAFT_PART:
                    if not payload or payload[0] > 1:
                        raise FrameError("malformed Raft part")
                    parts_size += len(payload) - 1
                    if parts_size > MAX_RAFT_MESSAGE:
                        raise FrameError(f"Raft message in parts exceeds {MAX_RAFT_MESSAGE} bytes")
                    parts.append(payload[1:])
                    if payload[0] == 1:
                        data, parts, parts_size = b"".join(parts), [], 0
                        if self.on_raft is not None:
                            self.on_raft(data, peer)
                elif kind in (KIND_CALL, KIND_CAST):
                    try:
                        msg = json.loads(payload)
                        method, args = msg["m"], msg.get("a")
                    except (ValueError, KeyError, TypeError):
                        raise FrameError("malformed call") from None
                    if kind == KIND_CALL and method in INLINE_METHODS:
                        self._answer(chan, msg.get("id"), method, args, peer)
                    elif kind == KIND_CALL:
                        req_id = msg.get("id")
                        self._workers.run(
                            lambda c=chan, i=req_id, m=method, a=args: self._answer(
                                c, i, m, a, peer
                            )
                        )
                    else:
                        self._run(method, args, peer)
                else:
                    raise FrameError("unexpected frame kind from a client")
        except FrameError as e:
            _drop(str(e), peer)
        except ssl.SSLError as e:
            _drop(f"TLS error: {tls_reason(e)}", peer)
        except (OSError, ConnectionError):
            pass
        finally:
            with self._lock:
                self._conns.discard(chan)
            chan.close()

    def _run(self, method: str, args: Any, peer: str) -> Any:
        try:
            return {"ok": self.handler(method, args, peer)}
        except RpcError as e:
            return {"err": str(e)}
        except Exception as e:
            log.exception("rpc handler %s failed", method)
            return {"err": f"{type(e).__name__}: {e}"}

    def _answer(self, chan: _Channel, req_id: Any, method: str, args: Any, peer: str) -> None:
        result = self._run(method, args, peer)
        later = result.get("ok")
        if isinstance(later, Future):
            later.add_done_callback(lambda f: self._answer_later(chan, req_id, method, f))
            return
        self._reply(chan, req_id, result)

    def _answer_later(self, chan: _Channel, req_id: Any, method: str, fut: Future) -> None:
        try:
            result = {"ok": fut.result()}
        except RpcError as e:
            result = {"err": str(e)}
        except Exception as e:
            log.exception("rpc handler %s failed", method)
            result = {"err": f"{type(e).__name__}: {e}"}
        result["id"] = req_id
        payload = json.dumps(result, separators=(",", ":")).encode()
        try:
            if chan.send_nowait(KIND_REPLY, payload):
                return
        except OSError:
            return
        self._workers.run(lambda: self._send_reply(chan, payload))

    def _reply(self, chan: _Channel, req_id: Any, result: dict) -> None:
        result["id"] = req_id
        self._send_reply(chan, json.dumps(result, separators=(",", ":")).encode())

    @staticmethod
    def _send_reply(chan: _Channel, payload: bytes) -> None:
        try:
            chan.send(KIND_REPLY, payload)
        except OSError:
            pass

    def stop(self) -> None:
        self._stop.set()
        try:  # wake the accept thread, or the port keeps listening until one more connect
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for chan in conns:
            chan.close()


def _accept_tls(raw: socket.socket, tls: RpcTls) -> TlsStream:
    """The server side of the TLS handshake; FrameError (a counted reason) if it fails."""
    stream = TlsStream(raw, tls.server, server_side=True)
    try:
        stream.handshake()
    except ssl.SSLError as e:
        raise FrameError(f"TLS handshake refused: {tls_reason(e)}") from None
    except (OSError, ConnectionError):
        raise FrameError("TLS handshake not completed (a client without TLS?)") from None
    return stream


class _Connection:
    """A client connection to one peer with a reader thread matching replies to calls."""

    def __init__(self, addr: str, key: bytes | None, timeout: float, tls: RpcTls | None):
        host, _, port = addr.rpartition(":")
        raw = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
        sock: socket.socket | TlsStream = raw
        try:
            if tls is not None:
                sock = TlsStream(raw, tls.client, server_side=False)
                sock.handshake()
            server_nonce = _read_exact(sock, NONCE)
            client_nonce = os.urandom(NONCE)
            hello = client_nonce + (_proof(key, server_nonce, client_nonce) if key else b"")
            sock.sendall(hello)
        except (OSError, ConnectionError):
            raw.close()
            raise
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.chan = _Channel(sock, key, _session_key(key, server_nonce, client_nonce), b"c")
        self.pending: dict[int, Future] = {}
        self.lock = threading.Lock()
        self.alive = True
        threading.Thread(target=self._read_loop, name=f"rpc-{addr}", daemon=True).start()

    def _read_loop(self) -> None:
        try:
            while True:
                kind, payload = self.chan.recv()
                if kind != KIND_REPLY:
                    raise FrameError("unexpected frame kind from a server")
                msg = json.loads(payload)
                with self.lock:
                    fut = self.pending.pop(msg.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        except (OSError, ConnectionError, FrameError, ValueError):
            pass
        finally:
            self.alive = False
            with self.lock:
                pending, self.pending = self.pending, {}
            for fut in pending.values():
                if not fut.done():
                    fut.set_exception(RpcError("connection lost"))
            self.chan.close()


class RpcClient:
    """Calls peers by "host:port", keeping one connection per peer."""

    def __init__(self, key: bytes | None, connect_timeout: float = 2.0, tls: RpcTls | None = None):
        self.key = key
        self.tls = tls
        self.connect_timeout = connect_timeout
        self._conns: dict[str, _Connection] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def _conn(self, addr: str) -> _Connection:
        with self._lock:
            conn = self._conns.get(addr)
            if conn is not None and conn.alive:
                return conn
        try:
            conn = _Connection(addr, self.key, self.connect_timeout, self.tls)
        except ssl.SSLError as e:
            raise RpcError(f"cannot reach {addr}: TLS refused: {tls_reason(e)}") from None
        except (OSError, ConnectionError) as e:
            raise RpcError(f"cannot reach {addr}: {e}") from None
        with self._lock:
            self._conns[addr] = conn
        return conn

    def call(self, addr: str, method: str, args: Any = None, timeout: float = 10.0) -> Any:
        """Call `method` on the peer and return its result; RpcError on any failure."""
        conn = self._conn(addr)
        req_id = next(self._ids)
        fut: Future = Future()
        with conn.lock:
            conn.pending[req_id] = fut
        try:
            conn.chan.send(KIND_CALL, _encode_call(req_id, method, args))
            reply = fut.result(timeout=timeout)
        except FutureTimeout:
            raise RpcError(f"{method} on {addr}: no answer within {timeout:g}s") from None
        except OSError as e:
            conn.alive = False
            raise RpcError(f"{method} on {addr}: {e}") from None
        finally:
            with conn.lock:
                conn.pending.pop(req_id, None)
        if "err" in reply:
            raise RpcError(reply["err"])
        return reply.get("ok")

    def cast(self, addr: str, method: str, args: Any = None) -> None:
        """Send a one-way message; RpcError if the peer cannot be reached."""
        conn = self._conn(addr)
        try:
            conn.chan.send(KIND_CAST, _encode_call(0, method, args))
        except OSError as e:
            conn.alive = False
            raise RpcError(f"{method} on {addr}: {e}") from None

    def send_raft(self, addr: str, data: bytes) -> bool:
        """Best-effort delivery of a Raft message (Raft retries by itself); False if not sent.
        A message bigger than `RAFT_PART_BYTES` goes in parts (other frames may come between
        them; the receiver keeps the parts apart)."""
        try:
            conn = self._conn(addr)
            if len(data) <= RAFT_PART_BYTES:
                conn.chan.send(KIND_RAFT, data)
                return True
            view = memoryview(data)
            for start in range(0, len(data), RAFT_PART_BYTES):
                last = start + RAFT_PART_BYTES >= len(data)
                piece = view[start : start + RAFT_PART_BYTES]
                conn.chan.send(KIND_RAFT_PART, (b"\x01" if last else b"\x00") + piece)
            return True
        except (RpcError, OSError):
            return False

    def send_raft_now(self, addr: str, data: bytes) -> bool:
        """Send a Raft message at once if a connection is up and that cannot block; False
        otherwise (the caller then queues it for `send_raft`)."""
        if len(data) > RAFT_PART_BYTES:
            return False
        with self._lock:
            conn = self._conns.get(addr)
        if conn is None or not conn.alive:
            return False
        try:
            return conn.chan.send_nowait(KIND_RAFT, data)
        except OSError:
            conn.alive = False
            return False

    def close(self) -> None:
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            conn.chan.close()


def decode_key(text: str) -> bytes | None:
    """The cluster key from `--encrypt` (base64 of 16, 24 or 32 bytes); None when unset."""
    import base64
    import binascii

    if not text:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("encrypt: the key is not valid base64 (make one with `dkron keygen`)")
    if len(raw) not in (16, 24, 32):
        raise ValueError(f"encrypt: the key must be 16, 24 or 32 bytes, got {len(raw)}")
    return raw
