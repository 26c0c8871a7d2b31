"""The `syslog` processor: the output as syslog messages, facility cron, tag `dkron`.

Config keys (strings): `address` -- `/dev/log` by default, or `unix:///path`,
`udp://host:port`, `tcp://host:port`; `format` -- `rfc3164` (default, what /dev/log daemons
expect) or `rfc5424`; `max_lines` -- at most this many output lines are sent (default 1000).

One message says what ran (`job=... execution=... node=... success=... attempt=...`), then each
output line is its own message prefixed with `job=<job> execution=<id>`, so log readers never
see broken multi-line records. Lines longer than 1,800 bytes are split. Severity is info for a
success and err for a failure (Dkron sends everything at info). TCP messages end with a newline
(RFC 6587 non-transparent framing).
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

PLACEHOLDER = "Output in syslog"
DEFAULT_ADDRESS = "/dev/log"
FACILITY_CRON = 9
SEVERITY_INFO = 6
SEVERITY_ERR = 3
TAG = "dkron"
MAX_PIECE = 1800
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def priority(success: bool) -> int:
    return FACILITY_CRON * 8 + (SEVERITY_INFO if success else SEVERITY_ERR)


def _hostname() -> str:
    return (socket.gethostname() or "-").replace(" ", "_")


def format_rfc3164(pri: int, text: str, now: float | None = None) -> bytes:
    t = time.localtime(now if now is not None else time.time())
    stamp = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    return f"<{pri}>{stamp} {_hostname()} {TAG}[{os.getpid()}]: {text}".encode()


def format_rfc5424(pri: int, text: str, now: float | None = None) -> bytes:
    dt = datetime.fromtimestamp(now if now is not None else time.time(), tz=UTC)
    stamp = dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}Z"
    return f"<{pri}>1 {stamp} {_hostname()} {TAG} {os.getpid()} execution - {text}".encode()


FORMATS = {"rfc3164": format_rfc3164, "rfc5424": format_rfc5424}


def messages(execution: dict, max_lines: int) -> Iterator[str]:
    """The summary message, then one message per output line (long lines split)."""
    prefix = f"job={execution.get('job_name')} execution={execution.get('id')}"
    success = "true" if execution.get("success") else "false"
    yield (
        f"{prefix} node={execution.get('node_name')} success={success} "
        f"attempt={execution.get('attempt', 1)}"
    )
    lines = str(execution.get("output") or "").splitlines()
    for line in lines[:max_lines]:
        data = line.encode("utf-8", "replace")
        for start in range(0, max(len(data), 1), MAX_PIECE):
            piece = data[start : start + MAX_PIECE].decode("utf-8", "replace")
            yield f"{prefix} {piece}"
    if len(lines) > max_lines:
        yield f"{prefix} ... {len(lines) - max_lines} more lines not sent to syslog"


def _host_port(rest: str, address: str) -> tuple[str, int]:
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f'invalid syslog address "{address}": expected scheme://host:port')
    return host.strip("[]"), int(port)


class _Connection:
    """One socket for all messages of an execution."""

    def __init__(self, address: str) -> None:
        self.stream = False
        if address.startswith("udp://"):
            host, port = _host_port(address[6:], address)
            info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
            self.sock = socket.socket(info[0], socket.SOCK_DGRAM)
            self.sock.connect(info[4])
        elif address.startswith("tcp://"):
            host, port = _host_port(address[6:], address)
            self.sock = socket.create_connection((host, port), timeout=5)
            self.stream = True
        else:
            path = address.removeprefix("unix://")
            if "://" in path:
                raise ValueError(f'invalid syslog address "{address}": unknown scheme')
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                self.sock.connect(path)
            except OSError as exc:
                self.sock.close()
                if exc.errno != errno.EPROTOTYPE:  # a stream socket wants SOCK_STREAM
                    raise
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                self.stream = True
        self.sock.settimeout(5)

    def send(self, data: bytes) -> None:
        if self.stream:
            self.sock.sendall(data + b"\n")
        else:
            self.sock.send(data)

    def close(self) -> None:
        self.sock.close()


def process(execution: dict, config: dict, ctx: Any) -> str:
    fmt = (config.get("format") or "rfc3164").lower()
    if fmt not in FORMATS:
        raise ValueError(f'invalid syslog format "{fmt}": expected rfc3164 or rfc5424')
    try:
        max_lines = int(config.get("max_lines") or 1000)
    except ValueError:
        raise ValueError(f'invalid max_lines "{config.get("max_lines")}"') from None
    pri = priority(bool(execution.get("success")))
    conn = _Connection(config.get("address") or DEFAULT_ADDRESS)
    try:
        now = time.time()
        for text in messages(execution, max_lines):
            conn.send(FORMATS[fmt](pri, text, now))
    finally:
        conn.close()
    return PLACEHOLDER
