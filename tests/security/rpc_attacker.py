"""What an attacker who knows only a node's RPC port can send: a client without the cluster
key speaking the RPC wire format by hand (nonce, no proof, frames without a tag), and a
helper to read a process's memory. Used by the tests of findings 1 and 6."""

from __future__ import annotations

import json
import os
import socket
import ssl
import struct
from pathlib import Path
from typing import Any

NONCE = 16
KIND_CALL, KIND_RAFT_PART = 1, 5
HEAD = struct.Struct(">IBQ")


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed by the node")
        buf += chunk
    return buf


def frame(kind: int, seq: int, payload: bytes) -> bytes:
    """A frame as a keyless client sends it: no authentication tag."""
    return HEAD.pack(9 + len(payload), kind, seq) + payload


def connect_keyless(port: int, tls: bool = False, timeout: float = 5.0) -> socket.socket:
    """Connect, take the node's nonce and answer with a nonce and no proof of the key."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(sock)
    recv_exact(sock, NONCE)
    sock.sendall(os.urandom(NONCE))
    return sock


def keyless_call(port: int, method: str, args: Any, tls: bool = False) -> dict | None:
    """Call `method` without the key; the node's answer, or None when it closed on us."""
    try:
        sock = connect_keyless(port, tls)
    except (OSError, ConnectionError):
        return None
    try:
        payload = json.dumps({"id": 1, "m": method, "a": args}).encode()
        sock.sendall(frame(KIND_CALL, 1, payload))
        length, _kind, _seq = HEAD.unpack(recv_exact(sock, HEAD.size))
        return json.loads(recv_exact(sock, length - 9))
    except (OSError, ConnectionError, ValueError):
        return None
    finally:
        sock.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def run_args(job: dict, marker_group: int = 1) -> dict:
    """`agent.run` arguments a leader would send (no term: a leader without Raft)."""
    return {
        "job": job,
        "group": marker_group,
        "attempt": 1,
        "scheduled_ns": None,
        "report_to": "127.0.0.1:9",
    }
