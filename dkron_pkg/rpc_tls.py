"""Optional TLS on the RPC port (stdlib ssl): contexts from the three flags, and a stream that
lets one thread read while others write.

Flags: `--rpc-tls-cert` and `--rpc-tls-key` (PEM; every node both serves and calls, so each
node needs its own pair) and, optionally, `--rpc-tls-ca`. With a CA both sides verify each
other (mutual TLS): the server requires a client certificate signed by the CA and the client
verifies the server's certificate against the CA. Host names are NOT checked: a node is trusted
because the cluster's CA signed its certificate, whatever address it is reached at (servers are
addressed by IP and addresses change). Without a CA the link is encrypted but not authenticated
by TLS; the cluster key (`--encrypt`) still authenticates every frame on top of TLS.

Why not `SSLContext.wrap_socket`: OpenSSL forbids using one SSL object from two threads at once,
and an RPC connection is read by one thread while callers write to it. `TlsStream` therefore
runs the SSL object over memory buffers under a lock and does the socket I/O itself, outside
the lock, so a blocked reader never holds up a writer.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass

_RECV_CHUNK = 65536


@dataclass(frozen=True)
class RpcTls:
    """The two sides of this node's TLS: what it presents when serving and when calling."""

    server: ssl.SSLContext
    client: ssl.SSLContext


def load_tls(cert: str, key: str, ca: str) -> RpcTls | None:
    """Contexts from the flag values; None when TLS is off. ValueError names the bad flag."""
    if not (cert or key or ca):
        return None
    if not cert or not key:
        missing = "rpc-tls-key" if cert else "rpc-tls-cert"
        raise ValueError(f"{missing} is required when rpc-tls-cert, -key or -ca is set")
    for flag, path in (("rpc-tls-cert", cert), ("rpc-tls-key", key), ("rpc-tls-ca", ca)):
        if path and not os.path.isfile(path):
            raise ValueError(f'{flag}: no such file "{path}"')
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for ctx in (server, client):
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.options |= ssl.OP_NO_RENEGOTIATION
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(
                f'rpc-tls-cert/rpc-tls-key: cannot load "{cert}" with "{key}": {_reason(e)}'
            ) from None
    client.check_hostname = False  # see the module docstring
    if ca:
        for ctx in (server, client):
            try:
                ctx.load_verify_locations(cafile=ca)
            except (OSError, ssl.SSLError) as e:
                raise ValueError(f'rpc-tls-ca: cannot load "{ca}": {_ca_reason(e)}') from None
            ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        client.verify_mode = ssl.CERT_NONE
    return RpcTls(server, client)


def _reason(e: Exception) -> str:
    if isinstance(e, ssl.SSLError):
        return "not a PEM certificate with its matching private key"
    return str(getattr(e, "strerror", None) or e)


def _ca_reason(e: Exception) -> str:
    if isinstance(e, ssl.SSLError):
        return "not a PEM CA certificate"
    return str(getattr(e, "strerror", None) or e)


def tls_reason(e: ssl.SSLError) -> str:
    """A short, bounded label for a TLS failure (for counters and logs)."""
    return str(getattr(e, "reason", None) or type(e).__name__)


class TlsStream:
    """A TLS connection with the small socket interface the RPC channel uses.

    One thread may `recv` while others `sendall`; writers are serialized by the caller's lock
    and again here, so records leave in the order OpenSSL produced them.
    """

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_side: bool):
        self.sock = sock
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=server_side)
        self._ssl_lock = threading.Lock()  # guards the SSL object and both buffers
        self._send_lock = threading.Lock()  # keeps socket writes in production order
        self._backlog: list[bytes] = []  # TLS output produced while reading, not yet sent
        self.deadline: float | None = None  # monotonic; reads past it raise TimeoutError

    def _recv_raw(self) -> bytes:
        """Bytes from the socket, within `deadline` when one is set (a peer that trickles
        bytes cannot stretch the time it is given)."""
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("deadline passed")
            self.sock.settimeout(left)
        return self.sock.recv(_RECV_CHUNK)

    def handshake(self, deadline: float | None = None) -> None:
        """Complete the TLS handshake (before the stream is shared between threads), by
        `deadline` (monotonic) when given."""
        self.deadline = deadline
        while True:
            try:
                self._obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._send_pending()
                data = self._recv_raw()
                if not data:
                    raise ConnectionError("peer closed the connection during the TLS handshake")
                self._in.write(data)
            except ssl.SSLError:
                try:  # tell the peer why (the alert OpenSSL queued), then fail
                    self._send_pending()
                except OSError:
                    pass
                raise
        self._send_pending()

    def _send_pending(self) -> None:
        data = self._out.read()
        if data:
            self.sock.sendall(data)

    def _encrypt(self, data: bytes) -> bytes:
        """TLS records for `data`, after any bytes the TLS engine already had waiting."""
        with self._ssl_lock:
            view = memoryview(data)
            while view:
                view = view[self._obj.write(view) :]
            out = b"".join(self._backlog) + self._out.read()
            self._backlog.clear()
        return out

    def sendall(self, data: bytes) -> None:
        with self._send_lock:
            self.sock.sendall(self._encrypt(data))

    def send_nowait(self, data: bytes, dontwait: int) -> bool:
        """Encrypt and send `data` without blocking; False (nothing done) if another writer is
        busy. Once encrypted the bytes must go out: what the socket does not take at once is
        sent by a helper thread that holds the send lock until done, keeping the order."""
        if not self._send_lock.acquire(blocking=False):
            return False
        handed_off = False
        try:
            out = self._encrypt(data)
            try:
                sent = self.sock.send(out, dontwait)
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent < len(out):
                threading.Thread(
                    target=self._finish_send, args=(out[sent:],), name="tls-send", daemon=True
                ).start()
                handed_off = True
            return True
        finally:
            if not handed_off:
                self._send_lock.release()

    def _finish_send(self, rest: bytes) -> None:
        try:
            self.sock.sendall(rest)
        except OSError:
            self.sock.close()  # part of a record went out: the stream is unusable
        finally:
            self._send_lock.release()

    def recv(self, n: int) -> bytes:
        while True:
            with self._ssl_lock:
                try:
                    data: bytes | None = self._obj.read(n)
                except ssl.SSLWantReadError:
                    data = None
                except ssl.SSLZeroReturnError:
                    data = b""
                if self._out.pending:
                    self._backlog.append(self._out.read())
            self._flush_backlog()
            if data is not None:
                return data
            raw = self._recv_raw()
            if not raw:
                return b""
            with self._ssl_lock:
                self._in.write(raw)

    def _flush_backlog(self) -> None:
        """Send what reading produced (e.g. a key update), unless a writer is busy: the writer
        then sends it first thing next time."""
        if not self._backlog or not self._send_lock.acquire(blocking=False):
            return
        try:
            with self._ssl_lock:
                out = b"".join(self._backlog)
                self._backlog.clear()
            if out:
                self.sock.sendall(out)
        finally:
            self._send_lock.release()

    def settimeout(self, value: float | None) -> None:
        """Time allowed for each read; ends the handshake deadline."""
        self.deadline = None
        self.sock.settimeout(value)

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.sock.setsockopt(level, option, value)

    def shutdown(self, how: int) -> None:
        self.sock.shutdown(how)

    def close(self) -> None:
        self.sock.close()


def tls_of(config: object) -> RpcTls | None:
    """This node's RPC TLS from its configuration (`rpc_tls_cert`, `_key`, `_ca`)."""
    return load_tls(
        getattr(config, "rpc_tls_cert", "") or "",
        getattr(config, "rpc_tls_key", "") or "",
        getattr(config, "rpc_tls_ca", "") or "",
    )
