"""Finding 6 (HTTP part): resources taken before authentication.

`Content-Length: -1` slipped past --max-body-bytes and the body was read to the end before the
token check (3 connections took RSS from 34 to 226 MB); idle and trickling connections never
timed out and each held a thread, with no limit on their number. Each test here failed on the
code before issue 16 (no answer, or an answer only after the whole body) and passes now.
"""

from __future__ import annotations

import os
import select
import threading
import time

import pytest
from agent_support import start_agent

from .http_raw import closed_by_peer, connect, exchange, head, read_reply

MB = 1024 * 1024
FLOOD = 24 * MB  # per connection: what the old code read into memory


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def request_threads() -> int:
    """The HTTP server's connection threads (the agent's other loops come and go on their own)."""
    return sum("process_request" in t.name for t in threading.enumerate())


def wait_until(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    agent, _ = start_agent(
        tmp_path_factory.mktemp("exhaustion"),
        api_token="s3cret",
        http_read_timeout="1s",
        http_header_timeout="500ms",
    )
    yield agent
    agent.stop()


def test_negative_content_length_is_refused_before_reading(node):
    port = node.http_port
    threads_before = request_threads()
    rss_before = rss_bytes()
    chunk = b"x" * 65536
    for auth in ("Authorization: Bearer s3cret", "X-Nothing: 1"):
        for _ in range(3):
            with connect(port, timeout=5) as sock:
                request = head("POST", "/v1/jobs", port, auth, "Content-Type: application/json",
                               "Content-Length: -1")  # fmt: skip
                sock.sendall(request + chunk)
                reply = read_reply(sock)  # the old code waited for the end of the body
                assert reply.status == 400 and "Content-Length" in reply.text
                assert reply.headers.get("connection") == "close"
                sent = len(chunk)
                try:
                    while sent < FLOOD:
                        sock.sendall(chunk)
                        sent += len(chunk)
                except OSError:
                    pass
                assert sent < FLOOD, "the server kept reading a body it had refused"
    assert rss_bytes() - rss_before < 16 * MB
    assert wait_until(lambda: request_threads() <= threads_before)
    assert exchange(port, head("GET", "/health", port)).status == 200


@pytest.mark.parametrize("value", ["+5", "-0", "1_0", "abc", "99999999999999999999999"])
def test_invalid_content_length_is_refused(node, value):
    request = head("POST", "/v1/jobs", node.http_port, f"Content-Length: {value}")
    reply = exchange(node.http_port, request, timeout=5)
    assert reply.status == 400 and "Content-Length" in reply.text


def test_token_is_checked_before_the_body_is_read(node):
    port = node.http_port
    with connect(port, timeout=5) as sock:
        # A large announced body, none of it sent: the refusal must not wait for it.
        sock.sendall(head("POST", "/v1/jobs", port, "Content-Type: application/json",
                          "Content-Length: 1000000"))  # fmt: skip
        reply = read_reply(sock)
    assert reply.status == 401 and "token" in reply.text


def test_idle_connection_is_closed(node):
    with connect(node.http_port, timeout=10) as sock:
        assert closed_by_peer(sock), "an idle connection stayed open past --http-read-timeout"
    # A kept-alive connection is closed too once idle.
    with connect(node.http_port, timeout=10) as sock:
        sock.sendall(head("GET", "/health", node.http_port))
        assert read_reply(sock).status == 200
        assert closed_by_peer(sock)


def test_trickled_request_head_is_cut_off(node):
    with connect(node.http_port, timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        closed = False
        for i in range(100):  # one header line every 0.1 s: each read alone is quick
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                closed = closed_by_peer(sock)
                break
            try:
                sock.sendall(f"X-Slow-{i}: a\r\n".encode())
            except OSError:
                closed = True
                break
        assert closed, "a request head trickled in for 10 s was still being read"


def test_connections_beyond_the_cap_get_503(tmp_path):
    agent, _ = start_agent(tmp_path, http_max_connections=3)
    port = agent.http_port
    held = []
    try:
        for _ in range(3):  # the cap; each kept alive after one request
            sock = connect(port, timeout=5)
            sock.sendall(head("GET", "/health", port))
            assert read_reply(sock).status == 200
            held.append(sock)
        with connect(port, timeout=5) as extra:
            reply = read_reply(extra)  # answered at once, before it sends anything
        assert reply.status == 503 and "--http-max-connections" in reply.text
        held.pop().close()
        assert wait_until(lambda: agent._http.active_connections < 3)
        assert exchange(port, head("GET", "/health", port)).status == 200
    finally:
        for sock in held:
            sock.close()
        agent.stop()
