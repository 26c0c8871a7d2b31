"""The agent's listening ports, checked before anything starts, with errors a newcomer can act on.

A node listens on three ports: the HTTP API (8080), RPC (6868) and gossip (8946, UDP and TCP).
When one is taken (another program, a second node on the same machine) the agent stops before it
joins anything, naming the port's purpose and the flag that moves it, instead of Python's
"[Errno 98] Address already in use".
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class PortError(RuntimeError):
    """A port the agent needs cannot be used; the message says which, why and what to do."""


@dataclass(frozen=True)
class PortUse:
    purpose: str  # "HTTP API", "RPC", "gossip"
    host: str
    port: int
    flag: str  # what moves it, e.g. "--rpc-port PORT"
    udp: bool = False  # gossip also listens on UDP


def bind_error(use: PortUse, err: OSError) -> PortError | None:
    """The operator's wording of a failed bind (None: not a bind problem we can explain)."""
    where = f"{use.host}:{use.port}"
    protocols = " (TCP and UDP)" if use.udp else ""
    if err.errno == errno.EADDRINUSE:
        return PortError(
            f"the {use.purpose} port {use.port}{protocols} is already in use on {use.host} by "
            f"another program (or another dkron agent): move it with {use.flag}, or stop "
            "what uses it"
        )
    if err.errno == errno.EACCES:
        return PortError(
            f"the {use.purpose} port {use.port} needs privileges to listen on (ports below 1024 "
            f"do): choose a higher port with {use.flag}"
        )
    if err.errno == errno.EADDRNOTAVAIL:
        return PortError(
            f"cannot listen for {use.purpose} on {where}: {use.host} is not an address of this "
            f"machine; change it with {use.flag}"
        )
    return None


@contextmanager
def explained(use: PortUse) -> Iterator[None]:
    """Turn a failed bind inside the block into a PortError naming the port and its flag."""
    try:
        yield
    except OSError as err:
        known = bind_error(use, err)
        if known is None:
            raise
        raise known from None


def check_free(uses: list[PortUse]) -> None:
    """Bind each fixed port briefly, as the agent will, so a taken one stops the start-up
    before any part of the node runs. Port 0 (any free port) needs no check."""
    for use in uses:
        if not use.port:
            continue
        with explained(use):
            _probe(use.host, use.port, socket.SOCK_STREAM)
            if use.udp:
                _probe(use.host, use.port, socket.SOCK_DGRAM)


def _probe(host: str, port: int, kind: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        if kind == socket.SOCK_STREAM:
            # As the servers do: a port held only by closed connections (TIME_WAIT) is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        if kind == socket.SOCK_STREAM:
            sock.listen(1)
