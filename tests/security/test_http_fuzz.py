"""The HTTP decoders are total: random and mutated input gives a clear refusal, never a crash.

Covers findings 6 and 7 from the decoder side: the bounded JSON decoder, the request checks
(Host, Origin, Content-Length), header encoding, job validation, and a live server fed random
request heads (each answered or closed; no handler error logged; the node stays up).
"""

from __future__ import annotations

import json
import logging
import math
import socket
from email.message import Message

import pytest
from agent_support import start_agent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dkron_pkg import strict_json
from dkron_pkg.http_guard import (
    HttpPolicy,
    Refused,
    check_host,
    check_origin,
    content_length,
    header_safe,
)
from dkron_pkg.jobs import JobError, normalize_job

from .http_raw import connect, exchange, head

POLICY = HttpPolicy(allowed_hosts=frozenset({"localhost", "dkron.internal"}))
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**18), max_value=10**18)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)
VALID_JOB = json.dumps(
    {
        "name": "job-1",
        "schedule": "@every 1m",
        "retries": 2,
        "tags": {"role": "web:1"},
        "executor": "shell",
        "executor_config": {"command": "echo hi"},
        "processors": {"log": {"forward": "true"}},
    }
).encode()


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, position, value in edits:
        at = position % (len(out) + 1)
        if kind == 0:
            out[at:at] = bytes([value])
        elif kind == 1 and out:
            del out[min(at, len(out) - 1)]
        elif out:
            out[min(at, len(out) - 1)] = value
    return bytes(out)


EDITS = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 10_000), st.integers(0, 255)), max_size=8
)


@given(st.binary(max_size=400))
def test_json_decoder_is_total_on_random_bytes(data):
    try:
        strict_json.loads(data)
    except strict_json.JsonError as e:
        assert str(e)


@given(EDITS)
def test_json_decoder_and_job_validation_are_total_on_mutated_jobs(edits):
    try:
        payload = strict_json.loads(mutate(VALID_JOB, edits))
    except strict_json.JsonError:
        return
    try:
        normalize_job(payload)
    except JobError as e:
        assert str(e)


@given(JSON_VALUES)
def test_json_decoder_keeps_values_within_bounds(value):
    text = json.dumps(value)
    if strict_json.nesting_depth(text) <= strict_json.MAX_DEPTH:
        assert strict_json.loads(text) == value


@given(st.integers(min_value=strict_json.MAX_DEPTH + 1, max_value=3000))
def test_nesting_depth_is_exact_beyond_the_bound(depth):
    text = '{"k": "[[[{{\\"[", "v": ' + "[" * depth + '"]]"' + "]" * depth + "}"
    assert strict_json.nesting_depth(text) == depth + 1


@given(
    st.dictionaries(
        st.sampled_from(["retries", "name", "tags", "schedule"]), JSON_VALUES | st.floats()
    )
)
def test_job_validation_is_total(payload):
    try:
        job = normalize_job(payload)
    except JobError as e:
        assert str(e)
    else:
        assert 0 <= job["retries"] <= 100 and not math.isnan(job["retries"])


@given(st.text())
def test_header_values_are_always_encodable(value):
    safe = header_safe(value)
    assert safe.isascii() and all(0x20 <= ord(c) < 0x7F for c in safe)
    if all(0x20 <= ord(c) < 0x7F for c in value):
        assert safe == value


@given(st.text(max_size=60), st.text(max_size=60), st.sampled_from(["GET", "POST", "DELETE"]))
def test_host_and_origin_checks_are_total(host, origin, method):
    for check in (
        lambda: check_host(POLICY, host),
        lambda: check_origin(POLICY, method, origin, host),
    ):
        try:
            check()
        except Refused as e:
            assert e.status == 403 and header_safe(e.message) is not None


@given(st.lists(st.text(max_size=30), max_size=3))
def test_content_length_check_is_total(values):
    headers = Message()
    for value in values:
        headers["Content-Length"] = value
    try:
        length = content_length(headers, 1000)
    except Refused as e:
        assert e.status in (400, 413)
    else:
        assert 0 <= length <= 1000


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    agent, _ = start_agent(tmp_path_factory.mktemp("fuzz"), http_read_timeout="2s")
    yield agent
    agent.stop()


TOKENS = st.sampled_from(
    ["GET", "POST", "TRACE", "X", "/v1/jobs", "/ui/", "/v1/jobs/ǆ", "HTTP/1.1", "HTTP/9", "\x00", " ",
     "Content-Length: -1", "Content-Length: 5", "Transfer-Encoding: chunked", "Host: evil",
     "Origin: null", "Content-Type: text/plain", "Expect: 100-continue", "{", "\r\n"]
)  # fmt: skip


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(TOKENS | st.text(max_size=12), max_size=12))
def test_live_server_answers_or_closes_on_random_heads(node, caplog, parts):
    caplog.set_level(logging.ERROR, logger="dkron.http")
    raw = ("\r\n".join(parts) + "\r\n\r\n").encode("utf-8", "surrogatepass")
    with connect(node.http_port, timeout=10) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            answer = sock.recv(65536)
        except ConnectionError:
            answer = b""
    assert answer == b"" or answer.startswith(b"HTTP/1."), answer[:80]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert exchange(node.http_port, head("GET", "/health", node.http_port)).status == 200
