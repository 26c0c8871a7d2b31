"""Real network driver for the SWIM core: UDP on the bind port, TCP for push-pull and fallback.

``GossipTransport(name, bind_addr, port, tags, profile, key, seeds, on_event=...)`` owns one
UDP socket and one TCP listener on the same port and a thread that feeds the core with packets
and ticks. ``start()`` binds (port 0 picks a free port, see ``.port``) and joins the seeds with
retry and backoff; ``stop(leave=True)`` announces a graceful leave first. ``members()``,
``set_tags()`` and ``stats`` are safe to call from any thread; ``on_event(MemberEvent)`` is
called on the driver thread and must not block.

The core is given wall-clock time (``time.time()``) so that probe rounds line up across
NTP-synced hosts; the same clock stamps keyed packets for replay protection (``swim_replay``).

Inbound TCP is bounded before anything is trusted (``swim_frames``): a peer that has not
proved the key can make this node hold at most one frame head (557 bytes); a frame is
refused from its announced length when it exceeds ``max_frame`` (4 MiB), and from its head
when it is a replay; a peer must send its head within ``HEAD_TIMEOUT`` (3 s, or the
profile's ``tcp_timeout`` when shorter) and its whole frame within ``tcp_timeout``; at most
``max_tcp_conns`` (64) inbound connections are open at once, and when all are taken a new one
replaces the oldest that has not proved the key (or is refused when every one has). Every
refusal is counted in ``stats`` and logged (at most 10 lines per 10 s, then a count). A
packet that makes the core misbehave is logged and dropped; the thread keeps running.

Run one node by hand: ``python3 -m dkron_pkg.swim_transport --name a --port 8946 --join
127.0.0.1:8947 [--profile local] [--encrypt KEY]``; it prints ``ready <port>`` then member
events, one per line.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import queue
import random
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable

from .swim import Member, MemberEvent, Outgoing, SwimNode
from .swim_codec import AuthError, DecodeError, parse_key
from .swim_frames import MAX_FRAME, FrameReader, frame
from .swim_profiles import LAN, Profile, get_profile

log = logging.getLogger("dkron.gossip")

HEAD_TIMEOUT = 3.0  # seconds for a TCP peer to send its frame head
MAX_TCP_CONNS = 64  # inbound TCP connections open at once
TCP_SEND_QUEUE = 1024  # outbound TCP packets waiting for the sender thread
LOG_BURST = 10  # refusal lines per LOG_PERIOD; the rest are counted
LOG_PERIOD = 10.0


def resolve_ip(host: str) -> str:
    """``host`` as an IP address literal (what the gossip core advertises)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as exc:
        raise OSError(f"cannot resolve the gossip advertise address {host!r}: {exc}") from None
    return str(infos[0][4][0])


class _Inbound:
    """One inbound TCP connection: its frame reader and when it was accepted."""

    __slots__ = ("admitted", "opened", "peer", "reader")

    def __init__(self, reader: FrameReader, peer: tuple[str, int], opened: float) -> None:
        self.reader, self.peer, self.opened = reader, peer, opened
        self.admitted = False


class _RateLimitedLog:
    """At most ``LOG_BURST`` warnings per ``LOG_PERIOD``; the rest summed up once."""

    def __init__(self) -> None:
        self._start = -LOG_PERIOD
        self._lines = 0
        self._held = 0

    def warn(self, line: str) -> None:
        now = time.monotonic()
        if now - self._start >= LOG_PERIOD:
            if self._held:
                log.warning("%d more gossip refusals in the last %.0f s", self._held, LOG_PERIOD)
            self._start, self._lines, self._held = now, 0, 0
        if self._lines < LOG_BURST:
            self._lines += 1
            log.warning("%s", line)
        else:
            self._held += 1


class GossipTransport:
    """One gossip member on real sockets; see the module docstring."""

    def __init__(
        self,
        name: str,
        bind_addr: str = "0.0.0.0",
        port: int = 8946,
        tags: dict[str, str] | None = None,
        profile: Profile | str = LAN,
        key: bytes | None = None,
        seeds: Iterable[tuple[str, int]] = (),
        on_event: Callable[[MemberEvent], None] | None = None,
        advertise_addr: str | None = None,
        max_join_attempts: int = 0,
        max_frame: int = MAX_FRAME,
        max_tcp_conns: int = MAX_TCP_CONNS,
    ) -> None:
        self.name = name
        self.bind_addr = bind_addr
        self.port = port
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.key = key
        self.seeds = list(seeds)
        self.on_event = on_event
        self.advertise_addr = advertise_addr or (
            "127.0.0.1" if bind_addr in ("0.0.0.0", "") else bind_addr
        )
        self.max_join_attempts = max_join_attempts
        self.max_frame = max_frame
        self.max_tcp_conns = max_tcp_conns
        self.head_timeout = min(HEAD_TIMEOUT, self.profile.tcp_timeout)
        self._inbound: dict[socket.socket, _Inbound] = {}
        self._own_stats: dict[str, int] = {
            "tcp_refused": 0,
            "tcp_timeouts": 0,
            "tcp_send_dropped": 0,
            "errors": 0,
        }
        self._log = _RateLimitedLog()
        self._tags = dict(tags or {})
        self._lock = threading.Lock()
        self._core: SwimNode | None = None
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._running = False
        self._thread: threading.Thread | None = None
        self._sender: threading.Thread | None = None
        self._tcp_out: queue.Queue = queue.Queue(TCP_SEND_QUEUE)
        self._pending: list[Outgoing] = []
        self.tcp_errors = 0

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        self.advertise_addr = resolve_ip(self.advertise_addr)
        self._bind()
        if self.key is None:
            log.warning(
                "gossip on port %s runs WITHOUT a cluster key: any packet is believed "
                "(development only)",
                self.port,
            )
        now = time.time()
        self._core = SwimNode(
            self.name,
            self.advertise_addr,
            self.port,
            self._tags,
            self.profile,
            random.Random(),
            self.key,
            now=now,
            epoch=int.from_bytes(os.urandom(8), "big"),
        )
        with self._lock:
            out = self._core.join(self.seeds, now, self.max_join_attempts) if self.seeds else []
            self._pending.extend(out)
        self._running = True
        self._sender = threading.Thread(target=self._tcp_sender, name=f"gossip-tcp-{self.name}")
        self._sender.daemon = True
        self._sender.start()
        self._thread = threading.Thread(target=self._loop, name=f"gossip-{self.name}")
        self._thread.daemon = True
        self._thread.start()

    def stop(self, leave: bool = True, linger: float | None = None) -> None:
        """Leave gracefully (unless ``leave`` is False), let the news go out, then close."""
        if not self._running:
            return
        if leave:
            self.leave()
            wait = linger if linger is not None else max(1.0, 5 * self.profile.gossip_interval)
            time.sleep(wait)
        self._running = False
        self._wake()
        if self._thread:
            self._thread.join(timeout=5)
        self._stop_sender()
        if self._sender:
            self._sender.join(timeout=5)
        for key in list(self._sel.get_map().values()):
            key.fileobj.close()
        self._sel.close()
        self._wake_w.close()

    def leave(self) -> None:
        with self._lock:
            self._pending.extend(self._core.leave(time.time()))
        self._wake()

    def set_tags(self, tags: dict[str, str]) -> None:
        with self._lock:
            self._pending.extend(self._core.set_tags(tags, time.time()))
        self._wake()

    def members(self) -> list[Member]:
        with self._lock:
            return self._core.members() if self._core else []

    @property
    def joined(self) -> bool:
        with self._lock:
            return bool(self._core and self._core.joined)

    @property
    def stats(self) -> dict[str, int]:
        """The core's counters and the transport's own (TCP refusals, timeouts, errors)."""
        with self._lock:
            out = dict(self._core.stats) if self._core else {}
            out.update(self._own_stats)
            out["tcp_open"] = len(self._inbound)
            return out

    def key_refusals(self) -> dict[str, tuple[int, float, str]]:
        """Packets refused for the cluster key, by source: (count, last time, last reason)."""
        with self._lock:
            found = self._core.key_refusals if self._core else {}
            return {src: (n, when, why) for src, (n, when, why) in found.items()}

    # ------------------------------------------------------------------ sockets

    def _bind(self) -> None:
        for _ in range(20):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((self.bind_addr, self.port))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((self.bind_addr, port))
            except OSError:
                udp.close()
                tcp.close()
                if self.port:
                    raise
                continue
            tcp.listen(128)
            break
        else:
            raise OSError("could not bind UDP and TCP on one free port")
        self.port = port
        udp.setblocking(False)
        tcp.setblocking(False)
        self._udp, self._tcp = udp, tcp
        self._sel.register(udp, selectors.EVENT_READ, "udp")
        self._sel.register(tcp, selectors.EVENT_READ, "listen")
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _loop(self) -> None:
        while self._running:
            try:
                self._step()
            except Exception:  # a bug must not end gossip: log it, drop what caused it
                self._count("errors")
                log.exception("gossip: unexpected error, the input that caused it is dropped")
                time.sleep(0.1)

    def _step(self) -> None:
        core = self._core
        with self._lock:
            timeout = max(0.0, min(0.5, core.next_deadline() - time.time()))
            pending, self._pending = self._pending, []
        self._send(pending)
        for key, _ in self._sel.select(timeout):
            try:
                self._ready(key)
            except OSError:
                pass
        self._expire_inbound()
        now = time.time()
        with self._lock:
            if now >= core.next_deadline():
                self._send_locked(core.tick(now))
            events = core.drain_events()
            refusals = core.drain_refusals()
        for line in refusals:
            self._log.warn(line)
        if self.on_event is not None:
            for ev in events:
                try:
                    self.on_event(ev)
                except Exception:
                    log.exception("gossip: member event handler failed")

    def _ready(self, key: selectors.SelectorKey) -> None:
        kind = key.data
        if kind == "udp":
            for _ in range(256):
                try:
                    data, addr = self._udp.recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    return
                self._deliver(addr, data, False)
        elif kind == "listen":
            self._accept()
        elif kind == "wake":
            try:
                self._wake_r.recv(4096)
            except BlockingIOError:
                pass
        else:
            self._read_stream(key.fileobj)

    def _deliver(self, addr: tuple[str, int] | None, data: bytes, reliable: bool) -> None:
        with self._lock:
            try:
                out = self._core.receive(time.time(), addr, data, reliable)
            except Exception:
                self._own_stats["errors"] += 1
                log.exception("gossip: packet from %s made the core fail; dropped", addr)
                return
            self._send_locked(out)

    def _count(self, stat: str) -> None:
        with self._lock:
            self._own_stats[stat] += 1

    # ------------------------------------------------------------------ inbound TCP

    def _accept(self) -> None:
        try:
            conn, peer = self._tcp.accept()
        except (BlockingIOError, InterruptedError):
            return
        if len(self._inbound) >= self.max_tcp_conns and not self._evict_unproven():
            self._count("tcp_refused")
            self._log.warn(
                f"gossip TCP connection from {peer[0]}:{peer[1]} refused: "
                f"{self.max_tcp_conns} connections already open"
            )
            conn.close()
            return
        conn.setblocking(False)
        reader = FrameReader(self.key, self.max_frame)
        self._inbound[conn] = _Inbound(reader, peer, time.monotonic())
        self._sel.register(conn, selectors.EVENT_READ, "stream")

    def _evict_unproven(self) -> bool:
        """Make room by closing the oldest connection that has not proved the key."""
        unproven = [(c.opened, s) for s, c in self._inbound.items() if not c.reader.authenticated]
        if not unproven:
            return False
        _, sock = min(unproven, key=lambda item: item[0])
        self._drop(sock, "tcp_refused", "closed to make room for a new connection")
        return True

    def _drop(self, conn: socket.socket, stat: str | None, reason: str | None) -> None:
        state = self._inbound.pop(conn, None)
        try:
            self._sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()
        if stat is None:
            return
        peer = state.peer if state else ("?", 0)
        if stat in self._own_stats:  # the connection itself: counted and logged here
            self._count(stat)
            self._log.warn(f"gossip TCP connection from {peer[0]}:{peer[1]} {reason}")
        else:  # what it carried: counted and explained by the core, as for UDP
            with self._lock:
                self._core.note_refusal(stat, peer, f"TCP frame {reason}")

    def _expire_inbound(self) -> None:
        now = time.monotonic()
        for conn, state in list(self._inbound.items()):
            age = now - state.opened
            reader = state.reader
            if reader.authenticated or (self.key is None and reader.size is not None):
                limit, what = self.profile.tcp_timeout, "complete frame"
            else:
                limit, what = self.head_timeout, "valid frame head"
            if age > limit:
                self._drop(conn, "tcp_timeouts", f"closed: no {what} within {limit:g} s")

    def _read_stream(self, conn: socket.socket) -> None:
        state = self._inbound.get(conn)
        if state is None:
            self._drop(conn, None, None)
            return
        reader = state.reader
        try:
            chunk = conn.recv(min(reader.wants, 65536))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            if not reader.received:
                self._drop(conn, None, None)  # a port check, not a packet
                return
            unproven = self.key is not None and not reader.authenticated
            self._drop(conn, "dropped_auth" if unproven else "dropped_decode", "cut short")
            return
        try:
            reader.feed(chunk)
        except AuthError as exc:
            self._drop(conn, "dropped_auth", f"refused: {exc}")
            return
        except DecodeError as exc:
            self._drop(conn, "dropped_decode", f"refused: {exc}")
            return
        if reader.envelope is not None and not state.admitted:
            with self._lock:
                reason = self._core.admit(time.time(), reader.envelope)
            if reason is not None:
                self._drop(conn, "dropped_replay", f"refused from its head: {reason}")
                return
            state.admitted = True
        if reader.packet is not None:
            self._drop(conn, None, None)
            self._deliver(state.peer, reader.packet, True)

    # ------------------------------------------------------------------ outbound

    def _send_locked(self, out: list[Outgoing]) -> None:
        self._pending.extend(out)

    def _send(self, out: list[Outgoing]) -> None:
        for o in out:
            if o.reliable:
                try:
                    self._tcp_out.put_nowait(o)
                except queue.Full:
                    self._count("tcp_send_dropped")
                continue
            try:
                self._udp.sendto(o.data, (o.addr, o.port))
            except (OSError, ValueError, OverflowError):
                pass

    def _stop_sender(self) -> None:
        while True:
            try:
                self._tcp_out.put_nowait(None)
                return
            except queue.Full:
                try:
                    self._tcp_out.get_nowait()
                except queue.Empty:
                    pass

    def _tcp_sender(self) -> None:
        while True:
            o = self._tcp_out.get()
            if o is None:
                return
            try:
                with socket.create_connection((o.addr, o.port), self.profile.tcp_timeout) as s:
                    s.sendall(frame(o.data, self.key))
            except (OSError, ValueError, OverflowError):
                self.tcp_errors += 1


def _parse_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected host:port, got {text!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run one gossip member (for tests and debugging).")
    ap.add_argument("--name", required=True)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8946)
    ap.add_argument("--join", action="append", type=_parse_hostport, default=[])
    ap.add_argument("--profile", default="lan")
    ap.add_argument("--encrypt")
    ap.add_argument("--tag", action="append", default=[], help="key=value")
    a = ap.parse_args(argv)
    try:
        profile = get_profile(a.profile)
        key = parse_key(a.encrypt) if a.encrypt else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tags = dict(t.split("=", 1) for t in a.tag if "=" in t)

    out_lock = threading.Lock()

    def emit(line: str) -> None:
        # One write per line under a lock: the driver thread prints events while the main
        # thread prints "ready", and print() would interleave their text and newlines.
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def show(ev: MemberEvent) -> None:
        emit(f"{ev.kind} {ev.member.name} {ev.member.status}")

    node = GossipTransport(a.name, a.bind, a.port, tags, profile, key, a.join, on_event=show)
    node.start()
    emit(f"ready {node.port}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        node.stop(leave=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
