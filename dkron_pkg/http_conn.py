"""Connection limits of the HTTP server: deadlines, a connection cap, and a clean close.

The standard library's threading server gives each connection a thread and waits on it
forever, so a few idle or trickling sockets could hold any number of threads. Here a connection
waiting for its next request is closed after the read timeout, a request head must arrive
whole within the header timeout of its first byte, a body within the read timeout, and
connections beyond the cap are answered 503 at once instead of getting a thread.
"""

from __future__ import annotations

import io
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dkron_pkg.http_guard import HttpPolicy

log = logging.getLogger("dkron.http")

LINGER_SECONDS = 1.0  # after refusing a body, how long to drop what the client still sends
LINGER_BYTES = 256 * 1024


class RefusalLog:
    """Warnings about refused requests, at most `burst` per `interval` seconds: an attacker
    must not be able to flood the log; what is left out is counted in the next line."""

    def __init__(self, burst: int = 5, interval: float = 10.0):
        self.burst = burst
        self.interval = interval
        self._lock = threading.Lock()
        self._window_start = -interval
        self._logged = 0
        self._skipped = 0

    def warn(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            skipped = 0
            if now - self._window_start >= self.interval:
                skipped, self._skipped = self._skipped, 0
                self._window_start, self._logged = now, 0
            if self._logged >= self.burst:
                self._skipped += 1
                return
            self._logged += 1
        if skipped:
            log.warning("%d more HTTP refusals were not logged", skipped)
        log.warning(message, *args)


class DeadlineReader(io.RawIOBase):
    """Socket reads that raise TimeoutError once the current deadline has passed, so a client
    trickling a byte at a time cannot stretch a request forever."""

    def __init__(self, sock: socket.socket, idle_timeout: float):
        super().__init__()
        self._sock = sock
        self._deadline: float | None = None
        self.idle_timeout = idle_timeout

    def readable(self) -> bool:
        return True

    def start(self, seconds: float) -> None:
        """Reads from now on must be done within `seconds`."""
        self._deadline = time.monotonic() + seconds

    def readinto(self, buffer: Any) -> int:
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the client took too long to send its request")
            self._sock.settimeout(left)
        try:
            return self._sock.recv_into(buffer)
        finally:
            self._sock.settimeout(self.idle_timeout)  # what writes of the answer get


class GuardedRequestHandler(BaseHTTPRequestHandler):
    """A request handler whose reads run against deadlines from the server's policy.

    Subclasses answer methods they do not know in `unknown_method`, and set
    `unread_body` when they answer without reading a body the client announced.
    """

    server: LimitedHTTPServer
    unread_body = False
    default_request_version = "HTTP/1.0"  # error answers keep their status line (not HTTP/0.9)

    def setup(self) -> None:
        policy = self.server.policy()
        self.timeout = policy.read_timeout  # the socket timeout StreamRequestHandler sets
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = DeadlineReader(self.connection, policy.read_timeout)
        self.rfile.close()  # the plain reader StreamRequestHandler made; ours replaces it
        self.rfile = io.BufferedReader(self.reader, 65536)

    def __getattr__(self, name: str) -> Any:
        # http.server answers a method without a do_<METHOD> with 501; we answer 405 + Allow.
        if name.startswith("do_"):
            return self.unknown_method
        raise AttributeError(name)

    def unknown_method(self) -> None:
        raise NotImplementedError

    def log_error(self, format: str, *args: Any) -> None:
        """http.server's own refusals (timeouts, malformed or oversized heads), rate-limited."""
        self.server.refusals.warn(
            "HTTP request from %s refused: " + format, self.address_string(), *args
        )

    def handle_one_request(self) -> None:
        policy = self.server.policy()
        self.reader.start(policy.read_timeout)  # an idle connection waits this long
        try:
            waiting = self.rfile.peek(1)
        except OSError:  # TimeoutError, reset
            waiting = b""
        if not waiting:
            self.close_connection = True
            return
        self.reader.start(policy.header_timeout)  # the request line and headers
        super().handle_one_request()

    def handle(self) -> None:
        super().handle()
        if self.unread_body:
            self._linger()

    def _linger(self) -> None:
        """Close without a reset: stop sending, then drop what the client is still sending for
        a moment, so it reads our answer instead of a 'connection reset'."""
        sock = self.connection
        try:
            self.wfile.flush()
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            dropped = 0
            while dropped < LINGER_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                sock.settimeout(left)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                dropped += len(chunk)
        except OSError:
            pass


class LimitedHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server with at most `policy().max_connections` connections at once."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[GuardedRequestHandler],
        policy: Callable[[], HttpPolicy],
    ):
        self.policy = policy
        self._lock = threading.Lock()
        self._active = 0
        self.refusals = RefusalLog()
        super().__init__(address, handler)

    @property
    def active_connections(self) -> int:
        return self._active

    def process_request(self, request: Any, client_address: Any) -> None:
        limit = self.policy().max_connections
        with self._lock:
            admitted = self._active < limit
            if admitted:
                self._active += 1
        if not admitted:
            self._refuse(request, limit)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._lock:
            self._active -= 1

    def _refuse(self, request: socket.socket, limit: int) -> None:
        """Answer 503 from the accept loop (no thread) and close."""
        body = (
            f"too many connections: this server takes {limit} at once "
            "(--http-max-connections); try again\n"
        ).encode()
        head = (
            "HTTP/1.1 503 Service Unavailable\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Retry-After: 1\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        try:
            request.setblocking(False)  # the accept loop must never wait on a client
            request.send(head + body)
        except OSError:
            pass
        self.shutdown_request(request)
        self.refusals.warn(
            "refused an HTTP connection: %d already open (--http-max-connections)", limit
        )

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line instead of socketserver's traceback on stderr."""
        error = sys.exc_info()[1]
        peer = client_address[0] if client_address else "?"
        if isinstance(error, OSError):
            log.debug("HTTP connection from %s ended: %s", peer, error)
        else:
            log.error(
                "HTTP connection from %s failed: %r",
                peer,
                error,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
