"""Node-to-node RPC over TCP: length-prefixed frames, authenticated with the cluster key.

One listener per node (the RPC port, 6868) carries everything servers and agents say to each
other: Raft messages, forwarded writes, run requests and execution reports.

Wire format. On connect the server sends a 16-byte nonce; the client answers with its own nonce
and HMAC-SHA256(key, "dkron-rpc" + both nonces) proving it has the cluster key. Both sides then
derive a session key from the key and the nonces. Every frame is
`u32 length | u8 kind | u64 sequence | payload | tag`, where tag = HMAC-SHA256(session key,
direction + kind + sequence + payload) and sequences strictly increase per direction, so a frame
can be neither forged, altered, nor replayed on this or another connection. Frames that fail any
check are dropped with a counted, logged reason, and the connection closes.

A server always has a key (see cluster_key): nothing a peer sends is read as a frame before it
proved the key. Only the development mode (`insecure=True`, `--dev-insecure`) runs without one;
there is then no proof and no tag, and the agent listens on loopback only.

Bounds, so that no peer, with the key or without, can exhaust a node: a peer has
`HANDSHAKE_SECONDS` to finish TLS and prove the key; an authenticated connection that sends
nothing for `IDLE_SECONDS` is closed (clients retire theirs earlier, `CLIENT_REUSE_SECONDS`, so a
call never races the close); at most `MAX_HANDSHAKES` connections may be proving the key and
`MAX_CONNECTIONS` be open at once, further ones are closed at once; a frame's length is checked
before its body is read; Raft parts are taken only by a node that runs Raft, at most
`MAX_RAFT_MESSAGE` bytes per message and `MAX_RAFT_PARTS_TOTAL` over all connections at once.

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
import time
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
MAX_RAFT_PARTS_TOTAL = MAX_RAFT_MESSAGE  # one snapshot's worth, over all connections at once
HANDSHAKE_SECONDS = 5.0
IDLE_SECONDS = 300.0
CLIENT_REUSE_SECONDS = 240.0
MAX_HANDSHAKES = 64
MAX_CONNECTIONS = 1024
DROP_LOG_EVERY_SECONDS = 10.0
_HEAD = struct.Struct(">IBQ")  # length (of kind..end), kind, sequence
_DONTWAIT: int | None = getattr(socket, "MSG_DONTWAIT", None)

Handler = Callable[[str, Any, str], Any]  # (method, args, peer address) -> result


class RpcError(Exception):
    """A call that failed: unreachable peer, timeout, or an error the handler returned."""


class FrameError(Exception):
    """A frame that must be dropped; the message is the counted reason."""


DROPPED: Counter[str] = Counter()
INLINE_METHODS: set[str] = set()
_drop_log_lock = threading.Lock()
_drop_logged: dict[str, float] = {}
_drop_quiet: Counter[str] = Counter()


def answer_inline(method: str) -> None:
    """Declare that `method`'s handler never blocks. It then runs on the connection's reader
    thread (one thread hand-off less per call) and may return a Future: the answer is sent
    when the Future completes, from the thread that completes it, without blocking it."""
    INLINE_METHODS.add(method)


def _drop(reason: str, peer: str) -> None:
    """Count a refused connection and log it; under a flood, one line per reason every
    DROP_LOG_EVERY_SECONDS with the number left unsaid."""
    DROPPED[reason] += 1
    now = time.monotonic()
    with _drop_log_lock:
        last = _drop_logged.get(reason)
        if last is not None and now - last < DROP_LOG_EVERY_SECONDS:
            _drop_quiet[reason] += 1
            return
        if len(_drop_logged) > 1000:
            _drop_logged.clear()
        _drop_logged[reason] = now
        quiet = _drop_quiet.pop(reason, 0)
    more = f" (and {quiet} more like it since)" if quiet else ""
    log.warning("rpc: dropped connection from %s: %s%s", peer, reason, more)


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


def _read_exact(sock: socket.socket | TlsStream, n: int, deadline: float | None = None) -> bytes:
    """Exactly `n` bytes; with a deadline (monotonic), TimeoutError once it has passed."""
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("deadline passed")
            if isinstance(sock, TlsStream):
                sock.deadline = deadline  # kept for every socket read under the TLS record
            else:
                sock.settimeout(left)
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
    """Accepts connections and dispatches frames to `handler` (calls) and `on_raft` (bytes).

    `key` is required: only `insecure=True` (development mode) lets a server run without one.
    Without `on_raft` the server takes no Raft messages (a peer sending one is dropped)."""

    def __init__(
        self,
        host: str,
        port: int,
        key: bytes | None,
        handler: Handler,
        on_raft: Callable[[bytes, str], None] | None = None,
        tls: RpcTls | None = None,
        *,
        insecure: bool = False,
    ):
        if key is None and not insecure:
            raise ValueError("rpc: the RPC server needs the cluster key (see --encrypt)")
        self.key = key
        self.tls = tls
        self.handler = handler
        self.on_raft = on_raft
        self._sock = socket.create_server((host, port), reuse_port=False)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._conns: set[_Channel] = set()
        self._lock = threading.Lock()
        self._open = 0  # connections with a thread, proving the key or authenticated
        self._proving = 0  # of those, the ones that have not proved the key yet
        self._parts_held = 0  # bytes of Raft parts buffered over all connections
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
            peer = f"{addr[0]}:{addr[1]}"
            refused = self._admit()
            if refused:
                sock.close()  # at once: a flood costs neither a thread nor a buffer
                _drop(refused, peer)
                continue
            try:
                threading.Thread(target=self._serve, args=(sock, peer), daemon=True).start()
            except RuntimeError:  # no thread to be had: refuse this one
                self._release(proving=True)
                sock.close()
                _drop("no thread for a new connection", peer)

    def _admit(self) -> str | None:
        """Take a connection slot, or say why there is none."""
        with self._lock:
            if self._open >= MAX_CONNECTIONS:
                return f"too many connections (limit {MAX_CONNECTIONS})"
            if self._proving >= MAX_HANDSHAKES:
                return f"too many connections proving the key (limit {MAX_HANDSHAKES})"
            self._open += 1
            self._proving += 1
            return None

    def _release(self, proving: bool) -> None:
        with self._lock:
            self._open -= 1
            if proving:
                self._proving -= 1

    def _proved(self) -> None:
        with self._lock:
            self._proving -= 1

    def _handshake(self, raw: socket.socket, peer: str) -> _Channel:
        """TLS (if configured), nonces and the proof of the key, all within HANDSHAKE_SECONDS."""
        deadline = time.monotonic() + HANDSHAKE_SECONDS
        raw.settimeout(HANDSHAKE_SECONDS)
        try:
            sock = raw if self.tls is None else _accept_tls(raw, self.tls, deadline)
            server_nonce = os.urandom(NONCE)
            sock.sendall(server_nonce)
            client_nonce = _read_exact(sock, NONCE, deadline)
            if self.key is not None:
                proof = _read_exact(sock, TAG, deadline)
                if not hmac.compare_digest(proof, _proof(self.key, server_nonce, client_nonce)):
                    raise FrameError("handshake without the cluster key")
        except TimeoutError:
            raise FrameError(f"no proof of the cluster key within {HANDSHAKE_SECONDS:g}s") from None
        except ConnectionError:
            raise FrameError("closed before proving the cluster key") from None
        sock.settimeout(IDLE_SECONDS)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = _session_key(self.key, server_nonce, client_nonce)
        return _Channel(sock, self.key, session, b"s")

    def _serve(self, sock: socket.socket, peer: str) -> None:
        try:
            chan = self._handshake(sock, peer)
        except (OSError, FrameError) as e:
            self._release(proving=True)
            _drop(str(e) if isinstance(e, FrameError) else "handshake failed", peer)
            sock.close()
            return
        self._proved()
        with self._lock:
            self._conns.add(chan)
        parts = _Parts(self)
        try:
            while not self._stop.is_set():
                kind, payload = chan.recv()
                if kind in (KIND_RAFT, KIND_RAFT_PART) and self.on_raft is None:
                    raise FrameError("Raft message to a node that runs no Raft")
                if kind == KIND_RAFT:
                    self.on_raft(payload, peer)  # type: ignore[misc]
                elif kind == KIND_RAFT_PART:
                    data = parts.add(payload)
                    if data is not None:
                        self.on_raft(data, peer)  # type: ignore[misc]
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
        except TimeoutError:
            log.debug("rpc: closed %s, idle for %gs", peer, IDLE_SECONDS)
        except (OSError, ConnectionError):
            pass
        finally:
            parts.clear()
            with self._lock:
                self._conns.discard(chan)
            self._release(proving=False)
            chan.close()

    def _hold_parts(self, size: int) -> bool:
        """Reserve `size` bytes of the node's Raft-parts budget; False when it is spent."""
        with self._lock:
            if self._parts_held + size > MAX_RAFT_PARTS_TOTAL:
                return False
            self._parts_held += size
            return True

    def _free_parts(self, size: int) -> None:
        with self._lock:
            self._parts_held -= size

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


class _Parts:
    """The Raft message one connection is receiving in parts, held against the server's
    budget so that all connections together never hold more than MAX_RAFT_PARTS_TOTAL."""

    def __init__(self, server: RpcServer):
        self.server = server
        self.pieces: list[bytes] = []
        self.size = 0

    def add(self, payload: bytes) -> bytes | None:
        """Take one part; the whole message once the last part is in, else None."""
        if not payload or payload[0] > 1:
            raise FrameError("malformed Raft part")
        size = len(payload) - 1
        if self.size + size > MAX_RAFT_MESSAGE:
            raise FrameError(f"Raft message in parts exceeds {MAX_RAFT_MESSAGE} bytes")
        if not self.server._hold_parts(size):
            raise FrameError(f"Raft parts over this node's budget of {MAX_RAFT_PARTS_TOTAL} bytes")
        self.size += size
        self.pieces.append(payload[1:])
        if payload[0] != 1:
            return None
        data = b"".join(self.pieces)
        self.clear()
        return data

    def clear(self) -> None:
        self.server._free_parts(self.size)
        self.pieces, self.size = [], 0


def _accept_tls(raw: socket.socket, tls: RpcTls, deadline: float) -> TlsStream:
    """The server side of the TLS handshake; FrameError (a counted reason) if it fails."""
    stream = TlsStream(raw, tls.server, server_side=True)
    try:
        stream.handshake(deadline)
    except ssl.SSLError as e:
        raise FrameError(f"TLS handshake refused: {tls_reason(e)}") from None
    except TimeoutError:
        raise
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
        self.last_sent = time.monotonic()
        threading.Thread(target=self._read_loop, name=f"rpc-{addr}", daemon=True).start()

    def usable(self) -> bool:
        """Alive, and not so idle that the server may be closing it (IDLE_SECONDS)."""
        return self.alive and time.monotonic() - self.last_sent < CLIENT_REUSE_SECONDS

    def send(self, kind: int, payload: bytes) -> None:
        self.last_sent = time.monotonic()
        self.chan.send(kind, payload)

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
            if conn is not None and conn.usable():
                return conn
        if conn is not None and conn.alive:
            conn.chan.close()  # idle for long: a fresh one cannot race the server's close
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
            conn.send(KIND_CALL, _encode_call(req_id, method, args))
            reply = fut.result(timeout=timeout)
        except FutureTimeout:
            # A connection that let a call go unanswered may be dead without a word (its peer
            # restarted): the next call opens a fresh one instead of waiting on it again.
            conn.alive = False
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

    def call_async(
        self, addr: str, method: str, args: Any = None, connected_only: bool = False
    ) -> Future:
        """Send a call without waiting: a Future of its result, failed with RpcError when the
        peer cannot be reached, the connection is lost or the peer answers an error. It has no
        timeout of its own (the caller bounds its wait); done-callbacks run on the thread that
        reads the connection, so they must not block. `connected_only`: fail at once rather
        than connect (connecting to a dead host can block for the connect timeout)."""
        out: Future = Future()
        try:
            if connected_only:
                with self._lock:
                    conn = self._conns.get(addr)
                if conn is None or not conn.usable():
                    raise RpcError(f"{method}: no open connection to {addr}")
            else:
                conn = self._conn(addr)
        except RpcError as exc:
            out.set_exception(exc)
            return out
        req_id = next(self._ids)
        raw: Future = Future()
        with conn.lock:
            conn.pending[req_id] = raw
            alive = conn.alive  # a reader that ended already failed what was pending then
        try:
            if not alive:
                raise OSError("connection lost")
            conn.send(KIND_CALL, _encode_call(req_id, method, args))
        except OSError as e:
            conn.alive = False
            with conn.lock:
                conn.pending.pop(req_id, None)
            out.set_exception(RpcError(f"{method} on {addr}: {e}"))
            return out

        def settle(done: Future) -> None:
            try:
                reply = done.result()
            except RpcError as exc:
                out.set_exception(exc)
                return
            if "err" in reply:
                out.set_exception(RpcError(reply["err"]))
            else:
                out.set_result(reply.get("ok"))

        raw.add_done_callback(settle)
        return out

    def cast(self, addr: str, method: str, args: Any = None) -> None:
        """Send a one-way message; RpcError if the peer cannot be reached."""
        conn = self._conn(addr)
        try:
            conn.send(KIND_CAST, _encode_call(0, method, args))
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
                conn.send(KIND_RAFT, data)
                return True
            view = memoryview(data)
            for start in range(0, len(data), RAFT_PART_BYTES):
                last = start + RAFT_PART_BYTES >= len(data)
                piece = view[start : start + RAFT_PART_BYTES]
                conn.send(KIND_RAFT_PART, (b"\x01" if last else b"\x00") + piece)
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
        if conn is None or not conn.usable():
            return False
        try:
            conn.last_sent = time.monotonic()
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
