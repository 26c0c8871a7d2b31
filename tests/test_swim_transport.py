"""16 real gossip members on 127.0.0.1: convergence, kill -9 detection, graceful leave, keys."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dkron_pkg.swim_codec import parse_key
from dkron_pkg.swim_profiles import LOCAL
from dkron_pkg.swim_transport import GossipTransport, main

ROOT = Path(__file__).resolve().parent.parent
KEY_TEXT = base64.b64encode(bytes(range(32))).decode()
KEY = parse_key(KEY_TEXT)


def wait_until(predicate, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


def statuses(nodes: list[GossipTransport], name: str) -> set[str | None]:
    out = set()
    for n in nodes:
        found = {m.name: m.status for m in n.members()}
        out.add(found.get(name))
    return out


@pytest.fixture
def cluster():
    nodes: list[GossipTransport] = []
    procs: list[subprocess.Popen] = []
    yield nodes, procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
        if p.stdout:
            p.stdout.close()
    for n in nodes:
        n.stop(leave=False)


def test_sixteen_members_converge_detect_a_kill_and_see_a_leave(cluster):
    nodes, procs = cluster
    first = GossipTransport("n00", "127.0.0.1", 0, {"role": "dkron"}, LOCAL, KEY)
    first.start()
    nodes.append(first)
    seed = [("127.0.0.1", first.port)]
    for i in range(1, 15):
        node = GossipTransport(f"n{i:02d}", "127.0.0.1", 0, {"role": "dkron"}, LOCAL, KEY, seed)
        node.start()
        nodes.append(node)
    cmd = [sys.executable, "-m", "dkron_pkg.swim_transport", "--name", "victim", "--port", "0"]
    cmd += ["--join", f"127.0.0.1:{first.port}", "--profile", "local", "--encrypt", KEY_TEXT]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    procs.append(proc)
    seen_lines = []
    for _ in range(40):  # join events of the 15 others may be printed before "ready"
        seen_lines.append(proc.stdout.readline())
        if seen_lines[-1].startswith("ready "):
            break
    assert seen_lines[-1].startswith("ready "), seen_lines

    def converged() -> bool:
        return all(sum(1 for m in n.members() if m.status == "alive") == 16 for n in nodes)

    wait_until(converged, 20.0)

    proc.send_signal(signal.SIGKILL)
    low, high = LOCAL.suspicion_bounds(16)
    took = wait_until(lambda: statuses(nodes, "victim") == {"failed"}, high + 5.0)
    assert took >= low - 0.5  # declared by the suspicion timer, not by accident
    print(f"kill -9 seen as failed by all 15 in {took:.2f} s (suspicion {low:.1f}-{high:.1f} s)")

    leaver = nodes.pop()
    leaver.stop(leave=True, linger=0.5)
    try:
        wait_until(lambda: statuses(nodes, leaver.name) == {"left"}, 5.0)
    except AssertionError:
        print([(n.name, {m.name: m.status for m in n.members()}.get(leaver.name)) for n in nodes])
        raise
    alive = {m.name for m in nodes[0].members() if m.status == "alive"}
    assert alive == {n.name for n in nodes}


def test_packets_without_the_cluster_key_are_dropped_and_counted(cluster):
    nodes, _ = cluster
    a = GossipTransport("a", "127.0.0.1", 0, {}, LOCAL, KEY)
    a.start()
    nodes.append(a)
    b = GossipTransport("b", "127.0.0.1", 0, {}, LOCAL, KEY, [("127.0.0.1", a.port)])
    b.start()
    nodes.append(b)
    wait_until(lambda: len(a.members()) == 2 and len(b.members()) == 2, 10.0)
    seed = [("127.0.0.1", a.port)]
    outsider = GossipTransport("x", "127.0.0.1", 0, {}, LOCAL, os.urandom(32), seed)
    outsider.start()
    nodes.append(outsider)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\x52garbage-without-a-valid-tag" + bytes(16), ("127.0.0.1", a.port))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.connect(("127.0.0.1", a.port))
        s.sendall(b"\x00\x00\x00\x05hello")
    wait_until(lambda: a.stats["dropped_auth"] >= 3, 5.0)  # garbage, stream, outsider's join
    time.sleep(1.0)
    assert {m.name for m in a.members()} == {"a", "b"}
    assert not outsider.joined


def test_command_line_rejects_a_bad_key_with_a_clear_message(capsys):
    assert main(["--name", "z", "--port", "0", "--encrypt", "bm9wZQ=="]) == 2
    assert "16, 24 or 32 bytes" in capsys.readouterr().err
