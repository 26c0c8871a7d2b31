"""Real network driver for the SWIM core: UDP on the bind port, TCP for push-pull and fallback.

``GossipTransport(name, bind_addr, port, tags, profile, key, seeds, on_event=...)`` owns one
UDP socket and one TCP listener on the same port and a thread that feeds the core with packets
and ticks. ``start()`` binds (port 0 picks a free port, see ``.port``) and joins the seeds with
retry and backoff; ``stop(leave=True)`` announces a graceful leave first. ``members()``,
``set_tags()`` and ``stats`` are safe to call from any thread; ``on_event(MemberEvent)`` is
called on the driver thread and must not block.

TCP frames are a 4-byte big-endian length and one packet. The core is given wall-clock time
(``time.time()``) so that probe rounds line up across NTP-synced hosts.

Run one node by hand: ``python3 -m dkron_pkg.swim_transport --name a --port 8946 --join
127.0.0.1:8947 [--profile local] [--encrypt KEY]``; it prints ``ready <port>`` then member
events, one per line.
"""

from __future__ import annotations

import argparse
import queue
import random
import selectors
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable

from .swim import Member, MemberEvent, Outgoing, SwimNode
from .swim_codec import MAX_PACKET, parse_key
from .swim_profiles import LAN, Profile, get_profile

_LEN = struct.Struct(">I")


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
        self._tcp_out: queue.Queue = queue.Queue()
        self._pending: list[Outgoing] = []
        self.tcp_errors = 0

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        self._bind()
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
        self._tcp_out.put(None)
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
        with self._lock:
            return dict(self._core.stats) if self._core else {}

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
        core = self._core
        while self._running:
            with self._lock:
                timeout = max(0.0, min(0.5, core.next_deadline() - time.time()))
                pending, self._pending = self._pending, []
            self._send(pending)
            for key, _ in self._sel.select(timeout):
                try:
                    self._ready(key)
                except OSError:
                    pass
            now = time.time()
            with self._lock:
                if now >= core.next_deadline():
                    self._send_locked(core.tick(now))
                events = core.drain_events()
            if self.on_event is not None:
                for ev in events:
                    self.on_event(ev)

    def _ready(self, key: selectors.SelectorKey) -> None:
        kind = key.data
        if kind == "udp":
            for _ in range(256):
                try:
                    data, addr = self._udp.recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    return
                with self._lock:
                    self._send_locked(self._core.receive(time.time(), addr, data))
        elif kind == "listen":
            try:
                conn, _ = self._tcp.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            self._sel.register(conn, selectors.EVENT_READ, [bytearray(), time.time()])
        elif kind == "wake":
            try:
                self._wake_r.recv(4096)
            except BlockingIOError:
                pass
        else:
            self._read_stream(key.fileobj, kind)

    def _read_stream(self, conn: socket.socket, state: list) -> None:
        buf = state[0]
        try:
            chunk = conn.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        buf.extend(chunk)
        done = not chunk
        if len(buf) >= 4:
            (size,) = _LEN.unpack_from(buf, 0)
            if size > MAX_PACKET:
                done = True
            elif len(buf) >= 4 + size:
                packet = bytes(buf[4 : 4 + size])
                with self._lock:
                    self._send_locked(self._core.receive(time.time(), None, packet, True))
                done = True
        if done or time.time() - state[1] > self.profile.tcp_timeout:
            self._sel.unregister(conn)
            conn.close()

    def _send_locked(self, out: list[Outgoing]) -> None:
        self._pending.extend(out)

    def _send(self, out: list[Outgoing]) -> None:
        for o in out:
            if o.reliable:
                self._tcp_out.put(o)
                continue
            try:
                self._udp.sendto(o.data, (o.addr, o.port))
            except OSError:
                pass

    def _tcp_sender(self) -> None:
        while True:
            o = self._tcp_out.get()
            if o is None:
                return
            try:
                with socket.create_connection((o.addr, o.port), self.profile.tcp_timeout) as s:
                    s.sendall(_LEN.pack(len(o.data)) + o.data)
            except OSError:
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
