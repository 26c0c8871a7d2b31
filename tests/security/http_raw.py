"""Raw HTTP over a socket, for requests urllib will not send (bad lengths, odd methods, Host)."""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass
class RawReply:
    status: int
    headers: dict[str, str]  # names lowercased
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_reply(sock: socket.socket) -> RawReply:
    """One response from `sock` (Content-Length framed); AssertionError if none comes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response (got {data[:200]!r})")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return RawReply(status, headers, body[:length])


def exchange(port: int, request: bytes, timeout: float = 10.0) -> RawReply:
    """Send `request` on a new connection and read one response."""
    with connect(port, timeout) as sock:
        sock.sendall(request)
        return read_reply(sock)


def head(method: str, path: str, port: int, *lines: str) -> bytes:
    """A request head (no body) with Host 127.0.0.1:port unless a Host line is given."""
    extra = list(lines)
    if not any(line.lower().startswith("host:") for line in extra):
        extra.insert(0, f"Host: 127.0.0.1:{port}")
    return (f"{method} {path} HTTP/1.1\r\n" + "".join(f"{x}\r\n" for x in extra) + "\r\n").encode()


def closed_by_peer(sock: socket.socket) -> bool:
    """True when the server closed the connection (EOF or reset) before our timeout."""
    try:
        return sock.recv(65536) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False
